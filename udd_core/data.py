"""Data loading: image folders and wafer-map files into one in-memory `ImageSet`.

Image folders (MVTec AD layout or plain) and wafer-map arrays load at the model's input size.
Decoding one image file lives in `images`, wafer files in `wafermaps`, upload handling in `uploads`,
tiles and their names in `tiles`, noise patches and augmentation in `synthetic`; their public loading names
are re-exported here. What a data set holds before it is loaded (counts, labels, sizes) is `data_preview`.
"""
from __future__ import annotations

import os
import warnings
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .images import IMAGE_EXTS, NAMED_TAGS, conversion_notices, decode_one, image_files
from .tiles import tile_name

# Re-exported so callers find the whole data API here; each lives in the module of its concept.
from .images import load_patterns  # noqa: F401
from .synthetic import add_noise_patches, preprocess  # noqa: F401
from .uploads import DataError, extract_zip, save_uploads  # noqa: F401
from .wafermaps import WAFER_EXTS, load_wafer_file, map_sizes, onehot_to_wafer, wafer_labels, wafer_to_onehot  # noqa: F401

SPLITS = ("train", "test", "all")
SKIPS_NAMED = 20  # skipped files named one by one, with why; the rest are counted in one notice


def typed_path(text: str) -> str:
    """A path as typed into a page's box: without surrounding spaces or one pair of matching quotes (as a file
    manager's "Copy as path" gives it; QA sweep 15: both read as "no such file or folder")."""
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        text = text[1:-1].strip()
    return text


def to_tensor(images: np.ndarray, device: str | torch.device = "cpu") -> torch.Tensor:
    """Turn a cached uint8 batch (B, H, W, C) into a float32 tensor (B, C, H, W) in [0, 1].

    Normalisation happens per batch, on the device, so the cache stays uint8 (4x smaller).
    """
    t = torch.from_numpy(np.ascontiguousarray(images)).to(device)
    return t.permute(0, 3, 1, 2).float().div_(255.0)  # (B, C, H, W)


@dataclass
class ImageSet:
    """A loaded data set, held in memory at the model's input size."""

    images: np.ndarray  # (N, H, W, C) uint8
    labels: list[str]  # "good" / defect type (MVTec), or the wafer class
    names: list[str]  # source path, "path#tileK" (`tile_name`), or "file.npz:key[i]"
    masks: np.ndarray | None  # (N, H, W) bool, or None when the set has no masks at all
    kind: str  # "image" or "wafer"
    notices: list[str] = field(default_factory=list)
    # a tiled set's own label of each image its tiles were cut from (its folder's), which a tile's label is not:
    # a defective photo's clear tiles are "good"
    source_labels: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.images)


# ----------------------------------------------------------------------------- layout discovery


def _is_mvtec(p: Path) -> bool:
    return (p / "train" / "good").is_dir() or (p / "test" / "good").is_dir()


def layout(path) -> tuple[str, Path]:
    """(kind, root): the data kind, and the folder it lives in after unwrapping single subfolders.

    A zip often wraps its data set in one top folder (``upload/mvtec/train/good/...``): up to three
    such wrappers holding nothing else are stepped into.
    """
    if not str(path).strip():  # Path("") is the working folder: scanning all of it is never what was meant
        raise DataError("data: no data set given (a path is empty)")
    p = Path(path).expanduser()  # "~/parts" typed into a page's path box: no shell expanded it
    try:
        exists = p.exists()
    except OSError as e:  # a name too long for the file system (QA sweep 15: an exception box on two pages)
        shown = str(p) if len(str(p)) <= 80 else str(p)[:80] + "…"
        raise DataError(f"{shown}: {e.strerror or e}") from None
    if not exists:
        raise DataError(f"{p}: no such file or folder")
    if p.is_file():
        if p.suffix.lower() in WAFER_EXTS:
            return "wafer", p
        if p.suffix.lower() in IMAGE_EXTS:  # one suspect part, scored alone (QA sweep 17: it had to be foldered)
            return "folder", p
        raise DataError(f"{p}: not a data set (expected a folder of images, an image file, or a wafer .npy/.npz "
                        "file)")
    root = p
    for _ in range(3):
        if _is_mvtec(root):
            return "mvtec", root
        entries = [e for e in root.iterdir() if not e.name.startswith(".") and e.name != "__MACOSX"]
        if len(entries) == 1 and entries[0].is_dir():
            root = entries[0]
        elif len(entries) == 1 and entries[0].suffix.lower() in WAFER_EXTS:
            return "wafer", entries[0]
        else:
            break
    if _is_mvtec(root):
        return "mvtec", root
    if any(image_files(p, recursive=True)):
        return "folder", p
    raise DataError(f"{p}: folder holds no images ({', '.join(sorted(IMAGE_EXTS))})")


def resolved(path) -> Path:
    """A data path as runs record and compare it: `~` expanded (a page's box has no shell), absolute, resolved."""
    return Path(path).expanduser().resolve()


