"""Gaps found in a QA sweep of the command line: run names, refusals that name what the user typed."""
import json
from pathlib import Path

import pytest

from udd_core.cli import main


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


def test_generate_takes_a_run_name_under_udd_runs_dir(tmp_path, tiny_config, image_folder, monkeypatch, capsys):
    runs_dir = tmp_path / "runs"
    monkeypatch.setenv("UDD_RUNS_DIR", str(runs_dir))
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(tiny_config))
    assert main(["train", str(cfg), "--data", str(image_folder), "--out", str(runs_dir / "r1"), "--size", "32,32",
                 "--epochs", "1", "--batch-size", "4", "--device", "cpu", "--precision", "float32"]) == 0
    capsys.readouterr()
    out = tmp_path / "gen"
    # By name, as `udd score r1` and `udd export r1` take it.
    assert main(["generate", "r1", "-n", "2", "--out", str(out), "--sigma", "0.1"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["sample_0000.png", "sample_0001.png"]
    capsys.readouterr()
    assert main(["generate", "no-such-run", "-n", "1", "--out", str(tmp_path / "gen2")]) == 2
    assert "no-such-run: no such run or model folder" in _one_error_line(capsys)
    assert not (tmp_path / "gen2").exists()


@pytest.mark.parametrize("extra, flag", [
    (["--epochs", "3"], "--epochs"), (["--lr", "0.5"], "--lr"), (["--preset", "wafer"], "--preset"),
    (["--loss", "ssim"], "--loss"), (["--noise-patches", "2"], "--noise-patches"),
    (["--fixed-order"], "--fixed-order"), (["--batch-size", "8"], "--batch-size"),
])
def test_memory_bank_refuses_training_loop_options(tmp_path, image_folder, capsys, extra, flag):
    """A one-pass fit would record these in train.json and ignore them; refused before any file is written."""
    out = tmp_path / "mb"
    assert main(["train", "--method", "memory-bank", "--data", str(image_folder), "--out", str(out),
                 "--size", "32,32", *extra]) == 2
    line = _one_error_line(capsys)
    assert line.startswith(f"udd train: error: {flag}: --method memory-bank is fitted in one pass"), line
    assert not out.exists()


def test_method_refusals_name_the_size_or_the_config_not_option(tmp_path, image_folder, tiny_config, capsys):
    out = tmp_path / "r"
    assert main(["train", "--method", "memory-bank", "--data", str(image_folder), "--out", str(out),
                 "--size", "4,4"]) == 2
    line = _one_error_line(capsys)
    assert "--size 4x4: the memory-bank method needs at least 16x16" in line and "--option" not in line
    # A pixel config given to the feature AE: its channels do not fit the features; the config is named.
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(tiny_config))
    assert main(["train", str(cfg), "--method", "feature-ae", "--data", str(image_folder), "--out", str(out),
                 "--size", "32,32"]) == 2
    line = _one_error_line(capsys)
    assert f"error: {cfg} at 32x32: input shape: the lite0 features have" in line and "--option" not in line
    # An --option the method refuses is still named as the option.
    assert main(["train", str(cfg), "--method", "dsvdd", "--data", str(image_folder), "--out", str(out),
                 "--size", "32,32", "--option", "svdd_epochs=-1"]) == 2
    assert "error: --option svdd_epochs: expected an integer" in _one_error_line(capsys)
    assert not out.exists()


def test_kind_mismatch_note_does_not_promise_reconstructions():
    """The note is shown for every method, most of which reconstruct nothing."""
    from udd_core.data import kind_mismatch

    note = kind_mismatch("mvtec", "wafer")
    assert note.endswith("its scores (and any reconstructions) mean little here")


def test_score_and_inspect_refuse_an_image_score_kind_for_a_latent_distance(tmp_path, tiny_config, monkeypatch,
                                                                            capsys):
    """A latent-kNN (or Deep SVDD) image score is its own distance: --score/--topk and Inspect's choice do nothing."""
    from streamlit.testing.v1 import AppTest

    from inspect_fixtures import make_mvtec

    data = make_mvtec(tmp_path / "parts")
    runs_dir = tmp_path / "runs"
    monkeypatch.setenv("UDD_RUNS_DIR", str(runs_dir))
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(tiny_config))
    assert main(["train", str(cfg), "--method", "latent-knn", "--data", str(data), "--out", str(runs_dir / "lk"),
                 "--size", "32,32", "--epochs", "1", "--batch-size", "4", "--device", "cpu",
                 "--precision", "float32"]) == 0
    capsys.readouterr()
    for extra, flag in ((["--score", "max"], "--score"), (["--topk", "5"], "--topk"), (["--border", "2"], "--border")):
        assert main(["score", "lk", *extra]) == 2
        assert f"error: {flag}: a latent-knn run scores images by its own distance" in _one_error_line(capsys)
    assert main(["score", "lk", "--smooth", "1", "--json"]) == 0  # the map's options still apply
    capsys.readouterr()
    page = str(Path(__file__).resolve().parents[1] / "pages" / "inspect.py")
    app = AppTest.from_file(page, default_timeout=60).run()
    assert not app.exception and not app.error
    assert app.selectbox(key="insp_score").disabled and app.number_input(key="insp_topk").disabled
    assert app.selectbox(key="insp_score").proto.options == ["the method's own"] * 3  # not "mean" (QA sweep 21)
    assert not app.slider(key="insp_smooth").disabled


