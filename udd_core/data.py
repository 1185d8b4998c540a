"""Data loading: image folders, wafer maps, uploads, noise patches and batching.

Image folders (MVTec AD layout or plain) and wafer-map arrays load into one in-memory `ImageSet`
at the model's input size. Upload handling lives in `uploads`, noise patches and tiling/augmentation
in `synthetic`; both are re-exported here.
"""
from __future__ import annotations

import os
import warnings
import zipfile
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

# Re-exported so callers find the whole data API here; each lives in the module of its concept.
from .synthetic import add_noise_patches, preprocess  # noqa: F401
from .uploads import DataError, extract_zip, save_uploads  # noqa: F401

IMAGE_EXTS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".pgm", ".ppm", ".pbm"})
WAFER_EXTS = frozenset({".npy", ".npz"})
SPLITS = ("train", "test", "all")
_LABEL_KEYS = ("labels", "label", "failureType", "failure_type", "classes", "class", "y")
# Pillow raises these (and more) for corrupt, truncated, empty or non-image files.
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, MemoryError, Image.DecompressionBombError,
                  Image.DecompressionBombWarning)


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
    names: list[str]  # source path, "path#tile k", or "file.npz:key[i]"
    masks: np.ndarray | None  # (N, H, W) bool, or None when the set has no masks at all
    kind: str  # "image" or "wafer"
    notices: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.images)


# ----------------------------------------------------------------------------- layout discovery


def _is_image(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_EXTS and not p.name.startswith(".") and p.is_file()


def _images_in(folder: Path, recursive: bool = False) -> list[Path]:
    """Sorted image files of a folder; hidden files and macOS resource forks are ignored."""
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if _is_image(p) and "__MACOSX" not in p.parts)


def _is_mvtec(p: Path) -> bool:
    return (p / "train" / "good").is_dir() or (p / "test" / "good").is_dir()


def _layout(path) -> tuple[str, Path]:
    """(kind, root): the data kind, and the folder it lives in after unwrapping single subfolders.

    A zip often wraps its data set in one top folder (``upload/mvtec/train/good/...``): up to three
    such wrappers holding nothing else are stepped into.
    """
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such file or folder")
    if p.is_file():
        if p.suffix.lower() in WAFER_EXTS:
            return "wafer", p
        raise DataError(f"{p}: not a data set (expected a folder of images, or a wafer .npy/.npz file)")
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
    if any(_images_in(p, recursive=True)):
        return "folder", p
    raise DataError(f"{p}: folder holds no images ({', '.join(sorted(IMAGE_EXTS))})")


def data_kind(path) -> str:
    """'mvtec', 'folder' or 'wafer' for a data path; DataError when it is none of them."""
    return _layout(path)[0]


def _check_shape(input_shape) -> tuple[int, int, int]:
    """The model's (C, H, W) as the (H, W, C) of the cached image arrays."""
    try:
        c, h, w = (int(v) for v in input_shape)
    except (TypeError, ValueError):
        raise DataError(f"input_shape must be (C, H, W), got {input_shape!r}") from None
    if h < 1 or w < 1 or c not in (1, 3):
        raise DataError(f"input_shape must be (C, H, W) with C in {{1, 3}} and H, W >= 1, got {input_shape!r}")
    return h, w, c


def _mask_for(gt: Path, label: str, stem: str, cache: dict[str, dict[str, Path]]) -> Path | None:
    """MVTec mask file of a test image: ground_truth/<label>/<stem>_mask.png (or <stem>.png)."""
    if label not in cache:
        folder = gt / label
        files = _images_in(folder) if folder.is_dir() else []
        cache[label] = {f.stem: f for f in files}
    table = cache[label]
    return table.get(f"{stem}_mask") or table.get(stem)


