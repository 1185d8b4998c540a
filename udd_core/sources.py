"""Data sources for a training run: what there is to train on, what it costs, where uploads go.

The Train page offers the bundled `sample_data/` sets and the shared data folder next to the
checkout (`../shared/data`), tells the memory a source will take before a pixel is decoded, saves
browser uploads into a fresh folder under the runs root, and keeps the last loaded sets so that a
rerun (or a second run on the same data) never decodes the same images twice.
Nothing here imports streamlit.
"""
from __future__ import annotations

import re
import shutil
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np

from . import runs
from .data import WAFER_EXTS, DataError, ImageSet, data_kind, load_dataset, map_sizes, resolved
from .data_preview import check_values_as_typed, estimate_cache_bytes, in_colour
from .images import IMAGE_EXTS, readable_image
from .notices import is_caution
from .training_data import split_groups, training_images
from .uploads import save_uploads

KIND_TEXT = {"mvtec": "MVTec folder", "folder": "image folder", "wafer": "wafer maps"}


@dataclass(frozen=True)
class DataSource:
    """One data set offered in the picker."""

    label: str  # e.g. "sample_data/surface (MVTec folder)"
    path: Path  # absolute
    kind: str  # "mvtec", "folder" or "wafer" (data.data_kind)


def shared_data_dir(app_root: Union[str, Path]) -> Path:
    """The shared data folder that sits next to the checkout: `<app root>/../shared/data`."""
    return Path(app_root).resolve().parent / "shared" / "data"


def _kind(path: Path) -> Optional[str]:
    try:
        return data_kind(path)
    except (DataError, OSError):
        return None


def _sources_in(folder: Path, prefix: str) -> list[DataSource]:
    """Every entry of `folder` that loads as a data set; a folder of wafer files lists the files."""
    out: list[DataSource] = []
    try:
        entries = sorted(e for e in folder.iterdir() if not e.name.startswith((".", "_")))
    except OSError:
        return out
    for e in entries:
        kind = _kind(e)
        if kind is not None:
            out.append(DataSource(f"{prefix}/{e.name} ({KIND_TEXT[kind]})", e.resolve(), kind))
        elif e.is_dir():  # e.g. wm811k_small/: several wafer files, none of them a folder data set
            for f in sorted(f for f in e.iterdir() if f.suffix.lower() in WAFER_EXTS and f.is_file()):
                if _kind(f) is not None:
                    out.append(DataSource(f"{prefix}/{e.name}/{f.name} ({KIND_TEXT['wafer']})", f.resolve(), "wafer"))
    return out


def list_sources(app_root: Union[str, Path]) -> list[DataSource]:
    """The sets under `<app_root>/sample_data`, then those under `../shared/data` when it exists."""
    root = Path(app_root).resolve()
    return _sources_in(root / "sample_data", "sample_data") + _sources_in(shared_data_dir(root), "shared/data")


def estimate_text(n: int, nbytes: int, input_shape: tuple[int, int, int], photos: Optional[int] = None) -> str:
    """'60 images, 0.98 MB in memory at 1x128x128'; with the `photos` that `n` tiles are cut from, '40 images
    → 1138 tiles, ...' (QA sweep 12: the tiles were counted as images)."""
    c, h, w = input_shape
    what = _count(n, "image") if photos is None else f"{_count(photos, 'image')} → {_count(n, 'tile')}"
    return f"{what}, {nbytes / 2**20:.3g} MB in memory at {c}x{h}x{w}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' if n != 1 else ''}"


def available_bytes() -> int:
    """Memory the system can still give (MemAvailable), or 0 when unknown."""
    import os

    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 0


def gib(nbytes: float) -> str:
    """Bytes as GiB for a person: 3 significant digits, trailing zeros kept ("22.0", which read "22" beside
    "22.3" a moment later: QA sweep 12), whole numbers from 100, with commas from 1,000 (not "2.08e+03")."""
    v = nbytes / 2**30
    return f"{v:,.0f}" if v >= 100 else f"{v:#.3g}".removesuffix(".")  # 99.97: "100.", the alternate form's point


def step_images(n: int, batch_size: int) -> int:
    """How many images one training step holds: the batch size, or all `n` images when there are fewer."""
    return min(int(batch_size), int(n))


def memory_shortfall(n: int, need: int, step_per_image: int = 0, batch_size: int = 0) -> Optional[str]:
    """Why `need` bytes for `n` training images, plus a training step of `batch_size` of them at
    `step_per_image` bytes each (`image_shapes.batch_bytes(..., 1)`), cannot be held in memory, or None when
    they can (or the available memory is unknown): checked before a pixel is decoded, since a huge size would
    otherwise run the machine out of memory and get the process killed, with no message. A step never holds
    more than the `n` images (QA sweep 11: a batch size of 200000 on 36 images was counted as 200000)."""
    avail = available_bytes()
    k = step_images(n, batch_size) if step_per_image else 0
    if avail and need + k * step_per_image > avail:
        what = f"the {n} images" + (f" and a training step on {k} of them" if k else "")
        return (f"{what} would take {gib(need + k * step_per_image)} GiB in memory at this size, "
                f"more than the {gib(avail)} GiB available")
    return None


