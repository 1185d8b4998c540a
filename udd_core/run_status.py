"""A run's live status: status.json, written by the job that trains it, with a heartbeat while it runs.

A run is running, finished, stopped or failed, as its job last wrote; a "running" run whose process is
gone (its pid, on this host) or whose heartbeat has stopped is read as interrupted, since a killed
process cannot say so itself. The file is replaced atomically like every run file (`runs`).
"""
from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any, Mapping, Optional, Union

from .atomic import pid_alive
from .runs import STATUS_FILE, iso_time, read_json, write_json_atomic

STATUSES = ("running", "finished", "stopped", "failed", "interrupted")
HEARTBEAT_STALE_S = 120.0  # a "running" run silent for longer than this is reported interrupted


def status_message(status: Mapping[str, Any]) -> str:
    """A status.json's message without the status word it may start with: "after 21 of 300 epochs" for
    {"status": "stopped", "message": "stopped after 21 of 300 epochs"}, to follow the word itself."""
    word, message = str(status.get("status")), str(status.get("message", ""))
    return message[len(word) + 1:] if message.startswith(word + " ") else message


def status_line(status: Mapping[str, Any]) -> str:
    """A run's status.json as one markdown line: "**stopped** · after 21 of 300 epochs", and for a run
    training in another process, which one (pid and host)."""
    word = status.get("status")
    where = f" (pid {status.get('pid')} on {status.get('host')})" if word == "running" else ""
    return f"**{word}** · {status_message(status)}{where}"


def write_status(run_dir: Union[str, Path], status: str, message: str = "", **extra: Any) -> dict:
    """Replace status.json; also the heartbeat (a running job rewrites it every few seconds)."""
    if status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
    now = time.time()
    d = {"status": status, "message": message, "pid": os.getpid(), "host": socket.gethostname(),
         "heartbeat": now, "updated": iso_time(now), **extra}
    write_json_atomic(Path(run_dir) / STATUS_FILE, d)
    return d


def read_status(run_dir: Union[str, Path], now: Optional[float] = None) -> dict:
    """status.json, with a dead "running" run (pid gone, or heartbeat stale) reported "interrupted"."""
    d = read_json(Path(run_dir) / STATUS_FILE, None)
    if isinstance(d, dict) and d.get("status") not in STATUSES:  # QA sweep 21: was "no readable status.json"
        return {"status": "interrupted", "message": f"{STATUS_FILE}: unknown status {d.get('status')!r}"}
    if not isinstance(d, dict):
        return {"status": "interrupted", "message": f"no readable {STATUS_FILE}"}
    if d["status"] == "running":
        now = time.time() if now is None else now
        beat = d.get("heartbeat")
        stale = not isinstance(beat, (int, float)) or now - beat > HEARTBEAT_STALE_S
        # On another host the pid means nothing; only the heartbeat can tell.
        dead = d.get("host") == socket.gethostname() and not pid_alive(d.get("pid"))
        if stale or dead:
            d = {**d, "status": "interrupted",
                 "message": "the training process ended without closing the run" if dead else
                 f"no heartbeat for {now - beat:.0f} s" if isinstance(beat, (int, float)) else "no heartbeat"}
    return d
