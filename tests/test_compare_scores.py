"""udd_core.compare_scores: metric rows, the ROC figure, the images to compare and their heatmap rows."""
import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest

from inspect_fixtures import make_mvtec, make_run, tiny_config
from udd_core import compare as cmp
from udd_core import compare_scores as scores
from udd_core.inspection import inspect_run
from udd_core.inspection_views import roc_curve
from udd_core.metrics import Metrics
from udd_core.render import TRUTH_RGB


def fake_insp(auroc, names=("a", "b"), scores=(0.1, 0.9), labels=("good", "spot"), threshold=0.5):
    m = Metrics(auroc, None, 0.5, None, None)
    return SimpleNamespace(metrics=m, threshold=threshold, fpr=0.0, tpr=1.0, names=list(names),
                           scores=np.asarray(scores, np.float32), labels=list(labels),
                           known=np.ones(len(names), bool), is_defect=np.array([v != "good" for v in labels]))


def test_metric_rows_mark_the_best_run_only_when_runs_differ():
    rows = {r.metric: r for r in scores.metric_rows([fake_insp(0.7), fake_insp(0.9), fake_insp(None)])}
    assert rows["image AUROC"].values == (0.7, 0.9, None) and rows["image AUROC"].best == (1,)
    assert rows["F1 max"].best == ()  # all tie
    assert rows["image AP"].best == ()  # nobody has it
    assert rows["threshold"].best == () and rows["threshold"].values == (0.5, 0.5, 0.5)


def test_metric_rows_mark_every_run_that_ties_for_the_best():
    rows = {r.metric: r for r in scores.metric_rows([fake_insp(0.9), fake_insp(0.7), fake_insp(0.90000001)])}
    assert rows["image AUROC"].best == (0, 2)  # equal as shown (4 places): both marked, not the first alone


def test_common_and_picked_images():
    a = fake_insp(0.9, names=("g1", "g2", "d1", "d2", "d3"), scores=(0.1, 0.5, 0.9, 0.2, 0.8),
                  labels=("good", "good", "spot", "spot", "spot"))
    b = fake_insp(0.9, names=("d3", "g2", "d1", "g1"), scores=(5.0, 4.0, 9.0, 1.0),
                  labels=("spot", "good", "spot", "good"))
    assert scores.common_images([a, b]) == ["g1", "g2", "d1", "d3"]  # the first run's order
    # Ranks (not raw scores) across both runs: d1 top, then d3; the normal image ranked highest is g2.
    assert scores.pick_images([a, b], k=3) == ["d1", "d3", "g2"]
    assert scores.pick_images([a, b], k=2) == ["d1", "g2"]  # always the likeliest false alarm
    assert scores.pick_images([a, b], k=10) == ["d1", "d3", "g2", "g1"]
    assert scores.common_images([]) == [] and scores.pick_images([fake_insp(0.5, names=(), scores=(), labels=())]) == []
    assert roc_curve(fake_insp(1.0, labels=("good", "good"))) is None


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    data = make_mvtec(tmp_path_factory.mktemp("data") / "parts")
    root = tmp_path_factory.mktemp("runs")
    return data, make_run(root / "r4", data), make_run(root / "r8", data, config={**tiny_config(), "latent_size": 8})


