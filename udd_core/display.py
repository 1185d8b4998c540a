"""What a person looks at of images and model outputs: display pictures, and PNG files and zips of them.

Wafer data (3 one-hot channels) is drawn as die maps in the fixed `render.WAFER_RGB` colours, every
other image as the clipped image; small images are upscaled by an integer factor so that a 26x26
wafer map is not a smudge. The Generate page and `udd generate` show and write their outputs so.
"""
from __future__ import annotations

import io
import math
import re
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch

from .atomic import write_files
from .data import onehot_to_wafer
from .render import WAFER_RGB, png_bytes
from .wafer_generation import generated_maps

# Display colours (RGB) of die values 0 outside the wafer, 1 good die, 2 failing die: the Inspect
# page's, so a die looks the same on every page. Tuples: immutable, no module-level mutable state.
WAFER_COLOURS = tuple(tuple(int(v) for v in rgb) for rgb in WAFER_RGB)
DISPLAY_MIN_SIDE = 128  # smaller images are upscaled (nearest, integer factor) to at least this


def render_wafer(maps: np.ndarray) -> np.ndarray:
    """(N, H, W) die values {0, 1, 2} -> (N, H, W, 3) uint8 in the fixed WAFER_COLOURS."""
    maps = np.asarray(maps)
    if maps.ndim != 3 or (maps.size and (maps.min() < 0 or maps.max() > 2)):
        raise ValueError(f"maps: expected (N, H, W) die values 0..2, got shape {maps.shape}")
    return np.asarray(WAFER_COLOURS, dtype=np.uint8)[maps.astype(np.intp)]


def upscale(images: np.ndarray, min_side: int = DISPLAY_MIN_SIDE) -> np.ndarray:
    """(N, H, W[, C]) -> the same, repeated by an integer factor so that min(H, W) >= min_side."""
    h, w = images.shape[1:3]
    s = max(1, math.ceil(min_side / max(1, min(h, w))))
    return images if s == 1 else images.repeat(s, axis=1).repeat(s, axis=2)


def shade_wafer(y: torch.Tensor, outline: Optional[np.ndarray] = None) -> np.ndarray:
    """(N, 3, H, W) wafer model output -> (N, H, W, 3) uint8: dies shaded by failing-die share.

    Argmax hides a model that expects, say, 20 % failing dies on the rim: every die stays
    "good". Here each die on the wafer (argmax not outside, or nonzero in ``outline``, (N, H, W)
    die values) is blended from the good-die to the failing-die colour by p = fail / (good + fail),
    both clipped to [0, 1].
    """
    y = y.detach().float().clamp(0, 1).cpu()
    good, fail = y[:, 1], y[:, 2]  # (N, H, W)
    p = (fail / (good + fail).clamp_min(1e-6)).numpy()[..., None]  # (N, H, W, 1)
    colours = np.asarray(WAFER_COLOURS, dtype=np.float32)
    rgb = (1 - p) * colours[1] + p * colours[2]  # (N, H, W, 3)
    outside = (onehot_to_wafer(y) if outline is None else np.asarray(outline)) == 0  # (N, H, W)
    rgb[outside] = colours[0]
    return np.rint(rgb).astype(np.uint8)


