"""Every consumer works on a method that is not the pixel autoencoder, through the detector interface only.

The method is tests/toy_detector.py (distance to the mean normal image: no reconstruction, no
decoder, its own scoring defaults), so these tests pin the interface, not one method's quality.
"""
import json
from pathlib import Path

import numpy as np
import pytest
from inspect_fixtures import DEFECT, make_mvtec, make_run
from toy_detector import NAME, register

from udd_core import run_status
from udd_core.cli import main
from udd_core.data import load_dataset
from udd_core.display import score_text
from udd_core.inspection import inspect_run
from udd_core.jobs import TrainJob
from udd_core.methods import METHOD_FILE, has_detector, load_detector, run_method, run_scoring_defaults
from udd_core.report import build_report
from udd_core.settings import TrainSettings


@pytest.fixture
def toy(monkeypatch):
    register(monkeypatch)


@pytest.fixture
def data(tmp_path):
    return make_mvtec(tmp_path / "data")


def fit_toy(run_dir, data, **options):
    ds = load_dataset(data, (1, 32, 32), split="train")
    settings = TrainSettings(epochs=1, batch_size=4, val_split=0.25, seed=0, n_probe=0, device="cpu")
    job = TrainJob.create(run_dir, None, (1, 32, 32), ds.images, settings, method=NAME, options=options,
                          source={"path": str(data.resolve()), "kind": "mvtec", "tile": False})
    job.start().join(60)
    assert job.snapshot().status == "finished", job.snapshot().message
    return run_dir


def test_a_job_fits_any_method_and_records_it(toy, tmp_path, data):
    run = fit_toy(tmp_path / "run", data, smooth=2.0)
    train = json.loads((run / "train.json").read_text())
    assert train["method"] == NAME and train["options"] == {"smooth": 2.0}
    assert run_method(run) == NAME and has_detector(run)
    assert run_scoring_defaults(run) == {"residual": "sq", "score": "max", "smooth_sigma": 2.0, "topk_percent": 1.0,
                                         "border": 0}
    assert not (run / "config.json").exists()
    with pytest.raises(ValueError, match="cannot be resumed"):
        TrainJob.resume(run)


def test_a_run_that_saved_nothing_yet_says_so(toy, tmp_path, data, capsys):
    """QA sweep 6: a run stopped before its first save read "not a model folder (expected config.json + ...)"
    in udd score and on Compare, though its folder holds method.json."""
    run = fit_toy(tmp_path / "run", data)
    for f in run.glob("*.safetensors"):
        f.unlink()  # as a run stopped while it computed its features
    run_status.write_status(run, "stopped", "stopped before its first save")
    assert not has_detector(run)
    with pytest.raises(ValueError, match="no saved model yet"):
        load_detector(run)
    assert main(["score", str(run), "--data", str(data)]) == 2
    err = capsys.readouterr().err
    assert "no saved model yet" in err and err.count("\n") == 1



def test_an_autoencoder_run_killed_before_its_first_save_says_so(tmp_path, capsys):
    """QA sweep 21: killed seconds in, a run held config.json, status.json and train.json (no method.json yet), and
    `udd score` called it "not a model folder"."""
    from inspect_fixtures import make_mvtec, make_run

    data = make_mvtec(tmp_path / "parts")
    run = make_run(tmp_path / "run", data)
    for f in [*run.glob("*.safetensors"), run / METHOD_FILE]:
        f.unlink(missing_ok=True)
    run_status.write_status(run, "stopped", "killed")  # its status.json as the killed process left it: not finished
    assert main(["score", str(run)]) == 2
    err = capsys.readouterr().err
    assert "no saved model yet: the run stopped, or is still running, before its first save" in err


def test_bad_method_options_are_refused_naming_them(toy, tmp_path, data):
    with pytest.raises(ValueError, match="^depth: not a toy-mean option"):
        fit_toy(tmp_path / "run", data, depth=3)
    assert not (tmp_path / "run").exists()


def test_inspection_uses_the_methods_defaults_and_finds_the_defect(toy, tmp_path, data):
    run = fit_toy(tmp_path / "run", data)
    insp = inspect_run(run, data)
    assert insp.settings["score"] == "max" and insp.settings["smooth_sigma"] == 1.0 and insp.settings["residual"] == "sq"
    assert insp.recon is None and np.isnan(insp.mse).all()
    assert insp.metrics.image_auroc == 1.0  # a bright square on a smooth texture
    spot = [i for i, lab in enumerate(insp.labels) if lab == "spot"][0]
    inside = insp.maps[spot][DEFECT].mean()
    assert inside > insp.maps[spot].mean() + 3 * insp.maps[spot].std() / 2  # the map lights up on the defect
    assert "reconstruction" not in insp.panels(spot) and {"input", "residual", "overlay"} <= set(insp.panels(spot))
    assert "<th>input | overlay</th>" in build_report(insp)  # the report leaves out the missing reconstruction
    # Explicit settings override the method's defaults.
    assert inspect_run(run, data, score="mean", smooth_sigma=0.0).settings["score"] == "mean"
    with pytest.raises(ValueError, match="^residual: must be one of sq for a toy-mean run, got 'l2'$"):
        inspect_run(run, data, residual="l2")


