"""Synthetic data: generated data sets, and synthetic variations of real images.

- `wafer_maps`: WM-811K-style wafer maps with the nine failure-pattern classes.
- `write_surface_dataset`: a textured surface with scratches, spots and cracks, in MVTec layout.
- `add_noise_patches`: painted rectangles (or stencils) on images: the denoising target in training.
- `preprocess`: crop, cut into tiles and add jittered copies (offset, scale, brightness, contrast).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

WAFER_CLASSES = ("Center", "Donut", "Edge-Loc", "Edge-Ring", "Loc", "Near-full", "Random", "Scratch", "none")
SURFACE_DEFECTS = ("scratch", "spot", "crack")

# ----------------------------------------------------------------------------- wafer maps


def _soft(d: np.ndarray, edge: float, width: float) -> np.ndarray:
    """1 well inside `edge`, 0 well outside, a logistic ramp `width` wide in between."""
    return 1.0 / (1.0 + np.exp(np.clip((d - edge) / width, -50, 50)))


def _blob(yy, xx, cy, cx, radius, rng) -> np.ndarray:
    """Distance to (cy, cx) in units of `radius`, stretched into a randomly rotated ellipse."""
    a = rng.uniform(0, np.pi)
    u, v = (yy - cy) * np.cos(a) + (xx - cx) * np.sin(a), (xx - cx) * np.cos(a) - (yy - cy) * np.sin(a)
    ru, rv = radius * rng.uniform(0.75, 1.25, 2)
    return np.hypot(u / ru, v / rv)


def _scratch_distance(yy, xx, rng) -> np.ndarray:
    """Distance of each die to a random, gently curved stroke (a quadratic Bezier curve)."""
    p0 = rng.uniform(-0.6, 0.6, 2)
    ang, length = rng.uniform(0, 2 * np.pi), rng.uniform(0.7, 1.4)
    p2 = p0 + length * np.array([np.sin(ang), np.cos(ang)])
    bend = rng.normal(0, 0.2) * np.array([np.cos(ang), -np.sin(ang)])
    p1 = (p0 + p2) / 2 + bend
    t = np.linspace(0, 1, 64)[:, None]
    pts = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2  # (64, 2) as (y, x)
    d = np.hypot(yy[..., None] - pts[:, 0], xx[..., None] - pts[:, 1])  # (S, S, 64)
    return d.min(-1)


def _fail_probability(cls: str, yy, xx, r, theta, die: float, rng) -> np.ndarray:
    """Per-die failure probability (S, S) of one wafer of class `cls` (coordinates in wafer radii)."""
    p = np.full(r.shape, rng.uniform(0.03, 0.12))  # every wafer has sparse random fails ...
    p[r > 1 - 1.5 * die] *= 1.8  # ... a little denser on the rim, as in real lots
    dense = rng.uniform(0.8, 0.95)
    if cls == "Center":
        shape = _soft(_blob(yy, xx, *rng.normal(0, 0.05, 2), rng.uniform(0.2, 0.4), rng), 1, 0.12)
    elif cls == "Donut":
        inner = rng.uniform(0.28, 0.45)
        outer = min(inner + rng.uniform(0.15, 0.3), 0.85)
        shape = _soft(r, outer, die / 2) * (1 - _soft(r, inner, die / 2))
    elif cls == "Edge-Loc":
        gap = np.angle(np.exp(1j * (theta - rng.uniform(-np.pi, np.pi))))  # wrapped angle difference
        shape = (1 - _soft(r, rng.uniform(0.65, 0.82), die / 2)) * _soft(np.abs(gap), rng.uniform(0.25, 0.6), 0.08)
    elif cls == "Edge-Ring":
        shape = 1 - _soft(r, rng.uniform(0.8, 0.9) - die, die / 2)
    elif cls == "Loc":
        rc, ac = rng.uniform(0.15, 0.6), rng.uniform(-np.pi, np.pi)
        shape = _soft(_blob(yy, xx, rc * np.sin(ac), rc * np.cos(ac), rng.uniform(0.15, 0.3), rng), 1, 0.15)
    elif cls == "Near-full":
        shape, dense = np.ones_like(r), rng.uniform(0.75, 0.95)
    elif cls == "Random":
        shape, dense = np.ones_like(r), rng.uniform(0.3, 0.55)
    elif cls == "Scratch":
        shape = _soft(_scratch_distance(yy, xx, rng), 0.8 * die, die / 4)
    elif cls == "none":
        return p
    else:
        raise ValueError(f"wafer class {cls!r} is not one of {WAFER_CLASSES}")
    return np.maximum(p, dense * shape)


def wafer_maps(n_per_class: int, size: int = 26, seed: int = 0, n_none: int | None = None) -> tuple[np.ndarray, list[str]]:
    """Synthetic WM-811K-style maps (N, size, size) uint8: 0 off-wafer, 1 good die, 2 failing die.

    `n_per_class` maps of each class in WAFER_CLASSES order (`n_none` overrides the count of
    pattern-free "none" maps, the usual training set); same seed, same maps.
    """
    if n_per_class < 0 or (n_none is not None and n_none < 0):
        raise ValueError(f"n_per_class and n_none must be >= 0, got {n_per_class}, {n_none}")
    if size < 8:
        raise ValueError(f"size must be >= 8 dies, got {size}")
    rng = np.random.default_rng(seed)
    c = (np.arange(size) + 0.5 - size / 2) / (size / 2)  # die centres in wafer radii, -1..1
    yy, xx = np.meshgrid(c, c, indexing="ij")
    r, theta = np.hypot(yy, xx), np.arctan2(yy, xx)
    inside = r <= 1.0
    maps, labels = [], []
    for cls in WAFER_CLASSES:
        for _ in range(n_none if cls == "none" and n_none is not None else n_per_class):
            fail = rng.random(r.shape) < _fail_probability(cls, yy, xx, r, theta, 2 / size, rng)
            maps.append(np.where(inside, 1 + fail, 0).astype(np.uint8))
            labels.append(cls)
    return (np.stack(maps) if maps else np.zeros((0, size, size), np.uint8)), labels


# ----------------------------------------------------------------------------- surface images


def _smooth_noise(rng, size: int, k: int, axis: int) -> np.ndarray:
    """White noise averaged over `k` neighbours along `axis` (wrapping): streaks, unit variance."""
    n = rng.normal(size=(size, size))
    return sum(np.roll(n, s, axis=axis) for s in range(k)) / np.sqrt(k)


def _texture(rng, size: int) -> np.ndarray:
    """A knurled, brushed metal-like surface (size, size) float, grey levels around 128."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    a, period = rng.normal(0, 0.04), rng.uniform(9, 12)
    u, v = x * np.cos(a) + y * np.sin(a), y * np.cos(a) - x * np.sin(a)
    ph = rng.uniform(0, 2 * np.pi, 2)
    weave = np.sin(2 * np.pi * u / period + ph[0]) * np.sin(2 * np.pi * v / period + ph[1])
    g = rng.uniform(-1, 1, 2)
    shading = (g[0] * (x / size - 0.5) + g[1] * (y / size - 0.5)) * 25
    return 125 + 22 * weave + 6 * _smooth_noise(rng, size, 12, 1) + 5 * rng.normal(size=(size, size)) + shading


