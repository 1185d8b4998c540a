"""Run folders: where a training run keeps its model, settings, history and live status.

A run is one folder (by default under ``runs/``)::

    config.json        the architecture (written by model.save_model)
    model.safetensors  best weights by validation loss
    last.safetensors   weights after the latest epoch (for resume)
    trainer.pt         optimizer/scheduler state (plain tensors and numbers, read with weights_only)
    train.json         every setting, the data source, input shape, library versions, created time
    history.jsonl      one JSON object per finished epoch, appended and fsync'ed line by line
    status.json        running|finished|stopped|failed, message, pid, host, heartbeat (a run whose process
                       died keeps "running" here; `read_status` reports it "interrupted")
    calibration.json   residual statistics of the normal validation images (for the Inspect page)
    method.json        every method but the pixel autoencoder: the method, its options and fit, beside
                       its own weights (bank.safetensors, svdd.safetensors, latent_bank.safetensors,
                       feature_stats.safetensors); a memory bank has only these, train.json and status.json

Every JSON file is replaced atomically (temp file, fsync, rename), so a killed process leaves
either the old or the new file, never half of one.
"""
from __future__ import annotations

import json
import math
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Union

from .atomic import leftover_temps, remove_leftover_temps, write_text_atomic
from .notices import Caution

DEFAULT_ROOT = "runs"
_NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,100}")
TRAIN_FILE, HISTORY_FILE, STATUS_FILE = "train.json", "history.jsonl", "status.json"
UPLOADS_DIR = "uploads"  # under the runs root, the app's uploads; holds no train.json, so list_runs never shows it
CALIBRATION_FILE, LAST_WEIGHTS, TRAINER_STATE = "calibration.json", "last.safetensors", "trainer.pt"


class RunStorageError(OSError):
    """A run file that cannot be written or created; the message is one line naming the path."""

    def __str__(self) -> str:
        return self.args[0] if self.args else "run storage error"


def storage_error(path: Union[str, Path], e: OSError, verb: str = "write") -> RunStorageError:
    """Turn an OSError into a one-line RunStorageError ('cannot write PATH: reason')."""
    if isinstance(e, RunStorageError):
        return e
    return RunStorageError(f"cannot {verb} {path}: {e.strerror or e}")


# --- names and folders -----------------------------------------------------------------------

