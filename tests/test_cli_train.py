"""`udd train` end to end on tiny generated data, in process and as a real interrupted subprocess."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from udd_core import runs
from udd_core import run_status
from udd_core.cli import interrupts_held, main
from udd_core.model import load_model


@pytest.fixture
def config_file(tmp_path, tiny_config) -> Path:
    p = tmp_path / "tiny.json"
    p.write_text(json.dumps(tiny_config))
    return p


def _train(config_file, image_folder, out, *extra):
    return main(["train", str(config_file), "--data", str(image_folder), "--out", str(out), "--size", "32,32",
                 "--batch-size", "4", "--device", "cpu", *extra])


def test_train_end_to_end_then_resume(tmp_path, config_file, image_folder, capsys):
    out = tmp_path / "run"
    assert _train(config_file, image_folder, out, "--epochs", "2", "--seed", "3", "--val-split", "0.25") == 0
    err = capsys.readouterr().err
    assert "finished 2 epochs" in err and "6 training and 2 validation images" in err
    assert "epoch 1/2  loss" in err and "epoch 2/2  loss" in err  # one line per epoch when not a terminal
    losses = [h["val_loss"] for h in runs.read_history(out)]
    assert (losses[1] > 0.95 * losses[0]) == ("still learning" not in err)  # 4% lower: not yet worth a note
    assert load_model(out).input_shape == (1, 32, 32)
    info = json.loads((out / "train.json").read_text())
    assert info["settings"]["seed"] == 3 and info["data"]["kind"] == "folder" and info["data"]["count"] == 8
    assert Path(info["data"]["path"]) == image_folder.resolve()
    assert len(runs.read_history(out)) == 2

    capsys.readouterr()
    assert main(["train", "--data", str(image_folder), "--out", str(out), "--epochs", "3", "--resume"]) == 0
    assert [h["epoch"] for h in runs.read_history(out)] == [1, 2, 3]
    err = capsys.readouterr().err
    assert "epoch 3/3  loss" in err and "epoch 1/3" not in err  # only the new epochs are printed
    losses = [h["val_loss"] for h in runs.read_history(out)]
    if losses[2] < 0.95 * losses[0] and losses[2] == min(losses):  # 7.5% lower over two epochs: still learning
        assert f"note: run run was still learning when its training ended: its validation loss fell " \
               f"{1 - losses[2] / losses[0]:.0%} over the last 2 epochs" in err and "--resume --epochs 6`" in err
    else:
        assert "still learning" not in err
    # without --data, resume reloads the data named in train.json; CONFIG is not needed (and refused: see below)
    assert main(["train", "--out", str(out), "--epochs", "4", "--resume"]) == 0
    assert len(runs.read_history(out)) == 4 and run_status.read_status(out)["status"] == "finished"


def test_a_bare_run_name_trains_into_the_runs_folder_and_a_folder_path_where_it_points(tmp_path, config_file,
                                                                                       image_folder, capsys, monkeypatch):
    monkeypatch.setenv("UDD_RUNS_DIR", str(tmp_path / "runs"))
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    assert _train(config_file, image_folder, "bare", "--epochs", "1") == 0  # as the app and udd score name runs
    assert (tmp_path / "runs" / "bare" / "model.safetensors").is_file() and not (tmp_path / "here" / "bare").exists()
    assert "note: the app lists" not in capsys.readouterr().err
    assert _train(config_file, image_folder, "./local", "--epochs", "1") == 0  # a folder part: that folder
    assert (tmp_path / "here" / "local" / "model.safetensors").is_file()
    assert "note: the app lists the runs in" in capsys.readouterr().err
    assert _train(config_file, image_folder, "bare", "--epochs", "1") == 2  # never over an existing run
    assert "already exists" in capsys.readouterr().err


def test_out_through_a_missing_folder_and_dot_dot_leaves_no_folder_behind(tmp_path, config_file, image_folder,
                                                                         capsys, monkeypatch):
    """QA sweep 15b: `--out a/../b` trained into b and left an empty folder a beside it."""
    assert _train(config_file, image_folder, tmp_path / "a" / ".." / "b", "--epochs", "1") == 0
    assert (tmp_path / "b" / "train.json").is_file() and not (tmp_path / "a").exists()
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert main(["train", "--out", "./b", "--resume", "--epochs", "2"]) == 0  # a resume names the run absolute too
    assert f"model in {(tmp_path / 'b').resolve()}\n" in capsys.readouterr().err


def test_a_run_outside_the_runs_folder_says_how_the_app_sees_it(tmp_path, config_file, image_folder, capsys,
                                                                 monkeypatch):
    monkeypatch.setenv("UDD_RUNS_DIR", str(tmp_path / "runs"))
    assert _train(config_file, image_folder, tmp_path / "runs" / "listed", "--epochs", "1") == 0
    assert "note: the app lists" not in capsys.readouterr().err  # already in the app's list
    assert _train(config_file, image_folder, tmp_path / "elsewhere" / "r", "--epochs", "1") == 0
    err = capsys.readouterr().err
    assert f"start it with UDD_RUNS_DIR={(tmp_path / 'elsewhere').resolve()}" in err
    monkeypatch.chdir(tmp_path / "elsewhere")  # "listed" is no folder here: the run of that name is resumed
    assert main(["train", "--out", "listed", "--resume", "--epochs", "2"]) == 0
    assert len(runs.read_history(tmp_path / "runs" / "listed")) == 2 and not (tmp_path / "elsewhere" / "listed").exists()
    capsys.readouterr()
    assert main(["train", "--out", "nothing", "--resume"]) == 2
    assert "--out nothing: no such run folder (nor a run of that name in" in capsys.readouterr().err


def test_resume_with_moved_data_records_its_new_place(tmp_path, config_file, image_folder, capsys):
    """QA: resuming with --data NEWPATH trained, but train.json kept the old place, so `udd score RUN` (and
    Inspect, Generate, the Train page's Resume) still looked there."""
    out = tmp_path / "run"
    assert _train(config_file, image_folder, out, "--epochs", "1") == 0
    moved = image_folder.rename(tmp_path / "moved")
    capsys.readouterr()
    assert main(["train", "--out", str(out), "--resume", "--epochs", "2"]) == 2  # the old place is gone
    # QA sweep 12: it said only "no such file or folder"; udd export and score named --data
    assert capsys.readouterr().err == (f"udd train: error: run run: its training data {tmp_path.resolve() / 'imgs'} "
                                       "is gone (moved or deleted); give its new place with --data PATH\n")
    assert main(["train", "--data", str(moved), "--out", str(out), "--epochs", "2", "--resume"]) == 0
    info = json.loads((out / "train.json").read_text())
    assert info["data"]["path"] == str(moved.resolve())
    assert info["resumed"][-1]["data_moved_from"] == str((tmp_path / "imgs").resolve())
    capsys.readouterr()
    assert main(["score", str(out), "--json"]) == 0  # no --data: the new place is the run's own now
    assert json.loads(capsys.readouterr().out)["settings"]["data"] == str(moved.resolve())
    assert main(["train", "--out", str(out), "--resume", "--epochs", "3"]) == 0  # and resume finds it too


def test_tile_cuts_large_photos_into_tiles_as_the_train_page_does(tmp_path, config_file, capsys):
    """QA sweep 17: only the app could make a tiled run; `udd score` then tiled its data, `udd train` could not."""
    big = tmp_path / "big"
    big.mkdir()
    for i in range(3):  # 64x64 photos for a 32x32 model: 4 tiles each
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (64, 64), dtype=np.uint8)).save(big / f"{i}.png")
    out = tmp_path / "tiled"
    assert _train(config_file, big, out, "--epochs", "1", "--tile") == 0
    err = capsys.readouterr().err
    # QA sweep 18: validation takes whole photos (4 tiles of one), not tiles of the training photos; counted as tiles
    assert "udd train: 8 training and 4 validation tiles;" in err and "validation tiles are drawn" not in err
    data = json.loads((out / "train.json").read_text())["data"]
    assert data["tile"] is True and data["count"] == 12 and data["val"] in ([0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11])
    moved = big.rename(tmp_path / "moved")  # a resume at the new place tiles them as before (same 12 images)
    assert main(["train", "--out", str(out), "--resume", "--epochs", "2", "--data", str(moved)]) == 0
    capsys.readouterr()
    assert main(["train", "--out", str(out), "--resume", "--epochs", "3", "--tile"]) == 2
    assert "--tile: a resumed run keeps the settings in its train.json" in capsys.readouterr().err
    wafers = tmp_path / "w.npy"
    np.save(wafers, np.ones((4, 26, 26), np.uint8))
    assert main(["train", "wafer-26", "--data", str(wafers), "--out", str(tmp_path / "w"), "--tile"]) == 2
    assert "--tile: " in capsys.readouterr().err and not (tmp_path / "w").exists()


