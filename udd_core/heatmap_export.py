"""The heatmaps of an inspection as PNG files, in a folder (`udd score --heatmaps`) or a zip (Inspect's
Export), with their key beside them.

An overlay alone says nothing to the process engineer it is sent to: which run made it, what the colours
and the two outlines mean, what a score is and where the threshold sits. So every export also holds
`README.txt` (that key, then one line per file: label, score, verdict, source image) and
`colour_scale.png` (the bar the README's values refer to, low on the left).
"""
from __future__ import annotations

import io
import re
import time
import zipfile
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from .atomic import write_files
from .tiles import is_tile
from .display import scale_text, score_text, verdict_word
from .inspection_result import Inspection
from .render import WAFER_LEGEND, auto_zoom, png_bytes, scale_bar_rgb
from .tile_rollup import rollup_of, source_images, whole_images

LEGEND_FILE = "README.txt"
SCALE_FILE = "colour_scale.png"
WHOLE = "whole-"  # a tiled run's whole image; not "whole_", which is in "blowhole_" (QA sweep 20)


def _file_stem(name: str) -> str:
    """A safe file stem from an image name: its folder and stem ('crack_003'), tile suffix kept."""
    path, _, tile = name.partition("#")
    if path.endswith("]"):  # a wafer map: "file.npz:key[i]" or "file.npy[i]"
        stem = re.sub(r"\.np[yz]\b", "", path)
    else:
        p = Path(path)
        stem = f"{p.parent.name}_{p.stem}" if p.parent.name else p.stem
    stem += f"_{tile}" if tile else ""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "image"


def _heatmap_names(insp: Inspection) -> list[str]:
    """A unique PNG file name per image, from its source name (case-insensitively unique, and never the
    colour scale's), then, for a tiled run, one per whole image ("whole-" and its stem: `tile_rollup`)."""
    seen: set[str] = {Path(SCALE_FILE).stem.lower()}
    out = []
    for stem in [*map(_file_stem, insp.names), *(f"{WHOLE}{_file_stem(n)}" for n in source_images(insp.names))]:
        cand, k = stem, 2
        while cand.lower() in seen:
            cand, k = f"{stem}-{k}", k + 1
        seen.add(cand.lower())
        out.append(f"{cand}.png")
    return out


def _zoom(insp: Inspection) -> int:
    """The factor tiny maps are enlarged by in the PNGs (1 for large ones)."""
    return auto_zoom(*insp.maps.shape[1:])


def legend_text(insp: Inspection, files: list[str]) -> str:
    """README.txt of an export: what made the overlays, what their colours, outlines and scores mean, then
    one line per file (`files`, in data order): label, score, verdict and the source image."""
    s = insp.settings
    h, w = insp.maps.shape[1:]
    f = _zoom(insp)
    size = f"{h}x{w} px" + (f", enlarged {f}x to {h * f}x{w * f}" if f > 1 else "")
    thr = ("No threshold is set (no normal reference images or labels): the verdict column is empty."
           if insp.threshold is None else
           f"Threshold: {score_text(insp.threshold)} ({insp.threshold_source}); {insp.call_rule()[0].lower()}"
           f"{insp.call_rule()[1:]}.")  # a tiled run's: per tile, and per photo (QA sweep 22)
    scoring = ", ".join(f"{k} {s[k]}" for k in ("residual", "score", "smooth_sigma", "topk_percent", "border")
                        if k in s and (k != "topk_percent" or s.get("score") == "topk"))  # only where it counts
    lines = [f"Heatmaps made by udd on {time.strftime('%Y-%m-%d %H:%M')}",
             f"run: {s.get('model')}", f"data: {s.get('data')} (split {s.get('split')})", f"scoring: {scoring}", "",
             f"Each PNG overlays the anomaly map on the image as the model saw it, {size}: "
             + ("maps of another size were resized to it (nearest die)." if insp.kind == "wafer" else
                "each is one tile cut from its photo, which its name places (@x,y: the tile's top-left pixel); "
                f"the {WHOLE}*.png files, listed after the tiles, are whole photos at their own size."
                if any(map(is_tile, insp.names)) else
                "photos of another size or aspect ratio were resized to it, so they may look stretched."),
             f"{insp.scale_legend()} The colour bar is {SCALE_FILE}, low on the left.",
             *([f"{WAFER_LEGEND}."] if insp.kind == "wafer" else []),
             *([f"Score: {insp.score_meaning}.{insp.units_note()}"] if insp.score_meaning else []), thr]
    if said := insp.all_notes():
        lines += ["", "Notes:", *(f"- {n}" for n in said)]
    lines += ["", "label: the image's class in the data (its folder or label array: the truth, where the data has "
              "one); verdict: the model's call at the threshold.", "file\tlabel\tscore\tverdict\timage"]
    for name, row in zip(files, insp.to_rows()):
        verdict = "" if row["defective"] is None else verdict_word(row["defective"])
        score = "nan" if row["score"] is None else score_text(row["score"])
        lines.append(f"{name}\t{row['label']}\t{score}\t{verdict}\t{row['path']}")
    if rolled := {r.image: r for r in rollup_of(insp)}:  # a tiled run: its whole images, after its tiles
        lines += ["", f"{WHOLE}*.png: each photo with its tiles' maps put back in place (where tiles overlap, the "
                  "higher value). score: its highest tile's; verdict: defective when any tile is.",
                  "file\tlabel\tscore\tverdict\timage"]
        for name, image in zip(files[len(insp):], source_images(insp.names)):
            r = rolled[image]
            lines.append(f"{name}\t{r.label}\t{score_text(r.score)}\t"
                         f"{'' if r.defective is None else verdict_word(r.defective)}\t{image}")
    return "\n".join(lines) + "\n"


