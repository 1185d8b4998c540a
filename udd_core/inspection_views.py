"""What the Inspect page shows of an `Inspection`, without streamlit.

The method's caption, the manual threshold's range, the metric tiles and the threshold's caption, the
gallery's filters, the image-score histogram, the ROC with the threshold on it, one image's heatmap
figure and its regions table: text, plotly figure specs as plain dicts and lists of rows, so that the
page only lays them out, and a test can read what a user will see.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Optional

import numpy as np

from .metrics import metric_label, roc_points
from .notices import as_sentence
from .regions import Region
from .tiles import is_tile, source_image
from .display import folder_and_name, markdown_literal, score_text, verdict_word
from .render import HeatScale, border_band, outlines_legend, plotly_colorscale
from .scoring import trained_scoring_note
from .tile_rollup import rollup_of, rollup_summary, whole_image

OFF_DEFECT = "caught, map off the defect"  # the gallery filter of `Inspection.peaks`' images
REGION_COLUMNS = ("top", "left", "bottom", "right", "area (px)", "peak")
HISTOGRAM_BINS = 40
NORMAL, DEFECTIVE, REFERENCE = "#2ca02c", "#d62728", "#7f7f7f"  # the histogram's colours


def method_caption(spec: dict, notices: Sequence[str]) -> Optional[str]:
    """The line under the run's name: why an autoencoder is scored with the defaults its training suggests
    (an SSIM loss, wafer maps; when it is, as its `notices` say), or what the map and the score of another
    method are; None for a plain pixel AE."""
    if why := trained_scoring_note(notices):
        return f"ℹ️ {as_sentence(why)}"
    if spec["method"] == "autoencoder":
        return None
    own = f" Image score: {spec['image_score']}." if spec.get("image_score") else ""
    return f"Method **{spec['method']}**: {spec.get('heatmap') or 'the heatmap is its anomaly map'}.{own}"


def manual_threshold_range(insp) -> tuple[float, float, float]:
    """(low, high, start) of the manual threshold slider: every score, the normal reference ones included,
    and the inspection's own threshold (or the median score) to start from."""
    normal = insp.normal_scores if insp.normal_scores is not None else []
    pool = np.concatenate([insp.scores, normal])
    lo, hi = float(pool.min()), float(pool.max())
    hi = hi if hi > lo else lo + 1e-6
    start = insp.threshold if insp.threshold is not None else float(np.median(insp.scores))
    return lo, hi, float(np.clip(start, lo, hi))


def metric_tiles(insp) -> list[tuple[str, str]]:
    """(label, value) of Inspect's eight metric tiles: rates to 4 decimals as its tables, `udd score` and the
    report give them (QA sweep 21: 0.787 here beside 0.7874 there; "n/a" where the data cannot give one), the
    threshold to 5 significant digits as every view shows it; a tiled run's image metrics named per tile."""
    m, unit = insp.metrics, insp.units()[1]
    rates = [("image AUROC", m.image_auroc), ("image AP", m.image_ap), ("F1 max", m.f1_max),
             ("pixel AUROC", m.pixel_auroc), ("AUPRO", m.aupro), ("FPR", insp.fpr), ("TPR", insp.tpr)]
    return ([(metric_label(k, unit), "n/a" if v is None else f"{v:.4f}") for k, v in rates]
            + [("threshold", score_text(insp.threshold))])


def threshold_caption(insp) -> str:
    """The line under the metric tiles: the threshold, where it comes from, what a score is, and how the
    heatmaps' shared scale and outlines read."""
    meaning = f"; the score is {markdown_literal(insp.score_meaning)}. " if insp.score_meaning else ". "
    return (f"Threshold {score_text(insp.threshold)}: {insp.threshold_source}. {insp.call_rule()}"
            f"{meaning}Heatmaps share one scale from the normal images (0 = a typical normal pixel, top = "
            "twice the pixel threshold); " + outlines_legend(insp.masks is not None) + ".")