def describe(path: Union[str, Path], input_shape: tuple[int, int, int], tile: bool = False,
             feature_bytes_per_image: int = 0, step_per_image: int = 0, batch_size: int = 0) -> str:
    """The kind and estimated cache size of a training source, without decoding pixels; DataError if unusable.

    `feature_bytes_per_image` > 0 adds what a method computes once per image and keeps (backbone features);
    `step_per_image` the bytes of a training step per image (`image_shapes.batch_bytes(..., 1)`), of which a
    step holds `batch_size`, or every image when there are fewer.
    """
    kind = data_kind(path)
    n, nbytes = estimate_cache_bytes(path, input_shape, split="train", tile=tile)
    check_values_as_typed(path)
    if n == 0:
        raise DataError(f"{path}: no training images")
    if short := memory_shortfall(n, nbytes + n * feature_bytes_per_image, step_per_image, batch_size):
        raise DataError(f"size {input_shape[1]}x{input_shape[2]}: {short}; choose a smaller size"
                        + (" or batch size" if step_per_image else ""))
    features = f", + {n * feature_bytes_per_image / 2**20:.3g} MB of backbone features" if feature_bytes_per_image else ""
    k = step_images(n, batch_size)
    step = f", + {k * step_per_image / 2**20:.3g} MB for a training step on {k}" if step_per_image else ""
    photos = estimate_cache_bytes(path, input_shape, split="train")[0] if tile else None  # no header read
    gray = ("; its images are in colour and this model takes 1 channel: the colour is dropped (a 3-channel model "
            "keeps it)") if input_shape[0] == 1 and in_colour(path) else ""
    return f"{KIND_TEXT[kind]}: {estimate_text(n, nbytes, input_shape, photos)}{features}{step}{gray}"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-_")[:60] or "run"


def default_run_name(root: Union[str, Path], data_path: Union[str, Path, None], now: Optional[float] = None) -> str:
    """`<data set name>-<YYYYmmdd-HHMMSS>`, made unique under `root` (an existing run is never reused)."""
    stem = Path(str(data_path)).stem if data_path else "run"
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(time.time() if now is None else now))
    return runs.unique_run_name(root, f"{_slug(stem)}-{stamp}")


def new_run_path(root: Union[str, Path], name: str, data_path: Union[str, Path, None]) -> Path:
    """The folder of a new run called `name` (empty: `default_run_name`) under `root`; a ValueError naming
    the run when one of that name exists, before any data is loaded for it."""
    name = name or default_run_name(root, data_path)
    if (run_dir := runs.run_path(root, name)).exists():
        raise ValueError(f"run name {name!r}: a run of that name already exists; choose another")
    return run_dir


def source_record(data_path: Union[str, Path], tile: bool = False, notices: Iterable[str] = ()) -> dict:
    """What train.json records of the data a run trains on: the absolute path, its kind, the tiling, and what
    the loader said of it (`notices`, read back by `runs.train_notices`)."""
    record = {"path": str(resolved(data_path)), "kind": data_kind(data_path), "tile": bool(tile)}
    if notices := [{"text": str(n), "caution": is_caution(n)} for n in notices]:
        record["notices"] = notices
    return record


def discard_upload(folder: Union[str, Path], runs_root: Union[str, Path]) -> bool:
    """Remove an upload folder that a changed upload selection replaced, unless a run trained on it (or it is
    not an upload folder under `runs_root`): each change used to leave a full copy behind (QA sweep 11).
    True when removed."""
    folder, parent = Path(folder).resolve(), (Path(runs_root) / runs.UPLOADS_DIR).resolve()
    if folder.parent != parent or not folder.is_dir():
        return False
    used = {str(Path(str(runs.train_source(runs.read_train(r.path)).get("path") or "")).resolve())
            for r in runs.list_runs(runs_root)}
    if str(folder) in used or any(u.startswith(str(folder) + "/") for u in used):
        return False
    shutil.rmtree(folder, ignore_errors=True)
    return not folder.exists()


