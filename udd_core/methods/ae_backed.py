"""The shared part of detectors that sit on a trained pixel autoencoder (Deep SVDD, latent kNN).

Such a method pretrains the run's autoencoder with the ordinary trainer (`train.train`: same
checkpoints, history, status, board and stop), then adds its own image score on the latent code.
It has no map of its own, so its heatmap is the pretrained autoencoder's residual map (what a pixel
AE run shows); the score, not the map, decides. The run folder holds the autoencoder as today
(`config.json` + `model.safetensors`) next to the method's own files and `method.json`.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional, Union

import numpy as np
import torch
from torch import nn

from ..model import CONFIG_FILE, WEIGHTS_FILE, AutoEncoder, load_model, save_model
from ..run_status import write_status
from ..runs import read_history, read_json, write_json_atomic
from .autoencoder import AutoencoderDetector
from .base import METHOD_FILE, Detector, a_method

HEATMAP_NOTE = ("the heatmap is the pretrained autoencoder's residual map (of the residual kind chosen, {residual} "
                "by default): it shows where the reconstruction fails, while the image score, and so the "
                "decision, is the method's own latent distance")


def check_int(options: dict, name: str, lo: int, hi: int) -> int:
    v = options[name]
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise ValueError(f"{name}: expected an integer in [{lo}, {hi}], got {v!r}")
    return v


def check_float(options: dict, name: str, lo: float, hi: float, lo_open: bool = False) -> float:
    v = options[name]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not (lo < v if lo_open else lo <= v) or not v <= hi:
        raise ValueError(f"{name}: expected a number in {'(' if lo_open else '['}{lo}, {hi}], got {v!r}")
    return float(v)


def merged_options(defaults: dict, options: Optional[dict], method: str) -> dict:
    """`defaults` updated with `options`; an unknown name is a ValueError naming it."""
    if options is not None and not isinstance(options, dict):
        raise ValueError(f"options: expected a dict of {method} options, got {type(options).__name__}")
    for k in options or {}:
        if k not in defaults:
            raise ValueError(f"{k}: not {a_method(method)} option (options: {', '.join(defaults)})")
    return {**defaults, **(options or {})}


def batched(module: nn.Module, images: np.ndarray, device: torch.device, bs: int) -> torch.Tensor:
    """`module` applied to uint8 images (N, H, W, C) in batches, in eval and inference mode: concatenated outputs."""
    from ..data import to_tensor
    from ..scoring import evaluating

    out = []
    with evaluating(module):
        for s in range(0, len(images), bs):
            out.append(module(to_tensor(images[s:s + bs], device)))
    return torch.cat(out)


@contextmanager
def failing_run(run_dir: Path, board: Any) -> Iterator[None]:
    """Mark the run (status.json) and the board as failed when the block raises, then re-raise."""
    try:
        yield
    except Exception as e:
        msg = str(e) or type(e).__name__
        try:
            write_status(run_dir, "failed", msg)
        except (OSError, ValueError):
            pass  # the folder itself may be what failed; the board still says why
        board.update(status="failed", message=msg)
        raise


class AEBackedDetector(AutoencoderDetector):
    """A detector whose heatmap is a trained `AutoEncoder`'s residual (the autoencoder's maps, inherited)
    and whose score is its own."""

    generates = False  # the autoencoder is the method's first stage, not what the run offers
    own_scores = True
    resumable = True  # pretraining resumes as an autoencoder run does; the method's phase after it
    defaults: dict = {}  # the method's options and their defaults (subclasses)
    weight_file: str = ""  # the method's own safetensors file next to the autoencoder's (subclasses)

    def __init__(self, model: AutoEncoder, options: dict):
        super().__init__(model)
        self.options = options

    # --- construction ----------------------------------------------------------------------

    @classmethod
    def check_options(cls, options: Optional[dict]) -> dict:
        """The full option dict, validated (subclasses add the range checks)."""
        return merged_options(cls.defaults, options, cls.method)

    @classmethod
    def build(cls, input_shape: tuple[int, int, int], options: Optional[dict] = None, config: Any = None,
              seed: int = 0) -> "AEBackedDetector":
        config = cls.pixel_config(config)  # it pretrains a pixel autoencoder
        opts = cls.check_options(options)
        from ..train import seeded_model

        det = cls(seeded_model(config, tuple(input_shape), seed), opts)
        det.prepare_model()
        return det

    def prepare_model(self) -> None:
        """Adjust a freshly built or loaded autoencoder before training or scoring (default: nothing)."""

    def check_input(self, shape: tuple[int, int, int]) -> None:
        if self.input_shape is not None and tuple(shape[1:]) != tuple(self.input_shape[1:]):
            # the latent code's size follows the image size: a score needs the size it was fitted on
            raise ValueError(f"size {shape[1]}x{shape[2]}: the {self.method} run was fitted on "
                             f"{self.input_shape[1]}x{self.input_shape[2]} images")
        super().check_input(shape)

    # --- scores (the maps are the autoencoder's) ------------------------------------------------

    def score_module(self) -> nn.Module:
        """A traceable `nn.Module`: images (B, C, H, W) in [0, 1] -> (B,) image scores (for ONNX export)."""
        raise NotImplementedError

    def image_scores(self, x: torch.Tensor) -> torch.Tensor:
        return self.score_module()(x)

    def score_images(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """(N,) float64 scores of uint8 images (N, H, W, C), batched on the detector's device."""
        from ..scoring import model_device

        return batched(self.score_module(), images, model_device(self.model), batch_size).double().cpu().numpy()

    # --- fitting ---------------------------------------------------------------------------

    def pretrain(self, train_images: np.ndarray, val_images: Optional[np.ndarray], settings: Any,
                 run_dir: Path, stop_event: threading.Event, board: Any, resume: bool) -> str:
        """Train the autoencoder with the ordinary trainer, then load its best weights.

        On resume, a run whose pretraining already ran all its epochs skips straight to the
        method's own phase.
        """
        from ..train import train

        done = len(read_history(run_dir)) if resume else 0
        status = "finished"
        if not resume or done < settings.epochs:
            status = train(self.model, train_images, val_images, settings, run_dir, stop_event=stop_event,
                           board=board, resume=resume, then=f"the {self.method} phase next")
        best = load_model(run_dir, device=str(next(self.model.parameters()).device))
        self.model.load_state_dict(best.state_dict())
        self.model.metadata = getattr(best, "metadata", {})
        self.model.eval()
        return status

    def own_calibration(self, run_dir: Path, images: np.ndarray, source: str, batch_size: int) -> dict:
        """Score statistics of normal `images` (the validation images, else the training ones).

        The trainer's calibration.json describes the autoencoder: its residual statistics still
        scale the heatmap (which is that residual), but its image scores would set a threshold for
        the wrong score. They are replaced by this method's own scores, under every reduction name,
        since an own score does not depend on the map's reduction.
        """
        from ..runs import CALIBRATION_FILE

        d = self.score_images(images, batch_size)  # (N,) float64
        stats = {"source": source, "n_images": int(len(d)), "mean": float(d.mean()), "std": float(d.std()),
                 "q95": float(np.quantile(d, 0.95)), "q99": float(np.quantile(d, 0.99)), "max": float(d.max())}
        cal = read_json(run_dir / CALIBRATION_FILE, None)
        if isinstance(cal, dict) and isinstance(cal.get("scores"), dict):
            scores = d.tolist()
            cal["scores"] = {k: scores for k in cal["scores"]}
            cal["score_stats"] = {k: {k2: v for k2, v in stats.items() if k2 not in ("source", "n_images")}
                                  for k in cal["scores"]}
            cal["image_score"] = self.method
            write_json_atomic(run_dir / CALIBRATION_FILE, cal)
        return stats

    # --- files -----------------------------------------------------------------------------

    def write_spec(self, run_dir: Union[str, Path]) -> None:
        # config.json too, so a run stopped before its first checkpoint still names its autoencoder
        write_json_atomic(Path(run_dir) / CONFIG_FILE, self.model.config.to_dict())
        Detector.write_spec(self, run_dir)  # and method.json, which the pixel autoencoder does not write

    @classmethod
    def saved_spec(cls, run_dir: Union[str, Path]) -> dict[str, Any]:
        # Its method.json, as every method but the pixel autoencoder (whose spec this class would inherit): that
        # one left out the heatmap's words, and Inspect said "the heatmap is its anomaly map" (QA sweep 12).
        return Detector.saved_spec.__func__(cls, run_dir)

    @classmethod
    def is_saved(cls, run_dir: Union[str, Path]) -> bool:
        p = Path(run_dir)
        return all((p / f).is_file() for f in (METHOD_FILE, WEIGHTS_FILE, CONFIG_FILE, cls.weight_file))

    def save_ae(self, run_dir: Union[str, Path]) -> None:
        save_model(self.model, run_dir)
        write_json_atomic(Path(run_dir) / METHOD_FILE, self.describe())

    @classmethod
    def load_ae(cls, run_dir: Union[str, Path], device: str) -> tuple[AutoEncoder, dict]:
        """The run's autoencoder and its method.json options (validated)."""
        p = Path(run_dir)
        info = read_json(p / METHOD_FILE, None)
        if not isinstance(info, dict) or info.get("method") != cls.method:
            raise ValueError(f"{p / METHOD_FILE}: not a {cls.method} run")
        opts = cls.check_options({k: info[k] for k in cls.defaults if k in info})
        return load_model(p, device=device), opts

    def describe(self) -> dict[str, Any]:
        return {"method": self.method, **self.options, "residual": self.residuals[0],
                "heatmap": HEATMAP_NOTE.format(residual=self.residuals[0])}
