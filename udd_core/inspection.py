"""Inspection: score a trained run (or a reference-package model folder) on a data set.

`inspect_run` loads the model and the images, reconstructs and scores them in batches, puts the
residual maps on the scale of the run's NORMAL validation images (never a per-image min-max),
picks a threshold (hand-set, else the target false-positive rate on normal validation scores,
else the best F1 on labelled data) and computes the metrics. The result, `Inspection`
(`inspection_result.py`), feeds the Inspect page, `udd score`, the CSV/PNG exports and the HTML
report. What it scores (the detector, the data at the run's size, the validation images) comes
from `inspection_inputs.py`.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from .data import data_kind
from .tiles import one_image, source_image
from .inspection_inputs import TRAINING, Loaded, load_inputs, validation_images
from .inspection_result import Inspection, normal_label
from .training_data import UNKNOWN_LABELS
from .metrics import GOOD, Metrics, best_f1_threshold, compute_metrics, threshold_for_fpr
from .methods import scoring_record, scoring_with, wafer_features_note
from .model import WEIGHTS_FILE
from .notices import Caution
from .scoring import SCORES, NormStats, check_border, fit_norm_stats, normalise, outline_threshold, score_images
from .settings import resolve_device

INVERTED = 0.35  # an AUROC this far below chance says the scores point the wrong way, not that they are weak


def inverted_notes(m: Metrics, residual: str, own_score: bool = False) -> list[str]:
    """A note for each AUROC far below chance: the scores rank defects below normal images (or pixels), so
    what made them misses what makes these defects, and a look at another residual or method is due. The
    heatmap is always the `residual`'s; a method's `own_score` (Deep SVDD's distance) makes the image scores,
    which no residual changes, so another method alone is suggested for those."""
    notes = []
    by_map = f"the {residual} residual"
    scoring = "this run's own score" if own_score else by_map
    if m.image_auroc is not None and m.image_auroc < INVERTED:
        instead = "another method" if own_score else "another residual or method"
        notes.append(Caution(f"image AUROC {m.image_auroc:.2f}: {scoring} ranks the defective images below the "
                             f"normal ones, so it misses what makes them defective here; try {instead}"))
    if m.pixel_auroc is not None and m.pixel_auroc < INVERTED:
        notes.append(Caution(f"pixel AUROC {m.pixel_auroc:.2f}: with {by_map} the heatmap is brighter on normal "
                             "pixels than on the defects"))
    # QA sweep 19b: missing pads ranked below good boards (image AUROC 0.20) with 0.73 over all types: unsaid
    low = {t: [f"{name} AUROC {r[k]:.2f}" for k, name in (("image_auroc", "image"), ("pixel_auroc", "pixel"))
               if r.get(k) is not None and r[k] < INVERTED] for t, r in m.per_type.items()}
    if len(m.per_type) > 1 and (low := {t: v for t, v in low.items() if v}):
        types = "; ".join(f"{t} ({', '.join(v)})" for t, v in low.items())
        who = f"This run's own score (and the heatmap, {by_map})" if own_score else f"The {residual} residual"
        notes.append(Caution(f"scored below the normal images: {types}. {who} misses what makes "
                             f"{'this type' if len(low) == 1 else 'these types'} "
                             "defective; look at their images, and try another "
                             + ("method" if own_score else "residual or method")))
    return notes


def seen_scores_note(value: float) -> str:
    """Why a threshold from training images that all score alike says nothing: a method that keeps its
    training images (a kNN on their latent codes) scores each one as its own nearest neighbour."""
    # A caution: every number after it reads otherwise (QA sweep 13: only a note)
    return Caution(f"every training image scores {value:.4g}: this method keeps its training images and scores "
                   "them as seen, so a threshold from them flags every image it has not seen. Set a threshold by "
                   "hand (--threshold, or Threshold from: manual on Inspect), or train with a validation split")


def same_scores_note(scores: np.ndarray, images: np.ndarray) -> Optional[str]:
    """A caution when every image scores the same: the detector cannot tell any image from another (every
    AUROC 0.5), which a collapsed model gives (QA sweep 12: a Deep SVDD run whose encoder decayed to zero
    scored 480 wafer maps 1.28 each, and nothing said so). When the `images` (N, ...) are all alike too, the
    scores are right and only that is said (QA sweep 15: a lot of perfect wafers of one product). None when
    the scores differ or are too few."""
    if len(scores) < 2 or np.ptp(scores) > 1e-9 * max(1.0, float(np.abs(scores).max())):
        return None
    if all(np.array_equal(images[0], im) for im in images[1:]):
        return (f"all {len(scores)} images are identical, so they score the same ({float(scores[0]):.5g}); "
                "no image can rank above another")
    return Caution(f"all {len(scores)} images score {float(scores[0]):.5g}: this run gives every image the same "
                   "score, so it cannot tell a defect from a normal image; its model has likely collapsed during "
                   "training (see the run's loss curve) and needs training again")


def score_meaning(det, post: dict, factors: bool) -> str:
    """An image score in words, with its unit: the reduction of the map and what one map value measures
    (`Detector.map_meaning`), or a method's own score (`scoring_record`'s words); `factors`: each score is
    also multiplied by the image's latent novelty (a feature AE)."""
    if det.own_scores:
        return str(scoring_record(det, post)["score"])
    border = f", leaving out a {post['border']}-px border" if post.get("border") else ""
    reduction = {"mean": "the mean", "max": "the highest value",
                 "topk": f"the mean of the top {post.get('topk_percent', 1):g}% of values"}.get(post["score"],
                                                                                                post["score"])
    factor = ", times the image's latent novelty factor" if factors else ""
    return f"{reduction} of the anomaly map{border}{factor}; a map value is {det.map_meaning(post['residual'])}"


