"""The pixel autoencoder as a detector: the seed's method, unchanged in behaviour and exactness.

Its map is the residual between the image and its reconstruction (l2, l2sum, l1 or ssim); its
weights and config are the run's `config.json` + `model.safetensors`, or a reference-package
folder (`AE_config.txt` + `AE_state.save`). A run folder without `method.json` is this method.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
from torch import nn

from ..model import WEIGHTS_FILE, AutoEncoder, load_model, save_model
from ..presets import PIXEL_PRESET
from ..residuals import RESIDUALS, residual_map
from .base import Detector, MapOutput


def run_trained_scoring(run_dir: Union[str, Path]) -> dict[str, Any]:
    """The scoring defaults a run's training suggests: its SSIM loss's (`losses.loss_scoring`), else a wafer
    run's (`scoring.WAFER_SCORING`); {} otherwise, and for a reference folder, which records neither."""
    from ..losses import loss_scoring
    from ..runs import read_train, train_settings, train_source
    from ..scoring import WAFER_SCORING

    info = read_train(run_dir)
    if own := loss_scoring(train_settings(info).get("loss")):
        return own
    return dict(WAFER_SCORING) if train_source(info).get("kind") == "wafer" else {}


class ResidualMap(nn.Module):
    """x (B, C, H, W) -> residual map (B, H, W) between x and the autoencoder's reconstruction.

    `features` is the backbone of the "feature" residual (None for the others).
    """

    def __init__(self, model: AutoEncoder, residual: str, features: Optional[nn.Module] = None):
        super().__init__()
        self.model, self.residual, self.features = model, residual, features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return residual_map(x, self.model(x), self.residual, features=self.features)


class AutoencoderDetector(Detector):
    """An `AutoEncoder` whose reconstruction error is the anomaly map."""

    method = "autoencoder"
    residuals = RESIDUALS
    generates = True
    resumable = True
    uses_config = True
    summary = "pixel AE of the config"

    def __init__(self, model: AutoEncoder, scoring: Optional[dict] = None):
        self.model = model
        self.scoring = dict(scoring or {})  # scoring defaults its training suggests (`run_trained_scoring`)
        self._features: Optional[nn.Module] = None  # the "feature" residual's backbone, loaded on first use

    @property
    def scoring_note(self) -> Optional[str]:
        """Why this autoencoder has scoring defaults of its own (an SSIM loss, wafer maps); None without any."""
        from ..losses import SSIM_SCORING_NOTE
        from ..scoring import WAFER_SCORING, WAFER_SCORING_NOTE

        if self.scoring.get("residual") == "ssim":
            return SSIM_SCORING_NOTE
        return WAFER_SCORING_NOTE if self.scoring == WAFER_SCORING else None

    def _feature_extractor(self, kind: str) -> Optional[nn.Module]:
        """The backbone for the "feature" residual (loaded once, on the model's device); None for the others."""
        if kind != "feature":
            return None
        if self._features is None:
            from ..backbone import FeatureExtractor

            self._features = FeatureExtractor().to(next(self.model.parameters()).device)
        return self._features

    @property
    def input_shape(self) -> Optional[tuple[int, int, int]]:  # type: ignore[override]
        return self.model.input_shape

    @classmethod
    def build(cls, input_shape: tuple[int, int, int], options: Optional[dict] = None, config: Any = None,
              seed: int = 0) -> "AutoencoderDetector":
        if options:
            raise ValueError(f"{next(iter(options))}: not an autoencoder option")
        from ..train import seeded_model

        return cls(seeded_model(cls.pixel_config(config), tuple(input_shape), seed))

    @classmethod
    def pixel_config(cls, config: Any) -> Any:
        """`config` parsed, when it is a pixel design; a ValueError naming the config for none, or for a design
        on backbone features (its channels are the backbone's: the images would never fit it)."""
        from ..config import parse_config

        if config is None:
            raise ValueError(f"config: {cls.method} needs a pixel autoencoder config (a file or a preset name)")
        c = parse_config(config)
        if c.input is not None:
            raise ValueError(f"config: its input is backbone features (the \"input\" field), and {cls.method} "
                             f"needs a pixel autoencoder: pick a pixel design (such as {PIXEL_PRESET}), or train "
                             "this one with the feature-ae method")
        return c

    @classmethod
    def preferred_preset(cls, config: Any) -> Optional[str]:
        # a design on backbone features (the feature-ae preset) cannot take images
        return None if config is None or config.input is None else PIXEL_PRESET

    def check_input(self, shape: tuple[int, int, int]) -> None:
        from ..shapes import propagate  # raises ShapeError (a ValueError) when the input is too small

        if shape[0] != self.model.config.in_channels:
            raise ValueError(f"channels: the model takes {self.model.config.in_channels}, got {shape[0]}")
        report = propagate(self.model.config, shape)
        if not report.ok:
            raise ValueError(f"size {shape[1]}x{shape[2]}: the model cannot reconstruct it ({report.problems[0].message})")

    def write_spec(self, run_dir: Union[str, Path]) -> None:
        # A pixel AE run is defined by config.json alone (no method.json), as runs were before methods existed.
        from ..model import CONFIG_FILE
        from ..runs import write_json_atomic

        write_json_atomic(Path(run_dir) / CONFIG_FILE, self.model.config.to_dict())

    def _kind(self, residual: Optional[str]) -> str:
        kind = residual or self.residuals[0]
        if kind not in self.residuals:
            raise ValueError(f"residual: must be one of {self.residuals} for {self.method}, got {kind!r}")
        return kind

    def anomaly_maps(self, x: torch.Tensor, residual: Optional[str] = None) -> MapOutput:
        kind = self._kind(residual)
        y = self.model(x)  # (B, C, H, W)
        if y.shape != x.shape:
            raise ValueError(f"model output shape {tuple(y.shape)} differs from input shape {tuple(x.shape)}")
        return MapOutput(maps=residual_map(x, y, kind, features=self._feature_extractor(kind)), recon=y)

    def map_module(self, residual: Optional[str] = None) -> nn.Module:
        kind = self._kind(residual)
        return ResidualMap(self.model, kind, self._feature_extractor(kind)).eval()

    def fit(self, train_images: np.ndarray, val_images: Optional[np.ndarray], settings: Any,
            run_dir: Union[str, Path], *, stop_event: Optional[threading.Event] = None,
            board: Any = None, resume: bool = False) -> str:
        from ..train import train  # train imports scoring and this package's users; keep it one-way

        return train(self.model, train_images, val_images, settings, run_dir, stop_event=stop_event,
                     board=board, resume=resume)

    def save(self, run_dir: Union[str, Path]) -> None:
        save_model(self.model, run_dir)

    def describe(self) -> dict[str, Any]:
        return {"method": self.method, **self.scoring}

    @classmethod
    def saved_spec(cls, run_dir: Union[str, Path]) -> dict[str, Any]:
        return {"method": cls.method, **run_trained_scoring(run_dir)}

    @classmethod
    def is_saved(cls, run_dir: Union[str, Path]) -> bool:
        from ..model import is_model_dir

        return is_model_dir(run_dir)

    @classmethod
    def load(cls, run_dir: Union[str, Path], device: str = "cpu", weights: str = WEIGHTS_FILE) -> "AutoencoderDetector":
        return cls(load_model(run_dir, weights_name=weights, device=device), run_trained_scoring(run_dir))

    def to(self, device: Union[str, torch.device]) -> "AutoencoderDetector":
        self.model.to(device)
        if self._features is not None:
            self._features.to(device)
        return self
