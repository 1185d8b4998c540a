"""ONNX export (`udd export`, the Inspect page's button): round trips for every method, the parity gate,
refusals (overwrite, opset, run, paths), and the page's export button.

Every registered method needs an entry in METHOD_RUNS: a factory that trains a tiny run of it on the
tiny MVTec folder it is given. A test fails when a method in `udd_core.methods.METHODS` has none.
"""
import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from inspect_fixtures import make_mvtec, make_run, tiny_config
from test_feature_ae import feature_config
from udd_core import runs
from udd_core import run_status
from udd_core.cli import main
from udd_core.data import load_dataset, to_tensor
from udd_core.export import (DEFAULT_OPSET, TOLERANCE, ExportGraph, ParityError, default_scoring, export_run,
                             onnx_outputs, reference_outputs)
from udd_core.inspection import inspect_run
from udd_core.inspection_inputs import run_validation_images
from udd_core.methods import METHODS, detector_class, load_detector, scoring_record
from udd_core.metrics import threshold_for_fpr

ort = pytest.importorskip("onnxruntime")
ROOT = Path(__file__).resolve().parents[1]


def autoencoder_run(run_dir: Path, data: Path) -> Path:
    return make_run(run_dir, data)


def fitted_run(method: str, options: dict | None = None, config=None):
    """A factory of a tiny run of `method` (on the `config()` design when it builds on one), fitted by a TrainJob."""
    def make(run_dir: Path, data: Path) -> Path:
        from inspect_fixtures import SIZE
        from udd_core.jobs import TrainJob
        from udd_core.settings import TrainSettings

        ds = load_dataset(data, (1, SIZE, SIZE), split="train")
        settings = TrainSettings(epochs=2, batch_size=4, val_split=0.25, seed=0, n_probe=0, device="cpu")
        job = TrainJob.create(run_dir, config() if config else None, (1, SIZE, SIZE), ds.images, settings,
                              source={"path": str(data.resolve()), "kind": "mvtec", "tile": False},
                              method=method, options=options)
        job.start().join(300)
        assert job.snapshot().status == "finished", job.snapshot().message
        return run_dir
    return make


# method name -> factory(run_dir, data) that trains a tiny run of that method on the MVTec folder `data`
METHOD_RUNS = {
    "autoencoder": autoencoder_run,
    "memory-bank": fitted_run("memory-bank", {"coreset": 0.5}),
    "feature-ae": fitted_run("feature-ae", config=feature_config),  # 152 x 4 x 4 features of 32 x 32 images
    "dsvdd": fitted_run("dsvdd", {"svdd_epochs": 3}, config=tiny_config),
    "latent-knn": fitted_run("latent-knn", config=tiny_config),
}

# (residual index into the method's residuals, smoothing sigma, score, top-k %): defaults and their variants
VARIANTS = [
    pytest.param(None, None, None, None, id="defaults"),
    pytest.param(1, 1.5, "topk", 5.0, id="second-residual-smooth-topk"),
    pytest.param(-1, 0.0, "max", 1.0, id="last-residual-max"),
    pytest.param(2, 3.0, "mean", 1.0, id="third-residual-wide-smooth"),
]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_mvtec(tmp_path_factory.mktemp("data") / "parts")


@pytest.fixture(scope="module")
def method_runs(tmp_path_factory, data):
    """One tiny run per method, trained on first use."""
    made: dict[str, Path] = {}

    def get(method: str) -> Path:
        if method not in made:
            made[method] = METHOD_RUNS[method](tmp_path_factory.mktemp("runs") / method, data)
        return made[method]

    return get


@pytest.fixture(scope="module")
def ae_run(method_runs):
    return method_runs("autoencoder")


def test_every_registered_method_has_a_tiny_run():
    missing = sorted(set(METHODS) - set(METHOD_RUNS))
    assert not missing, f"add a tiny-run factory to METHOD_RUNS for: {', '.join(missing)}"