def _empty_metrics() -> Metrics:
    return Metrics(None, None, None, None, None, {}, None)


def _calibration_fits(cal: Optional[dict], residual: str, score: str, smooth: float, topk: float,
                      border: int = 0) -> bool:
    if not cal or cal.get("weights", WEIGHTS_FILE) != WEIGHTS_FILE:
        return False
    scores = cal.get("scores") or {}  # computed over whole maps: no border left out
    return (cal.get("residual") == residual and smooth == 0 and border == 0 and isinstance(scores.get(score), list)
            and len(scores[score]) > 0 and _usable_norm(cal.get("norm"))
            and all(isinstance(v, (int, float)) and math.isfinite(v) for v in scores[score])
            and (score != "topk" or float(cal.get("topk_percent", -1)) == float(topk)))


def _usable_norm(d: object) -> bool:
    """Whether calibration.json's norm statistics can scale a map (QA sweep 15: a std of 0 was a
    ZeroDivisionError, a norm of text a line not naming the file); a damaged one is re-scored instead."""
    try:
        norm = NormStats.from_dict(d)  # type: ignore[arg-type]
    except ValueError:
        return False
    return all(map(math.isfinite, (norm.mean, norm.std, norm.q99))) and norm.std > 0


def inspect_run(model_dir=None, data_path=None, split: str = "test", residual: Optional[str] = None,
                score: Optional[str] = None, smooth_sigma: Optional[float] = None, topk_percent: Optional[float] = None,
                border: Optional[int] = None, size: Optional[tuple[int, int]] = None,
                threshold: Optional[float] = None, target_fpr: float = 0.01,
                batch_size: int = 32, device: str = "cpu", loaded: Optional[Loaded] = None,
                progress: Optional[Callable[[int, int], None]] = None, keep_recon: bool = True) -> Inspection:
    """Score a data set with a run (or reference model) folder; see the module docstring.

    Pass ``loaded`` (from `load_inputs`) to reuse an already loaded detector and data set.
    Post-processing left at None takes the method's defaults (`methods.scoring_with`).
    ``keep_recon`` False skips keeping the reconstructions (no reconstruction panels) when only
    scores, maps and metrics are wanted.
    """
    if score is not None and score not in SCORES:
        raise ValueError(f"score: must be one of {SCORES}, got {score!r}")
    if not 0.0 <= target_fpr <= 1.0:
        raise ValueError(f"target_fpr: must be in [0, 1], got {target_fpr}")
    device = str(resolve_device(device))
    if loaded is None:
        if model_dir is None:
            raise ValueError("model_dir: give a run or model folder")
        loaded = load_inputs(model_dir, data_path, split, size, device=device)
    ds, det, notices = loaded.data, loaded.detector, list(loaded.notices)
    post = scoring_with(det, residual=residual, score=score, smooth_sigma=smooth_sigma, topk_percent=topk_percent,
                        border=border)
    why = det.scoring_note  # an autoencoder whose training suggests its own defaults: an SSIM loss, wafer maps
    if why and all(post[k] == v for k, v in det.describe().items() if k in post):
        # Scored with them: say why, in every view and export of this scoring (QA sweep 11: Inspect passes the
        # sidebar's values, and its zip and report lost the note).
        notices.append(why)
    residual, score, smooth_sigma, topk_percent, border = (
        post[k] for k in ("residual", "score", "smooth_sigma", "topk_percent", "border"))
    check_border(border, tuple(loaded.input_shape[1:]))  # before any image is scored
    if ds.kind == "wafer" and (note := wafer_features_note(det, residual)):
        notices.append(note)
    kw = dict(post, batch_size=batch_size, device=device)
    res = score_images(det, ds.images, progress=progress, keep_recon=keep_recon, **kw)
    labels = [normal_label(v) for v in ds.labels]
    known = np.array([v.lower() not in UNKNOWN_LABELS for v in labels], dtype=bool)
    if not known.all():
        notices.append(f"{int((~known).sum())} images with an unknown label are left out of the metrics")
    good = known & np.array([v == GOOD for v in labels], dtype=bool)

    # Normal reference: the run's calibration, else its validation images re-scored, else test goods.
    cal = loaded.calibration
    norm, normal_scores, normal_source = None, None, ""
    if _calibration_fits(cal, residual, score, smooth_sigma, topk_percent, border):
        norm = NormStats.from_dict(cal["norm"])
        normal_scores = np.asarray(cal["scores"][score], dtype=np.float64)
        normal_source = {"train": "training"}.get(str(cal.get("source")), str(cal.get("source", "validation")))
    else:
        imgs, normal_source, notes = validation_images(loaded) if loaded.run else (None, "", [])
        notices += notes
        if imgs is not None:
            ref = score_images(det, imgs, keep_recon=False, **kw)
            norm, normal_scores = fit_norm_stats(ref.maps), ref.scores.astype(np.float64)
        elif good.any() and (data_kind(loaded.data_path) == "mvtec" or good.sum() < known.sum()):
            norm, normal_scores = fit_norm_stats(res.maps[good]), res.scores[good].astype(np.float64)
            normal_source = "test good"
            notices.append("no validation images of the run: heatmap scale and threshold come from the good "
                           "images of this data set, so its false-positive rate is optimistic")
        else:  # unlabelled images: a scale shared by all of them, but no basis for a threshold
            norm = fit_norm_stats(res.maps)
            notices.append("no normal reference images: the heatmap scale comes from all scored images "
                           "and no threshold is set (give one)")
    if normal_source == "training":
        if normal_scores is not None and len(normal_scores) > 1 and np.ptp(normal_scores) == 0:  # one image: always
            notices.append(seen_scores_note(float(normal_scores[0])))  # it says the rest too (QA sweep 14)
        else:
            notices.append("the run has no validation split: normal statistics come from its training images "
                           "(expect more false positives than the target)")

    y = np.array([v != GOOD for v in labels], dtype=bool)
    if threshold is not None:
        thr, source = float(threshold), "manual"
    elif normal_scores is not None and normal_scores.size:
        thr = threshold_for_fpr(normal_scores, target_fpr)
        source = f"target FPR {target_fpr:.2%} on the {normal_source} images"
    elif y[known].any() and (~y[known]).any():
        thr, source = best_f1_threshold(res.scores[known], y[known])[0], "best F1 on this data"
    else:
        thr, source = None, "none"

    maps = normalise(res.maps, norm).astype(np.float32, copy=False) if norm else res.maps
    if norm:
        pix = outline_threshold(norm, thr, score, res.factors is not None)
    elif thr is not None and score in ("max", "topk") and res.factors is None:  # a score in map units
        pix = thr
    else:
        pix = float(np.quantile(maps[good] if good.any() else maps, 0.99))

    masks = ds.masks
    if known.any():
        pick = slice(None) if known.all() else known  # a slice avoids copying (N, H, W) maps
        pm = (maps[pick], masks[pick]) if masks is not None else (None, None)
        metrics = compute_metrics(res.scores[pick], [v for v, k in zip(labels, known) if k], *pm, threshold=thr)
    else:
        metrics = _empty_metrics()
    if same := same_scores_note(res.scores, ds.images):
        notices.append(same)
    if not loaded.mismatch:  # on data of the other kind, scores pointing the wrong way are no advice on scoring
        notices += inverted_notes(metrics, residual, det.own_scores)
    post = scoring_record(det, {"residual": residual, "score": score, "smooth_sigma": float(smooth_sigma),
                                "topk_percent": float(topk_percent), "border": int(border)})
    settings = {"model": str(loaded.model_dir), "data": loaded.data_path, "split": loaded.split,
                "input_shape": list(loaded.input_shape), **post, "target_fpr": float(target_fpr)}
    insp = Inspection(list(ds.names), labels, res.scores, res.mse, maps, ds.images,
                      res.recon, masks, metrics, thr, source, None, None,
                      float(pix), norm, normal_scores, normal_source, ds.kind, settings, notices, res.factors,
                      loaded.mismatch, score_meaning(det, post, res.factors is not None), loaded.relation,
                      {k: normal_label(v) for k, v in ds.source_labels.items()})
    if thr is not None:
        r = insp.at(thr)
        insp.fpr, insp.tpr = r["fpr"], r["tpr"]
    if threshold is None and (note := insp.fpr_note(target_fpr)):  # the threshold came from the target FPR
        insp.notices.append(note)
    if note := unlabelled_alarm_note(insp):
        insp.notices.append(note)
    return insp


