"""Defect regions: group the pixels of a residual map above a threshold into blobs.

Two groupings: 8-connected components (fast, exact blobs) or DBSCAN on pixel coordinates
(the reference package's denoising: pixels with too few neighbours within ``eps`` are noise,
clusters with fewer than ``min_pixels`` pixels are dropped).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from sklearn.cluster import DBSCAN

METHODS = ("components", "dbscan")
_EIGHT = np.ones((3, 3), dtype=bool)  # read-only structuring element, never mutated


@dataclass(frozen=True)
class Region:
    """One defect blob: inclusive bbox (top, left, bottom, right), pixel count, peak value, centroid (row, col)."""

    bbox: tuple[int, int, int, int]
    area: int
    peak: float
    centroid: tuple[float, float]

    def to_dict(self) -> dict:
        return {"bbox": list(self.bbox), "area": self.area, "peak": self.peak, "centroid": list(self.centroid)}


def _regions_from_labels(coords: np.ndarray, labels: np.ndarray, values: np.ndarray, min_pixels: int) -> list[Region]:
    """Summarise labelled pixels (coords (P, 2) row/col, labels (P,) >= 0, values (P,)) per label."""
    if coords.shape[0] == 0:
        return []
    n = int(labels.max()) + 1
    area = np.bincount(labels, minlength=n)  # (n,)
    peak = np.full(n, -np.inf)
    np.maximum.at(peak, labels, values)
    top = np.full(n, np.iinfo(np.int64).max)
    left = top.copy()
    bottom = np.full(n, -1, dtype=np.int64)
    right = bottom.copy()
    rows, cols = coords[:, 0].astype(np.int64), coords[:, 1].astype(np.int64)
    np.minimum.at(top, labels, rows)
    np.minimum.at(left, labels, cols)
    np.maximum.at(bottom, labels, rows)
    np.maximum.at(right, labels, cols)
    with np.errstate(invalid="ignore", divide="ignore"):
        cr = np.bincount(labels, weights=rows, minlength=n) / area
        cc = np.bincount(labels, weights=cols, minlength=n) / area
    keep = np.flatnonzero(area >= max(min_pixels, 1))
    keep = keep[np.argsort(-peak[keep], kind="stable")]  # highest peak first
    return [
        Region(
            bbox=(int(top[i]), int(left[i]), int(bottom[i]), int(right[i])),
            area=int(area[i]),
            peak=float(peak[i]),
            centroid=(float(cr[i]), float(cc[i])),
        )
        for i in keep
    ]


def find_regions(
    map2d: np.ndarray,
    threshold: float,
    method: str = "components",
    eps: float = 2.0,
    min_samples: int = 4,
    min_pixels: int = 5,
) -> list[Region]:
    """Regions of pixels with ``map2d > threshold``, sorted by peak value (highest first).

    ``components``: 8-connected blobs; ``dbscan``: DBSCAN(eps, min_samples) on pixel
    coordinates, noise pixels dropped. Either way, regions under ``min_pixels`` are dropped.
    """
    m = np.asarray(map2d)
    if m.ndim != 2:
        raise ValueError(f"map2d must be 2-D (H, W), got shape {m.shape}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if min_pixels < 0:
        raise ValueError(f"min_pixels must be >= 0, got {min_pixels}")
    hot = m > threshold  # (H, W)
    coords = np.argwhere(hot)  # (P, 2) row-major, same order as m[hot]
    values = m[hot].astype(np.float64)
    if coords.shape[0] == 0:
        return []
    if method == "components":
        lab, _ = ndimage.label(hot, structure=_EIGHT)
        labels = lab[hot].astype(np.int64) - 1
    else:
        if eps <= 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        if min_samples < 1:
            raise ValueError(f"min_samples must be >= 1, got {min_samples}")
        labels = DBSCAN(eps=eps, min_samples=min_samples).fit_predict(coords).astype(np.int64)
        keep = labels >= 0  # -1 = noise
        coords, labels, values = coords[keep], labels[keep], values[keep]
    return _regions_from_labels(coords, labels, values, min_pixels)

