"""Gaps found in a QA sweep of the pages: widgets that would do nothing for the chosen method."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from test_page_train import data, page, runs_dir  # noqa: E402,F401  (fixtures and the page driver)

LOOP = ("train_epochs", "train_lr", "train_batch_size", "train_noise_patches")


def _keys(at) -> set:
    return {w.key for w in at.number_input} | {w.key for w in at.selectbox} | {w.key for w in at.toggle}


def test_memory_bank_shows_only_the_settings_a_one_pass_fit_uses(tiny_config, data, runs_dir):
    at = page(tiny_config, data, train_method="memory-bank")
    keys = _keys(at)
    assert not keys & set(LOOP) and "train_preset" not in keys and "train_loss" not in keys
    assert {"train_val_split", "train_seed", "train_device"} <= keys
    assert any("fitted in one pass" in c.value for c in at.caption)
    # An autoencoder keeps the whole training loop.
    at.selectbox(key="train_method").set_value("autoencoder").run()
    assert not at.exception
    assert set(LOOP) | {"train_preset", "train_loss"} <= _keys(at)
    assert not any("fitted in one pass" in c.value for c in at.caption)


def test_run_pickers_do_not_count_epochs_of_a_one_pass_fit(tmp_path):
    """"mb — finished, 0 epochs" read like a failed run; pickers name the method instead."""
    import json

    from pages.run_focus import run_label
    from udd_core.runs import RunInfo

    def info(method):
        d = tmp_path / (method or "plain")
        d.mkdir()
        if method:
            (d / "method.json").write_text(json.dumps({"method": method}))
        return RunInfo(name=d.name, status="finished", epochs_done=0 if method == "memory-bank" else 3,
                       best_val_loss=None, created="", path=d)

    assert run_label(info("memory-bank")) == "finished, memory-bank (one pass)"
    assert run_label(info("dsvdd")) == "finished, 3 epochs, dsvdd"
    assert run_label(info(None)) == "finished, 3 epochs"
    (tmp_path / "dsvdd" / "svdd_history.json").write_text(json.dumps([{"epoch": 1}, {"epoch": 2}]))
    assert run_label(RunInfo("dsvdd", "stopped", 3, None, "", tmp_path / "dsvdd")) == \
        "stopped, 3 epochs + 2 Deep SVDD epochs, dsvdd"  # QA sweep 19b: its second loop's epochs counted too


def test_inspect_gallery_calls_a_map_without_reconstruction_an_anomaly_map(monkeypatch, tmp_path):
    from streamlit.testing.v1 import AppTest

    from inspect_fixtures import make_mvtec, make_run
    from test_detector_consumers import fit_toy
    from toy_detector import register

    register(monkeypatch)
    root = tmp_path / "runs"
    data = make_mvtec(tmp_path / "parts")
    fit_toy(root / "toy", data, smooth=2.0)
    monkeypatch.setenv("UDD_RUNS_DIR", str(root))
    page = str(Path(__file__).resolve().parents[1] / "pages" / "inspect.py")
    app = AppTest.from_file(page, default_timeout=60).run()
    heads = [m.value for m in app.markdown if m.value.startswith("**") and m.value.endswith("**")]
    assert "**anomaly map**" in heads and "**residual**" not in heads and "**reconstruction**" not in heads
    # An autoencoder run keeps its residual.
    make_run(root / "tiny", data)
    app = AppTest.from_file(page, default_timeout=60)
    app.query_params["run"] = "tiny"
    app.run()
    assert not app.exception and app.selectbox(key="insp_run").value == "tiny"
    heads = [m.value for m in app.markdown if m.value.startswith("**") and m.value.endswith("**")]
    assert "**residual**" in heads and "**reconstruction**" in heads


def test_generate_does_not_call_a_linked_run_without_decoder_missing(monkeypatch, tmp_path):
    """?run=BANK: the page says why it is not listed, and no longer also says "No run named BANK"."""
    from streamlit.testing.v1 import AppTest

    from inspect_fixtures import make_mvtec, make_run
    from test_detector_consumers import fit_toy
    from toy_detector import register

    register(monkeypatch)
    root = tmp_path / "runs"
    data = make_mvtec(tmp_path / "parts")
    make_run(root / "tiny", data)
    fit_toy(root / "toy", data)
    monkeypatch.setenv("UDD_RUNS_DIR", str(root))
    app = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "pages" / "generate.py"), default_timeout=60)
    app.query_params["run"] = "toy"
    app.run()
    assert not app.exception
    assert "toy is a toy-mean run: it does not generate" in " ".join(i.value for i in app.info)
    assert not any("No run named" in w.value for w in app.warning)
    app = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "pages" / "generate.py"), default_timeout=60)
    app.query_params["run"] = "gone"  # a truly stale link still warns
    app.run()
    assert any("No run named 'gone'" in w.value for w in app.warning)


def test_compare_says_whose_config_is_missing_instead_of_no_field_differs(monkeypatch, tmp_path):
    import shutil

    from streamlit.testing.v1 import AppTest

    from inspect_fixtures import make_mvtec, make_run

    root = tmp_path / "runs"
    data = make_mvtec(tmp_path / "parts")
    make_run(root / "ae", data)
    shutil.copytree(root / "ae", root / "bank")
    (root / "bank" / "config.json").unlink()  # as a method without an autoencoder config stores it
    monkeypatch.setenv("UDD_RUNS_DIR", str(root))
    app = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "pages" / "compare.py"), default_timeout=120)
    app.query_params["run"] = "ae"
    app.run()
    assert not app.exception
    caps = [c.value for c in app.caption]
    assert caps.count("Only one of these runs has a readable autoencoder config (bank: no autoencoder config).") == 2
    assert "No field differs." not in caps[:3]


def test_train_page_takes_the_feature_ae_preset_for_a_feature_ae(tiny_config, data, runs_dir):
    """The feature-ae preset's config holds the 152 feature channels: the page used to build the image shape from
    them, (152, 256, 256), and refuse every size; now the images load gray (the preset's), as `udd train` does."""
    at = page(tiny_config, data, train_method="feature-ae", train_model_mode="Preset")
    at.selectbox(key="train_model_preset").set_value("feature-ae").run()
    start = next(b for b in at.button if b.label == "Start training")
    assert not at.error and not start.disabled
    assert any("at 1x256x256" in c.value for c in at.caption)  # the images' shape, not the features'
    # A pixel config for the feature AE is refused before Start, naming the fix.
    at.selectbox(key="train_model_preset").set_value("gray-tile-128").run()
    assert "the lite0 features have 152 channels" in " ".join(e.value for e in at.error)
    assert next(b for b in at.button if b.label == "Start training").disabled


def test_a_feature_ae_design_sent_from_design_trains_with_one_click(tiny_config, data, runs_dir):
    """QA: the Design page's feature-ae design, with Method left on autoencoder, only got the refusal; a button now
    picks the method that trains it."""
    from udd_core.presets import model_presets

    fae = model_presets()["feature-ae"]
    at = page(tiny_config, data, design_config=fae.config.to_dict(), design_input_shape=fae.input_shape)
    assert at.selectbox(key="train_method").value == "autoencoder"
    assert "train this one with the feature-ae method" in " ".join(e.value for e in at.error)
    at.button(key="train_use_feature_ae").click().run()
    assert not at.exception and not at.error
    assert at.selectbox(key="train_method").value == "feature-ae"
    assert not next(b for b in at.button if b.label == "Start training").disabled
    assert not [b for b in at.button if b.key == "train_use_feature_ae"]  # nothing left to fix


def test_no_stray_values_are_drawn_above_the_size_inputs(tiny_config, data, runs_dir):
    """A bare `a(), b()` statement in the page was drawn by Streamlit's magic as "256 256" for the memory bank."""
    at = page(tiny_config, data, train_method="memory-bank")
    assert not [m.value for m in at.markdown if "`256`" in m.value or "`128`" in m.value]


def test_picking_the_feature_ae_switches_a_pixel_preset_to_the_feature_ae_preset(tiny_config, data, runs_dir):
    at = page(tiny_config, data, train_model_mode="Preset")
    assert at.selectbox(key="train_model_preset").value == "gray-tile-128"
    at.selectbox(key="train_method").set_value("feature-ae").run()
    assert not at.exception and not at.error
    assert at.selectbox(key="train_model_preset").value == "feature-ae"
    assert (at.number_input(key="train_h").value, at.number_input(key="train_w").value) == (256, 256)
    # and its training recipe: the feature-ae training preset's epochs and rate
    assert at.selectbox(key="train_preset").value == "feature-ae"
    assert (at.number_input(key="train_epochs").value, at.number_input(key="train_lr").value) == (96, 3e-3)
    assert tuple(at.session_state["train_betas"]) == (0.9, 0.999)  # no widget: it comes with the preset
    # a pixel method picked next goes back to a pixel design: test_page_train.py, test_a_pixel_method_after_...


def test_compare_one_pass_runs_and_a_run_trained_on_other_data(monkeypatch, tmp_path):
    """Two one-pass fits: no "No epoch has finished ... yet" (they never will); a run trained on wafer maps is
    not scored on photos (QA sweep 5: its AUROC ranked beside the others'), with the words Inspect warns with."""
    import json

    from streamlit.testing.v1 import AppTest

    from inspect_fixtures import make_mvtec
    from test_detector_consumers import fit_toy
    from toy_detector import register

    register(monkeypatch)
    monkeypatch.setattr("udd_core.methods.METHODS", (*__import__("udd_core.methods").methods.METHODS, "toy-mean"))
    root = tmp_path / "runs"
    data = make_mvtec(tmp_path / "parts")
    fit_toy(root / "a", data)
    fit_toy(root / "b", data, smooth=2.0)
    train = json.loads((root / "b" / "train.json").read_text())
    train["data"]["kind"] = "wafer"  # as if b had been fitted on wafer maps
    (root / "b" / "train.json").write_text(json.dumps(train))
    monkeypatch.setenv("UDD_RUNS_DIR", str(root))
    app = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "pages" / "compare.py"), default_timeout=120)
    app.query_params["run"] = "a"
    app.run()
    assert not app.exception
    infos = " ".join(i.value for i in app.info)
    assert "fitted in one pass, with no training epochs: they have no loss curves" in infos
    assert "No epoch has finished" not in infos
    warns = [w.value for w in app.warning]
    assert any(w.startswith("b: not scored (the run was trained on wafer maps but these data are images")
               for w in warns), warns
    assert not any(w.startswith("a: ") for w in warns)