def gallery_filters(insp) -> dict[str, np.ndarray]:
    """The gallery's choices, each an (N,) bool mask over the images at the inspection's threshold.
    Missed defects and false alarms count only labelled images (an unlabelled one is neither). With caught
    defects whose map points off their mask (`Inspection.peaks`), those too: for a tiled run, the tiles
    of those photos (QA sweep 22: the note named photos the gallery could not show)."""
    pred = insp.scores > insp.threshold
    defect, known = insp.is_defect, insp.known
    out = {"all": np.ones(len(insp), bool), "predicted defective": pred, "predicted good": ~pred,
           "missed defects (FN)": defect & ~pred & known, "false alarms (FP)": ~defect & pred & known}
    if (check := insp.peaks) and check.off:
        whole = insp.names if check.units == "images" else [source_image(n) for n in insp.names]
        out[OFF_DEFECT] = np.isin(whole, check.off)
    return out


def gallery_count(insp, n: int) -> str:
    """The gallery's line over its rows: how many images (a tiled run's: tiles) the chosen filter shows."""
    unit = insp.units()[1]
    return f"{n} {unit if n != 1 else unit[:-1]}, highest score first."


def gallery_columns(insp) -> list[tuple[str, str]]:
    """(panel of `Inspection.panels`, its header) of each gallery column: a method without a reconstruction
    shows three, and its map is its own anomaly map, not a residual."""
    recon = insp.recon_raw is not None
    return [(k, "anomaly map" if k == "residual" and not recon else k)
            for k in ("input", "reconstruction", "residual", "overlay") if k != "reconstruction" or recon]


def gallery_row_title(insp, i: int) -> str:
    """Markdown over gallery row `i`: folder/file, label (as typed), score and the verdict in colour."""
    called = insp.threshold is not None and insp.scores[i] > insp.threshold
    verdict = f":red[**{verdict_word(True)}**]" if called else f":green[{verdict_word(False)}]"
    return (f"`{folder_and_name(insp.names[i])}` · label **{markdown_literal(insp.labels[i])}** · "
            f"{insp.score_text(i)} · {verdict}")


def roc_curve(insp) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """(FPR, TPR) of an inspection's image scores on its labelled images; None without both classes."""
    k = insp.known
    y = insp.is_defect[k]
    if not (y.any() and (~y).any()):
        return None
    fpr, tpr, _ = roc_points(insp.scores[k], y)
    return fpr, tpr


def score_histogram(insp, normal_scores: Optional[np.ndarray] = None, normal_source: str = "") -> dict:
    """The image scores as overlaid histograms on one set of bins: the labelled normal and defective
    images of this data, and the normal reference images the threshold came from (`normal_scores`,
    from `normal_source`) when they are not this data's own good images; the threshold as a line."""
    extra = normal_scores is not None and len(normal_scores) > 0 and normal_source != "test good"
    pool = np.concatenate([insp.scores, normal_scores if extra else []])  # (N [+ M],)
    size = max(float(np.ptp(pool)) / HISTOGRAM_BINS, 1e-12)
    # Plotly's bins are half-open [edge, next edge): an end at the highest score would drop that image
    # (the worst defect, or the worst false alarm), so the last bin reaches one size past it.
    bins = {"start": float(pool.min()), "end": float(pool.max()) + size, "size": size}
    known, defect = insp.known, insp.is_defect
    parts = [("normal (this data)", insp.scores[known & ~defect], NORMAL),
             ("defective", insp.scores[known & defect], DEFECTIVE)]
    if extra:
        parts.append((f"normal ({normal_source})", normal_scores, REFERENCE))
    data = [{"type": "histogram", "x": np.asarray(x, float).tolist(), "name": name, "opacity": 0.55,
             "xbins": bins, "marker": {"color": colour}} for name, x, colour in parts if len(x)]
    line = {"type": "line", "x0": insp.threshold, "x1": insp.threshold, "y0": 0, "y1": 1, "yref": "paper",
            "line": {"dash": "dash"}}
    label = {"x": insp.threshold, "y": 1, "yref": "paper", "text": "threshold", "showarrow": False,
             "xanchor": "left", "yanchor": "bottom"}
    return {"data": data, "layout": {"barmode": "overlay", "title": {"text": "Image scores"}, "height": 380,
                                     "xaxis": {"title": {"text": "score"}}, "shapes": [line], "annotations": [label]}}


