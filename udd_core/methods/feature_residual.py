"""The feature autoencoder's anomaly map as a pure, traceable `nn.Module` (the glue is feature_ae.py).

Backbone features, standardised per channel, go through the AE; the map is the per-location squared
error of its reconstruction, each channel's scaled by a weight, averaged over channels and upsampled
bilinearly to the image. `parts` also gives the image-score factor of the same pass (the latent
novelty, `latent_knn.CodeNovelty`), so that the ONNX export runs the backbone once.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..model import AutoEncoder


def feature_error(f: torch.Tensor, g: torch.Tensor, size: tuple[int, int],
                  weight: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Per-location squared error of features (B, C, h, w) x2, channel mean, upsampled: (B, H, W).

    `weight` (C,) scales each channel's error (the "channel" error: 1 / its mean error on normal images).
    """
    d = (f - g).square()  # (B, C, h, w)
    if weight is not None:
        d = d * weight.reshape(1, -1, 1, 1)
    e = d.mean(dim=1, keepdim=True)  # (B, 1, h, w)
    return F.interpolate(e, size=size, mode="bilinear", align_corners=False)[:, 0]


class FeatureResidualMap(nn.Module):
    """x (B, C, H, W) in [0, 1] -> feature-error map (B, H, W): backbone, standardise, AE, error, upsample.

    With `novelty` (a `latent_knn.CodeNovelty`), `parts(x)` also gives the image-score factor (B,) of
    the same codes; without, the factor is None.
    """

    def __init__(self, features: nn.Module, model: AutoEncoder, mean: torch.Tensor, std: torch.Tensor,
                 weight: torch.Tensor, novelty: Optional[nn.Module] = None):
        super().__init__()
        self.features, self.model, self.novelty = features, model, novelty
        self.register_buffer("weight", weight.reshape(-1).clone())  # (Cf,)
        self.register_buffer("mean", mean.reshape(1, -1, 1, 1).clone())  # (1, Cf, 1, 1)
        self.register_buffer("std", std.reshape(1, -1, 1, 1).clone())

    def standardised(self, x: torch.Tensor) -> torch.Tensor:
        return (self.features(x) - self.mean) / self.std  # (B, Cf, h, w)

    def parts(self, x: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """(maps (B, H, W), score factor (B,) or None) of one pass through backbone and AE."""
        return self.parts_of_features(self.standardised(x), (x.shape[-2], x.shape[-1]))

    def parts_of_features(self, f: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        z = self.model.encode(f)  # (B, latent, h', w')
        maps = feature_error(f, self.model.decode(z), size, self.weight)
        return maps, None if self.novelty is None else self.novelty(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.parts(x)[0]