def _sources(kind: str, root: Path, split: str) -> tuple[list[tuple[Path, str, Path | None]], bool]:
    """(image path, label, mask path) triples in a fixed order, and whether masks apply at all."""
    if kind == "folder":
        return [(f, "good", None) for f in _images_in(root, recursive=True)], False
    if split not in SPLITS:
        raise DataError(f"split must be one of {SPLITS}, got {split!r}")
    out: list[tuple[Path, str, Path | None]] = []
    if split in ("train", "all"):
        if not (root / "train" / "good").is_dir():
            raise DataError(f"{root}: no train/good folder")
        out += [(f, "good", None) for f in _images_in(root / "train" / "good")]
    if split in ("test", "all"):
        test = root / "test"
        if not test.is_dir():
            raise DataError(f"{root}: no test folder")
        subdirs = sorted((d for d in test.iterdir() if d.is_dir()), key=lambda d: (d.name != "good", d.name))
        gt, cache = root / "ground_truth", {}
        for d in subdirs:
            for f in _images_in(d):
                out.append((f, d.name, None if d.name == "good" else _mask_for(gt, d.name, f.stem, cache)))
    return out, any(m is not None for _, _, m in out)


# ----------------------------------------------------------------------------- image decoding


def _open(path: Path, draft: tuple[int, int] | None = None) -> Image.Image:
    """Open and decode one file; decompression bombs count as errors even below Pillow's hard limit.

    `draft` (w, h) lets a JPEG decode at a reduced DCT scale no smaller than that size: a 2-8x
    faster decode when the image is shrunk afterwards anyway.
    """
    im = Image.open(path)
    limit = Image.MAX_IMAGE_PIXELS
    if limit and im.size[0] * im.size[1] > limit:
        raise Image.DecompressionBombError(f"{im.size[0]}x{im.size[1]} pixels exceed the limit of {limit}")
    if draft and im.format == "JPEG":
        im.draft(im.mode, draft)
    im.load()
    return im


def load_patterns(folder) -> list[np.ndarray]:
    """Gray uint8 (h, w) pattern images from a folder, at their own sizes, for shaped noise patches.

    Unreadable files are skipped; a folder with no readable image is a DataError naming it.
    """
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"{root}: pattern folder not found")
    out = []
    for p in _images_in(root):
        try:
            out.append(np.asarray(_to_8bit(_open(p))[0].convert("L")))
        except (OSError, ValueError, Image.DecompressionBombError):
            continue  # a broken pattern only costs one shape
    if not out:
        raise DataError(f"{root}: no readable pattern images")
    return out


def _to_8bit(im: Image.Image) -> tuple[Image.Image, str | None]:
    """Any Pillow mode -> mode 'L' or 'RGB', plus a tag naming the conversion made (for notices).

    Transparency is composited onto black, the value of "nothing there" in these models' inputs.
    """
    mode = im.mode
    if mode in ("L", "RGB"):
        return im, None
    if mode == "1":
        return im.convert("L"), "1-bit"
    if mode.startswith("I"):  # I;16, I;16B, I (32-bit int): read as 16-bit, 0..65535 -> 0..255
        a = np.asarray(im).astype(np.float64)
        return Image.fromarray(np.clip(np.rint(a * (255 / 65535)), 0, 255).astype(np.uint8), "L"), "16-bit"
    if mode == "F":  # floats in [0, 1] are scaled, anything else is clipped to 0..255
        a = np.nan_to_num(np.asarray(im, dtype=np.float64))
        if a.size and a.min() >= 0 and a.max() <= 1:
            a = a * 255
        return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L"), "float"
    if mode in ("LA", "La", "RGBA", "RGBa", "PA") or (mode == "P" and "transparency" in im.info):
        a = np.asarray(im.convert("LA" if mode in ("LA", "La") else "RGBA"), dtype=np.uint32)
        col = (a[..., :-1] * a[..., -1:] + 127) // 255  # (h, w, c) premultiplied = over black
        col = col.astype(np.uint8)
        return Image.fromarray(col[..., 0] if col.shape[-1] == 1 else col, "L" if col.shape[-1] == 1 else "RGB"), "alpha"
    if mode == "P":
        return im.convert("RGB"), "palette"
    return im.convert("RGB"), mode  # CMYK, YCbCr, LAB, HSV


_TAG_TEXT = {
    "1-bit": "{n} 1-bit images converted to 8-bit",
    "16-bit": "{n} 16-bit images scaled to 8 bits (0..65535 -> 0..255)",
    "float": "{n} floating-point images scaled to 8 bits",
    "alpha": "{n} images with transparency composited onto black",
    "palette": "{n} palette images expanded to RGB",
    "to-gray": "{n} RGB images converted to 1 channel by luminance (ITU-R 601-2)",
    "to-rgb": "{n} grayscale images repeated to 3 channels",
    "resized": "{n} images resized to {hw} (bilinear)",
}


