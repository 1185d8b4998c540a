"""Rendering of inspection results as RGB pictures and PNGs, numpy and Pillow only (no matplotlib).

Residual maps are coloured on a FIXED scale (`HeatScale`) taken from the normal statistics of
the run, so the same colour means the same residual in every image; a per-image stretch would
paint a perfect part as red as a broken one. Wafer maps (3 one-hot channels) are drawn as die
maps in three fixed colours.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

# Anchors of an inferno-like colormap (dark purple -> orange -> pale yellow): perceptually
# ordered and readable in gray print; interpolated linearly between the anchors.
_CMAP_ANCHORS = np.array([
    (0, 0, 4), (31, 12, 72), (85, 15, 109), (136, 34, 106), (186, 54, 85),
    (227, 89, 51), (249, 140, 10), (249, 201, 50), (252, 255, 164)], dtype=np.float64)
THRESHOLD_RGB = (0, 220, 255)  # cyan: pixels above the pixel threshold
TRUTH_RGB = (60, 255, 60)  # green: the ground-truth defect mask
# Outside, good die, failing die: the one wafer palette of every page, export and report.
WAFER_RGB = np.array([(40, 40, 40), (150, 150, 150), (230, 60, 50)], dtype=np.uint8)
WAFER_RGB.flags.writeable = False  # shared by every call: nobody may repaint it
WAFER_DIES = "dark = outside the wafer, grey = good die, red = failing die"  # WAFER_RGB in words
WAFER_LEGEND = f"Wafer maps: {WAFER_DIES}; in the overlay the dies are greys (failing dies lightest) under the heat colours"
_WAFER_GRAY = np.array([25.0, 120.0, 235.0], dtype=np.float32)  # overlay base: failing dies brightest
_OVERLAY_ALPHA = 0.8  # opacity of the heat colour at the top of the scale; 0 at the bottom
# The heat's strength in the border the image score leaves out: shown, not stressed (photo edges vary more than
# the part, and drew the eye off the defect: bench/RESULTS.md, "Do the heatmaps point at the defect?").
_BORDER_FADE = 0.3


def outlines_legend(truth: bool, threshold: str = "the pixel threshold") -> str:
    """The words for `overlay_rgb`'s outlines (`THRESHOLD_RGB`, `TRUTH_RGB`), without a full stop; ``truth``:
    a mask is drawn (wafer maps have none), ``threshold``: which pixel threshold the cyan outline marks."""
    return f"cyan outline: above {threshold}" + ("; green outline: the ground-truth defect" if truth else "")


@dataclass(frozen=True)
class HeatScale:
    """Fixed colour scale of residual maps: ``vmin`` -> darkest, ``vmax`` -> brightest, and the
    pixel ``threshold`` drawn as a contour (all in the maps' units)."""

    vmin: float
    vmax: float
    threshold: float

    def unit(self, m: np.ndarray) -> np.ndarray:
        """Map values to [0, 1] on this scale (clipped)."""
        span = max(self.vmax - self.vmin, 1e-12)
        return np.clip((np.asarray(m, dtype=np.float32) - self.vmin) / span, 0.0, 1.0)


def colormap(t: np.ndarray) -> np.ndarray:
    """Values in [0, 1] (H, W) -> (H, W, 3) uint8 colours."""
    t = np.clip(np.asarray(t, dtype=np.float64), 0.0, 1.0)
    x = np.linspace(0.0, 1.0, len(_CMAP_ANCHORS))
    rgb = np.stack([np.interp(t, x, _CMAP_ANCHORS[:, k]) for k in range(3)], axis=-1)
    return np.rint(rgb).astype(np.uint8)


def scale_bar_rgb(width: int = 256, height: int = 12) -> np.ndarray:
    """The colormap as a horizontal bar (height, width, 3) uint8, low on the left: a legend for heatmaps."""
    return np.repeat(colormap(np.linspace(0.0, 1.0, width))[None], height, axis=0)


def plotly_colorscale() -> list[list]:
    """The same colormap as a plotly colorscale, in rgb() strings (hex '#000004' collides with
    Streamlit's theme placeholder colours and gets repainted)."""
    x = np.linspace(0.0, 1.0, len(_CMAP_ANCHORS))
    return [[float(v), "rgb({},{},{})".format(*(int(c) for c in rgb))] for v, rgb in zip(x, _CMAP_ANCHORS)]


def zoom(a: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour upscaling of the two leading axes (H, W, ...) by an integer factor."""
    if factor <= 1:
        return a
    return np.repeat(np.repeat(a, factor, axis=0), factor, axis=1)


def auto_zoom(h: int, w: int, target: int = 128) -> int:
    """Integer factor that brings the shorter side to at least ``target`` px (1 for large images)."""
    return max(1, -(-target // max(1, min(h, w))))


def contour(mask: np.ndarray) -> np.ndarray:
    """Inner boundary of a boolean mask (H, W): mask pixels with a 4-neighbour outside it."""
    m = np.asarray(mask, dtype=bool)
    p = np.pad(m, 1, constant_values=False)
    inner = p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    return m & ~inner


def as_rgb(image: np.ndarray, wafer: bool = False) -> np.ndarray:
    """A cached uint8 image (H, W, C) -> (H, W, 3) uint8 for display; wafers as coloured die maps."""
    a = np.asarray(image)
    if a.ndim == 2:
        a = a[..., None]
    if wafer:
        return WAFER_RGB[np.argmax(a, axis=-1)]
    return np.repeat(a, 3, axis=-1) if a.shape[-1] == 1 else a[..., :3].astype(np.uint8)


def _gray(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (H, W) float32 luminance in [0, 255] (ITU-R 601-2 weights)."""
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def border_band(shape: tuple[int, int], border: int) -> np.ndarray:
    """(H, W) bool: the pixels within `border` of the edge, which an image score with that border leaves out."""
    band = np.zeros(shape, dtype=bool)
    if border > 0:
        band[:border], band[-border:], band[:, :border], band[:, -border:] = True, True, True, True
    return band


def heat_rgb(map2d: np.ndarray, scale: HeatScale, factor: int = 1, border: int = 0) -> np.ndarray:
    """The residual map alone in colours (H*f, W*f, 3) uint8, with the threshold contour; the `border` (map
    pixels) the image score leaves out faded towards grey, without contour."""
    m = zoom(np.asarray(map2d, dtype=np.float32), factor)
    out = colormap(scale.unit(m))
    band = border_band(m.shape, border * factor)
    out[band] = np.rint(out[band] * _BORDER_FADE + 128 * (1 - _BORDER_FADE)).astype(np.uint8)
    out[contour((m > scale.threshold) & ~band)] = THRESHOLD_RGB
    return out


def overlay_rgb(image: np.ndarray, map2d: np.ndarray, scale: HeatScale, mask: np.ndarray | None = None,
                wafer: bool = False, factor: int = 1, border: int = 0) -> np.ndarray:
    """The image in gray with the residual blended on top (opacity grows with the residual), the
    threshold contour in cyan and the ground-truth contour in green: (H*f, W*f, 3) uint8. In the `border`
    (map pixels) the image score leaves out, the heat is faded and has no threshold contour."""
    a = np.asarray(image)
    gray = _WAFER_GRAY[np.argmax(a, axis=-1)] if wafer else _gray(as_rgb(a).astype(np.float32))
    base = zoom(gray, factor)  # (H, W)
    m = zoom(np.asarray(map2d, dtype=np.float32), factor)
    t = scale.unit(m)
    band = border_band(m.shape, border * factor)
    a = (_OVERLAY_ALPHA * t * np.where(band, _BORDER_FADE, 1.0))[..., None]  # (H, W, 1): normal pixels: the image
    out = base[..., None] * (1 - a) + colormap(t).astype(np.float32) * a
    out = np.rint(out).astype(np.uint8)
    out[contour((m > scale.threshold) & ~band)] = THRESHOLD_RGB
    if mask is not None:
        out[contour(zoom(np.asarray(mask, dtype=bool), factor))] = TRUTH_RGB
    return out


def png_bytes(image: np.ndarray) -> bytes:
    """One picture, (H, W) gray or (H, W, 3) RGB uint8 (or (H, W, 1)), as PNG file bytes."""
    a = np.asarray(image)
    if a.dtype != np.uint8 or not (a.ndim == 2 or a.ndim == 3 and a.shape[2] in (1, 3)):
        raise ValueError(f"image must be uint8 (H, W) or (H, W, 3), got {a.dtype} {a.shape}")
    a = a[..., 0] if a.ndim == 3 and a.shape[2] == 1 else a  # Pillow takes gray as (H, W)
    buf = io.BytesIO()
    # compress_level 3 instead of Pillow's 6: quicker to encode the many pictures of a report or a zip
    Image.fromarray(np.ascontiguousarray(a)).save(buf, "PNG", compress_level=3)
    return buf.getvalue()


def heatmap_png(image: np.ndarray, map2d: np.ndarray, scale: HeatScale, mask: np.ndarray | None = None,
                wafer: bool = False, factor: int = 1, border: int = 0) -> bytes:
    """PNG of `overlay_rgb`: the image size times ``factor``."""
    image, map2d = np.asarray(image), np.asarray(map2d)
    if image.shape[:2] != map2d.shape:
        raise ValueError(f"image {image.shape[:2]} and map {map2d.shape} must have the same height and width")
    if mask is not None and np.shape(mask) != map2d.shape:
        raise ValueError(f"mask {np.shape(mask)} and map {map2d.shape} must have the same shape")
    return png_bytes(overlay_rgb(image, map2d, scale, mask, wafer, factor, border))
