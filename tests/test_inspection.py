"""inspect_run and its exports on a tiny trained run, a reference-package folder and wafer maps."""
import csv
import dataclasses
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from inspect_fixtures import DEFECT, METRIC_KEYS, SIZE, make_mvtec, make_run, texture, tiny_config
from udd_core import runs
from udd_core import run_status
from udd_core.data import load_dataset, to_tensor
from udd_core.display import score_text
from udd_core.inspection import inspect_run
from udd_core.inspection_inputs import load_inputs
from udd_core.metrics import threshold_for_fpr
from udd_core.model import build_model, load_model, save_model
from udd_core.render import THRESHOLD_RGB, TRUTH_RGB, HeatScale, heat_rgb, heatmap_png, overlay_rgb
from udd_core.heatmap_export import LEGEND_FILE, SCALE_FILE, heatmaps_zip, write_heatmaps
from udd_core.report import scores_csv
from udd_core.residuals import residual_map
from udd_core.scoring import score_images
from udd_core.training_data import normal_images, split_indices


@pytest.fixture(scope="module")
def mvtec(tmp_path_factory):
    return make_mvtec(tmp_path_factory.mktemp("data") / "parts")


@pytest.fixture(scope="module")
def run(tmp_path_factory, mvtec):
    return make_run(tmp_path_factory.mktemp("runs") / "tiny", mvtec)


@pytest.fixture(scope="module")
def insp(run, mvtec):
    return inspect_run(run, mvtec)


def test_shapes_labels_and_metrics(insp):
    n = len(insp)
    assert n == 8
    assert insp.maps.shape == (n, SIZE, SIZE) and insp.maps.dtype == np.float32
    assert insp.images.shape == insp.recon.shape == (n, SIZE, SIZE, 1)
    assert insp.recon.dtype == np.uint8
    assert insp.masks.shape == (n, SIZE, SIZE) and insp.masks[[i for i, l in enumerate(insp.labels) if l == "spot"]].any()
    assert insp.scores.shape == insp.mse.shape == (n,)
    assert sorted(set(insp.labels)) == ["good", "spot"]
    d = insp.metrics.to_dict()
    assert METRIC_KEYS <= set(d) and set(d["per_type"]) == {"spot"}
    for k in ("image_auroc", "image_ap", "f1_max", "pixel_auroc", "aupro"):
        assert 0.0 <= d[k] <= 1.0
    # A bright 8x8 square stands out of a smooth texture: the planted defect is found.
    assert d["pixel_auroc"] > 0.8
    assert list(insp.order()) == list(np.argsort(-insp.scores, kind="stable"))


def test_a_stopped_run_says_so_first(run, mvtec, tmp_path):
    import shutil

    stopped = tmp_path / "stopped"
    shutil.copytree(run, stopped)
    run_status.write_status(stopped, "stopped", "stopped after 1 of 9 epochs")
    notes = inspect_run(stopped, mvtec).notices
    assert notes[0] == "run stopped is stopped (after 1 of 9 epochs): this is the model saved so far, not a finished one"
    assert not any("model saved so far" in n for n in inspect_run(run, mvtec).notices)  # finished: no note


def test_threshold_is_the_target_fpr_quantile_of_the_calibration(run, mvtec, insp):
    cal = runs.read_json(run / runs.CALIBRATION_FILE)
    assert insp.threshold == threshold_for_fpr(cal["scores"]["mean"], 0.01)
    assert "validation" in insp.threshold_source and insp.normal_source == "validation"
    r = insp.at(insp.threshold)
    assert (insp.fpr, insp.tpr) == (r["fpr"], r["tpr"])
    assert insp.metrics.confusion["tp"] + insp.metrics.confusion["fn"] == 4
    loose = inspect_run(run, mvtec, target_fpr=0.5)
    assert loose.threshold <= insp.threshold
    assert np.mean(np.asarray(cal["scores"]["mean"]) > loose.threshold) <= 0.5
    # 3 validation images cannot measure an FPR of 1% (that needs 100): said so; they can measure 50%
    too_few = [n for n in insp.notices if "too few to measure an FPR of 1.00% (that needs 100)" in n]
    assert len(too_few) == 1 and "rests on 3 validation images" in too_few[0]
    assert not any("too few to measure" in n for n in loose.notices)
    # the same from the cached scores: a new rate replaces the note, a manual threshold drops it
    moved = insp.at_target_fpr(0.5)
    assert moved.threshold == loose.threshold and moved.notices == loose.notices
    assert insp.at_target_fpr(0.2).notices.count(insp.fpr_note(0.2)) == 1 and "20.00%" in insp.fpr_note(0.2)
    assert not any("too few to measure" in n for n in insp.with_threshold(0.5).notices)