def check_outside_data(folder, data, what: str, whose: str = "the data set") -> None:
    """Refuse an output folder of PNGs inside a data set's folder (``what`` names the option, ``whose`` the set,
    e.g. "the run's training data"): the next load would take them for images of the set (QA: heatmaps of
    defects scored as 'good' photos). A wafer file's folder is fine; its maps live in the file."""
    if not data or not Path(data).expanduser().is_dir():
        return
    root = resolved(data)
    if resolved(folder).is_relative_to(root):
        raise DataError(f"{what}: lies inside {whose} {data}, whose next load would take its PNGs for "
                        "images of the set; choose a folder outside it")


def same_data(path, recorded) -> bool:
    """Whether `path` names the data set a run recorded (train.json's data.path); False when none is recorded."""
    return bool(path) and bool(recorded) and resolved(path) == resolved(recorded)


def scores_training_data(path, recorded, split: str, kind: str | None = None) -> bool:
    """Whether scoring `split` of `path` scores the normal images a run trained on (train.json's data.path
    as `recorded`): the same data, other than an MVTec test split (which a run never trains on). `kind`:
    `data_kind(path)` when the caller has it (it lists a plain folder's files)."""
    return same_data(path, recorded) and ((kind or data_kind(path)) != "mvtec" or split != "test")


def data_kind(path) -> str:
    """'mvtec', 'folder' or 'wafer' for a data path; DataError when it is none of them."""
    return layout(path)[0]


def kind_noun(kind: str | None) -> str:
    """What a data kind holds, in words: "wafer maps" for a wafer file, "images" for every other kind."""
    return "wafer maps" if kind == "wafer" else "images"


def kind_mismatch(trained: str | None, given: str, effect: str = "its scores (and any reconstructions)") -> str | None:
    """A warning when a run trained on wafer maps meets images, or the other way round, saying that `effect`
    (what the run makes of them) means little; None otherwise."""
    if not trained or kind_noun(trained) == kind_noun(given):
        return None
    return f"the run was trained on {kind_noun(trained)} but these data are {kind_noun(given)}: {effect} mean little here"


def checked_shape(input_shape) -> tuple[int, int, int]:
    """The model's (C, H, W) as the (H, W, C) of the cached image arrays."""
    try:
        c, h, w = (int(v) for v in input_shape)
    except (TypeError, ValueError):
        raise DataError(f"input_shape must be (C, H, W), got {input_shape!r}") from None
    if h < 1 or w < 1:
        raise DataError(f"input_shape must be (C, H, W) with H, W >= 1, got {input_shape!r}")
    if c not in (1, 3):  # a config's first channels (QA: the message used to name no field)
        raise DataError(f"block_size_in[0][0]: the model takes {c} input channels; data load as 1 (gray) or "
                        "3 (RGB, or one-hot wafer maps)")
    return h, w, c


def _mask_for(gt: Path, label: str, stem: str, cache: dict[str, dict[str, Path]]) -> Path | None:
    """MVTec mask file of a test image: ground_truth/<label>/<stem>_mask.png (or <stem>.png)."""
    if label not in cache:
        folder = gt / label
        files = image_files(folder) if folder.is_dir() else []
        cache[label] = {f.stem: f for f in files}
    table = cache[label]
    return table.get(f"{stem}_mask") or table.get(stem)


def image_sources(kind: str, root: Path, split: str) -> tuple[list[tuple[Path, str, Path | None]], bool]:
    """(image path, label, mask path) triples in a fixed order, and whether masks apply at all."""
    if kind == "folder":
        return [(f, "good", None) for f in ([root] if root.is_file() else image_files(root, recursive=True))], False
    if split not in SPLITS:
        raise DataError(f"split must be one of {SPLITS}, got {split!r}")
    out: list[tuple[Path, str, Path | None]] = []
    if split in ("train", "all"):
        if not (root / "train" / "good").is_dir():
            raise DataError(f"{root}: no train/good folder")
        out += [(f, "good", None) for f in image_files(root / "train" / "good")]
    if split in ("test", "all"):
        test = root / "test"
        if not test.is_dir():
            raise DataError(f"{root}: no test folder (it has train/good only: score the train split, or all)")
        subdirs = sorted((d for d in test.iterdir() if d.is_dir()), key=lambda d: (d.name != "good", d.name))
        gt, cache = root / "ground_truth", {}
        for d in subdirs:
            for f in image_files(d):
                out.append((f, d.name, None if d.name == "good" else _mask_for(gt, d.name, f.stem, cache)))
    return out, any(m is not None for _, _, m in out)


