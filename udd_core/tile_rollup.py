"""Tiles rolled up to the images they were cut from: an inspector acts on a part, not on a tile.

A tiled run scores tiles ("a.png#tile3@x48,y0"), so its metrics and verdicts count tiles. Here each image
is called defective when any of its tiles is (its score: its highest tile score), and labelled as the loader
labelled the image itself (QA sweep 17: a tiled run gave no verdict per photo). Inspect and
`udd score` show the result beside the tile metrics.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Mapping, Optional, Sequence

import numpy as np

from .tiles import is_tile, source_image, tile_origin
from .display import score_text, verdict_word
from .metrics import GOOD
from .render import HeatScale, auto_zoom, overlay_rgb


@dataclass
class ImageRollup:
    """One image of a tiled data set: its tiles' scores rolled up."""

    image: str  # the source path
    label: str  # its own (its MVTec test folder's), else the defect type of any of its tiles, else "good"
    tiles: int
    above: Optional[int]  # tiles scoring above the threshold; None without a threshold
    score: float  # its highest tile score
    worst: str  # that tile's part of the name ("#tile3@x48,y0")

    @property
    def defective(self) -> Optional[bool]:
        """Called defective: any tile above the threshold; None without a threshold."""
        return None if self.above is None else self.above > 0

    def to_row(self) -> dict:
        """The row a table shows (scores in the views' digits)."""
        return {"image": self.image, "label": self.label, "tiles": self.tiles, "tiles above": self.above,
                "highest tile score": score_text(self.score), "at": self.worst,
                "verdict": "" if self.defective is None else verdict_word(self.defective)}


def rollup(names: Sequence[str], labels: Sequence[str], scores, threshold: Optional[float],
           image_labels: Optional[Mapping[str, str]] = None) -> list[ImageRollup]:
    """Each image of the tiles named `names` (its tiles' `labels` and `scores` (N,)), worst first; [] when
    no name is a tile's. `image_labels` holds each image's own label (`ImageSet.source_labels`)."""
    if not any(map(is_tile, names)):
        return []
    scores = np.asarray(scores, dtype=np.float64)
    out = []
    for image, idx in tile_groups(names).items():
        s = scores[idx]  # (tiles,)
        worst = idx[int(np.nanargmax(s))] if np.isfinite(s).any() else idx[0]
        above = None if threshold is None else int((s > threshold).sum())
        label = (image_labels or {}).get(image) or _any_defect([labels[i] for i in idx])
        out.append(ImageRollup(image, label, len(idx), above,
                               float(np.nanmax(s)), names[worst][len(image):]))
    return sorted(out, key=lambda r: -r.score)


def tile_groups(names: Sequence[str]) -> dict[str, list[int]]:
    """The images tiles named `names` were cut from, in data order, each with its tiles' indices; {} when no name
    is a tile's. One pass over the names, so that M images of N tiles cost N, not M x N."""
    groups: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        if is_tile(name):
            groups.setdefault(source_image(name), []).append(i)
    return groups


def source_images(names: Sequence[str]) -> list[str]:
    """The images tiles named `names` were cut from, in data order; [] when no name is a tile's."""
    return list(tile_groups(names))


def rollup_of(insp) -> list[ImageRollup]:
    """`rollup` of a scored data set (an `Inspection`, at its threshold)."""
    return rollup(insp.names, insp.labels, insp.scores, insp.threshold, insp.image_labels)


@dataclass
class WholeImage:
    """An image of a tiled data set put back together from its tiles."""

    image: np.ndarray  # (H, W, C) uint8
    map: np.ndarray  # (H, W) float32: where tiles overlap, the highest of their values
    mask: Optional[np.ndarray]  # (H, W) bool ground truth, or None

    def overlay(self, scale: HeatScale) -> np.ndarray:
        """The overlay picture on `scale` (`render.overlay_rgb`), tiny images enlarged: (H*f, W*f, 3) uint8."""
        return overlay_rgb(self.image, self.map, scale, self.mask, factor=auto_zoom(*self.map.shape))

    def own_scale(self, pixel_threshold: float) -> HeatScale:
        """Its own colour scale, from its median pixel to its highest, as Inspect's "own colour scale" switch: where
        its map peaks shows even when the fixed scale leaves it dark (QA sweep 20: a crack invisible there)."""
        lo = float(np.median(self.map))
        return HeatScale(lo, max(float(self.map.max()), lo + 1e-6), pixel_threshold)


