"""Whether a heatmap points at the defect: where each caught image's map peaks, against its ground truth.

An image score can call a defective image defective while its map is highest somewhere else: on a bright
texture band 250 px from the crack (QA sweep 20, a tiled magnetic-tile run). The call is right, but the
heatmap a process engineer reads points at the wrong place. `off_defect_note` counts such images among the
caught ones that have a mask, for every view of a scoring (`Inspection.all_notes`); a tiled run is judged
per photo, its tiles put back together (`tile_rollup.whole_images`), as the engineer sees it whole.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np
from scipy.ndimage import label, maximum_filter

from .display import folder_and_name
from .metrics import GOOD
from .notices import Caution
from .render import border_band
from .tile_rollup import rollup_of, whole_images

PEAK_TOLERANCE = 0.05  # of the map's shorter side, at least 2 px (13 px at 256: under a stride-16 cell, strict there)
NAMED = 5  # images named in the note, worst first
# The hot spot's level between the map's median and its top: on magnetic_tile's bank maps a spot covers 2% of the
# photo (median; 6% at the 90th percentile), against 7% and 16% at half the height (bench/RESULTS.md)
SPOT_LEVEL = 0.75


class PeakCheck(NamedTuple):
    """Where the caught defects' maps peak: how many were checked and which peak off their defect."""

    checked: int  # defective images (photos, for a tiled run) called defective that have a non-empty mask
    off: list[str]  # the names of those whose map peaks off the mask, highest score first
    units: str  # "images" or "photos"
    at_edge: int  # of `off`, those whose map peaks within `edge` px of the image's edge (without a scored border)
    edge: int  # px: `tolerance`


def tolerance(shape: tuple[int, int]) -> int:
    """How far (px, in rows and columns) a map's peak may lie from the mask and still count as on it."""
    return max(2, round(PEAK_TOLERANCE * min(shape)))


def peak_on_defect(amap: np.ndarray, mask: np.ndarray) -> bool:
    """Whether the hot spot of `amap` (H, W), the connected pixels around its highest value that stand at least
    three quarters as far above the map's median (`SPOT_LEVEL`), reaches `mask` (H, W) bool, or within `tolerance`
    of it. The spot, not its single highest pixel (QA sweep 22: a blowhole inside the one hot blob, 30 px from
    the blob's top on a stride-16 map, was "off"); where the map is highest at several places, one near the mask
    is enough."""
    near = maximum_filter(mask.astype(np.uint8), size=2 * tolerance(amap.shape) + 1).astype(bool)  # (H, W)
    top = float(amap.max())
    if not near.any() or amap[near].max() >= top:
        return bool(near.any())
    base = float(np.median(amap))
    blobs, _ = label(amap >= base + SPOT_LEVEL * (top - base))  # (H, W) ints: 0 outside, k for the k-th blob
    r, c = np.unravel_index(int(np.argmax(amap)), amap.shape)
    return bool((near & (blobs == blobs[r, c])).any())


def peak_shown_on_defect(amap: np.ndarray, mask: np.ndarray, border: int = 0) -> bool:
    """`peak_on_defect` as a reader sees a heatmap whose `border` is faded: the scored area's hottest point, or
    the whole map's, lies on the defect (QA sweep 22: a crack in the border, the map hottest on it, was "off")."""
    return peak_on_defect(scored_area(amap, border), mask) or bool(border) and peak_on_defect(amap, mask)


def peak_near_edge(amap: np.ndarray, band: int) -> bool:
    """Whether the highest value of `amap` (H, W) lies within `band` px of its edge (photo edges and backgrounds
    vary more than the part: bench/RESULTS.md, "Do the heatmaps point at the defect?")."""
    r, c = np.unravel_index(int(np.argmax(amap)), amap.shape)
    return bool(min(r, c, amap.shape[0] - 1 - r, amap.shape[1] - 1 - c) < band)


def peak_check(insp) -> Optional[PeakCheck]:
    """`PeakCheck` of a scoring at its threshold; None without a threshold or masks. Where the image score leaves
    a border out, which every heatmap fades, `peak_shown_on_defect` judges the scored area and the whole map."""
    if insp.threshold is None or insp.masks is None:
        return None
    rows = rollup_of(insp)
    if rows:  # a tiled run: its photos, whole
        caught = {r.image: r.score for r in rows if r.defective and r.label != GOOD}
        checks = [(name, caught[name], w.map, w.mask) for name, w in whole_images(insp) if name in caught]
        units, border = "photos", 0
    else:
        idx = np.flatnonzero(insp.known & insp.is_defect & (insp.scores > insp.threshold))
        checks = [(insp.names[i], float(insp.scores[i]), insp.maps[i], insp.masks[i]) for i in idx]
        units, border = "images", insp.border
    checks = [c for c in checks if c[3] is not None and c[3].any()]  # a defect without a mask: nothing to check
    off = [c for c in checks if not peak_shown_on_defect(c[2], c[3], border)]
    edge = tolerance(insp.maps.shape[1:])
    at_edge = 0 if border else int(sum(peak_near_edge(amap, edge) for _, _, amap, _ in off))
    return PeakCheck(len(checks), [name for name, *_ in sorted(off, key=lambda c: -c[1])], units, at_edge, edge)


def scored_area(amap: np.ndarray, border: int) -> np.ndarray:
    """`amap` (H, W) with the `border` the image score leaves out at the map's lowest value."""
    return np.where(border_band(amap.shape, border), amap.min(), amap) if border else amap


def off_defect_note(check: Optional[PeakCheck]) -> Optional[str]:
    """A note naming the caught defects whose heatmap points off their ground truth (a scoring's `peak_check`); a
    caution when they are more than half of those checked. None when every one points at its defect, or nothing
    can be checked."""
    if check is None or not check.off:
        return None
    k, n, m = len(check.off), check.checked, check.at_edge
    names = ", ".join(folder_and_name(s) for s in check.off[:NAMED]) + (f" and {k - NAMED} more" if k > NAMED else "")
    advice = (", which a border left out of the image score (Border, --border) would fade" if check.units == "images"
              else "")
    where = (f" ({'it lies' if k == 1 else f'{m} of them lie' + 's' * (m == 1)} within {check.edge} px of the "
             f"{check.units[:-1]}'s edge{advice})" if m else "")
    text = (f"{k} of the {n} defective {check.units} caught {'has its' if k == 1 else 'have their'} heatmap's hot "
            f"spot off the defect, farther than {PEAK_TOLERANCE:.0%} of the map's side from the ground-truth mask"
            f"{where}: the call is right, but the map is hottest elsewhere: {names}")
    return Caution(text) if 2 * k > n else text
