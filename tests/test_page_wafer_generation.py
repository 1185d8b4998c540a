"""Pages for wafer-map generation (issue 13), driven headless with AppTest: the Train page's "Train on"
choice, the Generate page's HW2 view and .npz download, and the Inspect page's warning."""
import json
import threading
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from udd_core import runs
from udd_core import run_status
from test_generation import WAFER_CFG, fitted, make_run, write_wafers  # noqa: F401 - fitted is a fixture
from test_page_generate import grid as image_rows
from test_page_inspect import warnings

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 60


def errors(app) -> str:
    return " | ".join(e.value for e in app.error)


pytestmark = pytest.mark.usefixtures("no_job_left_behind")


def test_a_wafer_generation_model_on_photos_is_refused_before_start(tmp_path, monkeypatch):
    monkeypatch.setenv("UDD_RUNS_DIR", str(tmp_path / "runs"))
    at = AppTest.from_file(str(ROOT / "pages" / "train.py"), default_timeout=TIMEOUT)
    for k, v in {"train_data_mode": "Path", "train_path": str(ROOT / "sample_data" / "surface")}.items():
        at.session_state[k] = v
    at.run()
    at.radio(key="train_model_mode").set_value("Preset").run()
    at.selectbox(key="train_model_preset").select("wafer-26-gen").run()
    assert not at.exception and at.selectbox(key="train_loss").value == "ce"  # the preset's training preset
    assert "loss: 'ce' is a cross-entropy over die classes and needs wafer maps" in errors(at)
    assert next(b for b in at.button if b.label == "Start training").disabled
    at.text_input(key="train_path").input(str(ROOT / "sample_data" / "wafer_maps_26x26.npz")).run()
    assert not at.error, errors(at)  # wafer maps: nothing to refuse
    assert not next(b for b in at.button if b.label == "Start training").disabled


def test_train_page_trains_on_the_chosen_classes(tmp_path, monkeypatch):
    from udd_core.settings import training_presets

    runs_dir = tmp_path / "runs"
    monkeypatch.setenv("UDD_RUNS_DIR", str(runs_dir))
    data = write_wafers(tmp_path / "w.npz")  # 3 maps of each pattern class, 6 none
    at = AppTest.from_file(str(ROOT / "pages" / "train.py"), default_timeout=TIMEOUT)
    for k, v in {"design_config": WAFER_CFG, "design_input_shape": (3, 26, 26), "train_data_mode": "Path",
                 "train_path": str(data), "train_epochs": 1, "train_batch_size": 4, "train_name": "gen"}.items():
        at.session_state[k] = v
    at.run()
    assert not at.exception and at.selectbox(key="train_on_mode").value == "normal"  # detection by default
    at.selectbox(key="train_preset").select("wafer-generation").run()
    assert at.selectbox(key="train_on_mode").value == training_presets()["wafer-generation"].train_on == "all"
    at.selectbox(key="train_loss").select("mse").run()  # the Design page's tiny model outputs raw values
    at.number_input(key="train_epochs").set_value(1).run()
    at.selectbox(key="train_on_mode").select("classes").run()
    start_button = lambda: next(b for b in at.button if b.label == "Start training")  # noqa: E731
    # QA sweep 11: the classes are picked from the data's labels (a typed box let typos through to a refusal)
    picker = next(m for m in at.multiselect if m.key.startswith("train_on_picked_"))
    assert picker.options == ["Center (3)", "Donut (3)", "Edge-Loc (3)", "Edge-Ring (3)", "Loc (3)",
                              "Near-full (3)", "Random (3)", "Scratch (3)", "none (6)"]
    assert "Train on: pick the classes to train on" in errors(at) and start_button().disabled
    picker.set_value(["Center"]).run()
    assert not at.error and not start_button().disabled, errors(at)
    next(m for m in at.multiselect if m.key.startswith("train_on_picked_")).set_value(
        ["Center", "Donut", "Loc"]).run()  # 9 maps, beside 6 normal ones
    next(b for b in at.button if b.label == "Start training").click().run()
    assert not at.exception and not at.error, errors(at)
    for _ in range(300):
        if json.loads((runs_dir / "gen" / "status.json").read_text())["status"] == "finished":
            break
        threading.Event().wait(0.2)
    info = json.loads((runs_dir / "gen" / "train.json").read_text())
    assert info["settings"]["train_on"] == "Center,Donut,Loc" and info["data"]["count"] == 9
    at.run()
    assert any("**Generate** page" in i.value for i in at.info)  # a run for generating, not for inspecting
    assert any(b.key == "train_open_next" and b.label == "Open in Generate" for b in at.button)
    # Resume trains on the same chosen classes (it used to reload the normal maps, 6 none of them, and be
    # refused, or train on maps the run had not chosen)
    at.number_input(key="train_resume_to_gen").set_value(2)
    at.button(key="train_resume").click().run()
    assert not at.exception and not at.error, errors(at)
    for _ in range(300):
        if (len(runs.read_history(runs_dir / "gen")) == 2
                and run_status.read_status(runs_dir / "gen")["status"] == "finished"):
            break
        threading.Event().wait(0.2)
    assert run_status.read_status(runs_dir / "gen")["status"] == "finished"
    assert len(runs.read_history(runs_dir / "gen")) == 2