def test_real_runs_side_by_side(two_runs):
    data, r4, r8 = two_runs
    sides = [cmp.read_side(r4), cmp.read_side(r8)]
    assert sides[0].input_shape == (1, 32, 32) and sides[0].method == "autoencoder" and len(sides[0].history) == 1
    assert [r.field for r in cmp.config_diff(sides) if r.changed] == ["latent_size"]
    insps = [inspect_run(r, data) for r in (r4, r8)]
    row = scores.heatmap_row(insps, scores.pick_images(insps)[0])
    assert len(row) == 3 and all(img.dtype == np.uint8 and img.shape[2] == 3 for img in row)
    assert row[0].shape == row[1].shape == row[2].shape  # same size at the same input size
    defect = next(n for n in scores.pick_images(insps) if insps[0].labels[insps[0].names.index(n)] != "good")
    for img in scores.heatmap_row(insps, defect)[1:]:  # each run's map shows where the truth is
        assert (img == TRUTH_RGB).all(axis=2).any()
    caption = scores.scale_caption(["r4", "r8"], insps)
    assert "r4: " in caption and "r8: " in caption and "green outline: the ground-truth defect." in caption
    bordered = [insps[0], dataclasses.replace(insps[1], settings={**insps[1].settings, "border": 4})]
    assert scores.scale_caption(["r4", "r8"], bordered).endswith(
        "; the border each run's image score leaves out is faded, without outline (r8 4 px).")  # QA sweep 22
    fpr, tpr = roc_curve(insps[0])
    assert fpr[0] == 0 and tpr[-1] == 1
    roc = scores.roc_figure(["r4", "r8"], ["autoencoder", "autoencoder"], insps)
    curves, chance = roc["data"][:2], roc["data"][2]
    assert [c["name"].split(",")[0] for c in curves] == ["r4", "r8"] and chance["name"] == "chance"
    assert curves[0]["line"]["color"] != curves[1]["line"]["color"]  # each run its own colour...
    assert curves[0]["line"]["dash"] != curves[1]["line"]["dash"]  # and dash: equal curves stay both visible
    loss = cmp.loss_figure(sides)  # ...the same as in its loss curves
    assert [d["line"]["color"] for d in loss["data"] if d["name"].startswith("r4")][0] == curves[0]["line"]["color"]
    assert curves[0]["x"] == fpr.tolist() and "AUROC" in curves[0]["name"]
    unlabelled = SimpleNamespace(known=np.ones(3, bool), is_defect=np.zeros(3, bool), scores=np.zeros(3))
    assert scores.roc_figure(["u"], ["autoencoder"], [unlabelled]) is None


def test_thresholds_keep_their_digits_and_captions_say_each_runs_call():
    """QA sweep 9: two thresholds both read "0.0021" (0.00213818 and 0.00209941), and the heatmap row gave
    four scores in four units with no word on which run flags the image."""
    from udd_core.compare_scores import shown_value, verdict_words

    assert shown_value("threshold", 0.00213818) == "0.0021382" != shown_value("threshold", 0.00209941)
    assert shown_value("image AUROC", 0.98765) == f"{0.98765:.{scores.SHOWN_DIGITS}f}"
    insp = fake_insp(0.9, threshold=0.5)
    assert verdict_words(insp, 0.7) == " · defective" and verdict_words(insp, 0.5) == " · good"
    assert verdict_words(fake_insp(0.9, threshold=None), 0.7) == ""


def test_tiled_and_whole_image_runs_get_a_note_that_their_image_metrics_count_different_things():
    whole = fake_insp(0.9, names=("a.png", "b.png"))
    tiles = fake_insp(0.6, names=("a.png#tile0", "a.png#tile1", "b.png#tile0"), scores=(0.1, 0.2, 0.9),
                      labels=("good", "good", "spot"))
    note = scores.counting_note(["w", "t"], [whole, tiles])
    assert "2 images (w), 3 tiles (t)" in note and "do not compare" in note and "pixel AUROC and AUPRO do" in note
    assert "no run is marked best" in note and "ROC curves" in note
    assert scores.counting_note(["w", "w2"], [whole, whole]) is None  # same units: nothing to say
    # QA sweep 11: the table still painted the "best" image AUROC green above that note.
    rows = {r.metric: r for r in scores.metric_rows([whole, tiles])}
    auroc = rows["image AUROC (per tile for a tiled run)"]  # QA sweep 21: a tile AUROC read as per photo
    assert auroc.values == (0.9, 0.6) and auroc.best == ()
    per_tile = " (per tile for a tiled run)"
    assert rows["F1 max" + per_tile].best == () and rows["image AP" + per_tile].best == ()
    assert {"tile AUROC", "tile AP", "F1 max", "tile FPR"} <= {r.metric for r in scores.metric_rows([tiles, tiles])}
    assert {"FPR" + per_tile, "TPR" + per_tile, "threshold"} <= set(rows)  # QA sweep 22: unmarked beside them
    whole.metrics, tiles.metrics = (dataclasses.replace(i.metrics, pixel_auroc=p) for i, p in ((whole, 0.8),
                                                                                                (tiles, 0.7)))
    assert {r.metric: r for r in scores.metric_rows([whole, tiles])}["pixel AUROC"].best == (0,)  # pixels compare
    # Heatmap rows: the whole-image runs (a tile is not an image they scored), all runs when none is tiled.
    assert scores.heatmap_runs([tiles, whole, whole]) == [1, 2] and scores.heatmap_runs([whole, whole]) == [0, 1]
    assert scores.common_images([whole, whole]) == ["a.png", "b.png"] and scores.common_images([whole, tiles]) == []


