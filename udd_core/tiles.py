"""Tiles: a photo cut into pieces of the model's input size, and the names that say where each piece lies.

A tiled data set (`data.load_dataset(..., tile=True)`) inspects a large photo at full resolution in tiles of
H x W: one every H rows and W columns, and a last row and column flush with the far edges, so that every pixel
is in a tile. A tile is named by its photo and its top-left pixel ("a.png#tile3@x48,y0"), from which
`tile_rollup` rolls scores up to the photo and puts its maps back in place.
"""
from __future__ import annotations

import numpy as np

TILE_MARK = "#tile"  # "a.png#tile3@x48,y0": a.png's fourth tile, row by row; no space (QA: tables split on it)


def tile_starts(n: int, t: int) -> list[int]:
    """Where tiles of side `t` start along a side of `n` pixels: every `t` from 0, and, when `t` does not divide
    `n`, one more flush with the far edge (overlapping its neighbour), so that every pixel is in a tile (QA
    sweep 10: dropping the remainder left 21% of magnetic_tile's photos, and their defects, uninspected)."""
    if n < t:
        return []
    starts = list(range(0, n - t + 1, t))
    return starts + [n - t] if starts[-1] != n - t else starts


def tiled_size(size: tuple[int, int], tile: tuple[int, int]) -> tuple[int, int]:
    """The (width, height) an image of `size` (width, height) is tiled at for tiles of `tile` (height, width):
    its own, or, when a side is shorter than the tile's, enlarged (aspect kept) until both sides hold one tile,
    so that no photo goes uninspected (QA sweep 20: a 121 px wide photo among 128 px tiles had no verdict; at
    256 px tiles, half of magnetic_tile's test photos)."""
    (w, h), (th, tw) = size, tile
    if w >= tw and h >= th:
        return w, h
    f = max(tw / w, th / h)
    return max(tw, round(w * f)), max(th, round(h * f))


def cut_tiles(a: np.ndarray, h: int, w: int) -> np.ndarray:
    """(Hi, Wi, ...) -> (k, h, w, ...): h x w tiles covering the whole array (`tile_starts`), row-major."""
    ys, xs = tile_starts(a.shape[0], h), tile_starts(a.shape[1], w)
    if not ys or not xs:
        return np.zeros((0, h, w, *a.shape[2:]), dtype=a.dtype)
    return np.stack([a[y:y + h, x:x + w] for y in ys for x in xs])


def tile_name(src, k: int, origin: tuple[int, int]) -> str:
    """The name of tile ``k`` of image ``src`` in a tiled data set, with where it lies in the image, its
    top-left `origin` (y, x) in pixels: "a.png#tile3@x192,y0" (QA sweep 17: "tile3" said not where)."""
    return f"{src}{TILE_MARK}{k}@x{origin[1]},y{origin[0]}"


def is_tile(name: str) -> bool:
    """Whether an image name is a tile's (`tile_name`)."""
    return TILE_MARK in name


def tile_origin(name: str) -> tuple[int, int]:
    """Where a tile lies in its image, its top-left (y, x) in pixels, from its name (`tile_name`)."""
    x, y = name.rsplit("@x", 1)[1].split(",y")
    return int(y), int(x)


def source_image(name: str) -> str:
    """The image a tile's name comes from ("a.png" for "a.png#tile3@x48,y0"); other names as they are."""
    return name.split(TILE_MARK, 1)[0]


def one_image(names) -> bool:
    """Whether images named `names` are one image, or the tiles of one: a suspect part checked alone, whose verdict
    is the answer, where rates over its tiles or an alarm about the threshold mean nothing."""
    return len({source_image(n) for n in names}) == 1