def test_maps_use_the_normal_scale_not_per_image_min_max(run, mvtec, insp):
    model = load_model(run)
    x = to_tensor(insp.images)
    with torch.no_grad():
        raw = residual_map(x, model(x), "l2").numpy()
    np.testing.assert_allclose(insp.maps * insp.norm.std + insp.norm.mean, raw, rtol=1e-4, atol=1e-6)
    # Min-max would put every image's maximum at the same value; the normal scale does not.
    assert np.ptp(insp.maps.reshape(len(insp), -1).max(axis=1)) > 0.1
    good, spot = [np.array([lab == t for lab in insp.labels]) for t in ("good", "spot")]
    assert insp.maps[spot][:, DEFECT[0], DEFECT[1]].mean() > insp.maps[good].mean() + 1


def test_an_images_own_scale_spans_its_median_to_its_peak(insp):
    i = int(np.argmax(insp.maps.reshape(len(insp), -1).max(axis=1)))  # the image that peaks highest
    own = insp.image_scale(i)
    assert own.vmin == pytest.approx(float(np.median(insp.maps[i]))) and own.vmax == pytest.approx(insp.maps[i].max())
    assert own.threshold == insp.pixel_threshold  # the outline still marks the run's threshold
    fixed, mine = insp.panels(i)["residual"], insp.panels(i, own_scale=True)["residual"]
    assert fixed.shape == mine.shape and not np.array_equal(fixed, mine)
    assert "own scale" in insp.scale_legend(own_scale=True) and "own scale" not in insp.scale_legend()
    # Both legends name both outlines, the green one only where masks are drawn.
    has_masks = insp.masks is not None
    for legend in (insp.scale_legend(), insp.scale_legend(own_scale=True)):
        assert "cyan outline: above the pixel threshold" in legend
        assert ("green outline: the ground-truth defect" in legend) == has_masks
    assert "green outline" not in dataclasses.replace(insp, masks=None).scale_legend()


def test_manual_threshold_and_with_threshold(run, mvtec, insp):
    t = float(np.median(insp.scores))
    manual = inspect_run(run, mvtec, threshold=t)
    assert manual.threshold == t and manual.threshold_source == "manual"
    moved = insp.with_threshold(t)
    assert moved.metrics.confusion == manual.metrics.confusion
    assert sum(r["defective"] for r in moved.to_rows()) == int((insp.scores > t).sum())
    assert insp.threshold != t  # the original is untouched


def test_other_residual_recomputes_normal_scores_from_validation_images(run, mvtec):
    ins = inspect_run(run, mvtec, residual="l1", score="topk", topk_percent=5)
    info = runs.read_json(run / runs.TRAIN_FILE)
    imgs, _ = normal_images(load_dataset(mvtec, (1, SIZE, SIZE), split="train"))
    _, va = split_indices(len(imgs), info["settings"]["val_split"], info["settings"]["seed"])
    want = score_images(load_model(run), imgs[va], "l1", "topk", topk_percent=5).scores
    np.testing.assert_allclose(ins.normal_scores, want, rtol=1e-6)
    assert ins.normal_source == "validation" and ins.threshold == threshold_for_fpr(want, 0.01)


