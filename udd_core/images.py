"""Image files: which files are images, decoding any Pillow mode to 8 bits, and tiling.

`data` builds data sets from these; `decode_one` turns one file (and its mask) into cached uint8
arrays at the model's input size, and tags every conversion it made so the loader can say so.
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image

from .notices import Caution
from .tiles import cut_tiles, tile_starts, tiled_size
from .uploads import DataError

IMAGE_EXTS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".pgm", ".ppm", ".pbm"})
# Pillow raises these (and more) for corrupt, truncated, empty or non-image files.
DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, MemoryError, Image.DecompressionBombError,
                 Image.DecompressionBombWarning)


def _is_image(p: Path) -> bool:
    """An image's name, on a file or on a link that is not a folder's: a dangling or looping link is kept, so
    that its decode fails and the loader names it among the unreadable files (QA sweep 15b: skipped silently)."""
    if p.suffix.lower() not in IMAGE_EXTS or p.name.startswith("."):
        return False
    return p.is_file() or (p.is_symlink() and not p.is_dir())


def _files_below(folder: Path) -> list[Path]:
    """Every file below ``folder``, through linked subfolders too (Path.rglob skips them before Python 3.13:
    a data set whose class folders are links read as empty, QA sweep 15b); a folder reached twice, as a link
    loop makes it, is walked once."""
    seen: set[tuple[int, int]] = set()
    found: list[Path] = []
    for root, dirs, files in os.walk(folder, followlinks=True):
        st = os.stat(root)
        if (st.st_dev, st.st_ino) in seen:
            dirs[:] = []  # walked already: its subfolders too
            continue
        seen.add((st.st_dev, st.st_ino))
        found.extend(Path(root, name) for name in files)  # dangling and looping links among them
    return found


def image_files(folder: Path, recursive: bool = False) -> list[Path]:
    """Sorted image files of a folder; hidden files and macOS resource forks are ignored."""
    found = _files_below(folder) if recursive else folder.iterdir()
    return sorted(p for p in found if _is_image(p) and "__MACOSX" not in p.parts)


def readable_image(path: Path) -> bool:
    """Whether `path` decodes whole as an image, as training will decode it: an empty or truncated file
    (a JPEG cut short too, which Pillow's header-only `verify` lets through), or text with an image's
    name, fails."""
    try:
        open_image(path).close()  # decodes every pixel
        return True
    except DECODE_ERRORS:
        return False


def open_image(path: Path, draft: tuple[int, int] | None = None) -> Image.Image:
    """Open and decode one file; decompression bombs count as errors even below Pillow's hard limit.

    `draft` (w, h) lets a JPEG decode at a reduced DCT scale no smaller than that size: a 2-8x
    faster decode when the image is shrunk afterwards anyway.
    """
    im = Image.open(path)
    limit = Image.MAX_IMAGE_PIXELS
    if limit and im.size[0] * im.size[1] > limit:
        raise Image.DecompressionBombError(f"{im.size[0]}x{im.size[1]} pixels exceed the limit of {limit}")
    if draft and im.format == "JPEG":
        im.info["full_size"] = im.size  # (w, h) before the reduced decode, so a resize is still reported
        im.draft(im.mode, draft)
    im.load()
    return im


def pattern_folder_problem(folder) -> str | None:
    """Why `folder` cannot be a folder of noise patterns, found without reading an image (the Train page asks
    as the field is typed, QA sweep 12): missing, a file, or no image file in it; None when it may be one."""
    if not str(folder).strip():  # an empty field: no patterns asked for
        return None
    root = Path(str(folder).strip())
    if root.is_file():
        return f"{root}: a file; the pattern option takes a folder of pattern images"
    if not root.is_dir():
        return f"{root}: pattern folder not found"
    if not image_files(root):
        return f"{root}: holds no image files to use as patterns"
    return None


def load_patterns(folder) -> list[np.ndarray]:
    """Gray uint8 (h, w) pattern images from a folder, at their own sizes, for shaped noise patches.

    Unreadable files are skipped; a folder with no readable image is a DataError naming it.
    """
    root = Path(folder)
    if problem := pattern_folder_problem(root):
        raise DataError(problem)
    out = []
    for p in image_files(root):
        try:
            out.append(np.asarray(to_8bit(open_image(p))[0].convert("L")))
        except (OSError, ValueError, Image.DecompressionBombError):
            continue  # a broken pattern only costs one shape
    if not out:
        raise DataError(f"{root}: no readable pattern images")
    return out


def to_8bit(im: Image.Image) -> tuple[Image.Image, str | None]:
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
        # 12-bit cameras write 0..4095 into 16-bit PNGs: scaled as 16-bit that is 16 grey levels (QA sweep 10).
        # A 16-bit image that dark (below 1/16 of its range) is rare; the notice says which rule each image got.
        top, tag = (4095, "12-bit") if a.size and 0 < a.max() <= 4095 else (65535, "16-bit")
        if a.size and (a.min() < 0 or a.max() > 65535):  # 32-bit data: clipped, and said so (QA sweep 15b)
            tag = "32-bit"
        return Image.fromarray(np.clip(np.rint(a * (255 / top)), 0, 255).astype(np.uint8), "L"), tag
    if mode == "F":  # floats in [0, 1] are scaled, anything else is clipped to 0..255
        a = np.nan_to_num(np.asarray(im, dtype=np.float64))
        tag = "float"
        if a.size and a.min() >= 0 and a.max() <= 1:
            a = a * 255
        elif a.size and (a.min() < 0 or a.max() > 255):
            tag = "float-clipped"
        return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L"), tag
    if mode in ("LA", "La", "RGBA", "RGBa", "PA") or (mode == "P" and "transparency" in im.info):
        a = np.asarray(im.convert("LA" if mode in ("LA", "La") else "RGBA"), dtype=np.uint32)
        col = (a[..., :-1] * a[..., -1:] + 127) // 255  # (h, w, c) premultiplied = over black
        col = col.astype(np.uint8)
        # an alpha channel that is opaque everywhere changes nothing: not "transparency" (QA sweep 19b)
        tag = "alpha" if a.size and a[..., -1].min() < 255 else None
        return Image.fromarray(col[..., 0] if col.shape[-1] == 1 else col, "L" if col.shape[-1] == 1 else "RGB"), tag
    if mode == "P":
        return im.convert("RGB"), "palette"
    return im.convert("RGB"), mode  # CMYK, YCbCr, LAB, HSV


_CONVERSION_TEXT = {  # {s}: the plural's "s", so that one image reads "1 ... image"
    "1-bit": "{n} 1-bit image{s} converted to 8-bit",
    "16-bit": "{n} 16-bit image{s} scaled to 8 bits (0..65535 -> 0..255)",
    "12-bit": "{n} 16-bit image{s} holding only values up to 4095 (12-bit camera data) scaled to 8 bits as 12-bit "
              "(0..4095 -> 0..255)",
    "32-bit": "{n} 32-bit image{s} with values outside 0..65535 clipped to 8 bits as 16-bit ones: what lies "
              "outside reads as black or white; convert {them} to 16 or 8 bits first",
    "float": "{n} floating-point image{s} scaled to 8 bits",
    "float-clipped": "{n} floating-point image{s} with values outside 0..255 clipped to 8 bits: what lies outside "
                     "reads as black or white; scale {them} to 0..1 or 0..255 first",
    "frames": "{n} image{s} with several frames (an animated GIF, a multi-page TIFF): only the first frame is used",
    "alpha": "{n} image{s} with transparent pixels composited onto black: on a lighter part a black area may "
             "score as a defect",
    "palette": "{n} palette image{s} expanded to RGB",
    "to-gray": "{n} RGB image{s} converted to 1 channel by luminance (ITU-R 601-2)",
    "to-rgb": "{n} grayscale image{s} repeated to 3 channels",
    "resized": "{n} image{s} resized to {hw} (bilinear)",
    "tile-enlarged": "{n} image{s} smaller than one {hw} tile enlarged until {they} {hold} one (bilinear, aspect "
                     "kept), so that {they} {are} inspected too",
    "stretched": "{n} image{s} of another aspect ratio stretched to {hw} (bilinear), {their} shapes distorted: "
                 "fine when every image is stretched alike, else a likely false alarm; rotate, crop or pad {them}, "
                 "or cut the photos into tiles",
    "upscaled": "{n} image{s} less than half of {hw} in a side, enlarged more than twice: blurred, "
                "{they} may score as defects; check that {they} {belong} to the set",
    "mask-levels": "{n} defect mask{s} with more than two values: every value above 0 counts as defect",
}


def _number(n: int) -> dict[str, str]:
    """The words of `_CONVERSION_TEXT` that follow the count: "1 image ... it belongs", "2 images ... they belong"."""
    return {"s": "s" * (n != 1), "they": "they" if n != 1 else "it", "them": "them" if n != 1 else "it",
            "their": "their" if n != 1 else "its", "hold": "hold" if n != 1 else "holds",
            "are": "are" if n != 1 else "is",
            "belong": "belong" + "s" * (n == 1)}


# conversions whose notice names the images: the user is asked to check or convert them
NAMED_TAGS = ("upscaled", "32-bit", "float-clipped", "frames", "stretched", "alpha", "tile-enlarged")
STRETCH = np.log(1.1)  # an aspect ratio changed by more than 10% is a stretch, not a resize
NAMES_SHOWN = 5  # at most this many names in a notice, then "and N more"


def conversion_notices(counts: Mapping[str, int], hw: str, names: Optional[Mapping[str, Sequence[str]]] = None
                       ) -> list[str]:
    """One notice per conversion tag of `decode_one` (tag -> image count); `hw` is the "HxW" size; `names`, the
    images of a tag in `NAMED_TAGS`, which its notice lists (QA sweep 13: "check that it belongs to the set"
    named no image, among 760)."""
    notes = []
    for tag, n in sorted(counts.items()):
        note = _CONVERSION_TEXT.get(tag, "{n} " + tag + " image{s} converted to RGB").format(n=n, hw=hw, **_number(n))
        if listed := list((names or {}).get(tag, ())):
            more = len(listed) - NAMES_SHOWN
            note += ": " + ", ".join(map(str, listed[:NAMES_SHOWN])) + (f" and {more} more" if more > 0 else "")
        notes.append(note)
    if counts.get("12-bit") and counts.get("16-bit"):  # one camera writes one depth: a mix means a dark image
        notes.append(Caution("the 16-bit images were scaled two ways (up to 4095 as 12-bit, the others as 16-bit), "
                             "so their brightness does not compare: convert them to one bit depth first"))
    return notes


def decode_one(src: Path, mask_path: Path | None, shape: tuple[int, int, int], tile: bool):
    """Decode one image (and its mask). Returns (images (k,H,W,C), masks (k,H,W) | None, tags, note, origins)
    or a string: the reason to skip the file. `origins`: each tile's (top, left) in the image, row by row;
    [(0, 0)] for an image not tiled."""
    h, w, c = shape
    try:
        raw = open_image(src, None if tile else (w, h))
        full = raw.info.get("full_size", raw.size)  # (w, h) of the file, before a reduced JPEG decode
        im, tag = to_8bit(raw)
    except DECODE_ERRORS as exc:
        if isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
            return f"too large, possible decompression bomb ({exc})"
        if isinstance(exc, OSError) and exc.strerror and exc.filename:  # a dangling or looping link, no access
            return exc.strerror.lower()
        if src.stat().st_size == 0:
            return "empty file"
        # Pillow's own words where it has some ("image file is truncated"; QA sweep 21: "(OSError)" said nothing)
        said = (str(exc).splitlines() or [""])[0][:120]
        why = ("no image format Pillow knows" if isinstance(exc, Image.UnidentifiedImageError)
               else said.split(" (", 1)[0] or type(exc).__name__)
        return f"not a readable image ({why})"
    tags = [tag] if tag else []
    if getattr(raw, "n_frames", 1) > 1:  # Pillow decodes the first frame; the others would go unseen
        tags.append("frames")
    if c == 1 and im.mode == "RGB":
        im, tags = im.convert("L"), tags + ["to-gray"]  # Pillow's ITU-R 601-2 luma
    size = im.size  # (width, height)
    if tile:
        if (size := tiled_size(im.size, (h, w))) != im.size:  # smaller than one tile: enlarged to hold one
            im, tags = im.resize(size, Image.BILINEAR), tags + ["tile-enlarged"]
        arr = cut_tiles(np.asarray(im), h, w)
    else:
        if size != (w, h):
            im = im.resize((w, h), Image.BILINEAR)
        if full != (w, h):  # QA sweep 19b: portrait boards squeezed to landscape read as "resized", and as defects
            tags.append("stretched" if abs(np.log(full[0] * h / (full[1] * w))) > STRETCH else "resized")
        if w > 2 * full[0] or h > 2 * full[1]:  # a thumbnail among photos (QA sweep 10): said apart
            tags.append("upscaled")
        arr = np.asarray(im)[None]
    if arr.ndim == 3:  # (k, H, W) grayscale -> (k, H, W, C)
        arr = np.repeat(arr[..., None], c, axis=-1)
        tags += ["to-rgb"] if c == 3 else []
    masks, note = None, None
    if mask_path is not None:
        try:
            m = open_image(mask_path).convert("L")
            if m.size != tuple(full):  # a mask of another image, or a thumbnail: its outline lands elsewhere
                note = (f"mask {mask_path.name} is {m.size[0]}x{m.size[1]}, its image {full[0]}x{full[1]}: "
                        "stretched over the image; check that it belongs to it")
            if tile and m.size != size:
                m = m.resize(size, Image.NEAREST)
            # Anti-aliased edges, or no mask at all: > 0 is taken as defect. A count per grey level is one pass
            # over the mask, where np.unique would sort it (every defect image's full-size mask, at load).
            if np.count_nonzero(np.bincount(np.asarray(m).ravel(), minlength=256)) > 2:
                tags.append("mask-levels")
            m = cut_tiles(np.asarray(m), h, w) if tile else np.asarray(m.resize((w, h), Image.NEAREST))[None]
            masks = m > 0
        except DECODE_ERRORS as exc:
            note = f"mask {mask_path.name} unreadable ({type(exc).__name__}); treated as empty"
    origins = [(y, x) for y in tile_starts(size[1], h) for x in tile_starts(size[0], w)] if tile else [(0, 0)]
    return np.ascontiguousarray(arr), masks, tags, note, origins
