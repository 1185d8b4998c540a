"""The Inspect page driven headless with AppTest on a tiny run in a temporary UDD_RUNS_DIR."""
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from udd_core.display import scale_text, score_text
from inspect_fixtures import make_mvtec, make_run, send_label

ROOT = Path(__file__).resolve().parents[1]
PAGE = str(ROOT / "pages" / "inspect.py")
TIMEOUT = 60


def warnings(app) -> list:
    """The page's warnings but the threshold's caution, which the tiny runs' few normal images always bring
    (a `notices.Caution`, shown as a warning since QA sweep 11)."""
    return [w.value for w in app.warning if not w.value.startswith("The threshold rests on")]


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    data = make_mvtec(tmp_path_factory.mktemp("data") / "parts")
    root = tmp_path_factory.mktemp("runs")
    make_run(root / "tiny", data)
    return root


@pytest.fixture
def at(monkeypatch, runs_dir):
    monkeypatch.setenv("UDD_RUNS_DIR", str(runs_dir))
    app = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    assert not app.exception, app.exception
    return app


def metrics(app) -> dict:
    return {m.label: m.value for m in app.metric}


def test_no_runs_points_to_the_train_page(monkeypatch, tmp_path):
    monkeypatch.setenv("UDD_RUNS_DIR", str(tmp_path / "empty"))
    app = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    assert not app.exception
    assert any("Train" in i.value for i in app.info)
    assert not app.get("image")


def test_page_renders_gallery_plots_and_exports(at):
    assert not at.error and not warnings(at)  # a finished run: no "barely trained" warning
    # Too few normal images for the target FPR: a caution, shown as a warning, not among the routine notes
    assert any(w.value.startswith("The threshold rests on") for w in at.warning)
    assert not any("threshold rests on" in c.value for c in at.caption)
    m = metrics(at)
    assert {"image AUROC", "pixel AUROC", "AUPRO", "FPR", "TPR", "threshold"} <= set(m)
    assert 0 <= float(m["image AUROC"]) <= 1
    # QA sweep 9 cut 5 digits to "0.00…" in a row of eight; in two rows of four they fit, as the caption has them
    thr = float(next(c.value for c in at.caption if c.value.startswith("Threshold ")).split()[1].rstrip(":"))
    assert m["threshold"] == score_text(thr)  # 5 significant digits, as the caption and every view (QA sweep 11)
    assert len(at.get("image")) >= 8 * 4  # 8 test images x (input, reconstruction, residual, overlay)
    assert len(at.get("plotly_chart")) == 3  # drill-down heatmap, histogram, ROC
    assert len(at.get("download_button")) == 3
    assert at.selectbox(key="insp_run").value == "tiny"
    assert any("Heatmap colours: 0 (left) to" in c.value for c in at.caption)  # the gallery's colour legend
    assert at.text_input(key="insp_data").value.endswith("parts")  # the run's training data by default
    fixed = [i.proto.imgs[0].url for i in at.get("image")]
    at.toggle(key="insp_own_scale").set_value(True).run()
    assert not at.exception and any("each image on its own scale" in c.value for c in at.caption)
    assert [i.proto.imgs[0].url for i in at.get("image")] != fixed  # the heatmaps were redrawn


