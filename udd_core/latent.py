"""Latent-space tools: encode, decode, and generate new images from noised or sampled latents.

Generation is deterministic given a seed: noise comes from a private CPU ``torch.Generator``
(never the global RNG), so the same seed gives the same images on any device. Outputs are the
raw decoder values (B, C, H, W); callers clamp to [0, 1] for display, or argmax the channels
for one-hot wafer maps.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from udd_core.scoring import evaluating, model_device

_DECODE_BATCH = 64  # latents decoded per forward pass, bounds peak memory for large n


def _check_images(x: torch.Tensor, name: str = "x") -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty (B, C, H, W) tensor, got {getattr(x, 'shape', type(x))}")
    return x


def encode(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Latent codes (B, L, h, w) of images ``x`` (B, C, H, W), in eval/inference mode."""
    _check_images(x)
    with evaluating(model):
        return model.encoder(x.to(model_device(model)))


def decode(model: torch.nn.Module, z: torch.Tensor) -> torch.Tensor:
    """Decoded images (B, C, H, W) from latents ``z`` (B, L, h, w), in chunks of 64."""
    if not isinstance(z, torch.Tensor) or z.ndim != 4:
        raise ValueError(f"z must be a (B, L, h, w) tensor, got {getattr(z, 'shape', type(z))}")
    z = z.to(model_device(model))
    with evaluating(model):
        parts = [model.decoder(z[s : s + _DECODE_BATCH]) for s in range(0, z.shape[0], _DECODE_BATCH)]
    return torch.cat(parts) if parts else z.new_empty((0,))


def _normal(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Standard normal noise from a private generator (CPU, so results do not depend on device)."""
    g = torch.Generator(device="cpu").manual_seed(int(seed))
    return torch.randn(shape, generator=g, dtype=torch.float32)


def noised_samples(model: torch.nn.Module, x: torch.Tensor, sigma: float, n: int, seed: int) -> torch.Tensor:
    """``n`` variations of images ``x``: source i % B's latent + N(0, sigma^2) noise, decoded."""
    _check_images(x)
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    z = encode(model, x)  # (B, L, h, w)
    z = z[torch.arange(n, device=z.device) % z.shape[0]]  # (n, L, h, w), sources round-robin
    noise = _normal(tuple(z.shape), seed).to(z.device)
    return decode(model, z + sigma * noise)


@dataclass(frozen=True)
class LatentStats:
    """Per-latent-channel mean and standard deviation over images and positions."""

    mean: list[float]
    std: list[float]

    def __post_init__(self):
        if len(self.mean) != len(self.std) or not self.mean:
            raise ValueError(f"LatentStats mean ({len(self.mean)}) and std ({len(self.std)}) need equal, non-zero length")

    def to_dict(self) -> dict:
        return {"mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, d: dict) -> "LatentStats":
        try:
            return cls(mean=[float(v) for v in d["mean"]], std=[float(v) for v in d["std"]])
        except (KeyError, TypeError) as e:
            raise ValueError(f"LatentStats dict needs lists 'mean' and 'std': {e}") from None


def latent_stats(model: torch.nn.Module, x: torch.Tensor) -> LatentStats:
    """Fit per-channel latent statistics on images ``x`` (B, C, H, W)."""
    z = encode(model, x).double()  # (B, L, h, w)
    flat = z.transpose(0, 1).reshape(z.shape[1], -1)  # (L, B*h*w)
    std = flat.std(dim=1, correction=0) if flat.shape[1] > 1 else torch.zeros(z.shape[1], dtype=z.dtype)
    return LatentStats(mean=flat.mean(dim=1).tolist(), std=std.tolist())


def random_samples(model: torch.nn.Module, stats: LatentStats, n: int, seed: int, latent_hw: tuple[int, int]) -> torch.Tensor:
    """Decode ``n`` latents (n, L, h, w) drawn independently per position from N(mean_c, std_c^2).

    Independent positions ignore spatial correlation, so these look less natural than
    ``noised_samples``; they show what the decoder has learned to draw from scratch.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    h, w = (int(v) for v in latent_hw)
    if h < 1 or w < 1:
        raise ValueError(f"latent_hw must be two positive ints, got {latent_hw}")
    mean = torch.tensor(stats.mean, dtype=torch.float32).view(1, -1, 1, 1)  # (1, L, 1, 1)
    std = torch.tensor(stats.std, dtype=torch.float32).view(1, -1, 1, 1)
    z = mean + std * _normal((n, mean.shape[1], h, w), seed)  # (n, L, h, w)
    return decode(model, z)


def interpolate(model: torch.nn.Module, xa: torch.Tensor, xb: torch.Tensor, steps: int) -> torch.Tensor:
    """Decode ``steps`` linear blends from latent(xa) to latent(xb), endpoints included: (steps, C, H, W).

    ``xa`` and ``xb`` are single images, (C, H, W) or (1, C, H, W).
    """
    if steps < 2:
        raise ValueError(f"steps must be >= 2 to include both endpoints, got {steps}")
    xa = xa.unsqueeze(0) if xa.ndim == 3 else xa
    xb = xb.unsqueeze(0) if xb.ndim == 3 else xb
    if xa.ndim != 4 or xa.shape[0] != 1 or xa.shape != xb.shape:
        raise ValueError(f"xa and xb must be single images of equal shape, got {tuple(xa.shape)} and {tuple(xb.shape)}")
    z = encode(model, torch.cat([xa, xb]))  # (2, L, h, w)
    a = torch.linspace(0.0, 1.0, steps, device=z.device).view(-1, 1, 1, 1)  # (steps, 1, 1, 1)
    return decode(model, (1 - a) * z[0:1] + a * z[1:2])