def validate_run_name(name: str) -> str:
    """Return `name` if it is a safe run name: letters, digits and `-_.`, no `..`, not hidden, not reserved."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name) or ".." in name or name.startswith("."):
        shown = repr(name[:60] + "...") if isinstance(name, str) and len(name) > 60 else repr(name)  # one line
        raise ValueError(f"run name {shown}: use 1-100 ASCII letters, digits, '-', '_' or '.', "
                         "not starting with '.' and without '..' or path separators")
    if name == UPLOADS_DIR:
        raise ValueError(f"run name {name!r}: reserved for the app's uploaded data; choose another")
    return name


def run_path(root: Union[str, Path], name: str) -> Path:
    """The folder of run `name` under `root`; never outside it."""
    root = Path(root).resolve()
    p = (root / validate_run_name(name)).resolve()
    if p.parent != root:  # belt and braces: the name check already rules this out
        raise ValueError(f"run name {name!r}: escapes the runs folder {root}")
    return p


def unique_run_name(root: Union[str, Path], name: str) -> str:
    """`name`, or `name-2`, `name-3`, ... : the first that does not exist under `root`."""
    validate_run_name(name)
    root = Path(root)
    if not (root / name).exists():
        return name
    k = 2
    while (root / f"{name}-{k}").exists():
        k += 1
    return validate_run_name(f"{name}-{k}")


def is_empty_dir(path: Path) -> bool:
    """True for an existing folder with nothing in it but temp files of writers killed mid-write
    (`atomic.leftover_temps`: a run killed during its first save left only those, QA sweep 21)."""
    return path.is_dir() and set(path.iterdir()) <= set(leftover_temps(path))


def create_run_dir(path: Union[str, Path]) -> Path:
    """Create a new run folder at `path`; refuse an existing non-empty one (never overwrite a run)."""
    path = Path(path)
    if path.exists() and not is_empty_dir(path):
        hint = ""
        if validate_name_quietly(path.name):
            hint = f" (try {unique_run_name(path.parent, path.name)!r})"
        raise ValueError(f"run {path}: already exists and is not empty{hint}")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise storage_error(path, e, "create") from None
    remove_leftover_temps(path)
    return path


def runs_root() -> Path:
    """The folder of named runs: the app lists it, and `udd` looks run names up in it: $UDD_RUNS_DIR, default runs/."""
    return Path(os.environ.get("UDD_RUNS_DIR", DEFAULT_ROOT))


def out_spec(run_dir: Union[str, Path]) -> str:
    """How `udd train --out` names an existing run: its bare name when it lies in `runs_root()`, else its
    absolute path (a name alone would be looked up in the runs folder and not found: QA sweep 12)."""
    p = Path(run_dir)
    if p.resolve() == (runs_root() / p.name).resolve():
        return p.name
    return str(p.resolve())


def new_run(root: Union[str, Path], name: str) -> Path:
    """Create run `name` under `root` (default runs/) and return its folder."""
    return create_run_dir(run_path(root, name))


def read_train(run_dir: Union[str, Path]) -> dict:
    """A run's train.json; {} when it is missing, unreadable or not a JSON object. The one reader of it:
    every field is then taken with `train_source` / `train_shape`, which tolerate damage too."""
    info = read_json(Path(run_dir) / TRAIN_FILE, {})
    return info if isinstance(info, dict) else {}


def no_data_why(run_dir: Union[str, Path]) -> str:
    """Why a run names no training data, for the one-line errors that need a data path: its train.json is
    missing, damaged, or records none."""
    path = Path(run_dir) / TRAIN_FILE
    if not path.is_file():
        return f"the run has no {TRAIN_FILE}"
    raw = read_json(path, None)
    if raw is None:
        return f"its {TRAIN_FILE} is not valid JSON"
    if not isinstance(raw, dict):
        return f"its {TRAIN_FILE} is not a JSON object"
    return f"the run names no training data ({TRAIN_FILE} data.path)"


def train_source(info: Mapping[str, Any]) -> dict:
    """The data a train.json (`info`) records (path, kind, tile, count, ...); {} when unknown. A path that is
    not text (a hand edit) counts as none recorded (QA sweep 15: `"path": 5` was a traceback everywhere)."""
    data = info.get("data")
    if not isinstance(data, dict):
        return {}
    return data if isinstance(data.get("path"), (str, type(None))) else {k: v for k, v in data.items() if k != "path"}


def train_notices(info: Mapping[str, Any]) -> list[str]:
    """What the loader said of a run's training data when it started (converted, resized or skipped images; a
    `Caution` stays one), as train.json (`info`) keeps them under data.notices; entries of a wrong type are
    passed over. Kept with the run, the Train page shows them after a reload too (QA sweep 17)."""
    kept = train_source(info).get("notices")
    entries = [e for e in (kept if isinstance(kept, list) else []) if isinstance(e, dict)
               and isinstance(e.get("text"), str)]
    return [Caution(e["text"]) if e.get("caution") is True else e["text"] for e in entries]


def train_shape(info: Mapping[str, Any]) -> Optional[tuple[int, int, int]]:
    """The (C, H, W) a train.json (`info`) records (the run's maps' size); None when unknown or damaged."""
    shape = info.get("input_shape")
    if not isinstance(shape, list) or len(shape) != 3 or not all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in shape):
        return None
    return tuple(shape)  # type: ignore[return-value]


def train_settings(info: Mapping[str, Any]) -> dict:
    """The training settings a train.json (`info`) records, as saved; {} when missing or damaged."""
    settings = info.get("settings")
    return settings if isinstance(settings, dict) else {}


def train_epochs(info: Mapping[str, Any]) -> Optional[int]:
    """The epoch count a train.json (`info`) planned (settings.epochs); None when unknown or damaged."""
    value = train_settings(info).get("epochs")
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def train_on(info: Mapping[str, Any]) -> str:
    """What a train.json (`info`) says the run trained on (settings.train_on): "normal" for older runs."""
    value = train_settings(info).get("train_on")
    return value if isinstance(value, str) and value.strip() else "normal"


def run_source(run_dir: Union[str, Path]) -> dict:
    """The data a run trained on, as its train.json records it; {} when unknown."""
    return train_source(read_train(run_dir))


def run_train_on(run_dir: Union[str, Path]) -> str:
    """What a run trained on, as its train.json records it (settings.train_on); "normal" when unknown."""
    return train_on(read_train(run_dir))


def trained_shape(run_dir: Union[str, Path]) -> Optional[tuple[int, int, int]]:
    """The (C, H, W) a run was trained at, as its train.json records it; None when unknown."""
    return train_shape(read_train(run_dir))


def validate_name_quietly(name: str) -> bool:
    """True when `name` is a valid run name."""
    try:
        validate_run_name(name)
        return True
    except ValueError:
        return False


# --- atomic files ----------------------------------------------------------------------------

def write_json_atomic(path: Union[str, Path], obj: Any) -> None:
    """Write `obj` as JSON via a temp file, fsync and rename; RunStorageError on failure."""
    text = json.dumps(obj, indent=2, allow_nan=False, default=_json_default) + "\n"
    try:
        write_text_atomic(path, text, durable=True)
    except OSError as e:
        raise storage_error(path, e) from None


def read_json(path: Union[str, Path], default: Any = None) -> Any:
    """Read a JSON file; `default` when it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return default


def _json_default(v: Any) -> Any:
    if hasattr(v, "item"):  # numpy / torch scalars
        return v.item()
    if isinstance(v, (tuple, set)):
        return list(v)
    if isinstance(v, Path):
        return str(v)
    raise TypeError(f"not JSON serialisable: {type(v).__name__}")


