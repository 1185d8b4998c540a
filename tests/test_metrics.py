import json

import numpy as np
import pytest
from scipy import ndimage
from sklearn.metrics import roc_auc_score

from udd_core.metrics import (
    aupro,
    best_f1_threshold,
    compute_metrics,
    pixel_auroc,
    rates_at,
    roc_points,
    threshold_for_fpr,
)

SCORES = [0.1, 0.4, 0.35, 0.8]
LABELS = ["good", "good", "crack", "crack"]


def test_image_metrics_by_hand():
    m = compute_metrics(SCORES, LABELS, threshold=0.3)
    # Defects {0.35, 0.8} vs normals {0.1, 0.4}: 3 of 4 pairs ordered correctly.
    assert m.image_auroc == pytest.approx(0.75)
    # Ranking D, G, D, G: precision 1 at recall 1/2, 2/3 at recall 1.
    assert m.image_ap == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    # Best cut flags {0.8, 0.4, 0.35}: tp 2, fp 1, fn 0 -> F1 = 4 / 5.
    assert m.f1_max == pytest.approx(0.8)
    assert m.confusion == {"threshold": 0.3, "tp": 2, "fp": 1, "tn": 1, "fn": 0}
    assert m.pixel_auroc is None and m.aupro is None
    assert m.per_type["crack"]["image_auroc"] == pytest.approx(0.75)
    assert m.per_type["crack"]["n"] == 2
    json.dumps(m.to_dict())


def test_best_f1_threshold_by_hand_and_brute_force():
    thr, f1 = best_f1_threshold(SCORES, [s != "good" for s in LABELS])
    assert f1 == pytest.approx(0.8)
    assert 0.1 < thr < 0.35
    rng = np.random.default_rng(0)
    s = np.round(rng.random(40), 1)  # many ties
    y = rng.random(40) < 0.4
    thr, f1 = best_f1_threshold(s, y)
    pred = s > thr
    tp, fp, fn = (pred & y).sum(), (pred & ~y).sum(), (~pred & y).sum()
    assert f1 == pytest.approx(2 * tp / (2 * tp + fp + fn))
    brute = max(2 * ((s > t) & y).sum() / ((s > t).sum() + y.sum()) for t in np.append(np.unique(s), -1))
    assert f1 == pytest.approx(brute)
    with pytest.raises(ValueError, match="defective"):
        best_f1_threshold([0.1, 0.2], [False, False])


@pytest.mark.parametrize("target", [0.0, 0.01, 0.05, 0.1, 0.29, 0.5, 1.0])
def test_threshold_for_fpr_achieves_target_and_is_tight(target):
    rng = np.random.default_rng(1)
    normal = np.round(rng.normal(size=100), 1)  # ties included
    t = threshold_for_fpr(normal, target)
    fpr = np.mean(normal > t)
    assert fpr <= target
    lower = normal[normal < t]
    if lower.size:  # any smaller normal score as threshold would exceed the target
        assert np.mean(normal > lower.max()) > target
    with pytest.raises(ValueError, match="target_fpr"):
        threshold_for_fpr(normal, 1.5)


def test_rates_at_by_hand_and_undefined():
    r = rates_at(0.3, SCORES, [False, False, True, True])
    assert r == {"fpr": 0.5, "tpr": 1.0}
    assert rates_at(0.5, [0.1, 0.9], [False, False]) == {"fpr": 0.5, "tpr": None}
    assert rates_at(0.5, [0.1, 0.9], [True, True]) == {"fpr": None, "tpr": 0.5}
    with pytest.raises(ValueError, match="length"):
        rates_at(0.5, [0.1, 0.9], [True])


def test_roc_points_shape():
    fpr, tpr, thr = roc_points(SCORES, [False, False, True, True])
    assert fpr[0] == 0 and tpr[-1] == 1 and fpr[-1] == 1
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(thr) < 0)


def test_unsupported_metrics_are_none():
    only_good = compute_metrics([0.1, 0.2, 0.3], ["good"] * 3)
    assert only_good.image_auroc is None and only_good.image_ap is None and only_good.f1_max is None
    assert only_good.per_type == {}
    only_bad = compute_metrics([0.1, 0.2], ["hole", "hole"])
    assert only_bad.image_auroc is None and only_bad.f1_max == pytest.approx(1.0)
    assert only_bad.per_type["hole"]["image_auroc"] is None
    maps = np.random.default_rng(0).random((2, 4, 4))
    no_defect_pixels = compute_metrics([0.1, 0.2], ["good", "hole"], maps=maps, masks=np.zeros((2, 4, 4)))
    assert no_defect_pixels.pixel_auroc is None and no_defect_pixels.aupro is None
    assert no_defect_pixels.image_auroc == 1.0
    assert aupro(maps, np.zeros((2, 4, 4))) is None
    assert pixel_auroc(maps, np.ones((2, 4, 4))) is None  # no normal pixels


def test_per_type_separates_types():
    scores = [0.1, 0.2, 0.3, 0.9, 0.8, 0.05, 0.15]
    labels = ["good", "good", "good", "crack", "crack", "hole", "hole"]
    m = compute_metrics(scores, labels)
    assert m.per_type["crack"]["image_auroc"] == 1.0
    assert m.per_type["hole"]["image_auroc"] == pytest.approx(1 / 6)  # 0.15 beats only 0.1
    assert m.image_auroc == pytest.approx((6 + 1) / 12)