def test_trained_here_and_elsewhere_follow_each_inspections_relation():
    """Judged after scoring, from `inspection_inputs.data_relation`: a copy of a run's images is its training
    data, not other data (QA sweep 15); a run that records no data (a reference model folder) is in neither."""
    insps = [SimpleNamespace(relation=r) for r in ("training", "other", "own", "")]
    names, paths = ["a", "b", "c", "d"], ["/d/a", "/d/b", "/d/c", ""]
    assert scores.trained_here(names, insps) == ["a"]
    assert scores.trained_elsewhere(names, paths, insps) == ["b (trained on /d/b)"]


def test_trained_scoring_words_name_the_runs_scored_with_their_trainings_defaults():
    from udd_core.losses import SSIM_SCORING_NOTE
    from udd_core.scoring import WAFER_SCORING_NOTE

    insps = [SimpleNamespace(notices=[SSIM_SCORING_NOTE]), SimpleNamespace(notices=[WAFER_SCORING_NOTE]),
             SimpleNamespace(notices=[SSIM_SCORING_NOTE]), SimpleNamespace(notices=[])]
    assert scores.trained_scoring_words(["a", "b", "c", "d"], insps) == (
        "; a, c: the SSIM residual and top 1%, as its SSIM training loss suggests"
        "; b: its map smoothed over 1.5 dies and top 5%, as on wafer maps")
    assert scores.trained_scoring_words(["d"], insps[3:]) == ""


def test_runs_whose_auroc_intervals_overlap_are_said_not_to_be_told_apart():
    """QA sweep 19b: 0.913 against 0.885 image AUROC on 21 defective and 12 normal images was marked as a win."""
    from udd_core.metrics import auroc_interval

    lo, hi = auroc_interval(0.9, 50, 50)  # Hanley and McNeil's standard error, by hand: 0.0321
    assert (lo, hi) == pytest.approx((0.9 - 1.96 * 0.032124, 0.9 + 1.96 * 0.032124), abs=1e-5)
    assert auroc_interval(1.0, 5, 5) == (1.0, 1.0) and auroc_interval(0.99, 5, 5)[1] == 1.0
    with pytest.raises(ValueError, match="n_defective, n_normal"):
        auroc_interval(0.5, 0, 3)

    def run(auc, n_bad, n_good):
        y = np.array([True] * n_bad + [False] * n_good)
        return SimpleNamespace(metrics=SimpleNamespace(image_auroc=auc), known=np.ones(len(y), bool), is_defect=y,
                               names=[f"{i}.png" for i in range(len(y))], units=lambda: (len(y), "images"))

    note = scores.interval_note(["svdd", "fae", "bank"], [run(0.913, 21, 12), run(0.885, 21, 12), run(1.0, 21, 12)])
    assert note.startswith("image AUROC 95% intervals on these 21 defective and 12 normal images (Hanley-McNeil): "
                           "svdd 0.82-1.00; fae 0.77-1.00; bank 1.00-1.00. fae and svdd: each lies within")
    assert scores.interval_note(["a", "b"], [run(0.99, 400, 400), run(0.80, 400, 400)]) is None  # told apart
    three = scores.interval_note(["a", "b", "c"], [run(0.9, 20, 10), run(0.88, 20, 10), run(0.91, 20, 10)])
    assert "None of these runs is told apart from another by this test set" in three and "a and b" not in three
