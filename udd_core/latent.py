"""Latent-space tools: encode, decode, and generate new images from noised or sampled latents.

Generation is deterministic given a seed: noise comes from a private CPU ``torch.Generator``
(never the global RNG), so the same seed gives the same images on any device. Outputs are the
decoder values (B, C, H, W) after the config's output (raw, or a softmax over the channels of a
one-hot model); callers clamp to [0, 1] for display, or argmax the channels
for one-hot wafer maps.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

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
        # model.decode applies the config's output (a softmax for one-hot models); bare decoders have none.
        dec = model.decode if hasattr(model, "decode") else model.decoder
        parts = [dec(z[s : s + _DECODE_BATCH]) for s in range(0, z.shape[0], _DECODE_BATCH)]
    return torch.cat(parts) if parts else z.new_empty((0,))


def _normal(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Standard normal noise from a private generator (CPU, so results do not depend on device)."""
    g = torch.Generator(device="cpu").manual_seed(int(seed))
    return torch.randn(shape, generator=g, dtype=torch.float32)


def noised_latents(model: torch.nn.Module, x: torch.Tensor, sigma: float, n: int, seed: int) -> torch.Tensor:
    """``n`` latent codes (n, L, h, w): source i % B's code + N(0, sigma^2) noise (what `noised_samples` decodes)."""
    _check_images(x)
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    z = encode(model, x)  # (B, L, h, w)
    z = z[torch.arange(n, device=z.device) % z.shape[0]]  # (n, L, h, w), sources round-robin
    noise = _normal(tuple(z.shape), seed).to(z.device)
    return z + sigma * noise


def noised_samples(model: torch.nn.Module, x: torch.Tensor, sigma: float, n: int, seed: int) -> torch.Tensor:
    """``n`` variations of images ``x``: source i % B's latent + N(0, sigma^2) noise, decoded."""
    return decode(model, noised_latents(model, x, sigma, n, seed))


@dataclass(frozen=True)
class LatentStats:
    """Mean and standard deviation of latent codes over images: per channel, or per channel and position.

    Per channel (``hw`` None): L values each, pooled over images and positions. Per position
    (``hw`` = (h, w)): L*h*w values each (channel-major), pooled over images only, so the layout
    that all images share (a wafer's round outline) survives in random latents.
    """

    mean: list[float]
    std: list[float]
    hw: Optional[tuple[int, int]] = None  # latent (h, w) of per-position statistics

    def __post_init__(self):
        if len(self.mean) != len(self.std) or not self.mean:
            raise ValueError(f"LatentStats mean ({len(self.mean)}) and std ({len(self.std)}) need equal, non-zero length")
        if self.hw is not None and (len(self.hw) != 2 or min(self.hw) < 1 or len(self.mean) % (self.hw[0] * self.hw[1])):
            raise ValueError(f"LatentStats hw {self.hw} does not divide its {len(self.mean)} values into channels")

    @property
    def channels(self) -> int:
        """L, the number of latent channels."""
        return len(self.mean) // (1 if self.hw is None else self.hw[0] * self.hw[1])

    def to_dict(self) -> dict:
        d = {"mean": list(self.mean), "std": list(self.std)}
        return d if self.hw is None else {**d, "hw": list(self.hw)}

    @classmethod
    def from_dict(cls, d: dict) -> "LatentStats":
        try:
            hw = d.get("hw")
            return cls(mean=[float(v) for v in d["mean"]], std=[float(v) for v in d["std"]],
                       hw=None if hw is None else (int(hw[0]), int(hw[1])))
        except (KeyError, TypeError, IndexError, AttributeError) as e:
            raise ValueError(f"LatentStats dict needs lists 'mean' and 'std': {e}") from None

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, std) as float32 tensors that broadcast over (n, L, h, w): (1, L, 1, 1) or (1, L, h, w)."""
        shape = (1, self.channels, 1, 1) if self.hw is None else (1, self.channels, *self.hw)
        return (torch.tensor(self.mean, dtype=torch.float32).view(shape),
                torch.tensor(self.std, dtype=torch.float32).view(shape))


def stats_of(z: torch.Tensor, per_position: bool = False) -> LatentStats:
    """Statistics of latent codes ``z`` (B, L, h, w): per channel, or per channel and position."""
    if not isinstance(z, torch.Tensor) or z.ndim != 4 or z.shape[0] == 0:
        raise ValueError(f"z must be a non-empty (B, L, h, w) tensor, got {getattr(z, 'shape', type(z))}")
    z = z.detach().double().cpu()
    # (L, samples) per channel, or (L*h*w, images) per position: each row is one distribution.
    flat = z.reshape(z.shape[0], -1).T if per_position else z.transpose(0, 1).reshape(z.shape[1], -1)
    std = flat.std(dim=1, correction=0) if flat.shape[1] > 1 else torch.zeros(flat.shape[0], dtype=flat.dtype)
    return LatentStats(mean=flat.mean(dim=1).tolist(), std=std.tolist(),
                       hw=(int(z.shape[2]), int(z.shape[3])) if per_position else None)


def latent_stats(model: torch.nn.Module, x: torch.Tensor, per_position: bool = False) -> LatentStats:
    """Fit latent statistics (per channel, or per position) on images ``x`` (B, C, H, W)."""
    return stats_of(encode(model, x), per_position)


def random_samples(model: torch.nn.Module, stats: LatentStats, n: int, seed: int, latent_hw: tuple[int, int]) -> torch.Tensor:
    """Decode ``n`` latents (n, L, h, w) drawn independently per position from the statistics' normals
    (`random_latents`).

    Independent positions ignore the correlation between neighbours, so these look less natural
    than ``noised_samples``; they show what the decoder has learned to draw from scratch.
    Per-channel statistics give every position the same distribution; per-position ones keep
    each position's own mean, i.e. the layout the training images share.
    """
    return decode(model, random_latents(stats, n, seed, latent_hw))


def random_latents(stats: LatentStats, n: int, seed: int, latent_hw: tuple[int, int]) -> torch.Tensor:
    """``n`` latent codes (n, L, h, w) drawn from the statistics' normals, each position on its own."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    h, w = (int(v) for v in latent_hw)
    if h < 1 or w < 1:
        raise ValueError(f"latent_hw must be two positive ints, got {latent_hw}")
    if stats.hw is not None and tuple(stats.hw) != (h, w):
        raise ValueError(f"latent statistics were fitted at latent size {stats.hw[0]}x{stats.hw[1]}, "
                         f"this model's latent is {h}x{w}")
    mean, std = stats.tensors()  # (1, L, 1, 1) or (1, L, h, w)
    return mean + std * _normal((n, mean.shape[1], h, w), seed)  # (n, L, h, w)


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