def _finite(v: Any) -> Any:
    """NaN/inf are not JSON: write them as null."""
    return None if isinstance(v, float) and not math.isfinite(v) else v


def append_history(run_dir: Union[str, Path], record: dict) -> None:
    """Append one epoch record to history.jsonl as one line, flushed and fsync'ed."""
    path = Path(run_dir) / HISTORY_FILE
    line = json.dumps({k: _finite(v) for k, v in record.items()}, default=_json_default) + "\n"
    try:
        with open(path, "a+b") as f:
            # A killed writer's cut last line is ended first, or this record would be glued onto it and lost
            # with it (QA sweep 15: two resumes recorded epochs 1, 3, 3, 4, 5 for 7 trained).
            cut = False
            if f.seek(0, os.SEEK_END) > 0:
                f.seek(-1, os.SEEK_END)
                cut = f.read(1) != b"\n"
            f.write((b"\n" if cut else b"") + line.encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise storage_error(path, e) from None


def read_history(run_dir: Union[str, Path]) -> list[dict]:
    """All epoch records; a truncated or garbled line (a killed writer), or a record whose epoch or losses
    are not numbers, is skipped."""
    return history_records(run_dir)[0]


def history_records(run_dir: Union[str, Path]) -> tuple[list[dict], int]:
    """(`read_history`'s records, how many lines were skipped other than a cut last line): a killed writer
    cuts only the last line, so any other skipped line is damage (`run_notes.history_note`)."""
    try:
        text = (Path(run_dir) / HISTORY_FILE).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return [], 0
    out, skipped = [], 0
    lines = text.splitlines()
    for i, line in enumerate(lines):
        try:
            rec = json.loads(line)
        except ValueError:
            rec = None
        if isinstance(rec, dict) and all(_number_or_none(rec.get(k)) for k in HISTORY_NUMBERS):
            out.append(rec)  # a record with text for a number (a hand edit) is as garbled as a cut line
        elif line.strip() and (i < len(lines) - 1 or text.endswith("\n")):
            skipped += 1
    return out, skipped


HISTORY_NUMBERS = ("epoch", "train_loss", "val_loss")  # fields every reader of a history record computes with


def _number_or_none(v: Any) -> bool:
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))


def iso_time(t: float) -> str:
    """Time `t` (seconds since the epoch) as local ISO 8601 with the UTC offset, as every run file stamps it."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(t))


def now_iso() -> str:
    """The local time as ISO 8601 with the UTC offset."""
    return iso_time(time.time())


# --- listing ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class RunInfo:
    """One run as the Runs table shows it."""

    name: str
    status: str  # one of run_status.STATUSES
    epochs_done: int
    best_val_loss: Optional[float]  # best validation loss (train loss when the run has no validation)
    created: str  # ISO time from train.json, "" when unknown
    path: Path
    message: str = ""
    method: str = "autoencoder"  # train.json's method ("memory-bank", ...); older runs: autoencoder
    damaged: Optional[str] = None  # why a run that is not running cannot be loaded (`run_notes.damaged_note`)

    @property
    def shown_status(self) -> str:
        """The status a run list shows: "damaged" for a run whose files cannot be read, whatever its status."""
        return "damaged" if self.damaged else self.status


def run_info(run_dir: Union[str, Path]) -> RunInfo:
    """Summarise one run folder."""
    from .run_status import read_status  # it reads and writes this module's files: imported here, not at the top

    p = Path(run_dir)
    st = read_status(p)
    hist = read_history(p)
    losses = [r.get("val_loss") if r.get("val_loss") is not None else r.get("train_loss") for r in hist]
    losses = [v for v in losses if isinstance(v, (int, float))]
    train = read_train(p)
    from .run_notes import damaged_note  # it reads this module's files: imported here, not at the top

    # A running run's files are being written: judged once it has stopped. Headers only: ~0.5 ms a run.
    damaged = damaged_note(p) if st["status"] != "running" else None
    return RunInfo(p.name, st["status"], len(hist), min(losses) if losses else None,
                   str(train.get("created", "")), p, str(st.get("message", "")),
                   str(train.get("method") or "autoencoder"), damaged)


def model_stamp(run_dir: Union[str, Path]) -> float:
    """The newest change to a run's files, leaving out the live status and history: a new model changes it."""
    p = Path(run_dir)
    return max((f.stat().st_mtime for f in p.iterdir() if f.is_file() and f.name not in (STATUS_FILE, HISTORY_FILE)),
               default=0.0)


def list_runs(root: Union[str, Path] = DEFAULT_ROOT) -> list[RunInfo]:
    """Every run folder under `root` (a folder with train.json or status.json), newest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    runs = [run_info(d) for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")
            and ((d / TRAIN_FILE).is_file() or (d / STATUS_FILE).is_file())]
    return sorted(runs, key=lambda r: (r.created, r.name), reverse=True)