def test_a_calibration_of_an_earlier_epoch_is_not_used(tmp_path, run, mvtec, insp):
    """QA sweep 15: a resume killed after saving a later epoch left calibration.json of the earlier model,
    whose threshold and heatmap scale then judged the new weights (0 of 300 called defective, not 10)."""
    import shutil

    copy = shutil.copytree(run, tmp_path / "stale")
    cal = runs.read_json(copy / runs.CALIBRATION_FILE)
    assert inspect_run(copy, mvtec).threshold == insp.threshold  # its own epoch: used as it is
    planted = [s * 10 for s in cal["scores"]["mean"]]  # what another model's normal images could score
    runs.write_json_atomic(copy / runs.CALIBRATION_FILE, {**cal, "scores": {**cal["scores"], "mean": planted}})
    assert inspect_run(copy, mvtec).threshold == pytest.approx(threshold_for_fpr(np.array(planted), 0.01))
    runs.write_json_atomic(copy / runs.CALIBRATION_FILE, {**cal, "epoch": int(cal["epoch"]) + 8,
                                                          "scores": {**cal["scores"], "mean": planted}})
    assert inspect_run(copy, mvtec).threshold == insp.threshold  # another epoch's: re-scored, not trusted


@pytest.mark.parametrize("norm", [{"mean": 0.1, "std": 0, "q99": 0.3}, "x", {"mean": "a", "std": 1, "q99": 2}])
def test_damaged_calibration_statistics_are_scored_again(tmp_path, run, mvtec, insp, norm):
    """QA sweep 15: a std of 0 in calibration.json was a ZeroDivisionError in udd score, Inspect and Compare."""
    import shutil

    copy = shutil.copytree(run, tmp_path / "cal")
    cal = runs.read_json(copy / runs.CALIBRATION_FILE)
    runs.write_json_atomic(copy / runs.CALIBRATION_FILE, {**cal, "norm": norm})
    assert inspect_run(copy, mvtec).threshold == insp.threshold  # from the validation images, as without it


def test_missing_training_data_falls_back_to_test_good_images(tmp_path, run, mvtec):
    import shutil

    copy = tmp_path / "moved"
    shutil.copytree(run, copy)
    info = runs.read_json(copy / runs.TRAIN_FILE)
    info["data"]["path"] = str(tmp_path / "gone")
    runs.write_json_atomic(copy / runs.TRAIN_FILE, info)
    ins = inspect_run(copy, mvtec, smooth_sigma=1.0)  # smoothing: the calibration no longer fits
    assert ins.normal_source == "test good"
    assert any("validation images" in n for n in ins.notices) and any("optimistic" in n for n in ins.notices)
    assert len(ins.normal_scores) == 4


def test_split_without_defects_gives_null_metrics(run, mvtec):
    ins = inspect_run(run, mvtec, split="train")
    d = ins.metrics.to_dict()
    assert all(d[k] is None for k in ("image_auroc", "image_ap", "f1_max", "pixel_auroc", "aupro"))
    assert d["per_type"] == {} and ins.tpr is None and ins.fpr is not None


def test_csv_rows(insp):
    rows = list(csv.DictReader(io.StringIO(scores_csv(insp))))
    assert len(rows) == len(insp) and list(rows[0]) == ["path", "label", "score", "mse", "defective", "threshold"]
    assert all(float(r["threshold"]) == pytest.approx(insp.threshold) for r in rows)
    assert [r["path"] for r in rows] == insp.names
    np.testing.assert_allclose([float(r["score"]) for r in rows], insp.scores, rtol=1e-6)
    assert {r["defective"] for r in rows} <= {"True", "False"}
    json.dumps(insp.to_rows())  # plain Python types only


def test_heatmap_png_decodes_at_image_size_with_contours(insp):
    i = insp.labels.index("spot")
    im = Image.open(io.BytesIO(insp.heatmap_png(i)))
    assert im.size == (SIZE, SIZE) and im.mode == "RGB"
    big = np.asarray(Image.open(io.BytesIO(insp.heatmap_png(i, factor=3))))
    assert big.shape == (3 * SIZE, 3 * SIZE, 3)
    # The ground-truth square's outline is drawn in the truth colour, at its top-left corner.
    assert tuple(big[3 * DEFECT[0].start, 3 * DEFECT[1].start]) == TRUTH_RGB
    assert (big == THRESHOLD_RGB).all(axis=-1).any()  # the defect crosses the pixel threshold