def roc_with_threshold(insp) -> Optional[dict]:
    """The image ROC of one inspection with its operating point (FPR, TPR at the threshold) marked;
    None without both normal and defective labelled images."""
    if (curve := roc_curve(insp)) is None:
        return None
    auroc = insp.metrics.image_auroc
    data = [{"type": "scatter", "mode": "lines", "x": curve[0].tolist(), "y": curve[1].tolist(), "name": "ROC"},
            {"type": "scatter", "mode": "markers", "x": [insp.fpr], "y": [insp.tpr], "marker": {"size": 11},
             "name": "threshold"}]
    title = "ROC" + (f" (AUROC {auroc:.4f})" if auroc is not None else "")
    return {"data": data, "layout": {"title": {"text": title}, "height": 380, "xaxis": {"title": {"text": "FPR"},
                                     "range": [0, 1]}, "yaxis": {"title": {"text": "TPR"}, "range": [0, 1.02]}}}


def heatmap_figure(insp, i: int, scale: HeatScale) -> dict:
    """Image ``i``'s map as a plotly heatmap on `scale`: coloured clipped to the scale, while the hover
    shows each pixel's true value; rows downward, square pixels."""
    m = insp.maps[i]  # (H, W)
    title = ("residual" if insp.recon_raw is not None else "anomaly map") + \
        (" (normal-pixel standard deviations)" if insp.norm else "")
    trace = {"type": "heatmap", "z": np.clip(m, scale.vmin, scale.vmax), "customdata": m,
             "zmin": scale.vmin, "zmax": scale.vmax, "colorscale": plotly_colorscale(),
             "hovertemplate": "row %{y}, col %{x}: %{customdata:.3f}<extra></extra>"}
    h, w = m.shape
    b = insp.border  # what the image score reads: the map less its border, framed (the pictures fade the border)
    frame = [{"type": "rect", "x0": b - 0.5, "x1": w - b - 0.5, "y0": b - 0.5, "y1": h - b - 0.5,
              "line": {"color": "white", "dash": "dash", "width": 1}}] if b else []
    # Square pixels shrink the plot's domain ("constrain") instead of stretching an axis past the map's edge.
    return {"data": [trace], "layout": {"height": 420, "margin": {"l": 10, "r": 10, "t": 30, "b": 10},
                                        "title": {"text": title}, "shapes": frame,
                                        "xaxis": {"range": [-0.5, w - 0.5], "constrain": "domain"},
                                        "yaxis": {"range": [h - 0.5, -0.5], "scaleanchor": "x",
                                                  "constrain": "domain"}}}


def unsplit_caption(data_path: str, kind: str) -> str:
    """What Inspect scores of data without splits: a folder or a wafer file whole, one image file alone (QA
    sweep 18: "A folder data set is scored whole" for one file)."""
    if kind == "folder" and Path(data_path).expanduser().is_file():
        return "One image file is scored alone."
    return f"A {kind} data set is scored whole."


def regions_caption(insp, i: int) -> str:
    """Where the regions table's numbers live: rows, columns and areas in pixels of the map the model scored
    (the image resized to its input, so a box maps back by the two scale factors), the peak in map units."""
    h, w = insp.maps[i].shape
    unit = "standard deviations of the normal pixels" if insp.norm else "the map's units"
    frame = (f"one {h}x{w} tile of the image (its name ends in @x,y: its top-left pixel in the image, so add x to "
             "a box's columns and y to its rows to find it on the part)"
             if is_tile(insp.names[i]) else
             f"the image resized to the model's input, so scale a box by the image's height / {h} and width / {w} "
             "to find it on the part")
    border = (f" The dashed frame on the heatmap is the area the image score reads: the {insp.border} px border "
              "outside it is left out of the score, faded in the pictures, and left out of the outlines and of this "
              "table." if insp.border else "")  # QA sweep 22: the frame was unexplained, the table read the border
    return (f"Boxes (top, left, bottom, right; inclusive) and areas are in pixels of the {h}x{w} map the model "
            f"scores: {frame}. Peak: the region's highest map value, in {unit}. The overlay outlines every pixel "
            f"above the pixel threshold, specks smaller than Min pixels too, which the table leaves out.{border}")