def _load_images(kind, root, shape, split, tile, progress) -> ImageSet:
    sources, has_masks = image_sources(kind, root, split)
    if not sources:
        raise DataError(f"{root}: no images for split {split!r}")
    h, w, c = shape
    base = root.parent if root.is_file() else root  # what notices name files relative to
    images, masks, labels, names, notices = [], [], [], [], []
    source_labels: dict[str, str] = {}
    counts: Counter[str] = Counter()
    named: dict[str, list[Path]] = {tag: [] for tag in NAMED_TAGS}  # the images a notice asks to check
    missing_masks = clear_tiles = skipped = overlapped = 0
    # Pillow releases the GIL while decoding and resizing, so a few threads overlap files.
    # The warnings filter turns Pillow's soft bomb warning into an error in the workers too.
    with warnings.catch_warnings(), ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        results = pool.map(lambda s: decode_one(s[0], s[2], shape, tile), sources)
        for i, ((src, label, mpath), res) in enumerate(zip(sources, results)):
            rel = src.relative_to(base) if src.is_relative_to(base) else src
            if isinstance(res, str):
                skipped += 1
                if skipped <= SKIPS_NAMED:
                    notices.append(f"skipped {rel}: {res}")
            else:
                arr, m, tags, note, origins = res
                counts.update(tags)
                for tag in set(tags) & set(named):
                    named[tag].append(rel)
                notices += [note] if note else []
                images.append(arr)
                if tile and m is not None and label != "good":  # the mask says which tiles hold the defect
                    hit = m.reshape(len(m), -1).any(axis=1)  # (k,)
                    labels += [label if defect else "good" for defect in hit.tolist()]
                    clear_tiles += int((~hit).sum())
                else:
                    labels += [label] * len(arr)
                names += [str(src)] if not tile else [tile_name(src, k, o) for k, o in enumerate(origins)]
                overlapped += tile and any(y % h or x % w for y, x in origins)  # a side not a multiple of the tile
                if tile:
                    source_labels[str(src)] = label
                if has_masks:
                    missing_masks += label != "good" and mpath is None
                    masks.append(m if m is not None else np.zeros(arr.shape[:3], dtype=bool))
            if progress is not None:
                progress(i + 1, len(sources))
    if skipped > SKIPS_NAMED:  # a folder of 500 broken files: 500 lines on the page and in train.json
        more = skipped - SKIPS_NAMED
        notices.append(f"skipped {more} more files (the first {SKIPS_NAMED} skipped are named with why)")
    if not images:
        first = notices[0].removeprefix("skipped ") if notices else ""
        raise DataError(f"{root}: no loadable images ({len(sources)} file{'s' * (len(sources) != 1)} skipped"
                        + (f"; {first}" if first else "") + ")")
    notices += conversion_notices(counts, f"{h}x{w}", named)
    if kind == "mvtec" and not has_masks and any(lab != "good" for lab in labels):
        notices.append("no defect masks found in ground_truth/; the set has no masks")
    if missing_masks:
        notices.append(f"{missing_masks} defect image{'s' * (missing_masks != 1)} {'have' if missing_masks != 1 else 'has'} "
                       "no mask in ground_truth/; treated as empty")
    if tile:
        n = len(images)  # QA sweep 19a: "(overlapping)" was said of 128 px photos in 64 px tiles too
        which = "each" if overlapped == n else f"{overlapped} of them"
        notices.append(f"{n} image{'s' * (n != 1)} cut into {len(names)} tiles of {h}x{w}" + (
            "" if not overlapped else f", the last row and column of {which} flush with the far edges (overlapping "
            "their neighbours), so that every pixel is in a tile"))
    if clear_tiles:  # QA sweep 10: a photo's label on all its tiles made per-tile metrics count clean tiles as misses
        notices.append(f"{clear_tiles} tiles of defective images hold no defect pixel in their masks: "
                       "labelled good, so that each tile is judged by what it shows")
    return ImageSet(np.concatenate(images), labels, names, np.concatenate(masks) if has_masks else None,
                    "image", notices, source_labels)


# ----------------------------------------------------------------------------- public loaders


def load_dataset(path, input_shape: tuple[int, int, int], split: str = "train", tile: bool = False,
                 progress: Callable[[int, int], None] | None = None) -> ImageSet:
    """Load an MVTec folder, a plain image folder or a wafer .npy/.npz at the model's input size.

    Each file is decoded once; unreadable files are skipped with a notice. `split` selects MVTec
    train/good, test/* (with masks) or both; plain folders and wafer files ignore it. `tile` cuts
    images into full H x W tiles instead of resizing them. `progress(done, total)` is called per file.
    Image modes are made 8-bit (16-bit scaled by 0..65535, transparency composited onto black),
    then matched to C: gray repeated to 3 channels, RGB to 1 by ITU-R 601-2 luminance.
    """
    shape = checked_shape(input_shape)
    if split not in SPLITS:
        raise DataError(f"split must be one of {SPLITS}, got {split!r}")
    kind, root = layout(path)
    if kind == "wafer":
        h, w, c = shape
        map_sizes(root)  # headers only: a damaged file is named before the channels are checked
        check_wafer_channels(root, c)
        images, labels, names, notices = load_wafer_file(root, (h, w), progress)
        notices += ["tiling does not apply to wafer maps; ignored"] if tile else []
        return ImageSet(images, labels, names, None, "wafer", notices)
    return _load_images(kind, root, shape, split, tile, progress)


def check_wafer_channels(root: Path, c: int) -> None:
    """Call after `map_sizes(root)`, so that a damaged file is named as such, not as the model's channels."""
    if c != 3:
        raise DataError(f"{root.name}: wafer maps need 3 input channels (one-hot), the model takes C={c}: "
                        "give this model images, or wafer maps to a 3-channel model (such as the wafer-26 preset)")
