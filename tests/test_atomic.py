"""Tests for udd_core.atomic: a write either replaces the file whole or leaves it untouched."""
from __future__ import annotations

import os

import pytest

from udd_core.atomic import (leftover_temps, remove_leftover_temps, write_atomic, write_bytes_atomic, write_files,
                              write_text_atomic)


def test_write_replaces_whole_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "config.json"
    write_text_atomic(target, "old\n")
    write_bytes_atomic(target, b"new", durable=True)
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]


def test_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "model.safetensors"
    target.write_bytes(b"good weights")

    def half_then_crash(tmp):
        tmp.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, half_then_crash)
    assert target.read_bytes() == b"good weights"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]


def test_missing_folder_is_an_oserror_and_creates_nothing(tmp_path):
    with pytest.raises(OSError):
        write_text_atomic(tmp_path / "no" / "such.txt", "x")
    assert not (tmp_path / "no").exists()


def test_write_files_refuses_to_overwrite_unless_forced(tmp_path):
    out = tmp_path / "pngs"
    assert write_files(out, ["a.png", "b.png"], [b"1", b"2"]) == [out / "a.png", out / "b.png"]
    made = []

    def lazy():  # nothing is even made when a name is taken
        for data in (b"3", b"4"):
            made.append(data)
            yield data

    with pytest.raises(ValueError, match=r"b.png: already exists \(pass --force"):
        write_files(out, ["c.png", "b.png"], lazy())
    assert made == [] and not (out / "c.png").exists() and (out / "b.png").read_bytes() == b"2"
    write_files(out, ["c.png", "b.png"], lazy(), force=True)
    assert (out / "b.png").read_bytes() == b"4" and sorted(p.name for p in out.iterdir()) == ["a.png", "b.png", "c.png"]
    with pytest.raises(ValueError, match="exists and is not a folder"):
        write_files(out / "a.png", ["x.png"], [b"5"])


def _stopping_after(n, exc):
    """Payloads that raise ``exc`` after ``n`` of them (a Ctrl-C, or a failing image, part way)."""
    for i in range(n):
        yield bytes([i])
    raise exc


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), ValueError("bad image")])
def test_write_files_stopped_part_way_removes_what_it_made(tmp_path, exc):
    """QA sweep 15b: an interrupted `udd generate -n 3000` left 56 of the PNGs, and a rerun was refused."""
    out = tmp_path / "new" / "pngs"
    with pytest.raises(type(exc)):
        write_files(out, ["a.png", "b.png", "c.png"], _stopping_after(2, exc))
    assert not (tmp_path / "new").exists()  # both folders it made are gone with its files


def test_write_files_stopped_part_way_keeps_what_was_there(tmp_path):
    out = tmp_path / "pngs"
    write_files(out, ["mine.png", "b.png"], [b"m", b"old"])
    with pytest.raises(KeyboardInterrupt):
        write_files(out, ["a.png", "b.png", "c.png"], _stopping_after(2, KeyboardInterrupt()), force=True)
    # a.png was new and goes; b.png, replaced under --force, gets its old content back; the user's file stays;
    # no kept copy is left behind (an export cut short is the old one, not half of each)
    assert sorted(p.name for p in out.iterdir()) == ["b.png", "mine.png"]
    assert (out / "b.png").read_bytes() == b"old" and (out / "mine.png").read_bytes() == b"m"
    write_files(out, ["a.png", "b.png"], [b"A", b"B"], force=True)  # a whole write replaces for good
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png", "mine.png"]
    assert (out / "b.png").read_bytes() == b"B"


def test_a_new_file_gets_the_umask_mode_and_a_replaced_one_keeps_its_own(tmp_path):
    """QA: safetensors writes its file 0600, so a run's weights were unreadable to a colleague who could read
    its config (0644)."""
    import os

    import torch

    from udd_core.tensor_files import write_tensors

    old = os.umask(0o022)
    try:
        write_tensors(tmp_path / "w.safetensors", {"a": torch.zeros(2)})
        write_atomic(tmp_path / "t.txt", lambda p: p.write_text("x"))
        assert (tmp_path / "w.safetensors").stat().st_mode & 0o777 == 0o644
        assert (tmp_path / "t.txt").stat().st_mode & 0o777 == 0o644
        os.chmod(tmp_path / "w.safetensors", 0o640)  # the user's own choice survives a rewrite
        write_tensors(tmp_path / "w.safetensors", {"a": torch.ones(2)})
        assert (tmp_path / "w.safetensors").stat().st_mode & 0o777 == 0o640
        os.umask(0o077)
        write_atomic(tmp_path / "private.txt", lambda p: p.write_text("x"))
        assert (tmp_path / "private.txt").stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old)


def test_outputs_are_refused_inside_a_run_or_model_folder(tmp_path):
    """QA sweep 15: heatmaps, generated images and ONNX files were written among a run's own files."""
    from udd_core.atomic import check_new_file, check_new_folder

    run, ref = tmp_path / "run", tmp_path / "ref"
    run.mkdir()
    (run / "train.json").write_text("{}")
    (run / "status.json").write_text("{}")
    ref.mkdir()
    for name in ("AE_config.txt", "AE_state.save"):  # a reference-package model folder
        (ref / name).write_bytes(b"")
    for call in (lambda: check_new_folder(run, "--heatmaps run"), lambda: check_new_folder(run / "gen", "--out x"),
                 lambda: check_new_file(run / "model.onnx", "--onnx x"), lambda: check_new_file(ref / "s.csv", "--csv x")):
        with pytest.raises(ValueError, match="lies in the run or model folder .*; choose a place outside it$"):
            call()
    assert check_new_folder(tmp_path / "heatmaps", "--heatmaps h") == tmp_path / "heatmaps"  # beside the run: fine
    assert check_new_file(tmp_path / "r.html", "--report r") == tmp_path / "r.html"
    (tmp_path / "mine.safetensors").write_bytes(b"")  # a stray weights file marks no model folder
    assert check_new_file(tmp_path / "s.csv", "--csv s") == tmp_path / "s.csv"


def test_write_files_through_dot_dot_makes_only_the_folder_it_names(tmp_path):
    written = write_files(tmp_path / "a" / ".." / "b", ["x.png"], [b"1"])
    assert written == [tmp_path.resolve() / "b" / "x.png"] and not (tmp_path / "a").exists()


def test_temp_files_of_a_killed_writer_are_found_and_only_those(tmp_path, dead_pid):
    """QA sweep 21: kill -9 during a save left `.NAME.tmp-PID` beside a run for good; a live writer's temp file,
    a kept `.old` copy (a user's content under --force) and other files are never taken for one."""
    dead = tmp_path / f".model.safetensors.tmp-{dead_pid}"
    live = tmp_path / f".config.json.tmp-{os.getpid()}"
    others = [tmp_path / ".scores.csv.1a2b3c4d.old", tmp_path / "status.json", tmp_path / f"x.tmp-{dead_pid}"]
    for p in (dead, live, *others):
        p.write_bytes(b"x")
    assert leftover_temps(tmp_path) == [dead]
    assert remove_leftover_temps(tmp_path) == [dead] and not dead.exists()
    assert all(p.exists() for p in (live, *others))