def to_display(x, kind: str, min_side: int = DISPLAY_MIN_SIDE, shaded: bool = False,
               outline: Optional[np.ndarray] = None) -> np.ndarray:
    """Images a person can look at: (N, H', W', 3) RGB or (N, H', W') gray uint8.

    ``x`` is model output (a (N, C, H, W) float tensor, clipped to [0, 1]) or the uint8 cache
    (N, H, W, C) of an ImageSet. Wafer data (``kind`` 'wafer') becomes die values by argmax and
    is drawn in WAFER_COLOURS; with ``shaded``, model output is drawn by `shade_wafer` instead.
    ``outline`` (N, H, W) die values: the wafer outline of model output made from source maps, so a
    generated map shows exactly the dies that `wafer_generation.generated_maps` (the .npz) gives it.
    Small images are upscaled with nearest neighbour.
    """
    if kind not in ("image", "wafer"):
        raise ValueError(f"kind must be 'image' or 'wafer', got {kind!r}")
    if isinstance(x, torch.Tensor):
        if x.ndim != 4:
            raise ValueError(f"outputs must be (N, C, H, W), got shape {tuple(x.shape)}")
        if kind == "wafer":
            if shaded:
                out = shade_wafer(x, outline)
            elif outline is not None:
                out = render_wafer(generated_maps(x, outline))
            else:
                out = render_wafer(onehot_to_wafer(x))
        else:  # (N, C, H, W) float -> (N, H, W, C) uint8
            out = x.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    else:
        a = np.asarray(x)
        if a.ndim != 4 or a.dtype != np.uint8:
            raise ValueError(f"images must be uint8 (N, H, W, C), got {a.dtype} {a.shape}")
        out = render_wafer(onehot_to_wafer(a)) if kind == "wafer" else a
    if out.shape[-1] == 1:
        out = out[..., 0]  # (N, H, W) gray
    return np.ascontiguousarray(upscale(out, min_side))


def spaced(img: np.ndarray, gap: int) -> np.ndarray:
    """(H, W[, 3]) uint8 -> (H, W + 2 * gap, 4) RGBA with transparent side bands: st.image sets a list edge
    to edge, and dark wafer surrounds would merge into one band. Transparent suits light and dark themes."""
    rgb = np.repeat(img[..., None], 3, axis=-1) if img.ndim == 2 else img
    out = np.zeros((rgb.shape[0], rgb.shape[1] + 2 * gap, 4), dtype=np.uint8)
    out[:, gap:gap + rgb.shape[1], :3], out[:, gap:gap + rgb.shape[1], 3] = rgb, 255
    return out


def output_names(n: int, prefix: str = "sample") -> list[str]:
    """``prefix_0000.png`` ... for n images (wider numbers when n needs them)."""
    width = max(4, len(str(n - 1)))
    return [f"{prefix}_{i:0{width}d}.png" for i in range(n)]


def class_output_names(labels: Sequence[str]) -> list[str]:
    """``<class>_0000.png`` ... one name per output, numbered within its class (a label's characters that
    do not belong in a file name become "_")."""
    seen: dict[str, int] = {}
    names = []
    for label in labels:
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(label)).strip("._") or "class"
        names.append(f"{stem}_{seen.get(stem, 0):04d}.png")
        seen[stem] = seen.get(stem, 0) + 1
    return names


def zip_pngs(images: Sequence[np.ndarray], names: Sequence[str]) -> bytes:
    """A zip archive (bytes) holding each display image as a PNG under its name."""
    if len(images) != len(names):
        raise ValueError(f"names: {len(names)} names for {len(images)} images")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:  # PNG is compressed already
        for img, name in zip(images, names):
            zf.writestr(name, png_bytes(img))
    return buf.getvalue()


def write_pngs(images: Sequence[np.ndarray], out_dir: Union[str, Path], names: Sequence[str],
               force: bool = False) -> list[Path]:
    """Write each image as ``out_dir/name`` (the folder is created), each atomically.

    Without ``force``, nothing is written when any of the names exists already.
    """
    if len(images) != len(names):
        raise ValueError(f"names: {len(names)} names for {len(images)} images")
    return write_files(out_dir, names, (png_bytes(img) for img in images), force)


def probe_pairs(inputs: np.ndarray, recons: Optional[np.ndarray], kind: str, min_side: int = 96,
                gap: int = 4) -> list[np.ndarray]:
    """The Train page's probes: each input (N, H, W, C) uint8 above its reconstruction, a white gap between.

    ``kind`` is the data's (`data.data_kind`): wafer maps are drawn as dies, anything else as the image.
    One picture per probe keeps the pair together however narrow the page wraps them. Without
    reconstructions yet (epoch 1 still running) the inputs are shown alone.
    """
    shown = "wafer" if kind == "wafer" and np.shape(inputs)[-1] == 3 else "image"
    tops = list(to_display(inputs, shown, min_side))
    if recons is None:
        return tops
    bottoms = list(to_display(recons, shown, min_side))
    if len(bottoms) != len(tops):
        raise ValueError(f"recons: {len(bottoms)} images for {len(tops)} probe inputs")
    out = []
    for top, bottom in zip(tops, bottoms):
        white = np.full((gap, *top.shape[1:]), 255, np.uint8)  # (gap, W[, 3])
        out.append(np.concatenate([top, white, bottom], axis=0))  # (2H + gap, W[, 3])
    return out