def test_a_resume_with_data_checks_the_shape_its_weights_trained_at_before_loading(tmp_path, config_file,
                                                                                   image_folder, capsys, monkeypatch):
    """QA sweep 15b: `--resume --data` loaded the images at a typed train.json shape (99999x99999: killed by the
    kernel) before the weights' own shape was checked."""
    out = tmp_path / "run"
    assert _train(config_file, image_folder, out, "--epochs", "1") == 0
    info = json.loads((out / "train.json").read_text())
    (out / "train.json").write_text(json.dumps({**info, "input_shape": [1, 99999, 99999]}))

    def no_loading(*a, **k):
        raise AssertionError("the data was loaded")

    monkeypatch.setattr("udd_core.cli_train.load_dataset", no_loading)
    capsys.readouterr()
    assert main(["train", "--out", str(out), "--resume", "--epochs", "2", "--data", str(image_folder)]) == 2
    assert capsys.readouterr().err == ("udd train: error: run run: cannot resume: train.json: input_shape "
                                       "[1, 99999, 99999] is not the size its weights trained at (1x32x32)\n")


def test_resume_refuses_other_data_before_it_touches_the_run(tmp_path, config_file, image_folder, capsys):
    """QA: a resume checked only the image count, so wafer maps (or other photos) of the same number trained
    the run on, and replaced its best model."""
    out = tmp_path / "run"
    assert _train(config_file, image_folder, out, "--epochs", "1") == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    wafers = Path(__file__).resolve().parents[1] / "sample_data" / "wafer_maps_26x26.npz"
    others = tmp_path / "others"
    others.mkdir()
    rng = np.random.default_rng(7)
    for i in range(8):  # as many images as the run's, other content
        Image.fromarray((rng.random((32, 32)) * 255).astype(np.uint8), "L").save(others / f"{i}.png")
    for data, needle in ((wafers, f"{wafers}: run run was trained on images, these are wafer maps; resume needs "
                                  "the same data"),
                         (others, "run run: these are not the images it was trained on (the same number, other "
                                  "content); resume needs the same data")):
        capsys.readouterr()
        assert main(["train", "--data", str(data), "--out", str(out), "--epochs", "3", "--resume"]) == 2
        err = capsys.readouterr().err
        assert needle in err and err.count("\n") == 1
        assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before  # nothing changed


