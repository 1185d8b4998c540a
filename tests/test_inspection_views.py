"""udd_core.inspection_views: what the Inspect page draws of an Inspection, read as plain figure specs."""
import dataclasses

import numpy as np
import plotly.graph_objects as go
import pytest

from inspect_fixtures import make_mvtec, make_run
from udd_core import inspection_views as views
from udd_core.inspection import inspect_run
from udd_core.render import HeatScale


@pytest.fixture(scope="module")
def insp(tmp_path_factory):
    data = make_mvtec(tmp_path_factory.mktemp("data") / "parts")
    return inspect_run(make_run(tmp_path_factory.mktemp("runs") / "tiny", data), data)


def test_gallery_filters_split_the_images_at_the_threshold(insp):
    f = views.gallery_filters(insp)
    pred = insp.scores > insp.threshold
    assert f["all"].all() and len(f["all"]) == len(insp)
    assert (f["predicted defective"] == pred).all() and (f["predicted good"] == ~pred).all()
    assert (f["missed defects (FN)"] == (insp.is_defect & ~pred)).all()  # every image here is labelled
    assert (f["false alarms (FP)"] == (~insp.is_defect & pred)).all()
    low = insp.with_threshold(float(insp.scores.min()) - 1)  # everything defective: no misses, every good one FP
    f = views.gallery_filters(low)
    assert not f["missed defects (FN)"].any() and f["false alarms (FP)"].sum() == (~insp.is_defect).sum()


def test_histogram_shows_each_group_once_on_shared_bins(insp):
    fig = views.score_histogram(insp, insp.normal_scores, insp.normal_source)
    names = [t["name"] for t in fig["data"]]
    assert names[:2] == ["normal (this data)", "defective"]
    assert len(fig["data"][1]["x"]) == int(insp.is_defect.sum())
    assert len({str(t["xbins"]) for t in fig["data"]}) == 1  # one set of bins: the bars compare
    bins = fig["data"][0]["xbins"]
    for t in fig["data"]:  # QA: the highest score sat on the last bin's open edge, and plotly left it out
        x = np.asarray(t["x"])
        assert ((x >= bins["start"]) & (x < bins["end"])).all()
    assert max(max(t["x"]) for t in fig["data"]) + 1e-12 < bins["end"] <= max(max(t["x"]) for t in fig["data"]) \
        + 1.0001 * bins["size"]
    assert (insp.normal_source != "test good") == (len(names) == 3)  # the threshold's reference, when other
    assert fig["layout"]["shapes"][0]["x0"] == insp.threshold
    go.Figure(fig)  # a valid plotly spec
    same = views.score_histogram(insp, insp.normal_scores, "test good")
    assert [t["name"] for t in same["data"]] == names[:2]  # this data's own good images: not drawn twice


def test_roc_marks_the_operating_point_and_needs_both_classes(insp):
    fig = views.roc_with_threshold(insp)
    curve, point = fig["data"]
    assert curve["x"][0] == 0 and curve["y"][-1] == 1 and point["x"] == [insp.fpr] and point["y"] == [insp.tpr]
    assert f"{insp.metrics.image_auroc:.3f}" in fig["layout"]["title"]["text"]
    go.Figure(fig)
    good_only = insp.with_threshold(insp.threshold)
    good_only.labels = ["good"] * len(insp)
    assert views.roc_with_threshold(good_only) is None and views.roc_curve(good_only) is None


def test_heatmap_colours_within_the_scale_and_hovers_the_true_value(insp):
    i = int(insp.order()[0])
    scale = HeatScale(0.0, float(np.median(insp.maps[i])), 0.1)  # a top below the map's peak
    fig = views.heatmap_figure(insp, i, scale)
    trace = fig["data"][0]
    assert trace["z"].max() == scale.vmax and trace["customdata"].max() == insp.maps[i].max() > scale.vmax
    assert trace["z"].shape == insp.maps[i].shape
    h, w = insp.maps[i].shape  # QA: square pixels stretched the x axis to 150 for a 128-px map
    assert fig["layout"]["xaxis"]["range"] == [-0.5, w - 0.5] and fig["layout"]["yaxis"]["range"] == [h - 0.5, -0.5]
    assert fig["layout"]["xaxis"]["constrain"] == fig["layout"]["yaxis"]["constrain"] == "domain"
    assert fig["layout"]["shapes"] == []  # no border left out of the score: no frame
    framed = views.heatmap_figure(dataclasses.replace(insp, settings={**insp.settings, "border": 4}), i, scale)
    (rect,) = framed["layout"]["shapes"]  # the scored area, framed
    assert (rect["x0"], rect["x1"], rect["y0"], rect["y1"]) == (3.5, w - 4.5, 3.5, h - 4.5)


