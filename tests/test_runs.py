"""Run folders: names, atomic files, history, status liveness and listing."""
import json
import os
import socket
import time

import pytest

from udd_core import runs
from udd_core import run_status


# --- names -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["run1", "wafer_26x26", "a-b.c", "A" * 100])
def test_valid_names_pass(name, tmp_path):
    assert runs.validate_run_name(name) == name
    assert runs.run_path(tmp_path, name) == (tmp_path / name).resolve()


@pytest.mark.parametrize("name", ["", "../x", "/abs", "a/b", "a\\b", "..", ".hidden", "a..b", "x" * 101, "sp ace", "é",
                                  "uploads", "y" * 300])
def test_bad_names_refused_naming_the_name(name, tmp_path):
    with pytest.raises(ValueError) as e:
        runs.run_path(tmp_path, name)
    shown = repr(name if len(name) <= 60 else name[:60] + "...")  # QA: a 300-character name was echoed whole
    assert shown in str(e.value) and "\n" not in str(e.value) and len(str(e.value)) < 200


def test_new_run_never_overwrites_and_suggests_a_free_name(tmp_path):
    p = runs.new_run(tmp_path, "exp")
    (p / "train.json").write_text("{}")
    with pytest.raises(ValueError, match="exp-2"):
        runs.new_run(tmp_path, "exp")
    assert (p / "train.json").read_text() == "{}"
    assert runs.unique_run_name(tmp_path, "exp") == "exp-2"
    runs.new_run(tmp_path, "exp-2")
    assert runs.unique_run_name(tmp_path, "exp") == "exp-3"
    assert runs.unique_run_name(tmp_path, "fresh") == "fresh"


def test_empty_existing_folder_is_reused(tmp_path):
    (tmp_path / "empty").mkdir()
    assert runs.new_run(tmp_path, "empty").is_dir()


def test_a_folder_holding_only_a_killed_writers_temp_file_is_a_free_name(tmp_path, dead_pid):
    """QA sweep 21: a run killed during its first write left only `.config.json.tmp-PID`, which no page listed and
    `udd train --out` refused as "not empty (pass --resume)", and --resume as "not a run folder"."""
    killed = tmp_path / "ksave"
    killed.mkdir()
    (killed / f".config.json.tmp-{dead_pid}").write_text("{")
    assert runs.is_empty_dir(killed)
    assert runs.new_run(tmp_path, "ksave") == killed and not any(killed.iterdir())
    (killed / f".config.json.tmp-{os.getpid()}").write_text("{")  # a writer still at work: taken
    with pytest.raises(ValueError, match="already exists and is not empty"):
        runs.new_run(tmp_path, "ksave")


def test_runs_root_under_a_file_gives_a_one_line_storage_error(tmp_path):
    (tmp_path / "afile").write_text("not a folder")
    with pytest.raises(OSError) as e:
        runs.new_run(tmp_path / "afile" / "runs", "r")
    msg = str(e.value)
    assert isinstance(e.value, runs.RunStorageError)
    assert msg.startswith("cannot create") and "afile" in msg and "\n" not in msg


# --- atomic JSON -----------------------------------------------------------------------------

def test_write_json_atomic_round_trips_and_leaves_no_temp(tmp_path):
    runs.write_json_atomic(tmp_path / "a.json", {"x": (1, 2), "p": tmp_path})
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": [1, 2], "p": str(tmp_path)}
    assert [f.name for f in tmp_path.iterdir()] == ["a.json"]


