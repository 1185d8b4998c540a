"""`udd score`: JSON and table output, heatmaps, errors (exit 2, one line), and a real subprocess."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inspect_fixtures import METRIC_KEYS, SIZE, make_mvtec, make_run, tiny_config
from udd_core import runs
from udd_core.cli import main
from udd_core.metrics import threshold_for_fpr
from udd_core.model import build_model, save_model

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_mvtec(tmp_path_factory.mktemp("data") / "parts")


@pytest.fixture(scope="module")
def run(tmp_path_factory, data):
    return make_run(tmp_path_factory.mktemp("runs") / "tiny", data)


def score_json(capsys, *argv) -> dict:
    assert main(["score", *map(str, argv), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_json_output_and_heatmaps(capsys, tmp_path, run, data):
    out = score_json(capsys, run, "--data", data, "--heatmaps", tmp_path / "hm")
    assert {"images", "metrics", "threshold"} <= set(out)
    assert out["units"] == "images" and out["per_image"] == [] and out["per_image_metrics"] is None  # not tiled
    assert len(out["images"]) == 8  # test/ by default: 4 good + 4 spot
    assert all({"path", "label", "score", "mse"} <= set(r) for r in out["images"])
    assert {r["label"] for r in out["images"]} == {"good", "spot"}
    assert all(isinstance(r["score"], float) and isinstance(r["mse"], float) for r in out["images"])
    assert METRIC_KEYS <= set(out["metrics"]) and set(out["metrics"]["per_type"]) == {"spot"}
    assert all(isinstance(out["metrics"][k], float) for k in METRIC_KEYS - {"per_type"})
    cal = runs.read_json(run / runs.CALIBRATION_FILE)
    assert out["threshold"] == threshold_for_fpr(cal["scores"]["mean"], 0.01)
    pngs = sorted(p for p in (tmp_path / "hm").glob("*.png") if p.name != "colour_scale.png")  # and the key
    assert len(pngs) == 8 and Image.open(pngs[0]).size[0] >= 32 and (tmp_path / "hm" / "README.txt").is_file()
    # mse is the plain MSE: with the default mean-of-l2 score they are the same number.
    assert all(r["score"] == pytest.approx(r["mse"], rel=1e-6) for r in out["images"])
    # the heatmaps of an earlier call are never overwritten by surprise
    before = pngs[0].read_bytes()
    assert main(["score", str(run), "--data", str(data), "--residual", "l1", "--heatmaps", str(tmp_path / "hm")]) == 2
    assert "hm: holds 9 PNG files already" in capsys.readouterr().err and pngs[0].read_bytes() == before
    assert main(["score", str(run), "--data", str(data), "--residual", "l1", "--heatmaps", str(tmp_path / "hm"),
                 "--force"]) == 0
    assert pngs[0].read_bytes() != before
    (tmp_path / "afile").write_text("x")
    assert main(["score", str(run), "--data", str(data), "--heatmaps", str(tmp_path / "afile")]) == 2
    assert "afile: exists and is not a folder" in capsys.readouterr().err
    assert main(["score", str(run), "--data", str(data), "--heatmaps", str(tmp_path / "hm2" / "000.png")]) == 2
    assert "000.png: names a folder for the PNGs (one per image), not a file" in capsys.readouterr().err
    assert not (tmp_path / "hm2").exists()


def test_options_change_the_scores(capsys, run, data):
    base = score_json(capsys, run, "--data", data)
    mx = score_json(capsys, run, "--data", data, "--score", "max", "--residual", "l1", "--smooth", "1")
    assert [r["path"] for r in base["images"]] == [r["path"] for r in mx["images"]]
    assert all(m["score"] > b["score"] for m, b in zip(mx["images"], base["images"]))
    assert [r["mse"] for r in mx["images"]] == [r["mse"] for r in base["images"]]  # mse never changes
    inner = score_json(capsys, run, "--data", data, "--score", "max", "--residual", "l1", "--smooth", "1",
                       "--border", "4")
    assert inner["settings"]["border"] == 4 and base["settings"]["border"] == 0
    assert all(i["score"] <= m["score"] for i, m in zip(inner["images"], mx["images"]))  # the max over less
    assert any(i["score"] < m["score"] for i, m in zip(inner["images"], mx["images"]))
    manual = score_json(capsys, run, "--data", data, "--threshold", "0")
    assert manual["threshold"] == 0.0 and all(r["defective"] for r in manual["images"])
    # QA sweep 21: settings named a 1% target FPR beside a threshold given by hand, and a top-k beside a mean
    assert manual["settings"]["target_fpr"] is None and base["settings"]["target_fpr"] == 0.01
    assert base["settings"]["score"] == "mean" and base["settings"]["topk_percent"] is None
    topk = score_json(capsys, run, "--data", data, "--score", "topk", "--topk", "5")
    assert topk["settings"]["topk_percent"] == 5.0
    train = score_json(capsys, run, "--data", data, "--split", "train")
    assert len(train["images"]) == 12 and train["metrics"]["image_auroc"] is None
    assert train["metrics"]["per_type"] == {}


def test_run_name_under_runs_dir_and_default_data(capsys, monkeypatch, run):
    monkeypatch.setenv("UDD_RUNS_DIR", str(run.parent))
    out = score_json(capsys, run.name)  # data: the run's own training data, test split
    assert len(out["images"]) == 8


def test_moved_training_data_is_named(capsys, tmp_path, run):
    import shutil

    moved = tmp_path / "moved"
    shutil.copytree(run, moved)
    info = json.loads((moved / "train.json").read_text())
    info["data"]["path"] = str(tmp_path / "gone")
    (moved / "train.json").write_text(json.dumps(info))
    assert main(["score", str(moved)]) == 2
    err = capsys.readouterr().err.strip()
    assert "gone: the run's training data is gone" in err and "\n" not in err


def test_table_output(capsys, run, data):
    assert main(["score", str(run), "--data", str(data)]) == 0
    text = capsys.readouterr().out
    assert "image AUROC" in text and "threshold" in text and "spot" in text
    assert text.count(".png") == 8


@pytest.mark.parametrize("argv, msg", [
    (["--size", "30,30"], "size 30x30"),
    (["--size", "abc"], "--size"),
    (["--smooth", "-1"], "--smooth"),
    (["--target-fpr", "2"], "--target-fpr"),
    (["--smooth", "nan"], "--smooth"),
    (["--threshold", "nan"], "--threshold"),
    (["--device", "bogus"], "device: must be one of"),
    (["--topk", "0"], "--topk"),
    (["--border", "-1"], "--border: must be an integer in [0, 100000]"),
    (["--border", "16"], "border: must be an integer of pixels in [0, 15] for 32x32 maps"),
    (["--batch-size", "0"], "--batch-size"),
    (["--device", ""], "device: must be one of"),
])
def test_bad_options_exit_2_with_one_line(capsys, run, data, argv, msg):
    assert main(["score", str(run), "--data", str(data), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert msg in err and "\n" not in err and err.startswith("udd score: error:")


def test_threshold_and_target_fpr_together_are_refused(capsys, run, data):
    """Both given, the FPR would be silently ignored: argparse refuses the pair in one line, exit 2."""
    with pytest.raises(SystemExit) as e:
        main(["score", str(run), "--data", str(data), "--threshold", "1", "--target-fpr", "0.05"])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and "--target-fpr: not allowed with argument --threshold" in err and "\n" not in err


def test_bad_run_or_data_exit_2(capsys, tmp_path, run):
    assert main(["score", str(tmp_path / "none"), "--data", str(tmp_path)]) == 2
    assert "no such run" in capsys.readouterr().err
    assert main(["score", str(run), "--data", str(tmp_path / "missing")]) == 2
    assert "no such file" in capsys.readouterr().err
    # A model folder that stores no input size, on images of mixed sizes without --size: one line, exit 2.
    folder = tmp_path / "mixed"
    folder.mkdir()
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(folder / "a.png")
    Image.fromarray(np.zeros((24, 24), np.uint8)).save(folder / "b.png")
    save_model(build_model(tiny_config()), tmp_path / "sizeless")
    assert main(["score", str(tmp_path / "sizeless"), "--data", str(folder)]) == 2
    err = capsys.readouterr().err.strip()
    assert "differ in size" in err and "--size" in err and "\n" not in err
    assert main(["score", str(tmp_path / "sizeless"), "--data", str(folder), "--size", "16,16", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["images"]) == 2


def test_subprocess_end_to_end(tmp_path, run, data):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-m", "udd_core.cli", "score", str(run), "--data", str(data), "--json",
                        "--heatmaps", str(tmp_path / "hm")], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert len(out["images"]) == 8 and len(list((tmp_path / "hm").glob("*.png"))) == 8 + 1  # the colour bar
    assert "streamlit" not in p.stderr
    # Importing the CLI must not drag in the app's heavy modules.
    q = subprocess.run([sys.executable, "-c", "import sys, udd_core.cli; "
                        "print(sorted(m for m in ('streamlit', 'plotly', 'sklearn') if m in sys.modules))"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert q.stdout.strip() == "[]", q.stderr


def test_data_of_the_other_kind_is_refused_and_other_data_is_noted(capsys, tmp_path, run, data):
    wafers = tmp_path / "w.npz"
    np.savez(wafers, maps=np.ones((3, 32, 32), np.uint8))
    assert main(["score", str(run), "--data", str(wafers)]) == 2  # an image model on wafer maps
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the run was trained on images but these data are wafer maps" in err
    other = make_mvtec(tmp_path / "other", seed=5)
    assert main(["score", str(run), "--data", str(other)]) == 0  # same kind, other data: scored, with a note
    err = capsys.readouterr().err
    assert f"note: the run was trained on {runs.run_source(run)['path']}: scores on other data" in err
    assert main(["score", str(run), "--data", str(data)]) == 0  # its own data: no such note
    assert "scores on other data" not in capsys.readouterr().err


def test_a_copy_of_the_training_images_is_the_training_data_not_other_data(capsys, tmp_path, run, data):
    """QA sweep 15: a byte-identical copy at another path was 'other data', and the caution that the metrics
    include images the run learned went away. train.json's digest of the training images tells them apart."""
    import shutil

    copy = shutil.copytree(data, tmp_path / "copy")
    assert main(["score", str(run), "--data", str(copy), "--split", "train"]) == 0
    err = capsys.readouterr().err
    assert "scores on other data" not in err and "note: these are the run's training data" in err
    assert main(["score", str(run), "--data", str(data), "--split", "train"]) == 0  # at its own place alike
    assert "note: these are the run's training data" in capsys.readouterr().err
    # QA sweep 17: the copy's test split is the run's own test split, not "other data" whose threshold may not fit
    assert main(["score", str(run), "--data", str(copy)]) == 0
    err = capsys.readouterr().err
    assert "scores on other data" not in err and "training data" not in err
    assert main(["score", str(run), "--data", str(copy), "--split", "all"]) == 0  # QA sweep 18: it holds them
    err = capsys.readouterr().err
    assert "scores on other data" not in err and "note: these are the run's training data" in err
    first = sorted(p.name for p in (copy / "train" / "good").iterdir())[0]
    Image.fromarray(np.zeros((SIZE, SIZE), np.uint8)).save(copy / "train" / "good" / first)  # one changed: other data
    assert main(["score", str(run), "--data", str(copy)]) == 0
    assert "scores on other data" in capsys.readouterr().err
    (copy / "train" / "good" / first).unlink()
    assert main(["score", str(run), "--data", str(copy), "--split", "train"]) == 0  # one image fewer: other data
    err = capsys.readouterr().err
    assert "scores on other data" in err and "these are the run's training data" not in err


