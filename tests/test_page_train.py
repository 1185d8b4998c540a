"""The Train page, driven headless with AppTest on tiny generated data (1x32x32 PNGs, a 2-block model).

Jobs are real TrainJob threads; the JobManager lives in st.cache_resource, which AppTest shares
across sessions of one process, so a second AppTest is what a browser refresh looks like.
"""
import json
import statistics
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from streamlit.testing.v1 import AppTest

from archives import zip_bytes
from udd_core import runs
from udd_core import run_status
from udd_core.data_preview import training_labels
from udd_core.tensor_files import write_tensors
from udd_core.training_data import class_counts

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "pages" / "train.py"
TIMEOUT = 60


def write_pngs(folder: Path, n: int = 12, size: int = 32) -> Path:
    """`n` grayscale gradient-plus-noise PNGs: enough texture that the loss is not trivially zero."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    ramp = np.linspace(0, 200, size)[None, :]
    for i in range(n):
        img = np.clip(ramp + rng.normal(0, 20, (size, size)), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(folder / f"{i:03d}.png")
    return folder


@pytest.fixture
def data(tmp_path) -> Path:
    return write_pngs(tmp_path / "data")


@pytest.fixture
def runs_dir(tmp_path, monkeypatch) -> Path:
    d = tmp_path / "runs"
    monkeypatch.setenv("UDD_RUNS_DIR", str(d))
    return d


pytestmark = pytest.mark.usefixtures("no_job_left_behind")


def page(tiny_config, data: Path, script: Path = PAGE, **state) -> AppTest:
    """The page with the tiny design as the Design page's config and `data` typed in as the path."""
    at = AppTest.from_file(str(script), default_timeout=TIMEOUT)
    settings = {"design_config": tiny_config, "design_input_shape": (1, 32, 32), "train_data_mode": "Path",
                "train_path": str(data), "train_epochs": 1, "train_batch_size": 4, **state}
    for k, v in settings.items():
        at.session_state[k] = v
    at.run()
    assert not at.exception
    return at


def start(at: AppTest) -> AppTest:
    next(b for b in at.button if b.label == "Start training").click().run()
    assert not at.exception
    return at


def errors(at) -> str:
    return " | ".join(e.value for e in at.error)


def captions(at) -> str:
    return " | ".join(c.value for c in at.caption)


def selected(at) -> str:
    return at.session_state["train_selected"]