def _tiles(a: np.ndarray, h: int, w: int) -> np.ndarray:
    """(Hi, Wi, ...) -> (k, h, w, ...): all full h x w tiles, row-major from the top-left."""
    ny, nx = a.shape[0] // h, a.shape[1] // w
    t = a[: ny * h, : nx * w].reshape(ny, h, nx, w, *a.shape[2:])
    return np.swapaxes(t, 1, 2).reshape(ny * nx, h, w, *a.shape[2:])


def _load_one(src: Path, mask_path: Path | None, shape: tuple[int, int, int], tile: bool):
    """Decode one image (and its mask). Returns (images (k,H,W,C), masks (k,H,W) | None, tags, note)
    or a string: the reason to skip the file."""
    h, w, c = shape
    try:
        im, tag = _to_8bit(_open(src, None if tile else (w, h)))
    except _DECODE_ERRORS as exc:
        if isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
            return f"too large, possible decompression bomb ({exc})"
        return "empty file" if src.stat().st_size == 0 else f"not a readable image ({type(exc).__name__})"
    tags = [tag] if tag else []
    if c == 1 and im.mode == "RGB":
        im, tags = im.convert("L"), tags + ["to-gray"]  # Pillow's ITU-R 601-2 luma
    size = im.size  # (width, height)
    if tile:
        arr = _tiles(np.asarray(im), h, w)
        if not len(arr):
            return f"smaller than one {h}x{w} tile ({size[0]}x{size[1]})"
    else:
        if size != (w, h):
            im, tags = im.resize((w, h), Image.BILINEAR), tags + ["resized"]
        arr = np.asarray(im)[None]
    if arr.ndim == 3:  # (k, H, W) grayscale -> (k, H, W, C)
        arr = np.repeat(arr[..., None], c, axis=-1)
        tags += ["to-rgb"] if c == 3 else []
    masks, note = None, None
    if mask_path is not None:
        try:
            m = _open(mask_path).convert("L")
            if tile and m.size != size:
                m, note = m.resize(size, Image.NEAREST), f"mask of {src.name} resized to its image"
            m = _tiles(np.asarray(m), h, w) if tile else np.asarray(m.resize((w, h), Image.NEAREST))[None]
            masks = m > 0
        except _DECODE_ERRORS as exc:
            note = f"mask {mask_path.name} unreadable ({type(exc).__name__}); treated as empty"
    return np.ascontiguousarray(arr), masks, tags, note


def _load_images(kind, root, shape, split, tile, progress) -> ImageSet:
    sources, has_masks = _sources(kind, root, split)
    if not sources:
        raise DataError(f"{root}: no images for split {split!r}")
    h, w, c = shape
    images, masks, labels, names, notices = [], [], [], [], []
    counts: Counter[str] = Counter()
    missing_masks = 0
    # Pillow releases the GIL while decoding and resizing, so a few threads overlap files.
    # The warnings filter turns Pillow's soft bomb warning into an error in the workers too.
    with warnings.catch_warnings(), ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        results = pool.map(lambda s: _load_one(s[0], s[2], shape, tile), sources)
        for i, ((src, label, mpath), res) in enumerate(zip(sources, results)):
            rel = src.relative_to(root) if src.is_relative_to(root) else src
            if isinstance(res, str):
                notices.append(f"skipped {rel}: {res}")
            else:
                arr, m, tags, note = res
                counts.update(tags)
                notices += [note] if note else []
                images.append(arr)
                labels += [label] * len(arr)
                names += [str(src)] if not tile else [f"{src}#tile {k}" for k in range(len(arr))]
                if has_masks:
                    missing_masks += label != "good" and mpath is None
                    masks.append(m if m is not None else np.zeros(arr.shape[:3], dtype=bool))
            if progress is not None:
                progress(i + 1, len(sources))
    if not images:
        raise DataError(f"{root}: no loadable images ({len(sources)} files skipped)")
    for tag, n in sorted(counts.items()):
        notices.append(_TAG_TEXT.get(tag, "{n} " + tag + " images converted to RGB").format(n=n, hw=f"{h}x{w}"))
    if kind == "mvtec" and not has_masks and any(lab != "good" for lab in labels):
        notices.append("no defect masks found in ground_truth/; the set has no masks")
    if missing_masks:
        notices.append(f"{missing_masks} defect images have no mask in ground_truth/; treated as empty")
    if tile:
        notices.append(f"{len(images)} images cut into {len(names)} tiles of {h}x{w}")
    return ImageSet(np.concatenate(images), labels, names, np.concatenate(masks) if has_masks else None,
                    "image", notices)