def _segment_distance(y, x, p, q) -> np.ndarray:
    """Distance of each pixel to the segment p-q (points as (y, x))."""
    d = q - p
    t = np.clip(((y - p[0]) * d[0] + (x - p[1]) * d[1]) / max(d @ d, 1e-9), 0, 1)
    return np.hypot(y - p[0] - t * d[0], x - p[1] - t * d[1])


def _add_defect(img: np.ndarray, kind: str, rng) -> np.ndarray:
    """Draw one defect of `kind` into img (float, in place); returns its (size, size) bool mask."""
    size = img.shape[0]
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    s = size / 128  # defect sizes are designed at 128 px
    c = rng.uniform(0.25, 0.75, 2) * size
    if kind == "scratch":
        ang, half = rng.uniform(0, np.pi), rng.uniform(15, 35) * s
        step = half * np.array([np.sin(ang), np.cos(ang)])
        d, w = _segment_distance(y, x, c - step, c + step), rng.uniform(0.8, 1.5) * s
        img += rng.choice([-1, 1]) * rng.uniform(55, 80) * np.exp(-((d / w) ** 2))
        return d <= 1.2 * w
    if kind == "spot":
        radius = rng.uniform(3, 8) * s
        d = np.hypot((y - c[0]) / rng.uniform(0.8, 1.2), x - c[1])
        alpha = np.clip((radius - d) / 1.5 + 0.5, 0, 1)
        img *= 1 - alpha
        img += alpha * rng.uniform(25, 60)
        return d <= radius
    if kind == "crack":
        ang, pts = rng.uniform(0, 2 * np.pi), [c]
        for _ in range(int(rng.uniform(25, 45) * s)):  # a jagged random walk, 1.5 px per step
            ang += rng.normal(0, 0.35)
            pts.append(pts[-1] + 1.5 * s * np.array([np.sin(ang), np.cos(ang)]))
        d = np.min([_segment_distance(y, x, p, q) for p, q in zip(pts[:-1], pts[1:])], axis=0)
        img -= rng.uniform(60, 90) * np.exp(-((d / (0.9 * s)) ** 2))
        return d <= 1.5 * s
    raise ValueError(f"defect kind {kind!r} is not one of {SURFACE_DEFECTS}")


