"""The one-page HTML report: self-contained, with metrics, threshold, curve, config and images."""
import base64
import html
import io
import json
import re

import numpy as np
import pytest
from PIL import Image

from inspect_fixtures import make_mvtec, make_run
from udd_core import runs
from udd_core import run_status
from udd_core.inspection import inspect_run
from udd_core.report import build_report, loss_curve_svg
from udd_core.render import scale_bar_rgb
from udd_core.settings import ONE_PASS_FIELDS
from udd_core.display import score_text


@pytest.fixture(scope="module")
def insp(tmp_path_factory):
    data = make_mvtec(tmp_path_factory.mktemp("data") / "parts")
    run = make_run(tmp_path_factory.mktemp("runs") / "tiny", data, epochs=2)
    return inspect_run(run, data)


def test_report_is_self_contained_and_complete(insp):
    page = build_report(insp, n_worst=3, n_errors=0)
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert not re.search(r"https?://", page)  # no CDN, no external anything
    assert not re.search(r"""(src|href)=["'](?!data:)""", page)  # every source is inline data
    m = insp.metrics
    for v in (m.image_auroc, m.pixel_auroc, m.aupro):
        assert f"{v:.4f}" in page
    assert "spot" in page and insp.threshold_source in page
    n_def, n_norm = int((insp.known & insp.is_defect).sum()), int((insp.known & ~insp.is_defect).sum())
    assert "<th>defective</th><th>normal</th>" in page  # Inspect's counts (QA sweep 15: one n, two meanings)
    assert f"<tr><td><b>all</b></td><td class=n>{n_def}</td><td class=n>{n_norm}</td>" in page
    shown = re.search(r"Image threshold <b>([^<]+)</b>", page).group(1)
    assert float(shown) == pytest.approx(insp.threshold, rel=1e-5)
    assert page.count("<svg") == 1 and page.count("<polyline") == 2  # train and validation curves
    assert '"latent_size": 4' in page  # the model config
    ran = {r["precision"] for r in runs.read_history(insp.settings["model"])}
    assert f"<th>precision used</th><td>{ran.pop()} in all " in page and not ran
    imgs = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(imgs) == 3 * 3 + 1  # input, reconstruction, overlay for each worst image; the colour bar
    first = Image.open(io.BytesIO(base64.b64decode(imgs[0])))
    assert first.size[0] >= 32
    # QA: the legend named a left and a right of colours the report never drew
    bar = re.search(r'<p class="legend scale"><span>([^<]+)</span><img alt="colour scale" src="data:image/png;base64,'
                    r'([^"]+)"><span>([^<]+)</span>', page)
    assert (float(bar.group(1)), float(bar.group(3))) == pytest.approx((insp.scale.vmin, insp.scale.vmax), rel=1e-3)
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(base64.b64decode(bar.group(2))))),
                                  scale_bar_rgb(256, 14))
    assert ("green outline: the ground-truth defect." in page) == (insp.masks is not None)
    # QA sweep 7: in a 1200 px mail window the overlay wrapped under the input while long names took the width
    assert ".imgs{white-space:nowrap}" in page and "td.name{overflow-wrap:anywhere}" in page
    assert page.count("<td class=name>") == page.count("<td class=imgs>") == 3


def test_report_lists_the_worst_images_first(insp):
    marked = build_report(insp, n_worst=2, n_errors=0)
    page = marked.replace("<wbr>", "")  # the break points a long path may wrap at (after '/' and '_')
    order = insp.order()
    top = insp.names[order[0]]
    assert top in page and insp.names[order[-1]] not in page
    assert "<span class=sub>/<wbr>" in marked and top not in marked


def test_report_shows_the_missed_defects_and_false_alarms_nearest_the_threshold(insp):
    """Where the detector fails is what a process engineer asks first: missed defects and false alarms get
    their own galleries, nearest the threshold first."""
    defect, normal = insp.scores[insp.is_defect], insp.scores[~insp.is_defect]
    high = insp.with_threshold(float(np.quantile(defect, 0.75)))  # a quarter of the defects above: the rest missed
    missed = [i for i in high.order() if high.is_defect[i] and high.scores[i] <= high.threshold]
    page = build_report(high, n_worst=1, n_errors=2).replace("<wbr>", "")
    sections = re.findall(r"<h2>([^<]+)</h2>", page)
    n_defect = int(insp.is_defect.sum())
    assert f"Missed defects: {len(missed)} of the {n_defect} defective images; the 2 shown, nearest the threshold " \
           "first" in sections  # how many are missed, then how many of them the page shows
    gallery = page.split("<h2>Missed defects")[1].split("<h2>")[0]
    assert high.names[missed[0]] in gallery  # the highest-scoring miss comes first
    assert high.names[missed[-1]] not in gallery
    assert "cyan outline: above the pixel threshold" in page  # the colour scale is explained in the report too
    assert "target FPR" not in page.split("<th>scoring</th>")[1].split("</tr>")[0]  # QA: beside a manual threshold
    assert "target FPR: 1%" in build_report(insp).split("<th>scoring</th>")[1].split("</tr>")[0]
    low = insp.with_threshold(float(np.quantile(normal, 0.1)))  # most normal images above: false alarms
    alarms = [i for i in low.order() if not low.is_defect[i] and low.scores[i] > low.threshold]  # highest first
    assert len(alarms) > 2
    page = build_report(low, n_worst=1, n_errors=2).replace("<wbr>", "")
    n_normal = int((~insp.is_defect).sum())
    gallery = page.split(f"<h2>False alarms: {len(alarms)} of the {n_normal} normal images; the 2 shown")[1].split("<h2>")[0]
    assert low.names[alarms[-1]] in gallery  # the one nearest the threshold comes first
    assert low.names[alarms[0]] not in gallery  # the highest false alarm is left out at 2 shown