@pytest.fixture
def gen_runs(tmp_path, monkeypatch, fitted):
    root = tmp_path / "runs"
    run = make_run(root, "tiny", *fitted)
    info = json.loads((run / "train.json").read_text())
    (run / "train.json").write_text(json.dumps({**info, "settings": {"train_on": "all"}}))
    monkeypatch.setenv("UDD_RUNS_DIR", str(root))
    return root


def test_generate_page_hw2_view_has_one_grid_per_pattern_class_and_the_npz(gen_runs, fitted, tmp_path, capsys):
    at = AppTest.from_file(str(ROOT / "pages" / "generate.py"), default_timeout=TIMEOUT).run()
    assert not at.exception and not at.error, errors(at)
    at.toggle(key="gen_hw2").set_value(True).run()
    assert not at.exception and not at.error, errors(at)
    assert any("HW2 view's variants are not drawn on it" in c.value for c in at.caption)  # the map says why
    with np.load(fitted[0]) as z:
        labels = z["labels"].tolist()
    classes = sorted(set(labels) - {"none"})
    heads = [m.value for m in at.markdown if m.value.startswith("**")]
    assert [h.split("**")[1] for h in heads] == classes  # one grid per pattern class, none left out
    rows = [[c for _, c in row] for row in image_rows(at)]  # the interpolation strip left out
    k = min(4, 3)  # 4 sources asked, 3 maps per class
    assert len(rows) == len(classes) * k
    for row in rows:
        assert row[1] == "reconstruction" and row[2:] == [f"variant {j}" for j in range(1, 5)]
    first = rows[0][0]
    assert first.startswith(classes[0])  # each row starts from a map of its class
    downloads = [b.proto.label for b in at.get("download_button")]
    assert any(f"the {len(classes) * k * 4} generated maps for augmentation (.npz)" in d for d in downloads), downloads
    # QA sweep 7: the HW2 view printed no headless call. Each class's heading has the one for its grid.
    import shlex

    from udd_core import generation as gen
    from udd_core import wafer_generation as wg
    from udd_core.cli import main

    commands = [h.split("headless: `", 1)[1].rstrip("`") for h in heads]
    out = tmp_path / "cli"
    assert main(shlex.split(commands[1].replace("OUT", str(out)))[1:]) == 0  # the second class: seed + 1
    run = gen_runs / "tiny"
    model = gen.load_generator(run)
    ds = gen.load_images(model, gen.runs.run_source(run)["path"])
    grid = wg.class_grids(model, ds.images, ds.labels, float(at.slider(key=next(
        s.key for s in at.slider if s.key.startswith("gen_sigma_"))).value), 0, n_sources=4, per_source=4)[1]
    with np.load(f"{out}-{classes[1]}.npz") as z:
        written = z["maps"]
    shown = grid.variant_maps.reshape(-1, *grid.variant_maps.shape[2:])
    assert len(written) == len(shown) == k * 4
    assert sorted(m.tobytes() for m in written) == sorted(m.tobytes() for m in shown)  # the same maps
    at.toggle(key="gen_hw2").set_value(False).run()
    at.radio(key="gen_mode").set_value("Random latents").run()  # a run trained on all maps draws from all of them
    assert not at.exception and any("over every image (the run trained on all)" in c.value for c in at.caption)


