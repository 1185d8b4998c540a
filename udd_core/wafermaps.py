"""Wafer-map files (WM-811K style): .npy/.npz integer arrays of dies, to one-hot images and back.

Die values: 0 = outside the wafer, 1 = good die, 2 = failing die. Each map becomes 3 one-hot
channels (255 in the channel of its value), so a model sees a wafer as a 3-channel image.
An .npz may hold several map arrays (one per size, as WM-811K exports do) and their labels.
"""
from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from .uploads import DataError

WAFER_EXTS = frozenset({".npy", ".npz"})
_LABEL_KEYS = ("labels", "label", "failureType", "failure_type", "classes", "class", "y")

Headers = dict[str, tuple[tuple[int, ...], np.dtype]]  # array name ("" for a .npy) -> (shape, dtype)


def _npy_header(fp) -> tuple[tuple[int, ...], np.dtype]:
    version = np.lib.format.read_magic(fp)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, _, dtype = read(fp)
    return shape, dtype


def _wafer_headers(path: Path) -> Headers:
    """Shape and dtype of every array in a .npy/.npz file, read from headers only (no pixel data)."""
    try:
        if path.suffix.lower() == ".npy":
            with open(path, "rb") as fp:
                return {"": _npy_header(fp)}
        with zipfile.ZipFile(path) as zf:
            out = {}
            for name in zf.namelist():
                if name.endswith(".npy"):
                    with zf.open(name) as fp:
                        out[name[:-4]] = _npy_header(fp)
            return out
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path.name}: not a readable numpy file ({exc})") from None


def _map_keys(headers: Headers) -> list[str]:
    """Names of the arrays that hold maps: numeric, (N, H, W) (or a single (H, W) map in a .npy)."""
    return sorted(k for k, (s, d) in headers.items() if (len(s) == 3 or k == "" and len(s) == 2) and d.kind in "biuf")


def _checked_map_keys(path: Path, headers: Headers) -> list[str]:
    """`_map_keys`, or the DataError that says why a file holds no maps to load (no map array at all, or
    an object array that would need pickle), from its headers only."""
    keys = _map_keys(headers)
    if not keys:
        pickled = any(d.hasobject for _, d in headers.values())  # e.g. LSWMD's maps of many sizes in one array
        raise DataError(f"{path.name}: holds no (N, H, W) wafer map array" + (
            "; an object array would need pickle, which udd never loads: save each map size as its own array "
            "(np.savez(f, maps_26x26=..., labels_26x26=...))" if pickled else ""))
    return keys


def map_sizes(path: Path) -> list[tuple[int, tuple[int, int]]]:
    """(number of maps, (H, W)) of each map array in a wafer file, from its headers only; a DataError for a
    file with no maps, said as loading it would say it (the Train page's estimate, before Start)."""
    headers = _wafer_headers(path)
    out = []
    for k in _checked_map_keys(path, headers):
        shape = headers[k][0]
        out.append((1 if len(shape) == 2 else shape[0], tuple(shape[-2:])))
    if not sum(n for n, _ in out):
        raise DataError(f"{path.name}: holds no wafer maps (its arrays are empty)")
    return out


def _label_key(key: str, n: int, headers: Headers) -> str | None:
    """The labels array that belongs to map array `key`: same suffix (maps_45x48 <-> failureType_45x48)."""
    suffix = key[key.index("_"):] if "_" in key else ""
    fits = [k for k, (s, _) in headers.items()
            if k != key and len(s) in (1, 2) and s[0] == n and (k.endswith(suffix) if suffix else k in _LABEL_KEYS)]
    return min(fits, key=lambda k: (not any(t in k.lower() for t in ("label", "type", "class")), k), default=None)


def _as_labels(a: np.ndarray) -> list[str]:
    a = a.reshape(len(a), -1)[:, 0]
    if a.dtype.kind == "S":
        a = np.char.decode(a, "utf-8", "replace")
    return [str(v).strip() or "good" for v in a.tolist()]


