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
from ..scoring import RESIDUALS, residual_map
from .base import Detector, MapOutput


class ResidualMap(nn.Module):
    """x (B, C, H, W) -> residual map (B, H, W) between x and the autoencoder's reconstruction."""

    def __init__(self, model: AutoEncoder, residual: str):
        super().__init__()
        self.model, self.residual = model, residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return residual_map(x, self.model(x), self.residual)


class AutoencoderDetector(Detector):
    """An `AutoEncoder` whose reconstruction error is the anomaly map."""

    method = "autoencoder"
    residuals = RESIDUALS
    generates = True

    def __init__(self, model: AutoEncoder):
        self.model = model

    @property
    def input_shape(self) -> Optional[tuple[int, int, int]]:  # type: ignore[override]
        return self.model.input_shape

    def _kind(self, residual: Optional[str]) -> str:
        kind = residual or self.residuals[0]
        if kind not in self.residuals:
            raise ValueError(f"residual: must be one of {self.residuals} for an autoencoder, got {kind!r}")
        return kind

    def anomaly_maps(self, x: torch.Tensor, residual: Optional[str] = None) -> MapOutput:
        kind = self._kind(residual)
        y = self.model(x)  # (B, C, H, W)
        if y.shape != x.shape:
            raise ValueError(f"model output shape {tuple(y.shape)} differs from input shape {tuple(x.shape)}")
        return MapOutput(maps=residual_map(x, y, kind), recon=y)

    def map_module(self, residual: Optional[str] = None) -> nn.Module:
        return ResidualMap(self.model, self._kind(residual)).eval()

    def fit(self, train_images: np.ndarray, val_images: Optional[np.ndarray], settings: Any,
            run_dir: Union[str, Path], *, stop_event: Optional[threading.Event] = None,
            board: Any = None, resume: bool = False) -> str:
        from ..train import train  # train imports scoring and this package's users; keep it one-way

        return train(self.model, train_images, val_images, settings, run_dir, stop_event=stop_event,
                     board=board, resume=resume)

    def save(self, run_dir: Union[str, Path]) -> None:
        save_model(self.model, run_dir)

    @classmethod
    def load(cls, run_dir: Union[str, Path], device: str = "cpu", weights: str = WEIGHTS_FILE) -> "AutoencoderDetector":
        return cls(load_model(run_dir, weights_name=weights, device=device))

    def to(self, device: Union[str, torch.device]) -> "AutoencoderDetector":
        self.model.to(device)
        return self