def test_a_size_whose_images_cannot_fit_in_memory_is_refused_before_loading(tmp_path, tiny_config, image_folder,
                                                                           monkeypatch, capsys):
    """--size 100000,100000 used to load until the kernel killed the process (exit 137, no message)."""
    from udd_core import sources

    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(tiny_config))
    from udd_core.image_shapes import batch_bytes

    step = batch_bytes(tiny_config, (1, 32, 32), "autoencoder", 2)  # a training step on a batch of 2
    monkeypatch.setattr(sources, "available_bytes", lambda: 8 * 32 * 32 + step - 1)  # one byte short
    out = tmp_path / "r"
    argv = ["train", str(cfg), "--data", str(image_folder), "--out", str(out), "--size", "32,32", "--batch-size"]
    assert main([*argv, "2"]) == 2
    line = _one_error_line(capsys)
    # QA sweep 10: the step's activations were not counted, and 4096x4096 ran until the kernel killed it
    assert "--size 32,32: the 8 images and a training step on 2 of them would take" in line
    assert "give a smaller --size or --batch-size" in line
    assert not out.exists()
    assert main([*argv, "1", "--epochs", "1"]) == 0  # half the step fits
    capsys.readouterr()
    # A step never holds more than the images there are (QA sweep 11: --batch-size 200000 on 36 images
    # was refused as 2.08e+03 GiB): 8 images, so a batch of 200000 is a step on 8, which fits a step of 8.
    monkeypatch.setattr(sources, "available_bytes", lambda: 8 * 32 * 32 + 4 * step)
    assert main([*argv, "200000", "--epochs", "1", "--out", str(tmp_path / "r3")]) == 0
    capsys.readouterr()
    out = tmp_path / "r2"
    monkeypatch.setattr(sources, "available_bytes", lambda: 8 * 32 * 32 - 1)  # one byte short of the 8 images
    assert sources.available_bytes.__name__ == "<lambda>" and main(
        ["train", "--method", "memory-bank", "--data", str(image_folder), "--out", str(out), "--size", "32,32"]) == 2
    assert "the 8 images would take" in _one_error_line(capsys)  # 3-channel images plus backbone features
    monkeypatch.undo()
    assert sources.available_bytes() > 0  # this machine reports its memory


def test_shapes_refuses_a_method_without_an_autoencoder(capsys):
    assert main(["shapes", "gray-tile-128", "--input", "1,64,64", "--method", "memory-bank"]) == 2
    assert "--method memory-bank: takes no autoencoder config" in _one_error_line(capsys)
    assert main(["shapes", "gray-tile-128", "--input", "1,64,64", "--method", "dsvdd"]) == 0  # an AE underneath