def _labels_of(path: Path, z, key: str, n: int, headers: Headers, notices: list[str]) -> list[str]:
    """The n labels of map array `key` from the open file `z` ("good" for unlabelled maps); a labels
    array that would need pickle is never loaded, said in `notices`."""
    lkey = _label_key(key, n, headers) if key else None
    if lkey and headers[lkey][1].hasobject:
        notices.append(f"{path.name}:{lkey}: labels need pickle to load; ignored")
        lkey = None
    if not lkey and n:  # QA sweep 19a: a file of unlabelled maps trained, and scored, as "good" unsaid
        where = f"{path.name}:{key}" if key else path.name
        notices.append(f"{n} map{'s' * (n != 1)} of {where} {'have' if n != 1 else 'has'} no labels: taken as normal "
                       "(\"good\"), so a run trains on all of them, and metrics on them count no defect")
    return _as_labels(z[lkey]) if lkey else ["good"] * n


def wafer_labels(path: Path, notices: list[str] | None = None) -> list[str]:
    """The label of every map in a wafer file, in `load_wafer_file`'s order, reading no map array: what
    the Train page checks chosen classes against before Start. `notices` gets what loading would note of
    the labels (maps without labels, labels that need pickle)."""
    notices = [] if notices is None else notices
    headers = _wafer_headers(path)
    keys = _checked_map_keys(path, headers)
    _refuse_stray_labels(path, keys, headers)
    if keys == [""]:  # a .npy holds maps only
        return _labels_of(path, None, "", map_sizes(path)[0][0], headers, notices)
    try:
        with np.load(path, allow_pickle=False) as z:
            return [v for k in keys for v in _labels_of(path, z, k, headers[k][0][0], headers, notices)]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path.name}: not a readable numpy file ({exc})") from None


def _resize_nearest(maps: np.ndarray, h: int, w: int) -> np.ndarray:
    """(N, mh, mw) -> (N, h, w) by nearest neighbour, which keeps die values discrete."""
    mh, mw = maps.shape[1:]
    rows = np.minimum(((np.arange(h) + 0.5) * mh / h).astype(int), mh - 1)
    cols = np.minimum(((np.arange(w) + 0.5) * mw / w).astype(int), mw - 1)
    return maps[:, rows][:, :, cols]


def _refuse_stray_labels(path: Path, keys: list[str], headers: Headers) -> None:
    """A DataError for a labels array that belongs to no map array (another length, another suffix):
    taken as unlabelled, its defect maps would train a detector as normal ones."""
    count = lambda k: 1 if len(headers[k][0]) == 2 else headers[k][0][0]  # noqa: E731 - a 2-D array is one map
    used = {_label_key(k, count(k), headers) for k in keys if k}
    stray = [k for k, (s, _) in headers.items() if k in _LABEL_KEYS and k not in keys and len(s) in (1, 2)
             and k not in used]
    if stray:
        arrays = ", ".join(f"{k}: {count(k)}" for k in keys if k)
        raise DataError(f"{path.name}:{stray[0]}: {headers[stray[0]][0][0]} labels fit no map array ({arrays} maps); "
                        "give one label per map (labels_X for maps_X), or leave the labels out")


def _check_die_values(where: str, maps: np.ndarray) -> None:
    """A DataError for die values outside {0, 1, 2} in `maps` (N, H, W), saying which values, in how many maps,
    and the first map and die that holds one (QA sweep 19a: "found [3]" among thousands of maps)."""
    if not maps.size or (maps.min() >= 0 and maps.max() <= 2 and not (maps.dtype.kind == "f" and (maps % 1).any())):
        return  # the common case: no (N, H, W) mask made
    wrong = ~np.isin(maps, (0, 1, 2))  # (N, H, W); NaN is no die value either
    values = np.unique(maps[wrong])[:5].tolist()
    i, r, c = np.argwhere(wrong)[0].tolist()
    n = int(wrong.reshape(len(maps), -1).any(axis=1).sum())
    raise DataError(f"{where}: die values must be 0, 1 or 2, found {values} in {n} map{'s' * (n != 1)}, the first "
                    f"[{i}] at row {r}, column {c}")


CHECKED_AS_TYPED = 64 * 2**20  # bytes: a wafer file up to this size has its die values checked before Start