def test_a_refused_resume_changes_nothing(tmp_path, config_file, image_folder, capsys):
    out = tmp_path / "run"
    assert _train(config_file, image_folder, out, "--epochs", "1") == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    for extra, needle in ((["--lr", "0.5"], "--lr: a resumed run keeps the settings"),
                          (["--fixed-order"], "--fixed-order: a resumed run keeps"),
                          (["--device", "bogus"], "device: must be one of"),
                          (["--epochs", "1"], "already has 1 epoch;")):
        capsys.readouterr()
        epochs = [] if "--epochs" in extra else ["--epochs", "2"]
        assert main(["train", "--out", str(out), "--resume", *epochs, *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert needle in err and "\n" not in err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert main(["train", "--out", str(tmp_path / "new"), "--data", str(image_folder)]) == 2
    assert "CONFIG is required" in capsys.readouterr().err and not (tmp_path / "new").exists()
    assert main(["train", "gray-tile-128", "--out", "", "--data", str(image_folder)]) == 2
    assert "--out: the run folder name is empty" in capsys.readouterr().err  # not "--out .: already exists"


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_an_unavailable_device_leaves_no_run_folder(tmp_path, config_file, image_folder, capsys):
    assert _train(config_file, image_folder, tmp_path / "run", "--epochs", "1", "--device", "cuda") == 2
    assert "CUDA is not available" in capsys.readouterr().err and not (tmp_path / "run").exists()


def test_pattern_folder_is_stored_absolute(tmp_path, config_file, image_folder, monkeypatch):
    pats = tmp_path / "pats"
    pats.mkdir()
    Image.fromarray(np.zeros((6, 6), np.uint8)).save(pats / "dot.png")
    monkeypatch.chdir(tmp_path)
    assert _train(config_file, image_folder, tmp_path / "run", "--epochs", "1", "--noise-patches", "1",
                  "--patch-dir", "pats") == 0
    assert json.loads((tmp_path / "run" / "train.json").read_text())["settings"]["patch_dir"] == str(pats)


def test_fixed_order_is_saved_with_the_run(tmp_path, config_file, image_folder):
    assert _train(config_file, image_folder, tmp_path / "f", "--epochs", "1", "--fixed-order") == 0
    assert json.loads((tmp_path / "f" / "train.json").read_text())["settings"]["shuffle"] is False
    assert _train(config_file, image_folder, tmp_path / "s", "--epochs", "1") == 0
    assert json.loads((tmp_path / "s" / "train.json").read_text())["settings"]["shuffle"] is True


def test_existing_run_folder_is_refused(tmp_path, config_file, image_folder, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert _train(config_file, image_folder, out, "--epochs", "1") == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "already exists" in err and "--resume" in err
    assert (out / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize("args,needle", [
    (["--size", "30,30"], "at 30x30: "),  # the design does not mirror at 30x30
    (["--size", "30,30"], "--input 1,30,30 --fix OUT"),
    (["--epochs", "0"], "--epochs: "),
    (["--batch-size", "0"], "--batch-size: "),
    (["--val-split", "1"], "--val-split: "),
    (["--patch-size", "9"], "--patch-size"),
    (["--lr", "-1"], "--lr: "),
    (["--noise-patches", "1", "--patch-dir", "/no/such/patterns"], "--patch-dir: /no/such/patterns: pattern folder"),
    (["--method", "latent-knn", "--option", "k=0"], "error: --option k: "),  # as typed, not as the --k flag
    (["--method", "latent-knn", "--k", "0"], "error: --k: "),
    (["--method", "dsvdd", "--option", "svdd_epochs=" + "[" * 5000], "--option svdd_epochs: nested too deeply"),
])
def test_bad_options_are_one_line_errors(tmp_path, config_file, image_folder, capsys, args, needle):
    assert _train(config_file, image_folder, tmp_path / "run", *args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("udd train: error:") and needle in err and "\n" not in err


def test_a_preset_that_does_not_fit_the_size_gets_the_call_that_fixes_it(tmp_path, image_folder, capsys):
    """QA sweep 12: "feature-ae at 64x64: ... set latent_opad = [0, 0]" asked to edit a preset's field."""
    assert main(["train", "feature-ae", "--data", str(image_folder), "--out", str(tmp_path / "r"),
                 "--size", "64,64"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("udd train: error: feature-ae at 64x64: latent_up outputs") and err.count("\n") == 1
    call = err.split("`")[1]
    assert call.startswith("udd shapes feature-ae --input ") and call.endswith(",64,64 --fix OUT")
    fixed = tmp_path / "fits.json"
    assert main(call.removeprefix("udd ").replace("OUT", str(fixed)).split()) == 1  # the preset: 1, not mirrored
    shape = call.split()[4]
    assert main(["shapes", str(fixed), "--input", shape]) == 0 and not (tmp_path / "r").exists()  # the fix fits


def test_out_is_a_file_and_a_patch_dir_without_patches(tmp_path, config_file, image_folder, capsys):
    (tmp_path / "afile.txt").write_text("mine")
    assert _train(config_file, image_folder, tmp_path / "afile.txt", "--epochs", "1") == 2
    assert "exists and is not a folder" in capsys.readouterr().err  # the words of every output option
    assert (tmp_path / "afile.txt").read_text() == "mine"
    (tmp_path / "pats").mkdir()
    Image.fromarray(np.zeros((6, 6), np.uint8)).save(tmp_path / "pats" / "dot.png")
    assert _train(config_file, image_folder, tmp_path / "run", "--epochs", "1", "--patch-dir", str(tmp_path / "pats")) == 0
    assert "--patch-dir has no effect without noise patches" in capsys.readouterr().err


def test_unknown_config_and_missing_data(tmp_path, image_folder, capsys):
    assert main(["train", "no-such-preset", "--data", str(image_folder), "--out", str(tmp_path / "r")]) == 2
    assert "neither a config file nor a model preset" in capsys.readouterr().err
    assert main(["train", "gray-tile-128", "--data", str(tmp_path / "nothing"), "--out", str(tmp_path / "r")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_model_preset_name_as_config(tmp_path, image_folder, capsys):
    out = tmp_path / "run"
    code = main(["train", "gray-tile-128", "--data", str(image_folder), "--out", str(out), "--size", "64,64",
                 "--epochs", "1", "--batch-size", "8", "--device", "cpu", "--preset", "wafer"])
    assert code == 0, capsys.readouterr().err
    info = json.loads((out / "train.json").read_text())
    assert info["input_shape"] == [1, 64, 64] and info["settings"]["weight_decay"] == 1e-3
    assert "resized to 64x64" in capsys.readouterr().err


@pytest.mark.parametrize("sig,times", [(signal.SIGINT, 1), (signal.SIGTERM, 1), (signal.SIGTERM, 2), (signal.SIGINT, 2)],
                         ids=["SIGINT", "SIGTERM", "SIGTERM-twice", "SIGINT-twice"])
def test_interrupt_stops_the_run_cleanly(tmp_path, config_file, image_folder, sig, times):
    """QA: a second SIGTERM while the run wound down (GNU timeout signals the process and its group) aborted
    it (exit 134), leaving the run "running" with no calibration."""
    udd = Path(sys.executable).parent / "udd"
    if not udd.exists():
        pytest.skip("the udd console script is not installed next to this python")
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([str(udd), "train", str(config_file), "--data", str(image_folder), "--out", str(out),
                             "--size", "32,32", "--batch-size", "2", "--epochs", "100000", "--device", "cpu"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
                            # A shell's background job inherits SIGINT ignored, and Python then keeps it so
                            # (no KeyboardInterrupt): give the child the default, as a terminal would.
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        t0 = time.monotonic()
        while not runs.read_history(out):
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() - t0 < 90, "training never finished an epoch"
            time.sleep(0.1)
        t_int = time.monotonic()
        for _ in range(times):
            proc.send_signal(sig)
            time.sleep(0.05)
        _, err = proc.communicate(timeout=30)
        waited = time.monotonic() - t_int
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "stopped after" in err
    # QA: SIGTERM's output ended one epoch short of history.jsonl (the last epoch ended between two polls)
    last = runs.read_history(out)[-1]["epoch"]
    assert f"epoch {last}/100000 " in err, err
    assert waited < 10
    assert run_status.read_status(out)["status"] == "stopped"
    assert load_model(out).input_shape == (1, 32, 32)
    assert load_model(out, weights_name="last.safetensors") is not None


def test_ctrl_c_while_the_command_imports_is_held_until_the_import_ends():
    """QA sweep 12: Ctrl-C in the first half second of `udd train`, while torch imported, sometimes aborted the
    process from C++ (exit 134, 'terminate called ... KeyboardInterrupt') instead of exiting 130."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal
    try:
        finished = []
        with pytest.raises(KeyboardInterrupt):
            with interrupts_held():
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.05)  # the handler has run by now; an import here would not have been cut short
                finished.append(True)
        assert finished == [True]
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        with interrupts_held():  # no Ctrl-C: nothing is raised
            pass
    finally:
        signal.signal(signal.SIGINT, before)


def test_a_closed_output_pipe_stops_the_run_cleanly(tmp_path, config_file, image_folder):
    """`udd train ... 2>&1 | head -2`: the reader goes away while the run trains. The run used to be left
    "running" by a process that died on BrokenPipeError (exit 1, or an abort); now it stops as on Ctrl-C."""
    udd = Path(sys.executable).parent / "udd"
    if not udd.exists():
        pytest.skip("the udd console script is not installed next to this python")
    out = tmp_path / "run"
    proc = subprocess.Popen([str(udd), "train", str(config_file), "--data", str(image_folder), "--out", str(out),
                             "--size", "32,32", "--batch-size", "2", "--epochs", "100000", "--device", "cpu"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        t0 = time.monotonic()
        while not runs.read_history(out):  # training for real: the progress line is being written
            assert proc.poll() is None
            assert time.monotonic() - t0 < 90, "training never finished an epoch"
            time.sleep(0.1)
        proc.stderr.close()  # as `head` exits
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 141  # 128 + SIGPIPE, as a shell reports a process its pipe ended
    assert run_status.read_status(out)["status"] == "stopped"
    assert load_model(out, weights_name="last.safetensors") is not None


def test_resume_refuses_a_config_instead_of_ignoring_it(tmp_path, config_file, image_folder, capsys):
    """QA: `udd train CONFIG --resume` ignored CONFIG (another preset, a missing file) and exited 0."""
    out = tmp_path / "run"
    assert _train(config_file, image_folder, out, "--epochs", "1") == 0
    before = (out / "train.json").read_text(), (out / "status.json").read_text()
    capsys.readouterr()
    for config in (str(config_file), "wafer-26", str(tmp_path / "missing.json")):
        assert main(["train", config, "--out", str(out), "--resume", "--epochs", "2"]) == 2
        err = capsys.readouterr().err
        assert err == (f"udd train: error: CONFIG {config}: a resumed run keeps its own config (the run's "
                       "config.json); leave CONFIG out\n")
    assert ((out / "train.json").read_text(), (out / "status.json").read_text()) == before
    assert len(runs.read_history(out)) == 1


def _feature_config_file(tmp_path) -> Path:
    """A small design on lite0's s8 features (40 channels): mirrors for images of 64x64 (8x8 features)."""
    p = tmp_path / "feat.json"
    p.write_text(json.dumps({"block_ker": [3], "drop": [0.0], "block_size_in": [[40, 8, 8]],
                             "block_size_out": [[8, 8, 40]], "latent_size": 4, "latent_ker": 3, "latent_opad": 1,
                             "out_pad": [1], "input": {"kind": "features", "backbone": "lite0", "layers": ["s8"]}}))
    return p


@pytest.mark.parametrize("method", ["autoencoder", "dsvdd", "latent-knn"])
def test_a_pixel_method_is_refused_for_a_config_on_backbone_features(tmp_path, image_folder, capsys, method):
    """QA: the pixel AE's channel error sent the user to `udd shapes --fix`, which found nothing to fix."""
    cfg = _feature_config_file(tmp_path)
    assert _train(cfg, image_folder, tmp_path / "run", "--method", method, "--size", "64,64") == 2
    err = capsys.readouterr().err
    assert err == (f"udd train: error: --method {method}: {cfg} takes backbone features (its \"input\" field), "
                   "not pixels; use --method feature-ae (or leave --method out)\n")
    assert not (tmp_path / "run").exists()


def test_a_config_on_backbone_features_trains_as_feature_ae_without_method(tmp_path, image_folder, capsys):
    cfg = _feature_config_file(tmp_path)
    out = tmp_path / "run"
    assert _train(cfg, image_folder, out, "--size", "64,64", "--epochs", "1") == 0
    err = capsys.readouterr().err
    assert f"note: {cfg} takes backbone features (its \"input\" field): training it with --method feature-ae" in err
    assert "note: training preset feature-ae, the one the app pairs with --method feature-ae" in err
    info = json.loads((out / "train.json").read_text())
    assert info["method"] == "feature-ae" and info["settings"]["lr"] == 3e-3  # the feature-ae training preset
    assert info["settings"]["epochs"] == 1 and info["settings"]["batch_size"] == 4  # options given still win


def test_the_training_preset_follows_the_model_preset_and_method_as_in_the_app():
    """QA: `udd train wafer-26` trained with the reference settings; the Train page brings the wafer preset."""
    from udd_core.methods import detector_class
    from udd_core.presets import model_presets, paired_training_preset, preset_choice

    ae, fae, bank = (detector_class(m) for m in ("autoencoder", "feature-ae", "memory-bank"))
    for name, preset in model_presets().items():
        if preset.config.input is None:  # a pixel design: its own training preset, as picking it on the page
            assert paired_training_preset(name, ae) == preset_choice(name, True).get("preset") == preset.training
    assert paired_training_preset("wafer-26", ae) == "wafer" and paired_training_preset("gray-tile-128", ae) is None
    assert paired_training_preset(None, ae) is None and paired_training_preset("my.json", ae) is None  # a file
    for name in (None, "feature-ae", "wafer-26"):  # the method brings its own, whatever the design
        assert paired_training_preset(name, fae) == "feature-ae"
    assert paired_training_preset(None, bank) is None  # no training loop


def test_a_model_preset_trains_with_its_training_preset_unless_told_otherwise(tmp_path, capsys):
    data = Path(__file__).resolve().parents[1] / "sample_data" / "wafer_maps_26x26.npz"
    base = ["--data", str(data), "--epochs", "1", "--device", "cpu", "--precision", "float32"]
    assert main(["train", "wafer-26", "--out", str(tmp_path / "w"), "--lr", "0.002", *base]) == 0
    err = capsys.readouterr().err
    assert "note: training preset wafer, the one the app pairs with model preset wafer-26" in err
    s = json.loads((tmp_path / "w" / "train.json").read_text())["settings"]
    assert (s["weight_decay"], s["lr_step"], s["batch_size"]) == (1e-3, 40, 64)  # the wafer preset's
    assert (s["lr"], s["epochs"]) == (0.002, 1)  # the options given override it
    assert main(["train", "wafer-26", "--out", str(tmp_path / "r"), "--preset", "reference", *base]) == 0
    assert "note: training preset" not in capsys.readouterr().err  # chosen: nothing to say
    s = json.loads((tmp_path / "r" / "train.json").read_text())["settings"]
    assert (s["weight_decay"], s["batch_size"]) == (0.0, 16)


def test_weight_decay_is_an_option_and_deep_svdd_is_warned_of_it_before_it_starts(tmp_path, capsys):
    """QA sweep 15: dsvdd with the wafer preset's weight decay failed only after its pretraining, and its fix
    named no option a command-line user could give."""
    data = Path(__file__).resolve().parents[1] / "sample_data" / "wafer_maps_26x26.npz"
    base = ["--data", str(data), "--epochs", "1", "--device", "cpu", "--option", "svdd_epochs=1"]
    assert main(["train", "wafer-26", "--method", "dsvdd", "--out", str(tmp_path / "d"), *base]) in (0, 2)
    err = capsys.readouterr().err
    assert "warning: weight decay 0.001 can shrink Deep SVDD's bias-free encoder to zero codes" in err
    assert "use weight decay 0 (udd train --weight-decay 0; Weight decay on the Train page)" in err
    assert main(["train", "wafer-26", "--method", "dsvdd", "--out", str(tmp_path / "z"), "--weight-decay", "0",
                 *base]) == 0
    assert "can shrink" not in capsys.readouterr().err
    assert json.loads((tmp_path / "z" / "train.json").read_text())["settings"]["weight_decay"] == 0.0
    assert main(["train", "wafer-26", "--out", str(tmp_path / "n"), "--weight-decay", "-1", *base[:6]]) == 2
    assert "--weight-decay: " in capsys.readouterr().err  # the option as typed, not weight_decay
    assert main(["train", "--out", str(tmp_path / "z"), "--resume", "--epochs", "2", "--weight-decay", "0"]) == 2
    assert "--weight-decay" in capsys.readouterr().err  # a resumed run keeps its own


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs a folder no folder can be created in")
def test_an_unwritable_out_is_refused_before_the_data_loads(tmp_path, config_file, image_folder, capsys,
                                                              monkeypatch):
    """QA: `--out /proc/foo` loaded the data, then said "cannot create /proc/foo" without naming --out."""
    import udd_core.cli_train as cli_train

    def no_loading(*args, **kwargs):
        raise AssertionError("the data was loaded")

    monkeypatch.setattr(cli_train, "load_dataset", no_loading)
    assert _train(config_file, image_folder, "/proc/udd_run", "--epochs", "1") == 2
    assert capsys.readouterr().err == "udd train: error: --out /proc/udd_run: cannot write into /proc\n"
    assert _train(config_file, image_folder, image_folder / "0.png" / "run", "--epochs", "1") == 2
    assert f"--out {image_folder / '0.png' / 'run'}: cannot write into {image_folder / '0.png'}" in capsys.readouterr().err
    # a writable place passes (and a later refusal leaves no folder behind, nor any trace of the check)
    assert _train(config_file, image_folder, tmp_path / "new" / "run", "--size", "30,30") == 2
    assert "at 30x30" in capsys.readouterr().err and sorted(p.name for p in tmp_path.iterdir()) == ["imgs", "tiny.json"]


def test_the_resume_help_says_finished_runs_continue_too():
    from udd_core.cli_parser import build_parser

    train = next(a for a in build_parser()._subparsers._group_actions[0].choices["train"]._actions
                 if "--resume" in a.option_strings)
    assert "finished" in train.help and "interrupted" in train.help


def test_a_new_run_name_follows_the_apps_rule(tmp_path, capsys, monkeypatch):
    """QA sweep 7: `--out "bad name!"` made a run the Train page would refuse to name."""
    monkeypatch.setenv("UDD_RUNS_DIR", str(tmp_path / "runs"))
    for out in ("bad name!", str(tmp_path / "x" / "bad name!"), ".hidden", "uploads"):
        assert main(["train", "gray-tile-128", "--data", str(tmp_path), "--out", out, "--epochs", "1"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"udd train: error: --out {out}: run name ") and "\n" not in err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "x").exists()  # nothing made


def test_a_trailing_slash_on_a_bare_run_name_still_means_the_runs_folder(tmp_path, capsys, monkeypatch):
    """QA: `--out wdet/` (as a shell completes a folder) trained into ./wdet, outside the runs folder."""
    monkeypatch.setenv("UDD_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.chdir(tmp_path)
    from udd_core.cli_train import _new_run_dir

    assert _new_run_dir("wdet/") == _new_run_dir("wdet") == tmp_path / "runs" / "wdet"
    assert _new_run_dir("./wdet/") == Path("./wdet")  # a path stays a path


def test_a_configs_unknown_key_is_one_warning_line_in_every_command(tmp_path, tiny_config, image_folder, capsys):
    """QA sweep 19a: after the clean line, every later read of the run's config printed Python's raw form
    ("udd_core/config.py:188: UserWarning: ..." and the source line) once or twice per command."""
    cfg = tmp_path / "extra.json"
    cfg.write_text(json.dumps({**tiny_config, "extra": 1}))
    run = tmp_path / "run"
    line = "warning: config: unknown keys kept but unused: extra\n"
    assert _train(cfg, image_folder, run, "--epochs", "1") == 0
    assert capsys.readouterr().err.count(line) == 1
    for argv in (["score", str(run)], ["train", "--out", str(run), "--resume", "--epochs", "2"]):
        # a process of its own: pytest would catch the raw warnings that a user's terminal shows
        done = subprocess.run([sys.executable, "-m", "udd_core.cli", *argv], capture_output=True, text=True,
                              cwd=tmp_path, timeout=300)
        assert done.returncode == 0, done.stderr
        assert done.stderr.count(line) == 1 and "UserWarning" not in done.stderr, done.stderr