def test_heatmap_png_fixed_scale_and_errors():
    img = np.full((8, 8, 1), 100, np.uint8)
    scale = HeatScale(0.0, 2.0, 1.0)
    low = np.asarray(Image.open(io.BytesIO(heatmap_png(img, np.zeros((8, 8)), scale))))
    assert (low == 100).all()  # residual at the normal mean: the plain gray image
    hot = np.asarray(Image.open(io.BytesIO(heatmap_png(img, np.full((8, 8), 0.9), scale))))
    hotter = np.asarray(Image.open(io.BytesIO(heatmap_png(img, np.full((8, 8), 1.8), scale))))
    assert hot[4, 4].tolist() != hotter[4, 4].tolist()
    with pytest.raises(ValueError, match="same height"):
        heatmap_png(img, np.zeros((4, 4)), scale)


def test_the_border_the_image_score_leaves_out_is_faded_in_every_heatmap(insp):
    """bench/RESULTS.md, "Do the heatmaps point at the defect?": most misplaced peaks lay in that border, which
    drew the eye off the defect. Faded, and without threshold outline, it still shows; the rest is as before."""
    img = np.full((12, 12, 1), 100, np.uint8)
    scale = HeatScale(0.0, 2.0, 1.0)
    hot = np.full((12, 12), 1.8, np.float32)
    plain, faded = overlay_rgb(img, hot, scale), overlay_rgb(img, hot, scale, border=2)
    assert (faded[3:9, 3:9] == plain[3:9, 3:9]).all()  # inside: unchanged (its outline now runs along the border)
    heat = lambda rgb: np.abs(rgb.astype(int) - 100).sum(axis=-1)  # noqa: E731 - how far from the plain image
    assert (heat(faded[:2]) < heat(plain[:2]) / 2).all() and (heat(faded[:2]) > 0).all()  # faded, not hidden
    assert (plain[0, 0] == THRESHOLD_RGB).all() and not (faded[:2] == THRESHOLD_RGB).all(axis=-1).any()
    assert (heat_rgb(hot, scale, 2, border=2)[:4] != heat_rgb(hot, scale, 2)[:4]).any()  # in map pixels, zoomed
    bordered = dataclasses.replace(insp, settings={**insp.settings, "border": 3})
    assert bordered.border == 3 and insp.border == 0
    assert "the 3 px border the image score leaves out is faded" in bordered.scale_legend()
    assert (bordered.panels(0)["overlay"] != insp.panels(0)["overlay"]).any()
    low = float(insp.maps[0].min()) - 1  # every pixel above it: one region, the whole map less the border
    assert [r.bbox for r in insp.regions(0, threshold=low)] == [(0, 0, SIZE - 1, SIZE - 1)]
    assert [r.bbox for r in bordered.regions(0, threshold=low)] == [(3, 3, SIZE - 4, SIZE - 4)]
    from udd_core.inspection_views import regions_caption

    assert "The dashed frame on the heatmap is the area the image score reads" in regions_caption(bordered, 0)
    own = dataclasses.replace(bordered, settings={**bordered.settings, "score": "its distance (not from the map)"})
    assert own.border == 0  # a score of its own leaves nothing of the map out


def test_heatmap_files_zip_and_regions(tmp_path, insp):
    paths = write_heatmaps(insp, tmp_path / "hm" / "deep")
    assert len(paths) == len({p.name for p in paths}) == len(insp) + 2  # and the key: README.txt, the colour bar
    assert [p.name for p in paths[:2]] == [LEGEND_FILE, SCALE_FILE]  # first: a folder cut short keeps its key
    assert all(p.suffix == ".png" and p.stat().st_size > 0 for p in paths[2:])
    assert {p.name for p in paths} >= {"good_000.png", "spot_003.png"}
    zf = zipfile.ZipFile(io.BytesIO(heatmaps_zip(insp)))
    assert sorted(zf.namelist()) == sorted(p.name for p in paths)
    # QA sweep 8: a folder of bare overlays told a process engineer nothing; its README is the key
    readme = paths[0].read_text()
    assert f"Threshold: {score_text(insp.threshold)} " in readme and insp.scale_legend() in readme
    assert "cyan" in readme and "resized to it" in readme and f"Score: {insp.score_meaning}" in readme
    table = readme.split("file\tlabel\tscore\tverdict\timage\n", 1)[1].splitlines()
    assert len(table) == len(insp) and [r.split("\t")[0] for r in table] == [p.name for p in paths[2:]]
    row = dict(zip(("file", "label", "score", "verdict", "image"), table[insp.labels.index("spot")].split("\t")))
    assert row["label"] == "spot" and float(row["score"]) == pytest.approx(float(insp.scores[insp.labels.index("spot")]),
                                                                             rel=1e-5)
    bar = Image.open(paths[1])
    assert bar.size[0] >= 256 and bar.size[1] > 14  # the bar, with its end values written under it
    i = insp.labels.index("spot")
    regs = insp.regions(i, threshold=float(insp.maps[i][DEFECT].min()) - 1e-3)
    top, left, bottom, right = regs[0].bbox
    assert top <= DEFECT[0].start and bottom >= DEFECT[0].stop - 1 and left <= DEFECT[1].start
    assert insp.regions(i, method="dbscan", threshold=1e9) == []


