"""Training progress: the board a job's thread writes under a lock, the frozen snapshots UIs read,
and what they draw from them (the loss curves, the terminal progress line)."""
from __future__ import annotations

import math
import sys
import threading
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

@dataclass(frozen=True)
class PhaseCurve:
    """The per-epoch losses of one epoch loop of a fit: Deep SVDD pretrains an autoencoder, then trains its
    encoder in a second loop, whose losses measure something else (the distance of the codes to c)."""

    name: str  # "" for the training loop; a later loop's name ("Deep SVDD") prefixes its epochs
    train_loss: tuple[float, ...]
    val_loss: tuple[Optional[float], ...]
    start: int  # epochs it held from earlier sessions when this session began it (a resumed run)
    epochs: int  # its planned total


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
    phase: str = ""  # the epoch loop under way: "" for the training loop, else its name ("Deep SVDD")
    phase_start: int = 0  # epochs of that loop from earlier sessions (a resumed run): they are not new
    earlier: tuple[PhaseCurve, ...] = ()  # the loops before it in this session, whole

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
    phase: str = ""
    phase_start: int = 0
    earlier: list = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def update(self, **kw: Any) -> None:
        with self.lock:
            for k, v in kw.items():
                setattr(self, k, v)

    def next_phase(self, name: str, epochs: int, train_loss: list, val_loss: list, **kw: Any) -> None:
        """Begin a fit's next epoch loop, `name`, with the losses it holds from earlier sessions; the loop
        before it is kept whole in `earlier`, so no reader misses its last epochs."""
        with self.lock:
            self.earlier.append(PhaseCurve(self.phase, tuple(self.train_loss), tuple(self.val_loss),
                                           self.phase_start, self.epochs))
            self.phase, self.epochs, self.phase_start = name, epochs, len(train_loss)
            self.train_loss, self.val_loss, self.step_loss = list(train_loss), list(val_loss), []
            self.images_per_s, self.eta_s = 0.0, None  # the last loop's speed says nothing of this one's
            for k, v in kw.items():
                setattr(self, k, v)

    def snapshot(self) -> Progress:
        with self.lock:
            d = {f.name: getattr(self, f.name) for f in fields(Progress)}
        for k in ("train_loss", "val_loss", "step_loss", "notices", "earlier"):
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
    epoch = f"{_named(p.phase)}epoch"  # "epoch", "Deep SVDD epoch"
    if not p.step:
        return min(done, 1.0), f"Starting: {epoch} {p.epoch + 1}/{p.epochs}, first batch…"
    return (min(done, 1.0), f"{epoch[0].upper()}{epoch[1:]} {p.epoch}/{p.epochs} · step {p.step}/{p.steps_per_epoch} · ETA "
                            f"{format_eta(p.eta_s)} · {p.images_per_s:.1f} images/s · lr {p.lr:.3g}")


def _named(phase: str) -> str:
    """An epoch loop's name as the prefix of its epoch counts ("Deep SVDD epoch 3/40"); "" for the training loop."""
    return f"{phase} " if phase else ""


def epoch_axis(last_epoch: float) -> dict:
    """A plotly x axis of whole epochs: ticks 1, 2, ... (every few epochs on long runs), never 0.5."""
    return dict(title=dict(text="epoch"), tick0=0, dtick=max(1, math.ceil(last_epoch / 10)))


def loss_axis(log: bool, traces: Sequence[dict] = ()) -> dict:
    """The y axis of every loss chart (`traces`: the chart's plotly traces). On a log scale the ticks between
    decades are written in full (0.5, 0.2): plotly's default writes them as a bare 5 and 2, which read as
    values above the 1 beside them. Over about one to three decades plotly labels every digit, which crowds a
    small chart (QA: 0.009, 0.008, 0.007 on top of each other), so only 1, 2 and 5 are labelled there."""
    axis = dict(title=dict(text="loss"), type="log" if log else "linear")
    ys = [v for t in traces for v in t.get("y", ()) if isinstance(v, (int, float)) and math.isfinite(v) and v > 0]
    if not log:  # one value alone (a first epoch): plotly spans it -0.5 to 1 (QA sweep 8), a loss below zero
        return axis | (dict(range=[0, 2 * ys[0]]) if len(set(ys)) == 1 else {})
    decades = math.log10(max(ys) / min(ys)) if ys else 0.0
    return axis | dict(minorloglabels="complete") | (dict(dtick="D2") if 0.9 <= decades < 3 else {})


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


