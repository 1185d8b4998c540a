"""Every numeric option of every `udd` subcommand refuses NaN, infinities and huge-but-finite numbers
with one line that names it (exit 2), before any file is written.

The options are found by walking the argparse tree, so an option added later is covered too.
"""
import argparse

import pytest

from udd_core.cli import joined_negative_numbers, main
from udd_core.cli_parser import build_parser
from udd_core.cli_numbers import NUMERIC_OPTIONS, NumberRange, check_numbers


def numeric_options() -> list[tuple[str, str, str]]:
    """(subcommand, flag, kind) of every option that takes a number: int, float, or a list of ints (C,H,W)."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    found = []
    for command, p in sub.choices.items():
        for a in p._actions:
            if not a.option_strings:
                continue
            if a.type in (int, float):
                found.append((command, a.option_strings[-1], a.type.__name__))
            elif a.metavar and "," in a.metavar:
                found.append((command, a.option_strings[-1], f"ints{a.metavar.count(',') + 1}"))
    return found


OPTIONS = numeric_options()
HUGE = {"float": ["1e308", "-1e308", "nan", "inf"], "int": [str(10**30), str(-10**30)]}


def test_the_walk_finds_the_known_options():
    flags = {(c, f) for c, f, _ in OPTIONS}
    assert {("score", "--smooth"), ("score", "--threshold"), ("generate", "--sigma"), ("generate", "-n"),
            ("train", "--epochs"), ("train", "--lr"), ("shapes", "--input"), ("score", "--size")} <= flags


def base_args(command: str, tmp_path) -> list[str]:
    """Arguments that get a subcommand past argparse; nothing else about them needs to be valid."""
    return {
        "shapes": ["gray-tile-128", "--input", "1,128,128"],
        "train": ["gray-tile-128", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "out")],
        "generate": [str(tmp_path / "run"), "--sigma", "0.5", "-n", "2", "--out", str(tmp_path / "out")],
        "score": [str(tmp_path / "run"), "--data", str(tmp_path / "data")],
        "export": [str(tmp_path / "run"), "--onnx", str(tmp_path / "out" / "model.onnx")],
    }[command]


def cases():
    for command, flag, kind in OPTIONS:
        if kind.startswith("ints"):
            values = [",".join([str(10**30)] * int(kind[4:]))]
        else:
            values = HUGE[kind]
        for v in values:
            yield pytest.param(command, flag, v, id=f"{command} {flag} {v}")


@pytest.mark.parametrize("command, flag, value", list(cases()))
def test_huge_nan_and_infinite_values_are_one_line_refusals(tmp_path, capsys, command, flag, value):
    rc = main([command, *base_args(command, tmp_path), f"{flag}={value}" if flag.startswith("--") else flag, *(
        [] if flag.startswith("--") else [value])])
    out, err = capsys.readouterr()
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith(f"udd {command}: error: {flag}") and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_a_resumed_run_refuses_a_huge_epoch_count(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "run"), "--resume", "--epochs", str(10**30)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--epochs: expected an integer in [1, 1000000]" in err


def test_the_ranges_are_closed_and_say_so():
    r = NumberRange("topk", "--topk", False, 0, 100, lo_open=True)
    assert r.refusal(100) is None and r.refusal(1e-9) is None
    assert r.refusal(0) == "--topk: must be a number in (0, 100], got 0"
    assert r.refusal(float("nan")) == "--topk: must be a number in (0, 100], got nan"
    # QA sweep 12: "got 100" for 100.0001 read as an allowed value; every digit that counts is quoted
    assert r.refusal(100.0001).endswith("got 100.0001") and r.refusal(1.0000001e9).endswith("got 1000000100")
    assert r.refusal(0.0).endswith("got 0") and r.refusal(float("inf")).endswith("got inf")
    assert r.refusal(-1e10).endswith("got -1e+10")  # QA sweep 13: "got -10000000000"


@pytest.mark.parametrize("value", ["-1e9", "-1e-3", "-inf"])
def test_a_negative_number_in_e_notation_is_a_value_not_an_option(value):
    """QA sweep 12: `--threshold -1e9`, the README's own bound, was refused as "expected one argument"."""
    assert joined_negative_numbers(["score", "r", "--threshold", value, "--json"]) == [
        "score", "r", f"--threshold={value}", "--json"]
    assert joined_negative_numbers(["score", "r", "--threshold", "-x"]) == ["score", "r", "--threshold", "-x"]
    assert joined_negative_numbers(["score", "r", "--threshold=1", value]) == ["score", "r", "--threshold=1", value]
    assert build_parser().parse_args(joined_negative_numbers(["score", "r", "--threshold", value])).threshold == \
        float(value)
    assert "an integer in [1, 10000]" in check_numbers(argparse.Namespace(command="generate", n=10_001, sigma=None,
                                                                         seed=0))
    assert check_numbers(argparse.Namespace(command="generate", n=10_000, sigma=1e6, seed=2**63 - 1)) is None
    assert check_numbers(argparse.Namespace(command="shapes")) is None  # no plain numbers there


def test_the_sample_limit_is_the_generators():
    from udd_core.generation import MAX_SAMPLES

    assert next(r.hi for r in NUMERIC_OPTIONS["generate"] if r.flag == "-n") == MAX_SAMPLES


def test_the_opset_range_is_the_exporters():
    from udd_core.export import OPSETS

    r = next(r for r in NUMERIC_OPTIONS["export"] if r.flag == "--opset")
    assert (r.lo, r.hi) == OPSETS


def test_engine_errors_name_the_option_the_user_typed(capsys, tmp_path):
    import argparse

    from udd_core.cli import as_option_error

    score = argparse.Namespace(command="score", run="r", border=500, residual="l2", data=None)
    assert as_option_error("border: must be an integer of pixels in [0, 127]", score) == \
        "--border: must be an integer of pixels in [0, 127]"
    assert as_option_error("residual: must be one of knn", score) == "--residual: must be one of knn"
    train = argparse.Namespace(command="train", size="4,4", train_on="x", config="c")
    assert as_option_error("size 4x4: needs at least 16x16 pixels", train) == "--size 4x4: needs at least 16x16 pixels"
    assert as_option_error("train_on: no images of class 'x'", train) == "--train-on: no images of class 'x'"
    assert as_option_error("config: not valid JSON", train) == "config: not valid JSON"  # a positional: as it is
    generate = argparse.Namespace(command="generate", n=0, cls="x")
    assert as_option_error("n must be >= 1, got 0", generate) == "-n must be >= 1, got 0"  # its own spelling
    assert as_option_error("cls: unknown", generate) == "--class: unknown"
    assert as_option_error("output: needs wafer maps", train) == "output: needs wafer maps"  # no such option
    assert main(["train", "--method", "memroy-bank", "--data", str(tmp_path), "--out", str(tmp_path / "r")]) == 2
    assert capsys.readouterr().err.startswith("udd train: error: --method: must be one of")


def test_integer_ranges_are_written_as_integers(capsys):
    """QA sweep 9: `--seed 9223372036854775808` was told "[0, 9.22337e+18]"; the README says 2^63-1."""
    from udd_core.cli import main

    assert main(["generate", "x", "-n", "2", "--seed", "9223372036854775808", "--out", "o"]) == 2
    assert "--seed: must be an integer in [0, 9223372036854775807], got 9223372036854775808" in capsys.readouterr().err