def test_changing_residual_and_moving_the_threshold(at):
    before = metrics(at)
    at.selectbox(key="insp_residual").set_value("ssim").run()
    assert not at.exception and not at.error
    assert metrics(at)["threshold"] != before["threshold"]  # rescored with another residual
    auto = metrics(at)
    assert all(m.help for m in at.metric) and "over every threshold" in at.metric[0].help  # each figure explained
    per_type_frame = next(d for d in at.dataframe if "defect type" in d.value.columns)
    per_type = per_type_frame.value
    assert per_type_frame.proto.placeholder == "—"  # a metric a type cannot have shows a dash, not "None"
    assert any(c.value.startswith("Each type's row: the normal images against that type's images alone")
               for c in at.caption)  # why "all" can lie below every type
    assert {"image AUROC", "pixel AUROC", "AUPRO", "defective", "normal"} <= set(per_type.columns)  # no raw names
    # QA sweep 15: "all" counted normal images too, the type rows did not; now both counts, alike in every row
    assert per_type["defective"].iloc[0] == per_type["defective"].iloc[1:].sum()
    assert per_type["normal"].nunique() == 1 and per_type["normal"].iloc[0] > 0
    assert per_type["defect type"].iloc[0] == "all"
    at.radio(key="insp_thr_mode").set_value("manual").run()
    slider = next(s for s in at.slider if s.key.startswith("insp_thr_"))
    slider.set_value(slider.min).run()
    assert not at.exception
    low = metrics(at)
    assert float(low["TPR"]) >= float(auto["TPR"]) and float(low["FPR"]) >= float(auto["FPR"])
    assert float(low["threshold"]) == pytest.approx(slider.min, rel=1e-3)
    slider = next(s for s in at.slider if s.key.startswith("insp_thr_"))
    slider.set_value(slider.max).run()
    assert float(metrics(at)["FPR"]) == 0.0 and float(metrics(at)["TPR"]) == 0.0  # nothing is above the top score
    # QA sweep 21: a threshold from `udd score --threshold` or a run's export, exactly, and beyond every score
    at.radio(key="insp_thr_mode").set_value("typed").run()
    typed = next(n for n in at.number_input if n.key.startswith("insp_typed_"))
    exact = (slider.min + slider.max) / 2 + 1.23456e-4
    typed.set_value(exact).run()
    assert not at.exception and metrics(at)["threshold"] == score_text(exact)
    typed = next(n for n in at.number_input if n.key.startswith("insp_typed_"))
    typed.set_value(slider.max * 10).run()
    assert float(metrics(at)["TPR"]) == 0.0 and any("lies above every" in w for w in warnings(at))


def test_target_fpr_smoothing_score_kind_and_regions(at):
    at.slider(key="insp_fpr").set_value(20.0).run()
    loose = float(metrics(at)["threshold"])
    at.slider(key="insp_fpr").set_value(0.0).run()
    assert float(metrics(at)["threshold"]) >= loose
    at.slider(key="insp_smooth").set_value(1.0).run()
    at.selectbox(key="insp_score").set_value("topk").run()
    assert not at.exception and not at.error
    assert at.number_input(key="insp_border").value == 0  # an autoencoder's default: the whole map
    at.selectbox(key="insp_score").set_value("max").run()
    whole = float(metrics(at)["threshold"])  # the highest normal score, at a target FPR of 0
    at.number_input(key="insp_border").set_value(4).run()
    assert not at.exception and not at.error
    assert float(metrics(at)["threshold"]) <= whole  # the maximum over the inner part of each map
    assert at.number_input(key="insp_border").max == 15  # 16 would leave nothing of a 32-pixel side
    at.number_input(key="insp_border").set_value(0).run()
    at.radio(key="insp_method").set_value("dbscan").run()
    at.radio(key="insp_filter").set_value("predicted defective").run()
    assert not at.exception and not at.error


def test_bad_data_path_is_one_error_line(at):
    at.text_input(key="insp_data").input("/no/such/folder").run()
    assert not at.exception
    assert len(at.error) == 1 and "no such file" in at.error[0].value
    assert at.error[0].value.startswith("Data path (sidebar): ") and not at.sidebar.error  # in the main area
    at.text_input(key="insp_data").input("").run()  # never the server's working folder, scanned whole
    assert not at.exception and not at.dataframe
    assert len(at.error) == 1 and "no data set given" in at.error[0].value


def test_one_image_file_is_inspected_alone(at, runs_dir, tmp_path):
    """QA sweep 17: Data path `part.png` was "not a data set"; one suspect part is the common question."""
    import shutil

    part = shutil.copy(next(runs_dir.parent.glob("data*/parts/test/spot/000.png")), tmp_path / "suspect part.png")
    at.text_input(key="insp_data").input(str(part)).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("suspect part.png" in m.value for m in at.markdown)  # its gallery row