def test_reference_folder_mse_equals_reference_loss(tmp_path):
    dd = pytest.importorskip("defect_detection")
    torch.manual_seed(0)
    ref = dd.AE_cls(tiny_config(), apply_only=True, loss_fn=torch.nn.MSELoss()).eval()
    ref.save_model(str(tmp_path / "ref") + "/")
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(5):
        Image.fromarray(texture(rng, 24)).save(folder / f"{i}.png")  # 24x24: the images' own size
    ins = inspect_run(tmp_path / "ref", folder)
    assert ins.maps.shape == (5, 24, 24) and ins.threshold is None
    x = to_tensor(load_dataset(folder, (1, 24, 24)).images)
    with torch.inference_mode():
        want = dd.functions.loss_def(x, ref(x)).numpy()
    np.testing.assert_array_equal(ins.mse, want)
    assert ins.metrics.image_auroc is None and ins.normal_source == ""
    Image.fromarray(texture(rng, 16)).save(folder / "small.png")
    with pytest.raises(ValueError, match="differ in size"):
        inspect_run(tmp_path / "ref", folder)
    assert inspect_run(tmp_path / "ref", folder, size=(16, 16)).maps.shape == (6, 16, 16)


def test_wafer_maps(tmp_path):
    from udd_core.presets import model_presets

    p = model_presets()["wafer-26"]
    save_model(build_model(p.config, p.input_shape), tmp_path / "wm")
    rng = np.random.default_rng(0)
    maps = rng.integers(0, 3, (6, 26, 26)).astype(np.uint8)
    labels = np.array(["none", "none", "none", "Loc", "Center", "unlabeled"])
    np.savez(tmp_path / "w.npz", maps=maps, labels=labels)
    ins = inspect_run(tmp_path / "wm", tmp_path / "w.npz")
    assert ins.kind == "wafer" and ins.labels[:3] == ["good"] * 3 and ins.labels[3] == "Loc"
    assert ins.recon.shape == (6, 26, 26, 3) and set(np.unique(ins.recon.sum(-1))) == {255}  # one-hot
    assert ins.normal_source == "test good" and ins.threshold is not None
    assert sum(ins.at(ins.threshold)[k] for k in ("tp", "fp", "tn", "fn")) == 5  # 'unlabeled' left out
    assert any("unknown label" in n for n in ins.notices)
    panel = ins.panels(0)["input"]
    assert panel.shape[0] >= 128 and len(np.unique(panel.reshape(-1, 3), axis=0)) <= 3


def test_bad_inputs_raise_one_line_value_errors(tmp_path, run, mvtec):
    with pytest.raises(ValueError, match="residual"):
        inspect_run(run, mvtec, residual="l3")
    with pytest.raises(ValueError, match="not a model folder"):
        inspect_run(tmp_path, mvtec)
    with pytest.raises(ValueError, match="no such file"):
        inspect_run(run, tmp_path / "nothing")
    with pytest.raises(ValueError, match="size 30x30"):
        load_inputs(run, mvtec, size=(30, 30))