def whole_images(insp) -> Iterator[tuple[str, WholeImage]]:
    """Each image of `insp`'s tiles, in data order, put back together (`whole_image`), made one at a time."""
    for image, idx in tile_groups(insp.names).items():
        yield image, whole_image(insp, image, idx)


def whole_image(insp, image: str, idx: Optional[Sequence[int]] = None) -> WholeImage:
    """The image `image` (a source path of `insp`'s tile names) from its tiles (their indices `idx`, when the
    caller has them: `tile_groups`), with its anomaly map and mask.

    Tiles of the last row and column overlap their neighbours (`data.load_dataset`); there the map keeps the
    highest value, so that an anomaly seen by either tile shows."""
    idx = tile_groups(insp.names).get(image, []) if idx is None else list(idx)
    if not idx:
        raise ValueError(f"image: {image!r} is not an image of these tiles")
    th, tw = insp.maps.shape[1:]
    at = [tile_origin(insp.names[i]) for i in idx]
    h, w = max(y for y, _ in at) + th, max(x for _, x in at) + tw
    out = np.zeros((h, w, insp.images.shape[-1]), np.uint8)  # (H, W, C)
    heat = np.full((h, w), -np.inf, np.float32)  # (H, W)
    mask = None if insp.masks is None else np.zeros((h, w), bool)
    for i, (y, x) in zip(idx, at):
        out[y:y + th, x:x + tw] = insp.images[i]
        np.maximum(heat[y:y + th, x:x + tw], insp.maps[i], out=heat[y:y + th, x:x + tw])
        if mask is not None:
            mask[y:y + th, x:x + tw] |= insp.masks[i]
    return WholeImage(out, heat, mask)


def _any_defect(tile_labels: Sequence[str]) -> str:
    """Without the image's own label: the defect type of any of its tiles, or "good". (QA sweep 18: a defective
    photo whose mask is empty has only "good" tiles, which is why the image's own label comes first.)"""
    defects = sorted(set(tile_labels) - {GOOD})
    return defects[0] if defects else GOOD


def rollup_counts(rows: Sequence[ImageRollup]) -> tuple[int, int, int, int]:
    """(defective images called defective, defective images, normal images called defective, normal images) at
    the rows' threshold: what the roll-up's summary and the report's first line both count."""
    bad = [bool(r.defective) for r in rows if r.label != GOOD]
    good = [bool(r.defective) for r in rows if r.label == GOOD]
    return sum(bad), len(bad), sum(good), len(good)


def rollup_metrics(rows: Sequence[ImageRollup]) -> dict:
    """The roll-up's figures per image, as `udd score --json` gives them ("per_image_metrics"): images, tiles,
    called_defective, defective, caught, normal, false_alarms (None without a threshold), and image_auroc of
    the highest tile score (None without labels of both kinds)."""
    caught, n_bad, false, n_good = rollup_counts(rows)
    thresholded = bool(rows) and rows[0].defective is not None
    y = np.array([r.label != GOOD for r in rows])
    auroc = None
    if y.any() and not y.all():
        from sklearn.metrics import roc_auc_score

        auroc = float(roc_auc_score(y, [r.score for r in rows]))
    return {"images": len(rows), "tiles": sum(r.tiles for r in rows),
            "called_defective": sum(bool(r.defective) for r in rows) if thresholded else None,
            "defective": n_bad, "caught": caught if thresholded else None, "normal": n_good,
            "false_alarms": false if thresholded else None, "image_auroc": auroc}


def rollup_summary(rows: Sequence[ImageRollup]) -> str:
    """One line: how many images, how many called defective, and, with labels of both kinds, how many of the
    defective ones were caught, the normal ones called defective, and the image AUROC of the highest tile
    score (`rollup_metrics`)."""
    if not rows:
        return ""
    m = rollup_metrics(rows)
    n, tiles = m["images"], m["tiles"]
    text = f"{n} image{'s' * (n != 1)} ({tiles} tiles)"
    if m["called_defective"] is not None:
        # QA sweep 18: the threshold's false-positive rate is per tile; a photo of T tiles has T chances
        text += (f": {m['called_defective']} called defective (a tile above the threshold, which was set per tile: "
                 f"a normal photo of {round(tiles / n)} tiles is flagged more often than one tile)")
    if m["image_auroc"] is not None:
        if m["caught"] is not None:
            text += (f"; {m['caught']} of {m['defective']} defective caught, {m['false_alarms']} of {m['normal']} "
                     "normal called defective")
        text += f"; image AUROC of the highest tile score {m['image_auroc']:.4f}"
    return text