def test_a_tiled_run_rolls_its_tiles_up_to_a_verdict_per_image(monkeypatch, tmp_path):
    """QA sweep 17: a tiled run gave verdicts per tile only, where an inspector acts on the part."""
    data = make_mvtec(tmp_path / "parts")
    make_run(tmp_path / "runs" / "tiled", data, size=16, tile=True)
    monkeypatch.setenv("UDD_RUNS_DIR", str(tmp_path / "runs"))
    app = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    assert not app.exception and not app.error
    assert any(m.value.startswith("**Per image, its tiles rolled up.** 8 images (32 tiles): ") for m in app.markdown)
    table = app.dataframe[-1].value
    assert len(table) == 8 and set(table["tiles"]) == {4} and set(table["label"]) == {"good", "spot"}
    assert any(m.value.startswith("`spot/000.png#tile") for m in app.markdown)  # a gallery row names its folder
    whole = app.selectbox(key="insp_whole")  # each photo whole, its tiles' maps put back in place
    assert whole.options == [f"{Path(i).parent.name}/{Path(i).name}" for i in table["image"]]  # folder/file (QA 20)
    assert whole.value == table["image"][0]
    whole.select(table["image"][7]).run()
    assert not app.exception and not app.error
    shown = [i.caption for e in app.get("image") for i in e.proto.imgs if "maps put back in place" in i.caption]
    assert len(shown) == 1 and shown[0].startswith(f"{Path(table['image'][7]).parent.name}/"
                                                   f"{Path(table['image'][7]).name}, 32x32: ")
    assert shown[0].endswith(". Its tiles' maps put back in place (where tiles overlap, the higher value); cyan "
                             "outline: above the pixel threshold; green outline: the ground-truth defect.")


def test_a_run_whose_data_moved_says_so_and_takes_the_new_place(monkeypatch, tmp_path):
    """QA sweep 12: only "/x: no such file or folder" was said, where `udd score` says what happened."""
    data = make_mvtec(tmp_path / "parts")
    make_run(tmp_path / "runs" / "moved", data)
    moved = data.rename(tmp_path / "elsewhere")
    monkeypatch.setenv("UDD_RUNS_DIR", str(tmp_path / "runs"))
    app = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    assert not app.exception and [e.value for e in app.error] == [
        f"Data path (sidebar): {data}: the run's training data is gone (moved or deleted); type its new place in "
        "Data path"]
    app.text_input(key="insp_data").input(f' "{moved}" ').run()  # as pasted: spaces, quotes (QA sweep 15)
    assert not app.exception and not app.error and app.metric
    # QA sweep 13: the same data at its new place was called "other data"; QA sweep 17: its train split is the
    # run's training images, so this is the run's own data set, moved, and no hedge is needed
    assert not [c.value for c in app.caption if "other data" in c.value or "no longer there" in c.value]
    (moved / "train" / "good" / "000.png").unlink()  # no longer the images it trained on: maybe other data
    app.text_input(key="insp_data").input(str(moved.rename(tmp_path / "thinned"))).run()  # a new place: not cached
    assert any(c.value.startswith(f"ℹ️ The run was trained on {data}, which is no longer there: if these are its "
                                  "data moved, its scores and threshold hold here") for c in app.caption)


def test_follows_the_run_in_focus_and_keeps_it_in_the_url(monkeypatch, runs_dir, tmp_path):
    import shutil
    root = tmp_path / "runs"
    for name in ("tiny", "other"):
        shutil.copytree(runs_dir / "tiny", root / name)
    monkeypatch.setenv("UDD_RUNS_DIR", str(root))
    app = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    app.session_state["udd_run"] = "other"  # picked on another page
    app.run()
    assert not app.exception and app.selectbox(key="insp_run").value == "other"
    assert app.query_params["run"] == "other"
    app.selectbox(key="insp_run").select("tiny").run()
    assert app.session_state["udd_run"] == "tiny" and app.query_params["run"] == "tiny"
    assert app.selectbox(key="insp_run").value == "tiny"
    app2 = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    app2.query_params["run"] = "nope"
    app2.run()
    assert not app2.exception and "'nope'" in app2.warning[0].value


