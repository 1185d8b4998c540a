"""Detection metrics: thresholds, image AUROC/AP/F1, pixel AUROC and AUPRO, per defect type.

Label convention: "good" is a normal image, any other label names a defect type. A sample is
predicted defective when its score is strictly greater than the threshold. Metrics that the
data cannot support (one class only, no masks, no defective mask pixels) come out as None.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Optional

import numpy as np

from .notices import Caution

# scikit-learn and scipy.ndimage are imported inside the functions that need them: together they
# add 1-2 s to every process start, and scoring a folder without labels or masks never uses them.

GOOD = "good"
# What each figure means, for an engineer who does not read anomaly-detection papers (Inspect's hover texts).
METRIC_HELP = {
    "image AUROC": "The chance that a defective image scores above a normal one, over every threshold at once "
                   "(0.5: chance, 1: perfect).",
    "image AP": "Average precision of the image scores, defects as the positive class: precision averaged over "
                "every recall level.",
    "F1 max": "The best F1 (harmonic mean of precision and recall) over every image threshold.",
    "pixel AUROC": "The chance that a defect pixel (ground-truth mask) scores above a normal pixel, pooled over all "
                   "images: large defects weigh the most, so it can sit below every per-type figure.",
    "AUPRO": "How much of each defect region the map covers, averaged over regions (small ones count as much as "
             "large ones) and over pixel thresholds up to 30% false-positive pixels.",
    "FPR": "At the threshold: the share of normal images called defective.",
    "TPR": "At the threshold: the share of defective images found.",
    "threshold": "Image-score threshold: an image is defective when its score is above it.",
    "tile AUROC": "A tiled run's image AUROC, over the tiles it scores: the chance that a tile holding defect pixels "
                  "scores above a normal one. The photos' own figure is their roll-up's (the highest tile score).",
    "tile AP": "A tiled run's image AP, over the tiles it scores (a tile holding defect pixels as the positive class).",
    "tile FPR": "At the threshold: the share of normal tiles called defective. A photo of many tiles has as many "
                "chances to be flagged: the photos' own counts are their roll-up's (Plots).",
    "tile TPR": "At the threshold: the share of tiles holding defect pixels that are found.",
}
TILE_NAMES = {"image AUROC": "tile AUROC", "image AP": "tile AP", "FPR": "tile FPR", "TPR": "tile TPR"}


def metric_label(label: str, unit: str = "images") -> str:
    """A metric's name for what the scores count: "image AUROC" is "tile AUROC" when `unit` is "tiles" (QA sweep
    21: a tiled run's tile AUROC and its photos' roll-up AUROC were both called image AUROC; its FPR per tile
    read 0.017 where 3 of 12 normal photos were flagged)."""
    return TILE_NAMES.get(label, label) if unit == "tiles" else label


_PRO_STEPS = 200  # thresholds sampled for the PRO curve
_QUANTILE_SAMPLE = 200_000  # normal pixels kept to place those thresholds


def _as_1d(a, name: str) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    if a.size and not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or inf values")
    return a


def _check_pair(scores, is_defect) -> tuple[np.ndarray, np.ndarray]:
    s = _as_1d(scores, "scores")
    y = np.asarray(is_defect, dtype=bool).reshape(-1)
    if s.shape != y.shape:
        raise ValueError(f"scores ({s.size}) and is_defect ({y.size}) differ in length")
    return s, y


def threshold_for_fpr(normal_scores, target_fpr: float) -> float:
    """Smallest threshold whose false-positive rate on ``normal_scores`` is <= ``target_fpr``."""
    s = np.sort(_as_1d(normal_scores, "normal_scores"))
    if s.size == 0:
        raise ValueError("normal_scores is empty")
    if not 0.0 <= target_fpr <= 1.0:
        raise ValueError(f"target_fpr must be in [0, 1], got {target_fpr}")
    # At most k normals may lie strictly above the threshold; the epsilon keeps e.g.
    # 0.29 * 100 (= 28.999...) from losing one allowed false positive.
    k = min(math.floor(target_fpr * s.size + 1e-9), s.size)
    return float(s[max(s.size - k - 1, 0)])


def too_few_normals(n_normal: int, target_fpr: float, source: str = "normal", unit: str = "image") -> Optional[str]:
    """A note when `n_normal` images (or tiles: `unit`) cannot measure `target_fpr` (not one false positive allowed
    among them): the threshold is then simply their highest score. None when they can."""
    if not 0 < target_fpr * n_normal < 1:
        return None
    images = f"{n_normal} {source} {unit}" + ("s" if n_normal != 1 else "")
    top = "their highest score" if n_normal != 1 else f"that {unit}'s score"
    return Caution(f"the threshold rests on {images}, too few to measure an FPR of {target_fpr:.2%} "
                   f"(that needs {math.ceil(1 / target_fpr)}): it is {top}, and the FPR on new normal "
                   "images may well be higher")


def rates_at(threshold: float, scores, labels_is_defect) -> dict:
    """FPR over normal samples and TPR over defective ones at ``threshold`` (None if no such samples)."""
    s, y = _check_pair(scores, labels_is_defect)
    pred = s > threshold
    return {
        "fpr": float(pred[~y].mean()) if (~y).any() else None,
        "tpr": float(pred[y].mean()) if y.any() else None,
    }


def best_f1_threshold(scores, is_defect) -> tuple[float, float]:
    """Threshold maximising F1 and that F1; the threshold lies midway between two scores."""
    s, y = _check_pair(scores, is_defect)
    n_pos = int(y.sum())
    if n_pos == 0:
        raise ValueError("is_defect has no defective sample: F1 is undefined")
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]  # descending scores
    tp = np.cumsum(y)
    fp = np.cumsum(~y)
    # Only cut after the last copy of a value: equal scores get the same decision.
    cuts = np.flatnonzero(np.append(s[1:] != s[:-1], True))
    f1 = 2 * tp[cuts] / (tp[cuts] + fp[cuts] + n_pos)
    best = int(np.argmax(f1))
    i = cuts[best]
    thr = (s[i] + s[i + 1]) / 2 if i + 1 < s.size else float(np.nextafter(s[i], -np.inf))
    return float(thr), float(f1[best])


def auroc_interval(auroc: float, n_defective: int, n_normal: int) -> tuple[float, float]:
    """A 95% interval of an AUROC measured on `n_defective` and `n_normal` images (Hanley and McNeil 1982's
    standard error, clipped to [0, 1]): how far the same detector's AUROC could move on another test set of that
    size, so that two runs closer than it are not told apart by this one (QA sweep 19b)."""
    if n_defective < 1 or n_normal < 1:
        raise ValueError(f"n_defective, n_normal: need one image of each, got {n_defective} and {n_normal}")
    a = min(max(float(auroc), 0.0), 1.0)
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    var = (a * (1 - a) + (n_defective - 1) * (q1 - a * a) + (n_normal - 1) * (q2 - a * a)) / (n_defective * n_normal)
    half = 1.96 * math.sqrt(max(var, 0.0))
    return max(0.0, a - half), min(1.0, a + half)


def roc_points(scores, is_defect) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve (fpr, tpr, thresholds), thresholds in decreasing order (sklearn's ``>=`` rule)."""
    s, y = _check_pair(scores, is_defect)
    if y.all() or not y.any():
        raise ValueError("is_defect must contain both normal and defective samples for a ROC curve")
    from sklearn.metrics import roc_curve
    return roc_curve(y, s)