def test_report_without_threshold_or_history(insp, tmp_path):
    bare = insp.with_threshold(0.0)
    bare.threshold = None
    page = build_report(bare, run_dir=tmp_path)
    assert "No threshold" in page and "No training history" in page and "Model config" not in page
    assert "run status" not in page  # not a run folder: no status to report


def test_report_says_a_run_was_stopped(insp, tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    run_status.write_status(run, "stopped", "stopped after 21 of 300 epochs")
    setup = dict(re.findall(r"<tr><th>([^<]+)</th><td>([^<]*)</td></tr>", build_report(insp, run_dir=run)))
    assert setup["run status"] == "stopped: after 21 of 300 epochs"


def test_report_of_a_memory_bank_run_names_the_method_not_a_training_loop(tmp_path):
    data = make_mvtec(tmp_path / "parts", size=64)
    run = make_run(tmp_path / "bank", data, method="memory-bank", options={"coreset": 0.5}, size=64)
    recorded = json.loads((run / "train.json").read_text())["settings"]
    assert set(recorded) == set(ONE_PASS_FIELDS)  # train.json records no training loop it did not have
    page = build_report(inspect_run(run, data))
    setup = dict(re.findall(r"<tr><th>([^<]+)</th><td>([^<]*)</td></tr>", page))
    assert setup["method"].startswith("memory-bank (")
    # settings read as "name: value" lines, not JSON blobs
    assert "coreset: 0.5" in setup["method options"].split("; ") and "fit" not in setup["method options"]
    assert "&quot;" not in setup["method options"] + setup["scoring"] + setup["fit settings"]
    assert "layers: " in setup["method options"] and "[" not in setup["method options"]
    assert "score: max" in setup["scoring"] and "topk" not in setup["scoring"]  # a max score has no top-k share
    assert "topk" not in setup["method options"] and "target FPR: 1%" in setup["scoring"]
    fit_settings = setup["fit settings"]  # only what a one-pass fit uses: no epochs, lr or loss
    assert "seed" in fit_settings and not any(k in fit_settings for k in ("epochs", "lr", "loss"))
    assert "training settings" not in setup and "No training history" not in page and "Training curve" not in page
    assert "<h2>Fit</h2>" in page and setup["bank (patches kept)"].isdigit()  # the fit record, e.g. the bank's size
    assert re.fullmatch(r"[0-9.e+-]{1,10}", setup["coreset covering radius"])  # 4 digits, not 31.807020033909183
    assert "embedding time (s)" in setup and "embed s" not in setup  # named for a reader, not the JSON key
    assert "anomaly map (knn)" in page and "residual on" not in page
    # QA sweep 8: the score had no unit anywhere; the report says what it is, and in which units
    assert "Score: the highest value of the anomaly map; a map value is each patch&#x27;s feature distance to its " \
           "nearest normal patch in the bank, in units of that bank patch&#x27;s spread" in page


def test_loss_curve_svg_log_scale_and_gaps():
    hist = [{"epoch": 1, "train_loss": 1.0, "val_loss": None}, {"epoch": 2, "train_loss": 0.01, "val_loss": 0.02},
            {"epoch": 3, "train_loss": float("nan"), "val_loss": 0.015}]
    svg = loss_curve_svg(hist)
    assert "log loss" in svg and svg.count("<polyline") == 2
    assert "http" not in svg
    assert runs.read_history("/nonexistent") == [] and "No training history" in loss_curve_svg([])


def test_precision_used_says_what_the_epochs_ran_in():
    """QA: the report showed 'amp bf16: yes' for a run whose every epoch ran in float32 (no bf16 on that CPU)."""
    from udd_core.report import precision_used

    assert precision_used([{"precision": "float32"}] * 30) == "float32 in all 30 epochs"
    assert precision_used([{"precision": "bf16"}] * 12 + [{"precision": "float32"}] * 18) == \
        "bf16 in epochs 1-12, float32 in epochs 13-30"
    assert precision_used([{"precision": "bf16"}, {"precision": "float32"}]) == "bf16 in epoch 1, float32 in epoch 2"
    assert precision_used([{"train_loss": 1.0}]) == precision_used([]) == ""  # older runs recorded none


def test_report_puts_its_notes_before_the_numbers_and_the_key_before_the_overlays(insp):
    """QA sweep 8: the notes that qualify the metrics (too few normal images for the FPR) came last, after the
    galleries and the config, and the colour key after every overlay."""
    page = build_report(insp, n_worst=2, n_errors=2)
    assert insp.notices and page.index("<h2>Notes</h2>") < page.index("<h2>Metrics</h2>")
    assert page.index('<p class="legend scale">') < page.index("<td class=imgs>") < page.index("<h2>Model config")
    assert page.count('<p class="legend scale">') == 1
    assert "Score: the mean of the anomaly map; a map value is the squared difference between a pixel" in page
    assert "Scores are in the map&#x27;s own units; the heatmap shows the map in standard deviations" in page


def test_score_meaning_of_a_method_with_its_own_score(tmp_path):
    from udd_core.inspection import score_meaning
    from udd_core.methods import detector_class

    class Own:  # a latent-kNN-like detector: the words come from its describe(), as udd score --json has them
        own_scores, method = True, "latent-knn"

        def describe(self):
            return {"image_score": "mean distance of the encoder's code to its 1 nearest training codes"}

    post = {"residual": "l2", "score": "mean", "smooth_sigma": 0.0, "topk_percent": 1.0, "border": 0}
    assert score_meaning(Own(), post, False) == \
        "mean distance of the encoder's code to its 1 nearest training codes (not from the map)"
    assert detector_class("latent-knn").own_scores
    ae = detector_class("autoencoder")
    words = score_meaning(ae.__new__(ae), {**post, "score": "topk", "topk_percent": 10.0, "border": 16}, True)
    assert words.startswith("the mean of the top 10% of values of the anomaly map, leaving out a 16-px border, "
                            "times the image's latent novelty factor; a map value is the squared difference")


def test_report_numbers_keep_one_format_for_an_exact_zero():
    """QA sweep 13: "FPR 0, TPR 0.6400" in one report, "FPR 0.4000" in another."""
    from udd_core.report import _num

    assert [_num(v) for v in (0.0, 0.4, 0.00001, None)] == ["0.0000", "0.4000", "1e-05", "n/a"]


def test_the_report_opens_with_its_verdict_in_one_line(insp):
    """QA sweep 19b: a process engineer met training internals first; the verdict hid in a confusion matrix."""
    from udd_core.report import summary_line

    c = insp.at(insp.threshold)
    line = summary_line(insp)
    assert line.startswith(f"At the threshold {score_text(insp.threshold)}: {c['tp']} of {c['tp'] + c['fn']} "
                           f"defective images caught; {c['fp']} of {c['fp'] + c['tn']} normal images called defective "
                           f"({c['fp'] / (c['fp'] + c['tn']):.0%} false alarms, for a target of 1% on the validation "
                           "images).")
    page = build_report(insp)
    assert page.index("<p class=summary>") < page.index("<h2>Setup</h2>") and html.escape(line) in page
    manual = insp.with_threshold(float(np.median(insp.scores)), "manual")
    assert summary_line(manual).endswith("false alarms).")  # no target: none said
    bare = insp.with_threshold(0.0)
    bare.threshold = None
    assert summary_line(bare).startswith("No threshold is set")


def test_a_methods_own_score_is_not_said_to_be_in_the_maps_units_nor_an_unused_top_k_listed(tmp_path):
    """QA sweep 19a: a latent-distance score's key said "Scores are in the map's own units"; QA sweep 19b: a
    memory bank scoring by its maximum listed "topk_percent 10.0"."""
    from udd_core.heatmap_export import legend_text

    data = make_mvtec(tmp_path / "parts")
    insp = inspect_run(make_run(tmp_path / "svdd", data, method="dsvdd", options={"svdd_epochs": 1}), data)
    assert insp.units_note().startswith(" Scores are the method's own, not in the map's units;")
    # QA sweep 21: its report drew the pretraining alone, unsaid; now each loop, with what its loss measures
    page = build_report(insp, tmp_path / "svdd")
    curves = page.split("<h2>Training curve</h2>", 1)[1]
    assert curves.count("<svg") >= 2 and "Pretraining: the autoencoder&#x27;s reconstruction loss" in curves
    assert "the mean squared distance of the codes to the centre c" in curves
    assert "precision used (pretraining)" in page
    plain = inspect_run(make_run(tmp_path / "ae", data), data)  # scored by the map's mean
    assert "Scores are in the map's own units" in plain.units_note()
    assert "topk_percent" not in legend_text(plain, []) and "topk_percent" not in build_report(plain)
    assert "topk_percent 1.0" in legend_text(inspect_run(tmp_path / "ae", data, score="topk"), [])