def test_crash_mid_write_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "status.json"
    runs.write_json_atomic(target, {"v": "old"})

    def crash(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(runs.os, "replace", crash)
    with pytest.raises(runs.RunStorageError, match="No space left on device"):
        runs.write_json_atomic(target, {"v": "new"})
    assert json.loads(target.read_text()) == {"v": "old"}
    assert [f.name for f in tmp_path.iterdir()] == ["status.json"]


def test_read_json_default_on_missing_or_garbage(tmp_path):
    (tmp_path / "bad.json").write_text("{nope")
    assert runs.read_json(tmp_path / "bad.json", 7) == 7
    assert runs.read_json(tmp_path / "missing.json") is None


# --- history ---------------------------------------------------------------------------------

def test_history_appends_lines_and_tolerates_a_truncated_tail(tmp_path):
    for e in (1, 2):
        runs.append_history(tmp_path, {"epoch": e, "train_loss": 0.5 / e, "val_loss": float("nan")})
    with open(tmp_path / runs.HISTORY_FILE, "a") as f:
        f.write('{"epoch": 3, "train_lo')  # a writer killed mid-line
    hist = runs.read_history(tmp_path)
    assert [r["epoch"] for r in hist] == [1, 2]
    assert hist[1]["train_loss"] == 0.25 and hist[0]["val_loss"] is None  # NaN is not JSON: null
    assert runs.read_history(tmp_path / "nowhere") == []
    # QA sweep 15: the next record was glued onto the cut line, and lost with it
    runs.append_history(tmp_path, {"epoch": 3, "train_loss": 0.1})
    assert [r["epoch"] for r in runs.read_history(tmp_path)] == [1, 2, 3]
    runs.append_history(tmp_path, {"epoch": 4, "train_loss": 0.1})  # a whole last line: nothing added before it
    assert (tmp_path / runs.HISTORY_FILE).read_text().count("\n\n") == 0


def test_hand_edited_run_files_read_as_missing_where_their_types_are_wrong(tmp_path):
    """QA sweep 15: text for an epoch or a loss, or a number for the data path, were tracebacks in the CLI and
    exception boxes on every page."""
    runs.append_history(tmp_path, {"epoch": 1, "train_loss": 0.5, "val_loss": 0.6})
    with open(tmp_path / runs.HISTORY_FILE, "a") as f:
        f.write('{"epoch": "a", "val_loss": "x", "train_loss": null}\n{"epoch": 3, "train_loss": true}\n')
    runs.append_history(tmp_path, {"epoch": 4, "train_loss": 0.4, "val_loss": None})
    assert [r["epoch"] for r in runs.read_history(tmp_path)] == [1, 4]
    assert runs.train_source({"data": {"path": 5, "kind": "folder"}}) == {"kind": "folder"}
    assert runs.train_source({"data": {"path": "/d", "kind": "folder"}})["path"] == "/d"


def test_history_write_failure_is_a_storage_error(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(runs.RunStorageError, match="cannot write"):
        runs.append_history(tmp_path / "afile", {"epoch": 1})


# --- status ----------------------------------------------------------------------------------

def test_live_running_status_stays_running(tmp_path):
    run_status.write_status(tmp_path, "running", "epoch 1/2")
    st = run_status.read_status(tmp_path)
    assert st["status"] == "running" and st["pid"] == os.getpid() and st["message"] == "epoch 1/2"


def test_running_with_dead_pid_is_interrupted(tmp_path, dead_pid):
    run_status.write_status(tmp_path, "running")
    d = json.loads((tmp_path / runs.STATUS_FILE).read_text())
    d["pid"] = dead_pid
    (tmp_path / runs.STATUS_FILE).write_text(json.dumps(d))
    assert run_status.read_status(tmp_path)["status"] == "interrupted"


def test_running_with_stale_heartbeat_is_interrupted(tmp_path):
    run_status.write_status(tmp_path, "running")
    later = time.time() + run_status.HEARTBEAT_STALE_S + 5
    st = run_status.read_status(tmp_path, now=later)
    assert st["status"] == "interrupted" and "heartbeat" in st["message"]
    assert run_status.read_status(tmp_path, now=time.time() + 5)["status"] == "running"


def test_other_host_is_judged_by_heartbeat_only(tmp_path, dead_pid):
    run_status.write_status(tmp_path, "running")
    d = json.loads((tmp_path / runs.STATUS_FILE).read_text())
    d.update(pid=dead_pid, host=socket.gethostname() + "-elsewhere")
    (tmp_path / runs.STATUS_FILE).write_text(json.dumps(d))
    assert run_status.read_status(tmp_path)["status"] == "running"


def test_finished_status_is_not_second_guessed_and_bad_status_refused(tmp_path, dead_pid):
    run_status.write_status(tmp_path, "finished", "done")
    d = json.loads((tmp_path / runs.STATUS_FILE).read_text())
    d["pid"] = dead_pid
    (tmp_path / runs.STATUS_FILE).write_text(json.dumps(d))
    assert run_status.read_status(tmp_path)["status"] == "finished"
    with pytest.raises(ValueError, match="status"):
        run_status.write_status(tmp_path, "exploded")
    assert run_status.read_status(tmp_path / "none") == {"status": "interrupted",
                                                          "message": "no readable status.json"}
    (tmp_path / runs.STATUS_FILE).write_text(json.dumps({"status": "exploded"}))  # QA sweep 21: readable, unknown
    assert run_status.read_status(tmp_path) == {"status": "interrupted",
                                                "message": "status.json: unknown status 'exploded'"}


# --- listing ---------------------------------------------------------------------------------

def test_list_runs_summarises_each_run(tmp_path, dead_pid):
    a = runs.new_run(tmp_path, "a")
    runs.write_json_atomic(a / runs.TRAIN_FILE, {"created": "2024-01-01T00:00:00+0000"})
    runs.append_history(a, {"epoch": 1, "train_loss": 0.3, "val_loss": 0.4})
    runs.append_history(a, {"epoch": 2, "train_loss": 0.2, "val_loss": 0.25})
    run_status.write_status(a, "finished", "ok")
    b = runs.new_run(tmp_path, "b")
    runs.write_json_atomic(b / runs.TRAIN_FILE, {"created": "2025-01-01T00:00:00+0000"})
    runs.append_history(b, {"epoch": 1, "train_loss": 0.9, "val_loss": None})
    run_status.write_status(b, "running")
    d = json.loads((b / runs.STATUS_FILE).read_text())
    d["pid"] = dead_pid
    (b / runs.STATUS_FILE).write_text(json.dumps(d))
    (tmp_path / "not-a-run").mkdir()
    (tmp_path / "file.txt").write_text("x")

    got = runs.list_runs(tmp_path)
    assert [r.name for r in got] == ["b", "a"]  # newest first
    rb, ra = got
    assert (ra.status, ra.epochs_done, ra.best_val_loss, ra.path) == ("finished", 2, 0.25, a)
    assert (rb.status, rb.epochs_done, rb.best_val_loss) == ("interrupted", 1, 0.9)  # train loss without val
    assert runs.list_runs(tmp_path / "missing") == []


@pytest.mark.parametrize("damaged", ["[1]", '"text"', "{bad json", ""])
def test_a_damaged_train_json_lists_as_an_unknown_run(tmp_path, damaged):
    run = runs.new_run(tmp_path, "r")
    (run / runs.TRAIN_FILE).write_text(damaged)  # e.g. a JSON list: it used to crash the listing
    (info,) = runs.list_runs(tmp_path)
    assert (info.name, info.created, info.method) == ("r", "", "autoencoder")
    assert runs.read_train(run) == {} and runs.run_source(run) == {} and runs.trained_shape(run) is None


def test_train_json_fields_are_read_in_one_place():
    info = {"data": {"path": "/d", "tile": True}, "input_shape": [1, 32, 48], "settings": {"train_on": "all"}}
    assert runs.train_source(info) == {"path": "/d", "tile": True}
    assert runs.train_shape(info) == (1, 32, 48)
    assert runs.train_on(info) == "all"
    assert runs.train_on({}) == runs.train_on({"settings": {"train_on": " "}}) == "normal"  # older runs
    assert runs.train_on({"settings": ["all"]}) == "normal"
    assert runs.train_shape({"input_shape": [1, True, 4]}) is None  # a bool is no size
    assert runs.train_settings(info) == {"train_on": "all"} and runs.train_settings({"settings": "x"}) == {}
    assert runs.train_epochs({"settings": {"epochs": 30}}) == 30
    for bad in (True, 0, "30", 3.0, None):
        assert runs.train_epochs({"settings": {"epochs": bad}}) is None, bad


def test_status_line_and_run_source(tmp_path):
    from udd_core.run_status import status_line
    from udd_core.runs import run_source

    assert status_line({"status": "stopped", "message": "stopped after 21 of 300 epochs"}) == \
        "**stopped** · after 21 of 300 epochs"  # the status word said once
    assert status_line({"status": "finished", "message": "finished 3 epochs"}) == "**finished** · 3 epochs"
    assert status_line({"status": "failed", "message": "out of memory"}) == "**failed** · out of memory"
    assert status_line({"status": "running", "message": "epoch 3", "pid": 7, "host": "h"}).endswith("(pid 7 on h)")
    assert run_source(tmp_path) == {}  # no train.json
    (tmp_path / "train.json").write_text('{"data": {"path": "/d", "kind": "mvtec"}}')
    assert run_source(tmp_path) == {"path": "/d", "kind": "mvtec"}
    (tmp_path / "train.json").write_text('{"data": [1]}')  # damaged: unknown, not a crash
    assert run_source(tmp_path) == {}


def test_trained_shape_reads_train_json_and_tolerates_damage(tmp_path):
    from udd_core.runs import trained_shape

    assert trained_shape(tmp_path) is None  # no train.json
    (tmp_path / "train.json").write_text('{"input_shape": [3, 64, 48]}')
    assert trained_shape(tmp_path) == (3, 64, 48)
    for bad in ('{"input_shape": [3, 64]}', '{"input_shape": [3, -1, 8]}', '{"input_shape": "3,64,48"}', "[]"):
        (tmp_path / "train.json").write_text(bad)
        assert trained_shape(tmp_path) is None, bad


def test_the_loaders_notes_round_trip_through_train_json(tmp_path):
    """sources.source_record keeps the loader's notes in train.json; runs.train_notices reads them back, a caution
    as a caution, and passes over what a hand edit damaged."""
    from udd_core.notices import Caution, is_caution
    from udd_core.sources import source_record

    (tmp_path / "a.png").write_bytes(b"")  # a folder the record can describe
    rec = source_record(tmp_path, notices=["skipped a.png: empty file", Caution("the 16-bit images were scaled")])
    back = runs.train_notices(json.loads(json.dumps({"data": rec})))
    assert back == ["skipped a.png: empty file", "the 16-bit images were scaled"]
    assert [is_caution(n) for n in back] == [False, True]
    assert "notices" not in source_record(tmp_path)  # nothing said: nothing kept
    damaged = {"data": {"notices": ["bare", {"text": 5}, {"text": "kept", "caution": "yes"}]}}
    assert runs.train_notices(damaged) == ["kept"] and not is_caution(runs.train_notices(damaged)[0])
    assert runs.train_notices({"data": {"notices": "x"}}) == [] == runs.train_notices({})