class _PixelGroups:
    """Pixels of a set of images, split in groups (one per label) so any union of groups can be
    scored without re-sorting: every group's normal pixels are sorted once, O(P log P) overall.

    Pair counts between groups are additive, which makes AUROC of a union exact and cheap.
    """

    def __init__(self, maps: np.ndarray, masks: np.ndarray, groups: np.ndarray):
        from scipy import ndimage
        self.neg: dict[str, np.ndarray] = {}  # group -> sorted normal-pixel scores
        self.pos: dict[str, np.ndarray] = {}  # group -> defect-pixel scores
        self.pos_sorted: dict[str, np.ndarray] = {}  # the same, sorted (for AUROC)
        self.pos_region: dict[str, np.ndarray] = {}  # group -> region id of each defect pixel
        self.region_area: dict[str, np.ndarray] = {}  # group -> pixel count per region
        eight = np.zeros((3, 3, 3), dtype=bool)
        eight[1] = True  # 8-connectivity inside an image, none across images
        for g in np.unique(groups):
            sel = groups == g
            m, k = maps[sel], masks[sel]  # (n, H, W)
            self.neg[g] = np.sort(m[~k])  # (n_neg,)
            lab, n_reg = ndimage.label(k, structure=eight)  # (n, H, W) region ids, 0 = normal
            self.pos[g] = m[k]  # (n_pos,) in region order
            self.pos_sorted[g] = np.sort(self.pos[g])  # sorted needles keep searchsorted cache-friendly
            self.pos_region[g] = lab[k] - 1
            self.region_area[g] = np.bincount(self.pos_region[g], minlength=n_reg)
        self._pairs: dict[tuple[str, str], tuple[int, int]] = {}

    def _pair(self, a: str, b: str) -> tuple[int, int]:
        """(#pairs defect-of-a > normal-of-b, #ties) over all such pixel pairs."""
        if (a, b) not in self._pairs:
            p, n = self.pos_sorted[a], self.neg[b]
            lo = np.searchsorted(n, p, side="left")
            hi = np.searchsorted(n, p, side="right")
            self._pairs[a, b] = (int(lo.sum(dtype=np.int64)), int((hi - lo).sum(dtype=np.int64)))
        return self._pairs[a, b]

    def auroc(self, gs: list[str]) -> float | None:
        n_pos = sum(self.pos[g].size for g in gs)
        n_neg = sum(self.neg[g].size for g in gs)
        if n_pos == 0 or n_neg == 0:
            return None
        gt = ties = 0
        for a in gs:
            for b in gs:
                x, t = self._pair(a, b)
                gt, ties = gt + x, ties + t
        return (gt + 0.5 * ties) / (n_pos * n_neg)  # Mann-Whitney U statistic

    def aupro(self, gs: list[str], max_fpr: float) -> float | None:
        negs = [self.neg[g] for g in gs if self.neg[g].size]
        n_neg = sum(a.size for a in negs)
        areas = [self.region_area[g] for g in gs if self.region_area[g].size]
        if n_neg == 0 or not areas:
            return None
        # Thresholds at normal-pixel quantiles spread evenly over FPR in [0, max_fpr]; a
        # same-stride subsample of each sorted group keeps their relative weights.
        stride = max(1, n_neg // _QUANTILE_SAMPLE)
        sample = np.sort(np.concatenate([a[::-1][::stride] for a in negs]))
        levels = 1.0 - np.linspace(0.0, max_fpr, _PRO_STEPS)
        top = max(a[-1] for a in negs)
        bottom = np.nextafter(min(a[0] for a in negs), -np.inf)  # FPR = 1: closes the range
        thr = np.unique(np.concatenate([np.quantile(sample, levels), [top, bottom]]))  # ascending
        # Exact FPR at each threshold: count normal pixels strictly above it.
        above = sum(a.size - np.searchsorted(a, thr, side="right") for a in negs)
        fpr = above / n_neg  # (T,), decreasing
        # Per region and threshold, defect pixels strictly above it: pixel with j thresholds
        # below its score counts for thresholds 0..j-1, so a reversed cumsum of a 2-D histogram.
        t = thr.size
        pro_sum = np.zeros(t)
        for g in gs:
            area = self.region_area[g]
            if area.size == 0:
                continue
            j = np.searchsorted(thr, self.pos[g], side="left")  # thresholds < score
            hist = np.bincount(self.pos_region[g].astype(np.int64) * (t + 1) + j, minlength=area.size * (t + 1))
            hist = hist.reshape(area.size, t + 1)
            hits = np.cumsum(hist[:, ::-1], axis=1)[:, ::-1][:, 1:]  # (R, T): score > thr[i]
            pro_sum += (hits / area[:, None]).sum(axis=0)
        pro = pro_sum / sum(a.size for a in areas)
        f, p = fpr[::-1], pro[::-1]  # FPR ascending
        keep = f <= max_fpr
        f_end = np.interp(max_fpr, f, p)  # f is non-decreasing and ends at 1 >= max_fpr
        xs = np.append(f[keep], max_fpr)
        ys = np.append(p[keep], f_end)
        area = float(np.sum(np.diff(xs) * (ys[1:] + ys[:-1]) / 2))  # trapezoid rule (numpy-1 safe)
        return area / max_fpr


def _pixel_inputs(maps, masks, n: int | None) -> tuple[np.ndarray, np.ndarray]:
    m = np.asarray(maps)
    if m.dtype not in (np.float32, np.float64):  # keep float32 maps as they are: no 2x copy
        m = m.astype(np.float64)
    k = np.asarray(masks) > 0
    if m.ndim != 3 or m.shape != k.shape:
        raise ValueError(f"maps {m.shape} and masks {k.shape} must both be (N, H, W) of equal shape")
    if n is not None and m.shape[0] != n:
        raise ValueError(f"maps has {m.shape[0]} images but scores has {n}")
    if not np.all(np.isfinite(m)):
        raise ValueError("maps contains NaN or inf values")
    return m, k


def _check_max_fpr(max_fpr: float) -> None:
    if not 0.0 < max_fpr <= 1.0:
        raise ValueError(f"max_fpr must be in (0, 1], got {max_fpr}")


def aupro(maps, masks, max_fpr: float = 0.3) -> float | None:
    """Area under the per-region-overlap curve up to ``max_fpr``, divided by ``max_fpr``.

    Regions are the 8-connected components of each mask; PRO at a threshold is the mean over
    all regions of the fraction of their pixels above it (MVTec AD's definition).
    """
    _check_max_fpr(max_fpr)
    m, k = _pixel_inputs(maps, masks, None)
    return _PixelGroups(m, k, np.full(m.shape[0], "all", dtype=object)).aupro(["all"], max_fpr)


def pixel_auroc(maps, masks) -> float | None:
    """Exact pixel-level AUROC of residual maps against masks (None without both classes)."""
    m, k = _pixel_inputs(maps, masks, None)
    return _PixelGroups(m, k, np.full(m.shape[0], "all", dtype=object)).auroc(["all"])


def _image_metrics(s: np.ndarray, y: np.ndarray) -> tuple[float | None, float | None]:
    if y.all() or not y.any():
        return None, None
    from sklearn.metrics import average_precision_score, roc_auc_score
    return float(roc_auc_score(y, s)), float(average_precision_score(y, s))


@dataclass
class Metrics:
    """Image- and pixel-level detection quality; None where the data cannot support a metric."""

    image_auroc: float | None
    image_ap: float | None
    f1_max: float | None
    pixel_auroc: float | None
    aupro: float | None
    per_type: dict[str, dict[str, float | None]] = field(default_factory=dict)
    confusion: dict | None = None  # tp, fp, tn, fn, threshold

    def to_dict(self) -> dict:
        return asdict(self)


def compute_metrics(scores, labels: list[str], maps=None, masks=None, threshold: float | None = None,
                    max_fpr: float = 0.3) -> Metrics:
    """All metrics for image ``scores`` with string ``labels`` (and optional maps/masks (N, H, W))."""
    _check_max_fpr(max_fpr)
    lab = np.asarray([str(v) for v in labels], dtype=object)
    s, y = _check_pair(scores, lab != GOOD)
    if s.size == 0:
        raise ValueError("scores is empty")
    auroc, ap = _image_metrics(s, y)
    f1 = best_f1_threshold(s, y)[1] if y.any() else None
    pix = None
    if maps is not None and masks is not None:
        pix = _PixelGroups(*_pixel_inputs(maps, masks, s.size), lab)
    all_groups = list(np.unique(lab))
    per_type = {}
    for t in all_groups:
        if t == GOOD:
            continue
        sel = (lab == GOOD) | (lab == t)
        gs = [g for g in (GOOD, t) if g in all_groups]
        t_auroc, t_ap = _image_metrics(s[sel], y[sel])
        per_type[t] = {
            "n": int((lab == t).sum()),
            "normal": int((lab == GOOD).sum()),  # what the type's images are measured against (QA sweep 21)
            "image_auroc": t_auroc,
            "image_ap": t_ap,
            "pixel_auroc": pix.auroc(gs) if pix else None,
            "aupro": pix.aupro(gs, max_fpr) if pix else None,
        }
    confusion = None
    if threshold is not None:
        pred = s > threshold
        confusion = {
            "threshold": float(threshold),
            "tp": int((pred & y).sum()),
            "fp": int((pred & ~y).sum()),
            "tn": int((~pred & ~y).sum()),
            "fn": int((~pred & y).sum()),
        }
    return Metrics(
        image_auroc=auroc,
        image_ap=ap,
        f1_max=f1,
        pixel_auroc=pix.auroc(all_groups) if pix else None,
        aupro=pix.aupro(all_groups, max_fpr) if pix else None,
        per_type=per_type,
        confusion=confusion,
    )
