"""Residual maps: how far a reconstruction is from its input, per pixel, and the Gaussian smoothing of maps.

The pixel autoencoder's maps (l2, l2sum, l1, ssim, and the perceptual `feature` residual) come from here;
`smooth_maps` is the one smoothing every method's map gets before it is scored (`scoring.score_images`),
shown (Inspect) or exported (`udd export`).
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F

RESIDUALS = ("l2", "l2sum", "l1", "ssim", "feature")
# What one value of each residual map measures: the unit of a score, said in reports and on Inspect.
RESIDUAL_MEANING = {
    "l2": "the squared difference between a pixel (in [0, 1]) and its reconstruction, mean over the channels",
    "l2sum": "the squared difference between a pixel (in [0, 1]) and its reconstruction, summed over the channels",
    "l1": "the absolute difference between a pixel (in [0, 1]) and its reconstruction, mean over the channels",
    "ssim": "one minus the local structural similarity (SSIM) of the input and its reconstruction",
    "feature": "the distance between the pretrained backbone's features of the input and of its reconstruction",
}

# SSIM constants for data in [0, 1] (K1 = 0.01, K2 = 0.03 of the data range).
_SSIM_C1 = 0.01**2
_SSIM_C2 = 0.03**2
_SSIM_WINDOW = 11
_SSIM_SIGMA = 1.5


def gaussian_weights(size: int, sigma: float) -> list[float]:
    """Taps of a 1-D normalised Gaussian of odd length ``size``, as Python floats.

    Plain numbers, not a tensor: the same taps on every device, and a traced or exported graph
    (`udd export`) holds them as constants instead of computing them from its input.
    """
    r = size // 2
    k = [math.exp(-0.5 * (t / sigma) ** 2) for t in range(-r, r + 1)]
    total = math.fsum(k)
    return [v / total for v in k]


def _blur(x: torch.Tensor, size: int, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of every channel of ``x`` (B, G, H, W), same size out.

    Reflect padding keeps borders from being darkened (zero padding would fake a low residual
    ring around every map); it needs pad < side, so tiny maps fall back to replicate padding.
    A weighted sum of shifted views is ~2x faster on CPU than a grouped (depthwise) conv2d.
    Traceable for ONNX export: the taps and the padding mode depend on sizes only, never on values.
    """
    h, w = x.shape[-2:]
    r = size // 2
    k = gaussian_weights(size, sigma)
    mode = "reflect" if r < min(h, w) else "replicate"
    p = F.pad(x, (r, r, r, r), mode=mode)  # (B, G, H + 2r, W + 2r)
    rows = p[..., 0:h, :] * k[0]  # along H -> (B, G, H, W + 2r)
    for i in range(1, size):
        rows.add_(p[..., i : i + h, :], alpha=k[i])
    out = rows[..., 0:w] * k[0]  # along W -> (B, G, H, W)
    for i in range(1, size):
        out.add_(rows[..., i : i + w], alpha=k[i])
    return out


def _ssim_residual(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """1 - local SSIM per pixel, averaged over channels: (B, C, H, W) x2 -> (B, H, W)."""
    c = x.shape[1]
    # One grouped blur for all five local moments instead of five separate passes.
    stats = _blur(torch.cat([x, y, x * x, y * y, x * y], dim=1), _SSIM_WINDOW, _SSIM_SIGMA)
    mx, my, mxx, myy, mxy = stats.split(c, dim=1)  # each (B, C, H, W)
    vx = mxx - mx * mx
    vy = myy - my * my
    cxy = mxy - mx * my
    num = (2 * mx * my + _SSIM_C1) * (2 * cxy + _SSIM_C2)
    den = (mx * mx + my * my + _SSIM_C1) * (vx + vy + _SSIM_C2)
    return (1.0 - num / den).mean(dim=1)


def residual_map(x: torch.Tensor, y: torch.Tensor, kind: str = "l2", smooth_sigma: float = 0.0,
                 features: Optional[torch.nn.Module] = None) -> torch.Tensor:
    """Per-pixel residual between inputs ``x`` and reconstructions ``y`` (B, C, H, W) -> (B, H, W).

    ``kind``: l2 (squared error, channel mean), l2sum (channel sum), l1 (absolute error, channel
    mean), ssim (1 - local SSIM, channel mean) or feature (distance between pretrained backbone
    features of x and y, see `feature_residual`; ``features`` is the extractor to use, loaded when
    None). ``smooth_sigma`` > 0 applies a Gaussian blur to the map, which suppresses isolated noisy
    pixels without moving blobs.
    """
    if x.ndim != 4 or x.shape != y.shape:
        raise ValueError(f"x and y must both be (B, C, H, W) of equal shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    if kind not in RESIDUALS:
        raise ValueError(f"residual kind must be one of {RESIDUALS}, got {kind!r}")
    if kind == "ssim":
        m = _ssim_residual(x, y)
    elif kind == "feature":
        m = feature_residual(x, y, features)
    else:
        d = x - y
        d = d.abs() if kind == "l1" else d * d
        m = d.sum(dim=1) if kind == "l2sum" else d.mean(dim=1)
    return smooth_maps(m, smooth_sigma)


def feature_residual(x: torch.Tensor, y: torch.Tensor, features: Optional[torch.nn.Module] = None) -> torch.Tensor:
    """Euclidean distance between backbone features of x and y (B, C, H, W), C = 1 or 3 -> (B, H, W).

    A perceptual residual: the frozen ImageNet backbone (`backbone.FeatureExtractor`, stride-8 +
    stride-16 features) sees texture and structure, so the blur an autoencoder spreads over every
    pixel costs little while a missing or added structure costs a lot. The (B, h, w) distance map is
    upsampled bilinearly to (H, W). ``features`` None loads the backbone (about a second): callers
    that score many batches keep one extractor and pass it.
    """
    if x.shape[1] not in (1, 3):
        raise ValueError(f"residual feature: needs 1 or 3 image channels, got {x.shape[1]}")
    if features is None:
        from .backbone import FeatureExtractor  # lazy: the other residuals never pay for the backbone

        features = FeatureExtractor().to(x.device)
    fx, fy = features(torch.cat([x, y.to(x.dtype)])).chunk(2)  # each (B, D, h, w); one backbone pass
    d = (fx - fy).pow(2).sum(dim=1, keepdim=True).sqrt()  # (B, 1, h, w)
    return F.interpolate(d, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]


def smooth_maps(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian smoothing of anomaly maps (B, H, W) -> (B, H, W); ``sigma`` 0 returns them as they are.

    The one smoothing of udd: `residual_map`, `udd score`, Inspect and the exported ONNX graph all
    call it, so the exported maps cannot drift from udd's. The kernel spans 3 sigma each side.
    Traceable (the kernel depends on ``sigma`` and the map size only).
    """
    if not math.isfinite(sigma) or sigma < 0:
        raise ValueError(f"smooth_sigma must be a finite number >= 0, got {sigma}")
    if sigma == 0:
        return maps
    size = 2 * math.ceil(3 * sigma) + 1
    return _blur(maps.unsqueeze(1), size, sigma).squeeze(1)