def heatmap_files(insp: Inspection, factor: Optional[int] = None) -> Iterator[tuple[str, bytes]]:
    """The key (README.txt and the colour scale), then (unique file name, PNG bytes) of every image's overlay,
    made one at a time (tiny maps enlarged). The key first: a folder cut short (Ctrl-C in `udd score
    --heatmaps`, QA sweep 15) still says what its overlays are, and its README lists every file to come."""
    names = _heatmap_names(insp)
    f = _zoom(insp) if factor is None else factor
    yield LEGEND_FILE, legend_text(insp, names).encode("utf-8")
    yield SCALE_FILE, _scale_png(insp)
    yield from zip(names, (insp.heatmap_png(i, f) for i in range(len(insp))))
    yield from zip(names[len(insp):], (png_bytes(w.overlay(insp.scale)) for _, w in whole_images(insp)))


def _scale_png(insp: Inspection) -> bytes:
    """The colour bar with its two end values written under it: forwarded alone, it still says its scale."""
    from PIL import Image, ImageDraw

    bar = Image.fromarray(scale_bar_rgb(256, 14))
    canvas = Image.new("RGB", (bar.width + 16, bar.height + 22), "white")  # (W, H): 8 px margins, a text row
    canvas.paste(bar, (8, 4))
    draw = ImageDraw.Draw(canvas)
    lo, hi = scale_text(insp.scale.vmin), scale_text(insp.scale.vmax)
    draw.text((8, bar.height + 7), lo, fill="black")
    draw.text((canvas.width - 8 - draw.textlength(hi), bar.height + 7), hi, fill="black")
    return png_bytes(np.asarray(canvas))


def write_heatmaps(insp: Inspection, out_dir, force: bool = False) -> list[Path]:
    """Write one overlay PNG per image into ``out_dir`` (created), each atomically, and their key (README.txt,
    colour_scale.png); returns the paths, the key first.

    Without ``force`` nothing is written when a file of the same name exists (a ValueError names it).
    """
    names = [LEGEND_FILE, SCALE_FILE, *_heatmap_names(insp)]  # heatmap_files' order; its PNGs made one at a time
    return write_files(out_dir, names, (data for _, data in heatmap_files(insp)), force)


def heatmaps_zip(insp: Inspection) -> bytes:
    """A zip of every overlay PNG and their key (stored: PNGs are compressed already)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for fname, data in heatmap_files(insp):
            zf.writestr(fname, data)
    return buf.getvalue()