def test_inspect_page_warns_about_a_run_trained_on_defects(tmp_path, monkeypatch):
    from inspect_fixtures import make_mvtec
    from inspect_fixtures import make_run as make_trained_run

    data = make_mvtec(tmp_path / "parts")
    run = make_trained_run(tmp_path / "runs" / "tiny", data)
    monkeypatch.setenv("UDD_RUNS_DIR", str(tmp_path / "runs"))
    page = str(ROOT / "pages" / "inspect.py")
    at = AppTest.from_file(page, default_timeout=TIMEOUT).run()
    assert not at.exception and not warnings(at)  # trained on normal images: nothing to say
    info = json.loads((run / "train.json").read_text())
    info["settings"]["train_on"] = "all"
    (run / "train.json").write_text(json.dumps(info))
    at = AppTest.from_file(page, default_timeout=TIMEOUT).run()
    assert not at.exception
    assert any("trained on every image, defects included" in w.value for w in at.warning)


def test_train_page_refuses_a_file_of_defects_only_before_start(tmp_path, monkeypatch):
    """Normal images asked of a file whose every map is labelled as a defect: said before Start, with the
    classes it holds; "All images" of the same file is fine."""
    monkeypatch.setenv("UDD_RUNS_DIR", str(tmp_path / "runs"))
    np.savez(tmp_path / "d.npz", maps=np.ones((4, 26, 26), np.uint8), labels=np.array(["Center", "Donut"] * 2))
    at = AppTest.from_file(str(ROOT / "pages" / "train.py"), default_timeout=TIMEOUT)
    for k, v in {"design_config": WAFER_CFG, "design_input_shape": (3, 26, 26), "train_data_mode": "Path",
                 "train_path": str(tmp_path / "d.npz")}.items():
        at.session_state[k] = v
    at.run()
    start = next(b for b in at.button if b.label == "Start training")
    assert "every image is labelled as a defect (Center, Donut)" in errors(at) and start.disabled
    at.selectbox(key="train_on_mode").select("all").run()
    assert not at.exception and not at.error, errors(at)
    assert not next(b for b in at.button if b.label == "Start training").disabled


def test_generate_page_counts_an_unknown_label_apart_from_the_pattern_classes(gen_runs, fitted, tmp_path):
    """QA sweep 11: WM-811K's "unlabeled" was counted and offered as one more pattern class."""
    with np.load(fitted[0]) as z:
        maps, labels = z["maps"], z["labels"].tolist()
    labels[:2] = ["unlabeled", "unlabeled"]
    data = tmp_path / "with_unknown.npz"
    np.savez(data, maps=maps, labels=np.array(labels))
    at = AppTest.from_file(str(ROOT / "pages" / "generate.py"), default_timeout=TIMEOUT).run()
    at.text_input(key="gen_data_tiny").input(str(data)).run()
    assert not at.exception and not at.error, errors(at)
    known = len(set(labels) - {"unlabeled"})
    assert any(f"· {known} classes · 2 with an unknown label" in c.value for c in at.caption)
    box = next(s for s in at.selectbox if s.key.startswith("gen_class_"))
    assert "unlabeled (2, unknown label)" in box.options