def test_pixel_auroc_matches_sklearn_with_ties():
    rng = np.random.default_rng(2)
    maps = np.round(rng.random((5, 9, 9)), 2)
    masks = rng.random((5, 9, 9)) < 0.2
    maps[masks] += 0.3
    expected = roc_auc_score(masks.ravel(), maps.ravel())
    assert pixel_auroc(maps, masks) == pytest.approx(expected, abs=1e-6)
    labels = ["good", "a", "a", "b", "b"]
    masks[0] = False
    m = compute_metrics(maps.max(axis=(1, 2)), labels, maps=maps, masks=masks)
    assert m.pixel_auroc == pytest.approx(roc_auc_score(masks.ravel(), maps.ravel()), abs=1e-6)
    sel = [0, 1, 2]
    assert m.per_type["a"]["pixel_auroc"] == pytest.approx(roc_auc_score(masks[sel].ravel(), maps[sel].ravel()), abs=1e-6)


def _regions_case():
    """Image 0 normal; image 1 holds region A (2x2, scored high) and region B (2x2, scored low)."""
    rng = np.random.default_rng(3)
    maps = rng.random((2, 12, 12)) * 0.5  # normal pixels in [0, 0.5)
    masks = np.zeros((2, 12, 12), dtype=bool)
    masks[1, 1:3, 1:3] = True
    masks[1, 8:10, 8:10] = True
    maps[1, 1:3, 1:3] = 0.9
    return maps, masks


def test_aupro_by_hand():
    maps, masks = _regions_case()
    maps_b_found = maps.copy()
    maps_b_found[1, 8:10, 8:10] = 0.95
    assert aupro(maps_b_found, masks) == pytest.approx(1.0)  # both regions above every normal pixel
    maps[1, 8:10, 8:10] = -1.0  # region B below every normal pixel: PRO = 1/2 until FPR = 1
    assert aupro(maps, masks) == pytest.approx(0.5)
    # AUPRO averages regions, not pixels: a big undetected region counts once.
    masks[1, 4:6, 0:12] = True
    maps[1, 4:6, 0:12] = -1.0
    pro = aupro(maps, masks)
    assert pro == pytest.approx(1 / 3, abs=1e-6)


def test_aupro_regions_use_eight_connectivity():
    maps = np.zeros((1, 6, 6))
    masks = np.zeros((1, 6, 6), dtype=bool)
    masks[0, 1, 1] = masks[0, 2, 2] = True  # one diagonal region, half detected
    maps[0, 1, 1], maps[0, 2, 2] = 1.0, -1.0
    masks[0, 4, 4:6] = True  # second region, undetected
    maps[0, 4, 4:6] = -1.0
    assert aupro(maps, masks, max_fpr=0.3) == pytest.approx((0.5 + 0.0) / 2)  # 4-conn would give 1/3


def _aupro_brute(maps, masks, max_fpr):
    """Exact PRO curve at every distinct score, integrated to max_fpr."""
    lab = np.zeros(masks.shape, dtype=int)
    n = 0
    for i in range(masks.shape[0]):
        li, k = ndimage.label(masks[i], structure=np.ones((3, 3)))
        lab[i] = np.where(li > 0, li + n, 0)
        n += k
    neg = maps[~masks]
    fs, ps = [0.0], [0.0]
    for t in np.unique(maps)[::-1]:
        fs.append(np.mean(neg >= t))
        ps.append(np.mean([np.mean(maps[lab == r] >= t) for r in range(1, n + 1)]))
    fs, ps = np.array(fs), np.array(ps)
    end = np.interp(max_fpr, fs, ps)
    keep = fs <= max_fpr
    xs, ys = np.append(fs[keep], max_fpr), np.append(ps[keep], end)
    return np.sum(np.diff(xs) * (ys[1:] + ys[:-1]) / 2) / max_fpr


@pytest.mark.parametrize("max_fpr", [0.3, 1.0])
def test_aupro_matches_exact_curve(max_fpr):
    rng = np.random.default_rng(4)
    maps = rng.random((4, 16, 16))
    masks = np.zeros((4, 16, 16), dtype=bool)
    masks[1, 2:6, 3:9] = True
    masks[2, 10:15, 10:12] = True
    masks[3, 0:3, 0:3] = True
    masks[3, 9:16, 2:4] = True
    maps[masks] += rng.random(masks.sum()) * 0.6
    got = aupro(maps, masks, max_fpr=max_fpr)
    assert got == pytest.approx(_aupro_brute(maps, masks, max_fpr), abs=0.01)
    m = compute_metrics(maps.max(axis=(1, 2)), ["good", "x", "x", "y"], maps=maps, masks=masks, max_fpr=max_fpr)
    assert m.aupro == pytest.approx(got, abs=1e-9)
    sel = [0, 3]
    assert m.per_type["y"]["aupro"] == pytest.approx(_aupro_brute(maps[sel], masks[sel], max_fpr), abs=0.01)


def test_metric_input_validation():
    with pytest.raises(ValueError, match="differ in length"):
        compute_metrics([0.1, 0.2], ["good"])
    with pytest.raises(ValueError, match="maps"):
        compute_metrics([0.1, 0.2], ["good", "a"], maps=np.zeros((3, 4, 4)), masks=np.zeros((3, 4, 4)))
    with pytest.raises(ValueError, match="max_fpr"):
        aupro(np.zeros((1, 4, 4)), np.ones((1, 4, 4)), max_fpr=0.0)
    with pytest.raises(ValueError, match="NaN"):
        compute_metrics([0.1, float("nan")], ["good", "a"])


def test_too_few_normals_counts_one_image_as_one():
    from udd_core.metrics import too_few_normals

    assert too_few_normals(1, 0.01, "validation").startswith(
        "the threshold rests on 1 validation image, too few to measure an FPR of 1.00% (that needs 100): "
        "it is that image's score")
    assert "rests on 3 normal images" in too_few_normals(3, 0.01) and "their highest score" in too_few_normals(3, 0.01)
    assert too_few_normals(100, 0.01) is None and too_few_normals(3, 0.0) is None
