"""`udd shapes`: table, JSON, exit codes and --fix."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from udd_core.cli import main


@pytest.fixture
def cfg_file(tmp_path, tiny_config):
    p = tmp_path / "cfg.json"
    p.write_text(json.dumps(tiny_config))
    return p


def test_ok_table(cfg_file, capsys):
    assert main(["shapes", str(cfg_file), "--input", "1,32,32"]) == 0
    out = capsys.readouterr().out
    assert "encoder.0.0" in out and "latent" in out and "params" in out


def test_a_model_preset_name_is_a_config(capsys):
    from udd_core.model import build_model
    from udd_core.presets import model_presets

    preset = model_presets()["gray-tile-128"]
    c, h, w = preset.input_shape
    assert main(["shapes", "gray-tile-128", "--input", f"{c},{h},{w}", "--json"]) == 0
    params = sum(p.numel() for p in build_model(preset.config).parameters())
    assert json.loads(capsys.readouterr().out)["params"] == params
    assert main(["shapes", "gray-tile-128", "--input", f"{c},{h + 1},{w + 1}"]) == 1  # 129 does not mirror
    capsys.readouterr()
    assert main(["shapes", "gray-tile-128", "--json"]) == 0  # without --input: the preset's own input
    assert json.loads(capsys.readouterr().out)["image_input"] == [c, h, w]


def test_a_config_file_needs_input(cfg_file, capsys):
    assert main(["shapes", str(cfg_file)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("udd shapes: error: --input: required for a config file")


def test_json_mismatch_exit_1_and_fix(cfg_file, tmp_path, capsys):
    assert main(["shapes", str(cfg_file), "--input", "1,33,30", "--json"]) == 1
    d = json.loads(capsys.readouterr().out)
    assert d["ok"] is False and d["problems"] and d["suggested_config"]
    assert d["input"] == [1, 33, 30]
    assert [s["name"] for s in d["stages"]][:3] == ["enc1", "enc2", "latent"]
    fixed = tmp_path / "fixed.json"
    assert main(["shapes", str(cfg_file), "--input", "1,33,30", "--fix", str(fixed)]) == 1
    assert main(["shapes", str(fixed), "--input", "1,33,30"]) == 0
    # never clobbers a user's file without --force
    assert main(["shapes", str(cfg_file), "--input", "1,33,30", "--fix", str(fixed)]) == 2
    # a config that already fits is written unchanged (exit 0), so OUT always exists afterwards
    same = tmp_path / "same.json"
    assert main(["shapes", str(fixed), "--input", "1,33,30", "--fix", str(same)]) == 0
    assert json.loads(same.read_text()) == json.loads(fixed.read_text())
    assert "unchanged" in capsys.readouterr().err


@pytest.mark.parametrize("out, needle", [("exists.json", "already exists (pass --force"), ("a_folder", "is a folder"),
                                         ("no/such/f.json", "no such folder")])
def test_a_bad_fix_target_is_one_line_before_any_report(cfg_file, tmp_path, capsys, out, needle):
    (tmp_path / "exists.json").write_text("{}")
    (tmp_path / "a_folder").mkdir()
    assert main(["shapes", str(cfg_file), "--input", "1,33,30", "--fix", str(tmp_path / out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and needle in captured.err  # no table first
    assert (tmp_path / "exists.json").read_text() == "{}"


def test_fix_writes_only_a_config_file_outside_run_folders(cfg_file, tmp_path, capsys):
    """QA sweep 15: --fix ... --force wrote JSON over a run's model.safetensors, and said "unchanged"."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.safetensors").write_bytes(b"weights")
    (run / "config.json").write_text("{}")  # with its weights: a model folder
    for target, needle in ((run / "model.safetensors", "lies in the run or model folder"),
                           (run / "config.json", "lies in the run or model folder"),
                           (tmp_path / "new.safetensors", "the file name must end in .json")):
        assert main(["shapes", str(cfg_file), "--input", "1,33,30", "--fix", str(target), "--force"]) == 2
        assert needle in capsys.readouterr().err
    assert (run / "model.safetensors").read_bytes() == b"weights" and (run / "config.json").read_text() == "{}"


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"udd {__import__('udd_core').__version__}"