def short_name(name: str, most: int = 24) -> str:
    """A caption-sized tail of an image's file or array name: its last path part, at most `most`
    characters, cut at the front ("…unlabelled.npy[249]") so that a map's index stays whole."""
    name = name.replace("\\", "/").rsplit("/", 1)[-1].split(":", 1)[-1]
    if len(name) <= most:
        return name
    head, bracket, index = name.rpartition("[")
    room = most - 1 - len(bracket + index)  # after the ellipsis and the whole "[index]"
    return "…" + (head[-room:] + bracket + index if bracket and room > 0 else name[-(most - 1):])


def folder_and_name(name: str) -> str:
    """An image's file name with its folder ("scratch/003.png#tile1@x64,y0"): MVTec's defect folders reuse file
    names, so the name alone did not say which file a gallery row is (QA sweeps 19a, 19b). A wafer map's name
    ("maps.npz:key[3]") as it is, without its folder."""
    name = name.replace("\\", "/")
    return name.rsplit("/", 1)[-1] if name.endswith("]") else "/".join(name.rsplit("/", 2)[-2:])


def breakable(text: str, mark: str = "\u200b") -> str:
    """``text`` with `mark` (a zero-width space; "<wbr>" in HTML) after each '_' or '/', and each '.' or '-'
    before a letter (not in "2.5"), so that a narrow caption wraps a file name there ("exp1_num_ | 138599.jpg")
    instead of in the middle of a word ("exp1_num_138599.jp | g")."""
    return re.sub(r"([_/](?=\S)|[.-](?=[A-Za-z]))", lambda m: m.group(1) + mark, text)


def markdown_literal(text: str) -> str:
    """User text (config keys, parse errors) for a markdown renderer such as the page's messages, shown as
    typed: the characters that mark up inline text (emphasis, code, strikethrough, LaTeX) are escaped, so
    "__import__" is not a bold "import", and "npz:maps[3]" is not Streamlit's ":color[text]" directive
    (which would swallow "[3]"); brackets and dots stay readable."""
    text = re.sub(r"([\\`*_~$])", r"\\\1", text)
    return re.sub(r":(?=[A-Za-z][\w-]*\[)", r"\\:", text)


SCORE_DIGITS = 5  # significant digits of a score or threshold shown to a person, in every output alike
SCALE_DIGITS = 4  # ... of a heatmap scale value: a colour bar's ends, the pixel threshold


def score_text(v: float) -> str:
    """A score or threshold as every view shows it: `SCORE_DIGITS` significant digits, so that 0.0076097 and
    1.2027 read alike in the gallery, Compare, the report and the heatmaps' README (QA sweep 10: 4 to 6 digits,
    or 5 decimals, by output), trailing zeros kept, so that 0.91700 does not read as less precise than 0.77595
    beside it (QA sweep 12). Exports meant for machines (CSV, JSON) keep full precision."""
    return _significant(v, SCORE_DIGITS)


def scale_text(v: float) -> str:
    """A heatmap scale value (a colour bar's end, a pixel threshold) as every view shows it: 4 significant
    digits, trailing zeros kept (QA sweep 13: a top of 7.090 read "7.09" in the export and 4.561 in Inspect).
    An exact 0, the scale's usual left end ("a typical normal pixel"), stays "0"."""
    return "0" if v == 0 else _significant(v, SCALE_DIGITS)


def _significant(v: float, digits: int) -> str:
    text = f"{float(v):#.{digits}g}"  # "#": 1.2800, not 1.28
    return text.removesuffix(".") if "e" not in text else text  # 12345., the alternate form's point, goes


def verdict_word(defective: bool) -> str:
    """The model's call on an image at its threshold, in the same words in every output (QA sweep 11: "ok" /
    "DEFECT" in `udd score`, "ok" / "defective" in Compare, "good" / "defective" elsewhere)."""
    return "defective" if defective else "good"