def loop_series(snap: Optional[Progress], loops: list[tuple[str, Optional[list[dict]]]], alive: bool) -> list[tuple[str, dict]]:
    """(caption, `curve_series`) for each epoch loop of a fit that has something to draw; ``loops`` are
    (caption, records) from `Detector.epoch_loops`. While the job is alive, the loop under way comes from
    the snapshot and the loops after it are left out; the session's per-step curve goes with the last loop
    that has epochs. The caption is "" for a fit of one loop."""
    live = len(snap.earlier) if alive else None
    last = max((i for i, (_, records) in enumerate(loops) if records), default=0)
    out = []
    for i, (caption, records) in enumerate(loops[:None if live is None else live + 1]):
        series = (curve_series(snap, None, True) if i == live else
                  curve_series(snap if i == last and live is None else None, records, False))
        if len(series["epochs"]) or len(series["step"]) > 1:  # one step point alone draws an empty-looking chart
            out.append((caption if len(loops) > 1 else "", series))
    return out


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
    # The legend above the plot, anchored at its bottom, with room for it to wrap into three rows in the Train
    # page's narrow column (QA sweep 13: it wrapped down over the validation curve)
    layout = dict(height=370, margin=dict(l=10, r=10, t=75, b=10),
                  legend=dict(orientation="h", x=0, y=1.02, yanchor="bottom"),
                  xaxis=epoch_axis(max([now, *epochs], default=1)),
                  yaxis=loss_axis(log, data))
    return dict(data=data, layout=layout)


class ProgressLine:
    """A one-line progress display on stderr: redrawn in place on a terminal, one line per epoch otherwise."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.width = 0
        self.shown: dict[int, int] = {}  # epochs printed, per epoch loop (its place in the fit)
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
        for i, loop in enumerate(p.earlier):  # before the notices: a later loop's first notice follows them
            self._epochs(i, loop)
        for note in p.notices[self.notices_shown:]:  # e.g. the bf16 parity verdict, known only after start
            self._put(f"note: {note}", final=True)
        self.notices_shown = len(p.notices)
        self._epochs(len(p.earlier), PhaseCurve(p.phase, p.train_loss, p.val_loss, p.phase_start, p.epochs))
        if self.tty and p.status == "running" and p.step_loss:
            self._put(f"{_named(p.phase)}epoch {p.epoch}/{p.epochs}  step {p.step}/{p.steps_per_epoch}  "
                      f"loss {p.step_loss[-1]:.5g}  {p.images_per_s:.1f} img/s  ETA {format_eta(p.eta_s)}", final=False)

    def _epochs(self, i: int, loop: PhaseCurve) -> None:
        """A permanent line for each epoch of the fit's `i`-th loop finished this session and not yet printed."""
        for e in range(max(self.shown.get(i, 0), loop.start), len(loop.train_loss)):
            val = loop.val_loss[e]
            self._put(f"{_named(loop.name)}epoch {e + 1}/{loop.epochs}  loss {loop.train_loss[e]:.5g}"
                      + (f"  val {val:.5g}" if val is not None else ""), final=True)
        self.shown[i] = max(self.shown.get(i, 0), len(loop.train_loss))

    def end(self) -> None:
        """Clear a live line so that normal output follows on a clean line."""
        if self.tty and self.width:
            self.stream.write("\r" + " " * self.width + "\r")
            self.stream.flush()
            self.width = 0