def test_one_image_file_is_scored_alone(capsys, run, data):
    """QA sweep 17: `udd score RUN --data part.jpg` was "not a data set"; checking one suspect part is common."""
    part = sorted((data / "test" / "spot").iterdir())[0]
    out = score_json(capsys, run, "--data", part)
    assert [r["path"] for r in out["images"]] == [str(part)] and isinstance(out["images"][0]["score"], float)
    # QA sweep 18: a part of the run's own test split is not "other data", and a flagged part is no alarm about
    # the threshold (one of one called defective is what the user checks for)
    assert not [n for n in out["notices"] if "other data" in n or "are called defective" in n]
    assert main(["score", str(run), "--data", str(part), "--threshold", "0"]) == 0
    out, err = capsys.readouterr()
    assert "are called defective" not in err
    # QA sweep 19a: "FPR 0.2500" over one unlabelled part's tiles (or "FPR 0.0000" for the part) meant nothing
    assert "threshold 0.0000 (manual)\n" in out and "FPR" not in out
    trained = sorted((data / "train" / "good").iterdir())[0]
    assert any(n.startswith("these are the run's training data") for n in score_json(capsys, run, "--data",
                                                                                        trained)["notices"])


def test_report_writes_the_inspect_pages_html_report_and_keeps_an_existing_one(tmp_path, capsys):
    """QA: the one-page report existed only on Inspect's Export tab; line and CI users could not make it."""
    data = make_mvtec(tmp_path / "parts")
    run = make_run(tmp_path / "r", data)
    out = tmp_path / "r.html"
    assert main(["score", str(run), "--data", str(data), "--report", str(out)]) == 0
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and "udd inspection report: r" in page
    assert "reconstruction" in page  # the worst images with their reconstructions, as Inspect gives them
    out.write_text("mine")
    capsys.readouterr()
    assert main(["score", str(run), "--data", str(data), "--report", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"--report {out}: already exists (pass --force to overwrite)" in err and err.count("\n") == 1
    assert out.read_text() == "mine"
    assert main(["score", str(run), "--data", str(data), "--report", str(tmp_path / "no" / "r.html")]) == 2
    assert "no such folder" in capsys.readouterr().err and not (tmp_path / "no").exists()
    assert main(["score", str(run), "--data", str(data), "--report", str(out), "--force"]) == 0
    assert out.read_text().startswith("<!DOCTYPE html>")
    capsys.readouterr()
    assert main(["score", str(run), "--data", str(data), "--report", str(tmp_path / "r.txt")]) == 2  # QA
    assert "--report" in capsys.readouterr().err and not (tmp_path / "r.txt").exists()


def test_csv_writes_the_export_tabs_scores_and_keeps_an_existing_file(tmp_path, capsys):
    """QA sweep 12: the scores CSV came only from Inspect's Export tab."""
    import csv

    data = make_mvtec(tmp_path / "parts")
    run = make_run(tmp_path / "r", data)
    out = tmp_path / "scores.csv"
    assert main(["score", str(run), "--data", str(data), "--csv", str(out), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["path", "label", "score", "mse", "defective", "threshold"]
    assert [r["path"] for r in rows] == [i["path"] for i in shown["images"]]
    assert [float(r["score"]) for r in rows] == pytest.approx([i["score"] for i in shown["images"]])
    assert [float(r["threshold"]) for r in rows] == pytest.approx([shown["threshold"]] * len(rows))
    out.write_text("mine")
    assert main(["score", str(run), "--data", str(data), "--csv", str(out)]) == 2
    assert f"--csv {out}: already exists (pass --force to overwrite)" in capsys.readouterr().err
    assert out.read_text() == "mine"
    assert main(["score", str(run), "--data", str(data), "--csv", str(tmp_path / "s.txt")]) == 2
    assert "--csv" in capsys.readouterr().err and not (tmp_path / "s.txt").exists()


@pytest.mark.parametrize("text,why", [("{bad json", "its train.json is not valid JSON"),
                                      ("[1, 2]", "its train.json is not a JSON object"),
                                      ('{"settings": {}}', "the run names no training data (train.json data.path)")])
def test_a_damaged_train_json_is_named_as_such(capsys, tmp_path, run, text, why):
    """QA: a corrupt train.json read as 'the run names no training data'."""
    import shutil

    damaged = tmp_path / "damaged"
    shutil.copytree(run, damaged)
    (damaged / "train.json").write_text(text)
    assert main(["score", str(damaged)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith(f"no data given and {why}") and "\n" not in err


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs a folder no folder can be created in")
def test_output_places_are_refused_before_any_scoring(capsys, tmp_path, run, data, monkeypatch):
    """QA: `--heatmaps /readonly/hm` scored everything, then failed without naming the option; `--report
    dir.html/` wrote a file dir.html and said it wrote dir.html/."""
    import udd_core.cli_score as cli_score

    def no_scoring(*args, **kwargs):
        raise AssertionError("the data was scored")

    monkeypatch.setattr(cli_score, "inspect_run", no_scoring)
    monkeypatch.chdir(tmp_path)
    for argv, message in ((["--heatmaps", "/proc/hm"], "--heatmaps /proc/hm: cannot write into /proc"),
                          (["--report", "/proc/r.html"], "--report /proc/r.html: cannot write into /proc"),
                          (["--report", "dir.html/"], "--report dir.html/: names a folder (it ends in /); "
                                                      "give a file name")):
        assert main(["score", str(run), "--data", str(data), *argv]) == 2
        assert capsys.readouterr().err == f"udd score: error: {message}\n"
    assert list(tmp_path.iterdir()) == []


def test_heatmaps_inside_the_data_set_are_refused(capsys, tmp_path, run, data):
    """QA sweep 8: `--heatmaps DATA/test/good` (a folder of JPEGs passed the PNG check) wrote the overlays into
    the data set, and the next scoring counted them as good photos."""
    for target, given, whose in ((data / "test" / "good" / "hm", ["--data", str(data)], "the data set"),
                                 (data / "hm", [], "the run's training data")):  # [] : the run's own data
        rc = main(["score", str(run), *given, "--heatmaps", str(target)])
        err = capsys.readouterr().err
        assert rc == 2 and f"--heatmaps {target}: lies inside {whose}" in err and err.count("\n") == 1, err
        assert not target.exists()
    assert main(["score", str(run), "--data", str(data), "--heatmaps", str(tmp_path / "beside")]) == 0
    # QA sweep 9: into the run's own training data while another set is scored: its split sets the threshold
    other = make_mvtec(tmp_path / "other", seed=3)
    assert main(["score", str(run), "--data", str(other), "--heatmaps", str(data / "train" / "hm")]) == 2
    assert "lies inside the run's training data" in capsys.readouterr().err and not (data / "train" / "hm").exists()


def test_the_note_on_unmarked_defective_calls_is_printed_as_inspect_shows_it(run, data, capsys, monkeypatch):
    """QA sweep 14: `udd score` printed the notices without the one `Inspection.all_notes` adds (defective calls
    with no pixel above the pixel threshold), which Inspect, the report and the heatmaps' README give."""
    from udd_core.inspection_result import Inspection

    monkeypatch.setattr(Inspection, "unmarked_note", lambda self: "2 of the 3 images called defective have no pixel")
    assert main(["score", str(run), "--data", str(data)]) == 0
    assert "note: 2 of the 3 images called defective have no pixel\n" in capsys.readouterr().err
    assert "2 of the 3 images called defective have no pixel" in score_json(capsys, str(run), "--data", str(data))[
        "notices"]


def test_each_defect_type_is_given_as_inspect_and_the_report_give_it(capsys, run, data):
    """QA sweep 21: the text left out each type's image AP and normal count, the JSON its normal count."""
    out = score_json(capsys, run, "--data", data)
    spot = out["metrics"]["per_type"]["spot"]
    assert spot["n"] == 4 and spot["normal"] == sum(r["label"] == "good" for r in out["images"]) == 4
    assert main(["score", str(run), "--data", str(data)]) == 0
    line = next(t for t in capsys.readouterr().out.splitlines() if t.startswith("  spot"))
    assert "4 defective vs 4 normal" in line and f"image AP {spot['image_ap']:.4f}" in line