def test_the_legend_names_the_heatmap_unit_and_where_the_pixel_threshold_comes_from(run, mvtec, insp):
    """An autoencoder's mean score: the pixel threshold is the normal pixels' 99th percentile; with a max
    score it is the image threshold in map units, and the legend says which."""
    assert "standard deviations of the normal pixels" in insp.scale_legend()
    assert "(the 99th percentile of the normal pixels)" in insp.scale_legend()
    peak = inspect_run(run, mvtec, score="max")
    assert peak.pixel_threshold == pytest.approx(peak._to_map_units(peak.threshold))
    assert "(the image threshold in map units: a pixel above it alone makes the image defective)" in peak.scale_legend()
    # The scale's top is twice the pixel threshold: a new image threshold moves it, and the legend says so.
    moved = peak.with_threshold(peak.threshold * 1.5)
    assert moved.scale.vmax == pytest.approx(2 * moved.pixel_threshold) and moved.scale.vmax != peak.scale.vmax
    assert "the top twice the pixel threshold, so a new threshold rescales every heatmap alike" in peak.scale_legend()
    top = inspect_run(run, mvtec, score="topk", topk_percent=2.5)  # says top-k, not max
    assert "top 2.5% of pixels average above it" in top.scale_legend() and "alone" not in top.scale_legend()
    assert peak.factors is None and peak.score_text(0) == f"score {score_text(peak.scores[0])}"


def test_validation_images_survive_a_damaged_train_json(run):
    """Damaged data or settings fields in train.json give a note (or no images), never a crash."""
    from udd_core.inspection_inputs import run_validation_images

    info = runs.read_train(run)
    images, source, notes = run_validation_images(info, (1, SIZE, SIZE))
    assert source == "validation" and len(images) and not notes
    assert run_validation_images({**info, "data": [1]}, (1, SIZE, SIZE)) == (None, "", [])  # no data: nothing
    for bad in ({"val_split": None}, {"seed": "x"}):
        images, source, notes = run_validation_images({**info, "settings": bad}, (1, SIZE, SIZE))
        assert images is None and notes[0].startswith("cannot reload the run's validation images"), bad
    images, source, _ = run_validation_images({**info, "settings": ["x"]}, (1, SIZE, SIZE))  # defaults apply
    assert source == "validation" and len(images)


def test_scores_that_point_the_wrong_way_are_named():
    from dataclasses import replace

    from udd_core.inspection import _empty_metrics, inverted_notes

    m = _empty_metrics()
    assert inverted_notes(m, "l2") == []  # no labels, no AUROC: nothing to say
    assert inverted_notes(replace(m, image_auroc=0.5, pixel_auroc=0.36), "l2") == []  # weak, not inverted
    notes = inverted_notes(replace(m, image_auroc=0.21, pixel_auroc=0.08), "feature")
    assert notes == ["image AUROC 0.21: the feature residual ranks the defective images below the normal ones, so "
                     "it misses what makes them defective here; try another residual or method",
                     "pixel AUROC 0.08: with the feature residual the heatmap is brighter on normal pixels than on "
                     "the defects"]
    # QA sweep 10: a method's own score (Deep SVDD's distance) is not the map's: no residual changes it
    own = inverted_notes(replace(m, image_auroc=0.34, pixel_auroc=0.17), "l1", own_score=True)
    assert own[0].startswith("image AUROC 0.34: this run's own score ranks")
    assert own[0].endswith("; try another method")
    # QA sweep 12: its heatmap is still the residual's, and the note said "with this run's own score"
    assert own[1].startswith("pixel AUROC 0.17: with the l1 residual the heatmap is brighter")
    # QA sweep 19b: one type far below chance among others that are not, with 0.73 over all: named
    per_type = {"missing_pad": {"n": 7, "image_auroc": 0.2024, "pixel_auroc": 0.2733},
                "scratch": {"n": 7, "image_auroc": 0.95, "pixel_auroc": 0.30}, "bridge": {"n": 7, "image_auroc": 0.9}}
    notes = inverted_notes(replace(m, image_auroc=0.73, pixel_auroc=0.8, per_type=per_type), "l2")
    assert notes == ["scored below the normal images: missing_pad (image AUROC 0.20, pixel AUROC 0.27); scratch "
                     "(pixel AUROC 0.30). The l2 residual misses what makes these "
                     "types defective; look at their images, and try another residual or method"]
    one = {"scratch": per_type["missing_pad"]}  # a single type: its row is the overall one, said above
    assert inverted_notes(replace(m, image_auroc=0.2, per_type=one), "l2")[-1].startswith("image AUROC 0.20")


