"""Mixed precision: where bfloat16 autocast is fast, and a parity check that it matches float32.

bf16 autocast runs the convolutions with bfloat16 inputs (about 2x the float32 throughput on CPUs
with AVX512-BF16 or AMX, and on recent GPUs) while weights, optimiser state and the loss stay
float32. It changes the arithmetic, so it is only used after `check_bf16_parity` has shown on real
images that the bf16 loss and gradients agree with float32 ones; training re-checks the loss every
epoch, because bf16's ~3 significant digits matter more as the reconstruction error shrinks.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Union

import torch

from .losses import mse_loss

LOSS_TOL = 1e-2  # max relative difference |L_bf16 - L_fp32| / L_fp32 of the reconstruction MSE
GRAD_TOL = 5e-2  # max relative difference ||g_bf16 - g_fp32|| / ||g_fp32|| of all weight gradients
PARITY_IMAGES = 2  # images per check: bf16 error is systematic, so a few images pin it down cheaply


def bf16_fast(device: Union[str, torch.device]) -> bool:
    """True when bf16 autocast runs on native bf16 hardware of `device` (not slow emulation)."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    if dev.type == "cpu":
        if not torch.backends.mkldnn.is_available():
            return False
        try:  # oneDNN's own test for AVX512-BF16 / AMX; a private op, so guard its absence
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return False


def autocast(device: Union[str, torch.device], enabled: bool) -> torch.autocast:
    """bf16 autocast on `device` when `enabled`; a no-op context otherwise."""
    return torch.autocast(torch.device(device).type, torch.bfloat16, enabled=enabled)


@dataclass(frozen=True)
class Parity:
    """float32 vs bf16 on the same images and weights."""

    loss_fp32: float
    loss_bf16: float
    loss_rel: float  # |L_bf16 - L_fp32| / L_fp32
    grad_rel: float | None  # ||g_bf16 - g_fp32|| / ||g_fp32||; None when gradients were not compared
    loss_tol: float = LOSS_TOL
    grad_tol: float = GRAD_TOL

    @property
    def ok(self) -> bool:
        """Both differences finite and within tolerance."""
        grad_ok = self.grad_rel is None or (math.isfinite(self.grad_rel) and self.grad_rel <= self.grad_tol)
        return math.isfinite(self.loss_rel) and self.loss_rel <= self.loss_tol and grad_ok

    def describe(self) -> str:
        """One line for notices: the measured differences and the tolerances."""
        grad = "" if self.grad_rel is None else f", gradients {self.grad_rel:.3g} (tol {self.grad_tol:g})"
        return f"bf16 vs float32: loss rel. diff {self.loss_rel:.3g} (tol {self.loss_tol:g}){grad}"


def _rel(a: float, b: float) -> float:
    """|a - b| / |b|, with 0/0 = 0 and x/0 = inf."""
    d = abs(a - b)
    return 0.0 if d == 0 else (d / abs(b) if b != 0 else math.inf)


def check_bf16_parity(model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
                      with_grad: bool = True, loss_tol: float = LOSS_TOL, grad_tol: float = GRAD_TOL) -> Parity:
    """Compare the reconstruction MSE (and its weight gradients) in float32 and in bf16 autocast.

    `inputs` (B, C, H, W) go into the model, `targets` (B, C, H, W) are what it should give back
    (the clean images when training with noise patches). Runs in eval mode so dropout draws the
    same (no) mask in both passes and no random numbers are consumed; the model's train flag and
    any existing `.grad` are restored. Only the model runs in bf16: the MSE is taken in float32.
    """
    was_training = model.training
    params = [p for p in model.parameters() if p.requires_grad]
    saved = [p.grad for p in params]
    dev = inputs.device

    def run(amp: bool) -> tuple[float, torch.Tensor | None]:
        for p in params:
            p.grad = None
        with torch.set_grad_enabled(with_grad):
            with autocast(dev, amp):
                y = model(inputs)  # (B, C, H, W), bf16 under autocast
            loss = mse_loss(targets, y.float())
            if not with_grad:
                return float(loss), None
            loss.backward()
        g = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).detach().float().reshape(-1)
                       for p in params])
        return float(loss.detach()), g

    model.eval()
    try:
        l32, g32 = run(False)
        l16, g16 = run(True)
    finally:
        for p, g in zip(params, saved):
            p.grad = g
        model.train(was_training)
    grad_rel = None
    if with_grad:
        diff, n32 = float((g16 - g32).norm()), float(g32.norm())
        grad_rel = diff / n32 if n32 > 0 else (0.0 if diff == 0 else math.inf)
    return Parity(l32, l16, _rel(l16, l32), grad_rel, loss_tol, grad_tol)
