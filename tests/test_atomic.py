"""Tests for udd_core.atomic: a write either replaces the file whole or leaves it untouched."""
from __future__ import annotations

import errno
import os
from types import SimpleNamespace

import pytest

from udd_core import atomic
from udd_core.atomic import (leftover_temps, remove_leftover_temps, write_atomic, write_bytes_atomic, write_files,
                              write_text_atomic)
from udd_core.notices import error_line


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


def test_a_new_output_that_appeared_meanwhile_is_not_replaced(tmp_path):
    """QA sweep 21: two `udd score --report r.html` at once both said "wrote"; the first report was lost though
    neither had --force. Published without replace, the second finds the name taken and writes nothing."""
    target = tmp_path / "r.html"

    def other_writer_first(tmp):
        target.write_text("the other run's report")
        tmp.write_text("this run's report")

    with pytest.raises(FileExistsError) as e:
        write_atomic(target, other_writer_first, replace=False)
    assert error_line(e.value) == f"{target}: appeared while this command ran (another writer?); nothing written " \
                                   "there, pass --force to overwrite it"
    assert target.read_text() == "the other run's report" and sorted(tmp_path.iterdir()) == [target]
    write_text_atomic(tmp_path / "new.csv", "a", replace=False)  # a free name: written
    assert (tmp_path / "new.csv").read_text() == "a"


def test_a_full_disk_is_named_by_the_file_being_written(tmp_path, monkeypatch):
    """QA sweep 21: "[Errno 28] No space left on device", and torch's "unexpected pos", named no file."""
    target = tmp_path / "trainer.pt"

    def full(tmp):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError) as e:
        write_atomic(target, full)
    assert error_line(e.value) == f"{target}: no space left on device"

    def torch_full(tmp):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 615552 vs 615440")

    monkeypatch.setattr(atomic.shutil, "disk_usage", lambda p: SimpleNamespace(free=2**20))
    with pytest.raises(OSError, match="no space left on the disk to write it") as e:
        write_atomic(target, torch_full)
    assert e.value.filename == str(target) and e.value.errno == errno.ENOSPC
    monkeypatch.setattr(atomic.shutil, "disk_usage", lambda p: SimpleNamespace(free=2**40))
    with pytest.raises(RuntimeError, match="unexpected pos"):  # room on the disk: another fault, as it is
        write_atomic(target, torch_full)
    assert not any(tmp_path.iterdir())


def test_a_name_near_the_length_limit_gets_a_temp_file_that_fits(tmp_path):
    """QA sweep 21: a legal 251-byte name was refused as ".aaa…html.tmp-PID: file name too long"."""
    target = tmp_path / ("a" * 246 + ".html")
    write_text_atomic(target, "report")
    assert target.read_text() == "report" and sorted(tmp_path.iterdir()) == [target]


def test_an_export_killed_part_way_is_undone_by_the_next_write_there(tmp_path, dead_pid):
    """QA sweep 21: kill -9 during `udd score --heatmaps DIR --force` left DIR mixed (its README.txt from the new
    run over PNGs of both) and the old content in hidden .old files that nothing restored or removed."""
    out = tmp_path / "hm"
    write_files(out, ["a.png", "b.png", "README.txt"], [b"A", b"B", b"old key"])
    (out / "a.png").write_bytes(b"new A")  # the killed export had replaced a.png and README.txt ...
    (out / f".a.png.{dead_pid}-0123abcd.old").write_bytes(b"A")  # ... keeping their old content
    (out / "README.txt").write_bytes(b"new key")
    (out / f".README.txt.{dead_pid}-89abcdef.old").write_bytes(b"old key")
    (out / f".b.png.tmp-{dead_pid}").write_bytes(b"hal")  # and was writing b.png
    live = out / f".x.png.{os.getpid()}-00000000.old"  # another export at work: not touched
    live.write_bytes(b"x")
    with pytest.warns(UserWarning, match="killed part way .* the 2 files it had replaced got their old content back"):
        with pytest.raises(ValueError, match="already exists"):  # without --force: refused, yet the folder is whole
            write_files(out, ["a.png"], [b"C"])
    assert {p.name: p.read_bytes() for p in out.iterdir()} == {"a.png": b"A", "b.png": b"B", "README.txt": b"old key",
                                                                live.name: b"x"}


def test_an_interrupt_right_after_the_old_content_is_kept_leaves_no_copy(tmp_path, monkeypatch):
    """QA sweep 21: a Ctrl-C between keeping a file's old content and noting it left a hidden .old file."""
    out = tmp_path / "hm"
    write_files(out, ["a.png"], [b"A"])
    keep = atomic._keep_old

    def keep_then_interrupt(target, old):
        keep(target, old)
        raise KeyboardInterrupt

    monkeypatch.setattr(atomic, "_keep_old", keep_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        write_files(out, ["a.png"], [b"C"], force=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == {"a.png": b"A"}


def test_a_symlinked_output_is_written_through(tmp_path):
    """QA sweep 21: `--force` onto a symlink replaced the link with a file, leaving the file it named as it was."""
    real = tmp_path / "shared" / "report.html"
    real.parent.mkdir()
    real.write_text("old")
    link = tmp_path / "report.html"
    link.symlink_to(real)
    write_text_atomic(link, "new")
    assert link.is_symlink() and real.read_text() == "new"
    dangling = tmp_path / "later.csv"
    dangling.symlink_to(tmp_path / "shared" / "later.csv")
    write_text_atomic(dangling, "a", replace=False)
    assert dangling.is_symlink() and (tmp_path / "shared" / "later.csv").read_text() == "a"