UNLABELLED_ALARM = 0.5  # this share of images called defective, none labelled a defect: a caution


def unlabelled_alarm_note(insp) -> Optional[str]:
    """A caution when most images are called defective and none is labelled a defect (a plain folder, a .npy of
    maps, a new lot): the FPR then counts images nobody judged (QA sweep 15: 'FPR 1.0000' on 716 unlabelled
    maps, with no word on it). None for the run's own training images, which other notes cover."""
    if insp.threshold is None or insp.is_defect.any() or insp.relation == TRAINING or not len(insp):
        return None
    if one_image(insp.names):  # one suspect part, checked alone: its verdict is the point
        return None
    called = int((insp.scores > insp.threshold).sum())
    if called < UNLABELLED_ALARM * len(insp):
        return None
    return Caution(f"{called} of {len(insp)} images are called defective, and none is labelled a defect"
                   f"{_alarms_in_common(insp)}: if they are normal, the run's threshold does not fit them (another "
                   "product, lot or imaging than its training images); if some are not, label them (MVTec folders by "
                   "type, labels in the .npz) to measure the run on them. Its FPR counts them all as normal")


def _alarms_in_common(insp) -> str:
    """", among them all N .jpg images" for each file type of 5 or more images all called defective while other
    types are not (QA sweep 19b: every JPEG copy of a board flagged by a run that learned PNGs, unsaid); ""."""
    called = insp.scores > insp.threshold  # (N,)
    kinds = np.array([Path(source_image(n)).suffix.lower() for n in insp.names])
    whole = [k for k in sorted(set(kinds.tolist())) if k and (kinds == k).sum() >= 5 and called[kinds == k].all()]
    if not whole or called[~np.isin(kinds, whole)].all():
        return ""
    return ", among them " + " and ".join(f"all {int((kinds == k).sum())} {k} images" for k in whole) + \
        " (a file type the run may not have learned)"
