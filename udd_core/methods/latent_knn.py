"""Latent kNN: the distance of an image's latent code to the training images' codes; no extra training.

The cheap sibling of Deep SVDD (dsvdd.py): pretrain the run's pixel autoencoder with the ordinary
trainer, encode every training image once into a bank of flattened codes (N, D), and score a test
image by the mean Euclidean distance of its code to its k nearest codes in the bank. The heatmap is
the pretrained autoencoder's residual map, as for Deep SVDD (ae_backed.py).

Files: the autoencoder as a pixel AE run has them, `latent_bank.safetensors` (`bank`, (N, D)
float32) and `method.json`. Validation images are left out of the bank, so the score statistics
measured on them (method.json's `score_stats`) are those of unseen normal images.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
from torch import nn

from .. import runs
from ..model import AutoEncoder
from ..run_status import write_status
from ..tensor_files import read_tensors, write_tensors
from .ae_backed import AEBackedDetector, batched, check_int, failing_run

BANK_FILE = "latent_bank.safetensors"


class KnnScore(nn.Module):
    """x (B, C, H, W) -> (B,) mean Euclidean distance of the flattened code to its k nearest bank codes.

    Distances are summed squared differences, not ||z||^2 - 2 z.b + ||b||^2: a normal image's code
    lies close to a training code, and there the matmul form cancels into rounding noise that
    differs between torch and ONNX Runtime (1.8 % score differences measured). The bank is small
    (one code per training image), so the (B, N, D) differences stay affordable.
    """

    def __init__(self, encoder: nn.Module, bank: torch.Tensor, k: int):
        super().__init__()
        self.encoder, self.k = encoder, int(k)
        self.register_buffer("bank", bank.detach().clone())  # (N, D)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.encoder(x).flatten(1)  # (B, D)
        d2 = (z[:, None, :] - self.bank[None]).square().sum(dim=2)  # (B, N)
        near = torch.topk(d2, self.k, dim=1, largest=False).values  # (B, k)
        return near.sqrt().mean(dim=1)


class CodeNovelty(nn.Module):
    """codes (B, ...) -> (B,): each flattened code's distance to its nearest training code, divided by that
    code's spread (`coreset.bank_spread`) and raised to `power`; the feature AE's image-score factor.

    Summed squared differences, as in KnnScore (the matmul form cancels into rounding noise near a code).
    """

    def __init__(self, bank: torch.Tensor, spread: torch.Tensor, power: float):
        super().__init__()
        self.power = float(power)
        self.register_buffer("bank", bank.detach().clone())  # (N, D)
        self.register_buffer("spread", spread.detach().clone())  # (N,)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        d2 = (z.flatten(1)[:, None, :] - self.bank[None]).square().sum(dim=2)  # (B, N)
        near, nearest = d2.min(dim=1)  # (B,), (B,)
        return (near.sqrt() / self.spread[nearest]).pow(self.power)


class LatentKnnDetector(AEBackedDetector):
    """Pretrained AE; the image score is the mean distance of its code to the k nearest training codes."""

    method = "latent-knn"
    summary = "kNN on the AE's latent codes"
    option_example = '{"k": 1}'
    weight_file = BANK_FILE
    defaults = {"k": 1}  # digits classes 0-4 (bench/bench_dsvdd.py): mean AUROC 0.996 with k=1, 0.994 with k=5

    def __init__(self, model: AutoEncoder, options: dict, bank: Optional[torch.Tensor] = None,
                 score_stats: Optional[dict] = None):
        super().__init__(model, options)
        self.bank = bank  # (N, D) float32 on the model's device, or None before fitting
        self.score_stats = score_stats

    @classmethod
    def check_options(cls, options: Optional[dict]) -> dict:
        o = super().check_options(options)
        check_int(o, "k", 1, 10_000)
        return o

    def score_module(self) -> nn.Module:
        if self.bank is None:
            raise ValueError("latent-knn: the detector is not fitted (no bank of training codes yet)")
        return KnnScore(self.model.encoder, self.bank, self.options["k"]).eval()

    def fit(self, train_images: np.ndarray, val_images: Optional[np.ndarray], settings: Any,
            run_dir: Union[str, Path], *, stop_event: Optional[threading.Event] = None,
            board: Any = None, resume: bool = False) -> str:
        from ..progress import fit_handles

        if len(train_images) < self.options["k"]:  # refused before minutes of pretraining, not after
            raise ValueError(f"k: {self.options['k']} is more than the {len(train_images)} training images")
        run_dir, stop_event, board = fit_handles(run_dir, settings.epochs, stop_event, board)
        status = self.pretrain(train_images, val_images, settings, run_dir, stop_event, board, resume)
        with failing_run(run_dir, board):
            self._fill_bank(train_images, val_images, settings, run_dir, board)
            if status == "finished":  # pretraining left "running" (`train`'s then): the bank was the last step
                write_status(run_dir, status, board.message, epoch=settings.epochs, epochs=settings.epochs)
        return status

    def _fill_bank(self, train_images, val_images, settings, run_dir: Path, board) -> None:
        dev = next(self.model.parameters()).device
        bs = 2 * settings.batch_size
        message = board.message
        board.update(message="encoding the training images into the latent bank")
        # Even a stopped pretraining leaves a loadable detector: a bank from the best weights so far.
        self.bank = batched(self.model.encoder, train_images, dev, bs).flatten(1).float()  # (N, D)
        has_val = val_images is not None and len(val_images) > 0
        self.score_stats = self.own_calibration(run_dir, val_images if has_val else train_images,
                                                "validation" if has_val else "train", bs)
        self.save(run_dir)
        board.update(message=message)

    def save(self, run_dir: Union[str, Path]) -> None:
        if self.bank is None:
            raise ValueError("latent-knn: the detector is not fitted (no bank of training codes yet)")
        run_dir = Path(run_dir)
        self.save_ae(run_dir)
        write_tensors(run_dir / BANK_FILE, {"bank": self.bank}, {"format": "udd-latent-bank-1"})

    @classmethod
    def load(cls, run_dir: Union[str, Path], device: str = "cpu") -> "LatentKnnDetector":
        run_dir = Path(run_dir)
        model, opts = cls.load_ae(run_dir, device)
        path = run_dir / BANK_FILE
        if not path.is_file():
            raise ValueError(f"{path}: missing (the latent-knn run has not been fitted)")
        state, _ = read_tensors(path)
        bank = state.get("bank")
        if bank is None or bank.ndim != 2 or bank.shape[0] < 1:
            raise ValueError(f"{path}: holds no (N, D) 'bank' of codes")
        if bank.shape[0] < opts["k"]:
            raise ValueError(f"{path}: {bank.shape[0]} codes, fewer than k={opts['k']}")
        if model.input_shape is not None:
            with torch.no_grad():
                dim = model.encoder.cpu()(torch.zeros(1, *model.input_shape)).flatten(1).shape[1]
            model.to(device)
            if bank.shape[1] != dim:
                raise ValueError(f"{path}: codes of {bank.shape[1]} numbers, the run's encoder gives {dim}")
        info = runs.read_json(run_dir / "method.json", {})
        return cls(model, opts, bank.float().to(device), score_stats=info.get("score_stats"))

    def to(self, device: Union[str, torch.device]) -> "LatentKnnDetector":
        super().to(device)
        if self.bank is not None:
            self.bank = self.bank.to(device)
        return self

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        k = self.options["k"]
        d["image_score"] = ("the distance of the encoder's code to its nearest training code" if k == 1 else
                            f"the mean distance of the encoder's code to its {k} nearest training codes")
        if self.score_stats is not None:
            d["score_stats"] = self.score_stats
        return d