def check_die_values(path: Path) -> None:
    """Every map array's die values of a wafer file, for a form that checks a path as it is typed (the Train
    page: QA sweep 19a, die values 3 were refused only at Start); a file over `CHECKED_AS_TYPED` is left to the
    load, which checks it anyway."""
    if path.stat().st_size > CHECKED_AS_TYPED:
        return
    keys = _checked_map_keys(path, _wafer_headers(path))
    z = np.load(path, allow_pickle=False)  # ndarray for .npy, a lazy NpzFile for .npz
    try:
        for key in keys:
            maps = z if not key else z[key]
            _check_die_values(f"{path.name}:{key}" if key else path.name, maps[None] if maps.ndim == 2 else maps)
    finally:
        if not isinstance(z, np.ndarray):
            z.close()


def load_wafer_file(path: Path, size: tuple[int, int], progress: Callable[[int, int], None] | None = None
                    ) -> tuple[np.ndarray, list[str], list[str], list[str]]:
    """Every map of a .npy/.npz at `size` (H, W): (one-hot uint8 (N, H, W, 3), labels, names, notices).

    Labels come from the array that matches each map array (unlabelled maps are "good"); arrays
    that would need pickle are never loaded. Die values outside {0, 1, 2} are a DataError.
    """
    h, w = size
    headers = _wafer_headers(path)
    keys = _checked_map_keys(path, headers)
    _refuse_stray_labels(path, keys, headers)
    images, labels, names, notices, sizes = [], [], [], [], set()
    try:
        z = np.load(path, allow_pickle=False)  # ndarray for .npy, a lazy NpzFile for .npz
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path.name}: not a readable numpy file ({exc})") from None
    try:
        for i, key in enumerate(keys):
            where = f"{path.name}:{key}" if key else path.name
            try:
                maps = z if not key else z[key]
            except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
                raise DataError(f"{where}: cannot load ({exc})") from None
            maps = maps[None] if maps.ndim == 2 else maps
            _check_die_values(where, maps)
            n, mh, mw = maps.shape
            if n:
                sizes.add(f"{mh}x{mw}")
            labels += _labels_of(path, z, key, n, headers, notices)
            if (mh, mw) != (h, w):
                maps = _resize_nearest(maps, h, w)
                notices.append(f"{n} maps from {where} resized {mh}x{mw} -> {h}x{w} (nearest)")
            images.append(wafer_to_onehot(maps.astype(np.uint8)))
            names += [f"{where}[{j}]" for j in range(n)]
            if progress is not None:
                progress(i + 1, len(keys))
    finally:
        if not isinstance(z, np.ndarray):
            z.close()
    if not names:
        raise DataError(f"{path.name}: holds no wafer maps (its arrays are empty)")
    if len(sizes) > 1:  # QA sweep 15: two products' normal maps scored 0.013 apart, as much as defects from normal
        notices.append(f"{path.name} holds maps of {len(sizes)} sizes ({', '.join(sorted(sizes))}), likely "
                       "different products, all resized to one: a product's normal maps can score apart from "
                       "another's; a run per product gives each its own threshold")
    return np.concatenate(images), labels, names, notices


def wafer_to_onehot(maps: np.ndarray) -> np.ndarray:
    """(N, H, W) die values in {0, 1, 2} -> (N, H, W, 3) uint8, 255 in the channel of the value."""
    maps = np.asarray(maps)
    if maps.ndim != 3:
        raise ValueError(f"maps must be (N, H, W), got shape {maps.shape}")
    if maps.size and (maps.min() < 0 or maps.max() > 2):
        raise ValueError(f"maps: die values must be 0, 1 or 2, found range {maps.min()}..{maps.max()}")
    return (maps[..., None] == np.arange(3)).astype(np.uint8) * np.uint8(255)  # (N, H, W, 3)


def onehot_to_wafer(x) -> np.ndarray:
    """(N, 3, H, W) or (N, H, W, 3) scores (tensor or array) -> (N, H, W) uint8 die values by argmax.

    When both axis 1 and the last axis have length 3, tensors are read channel-first (model
    output) and arrays channel-last (the image cache).
    """
    is_tensor = isinstance(x, torch.Tensor)
    a = x.detach().cpu().numpy() if is_tensor else np.asarray(x)
    if a.ndim != 4 or 3 not in (a.shape[1], a.shape[-1]):
        raise ValueError(f"one-hot wafer maps must be (N, 3, H, W) or (N, H, W, 3), got shape {a.shape}")
    first = a.shape[1] == 3 and (a.shape[-1] != 3 or is_tensor)
    return np.argmax(a, axis=1 if first else -1).astype(np.uint8)