# ----------------------------------------------------------------------------- wafer maps


def _npy_header(fp) -> tuple[tuple[int, ...], np.dtype]:
    version = np.lib.format.read_magic(fp)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, _, dtype = read(fp)
    return shape, dtype


def _wafer_headers(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
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


def _map_keys(headers) -> list[str]:
    return sorted(k for k, (s, d) in headers.items() if (len(s) == 3 or k == "" and len(s) == 2) and d.kind in "biuf")


def _label_key(key: str, n: int, headers) -> str | None:
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


def _load_wafer(path: Path, shape, progress) -> ImageSet:
    h, w, c = shape
    if c != 3:
        raise DataError(f"{path.name}: wafer maps need 3 input channels (one-hot), input_shape has C={c}")
    headers = _wafer_headers(path)
    keys = _map_keys(headers)
    if not keys:
        raise DataError(f"{path.name}: holds no (N, H, W) wafer map array")
    images, labels, names, notices = [], [], [], []
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
            if maps.size and (maps.min() < 0 or maps.max() > 2 or (maps.dtype.kind == "f" and (maps % 1).any())):
                bad = np.setdiff1d(np.unique(maps), [0, 1, 2])[:5]
                raise DataError(f"{where}: die values must be 0, 1 or 2, found {bad.tolist()}")
            n, mh, mw = maps.shape
            lkey = _label_key(key, n, headers) if key else None
            if lkey and headers[lkey][1].hasobject:
                notices.append(f"{path.name}:{lkey}: labels need pickle to load; ignored")
                lkey = None
            labels += _as_labels(z[lkey]) if lkey else ["good"] * n
            if (mh, mw) != (h, w):
                rows = np.minimum(((np.arange(h) + 0.5) * mh / h).astype(int), mh - 1)
                cols = np.minimum(((np.arange(w) + 0.5) * mw / w).astype(int), mw - 1)
                maps = maps[:, rows][:, :, cols]  # nearest neighbour keeps die values discrete
                notices.append(f"{n} maps from {where} resized {mh}x{mw} -> {h}x{w} (nearest)")
            images.append(wafer_to_onehot(maps.astype(np.uint8)))
            names += [f"{where}[{j}]" for j in range(n)]
            if progress is not None:
                progress(i + 1, len(keys))
    finally:
        if not isinstance(z, np.ndarray):
            z.close()
    return ImageSet(np.concatenate(images), labels, names, None, "wafer", notices)


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
    shape = _check_shape(input_shape)
    if split not in SPLITS:
        raise DataError(f"split must be one of {SPLITS}, got {split!r}")
    kind, root = _layout(path)
    if kind == "wafer":
        out = _load_wafer(root, shape, progress)
        out.notices += ["tiling does not apply to wafer maps; ignored"] if tile else []
        return out
    return _load_images(kind, root, shape, split, tile, progress)


def estimate_cache_bytes(path, input_shape, split="train", tile=False) -> tuple[int, int]:
    """(number of cached images, bytes of images plus masks) without decoding any pixels."""
    h, w, c = _check_shape(input_shape)
    kind, root = _layout(path)
    if kind == "wafer":
        headers = _wafer_headers(root)
        n = sum(1 if len(headers[k][0]) == 2 else headers[k][0][0] for k in _map_keys(headers))
        return n, n * h * w * 3
    sources, has_masks = _sources(kind, root, split)
    if not tile:
        n = len(sources)
    else:
        n = 0
        for src, _, _ in sources:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                try:
                    with Image.open(src) as im:  # parses the header only
                        n += (im.size[0] // w) * (im.size[1] // h)
                except _DECODE_ERRORS:
                    continue
    return n, n * h * w * (c + (1 if has_masks else 0))
