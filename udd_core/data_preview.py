"""What a data set holds, read before it is loaded: from file names, headers and a few samples, no whole decode.

The Train page checks a path as it is typed, and the CLI before it spends minutes loading: how many images a
run would cache and their bytes (`estimate_cache_bytes`), their labels (`training_labels`) and what training
keeps of them (`training_notes`), the images' own size for a model that stores none (`native_size`), whether
they are in colour (`in_colour`), and a wafer file's die values (`check_values_as_typed`). Loading itself is
`data.load_dataset`.
"""
from __future__ import annotations

import warnings
from types import SimpleNamespace

import numpy as np
from PIL import Image

from .data import check_wafer_channels, checked_shape, image_sources, layout
from .images import DECODE_ERRORS, open_image
from .tiles import tile_starts, tiled_size
from .training_data import training_mask
from .uploads import DataError
from .wafermaps import check_die_values, map_sizes, wafer_labels


def training_labels(path) -> list[str]:
    """The label of every image a run could train on (a wafer file's labels; "good" for each image of a
    folder or an MVTec train split), from file names and label arrays only, no pixels decoded."""
    kind, root = layout(path)
    if kind == "wafer":
        return wafer_labels(root)
    return [label for _, label, _ in image_sources(kind, root, "train")[0]]


def training_notes(path, train_on: str = "normal") -> list[str]:
    """What Start would note of a data set's labels, said before it: maps without labels taken as normal, and
    which images `train_on` keeps (QA sweep 20: a labelled wafer file's estimate counted its defect maps, and
    that training leaves them out was said only after Start)."""
    kind, root = layout(path)
    notes: list[str] = []
    labels = wafer_labels(root, notes) if kind == "wafer" else training_labels(path)
    if kept := training_mask(SimpleNamespace(labels=labels), train_on)[1]:
        notes.append(f"This run will be {kept}")
    return notes


def estimate_cache_bytes(path, input_shape, split="train", tile=False) -> tuple[int, int]:
    """(number of cached images, bytes of images plus masks) without decoding any pixels."""
    h, w, c = checked_shape(input_shape)
    kind, root = layout(path)
    if kind == "wafer":  # refused here too, so that the Train page says so before Start
        n = sum(k for k, _ in map_sizes(root))  # a damaged file fails here, before the channels are checked
        check_wafer_channels(root, c)
        return n, n * h * w * 3
    sources, has_masks = image_sources(kind, root, split)
    if not tile:
        n = len(sources)
    else:
        n = 0
        for src, _, _ in sources:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                try:
                    with Image.open(src) as im:  # parses the header only
                        tw, th = tiled_size(im.size, (h, w))  # a photo smaller than a tile is enlarged to one
                        n += len(tile_starts(tw, w)) * len(tile_starts(th, h))
                except DECODE_ERRORS:
                    continue
    return n, n * h * w * (c + (1 if has_masks else 0))


def native_size(path, split: str = "train") -> tuple[int, int]:
    """(H, W) shared by every image (or wafer map) of a data set, read from file headers only.

    For scoring with a model that stores no input size; images of different sizes are a ValueError.
    """
    kind, root = layout(path)
    sizes: list[tuple[int, int]] = []
    if kind == "wafer":
        sizes = [hw for _, hw in map_sizes(root)]
    else:
        for src, _, _ in image_sources(kind, root, split)[0]:
            try:
                with Image.open(src) as im:  # parses the header only
                    sizes.append((im.height, im.width))
            except DECODE_ERRORS:
                continue
    distinct = sorted(set(sizes))
    if not distinct:
        raise DataError(f"{path}: no readable images for split {split!r}")
    if len(distinct) > 1:
        (h1, w1), (h2, w2) = distinct[0], distinct[-1]
        raise ValueError(f"{path}: images differ in size ({h1}x{w1} and {h2}x{w2}); give a size (--size H,W)")
    return distinct[0]


def size_for_sizeless_model(path, split: str = "train") -> tuple[tuple[int, int], str]:
    """For a model folder that stores no input size (the reference package's): the images' common
    (H, W) and the notice that says so (`udd score` and `udd generate` print the same one)."""
    h, w = native_size(path, split)
    return (h, w), f"the model folder stores no input size: using the images' own size {h}x{w}"


COLOUR_SAMPLE = 8  # training images looked at for colour before a 1-channel model drops it


def in_colour(path, split: str = "train") -> bool:
    """Whether any of the first `COLOUR_SAMPLE` images of a data path's `split` is in colour (its channels
    differ; an RGB file of a gray photo is not): what a 1-channel model would drop, said before Start (QA sweep
    19b: colour PCB photos were turned gray unsaid until training had begun). False for wafer maps."""
    kind, root = layout(path)
    if kind == "wafer":
        return False
    for src, _, _ in image_sources(kind, root, split)[0][:COLOUR_SAMPLE]:
        try:
            im = open_image(src, draft=(64, 64))
        except DECODE_ERRORS:
            continue
        if im.mode not in ("L", "1", "I", "I;16", "F", "LA") and _coloured(np.asarray(im.convert("RGB"))):
            return True
    return False


def _coloured(rgb: np.ndarray) -> bool:
    """(H, W, 3) uint8: channels that differ by more than a few grey levels somewhere (JPEG noise aside)."""
    a = rgb.astype(np.int16)
    return bool((np.abs(a[..., 0] - a[..., 1]) + np.abs(a[..., 1] - a[..., 2]) > 24).mean() > 0.01)


def check_values_as_typed(path) -> None:
    """What a form checks of a data path's values before Start, beyond `estimate_cache_bytes`' headers: a wafer
    file's die values (`wafermaps.check_die_values`); DataError naming them."""
    kind, root = layout(path)
    if kind == "wafer":
        check_die_values(root)