def test_region_rows_follow_the_columns(insp):
    i = int(insp.order()[0])  # the highest score: the planted square
    regs = insp.regions(i)
    rows = views.region_rows(regs)
    assert regs and len(rows) == len(regs) and all(tuple(r) == views.REGION_COLUMNS for r in rows)
    assert (rows[0]["top"], rows[0]["right"], rows[0]["area (px)"]) == (regs[0].bbox[0], regs[0].bbox[3], regs[0].area)
    assert views.region_rows([]) == []
    h, w = insp.maps[i].shape  # QA: nothing said the boxes live in the model's resized frame
    caption = views.regions_caption(insp, i)
    assert f"pixels of the {h}x{w} map" in caption and f"height / {h} and width / {w}" in caption
    assert caption.endswith("specks smaller than Min pixels too, which the table leaves out.")  # QA sweep 16
    # QA sweep 12: an empty table beside pixels above the threshold said nothing
    assert views.regions_line(insp, i, regs, insp.pixel_threshold, 5) is None  # rows: nothing to add
    biggest = max(r.area for r in regs)
    none = insp.regions(i, min_pixels=biggest + 1)
    above = int((insp.maps[i] > insp.pixel_threshold).sum())
    assert not none and views.regions_line(insp, i, none, insp.pixel_threshold, biggest + 1) == (
        f"ℹ️ {above} pixels above the pixel threshold, in no region of {biggest + 1} pixels or more: lower Min "
        "pixels to list them.")
    assert views.regions_line(insp, i, [], float(insp.maps[i].max()), 5) is None  # nothing above
    # QA sweep 13: one region over most of the map (a fray tile: 0,0,255,255) locates nothing, and said nothing
    low = float(np.quantile(insp.maps[i], 0.2))  # 80% of the pixels above it: one wide region
    wide = insp.regions(i, threshold=low)
    share = max(r.area for r in wide) / insp.maps[i].size
    assert share > 0.5 and views.regions_line(insp, i, wide, low, 5) == (
        f"ℹ️ One region covers {share:.0%} of the map: the map is raised across most of the part, so it does not "
        "locate a defect there; the heatmap's brightest parts may.")


def test_the_manual_threshold_spans_every_score_and_starts_at_the_inspections_own(insp):
    lo, hi, start = views.manual_threshold_range(insp)
    every = np.concatenate([insp.scores, insp.normal_scores])
    assert (lo, hi) == (float(every.min()), float(every.max())) and start == pytest.approx(insp.threshold)


def test_the_method_caption_says_the_loss_scoring_or_the_method():
    from udd_core.losses import SSIM_SCORING_NOTE

    assert views.method_caption({"method": "autoencoder"}, []) is None
    assert views.method_caption({"method": "autoencoder"}, [SSIM_SCORING_NOTE]).startswith("ℹ️ This autoencoder")
    bank = views.method_caption({"method": "memory-bank", "heatmap": "patch distances", "image_score": "top 10%"}, [])
    assert bank == "Method **memory-bank**: patch distances. Image score: top 10%."


def test_the_metric_tiles_and_the_threshold_caption(insp):
    from udd_core.display import score_text

    tiles = dict(views.metric_tiles(insp))
    assert list(tiles) == ["image AUROC", "image AP", "F1 max", "pixel AUROC", "AUPRO", "FPR", "TPR", "threshold"]
    row = insp.metric_table()[0]  # QA sweep 21: 0.787 on the tile beside 0.7874 in the table and `udd score`
    assert tiles["image AUROC"] == f"{row['image AUROC']:.4f}" == f"{insp.metrics.image_auroc:.4f}"
    assert tiles["threshold"] == score_text(insp.threshold)
    said = views.threshold_caption(insp)
    assert said.startswith(f"Threshold {score_text(insp.threshold)}: {insp.threshold_source}. An image is defective")
    assert "Heatmaps share one scale" in said
    tiled = dataclasses.replace(insp, names=[f"{n}#tile0@x0,y0" for n in insp.names])
    assert [k for k, _ in views.metric_tiles(tiled)] == ["tile AUROC", "tile AP", "F1 max", "pixel AUROC", "AUPRO",
                                                         "tile FPR", "tile TPR", "threshold"]
    assert list(tiled.metric_table()[0])[3:5] == ["tile AUROC", "tile AP"]
    assert "A tile is defective when its score is above it, and a photo when any of its tiles is" in \
        views.threshold_caption(tiled)


def test_a_region_over_most_of_a_wafer_is_measured_on_the_wafer_and_may_be_its_pattern():
    """QA sweep 15: the share counted the off-wafer corners, and a Near-full pattern legitimately covers the
    whole wafer, so "locates nothing" was the wrong thing to say there."""
    from types import SimpleNamespace

    from udd_core.data import wafer_to_onehot

    yy, xx = np.mgrid[:26, :26]
    die = np.where((yy - 12.5) ** 2 + (xx - 12.5) ** 2 <= 12.5 ** 2, 1, 0).astype(np.uint8)  # a round wafer
    on = int(die.sum())
    insp = SimpleNamespace(kind="wafer", images=wafer_to_onehot(die[None]), maps=np.ones((1, 26, 26), np.float32),
                           border=0)
    near_full = [SimpleNamespace(area=int(0.9 * on))]  # 90% of the dies: 69% of the 26x26 map
    assert views.regions_line(insp, 0, near_full, 0.5, 5) == (
        "ℹ️ One region covers 90% of the wafer: a failure over most of the wafer (such as Near-full), or a map "
        "raised everywhere; the heatmap's brightest dies say which.")
    assert views.regions_line(insp, 0, [SimpleNamespace(area=int(0.4 * on))], 0.5, 5) is None  # a local pattern
