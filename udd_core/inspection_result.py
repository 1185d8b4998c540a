"""The result of scoring a run on a data set: `Inspection`, and what it answers without scoring again.

Its images, maps, scores and metrics, and from them: another threshold (or a target FPR) in a cheap
copy, the confusion counts, the fixed and per-image heatmap scales and their legends, defect regions,
the pictures of one image, and its rows for the CSV and the metric table. `inspection.inspect_run`
makes it.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Optional, Sequence

import numpy as np

from .data import wafer_to_onehot
from .tiles import is_tile
from .display import scale_text, score_text
from .localisation import PeakCheck, off_defect_note, peak_check
from .notices import Caution
from .metrics import GOOD, Metrics, metric_label, threshold_for_fpr, too_few_normals
from .render import (HeatScale, as_rgb, auto_zoom, border_band, heat_rgb, heatmap_png, outlines_legend, overlay_rgb,
                     zoom)
from .scoring import NormStats
from .training_data import NORMAL_LABELS, UNKNOWN_LABELS



def normal_label(label) -> str:
    """'good' for any normal label (MVTec 'good', WM-811K 'none', 'normal'), else the label itself."""
    s = str(label).strip()
    return GOOD if s.lower() in NORMAL_LABELS or not s else s


# --- the result ------------------------------------------------------------------------------

def image_units(names: Sequence[str]) -> tuple[int, str]:
    """(how many, what) scored images named `names` count as: tiles ("a.png#tile3@x48,y0") of a tiled run, else
    images."""
    tiles = sum(map(is_tile, names))
    return (tiles, "tiles") if tiles else (len(names), "images")


@dataclass
class Inspection:
    """Scores, maps and metrics of one data set under one model and one post-processing."""

    names: list[str]
    labels: list[str]  # "good" or the defect type (normal labels such as "none" become "good")
    scores: np.ndarray  # (N,) float32 image scores
    mse: np.ndarray  # (N,) float32 plain per-image MSE (reference-equal)
    maps: np.ndarray  # (N, H, W) float32, standardised by `norm` when known (0 = typical normal pixel)
    images: np.ndarray  # (N, H, W, C) uint8 inputs
    recon_raw: Optional[np.ndarray]  # (N, C, H, W) float32 reconstructions; None for a method without them
    masks: Optional[np.ndarray]  # (N, H, W) bool ground truth, or None
    metrics: Metrics
    threshold: Optional[float]  # image-score threshold: defective when score > threshold
    threshold_source: str
    fpr: Optional[float]
    tpr: Optional[float]
    pixel_threshold: float  # in map units: contours and regions
    norm: Optional[NormStats]
    normal_scores: Optional[np.ndarray]  # scores of the normal reference images the threshold came from
    normal_source: str  # "validation", "unseen normal", "training", "test good" or ""
    kind: str  # "image" or "wafer"
    settings: dict
    notices: list[str] = field(default_factory=list)
    factors: Optional[np.ndarray] = None  # (N,) the score factor in each score (a feature AE's latent novelty)
    mismatch: Optional[str] = None  # data of the other kind than the run's (`data.kind_mismatch`), also a notice
    score_meaning: str = ""  # what an image score is, in words, with its unit (`inspection.score_meaning`)
    relation: str = ""  # how the data stands to the run's training data (`inspection_inputs.data_relation`)
    image_labels: dict[str, str] = field(default_factory=dict)  # a tiled set's label of each source image

    def __len__(self) -> int:
        return len(self.names)

    @property
    def known(self) -> np.ndarray:
        """(N,) bool: images whose label says normal or defective (metrics use only these)."""
        return np.array([v.lower() not in UNKNOWN_LABELS for v in self.labels], dtype=bool)

    @property
    def recon(self) -> Optional[np.ndarray]:
        """(N, H, W, C) uint8 reconstructions (wafers: one-hot of the argmax), or None; converted on each call."""
        return None if self.recon_raw is None else _to_uint8_hwc(self.recon_raw, self.kind == "wafer")

    @property
    def is_defect(self) -> np.ndarray:
        return np.array([v != GOOD for v in self.labels], dtype=bool)

    @property
    def scale(self) -> HeatScale:
        """Fixed colour scale: 0 (the normal mean) to twice the pixel threshold."""
        vmin = 0.0
        vmax = 2 * self.pixel_threshold if self.pixel_threshold > vmin else float(np.max(self.maps, initial=1.0))
        return HeatScale(vmin, max(vmax, vmin + 1e-6), self.pixel_threshold)

    def image_scale(self, i: int) -> HeatScale:
        """Image ``i``'s own colour scale: its median pixel to its highest, with the run's pixel threshold.
        Shows where this image's map peaks even when all of it lies above the fixed scale's top (a
        defective photo whose every patch is unusual); its colours do not compare across images."""
        # the faded border would set the top: its own scale is the scored area's
        m = self.maps[i][~border_band(self.maps.shape[1:], self.border)]
        lo, hi = float(np.median(m)), float(np.max(m))
        return HeatScale(lo, max(hi, lo + 1e-6), self.pixel_threshold)

    def units(self) -> tuple[int, str]:
        """(how many, what) the image metrics count: the tiles of a tiled run's images, else images."""
        return image_units(self.names)

    @property
    def border(self) -> int:
        """Pixels on each side of a map that the image score leaves out: faded in every heatmap, outside the
        check of where the caught defects' maps peak. 0 for a method whose score is its own (not from the map)."""
        if str(self.settings.get("score", "")).endswith("(not from the map)"):
            return 0
        return int(self.settings.get("border") or 0)

    @cached_property
    def peaks(self) -> Optional[PeakCheck]:
        """`localisation.peak_check` at this threshold, made once per copy: every rerun of Inspect asks for it twice
        (the notes, the gallery's filter), and a tiled run's puts every photo back together for it."""
        return peak_check(self)

    def settings_used(self) -> dict:
        """`settings` less what this scoring did not use, as None: the target FPR beside a threshold set another
        way, the top-k share beside another image score (QA sweep 21: `udd score --json` recorded both)."""
        return {**self.settings,
                **({} if self.threshold_source.startswith("target FPR") else {"target_fpr": None}),
                **({} if self.settings.get("score") == "topk" else {"topk_percent": None})}

    def call_rule(self) -> str:
        """What the image threshold calls defective, in a sentence: per tile, and per photo, for a tiled run."""
        if self.units()[1] == "tiles":
            return "A tile is defective when its score is above it, and a photo when any of its tiles is"
        return "An image is defective when its score is above it"

    def order(self) -> np.ndarray:
        """Indices by score, highest first."""
        return np.argsort(-self.scores, kind="stable")

    def at(self, threshold: float) -> dict:
        """FPR, TPR and confusion counts of the labelled images at an image-score threshold."""
        k = self.known
        pred, y = self.scores[k] > threshold, self.is_defect[k]
        tp, fp = int((pred & y).sum()), int((pred & ~y).sum())
        tn, fn = int((~pred & ~y).sum()), int((~pred & y).sum())
        return {"threshold": float(threshold), "tp": tp, "fp": fp, "tn": tn, "fn": fn,
                "fpr": fp / (fp + tn) if fp + tn else None, "tpr": tp / (tp + fn) if tp + fn else None}

    def unmarked(self) -> np.ndarray:
        """Indices of the images called defective (score above the threshold) with no map value above the
        pixel threshold: no outline or region marks them (a mean score raised across a whole wafer map)."""
        if self.threshold is None:
            return np.zeros(0, dtype=int)
        peak = self.maps.reshape(len(self.maps), -1).max(axis=1)  # (N,)
        return np.flatnonzero((self.scores > self.threshold) & (peak <= self.pixel_threshold))

    def unmarked_line(self, i: int) -> Optional[str]:
        """Why image `i`, called defective, shows no outline (`unmarked`, for this one image); None otherwise."""
        if self.threshold is None or self.scores[i] <= self.threshold or self.maps[i].max() > self.pixel_threshold:
            return None
        return (f"ℹ️ Called defective with no pixel above the pixel threshold: {self._unmarked_why('its')}, so no "
                "outline or region marks it. Lower the pixel threshold below to outline where its map is highest.")

    def unmarked_note(self) -> Optional[str]:
        """Why some defective calls show no outline (`unmarked`), or None when every one has one. QA sweep 11:
        a Near-full wafer map scored 3x the threshold with its map just under the pixel threshold everywhere."""
        n = len(self.unmarked())
        if not n:
            return None
        called = int((self.scores > self.threshold).sum())
        return (f"{n} of the {called} images called defective {'has' if n == 1 else 'have'} no pixel above the "
                f"pixel threshold ({score_text(self.pixel_threshold)} in the heatmap's units): {self._unmarked_why()}, "
                "so no outline or region marks them; the heatmap's colour shows where it is highest")

    def _unmarked_why(self, whose: str = "their") -> str:
        """Why a defective call can leave the map unmarked, by what makes this run's score (QA sweep 13: "raised
        across the map" was said of Deep SVDD, whose score is a latent distance the map does not carry)."""
        if "(not from the map)" in str(self.settings.get("score", "")):
            return f"{whose} score is the method's latent distance, which the map does not locate"
        if self.factors is not None:
            return (f"{whose} score is the map's times a latent novelty factor, which can make the call on its own, "
                    "or it is raised across the map, not at one spot")
        return f"{whose} score is raised across the map, not at one spot"

    def all_notes(self) -> list[str]:
        """The notices, then `unmarked_note`, `nothing_called_note` and where the caught defects' maps peak
        (`off_defect_note`) at the current threshold: what every view of this scoring says."""
        said = [self.unmarked_note(), self.nothing_called_note(), off_defect_note(self.peaks)]
        return [*self.notices, *filter(None, said)]

    def nothing_called_note(self) -> Optional[str]:
        """A caution when the threshold lies above every score while labelled defects were scored: nothing is
        called defective (QA sweep 20: "0 of 14 defective caught", the highest validation tile's score above
        every test tile, unsaid); None otherwise."""
        known_bad = self.known & self.is_defect
        if self.threshold is None or not known_bad.any() or (self.scores > self.threshold).any():
            return None
        return Caution(f"the threshold {score_text(self.threshold)} ({self.threshold_source}) lies above every "
                       f"scored {self.units()[1][:-1]}'s score ({score_text(float(np.max(self.scores)))} the highest), "
                       f"so nothing is called defective and none of the {int(known_bad.sum())} defective ones is "
                       "caught; a threshold set by hand, or from a target FPR on other normal images, may suit")

    def with_threshold(self, threshold: float, source: str = "manual") -> "Inspection":
        """A copy at another image threshold (cheap: maps and metrics are shared, not recomputed).

        The threshold no longer comes from the target FPR, so the note on too few normal images for
        that rate (`fpr_note`) leaves the notices; `at_target_fpr` sets one for its own rate.
        """
        r = self.at(threshold)
        confusion = {k: r[k] for k in ("threshold", "tp", "fp", "tn", "fn")}
        pix = self.pixel_threshold
        if self.settings.get("score") in ("max", "topk") and self.factors is None:  # a score in map units
            pix = self._to_map_units(threshold)
        note = self.fpr_note(self.settings.get("target_fpr", 0.0))
        return replace(self, threshold=float(threshold), threshold_source=source, fpr=r["fpr"], tpr=r["tpr"],
                       pixel_threshold=pix, metrics=replace(self.metrics, confusion=confusion),
                       notices=[n for n in self.notices if n != note])

    def at_target_fpr(self, target_fpr: float) -> "Inspection":
        """A copy whose threshold gives `target_fpr` on the normal reference images, with `fpr_note` for it."""
        if self.normal_scores is None or not len(self.normal_scores):
            raise ValueError("target_fpr: no normal reference images to take a threshold from")
        out = self.with_threshold(threshold_for_fpr(self.normal_scores, target_fpr),
                                  f"target FPR {target_fpr:.2%} on the {self.normal_source} images")
        note = self.fpr_note(target_fpr)
        return replace(out, settings={**self.settings, "target_fpr": float(target_fpr)},
                       notices=out.notices + ([note] if note else []))

    def fpr_note(self, target_fpr: float) -> Optional[str]:
        """`metrics.too_few_normals` for the normal reference images at `target_fpr`, or None. None too when
        they all score the same: a note on why speaks for them (QA sweep 14: three overlapping notes)."""
        n = 0 if self.normal_scores is None else len(self.normal_scores)
        if n > 1 and np.ptp(self.normal_scores) == 0:
            return None
        return too_few_normals(n, target_fpr, self.normal_source, self.units()[1][:-1]) if n else None  # tile(s)

    def units_note(self) -> str:
        """How the image scores' units relate to the heatmap's ("" when the heatmap shows the map as it is)."""
        if not self.norm:
            return ""
        if str(self.settings.get("score", "")).endswith("(not from the map)"):  # QA sweep 19a: "in the map's units"
            units = "Scores are the method's own, not in the map's units"  # a latent distance
        elif self.factors is not None:
            units = "Scores are not in the map's units (each is multiplied by its image's latent novelty factor)"
        else:
            units = "Scores are in the map's own units"
        return (f" {units}; the heatmap shows the map in standard deviations of the "
                f"normal pixels, with the outline's pixel threshold at {scale_text(self.pixel_threshold)}.")

    def scale_legend(self, own_scale: bool = False) -> str:
        """What the heatmap colours mean, beside `render.scale_bar_rgb` (low on the left); ``own_scale``:
        each image on its own (`image_scale`)."""
        sc = self.scale
        ref = f"the normal {self.normal_source} images" if self.normal_source else "all scored images"
        unit = " (in standard deviations of the normal pixels above their mean)" if self.norm else ""
        if self.threshold is not None and self.settings.get("score") in ("max", "topk") and self.factors is None:
            top = f"its top {self.settings.get('topk_percent'):g}% of pixels average above it"
            source = "the image threshold in map units: " + (
                "a pixel above it alone makes the image defective" if self.settings["score"] == "max"
                else f"the image is defective when {top}")
        else:
            source = "the 99th percentile of the normal pixels"
        outline = outlines_legend(self.masks is not None, f"the pixel threshold {scale_text(sc.threshold)} ({source})")
        faded = (f"; the {self.border} px border the image score leaves out is faded, without outline (photo edges "
                 "vary more than the part)" if self.border else "")
        if own_scale:
            return (f"Heatmap colours: each image on its own scale, from its median pixel (left) to its highest "
                    f"(right){unit}: where each map peaks; colours do not compare across images; {outline}{faded}.")
        return (f"Heatmap colours: {scale_text(sc.vmin)} (left) to {scale_text(sc.vmax)} (right){unit}, one scale "
                "for every image: "
                f"0 is a typical pixel of {ref}, the top twice the pixel threshold, so a new threshold rescales "
                f"every heatmap alike; {outline}{faded}.")

    def score_text(self, i: int) -> str:
        """Image i's score for a caption, with its two parts when it carries a factor (the map's, the factor)."""
        s = float(self.scores[i])
        f = None if self.factors is None else float(self.factors[i])
        return (f"score {score_text(s)} = map {s / f:.4g} × latent novelty factor {f:.4g}" if f
                else f"score {score_text(s)}")

    def _to_map_units(self, v: float) -> float:
        return float((v - self.norm.mean) / self.norm.std) if self.norm else float(v)

    def regions(self, i: int, method: str = "components", threshold: Optional[float] = None, eps: float = 2.0,
                min_samples: int = 4, min_pixels: int = 5) -> list:
        """Defect regions of image ``i`` above ``threshold`` (map units; default the pixel threshold)."""
        from .regions import find_regions  # sklearn's DBSCAN is slow to import; only load it when asked

        thr = self.pixel_threshold if threshold is None else threshold
        amap = np.where(border_band(self.maps[i].shape, self.border), -np.inf, self.maps[i])  # the border the score
        # leaves out has no outline in the pictures, so no region either (QA sweep 22)
        return find_regions(amap, thr, method, eps, min_samples, min_pixels)

    def panels(self, i: int, factor: Optional[int] = None, pixel_threshold: Optional[float] = None,
               own_scale: bool = False) -> dict:
        """RGB pictures of image ``i``: input, reconstruction (when the method makes one), residual heatmap, overlay;
        on the fixed scale, or with ``own_scale`` on the image's own (`image_scale`)."""
        h, w = self.maps.shape[1:]
        f = auto_zoom(h, w) if factor is None else factor
        scale = self.image_scale(i) if own_scale else self.scale
        scale = scale if pixel_threshold is None else replace(scale, threshold=pixel_threshold)
        wafer = self.kind == "wafer"
        mask = None if self.masks is None else self.masks[i]
        out = {"input": zoom(as_rgb(self.images[i], wafer), f)}
        if self.recon_raw is not None:  # only image i is converted: a gallery shows a few of many
            out["reconstruction"] = zoom(as_rgb(_to_uint8_hwc(self.recon_raw[i:i + 1], wafer)[0], wafer), f)
        out["residual"] = heat_rgb(self.maps[i], scale, f, self.border)
        out["overlay"] = overlay_rgb(self.images[i], self.maps[i], scale, mask, wafer, f, self.border)
        return out

    def heatmap_png(self, i: int, factor: int = 1) -> bytes:
        """PNG overlay of image ``i`` (threshold and ground-truth contours) at ``factor`` x its size."""
        mask = None if self.masks is None else self.masks[i]
        return heatmap_png(self.images[i], self.maps[i], self.scale, mask, self.kind == "wafer", factor, self.border)

    def metric_table(self) -> list[dict]:
        """The metrics of all labelled images, then of each defect type, one dict per row with the column names
        Inspect shows (the keys of `metrics.METRIC_HELP`)."""
        unit = self.units()[1]  # a tiled run's image metrics count tiles: "tile AUROC"
        names = {"n": "defective", "normal": "normal", "image_auroc": metric_label("image AUROC", unit),
                 "image_ap": metric_label("image AP", unit), "pixel_auroc": "pixel AUROC", "aupro": "AUPRO"}
        m, known = self.metrics, self.known
        # Two counts, as each row measures its defects against every normal image (QA sweep 15: "all 97" beside
        # "Center 2" counted normal images in one row only).
        normal = int((known & ~self.is_defect).sum())
        rows = [{"type": "all", "n": int((known & self.is_defect).sum()),
                 **{k: getattr(m, k) for k in list(names)[2:]}}]
        rows += [{"type": t, **d} for t, d in m.per_type.items()]
        return [{"defect type": r["type"], **{names[k]: r.get(k, normal) for k in names}} for r in rows]

    def to_rows(self) -> list[dict]:
        """One dict per image: path, label, score, mse, defective (None without a threshold); for a score that
        is the map's times a factor (a feature AE's latent novelty), its two parts too, map_score and factor (QA
        sweep 21: only the report and Inspect gave them)."""
        t, f = self.threshold, self.factors
        rows = [{"path": n, "label": lab, "score": _num(s), "mse": _num(m),
                 "defective": None if t is None else bool(s > t)}
                for n, lab, s, m in zip(self.names, self.labels, self.scores.tolist(), self.mse.tolist())]
        if f is not None:
            for row, s, k in zip(rows, self.scores.tolist(), f.tolist()):
                row.update(map_score=_num(s / k) if k else None, factor=_num(k))
        return rows


def _num(v: float) -> Optional[float]:
    return v if np.isfinite(v) else None


def _to_uint8_hwc(recon: np.ndarray, wafer: bool) -> np.ndarray:
    """(N, C, H, W) float reconstructions -> (N, H, W, C) uint8 (wafers: one-hot of the argmax)."""
    if wafer:
        return wafer_to_onehot(np.argmax(recon, axis=1))
    out = np.clip(recon, 0.0, 1.0) * 255.0
    return np.rint(out).astype(np.uint8).transpose(0, 2, 3, 1).copy()
