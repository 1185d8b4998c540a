"""Data loading: image folders and wafer-map files into one in-memory `ImageSet`.

Image folders (MVTec AD layout or plain) and wafer-map arrays load at the model's input size.
Wafer files live in `wafermaps`, upload handling in `uploads`, noise patches and tiling/augmentation
in `synthetic`; their public names are re-exported here.
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

# Re-exported so callers find the whole data API here; each lives in the module of its concept.
from .synthetic import add_noise_patches, preprocess  # noqa: F401
from .uploads import DataError, extract_zip, save_uploads  # noqa: F401
from .wafermaps import WAFER_EXTS, load_wafer_file, map_sizes, onehot_to_wafer, wafer_to_onehot  # noqa: F401

IMAGE_EXTS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".pgm", ".ppm", ".pbm"})
SPLITS = ("train", "test", "all")
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
        h, w, c = shape
        if c != 3:
            raise DataError(f"{root.name}: wafer maps need 3 input channels (one-hot), input_shape has C={c}")
        images, labels, names, notices = load_wafer_file(root, (h, w), progress)
        notices += ["tiling does not apply to wafer maps; ignored"] if tile else []
        return ImageSet(images, labels, names, None, "wafer", notices)
    return _load_images(kind, root, shape, split, tile, progress)


def estimate_cache_bytes(path, input_shape, split="train", tile=False) -> tuple[int, int]:
    """(number of cached images, bytes of images plus masks) without decoding any pixels."""
    h, w, c = _check_shape(input_shape)
    kind, root = _layout(path)
    if kind == "wafer":
        n = sum(k for k, _ in map_sizes(root))
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


def native_size(path, split: str = "train") -> tuple[int, int]:
    """(H, W) shared by every image (or wafer map) of a data set, read from file headers only.

    For scoring with a model that stores no input size; images of different sizes are a ValueError.
    """
    kind, root = _layout(path)
    sizes: list[tuple[int, int]] = []
    if kind == "wafer":
        sizes = [hw for _, hw in map_sizes(root)]
    else:
        for src, _, _ in _sources(kind, root, split)[0]:
            try:
                with Image.open(src) as im:  # parses the header only
                    sizes.append((im.height, im.width))
            except _DECODE_ERRORS:
                continue
    distinct = sorted(set(sizes))
    if not distinct:
        raise DataError(f"{path}: no readable images for split {split!r}")
    if len(distinct) > 1:
        (h1, w1), (h2, w2) = distinct[0], distinct[-1]
        raise ValueError(f"{path}: images differ in size ({h1}x{w1} and {h2}x{w2}); give a size (--size H,W)")
    return distinct[0]