def test_the_drilled_image_stays_when_the_post_processing_changes(at):
    def pick(app):
        return next(s for s in app.selectbox if s.key.startswith("insp_pick_"))

    default = pick(at).value  # the highest score
    pick(at).select_index(len(pick(at).options) - 1).run()  # the lowest score
    chosen = pick(at).value
    assert chosen != default and not at.exception
    key = pick(at).key
    at.selectbox(key="insp_residual").set_value("l1").run()
    assert pick(at).key != key and pick(at).value == chosen  # a new widget, the same image


def toy_run_page(monkeypatch, tmp_path, smooth: float) -> AppTest:
    """The page on one run of the toy method (no reconstruction, its own post-processing: `smooth` px)."""
    from test_detector_consumers import fit_toy
    from toy_detector import register

    register(monkeypatch)
    root = tmp_path / "runs"
    fit_toy(root / "toy", make_mvtec(tmp_path / "parts"), smooth=smooth)
    monkeypatch.setenv("UDD_RUNS_DIR", str(root))
    app = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    assert not app.exception and not app.error
    return app


def test_a_run_smoothing_more_than_the_slider_top_is_not_clamped(monkeypatch, tmp_path):
    """A method option above the slider's usual top (16 px) is what Inspect applies, as `udd score` does."""
    app = toy_run_page(monkeypatch, tmp_path, 24.0)
    slider = app.slider(key="insp_smooth")
    assert slider.value == 24.0 and slider.max == 24.0
    assert toy_run_page(monkeypatch, tmp_path / "b", 8.0).slider(key="insp_smooth").max == 16.0  # room on both sides


def test_a_run_of_another_method_opens_with_its_own_defaults(monkeypatch, tmp_path):
    """Inspect works on any detector: the toy method has no reconstruction and its own post-processing."""
    app = toy_run_page(monkeypatch, tmp_path, 2.0)
    assert app.selectbox(key="insp_residual").options == ["sq"]
    assert any("Method **toy-mean**: the heatmap is its anomaly map" in c.value for c in app.caption)
    assert app.selectbox(key="insp_score").value == "max" and app.slider(key="insp_smooth").value == 2.0
    assert float(metrics(app)["image AUROC"]) == 1.0
    # 8 x (input, residual, overlay), no reconstruction; + the colour legend and the drill-down
    assert len(app.get("image")) == 8 * 3 + 2


def test_an_unfinished_run_is_one_warning_not_also_a_notice(monkeypatch, runs_dir, tmp_path):
    import json
    import shutil

    root = tmp_path / "runs"
    shutil.copytree(runs_dir, root)
    (root / "tiny" / "status.json").write_text(json.dumps({"status": "interrupted", "message": "no heartbeat"}))
    monkeypatch.setenv("UDD_RUNS_DIR", str(root))
    app = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    assert not app.exception
    assert warnings(app) == [
        "Run tiny is interrupted (no heartbeat): this is the model saved so far, not a finished one."]
    assert not any("is interrupted" in c.value for c in app.caption)  # udd score's notice, said once here


def test_a_run_still_learning_says_so(monkeypatch, runs_dir, tmp_path):
    import json
    import shutil

    root = tmp_path / "runs"
    shutil.copytree(runs_dir, root)
    history = root / "tiny" / "history.jsonl"
    (first,) = [json.loads(line) for line in history.read_text().splitlines()]
    with history.open("a") as f:  # as if a second epoch had lowered the loss by a third
        f.write(json.dumps({**first, "epoch": 2, "val_loss": first["val_loss"] * 2 / 3}) + "\n")
    monkeypatch.setenv("UDD_RUNS_DIR", str(root))
    app = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    assert not app.exception and not warnings(app)
    assert any(c.value.startswith("ℹ️ Run tiny was still learning when its training ended: its validation loss "
                                  "fell 33% over the last epoch") for c in app.caption)


