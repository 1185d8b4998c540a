"""Training losses: reconstruction error between the clean input and the model's output.

The SSIM term reuses the gaussian-window SSIM map (`residual_map(..., "ssim")`, which is
1 - local SSIM and built from differentiable torch ops), so training and scoring measure
structure the same way.

The cross-entropy losses are for one-hot images (wafer maps: outside, good die, failing die) and
a model whose config has ``"output": "softmax"``: the output is then a probability per channel,
and MSE on it barely notices a sparse channel. On WM-811K-style maps about 2-5 % of the pixels
are failing dies, so an MSE model learns to paint every die "good" (a blank wafer); cross-entropy
charges -log p for each die it gets wrong, and the class-balanced variant weighs each channel by
the inverse of its pixel count in the batch, so the few failing dies weigh as much as the rest.
"""
from __future__ import annotations

from typing import Callable

import torch

from .residuals import residual_map

LOSSES = ("mse", "ssim", "mse+ssim", "ce", "ce-balanced")
SOFTMAX_LOSSES = ("ce", "ce-balanced")  # need a model with "output": "softmax" (probabilities)
# The magnetic_tile study (bench/RESULTS.md, "Quality on magnetic_tile"): an AE trained with an SSIM loss localises
# with the SSIM residual (AUPRO 0.60 against 0.29 with l2), and a top-1% score beats the map's mean whatever the
# loss; an AE trained otherwise keeps the reference package's scoring (l2, mean), so its scores stay the reference's.
SSIM_LOSSES = ("ssim", "mse+ssim")
SSIM_SCORING = {"residual": "ssim", "score": "topk", "topk_percent": 1.0}
SSIM_SCORING_NOTE = ("this autoencoder trained with an SSIM loss, so it is scored by default with the SSIM residual "
                     "and the mean of the top 1% of its map, which localised defects best for such models "
                     "(bench/RESULTS.md, \"Quality on magnetic_tile\"); l2 and the map's mean remain a choice")
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
_EPS = 1e-7  # floor of a probability under the log: a die predicted at exactly 0 costs 16, not inf


def mse_loss(target: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
    """Mean squared error over every pixel of (B, C, H, W), the reference package's loss."""
    return torch.mean(torch.square(recon - target))


def ssim_loss(target: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
    """1 - mean local SSIM (11x11 gaussian window, sigma 1.5) of (B, C, H, W) in [0, 1]."""
    return residual_map(target, recon, "ssim").mean()


def mse_ssim_loss(target: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
    """MSE + (1 - SSIM): MSE keeps intensities right, SSIM keeps edges and texture sharp."""
    return mse_loss(target, recon) + ssim_loss(target, recon)


def _pixel_ce(target: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """-sum_c t_c log p_c per pixel: (B, C, H, W) one-hot target and probabilities -> (B, H, W)."""
    return -(target * torch.log(probs.clamp_min(0) + _EPS)).sum(dim=1)


def ce_loss(target: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy per pixel between a one-hot target and softmax probabilities, (B, C, H, W)."""
    return _pixel_ce(target, probs).mean()


def ce_balanced_loss(target: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """Class-balanced cross-entropy: the mean, over the channels present in the batch, of each
    channel's mean pixel cross-entropy. Every value present counts alike, however few its pixels."""
    ce = _pixel_ce(target, probs)  # (B, H, W)
    counts = target.sum(dim=(0, 2, 3))  # (C,) pixels of each value in the batch
    per_class = (target * ce.unsqueeze(1)).sum(dim=(0, 2, 3)) / counts.clamp_min(1)  # (C,)
    present = counts > 0
    return per_class[present].mean() if bool(present.any()) else ce.mean()


def make_loss(name: str) -> LossFn:
    """The loss function called `name` (one of LOSSES): loss(target, recon) -> scalar."""
    table = {"mse": mse_loss, "ssim": ssim_loss, "mse+ssim": mse_ssim_loss, "ce": ce_loss,
             "ce-balanced": ce_balanced_loss}
    if name not in table:
        raise ValueError(f"loss must be one of {LOSSES}, got {name!r}")
    return table[name]


def check_loss_fits(loss: str, output: str) -> None:
    """Refuse a cross-entropy loss on a model that does not output probabilities (one line, naming loss)."""
    if loss in SOFTMAX_LOSSES and output != "softmax":
        raise ValueError(f"loss: {loss!r} needs a model that outputs probabilities; set \"output\": \"softmax\" "
                         "in its config (e.g. the wafer-26-gen preset)")


def check_fits_data(loss: str, output: str, kind: str) -> None:
    """Refuse die-class training on images (`kind` from data.data_kind, not "wafer"): a cross-entropy
    loss or a softmax output treats the channels as one-hot die classes, which a photo's are not.
    The ValueError starts with the field at fault: "loss:" or "output:"."""
    if kind == "wafer":
        return
    if loss in SOFTMAX_LOSSES:
        raise ValueError(f"loss: {loss!r} is a cross-entropy over die classes and needs wafer maps; these data are "
                         "images (train them with mse, ssim or mse+ssim)")
    if output == "softmax":
        raise ValueError("output: \"softmax\" gives die-class probabilities and needs wafer maps; these data are "
                         "images (use a model whose config leaves output at \"linear\")")


def loss_scoring(loss: object) -> dict:
    """The scoring defaults of an autoencoder trained with `loss`: `SSIM_SCORING` for an SSIM loss, else none."""
    return dict(SSIM_SCORING) if loss in SSIM_LOSSES else {}