@pytest.mark.parametrize("content, args", [
    ('{"block_ker": [3]}', ["--input", "1,32,32"]),
    ("__import__('os').system('echo pwned')", ["--input", "1,32,32"]),
    (None, ["--input", "1,32"]),
    (None, ["--input", "3,32,32"]),
])
def test_errors_exit_2_with_one_line(tmp_path, cfg_file, content, args, capsys):
    path = cfg_file
    if content is not None:
        path = tmp_path / "bad.txt"
        path.write_text(content)
    assert main(["shapes", str(path), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("udd shapes: error:") and "\n" not in err
    assert "pwned" not in capsys.readouterr().out


def test_console_script_runs_without_traceback(cfg_file):
    r = subprocess.run([sys.executable, "-m", "udd_core.cli", "shapes", str(cfg_file), "--input", "x"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_shapes_and_help_start_without_torch(cfg_file):
    """Shape checks are pure arithmetic: the command must not pay torch's seconds-long import."""
    code = ("import sys; from udd_core.cli import main; rc = main(['shapes', sys.argv[1], '--input', '1,64,64']); "
            "import contextlib, io; h = io.StringIO()\n"
            "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(h): main(['--help'])\n"
            "print('torch' in sys.modules, rc in (0, 1), 'train' in h.getvalue())")
    r = subprocess.run([sys.executable, "-c", code, str(cfg_file)], capture_output=True, text=True)
    assert r.stdout.strip().splitlines()[-1] == "False True True", r.stderr


def test_a_side_beyond_the_apps_limit_is_refused_like_the_app_refuses_it(cfg_file, capsys):
    """One limit for H and W everywhere: the Design and Train pages' boxes stop at MAX_SIDE too."""
    from streamlit.testing.v1 import AppTest

    from udd_core.image_shapes import MAX_SIDE

    assert main(["shapes", str(cfg_file), "--input", f"1,{MAX_SIDE + 1},32"]) == 2
    assert f"--input: expected 3 integers in [1, {MAX_SIDE}]" in capsys.readouterr().err
    design = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "pages" / "design.py"),
                               default_timeout=30).run()
    assert design.number_input(key="design_h").max == design.number_input(key="design_w").max == MAX_SIDE


def test_a_fix_name_ending_in_a_slash_is_refused(tmp_path, capsys, monkeypatch):
    """QA: `--fix fixslash.json/` wrote a file fixslash.json."""
    monkeypatch.chdir(tmp_path)
    assert main(["shapes", "gray-tile-128", "--fix", "fixslash.json/"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ("udd shapes: error: --fix fixslash.json/: names a folder (it "
                                                   "ends in /); give a file name\n")
    assert list(tmp_path.iterdir()) == []


def test_the_design_pages_warnings_and_compression_are_said_too(capsys):
    """QA sweep 8: the Design page warned that a 16x1x1 latent on a 5x5 input can learn the identity, and
    wrote the compression as 1:16; `udd shapes` said neither, and wrote 0.0625."""
    from udd_core.architecture import design_warnings
    from udd_core.image_shapes import propagate_image
    from udd_core.presets import model_presets

    expected = design_warnings(propagate_image(model_presets()["gray-tile-128"].config, (1, 5, 5)))
    assert len(expected) == 2  # the identity and the 1x1 collapse
    assert main(["shapes", "gray-tile-128", "--input", "1,5,5"]) in (0, 1)
    out = capsys.readouterr().out
    assert [line[len("warning: "):] for line in out.splitlines() if line.startswith("warning: ")] == expected
    main(["shapes", "gray-tile-128", "--input", "1,5,5", "--json"])
    assert json.loads(capsys.readouterr().out)["warnings"] == expected
    assert main(["shapes", "gray-tile-128", "--input", "1,16,16"]) == 0
    out = capsys.readouterr().out
    assert "compression 1:16 " in out and "warning:" not in out