def test_settings_survive_a_visit_to_another_page(monkeypatch, runs_dir):
    """QA: residual, score, split and a manual threshold went back to the run's defaults after a visit to
    Design or Compare (Streamlit drops a widget's state when its page is not shown, unless it persists)."""
    monkeypatch.setenv("UDD_RUNS_DIR", str(runs_dir))
    app = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT).run()
    app.switch_page("pages/inspect.py").run()
    assert not app.exception and app.title[0].value == "Inspect"
    app.selectbox(key="insp_residual").set_value("ssim").run()
    app.selectbox(key="insp_score").set_value("max").run()
    app.selectbox(key="insp_split").set_value("all").run()
    app.radio(key="insp_thr_mode").set_value("manual").run()
    manual = next(s for s in app.slider if s.key.startswith("insp_thr_"))
    manual.set_value(manual.min + (manual.max - manual.min) / 3).run()
    chosen = next(s for s in app.slider if s.key.startswith("insp_thr_")).value
    for other in ("pages/design.py", "pages/compare.py"):
        app.switch_page(other).run()
        assert not app.exception
        app.switch_page("pages/inspect.py").run()
        assert not app.exception
        assert app.selectbox(key="insp_residual").value == "ssim" and app.selectbox(key="insp_score").value == "max"
        assert app.selectbox(key="insp_split").value == "all" and app.radio(key="insp_thr_mode").value == "manual"
        assert next(s for s in app.slider if s.key.startswith("insp_thr_")).value == pytest.approx(chosen)


def test_a_run_whose_status_changes_under_the_picker_stays_picked(monkeypatch, runs_dir, tmp_path):
    """QA: the picker's labels carry each run's status; when it changed between two reruns (a run finished),
    the browser sent the old label, Streamlit handed it back as the value, and `?run=` became
    'tiny (running)', a run that does not exist."""
    import json
    import shutil

    root = tmp_path / "runs"
    shutil.copytree(runs_dir, root)
    status = root / "tiny" / "status.json"
    status.write_text(json.dumps({"status": "stopped", "message": "stopped after 1 of 1 epochs"}))
    monkeypatch.setenv("UDD_RUNS_DIR", str(root))
    app = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    stale = app.selectbox(key="insp_run").format_func("tiny")
    assert "stopped" in stale
    status.write_text(json.dumps({"status": "finished", "message": "done"}))
    app.run()
    picker = app.selectbox(key="insp_run")
    assert "finished" in picker.format_func("tiny")
    send_label(app, picker, stale)  # a browser that has not seen the new labels yet sends the old one
    app.run()
    assert not app.exception and not warnings(app)
    assert app.selectbox(key="insp_run").value == "tiny" and app.query_params["run"] == "tiny"


def test_data_of_the_other_kind_is_a_warning_above_the_figures(monkeypatch, tmp_path):
    from inspect_fixtures import tiny_config

    rgb = {**tiny_config(), "block_size_in": [[3, 4, 4], [4, 8, 8]], "block_size_out": [[8, 8, 4], [4, 4, 3]]}
    make_run(tmp_path / "runs" / "rgb", make_mvtec(tmp_path / "parts"), config=rgb)
    monkeypatch.setenv("UDD_RUNS_DIR", str(tmp_path / "runs"))
    app = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    assert not warnings(app)
    app.text_input(key="insp_data").input(str(ROOT / "sample_data" / "wafer_maps_26x26.npz")).run()
    assert not app.exception
    assert warnings(app) == ["The run was trained on images but these data are wafer maps: its scores "
                                              "(and any reconstructions) mean little here."]
    assert not any("wafer maps: its scores" in c.value for c in app.caption)  # said once, as the warning