def wait_for(at: AppTest, done, timeout: float = 90.0) -> AppTest:
    """Rerun the page (as the polling fragment would) until `done(at)` or the timeout."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        at.run()
        assert not at.exception
        if done(at):
            return at
        time.sleep(0.2)
    raise AssertionError(f"timed out; page shows: {[m.value for m in (*at.error, *at.warning, *at.success)]}")


def finished(at) -> bool:
    return any("finished" in s.value for s in at.success)


def table(at):
    return at.dataframe[0].value.set_index("name")


def chart(at) -> dict:
    return json.loads(at.get("plotly_chart")[0].proto.spec)


def alive(at) -> bool:
    return any(b.key == "train_stop" for b in at.button)


def test_one_epoch_job_shows_its_curve_and_writes_history(tiny_config, data, runs_dir):
    at = page(tiny_config, data)
    assert "12 images" in " ".join(c.value for c in at.caption)  # the estimate, before anything is loaded
    start(at)
    name = selected(at)
    assert name.startswith("data-") and at.query_params["run"] == name
    wait_for(at, finished)
    assert not at.error
    lines = (runs_dir / name / "history.jsonl").read_text().splitlines()
    assert len(lines) == 1
    traces = {t["name"]: t for t in chart(at)["data"]}
    assert traces["train"]["y"] == [pytest.approx(json.loads(lines[0])["train_loss"])]
    assert traces["validation"]["y"] == [pytest.approx(json.loads(lines[0])["val_loss"])]
    n_train = json.loads((runs_dir / name / "train.json").read_text())["data"]["n_train"]
    assert len(traces["train, per step (smoothed)"]["y"]) == -(-n_train // 4)  # one point per batch of 4
    assert table(at).loc[name, "status"] == "finished" and table(at).loc[name, "epochs"] == 1
    assert any("**Inspect** page" in i.value for i in at.info)
    assert any(b.key == "train_open_next" and b.label == "Open in Inspect" for b in at.button)
    n_val = json.loads((runs_dir / name / "train.json").read_text())["data"]["n_val"]
    assert len(at.image) == min(4, n_val)  # probes, input over recon, one per column of a row of four
    assert all(len(i.proto.imgs) == 1 for i in at.image)
    assert at.image[0].proto.imgs[0].url.endswith(".png")  # lossless: no JPEG artefacts in a reconstruction
    assert json.loads((runs_dir / name / "train.json").read_text())["settings"]["amp_bf16"] is True  # the default
    assert not any("still learning" in c.value for c in at.caption)  # one epoch: nothing to compare it with
    with open(runs_dir / name / "history.jsonl", "a") as f:  # as if a second epoch had halved the loss
        f.write(json.dumps({"epoch": 2, "val_loss": json.loads(lines[0])["val_loss"] / 2}) + "\n")
    at.run()
    assert any(c.value.startswith(f"ℹ️ Run {name} was still learning when its training ended: its validation "
                                  "loss fell 50% over the last epoch") for c in at.caption)


def test_bf16_toggle_off_trains_in_float32(tiny_config, data, runs_dir):
    at = page(tiny_config, data, train_name="fp32")
    at.toggle(key="train_amp_bf16").set_value(False).run()
    wait_for(start(at), finished)
    assert json.loads((runs_dir / "fp32" / "train.json").read_text())["settings"]["amp_bf16"] is False
    assert json.loads((runs_dir / "fp32" / "history.jsonl").read_text().splitlines()[0])["precision"] == "float32"


def test_stop_resume_and_a_fast_rerun_while_training(tiny_config, data, runs_dir, tmp_path):
    # The page's own time, measured inside the script thread by a wrapper: at.run() wall time also
    # holds AppTest's tree parsing and, on a busy 2-core machine, time spent waiting for a CPU or
    # for the GIL the training thread holds, which says nothing about the page.
    wrapper = tmp_path / "timed_page.py"
    wrapper.write_text(
        "import runpy, time\nimport streamlit as st\n"
        "w, c = time.perf_counter(), time.thread_time()\n"
        f"try:\n    runpy.run_path({str(PAGE)!r}, run_name='__main__')\n"
        "finally:\n    st.session_state['_page_s'] = (time.perf_counter() - w, time.thread_time() - c)\n")
    at = page(tiny_config, data, script=wrapper, train_epochs=10_000)
    start(at)
    name = selected(at)
    wait_for(at, alive)
    cpu, wall = [], []
    for _ in range(7):
        t = time.perf_counter()
        at.run()
        wall.append(time.perf_counter() - t)
        cpu.append(at.session_state["_page_s"][1])
        assert alive(at)
    assert statistics.median(cpu) < 0.2, f"page CPU time per rerun {cpu}, at.run() wall time {wall}"
    assert statistics.median(wall) < 2.0, f"at.run() wall time {wall}"

    at.button(key="train_stop").click().run()
    # The job's own status and status.json agree a moment apart: wait for both (the page polls again).
    wait_for(at, lambda a: table(a).loc[name, "status"] == "stopped" and any("stopped" in w.value for w in a.warning))
    assert run_status.read_status(runs_dir / name)["status"] == "stopped"
    done = int(table(at).loc[name, "epochs"])

    if done >= 1:  # a total already reached is refused in one line, the run left as it was
        at.number_input(key=f"train_resume_to_{name}").set_value(done)
        at.button(key="train_resume").click().run()
        assert f"Resume: enter a total above the {done} epochs done." in errors(at) and not alive(at)
        assert run_status.read_status(runs_dir / name)["status"] == "stopped"
        assert len(runs.read_history(runs_dir / name)) == done
    at.number_input(key=f"train_resume_to_{name}").set_value(done + 1)
    at.button(key="train_resume").click().run()
    assert not at.exception and not at.error
    wait_for(at, finished)
    assert len(runs.read_history(runs_dir / name)) == done + 1
    assert table(at).loc[name, "epochs"] == done + 1


def test_resume_finds_moved_data_at_the_place_typed_and_the_run_records_it(tiny_config, data, runs_dir, tmp_path):
    """QA: a run whose data had moved could only be resumed from the command line."""
    at = start(page(tiny_config, data))
    name = selected(at)
    wait_for(at, finished)
    assert not [t for t in at.text_input if t.key == f"train_resume_data_{name}"]  # the data is where it was
    moved = data.rename(tmp_path / "moved")
    at.run()
    # QA sweep 10: the page now says at once that the data is gone, and Resume waits for a usable place
    assert any(f"{data.resolve()}, which is no longer there" in w.value for w in at.warning)
    assert at.button(key="train_resume").disabled
    at.text_input(key=f"train_resume_data_{name}").input(str(tmp_path / "nowhere")).run()
    assert "nowhere" in errors(at) and at.button(key="train_resume").disabled  # checked as typed
    wafers = ROOT / "sample_data" / "wafer_maps_26x26.npz"  # QA sweep 6: the other kind got advice on channels
    at.text_input(key=f"train_resume_data_{name}").input(str(wafers)).run()
    assert f"{wafers}: run {name} was trained on images, these are wafer maps; resume needs the same data" in errors(at)
    assert at.button(key="train_resume").disabled
    few = write_pngs(tmp_path / "few", n=5)  # QA sweep 7: "resume NAME: run NAME: was trained on ..."
    at.text_input(key=f"train_resume_data_{name}").input(str(few)).run()
    # QA sweep 11: counted as typed (it was refused only on Resume's click), Resume stays off
    assert f"{few}: run {name} was trained on 12 images, this data holds 5 it would train on" in errors(at)
    assert at.button(key="train_resume").disabled
    at.number_input(key=f"train_resume_to_{name}").set_value(2)
    at.text_input(key=f"train_resume_data_{name}").input(f' "{moved}" ').run()  # as pasted (QA sweep 17)
    assert not at.error and any(c.value.startswith("✅") and "number of images" in c.value for c in at.caption)
    at.button(key="train_resume").click().run()
    assert not at.exception and not at.error, errors(at)
    wait_for(at, lambda a: finished(a) and len(runs.read_history(runs_dir / name)) == 2)
    info = runs.read_train(runs_dir / name)
    assert info["data"]["path"] == str(moved.resolve()) and info["resumed"][-1]["data_moved_from"] == str(data.resolve())
    assert not [t for t in at.text_input if t.key == f"train_resume_data_{name}"]  # found again: no box


def test_a_new_session_reattaches_to_the_running_job(tiny_config, data, runs_dir):
    first = start(page(tiny_config, data, train_epochs=10_000))
    name = selected(first)
    wait_for(first, alive)
    # A browser refresh: a new session that only has the URL.
    second = AppTest.from_file(str(PAGE), default_timeout=TIMEOUT)
    second.query_params["run"] = name
    second.run()
    assert not second.exception
    assert selected(second) == name and alive(second)
    assert any(name in i.value for i in second.info)  # "Training now: ..."
    second.button(key="train_stop").click().run()
    wait_for(first, lambda a: table(a).loc[name, "status"] == "stopped")


def test_cut_into_tiles_validates_on_whole_photos(tiny_config, runs_dir, tmp_path):
    """QA sweep 18: a tiled run drew its validation tiles from its training photos, overlapping their tiles."""
    photos = write_pngs(tmp_path / "photos", n=10, size=64)  # 4 tiles of 32x32 each
    at = start(page(tiny_config, photos, train_tile=True))
    wait_for(at, finished)
    data = runs.read_train(runs_dir / selected(at))["data"]
    assert data["tile"] is True and data["count"] == 40 and len(data["val"]) == 4  # one photo's 4 tiles
    assert data["val"] == list(range(data["val"][0], data["val"][0] + 4)) and data["val"][0] % 4 == 0


def test_the_loaders_notes_stay_with_the_run_after_a_reload(tiny_config, data, runs_dir):
    """QA sweep 17: "check that it belongs to the set: tiny8.png" and the other loader notes went with the
    session; a reload showed the run without them. train.json keeps them (a caution stays a warning)."""
    (data / "text.png").write_text("not an image")
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(data / "tiny.png")  # enlarged 8x: a caution-worthy note
    first = start(page(tiny_config, data))
    name = selected(first)
    wait_for(first, finished)
    second = AppTest.from_file(str(PAGE), default_timeout=TIMEOUT)  # a browser refresh: only the URL
    second.query_params["run"] = name
    second.run()
    assert not second.exception and selected(second) == name
    assert "ℹ️ Skipped text.png: not a readable image (no image format Pillow knows)." in captions(second)
    assert any("enlarged more than twice" in c.value and "tiny.png" in c.value for c in second.caption)


def test_runs_table_shows_every_status_and_old_runs_show_their_curves(tiny_config, data, runs_dir):
    for name, status in (("a-done", "finished"), ("b-failed", "failed"), ("c-stopped", "stopped")):
        d = runs.new_run(runs_dir, name)
        runs.write_json_atomic(d / runs.TRAIN_FILE, {"settings": {"epochs": 3}, "input_shape": [1, 32, 32],
                                                     "created": f"2024-01-0{len(name)}T00:00:00"})
        for e in (1, 2, 3):
            runs.append_history(d, {"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.5 / e})
        run_status.write_status(d, status, f"{status} here")
        write_tensors(d / runs.LAST_WEIGHTS, {"w": torch.zeros(1)})  # a save to resume from (a whole file:
        # the page checks its header, not its weights)
        if status == "finished":  # its model, whose files a finished run must have (else: damaged)
            (d / "config.json").write_text(json.dumps(tiny_config))
            write_tensors(d / "model.safetensors", {"w": torch.zeros(1)})
    d = runs.new_run(runs_dir, "d-dead")  # "running", but its process is gone
    runs.write_json_atomic(d / runs.TRAIN_FILE, {"settings": {}, "input_shape": [1, 32, 32], "created": "2024"})
    runs.write_json_atomic(d / runs.STATUS_FILE, {"status": "running", "pid": 2**22 + 12345,
                                                  "host": __import__("socket").gethostname(), "heartbeat": time.time()})
    at = page(tiny_config, data)
    statuses = table(at)["status"].to_dict()
    assert statuses == {"a-done": "finished", "b-failed": "failed", "c-stopped": "stopped", "d-dead": "interrupted"}
    at.selectbox(key="train_run_pick").select("a-done").run()
    assert at.query_params["run"] == "a-done"
    traces = {t["name"]: t for t in chart(at)["data"]}
    assert traces["validation"]["y"] == pytest.approx([1.5, 0.75, 0.5])
    assert any("Inspect" in i.value for i in at.info)
    at.selectbox(key="train_run_pick").select("b-failed").run()
    assert "**failed** · here" in errors(at)  # status.json says "failed here": the word once
    at.selectbox(key="train_run_pick").select("c-stopped").run()
    # Stopped runs can be resumed, but this one names no data: the page asks for it, Resume waits for it
    assert any("data its train.json does not name" in w.value for w in at.warning)
    assert at.button(key="train_resume").disabled and not at.exception
    assert at.text_input(key="train_resume_data_c-stopped").label == "Data: its new place"
    assert not any("no loss curve" in c.value for c in at.caption)
    at.selectbox(key="train_run_pick").select("d-dead").run()  # stopped before its first epoch ended
    assert not at.get("plotly_chart") and any("No epoch has finished" in c.value for c in at.caption)


def test_bad_data_path_is_one_line_error_and_creates_nothing(tiny_config, tmp_path, runs_dir):
    missing = tmp_path / "nowhere"
    at = page(tiny_config, missing)
    assert str(missing) in errors(at) and "\n" not in errors(at) and len(at.error) == 1
    assert next(b for b in at.button if b.label == "Start training").disabled  # nothing to start from
    assert not runs_dir.exists() or not any(runs_dir.iterdir())
    empty = tmp_path / "empty"
    empty.mkdir()
    at.text_input(key="train_path").input(str(empty)).run()
    assert "no images" in errors(at)


def test_bad_settings_are_named(tiny_config, data, runs_dir):
    at = start(page(tiny_config, data, train_patch_min=50, train_patch_max=10))
    assert "patch_size" in errors(at) and not at.exception
    assert not runs_dir.exists() or not any(runs_dir.iterdir())


def test_a_noise_pattern_folder_is_checked_as_typed(tiny_config, data, runs_dir, tmp_path):
    """QA sweep 12: a missing pattern folder was refused only after Start."""
    at = page(tiny_config, data, train_noise_patches=2, train_patch_dir=str(tmp_path / "nowhere"))
    start_button = next(b for b in at.button if b.label == "Start training")
    assert errors(at) == f"Noise pattern folder: {tmp_path / 'nowhere'}: pattern folder not found"
    assert start_button.disabled and not at.exception
    at.number_input(key="train_noise_patches").set_value(0).run()  # no patches: the folder is not used
    assert not at.error and not next(b for b in at.button if b.label == "Start training").disabled


def test_no_data_leaves_start_disabled(tiny_config, data, runs_dir):
    """QA sweep 9: with no data (an empty path, or an upload refused) Start stayed on and said so only after."""
    at = page(tiny_config, data, train_path="")
    assert next(b for b in at.button if b.label == "Start training").disabled
    assert not runs_dir.exists() or not any(runs_dir.iterdir())


def test_an_existing_run_name_is_never_overwritten(tiny_config, data, runs_dir):
    at = start(page(tiny_config, data, train_name="mine"))
    assert at.text_input(key="train_name").value == ""  # used: cleared for the next run
    wait_for(at, finished)
    before = (runs_dir / "mine" / "history.jsonl").read_text()
    at.text_input(key="train_name").input("mine").run()  # typed again on purpose
    # QA sweep 7: said as typed, with Start disabled, not only after Start
    assert "'mine'" in errors(at) and "already exists" in errors(at)
    assert next(b for b in at.button if b.label == "Start training").disabled
    assert (runs_dir / "mine" / "history.jsonl").read_text() == before


def test_unwritable_runs_folder_is_a_clear_error(tiny_config, data, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("UDD_RUNS_DIR", str(blocker / "runs"))
    at = start(page(tiny_config, data))
    assert "cannot create" in errors(at) and str(blocker) in errors(at)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA to make the job fail")
@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_an_unavailable_device_is_refused_before_a_run_exists(tiny_config, data, runs_dir):
    at = start(page(tiny_config, data, train_device="cuda"))
    assert "CUDA is not available" in errors(at) and len(at.error) == 1
    assert not runs_dir.exists() or not [p for p in runs_dir.iterdir() if p.name != "uploads"]


def test_a_failing_job_shows_the_error_and_where(tiny_config, data, runs_dir, monkeypatch):
    import udd_core.train

    def broken_loop(*args, **kwargs):
        raise RuntimeError("the loop broke")

    monkeypatch.setattr(udd_core.train, "_train", broken_loop)  # inside train(), which records the failure
    at = start(page(tiny_config, data))
    wait_for(at, lambda a: "Training failed" in errors(a))
    assert "RuntimeError: the loop broke" in errors(at)
    assert "test_page_train.py:" in errors(at) and "in broken_loop" in errors(at)  # where: file:line in func
    assert "Traceback" not in errors(at)
    assert table(at).loc[selected(at), "status"] == "failed"


def test_upload_saves_a_zip_and_refuses_a_hostile_one(tiny_config, data, runs_dir, tmp_path):
    at = page(tiny_config, data, train_data_mode="Upload")
    pngs = {f"set/train/good/{p.name}": p.read_bytes() for p in sorted(data.iterdir())[:5]}
    at.file_uploader(key="train_upload").set_value([("good.zip", zip_bytes(pngs), "application/zip")]).run()
    assert not at.exception and not at.error
    saved = Path(at.session_state["train_upload_dir"])
    assert saved.parent == runs_dir / "uploads" and len(list(saved.rglob("*.png"))) == 5
    assert any("5 images" in c.value for c in at.caption) and not at.warning

    broken = {**pngs, "set/train/good/bad.png": b"no image"}  # counted as 6 images before
    at.file_uploader(key="train_upload").set_value([("more.zip", zip_bytes(broken), "application/zip")]).run()
    assert not at.exception and not at.error
    assert [w.value for w in at.warning] == ["left out 1 file that is not a readable image: set/train/good/bad.png"]
    assert any("5 images" in c.value for c in at.caption)
    second = Path(at.session_state["train_upload_dir"])
    assert second.is_dir() and not saved.exists()  # the replaced upload, which no run used (QA sweep 11: piled up)

    evil = zip_bytes({"ok.png": pngs[next(iter(pngs))], "../../evil.png": b"x"})
    at.file_uploader(key="train_upload").set_value([("evil.zip", evil, "application/zip")]).run()
    assert not at.exception
    assert "'..'" in errors(at) and "\n" not in errors(at)
    assert "train_upload_dir" not in at.session_state
    assert not list(tmp_path.rglob("evil.png"))
    assert list((runs_dir / "uploads").iterdir()) == []  # nothing half-written, and the replaced one gone


def test_config_file_and_preset_modes(tiny_config, data, runs_dir):
    at = page(tiny_config, data, train_model_mode="Config file")
    assert not at.error  # no config uploaded yet: Start waits for one
    assert next(b for b in at.button if b.label == "Start training").disabled
    at.file_uploader(key="train_config_file").set_value(("AE.json", json.dumps(tiny_config).encode(),
                                                         "application/json"))
    at.number_input(key="train_h").set_value(32)
    at.number_input(key="train_w").set_value(32).run()
    assert not at.error and not next(b for b in at.button if b.label == "Start training").disabled
    at.number_input(key="train_h").set_value(33).run()  # the tiny design does not mirror at 33 px
    assert "model:" in errors(at) and "latent_opad" in errors(at)
    assert "**Design** page" in errors(at)  # a padding has no box here: the page says where it is set
    at.radio(key="train_model_mode").set_value("Preset").run()
    at.selectbox(key="train_model_preset").select("wafer-26").run()
    assert (at.number_input(key="train_h").value, at.number_input(key="train_w").value) == (26, 26)
    from udd_core.image_shapes import MAX_SIDE

    # the size boxes take what `udd train --size` takes (QA: 8192 here, 100,000 on the command line)
    assert at.number_input(key="train_h").max == at.number_input(key="train_w").max == MAX_SIDE
    assert any("3x26x26" in c.value for c in at.caption)  # the estimate follows the preset's shape
    from udd_core.settings import training_presets

    # and the training preset wafer-26 was made with: wafer's epochs, schedule and weight decay
    assert at.selectbox(key="train_preset").value == "wafer"
    assert at.number_input(key="train_epochs").value == training_presets()["wafer"].epochs
    assert at.number_input(key="train_lr_step").value == training_presets()["wafer"].lr_step


def test_training_preset_fills_the_settings(tiny_config, data, runs_dir):
    from udd_core.settings import training_presets

    at = page(tiny_config, data)
    at.selectbox(key="train_preset").select("wafer").run()
    wafer = training_presets()["wafer"]
    assert at.number_input(key="train_epochs").value == wafer.epochs
    assert at.number_input(key="train_lr_step").value == wafer.lr_step
    assert at.number_input(key="train_weight_decay").value == pytest.approx(wafer.weight_decay)


def test_app_navigation_lists_train_after_design():
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT).run()
    assert not at.exception
    at.switch_page("pages/train.py").run()
    assert not at.exception
    assert at.title[0].value == "Train"
    assert "Design page" in at.radio(key="train_model_mode").options  # the design from the first page is offered


def wait_finished(run_dir: Path, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while run_status.read_status(run_dir)["status"] != "finished" and time.monotonic() < end:
        time.sleep(0.2)
    assert run_status.read_status(run_dir)["status"] == "finished"


def test_method_choice_fits_a_run_without_a_config(tiny_config, data, runs_dir, monkeypatch):
    from toy_detector import NAME, register

    from udd_core import methods

    register(monkeypatch)
    monkeypatch.setattr(methods, "METHODS", (*methods.METHODS, NAME))
    at = page(tiny_config, data, train_method=NAME, train_name="toy")
    assert at.radio(key="train_model_mode").disabled  # no autoencoder config for this method
    at.number_input(key="train_h").set_value(32)
    at.number_input(key="train_w").set_value(32)
    at.text_input(key="train_options").set_value('{"depth": 3}').run()  # refused before any data loads
    assert "method options: depth: not a toy-mean option" in errors(at) and not (runs_dir / "toy").exists()
    assert next(b for b in at.button if b.label == "Start training").disabled
    at.text_input(key="train_options").set_value("[1]").run()
    assert "method options: give a JSON object" in errors(at)
    assert next(b for b in at.button if b.label == "Start training").disabled
    at.text_input(key="train_options").set_value('{"smooth": 2}').run()
    start(at)
    wait_finished(runs_dir / "toy")
    info = json.loads((runs_dir / "toy" / "train.json").read_text())
    assert info["method"] == NAME and info["options"] == {"smooth": 2} and info["input_shape"] == [3, 32, 32]
    at.run()
    assert not at.exception and not [b for b in at.button if b.label == "Resume"]  # a fit is not resumable
    row = table(at).loc["toy"]  # a one-pass fit lists its method, and blank epochs and loss, not 0 and None
    assert row["method"] == NAME and row.isna()["epochs"] and row.isna()["best loss"]
    assert at.dataframe[0].proto.placeholder == "—"  # shown as a dash, not Streamlit's default "None"


def test_the_estimate_adds_the_memory_banks_backbone_features(tiny_config, data, runs_dir):
    at = page(tiny_config, data, train_method="memory-bank")
    at.number_input(key="train_h").set_value(64)
    at.number_input(key="train_w").set_value(64).run()
    from udd_core.backbone import feature_bytes_per_image
    from udd_core.methods.bank_options import defaults_for

    want = 12 * feature_bytes_per_image((3, 64, 64), defaults_for((3, 64, 64))["layers"]) / 2**20  # 12 images
    assert f"+ {want:.3g} MB of backbone features" in " ".join(c.value for c in at.caption)


def test_a_size_whose_images_cannot_fit_in_memory_keeps_start_off(tiny_config, data, runs_dir, monkeypatch):
    """The Train page refuses what `udd train` refuses: 12 images of 1x32x32 and a training step on a batch of
    them (QA sweep 10: the step's activations were not counted, and 4096x4096 got the process killed), with
    one byte too few available."""
    from udd_core import sources
    from udd_core.image_shapes import batch_bytes

    batch = 4  # as `page` sets it
    step = batch_bytes(tiny_config, (1, 32, 32), "autoencoder", batch)
    assert step > 12 * 32 * 32
    monkeypatch.setattr(sources, "available_bytes", lambda: 12 * 32 * 32 + step - 1)
    at = page(tiny_config, data)
    assert f"size 32x32: the 12 images and a training step on {batch} of them would take" in errors(at)
    assert "choose a smaller size or batch size" in errors(at)
    assert next(b for b in at.button if b.label == "Start training").disabled
    assert not runs_dir.exists() or not any(runs_dir.iterdir())
    monkeypatch.setattr(sources, "available_bytes", lambda: 12 * 32 * 32 + step)  # exactly enough
    at.run()
    assert not at.error and not next(b for b in at.button if b.label == "Start training").disabled
    assert f"MB for a training step on {batch}" in captions(at)  # the estimate counts it


def test_wafer_maps_with_a_one_channel_model_are_refused_before_start(tiny_config, tmp_path, runs_dir):
    """Wafer maps load as 3 one-hot channels: a 1-channel design is named at the data step, Start stays off."""
    from test_generation import write_wafers

    wafers = write_wafers(tmp_path / "w.npz")
    at = page(tiny_config, wafers)  # the tiny design takes 1 channel
    assert "wafer maps need 3 input channels (one-hot), the model takes C=1" in errors(at)
    assert "\n" not in errors(at) and next(b for b in at.button if b.label == "Start training").disabled
    assert not runs_dir.exists() or not any(runs_dir.iterdir())


def test_a_method_brings_its_own_size_and_only_the_settings_that_apply(tiny_config, data, runs_dir):
    """The memory bank opens at 256 px (its defaults' size), not at the pixel preset's 128; the feature AE
    hides the painted-noise settings, which cannot apply to cached features."""
    at = page(tiny_config, data, train_model_mode="Preset")
    at.selectbox(key="train_model_preset").set_value("gray-tile-128").run()
    assert at.number_input(key="train_h").value == 128
    assert any(n.label == "Noise patches" for n in at.number_input)
    at.selectbox(key="train_method").set_value("memory-bank").run()
    assert (at.number_input(key="train_h").value, at.number_input(key="train_w").value) == (256, 256)
    # QA sweep 12: the typed 128 was replaced without a word
    said = [c.value for c in at.caption if c.value.startswith("ℹ️ Height and Width set to")]
    assert said == ["ℹ️ Height and Width set to 256x256 for memory-bank, the size its defaults suit (they were "
                    "128x128: type them again to keep those)."]
    at.number_input(key="train_h").set_value(128).run()
    assert at.number_input(key="train_h").value == 128
    assert not any("Height and Width set" in c.value for c in at.caption)  # said once, after the switch
    at.selectbox(key="train_method").set_value("feature-ae").run()
    assert not at.exception and at.selectbox(key="train_model_preset").value == "feature-ae"
    assert not any(n.label == "Noise patches" for n in at.number_input)
    assert not any(t.label.startswith("Noise pattern folder") for t in at.text_input)


@pytest.mark.parametrize("method", ["dsvdd", "autoencoder"])
def test_a_pixel_method_after_the_feature_ae_goes_back_to_a_pixel_design(tiny_config, data, runs_dir, method):
    """The feature-ae preset reconstructs backbone features: a pixel method picked after it switches back to
    the pixel preset and the default training settings, instead of opening on a channel mismatch."""
    at = page(tiny_config, data, train_model_mode="Preset")
    at.selectbox(key="train_method").set_value("feature-ae").run()
    assert at.selectbox(key="train_preset").value == "feature-ae" and at.number_input(key="train_epochs").value == 96
    at.selectbox(key="train_method").set_value(method).run()
    assert not at.exception and not at.error
    assert at.selectbox(key="train_model_preset").value == "gray-tile-128"
    assert at.selectbox(key="train_preset").value == "reference" and at.number_input(key="train_epochs").value == 50
    assert at.number_input(key="train_h").value == 128


def test_deep_svdd_with_weight_decay_is_warned_before_start(tiny_config, data, runs_dir):
    """QA sweep 15: the wafer preset's weight decay collapsed Deep SVDD's encoder, said only after pretraining."""
    at = page(tiny_config, data)
    at.selectbox(key="train_method").set_value("dsvdd").run()
    at.number_input(key="train_weight_decay").set_value(1e-3).run()
    assert not at.exception and any(w.value.startswith("Weight decay 0.001 can shrink Deep SVDD's bias-free "
                                                       "encoder to zero codes") for w in at.warning)
    at.number_input(key="train_weight_decay").set_value(0.0).run()
    assert not any("can shrink" in w.value for w in at.warning)
    at.selectbox(key="train_method").set_value("autoencoder").run()
    at.number_input(key="train_weight_decay").set_value(1e-3).run()
    assert not any("can shrink" in w.value for w in at.warning)  # a plain autoencoder has biases


def test_the_runs_table_follows_a_run_that_another_process_trains(tmp_path):
    from pages.train_runs import table_polls
    from udd_core.jobs import JobManager

    run = runs.new_run(tmp_path, "cli-run")
    run_status.write_status(run, "finished", "finished 3 epochs")
    assert not table_polls(JobManager(), runs.list_runs(tmp_path))  # nothing trains: no polling
    run_status.write_status(run, "running", "epoch 2/40 done")  # a live udd train elsewhere (this pid: alive)
    assert table_polls(JobManager(), runs.list_runs(tmp_path))


def test_upload_takes_a_wafer_file(tiny_config, data, runs_dir, tmp_path):
    import io

    at = page(tiny_config, data, train_data_mode="Upload")
    uploader = at.file_uploader(key="train_upload")
    assert {".npz", ".npy", ".zip", ".png"} <= set(uploader.proto.type)  # offered by the browser's file dialog
    buf = io.BytesIO()
    np.savez(buf, maps=np.ones((7, 26, 26), np.uint8), labels=np.array(["none"] * 7))
    uploader.set_value([("maps.npz", buf.getvalue(), "application/octet-stream")]).run()
    assert not at.exception and "wafer maps need 3 input channels" in errors(at)  # the 1-channel Design model
    at.radio(key="train_model_mode").set_value("Preset").run()
    at.selectbox(key="train_model_preset").select("wafer-26").run()
    assert not at.exception and not at.error, errors(at)
    saved = Path(at.session_state["train_upload_dir"])
    from udd_core.data import data_kind

    assert data_kind(saved) == "wafer" and (saved / "maps.npz").is_file()
    assert any("7 maps" in c.value or "7 images" in c.value for c in at.caption), [c.value for c in at.caption]


def test_a_deep_svdd_run_shows_both_of_its_loss_curves_and_resumes_its_one_class_phase(tiny_config, data, runs_dir):
    from udd_core.data import load_dataset
    from udd_core.jobs import TrainJob
    from udd_core.settings import TrainSettings

    ds = load_dataset(data, (1, 32, 32), split="train")
    s = TrainSettings(epochs=2, batch_size=4, val_split=0.25, device="cpu", n_probe=0)
    job = TrainJob.create(runs_dir / "svdd", tiny_config, (1, 32, 32), ds.images, s,
                          source={"path": str(data), "kind": "folder", "tile": False}, method="dsvdd",
                          options={"svdd_epochs": 3}).start()
    assert job.join(60) and job.snapshot().status == "finished"
    at = page(tiny_config, data, train_selected="svdd")  # opened later, from the files
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    assert [len(c["data"][0]["x"]) for c in charts] == [2, 3]  # 2 pretraining epochs, then 3 Deep SVDD epochs
    assert [c.value for c in at.caption if c.value.startswith(("Pretraining:", "Deep SVDD:"))] == [
        "Pretraining: the autoencoder's reconstruction loss",
        "Deep SVDD: the mean squared distance of the codes to the centre c"]
    assert at.number_input(key="train_resume_to_svdd").label == "Resume up to Deep SVDD epoch"
    assert at.number_input(key="train_resume_to_svdd").value == 6  # the 3 planned are done: twice as many


def test_a_config_file_too_large_for_a_config_is_refused_in_words(tiny_config, data, runs_dir):
    """The uploader lets files up to CONFIG_UPLOAD_MB through, so the parser's line is what the user reads."""
    from udd_core.config import CONFIG_UPLOAD_MB, MAX_TEXT

    assert CONFIG_UPLOAD_MB * 2**20 > MAX_TEXT
    at = page(tiny_config, data, train_model_mode="Config file")
    at.file_uploader(key="train_config_file").set_value(("weights.json", b" " * (MAX_TEXT + 1), "application/json"))
    at.run()
    assert not at.exception
    assert f"more than the {MAX_TEXT} allowed" in errors(at)
    assert next(b for b in at.button if b.label == "Start training").disabled


def test_the_run_picker_keeps_a_run_whose_status_changed_under_it(tiny_config, data, runs_dir):
    """QA: a run finished while the page showed it; the browser sent the picker's old label
    'NAME (running)' back, and `?run=` named that label, a run that does not exist."""
    from inspect_fixtures import make_mvtec, make_run, send_label

    make_run(runs_dir / "tiny", make_mvtec(runs_dir.parent / "parts"))
    status = runs_dir / "tiny" / "status.json"
    status.write_text(json.dumps({"status": "stopped", "message": "stopped after 1 of 1 epochs"}))
    at = page(tiny_config, data)
    stale = at.selectbox(key="train_run_pick").format_func("tiny")
    assert stale == "tiny (stopped)"
    status.write_text(json.dumps({"status": "finished", "message": "done"}))
    at.run()
    send_label(at, at.selectbox(key="train_run_pick"), stale)
    at.run()
    assert not at.exception and not at.warning
    assert selected(at) == "tiny" and at.query_params["run"] == "tiny"


def test_a_cross_entropy_loss_on_a_model_without_probabilities_is_said_before_start(tiny_config, data, runs_dir):
    """QA sweep 7: wafer-26 with the wafer-generation training preset (loss ce) was refused only after Start."""
    wafers = ROOT / "sample_data" / "wafer_maps_26x26.npz"
    at = page(tiny_config, data, train_path=str(wafers))
    at.radio(key="train_model_mode").set_value("Preset").run()
    at.selectbox(key="train_model_preset").set_value("wafer-26").run()
    assert not at.error
    at.selectbox(key="train_preset").set_value("wafer-generation").run()
    assert not at.exception and errors(at).startswith("loss: 'ce' needs a model that outputs probabilities")
    assert next(b for b in at.button if b.label == "Start training").disabled
    at.selectbox(key="train_model_preset").set_value("wafer-26-gen").run()  # the model the message names
    assert not at.error and not next(b for b in at.button if b.label == "Start training").disabled


@pytest.mark.parametrize("name", ["../escape", "bad name!", "uploads"])
def test_a_run_name_the_runs_folder_refuses_is_said_before_start(tiny_config, data, runs_dir, name):
    at = page(tiny_config, data, train_name=name)
    assert errors(at).startswith(f"run name {name!r}: ") and not at.exception
    assert next(b for b in at.button if b.label == "Start training").disabled
    assert not runs_dir.exists() or not any(runs_dir.iterdir())


def test_a_finished_run_with_a_damaged_file_is_not_sent_to_inspect(tiny_config, data, runs_dir):
    """QA sweep 8: a finished run with a truncated model (or a config that no longer parses) was shown as
    "finished · Done: open the Inspect page", where it could only fail."""
    at = start(page(tiny_config, data, train_name="dmg"))
    wait_for(at, finished)
    assert any("**Inspect** page" in i.value for i in at.info)
    model = runs_dir / "dmg" / "model.safetensors"
    model.write_bytes(model.read_bytes()[:100])  # cut short, as a full disk or a killed copy leaves it
    at.run()
    assert "This run's files are damaged:" in errors(at) and "model.safetensors: not a readable safetensors" in errors(at)
    assert not any("**Inspect** page" in i.value for i in at.info)
    assert not any(b.key == "train_open_next" for b in at.button)
    # QA sweep 11: a green "finished" above the red error; now a warning that says the files are damaged since
    assert not at.success and any(w.value.startswith("**finished**") and w.value.endswith(
        "; its files have been damaged since (see below)") for w in at.warning)  # QA sweep 12: "damaged since (below)"
    # QA sweep 10: the pickers and the runs table said "finished"; they say "damaged" (and why, in the table)
    assert at.selectbox(key="train_run_pick").format_func("dmg") == "dmg (damaged)"
    table = at.dataframe[-1].value
    row = table[table["name"] == "dmg"].iloc[0]
    assert row["status"] == "damaged" and row["message"].startswith("damaged: ") and "model.safetensors" in row["message"]
    assert any(b.label == "Resume" for b in at.button)  # Resume writes the model again from last.safetensors


def test_what_training_keeps_of_a_labelled_wafer_file_is_said_before_start(tiny_config, data, runs_dir, tmp_path):
    """QA sweep 20: the estimate counted a wafer file's defect maps, and that training leaves them out (or, for
    a file without labels, takes every map as normal) was said only after Start."""
    wafers = ROOT / "sample_data" / "wafer_maps_26x26.npz"
    counts = class_counts(training_labels(wafers))
    normal = sum(n for label, n in counts.items() if label in ("good", "none", "normal"))
    assert 0 < normal < sum(counts.values())
    at = page(tiny_config, data, train_path=str(wafers))
    at.radio(key="train_model_mode").set_value("Preset").run()
    at.selectbox(key="train_model_preset").set_value("wafer-26").run()
    assert not at.error and f"This run will be trained on the {normal} normal images" in captions(at)
    at.selectbox(key="train_on_mode").set_value("all").run()
    assert f"This run will be trained on all {sum(counts.values())} images, of them" in captions(at)
    bare = tmp_path / "maps.npy"
    np.save(bare, np.ones((5, 26, 26), dtype=np.uint8))
    at.text_input(key="train_path").input(str(bare)).run()
    assert not at.error and "5 maps of maps.npy have no labels: taken as normal" in captions(at)
    assert "This run will be" not in captions(at)  # every map kept, as "good"