def test_most_images_called_defective_with_none_labelled_a_defect_is_a_caution():
    """QA sweep 15: 716 unlabelled wafer maps of a new lot were all called defective, 'FPR 1.0000', unsaid."""
    from udd_core.inspection import unlabelled_alarm_note
    from udd_core.notices import is_caution

    class Fake(list):  # len() is the number of images
        def __init__(self, scores, labels, threshold=0.5, relation="other", names=None):
            super().__init__(scores)
            self.scores, self.threshold, self.relation = np.asarray(scores), threshold, relation
            self.is_defect = np.array([v != "good" for v in labels])
            self.names = names or [f"{i}.png" for i in range(len(scores))]

    note = unlabelled_alarm_note(Fake([0.9, 0.8, 0.1], ["good"] * 3))
    assert is_caution(note) and note.startswith("2 of 3 images are called defective, and none is labelled a defect")
    assert unlabelled_alarm_note(Fake([0.9, 0.1, 0.1], ["good"] * 3)) is None  # one of three: an FPR to trust
    assert unlabelled_alarm_note(Fake([0.9, 0.8, 0.1], ["good", "good", "spot"])) is None  # labelled: metrics say it
    assert unlabelled_alarm_note(Fake([0.9, 0.8, 0.1], ["good"] * 3, relation="training")) is None
    assert unlabelled_alarm_note(Fake([0.9, 0.8, 0.1], ["good"] * 3, threshold=None)) is None
    # QA sweep 18: one suspect part checked alone (or one photo's tiles): its flag is the answer, not an alarm
    assert unlabelled_alarm_note(Fake([0.9], ["good"])) is None
    tiles = ["a.png#tile0@x0,y0", "a.png#tile1@x16,y0"]
    assert unlabelled_alarm_note(Fake([0.9, 0.8], ["good"] * 2, names=tiles)) is None
    # QA sweep 19b: every JPEG copy of a board called defective by a run that learned PNGs: said what they share
    names = [f"b{i}.png" for i in range(6)] + [f"b{i}.jpg" for i in range(6)]
    note = unlabelled_alarm_note(Fake([0.1] * 3 + [0.9] * 3 + [0.9] * 6, ["good"] * 12, names=names))
    assert note.startswith("9 of 12 images are called defective, and none is labelled a defect, among them all 6 .jpg "
                           "images (a file type the run may not have learned): if they are normal")
    every = unlabelled_alarm_note(Fake([0.9] * 12, ["good"] * 12, names=names))
    assert "among them" not in every  # every type flagged alike: no type stands out


def test_scores_that_are_all_equal_are_a_caution():
    """QA sweep 12: a collapsed Deep SVDD run scored every wafer map 1.28 and nothing said so."""
    from udd_core.inspection import same_scores_note
    from udd_core.notices import is_caution

    maps = np.random.default_rng(0).integers(0, 3, (480, 26, 26), dtype=np.uint8)
    note = same_scores_note(np.full(480, 1.28000009, np.float32), maps)
    assert is_caution(note) and note.startswith("all 480 images score 1.28: this run gives every image the same")
    assert same_scores_note(np.array([1.28, 1.2800001]), maps[:2]) is None  # 1e-7 apart: scores that differ
    assert same_scores_note(np.array([0.5]), maps[:1]) is None  # one image: nothing to compare
    # QA sweep 15: twelve copies of one map score alike rightly; the model is not to blame.
    same = same_scores_note(np.full(12, 0.12652, np.float32), np.repeat(maps[:1], 12, axis=0))
    assert not is_caution(same) and same == ("all 12 images are identical, so they score the same (0.12652); "
                                             "no image can rank above another")


