"""Training progress: the board a job's thread writes under a lock, the frozen snapshots UIs read,
and what they draw from them (the loss curves, the terminal progress line)."""
from __future__ import annotations

import math
import sys
import threading
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Optional

import numpy as np

@dataclass(frozen=True)
class Progress:
    """A frozen snapshot of a job, safe to read from any thread."""

    status: str  # pending | running | finished | stopped | failed
    epoch: int  # current (1-based) epoch, or epochs done when not running
    epochs: int
    step: int  # step within the epoch
    steps_per_epoch: int
    train_loss: tuple[float, ...]  # per finished epoch, including earlier sessions of a resumed run
    val_loss: tuple[Optional[float], ...]  # per finished epoch; None without validation
    step_loss: tuple[float, ...]  # EMA-smoothed loss of every step this session
    lr: float
    images_per_s: float
    eta_s: Optional[float]
    probe_input: Optional[np.ndarray]  # (n_probe, H, W, C) uint8, read-only
    probe_recon: Optional[np.ndarray]  # (n_probe, H, W, C) uint8, refreshed each epoch, read-only
    message: str
    error: Optional[str]  # failure message
    error_where: Optional[str]  # "file:line in func" of the innermost frame
    run_dir: str
    notices: tuple[str, ...] = ()

    @property
    def epochs_elapsed(self) -> float:
        """Epochs done as a fraction: where the newest step sits on an epoch axis.

        An epoch whose last step is done but whose loss is not recorded yet (it is validating) counts
        as whole: its steps are all behind it.
        """
        done = len(self.train_loss)
        if self.epoch > done and self.steps_per_epoch:  # an epoch in progress
            return done + min(self.step, self.steps_per_epoch) / self.steps_per_epoch
        return float(done)


@dataclass
class ProgressBoard:
    """The mutable progress a job's thread writes and snapshot() copies, under one lock."""

    run_dir: str
    epochs: int
    status: str = "pending"
    epoch: int = 0
    step: int = 0
    steps_per_epoch: int = 0
    train_loss: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    step_loss: list = field(default_factory=list)
    lr: float = 0.0
    images_per_s: float = 0.0
    eta_s: Optional[float] = None
    probe_input: Optional[np.ndarray] = None
    probe_recon: Optional[np.ndarray] = None
    message: str = ""
    error: Optional[str] = None
    error_where: Optional[str] = None
    notices: list = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def update(self, **kw: Any) -> None:
        with self.lock:
            for k, v in kw.items():
                setattr(self, k, v)

    def snapshot(self) -> Progress:
        with self.lock:
            d = {f.name: getattr(self, f.name) for f in fields(Progress)}
        for k in ("train_loss", "val_loss", "step_loss", "notices"):
            d[k] = tuple(d[k])
        return Progress(**d)


def fit_handles(run_dir, epochs: int, stop_event: Optional[threading.Event] = None,
                board: Optional[ProgressBoard] = None) -> tuple[Path, threading.Event, ProgressBoard]:
    """(run folder, stop event, progress board) for a fit: a headless caller (a test, a benchmark) may
    pass neither the event nor the board, and gets a fresh one of each."""
    return Path(run_dir), stop_event or threading.Event(), board or ProgressBoard(str(run_dir), epochs)


def frozen_copy(a: np.ndarray) -> np.ndarray:
    a = np.array(a, copy=True)
    a.flags.writeable = False
    return a


def format_eta(seconds: Optional[float]) -> str:
    """Seconds as "mm:ss" or "h:mm:ss"; "--:--" when unknown."""
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "--:--"
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60:02d}:{s % 60:02d}"


def progress_bar(p: Progress, one_pass: bool) -> tuple[float, str]:
    """(fraction done in [0, 1], the bar's text) for a running job's snapshot.

    A fit in one pass (the memory bank) shows its phase and what the phase has done (its message
    counts the images or picks), with an ETA once one is known; a training run its epoch, step, ETA,
    throughput and learning rate.
    """
    steps = max(p.steps_per_epoch, 1)
    if one_pass:
        eta = format_eta(p.eta_s)
        return (min(p.step / steps, 1.0),
                f"Phase {p.epoch}/{p.epochs}: {p.message}" + ("" if eta == "--:--" else f" · ETA {eta}"))
    done = (max(p.epoch - 1, 0) + p.step / steps) / max(p.epochs, 1)
    if not p.step:
        return min(done, 1.0), f"Starting: epoch {p.epoch + 1}/{p.epochs}, first batch…"
    return (min(done, 1.0), f"Epoch {p.epoch}/{p.epochs} · step {p.step}/{p.steps_per_epoch} · ETA "
                            f"{format_eta(p.eta_s)} · {p.images_per_s:.1f} images/s · lr {p.lr:.3g}")


