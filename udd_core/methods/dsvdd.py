"""Deep SVDD (Ruff et al., ICML 2018) on the autoencoder's encoder: the latent code as a detector.

Fit: pretrain the run's pixel autoencoder with the ordinary trainer, fix a centre c as the
pretrained encoder's mean code over the training images (coordinates with |c_i| < eps pushed to
+-eps, so a zero-weight network cannot reach c), then train a copy of the encoder to pull the
codes of normal images towards c: loss = mean_i ||phi(x_i) - c||^2, with Adam weight decay.
Score: ||phi(x) - c||^2, the squared distance of the image's code to the centre.

Precautions against the trivial solution (every image mapped onto c), from the paper:
- no bias terms in the trained part. The encoder's convolution biases are zeroed and frozen when
  the detector is built (`prepare_model`), so pretraining already trains a bias-free encoder and
  the SVDD copy (`bias_free_copy`: the same modules with the bias parameters removed) computes
  exactly the pretrained encoder's function at the start. The decoder keeps its biases: it is not
  part of the trained network and only draws the heatmap;
- no bounded activations: the encoder's only nonlinearity is LeakyReLU (checked);
- weight decay on the encoder's weights (option `weight_decay`).

Heatmap: Deep SVDD has none of its own; Inspect shows the pretrained autoencoder's residual map
(see ae_backed.py). The gradient of the distance was the alternative, but it needs autograd at
scoring time, which neither the inference-mode scoring path nor a plain ONNX export gives.

Files: the autoencoder as a pixel AE run has them, `svdd.safetensors` (the encoder's weights
under `encoder.*` and the centre `c`; metadata: epochs done), `svdd_trainer.pt` (Adam state for
resume; plain tensors), `svdd_history.json` (per-epoch losses) and `method.json`.
"""
from __future__ import annotations

import copy
import math
import threading
import time
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
from torch import nn

from .. import runs
from .. import run_status
from ..atomic import write_atomic
from ..model import AutoEncoder
from ..notices import Caution
from ..tensor_files import read_tensors, write_tensors
from .ae_backed import AEBackedDetector, batched, check_float, check_int, failing_run
from .base import ResumePhase

SVDD_FILE, SVDD_TRAINER, SVDD_HISTORY = "svdd.safetensors", "svdd_trainer.pt", "svdd_history.json"
PHASE = "Deep SVDD"  # the one-class epoch loop's name in progress lines and charts
BOUNDED = (nn.Sigmoid, nn.Tanh, nn.Hardtanh, nn.Softsign, nn.Hardsigmoid)  # ReLU6 is a Hardtanh


def bias_free_copy(encoder: nn.Module) -> nn.Module:
    """A deep copy of `encoder` whose convolutions have no bias parameter (their biases must be zero)."""
    enc = copy.deepcopy(encoder)
    for m in enc.modules():
        if isinstance(m, nn.modules.conv._ConvNd) and m.bias is not None:
            if torch.any(m.bias != 0):
                raise ValueError("encoder: its biases are not zero, so dropping them would change its codes")
            m.register_parameter("bias", None)
    for m in enc.modules():
        if isinstance(m, BOUNDED):
            raise ValueError(f"encoder: {type(m).__name__} is a bounded activation, which lets Deep SVDD collapse")
    return enc


def init_center(codes: torch.Tensor, eps: float) -> torch.Tensor:
    """Centre c (D,): the mean of flattened codes (N, D), with |c_i| < eps pushed to +eps (c_i >= 0) or -eps."""
    c = codes.double().mean(dim=0)
    small = c.abs() < eps
    c[small & (c >= 0)] = eps
    c[small & (c < 0)] = -eps
    return c.float()


DEAD_CODE = 1e-6  # a pretrained code no larger than this everywhere carries nothing of its image


NO_DECAY = "weight decay 0 (udd train --weight-decay 0; Weight decay on the Train page)"


def check_codes_alive(codes: torch.Tensor, weight_decay: float) -> None:
    """Refuse pretrained codes (N, D) that are all about zero. The bias-free encoder can collapse there in
    pretraining: the decoder's biases alone draw the mean image, and weight decay shrinks the encoder's
    unused weights away (QA sweep 12: the wafer preset's 1e-3 on wafer-26 gave codes of 1e-16, and every
    map then scored 1.28, image AUROC 0.5). The one-class phase cannot leave that point: zero codes get no
    gradient through LeakyReLU's zero input, so every image would score the same."""
    largest = float(codes.abs().max()) if codes.numel() else 0.0
    if largest <= DEAD_CODE:
        cause = (f"weight decay {weight_decay:g} shrank its bias-free weights away; train again with {NO_DECAY}"
                 if weight_decay > 0 else "its weights carry no signal")
        raise ValueError(f"dsvdd: the pretrained encoder maps every image to zero (largest |code| {largest:.1g}), so "
                         f"every image would score the same: {cause}")