WHOLE_PART = 0.5  # a region over this share of the map marks the whole part, not a defect on it


def regions_line(insp, i: int, regions: Sequence[Region], pixel_threshold: float, min_pixels: int) -> Optional[str]:
    """What the regions table of image `i` cannot say itself: that it is empty although pixels lie above
    `pixel_threshold` (map units), in no region of `min_pixels` or more (QA sweep 12), or that one region
    covers most of the map, which locates nothing (QA sweep 13: fray and uneven tiles, one region
    0,0,255,255). None otherwise."""
    wafer = insp.kind == "wafer"  # its share is of the dies on the wafer (QA sweep 15: the corners counted)
    area = int((insp.images[i][..., 0] == 0).sum()) if wafer else insp.maps[i].size  # channel 0: off the wafer
    widest = max((r.area for r in regions), default=0)
    if wafer and widest > WHOLE_PART * max(area, 1):  # a Near-full pattern is the whole wafer, rightly
        return (f"ℹ️ One region covers {min(widest / max(area, 1), 1):.0%} of the wafer: a failure over most of "
                "the wafer (such as Near-full), or a map raised everywhere; the heatmap's brightest dies say which.")
    if widest > WHOLE_PART * area:
        return (f"ℹ️ One region covers {widest / area:.0%} of the map: the map is raised "
                "across most of the part, so it does not locate a defect there; the heatmap's brightest parts may.")
    above = int(((insp.maps[i] > pixel_threshold) & ~border_band(insp.maps[i].shape, insp.border)).sum())
    if regions or not above:
        return None
    return (f"ℹ️ {above} pixel{'s' if above != 1 else ''} above the pixel threshold, in no region of {min_pixels} "
            "pixels or more: lower Min pixels to list them.")


def region_rows(regions: Sequence[Region]) -> list[dict]:
    """The regions table: one row per region, `REGION_COLUMNS` (inclusive bounding box, area, peak)."""
    return [dict(zip(REGION_COLUMNS, (*r.bbox, r.area, r.peak))) for r in regions]


def image_rollup(insp) -> Optional[tuple[str, list[dict]]]:
    """For a tiled run, its tiles rolled up to their images (`tile_rollup`): the heading with its one-line
    summary, and a row per image, worst first; None when whole images were scored."""
    rows = rollup_of(insp)
    if not rows:
        return None
    return f"**Per image, its tiles rolled up.** {rollup_summary(rows)}.", [r.to_row() for r in rows]


def whole_image_overlay(insp, image: str, own_scale: bool = False) -> tuple[np.ndarray, str]:
    """A tiled run's image `image` put back together (`tile_rollup.whole_image`) as an overlay picture
    (H*f, W*f, 3) uint8, and its caption (QA sweep 17: tiles alone did not show where the defect lies on the
    part). On the fixed scale, or with ``own_scale`` from the image's median pixel to its highest."""
    whole = whole_image(insp, image)
    scale = whole.own_scale(insp.pixel_threshold) if own_scale else insp.scale
    h, w = whole.map.shape
    row = next(r.to_row() for r in rollup_of(insp) if r.image == image)  # its label, score and verdict (QA 20)
    said = " · ".join(v for v in (row["label"], f"highest tile score {row['highest tile score']}", row["verdict"])
                      if v)
    outlines = outlines_legend(whole.mask is not None)
    return whole.overlay(scale), (f"{folder_and_name(image)}, {w}x{h}: {said}. Its tiles' maps put back in place "
                                  f"(where tiles overlap, the higher value); {outlines}.")