def test_data_of_the_other_kind_is_named_and_gets_no_scoring_advice(tmp_path, monkeypatch):
    """QA sweep 7: an image run scored on wafer maps also got "try another residual or method" from an AUROC
    below chance, advice on scoring when the data was the mistake."""
    from udd_core import inspection

    rgb = {**tiny_config(), "block_size_in": [[3, 4, 4], [4, 8, 8]], "block_size_out": [[8, 8, 4], [4, 4, 3]]}
    parts = make_mvtec(tmp_path / "parts")
    run = make_run(tmp_path / "rgb", parts, config=rgb)
    monkeypatch.setattr(inspection, "inverted_notes",
                        lambda metrics, residual, own=False: ["scores point the wrong way"])
    own = inspect_run(run, parts)
    assert own.mismatch is None and "scores point the wrong way" in own.notices
    wafers = inspect_run(run, Path(__file__).resolve().parents[1] / "sample_data" / "wafer_maps_26x26.npz")
    assert wafers.mismatch == ("the run was trained on images but these data are wafer maps: its scores (and any "
                               "reconstructions) mean little here")
    assert wafers.notices[0] == wafers.mismatch and "scores point the wrong way" not in wafers.notices
    assert wafers.with_threshold(0.5).mismatch == wafers.mismatch  # the threshold slider keeps it


def test_defective_calls_without_an_outline_are_named_and_said(insp, tmp_path):
    """QA sweep 11: a wafer map scored 3x the threshold (its score a mean raised everywhere) while no die passed
    the pixel threshold; the verdict came with a blank outline and an empty regions table, and nothing said why."""
    import dataclasses
    import html

    from udd_core.heatmap_export import write_heatmaps
    from udd_core.report import build_report

    low = insp.with_threshold(float(insp.scores.min()) - 1.0)  # every image called defective
    peaks = low.maps.reshape(len(low), -1).max(axis=1)
    high = dataclasses.replace(low, pixel_threshold=float(np.median(peaks)))  # half the peaks at or below it
    want = np.flatnonzero(peaks <= high.pixel_threshold)
    assert 0 < len(want) < len(low) and np.array_equal(high.unmarked(), want)
    assert [high.unmarked_line(i) is not None for i in range(len(high))] == [i in want for i in range(len(high))]
    note = high.unmarked_note()
    assert note.startswith(f"{len(want)} of the {len(low)} images called defective have no pixel above")
    assert html.escape(note) in build_report(high)
    write_heatmaps(high, tmp_path / "hm")
    assert note in (tmp_path / "hm" / "README.txt").read_text()
    assert dataclasses.replace(low, pixel_threshold=float(peaks.min()) - 1).unmarked_note() is None  # all marked
    assert "their score is raised across the map, not at one spot" in note  # a score read from the map
    # QA sweep 13: said of Deep SVDD too, whose score is a latent distance the map does not carry
    own = dataclasses.replace(high, settings={**high.settings, "score": "the squared distance ... (not from the map)"})
    assert "their score is the method's latent distance, which the map does not locate, so no" in own.unmarked_note()
    assert "its score is the method's latent distance" in own.unmarked_line(int(want[0]))
    factor = dataclasses.replace(high, factors=np.full(len(high), 2.0))
    assert "times a latent novelty factor, which can make the call on its own" in factor.unmarked_note()


def test_a_threshold_above_every_score_is_said_to_catch_nothing(tmp_path):
    """QA sweep 20: the highest validation tile set a threshold above every test tile: "0 of 14 caught", unsaid."""
    from inspect_fixtures import make_mvtec, make_run
    from udd_core.inspection import inspect_run
    from udd_core.notices import is_caution

    data = make_mvtec(tmp_path / "parts")
    insp = inspect_run(make_run(tmp_path / "r", data), data)
    high = insp.with_threshold(float(insp.scores.max()) * 2, "manual")
    said = [n for n in high.all_notes() if "nothing is called defective" in n]
    assert len(said) == 1 and is_caution(said[0]) and "none of the 4 defective ones is caught" in said[0]
    assert said[0].startswith(f"the threshold {score_text(high.threshold)} (manual) lies above every scored image's")
    assert not [n for n in insp.with_threshold(float(insp.scores.min()), "manual").all_notes()
                if "nothing is called defective" in n]
