"""What the training loop feeds the autoencoder: pixels from uint8 images, or cached backbone features.

`train.train` asks a feed for float batches by index and for the pictures its live probes show.
An `ImageFeed` turns the uint8 images (N, H, W, C) into [0, 1] tensors a batch at a time (the pixel
AE, unchanged); a `FeatureFeed` hands out rows of a float16 feature cache (N, C, h, w) computed once
per image, and shows each epoch's residual heatmap on the probe images, since features cannot be
looked at as pictures. Both keep the uint8 images as the source of truth. `cache_features` fills
that cache, a batch of images at a time through the frozen backbone.
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch import nn

from .data import to_tensor
from .feature_input import FeatureInput, cache_bytes

EMBED_BATCH = 16  # images per backbone pass while caching features


class ImageFeed:
    """uint8 images (N, H, W, C) fed as (b, C, H, W) float tensors in [0, 1]."""

    paints_noise = True  # denoising patches are painted on these pixels

    def __init__(self, images: np.ndarray):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one fed tensor."""
        n, h, w, c = self.images.shape
        return (c, h, w)

    def tensor(self, index: Any, device: Any) -> torch.Tensor:
        """Rows `index` (a slice or index array) as (b, C, H, W) float32 on `device`."""
        return to_tensor(self.images[index], device)

    def probe_pictures(self, n: int) -> np.ndarray:
        """The first `n` inputs as shown above each probe: (n, H, W, C) uint8."""
        return self.images[:n]

    def probe_outputs(self, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
        """Reconstructions (b, C, H, W) -> (b, H, W, C) uint8 for display."""
        return y.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


HeatFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x, y) features -> (b, H, W) map at image size


class FeatureFeed:
    """Cached features (N, C, h, w) float16 of uint8 images (N, H, W, C); batches come back float32."""

    paints_noise = False  # patches would have to be painted before the backbone, which the cache skips

    def __init__(self, features: torch.Tensor, images: np.ndarray, heat: HeatFn):
        if len(features) != len(images):
            raise ValueError(f"features: {len(features)} rows for {len(images)} images")
        self.features, self.images, self.heat = features, images, heat

    def __len__(self) -> int:
        return len(self.features)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.features.shape[1:])  # type: ignore[return-value]

    def tensor(self, index: Any, device: Any) -> torch.Tensor:
        if isinstance(index, np.ndarray):
            index = torch.from_numpy(index)
        return self.features[index].to(device=device, dtype=torch.float32)  # (b, C, h, w)

    def probe_pictures(self, n: int) -> np.ndarray:
        """The first `n` images in RGB (the heatmaps below them are in colour): (n, H, W, 3) uint8."""
        a = self.images[:n]
        return np.repeat(a, 3, axis=-1) if a.shape[-1] == 1 else a[..., :3]

    def probe_outputs(self, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
        """The per-location feature error, upsampled to the image, as colour heatmaps (b, H, W, 3) uint8.

        One colour scale for the probes of an epoch (0 to the 99th percentile of their maps), so
        a probe that lights up more than the others stands out.
        """
        from .render import colormap  # the heatmap colours of Inspect

        m = self.heat(x, y).float().cpu().numpy()  # (b, H, W)
        top = float(np.quantile(m, 0.99)) if m.size else 1.0
        return colormap(np.clip(m / max(top, 1e-12), 0.0, 1.0))


def as_feed(data: Any) -> Optional[Any]:
    """A feed for `data`: itself when it is one, an ImageFeed for a uint8 array, None for None."""
    if data is None or isinstance(data, (ImageFeed, FeatureFeed)):
        return data
    return ImageFeed(data)


# --- the feature cache a FeatureFeed serves ------------------------------------------------

def make_feature_maps(spec: FeatureInput) -> nn.Module:
    """The frozen extractor for `spec` (B, C, H, W) in [0, 1] -> (B, Cf, h, w), with the installed weights."""
    from .backbone import FeatureExtractor

    return FeatureExtractor(spec.layers, spec.pool, spec.backbone)


def cache_features(extractor: nn.Module, images: np.ndarray, device: Any = "cpu",
                   stop_event: Optional[threading.Event] = None,
                   progress: Optional[Callable[[int, int], None]] = None) -> Optional[torch.Tensor]:
    """Features of uint8 images (N, H, W, C) as one float16 CPU tensor (N, Cf, h, w); None if stopped.

    float16 halves the cache (see `feature_cache_bytes`); training casts each batch back to float32.
    """
    out: Optional[torch.Tensor] = None
    n = len(images)
    with torch.inference_mode():
        for s in range(0, n, EMBED_BATCH):
            if stop_event is not None and stop_event.is_set():
                return None
            f = extractor(to_tensor(images[s:s + EMBED_BATCH], device))  # (b, Cf, h, w)
            if out is None:
                out = torch.empty((n, *f.shape[1:]), dtype=torch.float16)
            out[s:s + len(f)] = f.to("cpu", torch.float16)
            if progress is not None:
                progress(min(s + EMBED_BATCH, n), n)
    return out if out is not None else torch.empty(0, dtype=torch.float16)


def channel_stats(feats: torch.Tensor, chunk: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std (Cf,) of cached features (N, Cf, h, w), in float64 chunks (no full float32 copy)."""
    c = feats.shape[1]
    total, sq, count = torch.zeros(c, dtype=torch.float64), torch.zeros(c, dtype=torch.float64), 0
    for s in range(0, len(feats), chunk):
        f = feats[s:s + chunk].to(torch.float64)  # (b, Cf, h, w)
        total += f.sum(dim=(0, 2, 3))
        sq += f.square().sum(dim=(0, 2, 3))
        count += f.shape[0] * f.shape[2] * f.shape[3]
    mean = total / count
    var = (sq / count - mean.square()).clamp_min(0.0)
    return mean.float(), var.sqrt().float().clamp_min(1e-6)


def feature_cache_bytes(spec: Optional[FeatureInput], image_shape: tuple[int, int, int], n_images: int) -> int:
    """Bytes of the float16 feature cache for `n_images` images of `image_shape` (C, H, W): for the Train page."""
    return cache_bytes(spec or FeatureInput(), image_shape, n_images)