def test_cli_train_score_and_generate_on_another_method(toy, tmp_path, data, capsys):
    run = tmp_path / "run"
    assert main(["train", "--method", NAME, "--data", str(data), "--out", str(run), "--size", "32,32"]) == 0
    assert load_detector(run).input_shape == (3, 32, 32)  # no config: images load as RGB for a backbone
    capsys.readouterr()
    assert main(["score", str(run), "--data", str(data), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["settings"]["score"] == "max" and out["metrics"]["image_auroc"] == 1.0
    assert all(r["mse"] is None for r in out["images"])
    assert main(["score", str(run), "--data", str(data)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["path", "label", "score", "verdict"]  # no MSE column for a method without recon
    # The verdict and the numbers read as in every other view (QA sweep 11: "ok"/"DEFECT" and 6 digits here).
    rows = [line.split() for line in table[1:] if line.startswith(str(data))]
    assert rows and {r[3] for r in rows} == {"good", "defective"}
    assert all(r[2] == score_text(float(r[2])) for r in rows)
    thr = next(line for line in table if line.startswith("threshold ")).split()[1]
    assert thr == score_text(out["threshold"])  # the --json run's full-precision threshold, to 5 digits
    assert main(["generate", str(run), "-n", "2", "--sigma", "0.5", "--out", str(tmp_path / "gen")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not generate images" in err
    assert not (tmp_path / "gen").exists()


@pytest.mark.parametrize("argv, message", [
    (["--method", "nope"], "method: must be one of"),
    (["tiny.json", "--method", NAME], "CONFIG: --method toy-mean takes no autoencoder config"),
    (["--method", NAME, "--option", "depth=3"], "--option depth: not a toy-mean option"),
    (["--method", NAME, "--option", "oops"], "--option 'oops': expected KEY=VALUE"),
    (["--method", "autoencoder"], "CONFIG is required for --method autoencoder"),
])
def test_cli_train_refuses_bad_method_input_in_one_line(toy, tmp_path, data, capsys, argv, message):
    rc = main(["train", *argv, "--data", str(data), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "run").exists()


def test_the_pixel_autoencoder_still_records_its_method(tmp_path, data):
    run = make_run(tmp_path / "ae", data)
    assert json.loads((run / "train.json").read_text())["method"] == "autoencoder"
    assert run_method(run) == "autoencoder" and not (run / "method.json").exists()


def test_a_finished_run_whose_model_files_went_is_damaged_and_says_which(toy, tmp_path, data, monkeypatch):
    """QA sweep 21: a memory bank's deleted bank.safetensors, or a method.json gone or naming no method, left the
    run "finished · Done: open Inspect"; Inspect said "No run named" and showed another run."""
    import shutil

    from streamlit.testing.v1 import AppTest

    from udd_core import runs
    from udd_core.run_notes import damaged_note

    root = tmp_path / "runs"
    run = fit_toy(root / "toy", data)
    assert damaged_note(run) is None
    cases = {"weights-gone": lambda r: [f.unlink() for f in r.glob("*.safetensors")],
             "method-gone": lambda r: (r / METHOD_FILE).unlink(),
             "method-unknown": lambda r: (r / METHOD_FILE).write_text(json.dumps({"method": "quantum-bank"}))}
    for name, damage in cases.items():
        shutil.copytree(run, root / name)
        damage(root / name)
    said = {name: damaged_note(root / name) for name in cases}
    assert said["weights-gone"].startswith(f"{root / 'weights-gone'}: its saved model files are missing")
    assert said["method-gone"].startswith(f"{root / 'method-gone' / METHOD_FILE}: missing, so the run's {NAME} "
                                          "cannot load")
    assert said["method-unknown"].startswith(f"{root / 'method-unknown' / METHOD_FILE}: method: must be one of")
    assert all(s.endswith("Inspect, Generate and `udd score` refuse it: train a new run") for s in said.values())
    with pytest.raises(ValueError, match="its saved model files are missing, removed after the run finished"):
        load_detector(root / "weights-gone")  # what udd score and udd export say (QA sweep 22)
    assert {r.name: r.shown_status for r in runs.list_runs(root)} == {
        "toy": "finished", "weights-gone": "damaged", "method-gone": "damaged", "method-unknown": "damaged"}
    monkeypatch.setenv("UDD_RUNS_DIR", str(root))
    app = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "pages" / "inspect.py"), default_timeout=60)
    app.query_params["run"] = "weights-gone"
    app.run()
    assert not app.exception
    assert any(w.value.startswith("Run 'weights-gone' cannot be opened: ") and "showing another run" in w.value
               for w in app.warning)
