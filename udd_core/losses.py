"""Training losses: reconstruction error between the clean input and the model's output.

The SSIM term reuses scoring's gaussian-window SSIM map (`residual_map(..., "ssim")`, which is
1 - local SSIM and built from differentiable torch ops), so training and scoring measure
structure the same way.
"""
from __future__ import annotations

from typing import Callable

import torch

from .scoring import residual_map

LOSSES = ("mse", "ssim", "mse+ssim")
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def mse_loss(target: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
    """Mean squared error over every pixel of (B, C, H, W), the reference package's loss."""
    return torch.mean(torch.square(recon - target))


def ssim_loss(target: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
    """1 - mean local SSIM (11x11 gaussian window, sigma 1.5) of (B, C, H, W) in [0, 1]."""
    return residual_map(target, recon, "ssim").mean()


def mse_ssim_loss(target: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
    """MSE + (1 - SSIM): MSE keeps intensities right, SSIM keeps edges and texture sharp."""
    return mse_loss(target, recon) + ssim_loss(target, recon)


def make_loss(name: str) -> LossFn:
    """The loss function called `name` ('mse', 'ssim' or 'mse+ssim'): loss(target, recon) -> scalar."""
    table = {"mse": mse_loss, "ssim": ssim_loss, "mse+ssim": mse_ssim_loss}
    if name not in table:
        raise ValueError(f"loss must be one of {LOSSES}, got {name!r}")
    return table[name]