@pytest.mark.parametrize("method", sorted(METHOD_RUNS))
@pytest.mark.parametrize("residual, smooth, score, topk", VARIANTS)
def test_onnxruntime_gives_udds_maps_and_scores(method_runs, data, method, residual, smooth, score, topk):
    run = method_runs(method)
    det = load_detector(run)
    kind = None if residual is None else det.residuals[residual % len(det.residuals)]
    exp = export_run(run, residual=kind, smooth_sigma=smooth, score=score, topk_percent=topk)
    par = exp.info["parity"]
    assert par["source"] == "validation" and par["images"] == 3  # 12 train images, val split 0.25
    assert par["max_rel_score_diff"] <= TOLERANCE and par["max_rel_map_diff"] <= TOLERANCE
    sc = exp.info["scoring"]
    want = default_scoring(det, kind, smooth, score, topk)
    assert sc == scoring_record(det, want.to_dict()) and sc["residual"] == (kind or det.residuals[0])
    c, h, w = det.input_shape
    assert exp.info["input"]["shape"] == ["N", c, h, w] and exp.info["outputs"]["anomaly_map"]["shape"] == ["N", 1, h, w]

    # On images the parity check never saw (the test split, in batches of 8 and 1): the scores that
    # `udd score --json` reports and the maps Inspect shows, un-standardised.
    insp = inspect_run(run, data, residual=want.residual, score=want.score, smooth_sigma=want.smooth_sigma,
                       topk_percent=want.topk_percent, border=want.border)
    sess = ort.InferenceSession(exp.onnx, providers=["CPUExecutionProvider"])
    x = to_tensor(insp.images).contiguous().numpy()  # (8, C, H, W) float32 in [0, 1]
    maps, scores = sess.run(["anomaly_map", "score"], {"images": x})
    assert maps.shape == (len(x), 1, h, w) and scores.shape == (len(x),) and scores.dtype == np.float32
    np.testing.assert_allclose(scores, insp.scores, rtol=TOLERANCE, atol=0)  # the promise, on unseen images
    raw = insp.maps * insp.norm.std + insp.norm.mean  # Inspect's maps are on the normal scale
    np.testing.assert_allclose(maps[:, 0], raw, rtol=0, atol=TOLERANCE * float(np.abs(raw).max()))
    one_map, one = sess.run(None, {"images": x[3:4]})  # N = 1
    assert one.shape == (1,) and one[0] == pytest.approx(float(scores[3]), rel=1e-6)


def test_the_defaults_come_from_describe(monkeypatch, ae_run):
    cls = detector_class("autoencoder")
    monkeypatch.setattr(cls, "describe", lambda self: {"method": "autoencoder", "residual": "l1",
                                                        "smooth_sigma": 1.0, "score": "topk", "topk_percent": 10.0,
                                                        "border": 3})
    exp = export_run(ae_run)  # the border left out of the score is part of the graph too
    assert exp.info["scoring"] == {"residual": "l1", "smooth_sigma": 1.0, "score": "topk", "topk_percent": 10.0,
                                   "border": 3}
    images, _, _ = run_validation_images(runs.read_json(ae_run / runs.TRAIN_FILE), (1, 32, 32))
    det = load_detector(ae_run)
    ref_maps, ref_scores = reference_outputs(det, images, default_scoring(det))
    maps, scores = onnx_outputs(exp.onnx, images)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-5)
    # and these are not the plain l2/mean numbers: the defaults really changed the graph
    _, plain = reference_outputs(det, images, default_scoring(det, "l2", 0.0, "mean", 1.0))
    assert not np.allclose(plain, ref_scores, rtol=1e-3)


def test_own_scores_are_exported_for_methods_that_have_them(monkeypatch, ae_run):
    """A method whose score is not a map reduction (Deep SVDD's distance): `image_scores` goes into the graph."""
    cls = detector_class("autoencoder")

    def own(self, x):  # (B, C, H, W) -> (B,): a score that no map reduction gives
        return (self.model(x) - x).abs().flatten(1).amax(dim=1) * 3.0 + 0.5

    monkeypatch.setattr(cls, "own_scores", True)
    monkeypatch.setattr(cls, "image_scores", own)
    exp = export_run(ae_run)
    images = load_dataset(exp_data(ae_run), (1, 32, 32), split="test").images
    det = load_detector(ae_run)
    with torch.inference_mode():
        want = own(det, to_tensor(images)).numpy()
    _, scores = onnx_outputs(exp.onnx, images)
    np.testing.assert_allclose(scores, want, rtol=1e-5)
    assert exp.info["parity"]["max_rel_score_diff"] <= TOLERANCE