def epoch_axis(last_epoch: float) -> dict:
    """A plotly x axis of whole epochs: ticks 1, 2, ... (every few epochs on long runs), never 0.5."""
    return dict(title=dict(text="epoch"), tick0=0, dtick=max(1, math.ceil(last_epoch / 10)))


def curve_series(snap: Optional[Progress], history: Optional[list[dict]], alive: bool) -> dict:
    """`loss_curve`'s arguments for a run: the per-epoch losses from the live snapshot (``alive``) or the
    run's history, with this session's smoothed per-step loss when the snapshot covers that history."""
    if alive:
        epochs, train, val = list(range(1, len(snap.train_loss) + 1)), snap.train_loss, snap.val_loss
    else:
        epochs, train, val = ([r.get(k) for r in history or []] for k in ("epoch", "train_loss", "val_loss"))
    steps, now, step = 0, 0.0, ()
    if snap is not None and (alive or len(snap.train_loss) == len(history or [])):
        steps, step, now = max(snap.steps_per_epoch, 1), snap.step_loss, snap.epochs_elapsed
    return {"epochs": epochs, "train": train, "val": val, "step": step, "steps_per_epoch": steps, "now": now}


def loss_curve(epochs, train, val, step=(), steps_per_epoch: int = 0, now: float = 0.0, log: bool = False) -> dict:
    """The loss curves as a plotly figure spec (a plain dict: no plotly import, cheap to redraw each second).

    Per-epoch train and validation losses at x = epoch (1, 2, ...), over the smoothed per-step
    train loss, whose newest step sits at x = ``now`` (fractional epochs done) and earlier steps
    1/steps_per_epoch apart. At most a few thousand step points are kept, so the chart draws fast.
    """
    def line(**kw) -> dict:
        return {"type": "scatter", "mode": "lines+markers", **kw}

    data = [line(x=list(epochs), y=list(train), name="train", line=dict(color="#4c78a8"))]
    if any(v is not None for v in val):
        data.append(line(x=list(epochs), y=list(val), name="validation", line=dict(color="#f58518")))
    if len(step) and steps_per_epoch:
        x = now - np.arange(len(step))[::-1] / steps_per_epoch  # (n_steps,)
        k = max(1, len(step) // 3000)
        keep = slice((len(step) - 1) % k, None, k)  # every k-th step, counted back from the newest
        data.insert(0, line(x=x[keep].tolist(), y=list(step)[keep], name="train, per step (smoothed)",
                            mode="lines", line=dict(width=1, color="rgba(76,120,168,0.45)")))
    layout = dict(height=330, margin=dict(l=10, r=10, t=30, b=10), legend=dict(orientation="h", y=1.12, x=0),
                  xaxis=epoch_axis(max([now, *epochs], default=1)),
                  yaxis=dict(title=dict(text="loss"), type="log" if log else "linear"))
    return dict(data=data, layout=layout)


class ProgressLine:
    """A one-line progress display on stderr: redrawn in place on a terminal, one line per epoch otherwise."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.width = 0
        self.epochs_shown = 0
        self.notices_shown = 0

    def _put(self, line: str, final: bool) -> None:
        if self.tty:
            self.stream.write("\r" + line.ljust(self.width) + ("\n" if final else ""))
            self.width = 0 if final else len(line)
        elif final:
            self.stream.write(line + "\n")
        self.stream.flush()

    def loading(self, done: int, total: int) -> None:
        """A `progress(done, total)` callback for data loading (shown on a terminal only)."""
        if self.tty:
            self._put(f"loading images {done}/{total}", final=False)

    def show(self, p: Progress) -> None:
        """Print new notices and finished epochs as lines; on a terminal, redraw the live step line."""
        for note in p.notices[self.notices_shown:]:  # e.g. the bf16 parity verdict, known only after start
            self._put(f"note: {note}", final=True)
        self.notices_shown = len(p.notices)
        for e in range(self.epochs_shown, len(p.train_loss)):  # finished epochs get a permanent line
            val = p.val_loss[e]
            self._put(f"epoch {e + 1}/{p.epochs}  loss {p.train_loss[e]:.5g}"
                      + (f"  val {val:.5g}" if val is not None else ""), final=True)
        self.epochs_shown = max(self.epochs_shown, len(p.train_loss))  # a resumed job's history arrives later
        if self.tty and p.status == "running" and p.step_loss:
            self._put(f"epoch {p.epoch}/{p.epochs}  step {p.step}/{p.steps_per_epoch}  loss {p.step_loss[-1]:.5g}"
                      f"  {p.images_per_s:.1f} img/s  ETA {format_eta(p.eta_s)}", final=False)

    def end(self) -> None:
        """Clear a live line so that normal output follows on a clean line."""
        if self.tty and self.width:
            self.stream.write("\r" + " " * self.width + "\r")
            self.stream.flush()
            self.width = 0