def save_upload(files: Iterable[tuple[str, bytes]], runs_root: Union[str, Path]) -> tuple[Path, list[str]]:
    """Save uploaded (name, bytes) pairs, zips unpacked safely, into a new `<runs_root>/uploads/upload-<time>`.

    Returns that folder and notes for the user: image files Pillow cannot read are not kept (the
    size estimate would count them, and training would skip them only later). On any error (a
    hostile zip, an unwritable runs folder, nothing usable) the folder is removed again and
    DataError says why in one line.
    """
    files = list(files)  # read twice: saved, then named in an error
    parent = Path(runs_root) / runs.UPLOADS_DIR
    dest = parent / runs.unique_run_name(parent, "upload-" + time.strftime("%Y%m%d-%H%M%S"))
    try:
        written = save_uploads(files, dest)
    except BaseException as e:
        shutil.rmtree(dest, ignore_errors=True)
        if isinstance(e, OSError):
            raise DataError(f"cannot write uploads to {dest}: {e.strerror or e}") from None
        raise
    if not written:
        shutil.rmtree(dest, ignore_errors=True)
        raise DataError("upload: no files received")
    broken = [p for p in written if p.suffix.lower() in IMAGE_EXTS and not readable_image(p)]
    for p in broken:
        p.unlink(missing_ok=True)
    named = ", ".join(p.relative_to(dest).as_posix() for p in broken[:3]) + (" ..." if len(broken) > 3 else "")
    left_out = (f"{len(broken)} file{'s' * (len(broken) != 1)} that {'are' if len(broken) != 1 else 'is'} not "
                f"{'a readable image' if len(broken) == 1 else 'readable images'}: {named}")
    wafers, kind = [p for p in written if p.suffix.lower() in WAFER_EXTS], None
    try:
        kind = data_kind(dest)  # only .txt files in a zip, say: refused now, and no folder is left behind
        if kind == "wafer":
            map_sizes(wafers[0])  # a file without maps, said as the CLI says it (QA: "no training images")
    except DataError as e:
        shutil.rmtree(dest, ignore_errors=True)
        names = ", ".join(name for name, _ in files)[:120]
        if kind == "wafer":
            raise DataError(f"upload {e}") from None
        why = left_out if broken else str(e).split(": ", 1)[-1]
        if len(wafers) > 1 and not broken:
            why = "upload one wafer file at a time (its maps are the data set)"
        raise DataError(f"upload {names}: {why}") from None
    notes = [f"left out {left_out}"] if broken else []
    if kind != "wafer" and wafers:
        for p in wafers:  # left out in the folder too, as the note says
            p.unlink(missing_ok=True)
        named = ", ".join(p.name for p in wafers[:3])
        notes.append(f"left out {named}{' ...' if len(wafers) > 3 else ''}: wafer files among "
                     "images are not used; upload a wafer file on its own to train on its maps")
    return dest, notes


def _stamp(path: Path) -> tuple:
    """Modification times that change when a set's files are added, removed or rewritten at the top."""
    out = []
    for p in (path, path / "train" / "good"):
        try:
            out.append(p.stat().st_mtime_ns)
        except OSError:
            out.append(None)
    return tuple(out)


class DatasetCache:
    """The last few loaded ImageSets, by (path, shape, split, tile, mtimes); safe to share between threads."""

    def __init__(self, max_entries: int = 2):
        self.max_entries = max_entries
        self._sets: OrderedDict[tuple, ImageSet] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: Union[str, Path], input_shape: tuple[int, int, int], split: str = "train",
            tile: bool = False, progress: Optional[Callable[[int, int], None]] = None) -> ImageSet:
        """The set loaded by data.load_dataset, decoded only on the first call for these arguments."""
        try:
            shape = tuple(int(v) for v in input_shape)
        except (TypeError, ValueError):
            raise DataError(f"input_shape must be (C, H, W), got {input_shape!r}") from None
        p = resolved(path)
        key = (str(p), shape, split, bool(tile), _stamp(p))
        with self._lock:  # one loader at a time: two identical requests decode once
            if key in self._sets:
                self._sets.move_to_end(key)
                return self._sets[key]
            ds = load_dataset(path, key[1], split=split, tile=tile, progress=progress)  # as given: "" is refused
            self._sets[key] = ds
            while len(self._sets) > self.max_entries:
                self._sets.popitem(last=False)
            return ds

    def training_set(self, path: Union[str, Path, None], input_shape: tuple[int, int, int], tile: bool = False,
                     train_on: str = "normal", progress: Optional[Callable[[int, int], None]] = None
                     ) -> tuple[np.ndarray, list[str], Optional[list[str]]]:
        """The training images (N, H, W, C) uint8 of a data set (the normal ones, or those `train_on`
        picks), decoded once per (path, shape, tile), the loader's notes for the user, and for tiles the photo
        each was cut from (`training_data.split_groups`, which `TrainJob.create` takes)."""
        if not path:  # None (nothing uploaded yet) or "": say what to do, not "no such file"
            raise DataError("data: no data set given (pick one, type a path or upload images)")
        ds = self.get(path, input_shape, "train", tile, progress)
        images, note = training_images(ds, train_on)
        return images, ds.notices + ([note] if note else []), split_groups(ds, train_on)

    def __len__(self) -> int:
        return len(self._sets)