def write_surface_dataset(root, n_train: int = 60, n_test_good: int = 12, n_per_defect: int = 8, size: int = 128,
                          seed: int = 0, defects: tuple[str, ...] = SURFACE_DEFECTS) -> Path:
    """Write a textured-surface set in MVTec layout under `root` (8-bit grayscale PNGs).

    train/good, test/good and test/<defect> images, with 0/255 masks in
    ground_truth/<defect>/<stem>_mask.png. Deterministic for a given seed. Returns `root`.
    """
    if size < 32:
        raise ValueError(f"size must be >= 32 px, got {size}")
    root, rng = Path(root), np.random.default_rng(seed)

    def save(a: np.ndarray, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L").save(path)

    for folder, n in (("train", n_train), ("test", n_test_good)):
        for i in range(n):
            save(_texture(rng, size), root / folder / "good" / f"{i:03d}.png")
    for kind in defects:
        for i in range(n_per_defect):
            img = _texture(rng, size)
            mask = _add_defect(img, kind, rng)
            save(img, root / "test" / kind / f"{i:03d}.png")
            save(mask * 255.0, root / "ground_truth" / kind / f"{i:03d}_mask.png")
    return root


# ----------------------------------------------------------------------------- image variations


def add_noise_patches(images: np.ndarray, n: int, size_range: tuple[int, int], rng: np.random.Generator,
                      patterns: list[np.ndarray] | None = None) -> np.ndarray:
    """Paint `n` random patches into each image of a (N, H, W, C) uint8 batch; returns a new array.

    Patch height and width are drawn from size_range (inclusive, clamped to the image); each patch is
    dark (40-44) or light (235-239) per channel. With `patterns` (uint8 (h, w) or (h, w, c) images),
    a randomly rotated pattern stretched to the patch is the stencil: its pixels < 250 get painted.
    """
    x = np.asarray(images)
    if x.dtype != np.uint8 or x.ndim != 4:
        raise ValueError(f"images must be uint8 (N, H, W, C), got {x.dtype} {x.shape}")
    lo, hi = (int(v) for v in size_range)
    if not 1 <= lo <= hi:
        raise ValueError(f"size_range must be (min, max) with 1 <= min <= max, got {size_range}")
    out = x.copy()
    N, H, W, C = x.shape
    if n <= 0 or N == 0:
        return out
    ph = np.minimum(rng.integers(lo, hi + 1, (N, n)), H)  # (N, n) patch heights
    pw = np.minimum(rng.integers(lo, hi + 1, (N, n)), W)
    top, left = rng.integers(0, H - ph + 1), rng.integers(0, W - pw + 1)
    light = rng.random((N, n, 1)) < 0.5
    colour = np.where(light, rng.integers(235, 240, (N, n, C)), rng.integers(40, 45, (N, n, C))).astype(np.uint8)
    stencils = [(p if p.ndim == 2 else p.min(-1)) < 250 for p in map(np.asarray, patterns or [])]
    if any(st.ndim != 2 or st.size == 0 for st in stencils):
        raise ValueError("patterns must be non-empty (h, w) or (h, w, c) images")
    if stencils:  # True where a pattern pixel is < 250 (in any channel of a colour pattern)
        pick, turns = rng.integers(0, len(stencils), (N, n)), rng.integers(0, 4, (N, n))
    # One slice assignment per patch touches only the patch's pixels; whole-batch boolean masks
    # would touch N * H * W * C values per patch, 10-100x more work for typical patch sizes.
    for i in range(N):
        for j in range(n):
            h, w = ph[i, j], pw[i, j]
            win = out[i, top[i, j]:top[i, j] + h, left[i, j]:left[i, j] + w]  # (h, w, C) view
            if not stencils:
                win[:] = colour[i, j]
                continue
            st = np.rot90(stencils[pick[i, j]], turns[i, j])
            rows = (np.arange(h) * st.shape[0] // h)[:, None]  # nearest-neighbour stretch to h x w
            cols = (np.arange(w) * st.shape[1] // w)[None, :]
            win[st[rows, cols]] = colour[i, j]
    return out


def _bilinear(x: np.ndarray, src: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Sample images x (N, H, W, C) at rows ys (M, h) x cols xs (M, w) of image src (M,); edges clamp.

    Gathers through flat indices into (N*H*W, C): several times faster than 3-axis fancy indexing.
    """
    N, H, W, C = x.shape
    flat = x.reshape(-1, C)
    y0, x0 = np.floor(ys), np.floor(xs)
    wy = (ys - y0).astype(np.float32)[:, :, None, None]  # (M, h, 1, 1)
    wx = (xs - x0).astype(np.float32)[:, None, :, None]  # (M, 1, w, 1)
    y0, x0 = y0.astype(np.intp), x0.astype(np.intp)
    base = src[:, None] * H
    ra = ((base + np.clip(y0, 0, H - 1)) * W)[:, :, None]  # (M, h, 1) flat index of row starts
    rb = ((base + np.clip(y0 + 1, 0, H - 1)) * W)[:, :, None]
    ca, cb = np.clip(x0, 0, W - 1)[:, None, :], np.clip(x0 + 1, 0, W - 1)[:, None, :]  # (M, 1, w)

    def g(r, c):
        return flat.take(r + c, axis=0).astype(np.float32)  # (M, h, w, C)

    if flat.shape[0] < 2**31:  # 32-bit indices halve the index traffic
        ra, rb, ca, cb = (a.astype(np.int32) for a in (ra, rb, ca, cb))

    top = g(ra, ca)
    top += (g(ra, cb) - top) * wx
    bottom = g(rb, ca)
    bottom += (g(rb, cb) - bottom) * wx
    top += (bottom - top) * wy
    return top


def preprocess(images: np.ndarray, rng: np.random.Generator, crop: tuple[int, int, int, int] | None = None,
               nseg: int = 1, n_aug: int = 0, offset: int = 0, scale: tuple[float, float] = (1, 1),
               brightness: float = 0, contrast: float = 0) -> np.ndarray:
    """Crop, cut into nseg x nseg tiles and add `n_aug` jittered copies per tile: (N', h, w, C) uint8.

    crop is (top, left, height, width); tiles are (height // nseg, width // nseg). Output order is per
    image, per tile (row-major): the tile itself, then its copies, so N' = N * nseg**2 * (1 + n_aug).
    A copy re-samples the source image (bilinear, edges clamped) around the tile's centre shifted by
    up to `offset` px, over a window `scale` times the tile size, then maps each pixel v to
    mean + (v - mean) * (1 + c) + 255 * b with c, b uniform in +-contrast, +-brightness.
    """
    x = np.asarray(images)
    if x.dtype != np.uint8 or x.ndim != 4:
        raise ValueError(f"images must be uint8 (N, H, W, C), got {x.dtype} {x.shape}")
    N, H, W, C = x.shape
    top, left, ch, cw = (int(v) for v in (crop if crop is not None else (0, 0, H, W)))
    if nseg < 1 or n_aug < 0 or offset < 0 or brightness < 0 or contrast < 0:
        raise ValueError(f"need nseg >= 1 and n_aug, offset, brightness, contrast >= 0, got "
                         f"{nseg}, {n_aug}, {offset}, {brightness}, {contrast}")
    if top < 0 or left < 0 or ch < nseg or cw < nseg or top + ch > H or left + cw > W:
        raise ValueError(f"crop {crop} does not fit {H}x{W} images with {nseg}x{nseg} tiles")
    if not 0 < scale[0] <= scale[1]:
        raise ValueError(f"scale must be (min, max) with 0 < min <= max, got {scale}")
    th, tw = ch // nseg, cw // nseg
    region = x[:, top:top + nseg * th, left:left + nseg * tw]
    tiles = region.reshape(N, nseg, th, nseg, tw, C).transpose(0, 1, 3, 2, 4, 5).reshape(-1, th, tw, C)
    if n_aug == 0:
        return tiles.copy()
    T, M = len(tiles), len(tiles) * n_aug
    ii, jj = np.meshgrid(np.arange(nseg), np.arange(nseg), indexing="ij")
    src = np.repeat(np.arange(N), nseg * nseg * n_aug)  # (M,) source image of each copy
    cy = np.tile(np.repeat(top + ii.ravel() * th + th / 2, n_aug), N)  # (M,) tile centres
    cx = np.tile(np.repeat(left + jj.ravel() * tw + tw / 2, n_aug), N)
    shift = rng.integers(-offset, offset + 1, (M, 2))
    s = rng.uniform(scale[0], scale[1], M)[:, None]
    b = rng.uniform(-brightness, brightness, M)[:, None, None, None]
    c = rng.uniform(-contrast, contrast, M)[:, None, None, None]
    # Pixel k of a copy samples source coordinate centre + (k + 0.5 - size / 2) * s - 0.5, so an
    # unjittered copy (shift 0, s = 1) reproduces the tile exactly.
    ys = (cy + shift[:, 0])[:, None] + (np.arange(th) + 0.5 - th / 2) * s - 0.5  # (M, th)
    xs = (cx + shift[:, 1])[:, None] + (np.arange(tw) + 0.5 - tw / 2) * s - 0.5  # (M, tw)
    copies = np.empty((M, th, tw, C), np.uint8)
    step = max(1, 4_000_000 // (th * tw * C))  # bounds the float32 temporaries to ~100 MB
    for a in range(0, M, step):
        z = slice(a, a + step)
        v = _bilinear(x, src[z], ys[z], xs[z])  # (m, th, tw, C) float32
        mean = v.mean(axis=(1, 2, 3), keepdims=True)
        v *= (1 + c[z]).astype(np.float32)  # mean + (v - mean) * (1 + c) + 255 b, in place
        v += (255 * b[z] - mean * c[z]).astype(np.float32)
        copies[z] = np.rint(np.clip(v, 0, 255, out=v), out=v)
    out = np.concatenate([tiles[:, None], copies.reshape(T, n_aug, th, tw, C)], axis=1)
    return out.reshape(-1, th, tw, C)