def exp_data(run: Path) -> str:
    return runs.read_json(run / runs.TRAIN_FILE)["data"]["path"]


class Scaled(nn.Module):
    """A map module whose maps are off by a factor: a graph that drifted from the method's `anomaly_maps`."""

    def __init__(self, inner: nn.Module, factor: float):
        super().__init__()
        self.inner, self.factor = inner, factor

    def forward(self, x):
        return self.inner(x) * self.factor

    def parts(self, x):  # maps and score factor, as the feature AE's map module gives them
        maps, score_factor = self.inner.parts(x) if hasattr(self.inner, "parts") else (self.inner(x), None)
        return maps * self.factor, score_factor


def tamper(monkeypatch, factor: float) -> None:
    """Export graphs whose maps are off by `factor`, while udd's own scoring stays as it is.

    The graph is tampered, not the method's map_module: a method may score through map_module
    itself (the feature autoencoder does), and then both sides would drift alike.
    """
    original = ExportGraph.__init__

    def init(self, detector, scoring):
        original(self, detector, scoring)
        self.maps = Scaled(self.maps, factor)

    monkeypatch.setattr(ExportGraph, "__init__", init)


@pytest.mark.parametrize("method", sorted(METHOD_RUNS))
def test_a_tampered_model_fails_parity_and_writes_nothing(monkeypatch, capsys, method_runs, tmp_path, method):
    run = method_runs(method)
    tamper(monkeypatch, 1.01)
    out = tmp_path / "model.onnx"
    assert main(["export", str(run), "--onnx", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("udd export: parity failed") and "nothing written" in err
    assert list(tmp_path.iterdir()) == []  # no model, no JSON, no temp file
    if not detector_class(method).own_scores:  # a map off by 1 % gives scores off by 1 %
        figure = float(re.search(r"relative score difference ([0-9.e+-]+)", err).group(1))
        assert figure == pytest.approx(0.01, rel=0.05)


def test_the_gate_sits_at_the_tolerance(monkeypatch, ae_run):
    tamper(monkeypatch, 1 + 3 * TOLERANCE)
    with pytest.raises(ParityError, match="relative score difference 0.0003"):
        export_run(ae_run)
    monkeypatch.undo()
    tamper(monkeypatch, 1 + TOLERANCE / 5)
    assert export_run(ae_run).info["parity"]["max_rel_score_diff"] == pytest.approx(TOLERANCE / 5, rel=0.05)


def test_cli_writes_model_and_json_then_refuses_to_overwrite(capsys, ae_run, data, tmp_path):
    out = tmp_path / "line" / "detector.onnx"
    out.parent.mkdir()
    assert main(["export", str(ae_run), "--onnx", str(out), "--opset", "18"]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "wrote" in err and "parity on 3 validation images" in err
    info = json.loads(out.with_suffix(".json").read_text())
    assert info["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest() and info["opset"] == 18
    assert info["input"]["normalisation"].startswith("uint8 pixel / 255")
    assert info["input"]["range"] == [0.0, 1.0] and info["input"]["channels"] == "gray"
    # how a file becomes that input: the resize filter and the colour conversion move scores near the threshold
    steps = info["input"]["preprocessing"]
    assert "BILINEAR" in steps and "aspect ratio not kept" in steps and "ITU-R 601-2 luma" in steps
    from udd_core.export import _input_description

    assert "repeated to 3 channels" in _input_description("mvtec", (3, 8, 8))["preprocessing"]
    assert "tiles" in _input_description("folder", (1, 8, 8), tile=True)["preprocessing"]
    assert "nearest neighbour" in _input_description("wafer", (3, 26, 26))["preprocessing"]
    assert _input_description("wafer", (3, 26, 26))["normalisation"].startswith("none: each channel is 0 or 1")  # QA: "/ 255"
    assert "/ 255" in _input_description("mvtec", (1, 8, 8))["normalisation"]
    # the threshold is the one `udd score` sets by default (1 % FPR on the run's validation scores)
    cal = runs.read_json(ae_run / runs.CALIBRATION_FILE)
    assert info["threshold"] == pytest.approx(threshold_for_fpr(cal["scores"]["mean"], 0.01), rel=1e-5)
    import onnx

    model = onnx.load(str(out))
    assert [o.name for o in model.graph.output] == ["anomaly_map", "score"]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"  # a dynamic batch
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) == 18
    assert {p.key: p.value for p in model.metadata_props}["udd.method"] == "autoencoder"

    before = out.read_bytes(), out.with_suffix(".json").read_text()
    assert main(["export", str(ae_run), "--onnx", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == f"udd export: error: --onnx {out}: already exists (pass --force to overwrite)\n"
    out.unlink()  # only the JSON is left: still refused, the model is not written alone
    assert main(["export", str(ae_run), "--onnx", str(out)]) == 2
    assert "detector.json: already exists" in capsys.readouterr().err and not out.exists()
    assert main(["export", str(ae_run), "--onnx", str(out), "--force", "--opset", "13"]) == 0
    capsys.readouterr()
    assert out.with_suffix(".json").read_text() != before[1] and json.loads(out.with_suffix(".json").read_text())["opset"] == 13
    assert sorted(p.name for p in out.parent.iterdir()) == ["detector.json", "detector.onnx"]  # no temp files


def test_cli_notes_a_run_that_did_not_finish(capsys, ae_run, tmp_path):
    import shutil

    run = tmp_path / "halfway"
    shutil.copytree(ae_run, run)
    run_status.write_status(run, "stopped", "stopped after 1 of 9 epochs")
    assert main(["export", str(run), "--onnx", str(tmp_path / "d.onnx")]) == 0
    err = capsys.readouterr().err
    assert err.startswith("note: run halfway is stopped (after 1 of 9 epochs): this is the model saved so far")
    # QA sweep 14: the still-learning (or overfit) note, which udd score gives, was not given here
    run_status.write_status(run, "finished", "finished 2 epochs")
    (run / "history.jsonl").write_text("".join(json.dumps({"epoch": e, "train_loss": v, "val_loss": v}) + "\n"
                                               for e, v in ((1, 1.0), (2, 0.5))))
    assert main(["export", str(run), "--onnx", str(tmp_path / "e.onnx")]) == 0
    assert capsys.readouterr().err.startswith("note: run halfway was still learning when its training ended")


def test_bad_inputs_are_one_line_and_write_nothing(capsys, ae_run, tmp_path, monkeypatch):
    (tmp_path / "a folder.onnx").mkdir()
    (tmp_path / "empty").mkdir()
    ok = str(tmp_path / "m.onnx")
    cases = [
        (["--opset", "12"], ok, "--opset: must be an integer in [13, 20], got 12"),
        (["--opset", "21"], ok, "--opset: must be an integer in [13, 20], got 21"),
        ([], str(tmp_path / "m.pt"), "the file name must end in .onnx"),
        ([], str(tmp_path / "a folder.onnx"), "is a folder"),
        ([], str(tmp_path / "no" / "such" / "m.onnx"), "no such folder"),
    ]
    for extra, out, message in cases:
        assert main(["export", str(ae_run), "--onnx", out, *extra]) == 2, (extra, out)
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err and "Traceback" not in err, err
    assert main(["export", str(tmp_path / "nope"), "--onnx", ok]) == 2
    assert "nope: no such run or model folder" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "empty"), "--onnx", ok]) == 2  # a folder with no model in it
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("udd export: error:")
    with pytest.raises(ValueError, match="opset: must be an integer"):
        export_run(ae_run, opset=True)
    with pytest.raises(ValueError, match="residual: must be one of"):
        export_run(ae_run, residual="l3")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a folder.onnx", "empty"]


def test_a_run_whose_data_moved_says_so_and_exports_with_data(capsys, tmp_path, data):
    """QA: with its data moved, a run could not be exported at all (no --data, no hint)."""
    moved = make_mvtec(tmp_path / "moved")
    run = make_run(tmp_path / "run", moved)
    moved.rename(tmp_path / "elsewhere")
    assert main(["export", str(run), "--onnx", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no images to check parity on" in err and not (tmp_path / "m.onnx").exists()
    assert "give its new place with --data PATH" in err
    # QA sweep 9: other images given as --data set the exported threshold (a defect's score among them), with
    # only a note inside the JSON; now they are refused, as a resume refuses them
    other = make_mvtec(tmp_path / "other", seed=5)  # as many images, other content
    assert main(["export", str(run), "--onnx", str(tmp_path / "m.onnx"), "--data", str(other)]) == 2
    err = capsys.readouterr().err
    assert "not the images the run trained on (it holds 12 images, as the run had, but other ones)" in err
    assert err.count("\n") == 1 and not (tmp_path / "m.onnx").exists()
    assert main(["export", str(run), "--onnx", str(tmp_path / "m.onnx"), "--data", str(other / "test")]) == 2
    assert "the run had 12" in capsys.readouterr().err
    assert main(["export", str(run), "--onnx", str(tmp_path / "m.onnx"), "--data", str(tmp_path / "elsewhere")]) == 0
    info = json.loads((tmp_path / "m.json").read_text())
    assert (tmp_path / "m.onnx").is_file() and info["parity"]["images"] == 3  # 12 train images, val split 0.25


def test_a_run_name_under_the_runs_folder_and_a_real_subprocess(ae_run, tmp_path):
    """`udd export NAME` finds runs/NAME; stderr carries one line, no exporter noise."""
    out = tmp_path / "m.onnx"
    env = {**os.environ, "UDD_RUNS_DIR": str(ae_run.parent)}
    r = subprocess.run([sys.executable, "-m", "udd_core.cli", "export", ae_run.name, "--onnx", str(out)],
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=240)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "" and r.stderr.count("\n") == 1 and r.stderr.startswith("udd export: wrote"), r.stderr
    assert out.is_file() and out.with_suffix(".json").is_file()


def test_export_graph_smoothing_is_udds(ae_run):
    """The graph's smoothing is residuals.smooth_maps, the function `udd score` applies: same maps in torch."""
    det = load_detector(ae_run)
    sc = default_scoring(det, "ssim", 2.0, "topk", 3.0)
    x = to_tensor(load_dataset(exp_data(ae_run), (1, 32, 32), split="test").images)
    with torch.inference_mode():
        maps, scores = ExportGraph(det, sc).eval()(x)
    images = (x.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy()
    ref_maps, ref_scores = reference_outputs(det, images, sc)
    assert maps.shape == (len(x), 1, 32, 32)
    np.testing.assert_array_equal(maps[:, 0].numpy(), ref_maps)
    np.testing.assert_allclose(scores.numpy(), ref_scores, rtol=1e-6)


def test_the_inspect_page_exports_the_run(monkeypatch, ae_run):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("UDD_RUNS_DIR", str(ae_run.parent))
    at = AppTest.from_file(str(ROOT / "pages" / "inspect.py"), default_timeout=120).run()
    assert not at.exception and len(at.get("download_button")) == 3  # nothing exported before the click
    at.button(key="insp_onnx").click().run()
    assert not at.exception and not at.error
    labels = [b.proto.label for b in at.get("download_button")]
    assert f"Download {ae_run.name}.onnx" in labels and len(labels) == 5
    assert any("Parity on 3 validation images" in c.value for c in at.caption)


def test_the_inspect_page_exports_a_run_whose_data_moved_from_its_data_path_box(monkeypatch, tmp_path):
    """QA: the ONNX export ignored the Data path typed on the page and told the user to pass --data."""
    from streamlit.testing.v1 import AppTest

    moved = make_mvtec(tmp_path / "was")
    run = make_run(tmp_path / "runs" / "r", moved)
    moved.rename(tmp_path / "now")
    monkeypatch.setenv("UDD_RUNS_DIR", str(run.parent))
    at = AppTest.from_file(str(ROOT / "pages" / "inspect.py"), default_timeout=120).run()
    at.text_input(key="insp_data").input(str(tmp_path / "now")).run()
    at.button(key="insp_onnx").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("Parity on 3 validation images" in c.value for c in at.caption)


def test_the_inspect_page_shows_a_failed_export_as_an_error(monkeypatch, ae_run):
    from streamlit.testing.v1 import AppTest

    tamper(monkeypatch, 1.01)
    monkeypatch.setenv("UDD_RUNS_DIR", str(ae_run.parent))
    at = AppTest.from_file(str(ROOT / "pages" / "inspect.py"), default_timeout=120).run()
    at.button(key="insp_onnx").click().run()
    assert not at.exception
    assert len(at.error) == 1 and at.error[0].value.startswith("parity failed")
    assert len(at.get("download_button")) == 3  # no model offered


@pytest.mark.parametrize("method", ["dsvdd", "latent-knn"])
def test_a_method_with_its_own_image_score_records_that_score_not_a_map_reduction(method_runs, data, method):
    import html

    from udd_core.report import build_report

    run = method_runs(method)
    own = load_detector(run).describe()["image_score"]  # e.g. "squared distance of the encoder's code to ..."
    for recorded in (export_run(run).info["scoring"], inspect_run(run, data).settings):
        assert recorded["score"] == f"{own} (not from the map)" and recorded["residual"] == "l2"
        assert "topk_percent" not in recorded and "border" not in recorded  # which it does not use
    page = build_report(inspect_run(run, data), run_dir=run)
    assert html.escape(f"score: {own} (not from the map)") in page and "topk percent" not in page


def test_parity_of_scores_that_are_all_zero_is_their_plain_difference():
    from udd_core.export import parity

    maps = np.ones((2, 1, 4, 4), np.float32)
    zero = np.zeros(2)  # a latent-knn run of one image, checked on the image it stored: distance 0
    par = parity(maps, zero, maps, np.array([8.5e-8, 0.0], np.float32))  # float round-off, not a "1e22" error
    assert par["max_rel_score_diff"] == pytest.approx(8.5e-8) and par["max_rel_score_diff"] <= TOLERANCE
    assert parity(maps, zero, maps, np.array([0.5, 0.0], np.float32))["max_rel_score_diff"] > TOLERANCE  # still judged
    near = parity(maps, np.array([1e-9, 2.0]), maps, np.array([2e-9, 2.0], np.float32))  # one score near 0
    assert near["max_rel_score_diff"] == pytest.approx(1e-9 / 2e-6)  # floored at 1e-6 of the largest, as before


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs a folder no file can be created in")
def test_an_unwritable_or_slashed_onnx_is_refused_before_the_export(capsys, ae_run, tmp_path, monkeypatch):
    """QA: `--onnx /readonly/m.onnx` failed with "[Errno 13] ..." after the whole build and parity check, and
    `--onnx slash.onnx/` wrote slash.onnx."""
    import udd_core.export as export

    def no_export(*args, **kwargs):
        raise AssertionError("the export ran")

    monkeypatch.setattr(export, "export_run", no_export)
    monkeypatch.chdir(tmp_path)
    for out, message in (("/proc/m.onnx", "--onnx /proc/m.onnx: cannot write into /proc"),
                         ("slash.onnx/", "--onnx slash.onnx/: names a folder (it ends in /); give a file name")):
        assert main(["export", str(ae_run), "--onnx", out]) == 2
        assert capsys.readouterr().err == f"udd export: error: {message}\n"
    assert list(tmp_path.iterdir()) == []


def test_a_feature_ae_score_with_its_novelty_factor_says_so_in_the_json(method_runs, data):
    """QA sweep 9: the feature AE's exported JSON described its score as the map's top 1% alone; the graph
    multiplies it by the latent novelty (0.1-0.3x here), so a line computing it from the map flagged every
    part. The JSON, udd score's settings and the units note now say what the score is."""
    run = method_runs("feature-ae")
    det = load_detector(run)
    words = det.describe().get("image_score")
    if not words:
        pytest.skip("this tiny feature-AE run scores without a latent factor")
    assert "latent novelty" in words
    assert export_run(run).info["scoring"]["image_score"] == words
    insp = inspect_run(run, data)
    assert insp.settings["image_score"] == words and insp.factors is not None
    assert "Scores are not in the map's units" in insp.units_note()


@pytest.mark.parametrize("method", ["autoencoder", "memory-bank"])
def test_the_json_gives_inspects_outline_threshold_and_heatmap_top(method_runs, data, method):
    """QA sweep 9: the JSON had the map normalisation but not the pixel threshold of Inspect's cyan outline,
    nor the heatmap's top, so a line could not draw the same outline."""
    run = method_runs(method)
    norm = export_run(run).info["map_normalisation"]
    insp = inspect_run(run, exp_data(run), split="train")  # the same validation images set both
    assert norm["pixel_threshold"] == pytest.approx(insp.pixel_threshold, rel=1e-5)
    assert norm["heatmap_top"] == pytest.approx(insp.scale.vmax, rel=1e-5)