@pytest.mark.parametrize("argv, needle", [
    (["train", "--epochs", "1e308", "--out", "x"], "udd train: error: argument --epochs: invalid int value: '1e308'"),
    (["generate", "r", "-n", "2.5", "--out", "x"], "udd generate: error: argument -n: invalid int value: '2.5'"),
    (["score"], "udd score: error: the following arguments are required: RUN"),
])
def test_argparse_refusals_are_one_line_too(argv, needle, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    assert needle in _one_error_line(capsys)


@pytest.mark.parametrize("val_split,noted", [("0", True), ("0.25", False)])
def test_a_knn_run_without_validation_images_says_its_threshold_flags_every_unseen_image(
        tmp_path, tiny_config, capsys, val_split, noted):
    """QA: a latent-knn run with no validation split scores its training images 0 (each its own neighbour): the
    threshold became 0 and the FPR 1.0, with only the general 'more false positives' note."""
    from inspect_fixtures import make_mvtec

    data = make_mvtec(tmp_path / "parts")
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(tiny_config))
    run = tmp_path / "lk"
    assert main(["train", str(cfg), "--method", "latent-knn", "--k", "1", "--data", str(data), "--out", str(run),
                 "--size", "32,32", "--epochs", "1", "--batch-size", "4", "--device", "cpu", "--precision", "float32",
                 "--val-split", val_split]) == 0
    capsys.readouterr()
    assert main(["score", str(run), "--data", str(data), "--json"]) == 0
    captured = capsys.readouterr()
    out, err = json.loads(captured.out), captured.err
    seen = [n for n in out["notices"] if "scores them as seen" in n]
    assert bool(seen) is noted
    if noted:
        assert out["threshold"] == 0 and seen[0].startswith("every training image scores 0:")
        assert f"warning: {seen[0]}" in err  # a caution: every number after it reads otherwise (QA sweep 13)
        # QA sweep 14: it came with "no validation split" and "too few to measure an FPR", which it says itself
        assert not [n for n in out["notices"] if "no validation split" in n or "too few" in n]
        assert "--threshold" in seen[0]


def test_a_run_of_one_training_image_is_not_said_to_keep_its_images(tmp_path, capsys):
    """QA sweep 8: a pixel AE trained on a single image (no validation split possible) got the latent-kNN note
    "this method keeps its training images": one score always equals itself."""
    from inspect_fixtures import make_mvtec, make_run
    from udd_core.inspection import inspect_run

    data = make_mvtec(tmp_path / "parts", n_train=1)
    insp = inspect_run(make_run(tmp_path / "one", data, val_split=0.0), data)
    assert insp.normal_source == "training" and len(insp.normal_scores) == 1
    assert not any("scores them as seen" in n for n in insp.notices), insp.notices


def test_a_quoted_home_folder_is_expanded_in_every_path_option(monkeypatch, tmp_path):
    """QA sweep 15: only --data expanded "~"; `--out "~/x"` made a folder named "~" in the working folder."""
    from udd_core.cli import PATH_OPTIONS, expand_home
    from udd_core.cli_parser import build_parser

    monkeypatch.setenv("HOME", str(tmp_path))
    args = expand_home(build_parser().parse_args(["score", "~/runs/r", "--data", "~/d", "--csv", "~/s.csv",
                                                 "--heatmaps", "~/h", "--report", "~/r.html"]))
    want = [str(tmp_path / p) for p in ("runs/r", "d", "s.csv", "h", "r.html")]
    assert [args.run, args.data, args.csv, args.heatmaps, args.report] == want
    train = expand_home(build_parser().parse_args(["train", "cfg.json", "--out", "~/new", "--data", "x~y"]))
    assert train.out == str(tmp_path / "new") and train.data == "x~y"  # a "~" inside a name stays
    subparsers = next(a for a in build_parser()._actions if a.dest == "command").choices.values()
    dests = {action.dest for sub in subparsers for action in sub._actions}
    assert set(PATH_OPTIONS) <= dests  # every name is an option some command has