def test_an_ssim_trained_run_opens_on_its_losss_scoring_and_says_why(monkeypatch, runs_dir, tmp_path):
    import json
    import shutil

    root = tmp_path / "runs"
    shutil.copytree(runs_dir / "tiny", root / "tiny")
    info = json.loads((root / "tiny" / "train.json").read_text())
    info["settings"]["loss"] = "ssim"  # as the magnetic-tile recipe trains
    (root / "tiny" / "train.json").write_text(json.dumps(info))
    monkeypatch.setenv("UDD_RUNS_DIR", str(root))
    app = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    assert not app.exception and not app.error
    assert app.selectbox(key="insp_residual").value == "ssim" and app.selectbox(key="insp_score").value == "topk"
    assert sum("trained with an SSIM loss" in c.value for c in app.caption) == 1  # near the top, once
    app.selectbox(key="insp_residual").set_value("l2").run()  # no longer the loss's scoring: nothing to say
    assert not app.exception and not any("trained with an SSIM loss" in c.value for c in app.caption)
    # The page's heatmap zip and report are written from the Inspection, whose notes now carry it whenever the
    # residual in effect is the loss's, passed or not (QA sweep 11: the page passes it, and both lost the note).
    import html

    from udd_core.inspection import inspect_run
    from udd_core.losses import SSIM_SCORING_NOTE
    from udd_core.report import build_report

    data = json.loads((root / "tiny" / "train.json").read_text())["data"]["path"]
    said = inspect_run(root / "tiny", data, residual="ssim", keep_recon=False)
    assert SSIM_SCORING_NOTE in said.notices and html.escape(SSIM_SCORING_NOTE) in build_report(said, root / "tiny")
    assert SSIM_SCORING_NOTE not in inspect_run(root / "tiny", data, residual="l2", keep_recon=False).notices


def test_the_one_image_overlay_follows_the_pixel_threshold_box(at):
    """QA sweep 15: the box changed the regions table but not the overlay's outline beside it."""
    def overlay():
        # the One image tab's, after the gallery's
        return [i.proto.imgs[0] for i in at.get("image") if i.proto.imgs[0].caption.startswith("overlay")][-1]

    box = next(n for n in at.number_input if n.key.startswith("insp_pix_"))
    before = overlay()
    assert before.caption == "overlay"
    box.set_value(box.value / 4).run()
    assert not at.exception
    after = overlay()
    assert after.caption == f"overlay, outline at {scale_text(box.value)}" and after.url != before.url


def test_a_wafer_runs_gallery_says_what_the_die_colours_mean(monkeypatch, tmp_path):
    """QA sweep 19a: Inspect alone of the views (report, heatmaps README, Generate) had no key to the dies."""
    from test_generation import make_run as make_wafer_run, write_wafers

    make_wafer_run(tmp_path / "runs", "wafers", write_wafers(tmp_path / "w.npz"))
    monkeypatch.setenv("UDD_RUNS_DIR", str(tmp_path / "runs"))
    app = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    assert not app.exception and not app.error, [e.value for e in app.error]
    assert any("Wafer maps: " in c.value and "failing dies lightest" in c.value for c in app.caption)


def test_caught_defects_whose_map_peaks_off_the_mask_are_said_and_shown(monkeypatch, tmp_path):
    """The toy method's map peaks on the planted square; masks drawn in a far corner make every caught defect's
    heatmap point off its ground truth: a caution says so, and the gallery shows those images on demand."""
    import numpy as np
    from PIL import Image

    from test_detector_consumers import fit_toy
    from toy_detector import register
    from udd_core.inspection_views import OFF_DEFECT

    register(monkeypatch)
    data = make_mvtec(tmp_path / "parts")
    for mask in (data / "ground_truth" / "spot").iterdir():
        corner = np.zeros((32, 32), np.uint8)
        corner[26:, :5] = 255
        Image.fromarray(corner).save(mask)
    fit_toy(tmp_path / "runs" / "toy", data, smooth=0.0)
    monkeypatch.setenv("UDD_RUNS_DIR", str(tmp_path / "runs"))
    app = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    assert not app.exception
    said = [w for w in warnings(app) if "heatmap's hot spot off the defect" in w]
    assert len(said) == 1 and said[0].startswith("4 of the 4 defective images caught have their"), warnings(app)
    app.radio(key="insp_filter").set_value(OFF_DEFECT).run()
    assert any(c.value.startswith("4 images, highest score first") for c in app.caption)
    app.radio(key="insp_thr_mode").set_value("manual").run()
    slider = next(s for s in app.slider if s.key.startswith("insp_thr_"))
    slider.set_value(slider.max).run()  # nothing caught: the choice goes with the images it showed
    assert not app.exception and OFF_DEFECT not in app.radio(key="insp_filter").options
    assert not [w for w in warnings(app) if "hot spot off the defect" in w]