class SVDDScore(nn.Module):
    """x (B, C, H, W) -> (B,) squared distance of the flattened code phi(x) to the centre c."""

    def __init__(self, encoder: nn.Module, c: torch.Tensor):
        super().__init__()
        self.encoder = encoder
        self.register_buffer("c", c.detach().clone())  # (D,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.encoder(x).flatten(1)  # (B, D)
        return (z - self.c).square().sum(dim=1)


def _svdd_history(run_dir: Union[str, Path]) -> list[dict]:
    """The Deep SVDD phase's per-epoch records (svdd_history.json); [] before the phase or for a damaged file."""
    svdd = runs.read_json(Path(run_dir) / SVDD_HISTORY, [])
    return [r for r in svdd if isinstance(r, dict)] if isinstance(svdd, list) else []


class DeepSVDDDetector(AEBackedDetector):
    """Pretrained AE, then a one-class encoder; the image score is the squared distance to c."""

    method = "dsvdd"
    summary = "Deep SVDD on the AE's encoder"
    option_example = '{"svdd_epochs": 100}'
    # Weight decay 1e-6 and eps 0.1 are Ruff et al.'s; 100 epochs at Adam 1e-3 were the best of
    # {30, 100} x {1e-4, 1e-3} on digits classes 0-4 (bench/bench_dsvdd.py, bench/RESULTS.md).
    weight_file = SVDD_FILE
    defaults = {"svdd_epochs": 100, "svdd_lr": 1e-3, "weight_decay": 1e-6, "eps": 0.1}

    def __init__(self, model: AutoEncoder, options: dict, svdd: Optional[SVDDScore] = None,
                 epochs_done: int = 0, score_stats: Optional[dict] = None):
        super().__init__(model, options)
        self.svdd = svdd
        self.epochs_done = epochs_done
        self.score_stats = score_stats

    @classmethod
    def check_options(cls, options: Optional[dict]) -> dict:
        o = super().check_options(options)
        check_int(o, "svdd_epochs", 0, 100_000)
        check_float(o, "svdd_lr", 0, 10, lo_open=True)
        check_float(o, "weight_decay", 0, 1)
        check_float(o, "eps", 0, 1e3, lo_open=True)
        return o

    @classmethod
    def settings_caution(cls, settings: dict) -> Optional[str]:
        # QA sweep 15: the wafer preset, which the Train page pairs with wafer-26, failed only after pretraining.
        wd = settings.get("weight_decay") or 0
        return (Caution(f"weight decay {wd:g} can shrink Deep SVDD's bias-free encoder to zero codes during "
                        "pretraining (wafer-26 with the wafer preset's 1e-3 did; the run then fails when pretraining "
                        f"ends): use {NO_DECAY}") if wd > 0 else None)

    @classmethod
    def epoch_loops(cls, run_dir: Union[str, Path]) -> list[tuple[str, list[dict]]]:
        return [("Pretraining: the autoencoder's reconstruction loss", runs.read_history(run_dir)),
                (f"{PHASE}: the mean squared distance of the codes to the centre c", _svdd_history(run_dir))]

    @classmethod
    def later_epochs(cls, run_dir: Union[str, Path]) -> list[tuple[str, int]]:
        return [(PHASE, len(_svdd_history(run_dir)))]

    @classmethod
    def resume_phase(cls, run_dir: Union[str, Path], epochs: int, options: dict) -> ResumePhase:
        # Once pretraining is complete and the one-class phase has begun, a resume continues that phase: more
        # pretraining would move the encoder away from the codes the Deep SVDD epochs were trained on, and
        # restart them from a new centre.
        pre = super().resume_phase(run_dir, epochs, options)
        history = runs.read_json(Path(run_dir) / SVDD_HISTORY, None)
        if pre.done < epochs or not (Path(run_dir) / SVDD_FILE).is_file() or not isinstance(history, list):
            return pre
        return ResumePhase(len(history), cls.check_options(options)["svdd_epochs"], "Deep SVDD epoch", "svdd_epochs")

    def prepare_model(self) -> None:
        # Zeroed, frozen encoder biases: pretraining then fits the bias-free encoder SVDD trains on.
        for m in self.model.encoder.modules():
            if isinstance(m, nn.Conv2d) and m.bias is not None:
                with torch.no_grad():
                    m.bias.zero_()
                m.bias.requires_grad_(False)

    def score_module(self) -> nn.Module:
        if self.svdd is None:
            raise ValueError("dsvdd: the detector is not fitted (no centre yet)")
        return self.svdd.eval()

    def _start_svdd(self, images: np.ndarray, device: torch.device, bs: int, weight_decay: float) -> SVDDScore:
        enc = bias_free_copy(self.model.encoder).to(device)
        for p in enc.parameters():
            p.requires_grad_(True)
        codes = batched(enc, images, device, bs).flatten(1)  # (N, D) pretrained codes
        check_codes_alive(codes, weight_decay)
        return SVDDScore(enc, init_center(codes, self.options["eps"]).to(device))

    def fit(self, train_images: np.ndarray, val_images: Optional[np.ndarray], settings: Any,
            run_dir: Union[str, Path], *, stop_event: Optional[threading.Event] = None,
            board: Any = None, resume: bool = False) -> str:
        from ..progress import fit_handles
        from ..settings import resolve_device

        run_dir, stop_event, board = fit_handles(run_dir, settings.epochs, stop_event, board)
        # An SVDD phase only continues on the autoencoder it started from: pretraining was complete.
        continue_svdd = (resume and len(runs.read_history(run_dir)) >= settings.epochs
                         and (run_dir / SVDD_FILE).is_file())
        status = self.pretrain(train_images, val_images, settings, run_dir, stop_event, board, resume)
        with failing_run(run_dir, board):
            dev = resolve_device(settings.device)
            if continue_svdd:
                self._restore_svdd(run_dir, dev)
            else:
                self.svdd = self._start_svdd(train_images, dev, 2 * settings.batch_size, settings.weight_decay)
                self.epochs_done = 0
            if status == "finished":
                status = self._train_svdd(train_images, val_images, settings, run_dir, stop_event, board, dev)
            else:  # stopped while pretraining: still leave a loadable detector (c from the AE so far)
                self._finish(run_dir, val_images, train_images, settings, dev)
        return status

    def _train_svdd(self, train_images, val_images, s, run_dir: Path, stop_event, board, dev) -> str:
        o, n, bs = self.options, len(train_images), s.batch_size
        total_epochs, steps = o["svdd_epochs"], math.ceil(len(train_images) / s.batch_size)
        enc = self.svdd.encoder
        opt = torch.optim.Adam(enc.parameters(), lr=o["svdd_lr"], weight_decay=o["weight_decay"])
        history = runs.read_json(run_dir / SVDD_HISTORY, []) if self.epochs_done else []
        if self.epochs_done and (run_dir / SVDD_TRAINER).is_file():
            opt.load_state_dict(torch.load(run_dir / SVDD_TRAINER, map_location="cpu", weights_only=True)["optimizer"])
        has_val = val_images is not None and len(val_images) > 0
        with board.lock:
            board.notices.append("pretraining done; Deep SVDD phase: its curves show the mean squared distance "
                                 "of the codes to the centre c")
        board.next_phase(PHASE, total_epochs, [r["train_loss"] for r in history], [r.get("val_loss") for r in history],
                         status="running", epoch=self.epochs_done, step=0, steps_per_epoch=steps, lr=o["svdd_lr"],
                         message=f"Deep SVDD epoch {self.epochs_done + 1}/{total_epochs}")
        from ..data import to_tensor

        stopped, ema, beat = False, None, time.monotonic()
        seen, t_phase = 0, time.monotonic()  # images trained on in this session of the phase, for speed and ETA
        for epoch in range(self.epochs_done + 1, total_epochs + 1):
            rng = np.random.default_rng([s.seed, 0x5FDD, epoch])  # reproducible, and a resumed epoch draws the same
            torch.manual_seed(int(rng.integers(2**62)))  # dropout, if the config has any
            order = rng.permutation(n) if s.shuffle else np.arange(n)
            enc.train()
            total, t0 = 0.0, time.monotonic()
            for step in range(1, steps + 1):
                if stop_event.is_set():
                    stopped = True
                    break
                x = to_tensor(train_images[order[(step - 1) * bs: step * bs]], dev)  # (b, C, H, W)
                dist = self.svdd(x)  # (b,) squared distances to c
                loss = dist.mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                lv = loss.item()
                if not math.isfinite(lv):
                    raise ValueError(f"svdd_lr: the Deep SVDD loss became {lv} at epoch {epoch}; lower it")
                total += lv * len(x)
                ema = lv if ema is None else 0.9 * ema + 0.1 * lv
                seen += len(x)
                rate = seen / max(time.monotonic() - t_phase, 1e-9)
                left = (n - min(step * bs, n)) + (total_epochs - epoch) * n  # images still to train on
                with board.lock:
                    board.epoch, board.step, board.images_per_s, board.eta_s = epoch, step, rate, left / rate
                    board.step_loss.append(ema)
                    board.message = f"Deep SVDD epoch {epoch}/{total_epochs}"
                if time.monotonic() - beat > 10.0:
                    run_status.write_status(run_dir, "running",
                                            f"Deep SVDD epoch {epoch}/{total_epochs} step {step}/{steps}")
                    beat = time.monotonic()
            if stopped:
                break
            val = float(batched(self.svdd, val_images, dev, 2 * bs).mean()) if has_val else None
            history.append({"epoch": epoch, "train_loss": total / n, "val_loss": val,
                            "seconds": round(time.monotonic() - t0, 3)})
            self.epochs_done = epoch
            self._save_svdd(run_dir)
            write_atomic(run_dir / SVDD_TRAINER, lambda tmp: torch.save({"optimizer": opt.state_dict(),
                                                                         "epochs_done": epoch}, tmp))
            runs.write_json_atomic(run_dir / SVDD_HISTORY, history)
            with board.lock:
                board.train_loss.append(total / n)
                board.val_loss.append(val)
                board.epoch = epoch
            run_status.write_status(run_dir, "running", f"Deep SVDD epoch {epoch}/{total_epochs} done")
        self._finish(run_dir, val_images, train_images, s, dev)
        status = "stopped" if stopped else "finished"
        msg = (f"stopped after {self.epochs_done} of {total_epochs} Deep SVDD epochs" if stopped else
               f"finished {s.epochs} pretraining and {total_epochs} Deep SVDD epochs")
        run_status.write_status(run_dir, status, msg, epoch=self.epochs_done, epochs=total_epochs)
        board.update(status=status, message=msg, epoch=self.epochs_done, eta_s=0.0 if not stopped else None)
        return status

    def _finish(self, run_dir: Path, val_images, train_images, s, dev) -> None:
        """Score statistics on the normal validation (else training) images, and every file saved."""
        has_val = val_images is not None and len(val_images) > 0
        self.svdd.eval()
        self.score_stats = self.own_calibration(run_dir, val_images if has_val else train_images,
                                                "validation" if has_val else "train", 2 * s.batch_size)
        self.save(run_dir)

    # --- files -----------------------------------------------------------------------------

    def _save_svdd(self, run_dir: Path) -> None:
        state = {f"encoder.{k}": v for k, v in self.svdd.encoder.state_dict().items()}
        write_tensors(run_dir / SVDD_FILE, {**state, "c": self.svdd.c},
                      {"format": "udd-dsvdd-1", "epochs_done": str(self.epochs_done)})

    def save(self, run_dir: Union[str, Path]) -> None:
        run_dir = Path(run_dir)
        if self.svdd is None:
            raise ValueError("dsvdd: the detector is not fitted (no centre yet)")
        self.save_ae(run_dir)
        self._save_svdd(run_dir)

    def _restore_svdd(self, run_dir: Path, device: Union[str, torch.device]) -> None:
        path = run_dir / SVDD_FILE
        state, meta = read_tensors(path)
        enc = bias_free_copy(self.model.encoder).cpu()
        want = {f"encoder.{k}": v for k, v in enc.state_dict().items()}
        missing = [k for k in want if k not in state or state[k].shape != want[k].shape]
        if missing or "c" not in state or set(state) != set(want) | {"c"}:
            raise ValueError(f"{path}: does not fit the run's autoencoder (check {missing[:1] or ['c']})")
        enc.load_state_dict({k[len("encoder."):]: v for k, v in state.items() if k != "c"})
        with torch.no_grad():
            d = enc(torch.zeros(1, *self.model.input_shape)).flatten(1).shape[1] if self.model.input_shape else None
        if d is not None and state["c"].shape != (d,):
            raise ValueError(f"{path}: centre c has shape {tuple(state['c'].shape)}, the codes have {d} numbers")
        self.svdd = SVDDScore(enc, state["c"]).to(device).eval()
        self.epochs_done = int(meta.get("epochs_done", "0"))

    @classmethod
    def load(cls, run_dir: Union[str, Path], device: str = "cpu") -> "DeepSVDDDetector":
        run_dir = Path(run_dir)
        model, opts = cls.load_ae(run_dir, device)
        info = runs.read_json(run_dir / "method.json", {})
        det = cls(model, opts, score_stats=info.get("score_stats"))
        det.prepare_model()
        if not (run_dir / SVDD_FILE).is_file():
            raise ValueError(f"{run_dir / SVDD_FILE}: missing (the Deep SVDD run has not been fitted)")
        det._restore_svdd(run_dir, device)
        return det

    def to(self, device: Union[str, torch.device]) -> "DeepSVDDDetector":
        super().to(device)
        if self.svdd is not None:
            self.svdd.to(device)
        return self

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d["image_score"] = "the squared distance of the encoder's code to the centre c"
        if self.score_stats is not None:
            d["score_stats"] = self.score_stats
        return d
