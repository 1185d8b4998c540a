"""Comparing how 2 to 4 runs score the same images: metrics in one table, ROCs in one figure, heatmap rows.

The Compare page's scoring side, without streamlit (what differs between the runs themselves is
`compare`'s). Each run's `inspection.Inspection` of one data set comes in; runs of every detector
method compare alike, and runs of different input sizes on the same files of one data set.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

import numpy as np

from .compare import RUN_COLOURS
from .display import scale_text, score_text, verdict_word
from .inspection_inputs import OTHER, TRAINING
from .inspection_result import image_units
from .inspection_views import roc_curve
from .methods import WAFER_FEATURES
from .metrics import GOOD, auroc_interval, metric_label
from .scoring import TRAINED_SCORING_NOTES
from .render import as_rgb, auto_zoom, outlines_legend, overlay_rgb, zoom

ROC_DASHES = ("solid", "dash", "dot", "dashdot")  # one per run, as the colours: equal curves stay both visible

METRIC_ROWS = (  # (label, Inspection attribute or metrics field, per image: counts the scored units)
    ("image AUROC", "image_auroc", True), ("image AP", "image_ap", True), ("F1 max", "f1_max", True),
    ("pixel AUROC", "pixel_auroc", False), ("AUPRO", "aupro", False),
)


SHOWN_DIGITS = 4  # decimals the metric table shows; runs equal to that many places tie


@dataclass(frozen=True)
class MetricRow:
    """One metric across the runs; ``best`` indexes every run with the best value as shown (to
    `SHOWN_DIGITS` places), so that tied runs are marked alike; empty when no run has a value or all tie."""

    metric: str
    values: tuple[Optional[float], ...]
    best: tuple[int, ...]


def tiled(insp) -> bool:
    """Whether an `Inspection`'s image metrics count tiles (a tiled run)."""
    return image_units(insp.names)[1] == "tiles"


def units_differ(inspections: Sequence) -> bool:
    """Whether the runs' image metrics count different units (tiles beside whole images)."""
    return len({image_units(i.names)[1] for i in inspections}) > 1


def metric_rows(inspections: Sequence) -> list[MetricRow]:
    """The detection metrics of each run's `Inspection` on the same data, with the best run marked (not on the
    per-image rows when the runs count different units: `units_differ`), then threshold, FPR and TPR at each
    run's own threshold (not ranked: they are operating points)."""
    rows, differ = [], units_differ(inspections)
    all_tiled = all(map(tiled, inspections))
    for label, attr, per_image in METRIC_ROWS:
        if per_image and (differ or all_tiled):  # what the runs count (QA sweep 21: a tile AUROC read as per photo)
            label = metric_label(label, "tiles") if all_tiled else f"{label} (per tile for a tiled run)"
        values = tuple(getattr(i.metrics, attr) for i in inspections)
        shown = {k: round(float(v), SHOWN_DIGITS) for k, v in enumerate(values) if v is not None}
        top = max(shown.values(), default=None)
        ranked = len(set(shown.values())) > 1 and not (per_image and differ)  # QA sweep 11: crowned anyway
        best = tuple(k for k, v in shown.items() if v == top) if ranked else ()
        rows.append(MetricRow(label, values, best))
    for label, attr in (("threshold", "threshold"), ("FPR", "fpr"), ("TPR", "tpr")):
        if label != "threshold" and (differ or all_tiled):
            label = metric_label(label, "tiles") if all_tiled else f"{label} (per tile for a tiled run)"
        rows.append(MetricRow(label, tuple(getattr(i, attr) for i in inspections), ()))
    return rows


def interval_note(names: Sequence[str], inspections: Sequence) -> Optional[str]:
    """When two runs' image AUROCs lie within each other's 95% intervals (`metrics.auroc_interval`) on these
    images, a note that this test set does not tell them apart, with every run's interval; None otherwise, or
    when the runs count different units (`counting_note` speaks then). QA sweep 19b: 0.913 against 0.885 on 21
    defective and 12 normal images was marked as a win."""
    if units_differ(inspections):
        return None
    spans = {}
    for name, insp in zip(names, inspections):
        auc, k = insp.metrics.image_auroc, insp.known
        n_bad, n_good = int((k & insp.is_defect).sum()), int((k & ~insp.is_defect).sum())
        if auc is not None and n_bad and n_good:
            spans[name] = (auc, *auroc_interval(auc, n_bad, n_good))
    close = [(a, b) for a in spans for b in spans if a < b
             and spans[b][1] <= spans[a][0] <= spans[b][2] and spans[a][1] <= spans[b][0] <= spans[a][2]]
    if not close:
        return None
    each = "; ".join(f"{n} {lo:.2f}-{hi:.2f}" for n, (_, lo, hi) in spans.items())
    unit = inspections[0].units()[1]
    if len(close) == len(spans) * (len(spans) - 1) // 2:  # QA sweep 20: every pair listed, where "none" says it
        which = "None of these runs is told apart from another by this test set"
    else:
        which = (f"{', '.join(f'{a} and {b}' for a, b in close)}: each lies within the other's interval, so this test "
                 "set does not tell them apart")
    tiles = (" (the tiles of one photo are not independent, so the true intervals are wider still)"
             if unit == "tiles" else "")
    return (f"image AUROC 95% intervals on these {n_bad} defective and {n_good} normal {unit} (Hanley-McNeil)"
            f"{tiles}: {each}. {which}, whichever is marked best; more test images would")


def counting_note(names: Sequence[str], inspections: Sequence) -> Optional[str]:
    """A note when the runs' image metrics count different things (tiles beside whole images, QA sweep 10):
    those rows then do not rank the runs, while the pixel metrics (every pixel of the data) still do."""
    if not units_differ(inspections):
        return None
    seen = [image_units(i.names) for i in inspections]
    parts = ", ".join(f"{n} {what} ({name})" for name, (n, what) in zip(names, seen))
    return (f"the runs score different units: {parts}. Image AUROC, AP, F1, FPR, TPR and the ROC curves count "
            "those units, so they do not compare between tiled and whole-image runs and no run is marked best on "
            "them; the pixel AUROC and AUPRO do compare")


def trained_elsewhere(names: Sequence[str], trained_on: Sequence[str], inspections: Sequence) -> list[str]:
    """The scored runs (by name) trained on other data than they were scored on, each with the data it learned
    from (``trained_on``, train.json's data.path per run): comparing them on it is fair only when it stands for
    what each was meant to inspect. Judged by each inspection's `relation`, so a copy of a run's own images
    elsewhere is not other data (QA sweep 15)."""
    return [f"{n} (trained on {path})" for n, path, i in zip(names, trained_on, inspections) if i.relation == OTHER]


def trained_here(names: Sequence[str], inspections: Sequence) -> list[str]:
    """The scored runs (by name) whose normal scores include images they learned (wherever those lie): their
    metrics look better than on unseen images."""
    return [n for n, i in zip(names, inspections) if i.relation == TRAINING]


def wafer_features_runs(names: Sequence[str], inspections: Sequence) -> list[str]:
    """The scored runs whose maps of these wafer maps come from ImageNet features (`methods.wafer_features_note`):
    Compare sets their heatmaps beside the others as equals (QA sweep 19a)."""
    return [n for n, i in zip(names, inspections) if any(WAFER_FEATURES in note for note in i.notices)]


def trained_scoring_words(names: Sequence[str], inspections: Sequence) -> str:
    """"; run, run: what they score with" for each run scored with the defaults its training suggests (an
    SSIM loss, wafer maps), as their `scoring.TRAINED_SCORING_NOTES` say; "" for none (QA sweep 11)."""
    parts = []
    for note, words in TRAINED_SCORING_NOTES:
        if with_it := [n for n, i in zip(names, inspections) if note in i.notices]:
            parts.append(f"; {', '.join(with_it)}: {words}")
    return "".join(parts)


def shown_value(metric: str, value: float) -> str:
    """A metrics-table cell: rates to `SHOWN_DIGITS` decimals; a threshold, in its run's own units, to 5
    significant digits (QA sweep 9: 0.00213818 and 0.00209941 both read "0.0021")."""
    return score_text(value) if metric == "threshold" else f"{float(value):.{SHOWN_DIGITS}f}"


def verdict_words(insp, score: float) -> str:
    """' · defective' or ' · good' (`display.verdict_word`) for a heatmap caption at the run's own threshold
    ('' without one): scores of different runs are in different units, so the caption says what the run
    calls the image."""
    if insp.threshold is None:
        return ""
    return f" · {verdict_word(score > insp.threshold)}"


def roc_figure(names: Sequence[str], methods: Sequence[str], inspections: Sequence) -> Optional[dict]:
    """Every labelled run's image ROC in one plotly figure spec, in the run's colour (`RUN_COLOURS`) and
    named with its method and AUROC, beside the chance line; None when no run has both kinds of label."""
    data = []
    # A dash per run besides its colour: two runs with the same curve (both perfect, say) stay both visible.
    for name, method, insp, colour, dash in zip(names, methods, inspections, RUN_COLOURS, ROC_DASHES):
        if (curve := roc_curve(insp)) is not None:
            auroc = insp.metrics.image_auroc
            data.append({"type": "scatter", "mode": "lines", "x": curve[0].tolist(), "y": curve[1].tolist(),
                         "line": {"color": colour, "width": 3, "dash": dash},
                         "name": f"{name}, {method}" + (f" ({'tile ' * tiled(insp)}AUROC {auroc:.4f})"
                                                          if auroc is not None else "")})
    if not data:
        return None
    data.append({"type": "scatter", "mode": "lines", "x": [0, 1], "y": [0, 1], "name": "chance",
                 "line": {"dash": "dot", "color": "gray"}})
    # A margin past 0 and 1, so that a perfect run's curve (up the TPR axis, along the top) stays visible.
    layout = {"title": {"text": "ROC"}, "height": 400, "xaxis": {"title": {"text": "FPR"}, "range": [-0.02, 1]},
              "yaxis": {"title": {"text": "TPR"}, "range": [0, 1.03]}}
    return {"data": data, "layout": layout}


def heatmap_runs(inspections: Sequence) -> list[int]:
    """Indices of the runs whose heatmaps can stand in one row per image: all of them, or the whole-image
    runs when tiled runs are among them (a tile is not an image the others scored: QA sweep 11, one tiled
    run among three whole-image runs emptied every row)."""
    if not units_differ(inspections):
        return list(range(len(inspections)))
    return [k for k, i in enumerate(inspections) if image_units(i.names)[1] == "images"]


def common_images(inspections: Sequence) -> list[str]:
    """Names of the images every run scored, in the first run's order (runs of different input
    sizes still score the same files of one data set)."""
    if not inspections:
        return []
    others = [set(i.names) for i in inspections[1:]]
    return [n for n in inspections[0].names if all(n in o for o in others)]


def pick_images(inspections: Sequence, k: int = 4) -> list[str]:
    """Up to ``k`` common images worth comparing: the defective ones the runs rank highest on
    average, and the normal one they rank highest (the likeliest false alarm). Ranks, not scores:
    the runs' scores are on different scales."""
    names = common_images(inspections)
    if not names:
        return []
    ranks = np.zeros(len(names))
    for insp in inspections:
        at = {n: j for j, n in enumerate(insp.names)}
        s = insp.scores[[at[n] for n in names]]
        ranks += np.argsort(np.argsort(s, kind="stable"), kind="stable") / max(len(names) - 1, 1)  # 0 low .. 1 high
    first = inspections[0]
    label = dict(zip(first.names, first.labels))
    order = [names[j] for j in np.argsort(-ranks, kind="stable")]
    normal = [n for n in order if label[n] == GOOD][:1]
    defects = [n for n in order if label[n] != GOOD][: k - len(normal)]
    chosen = set(defects + normal)
    rest = [n for n in order if n not in chosen][: k - len(chosen)]  # unlabelled data: the top ranked
    return [n for n in order if n in chosen or n in rest]


def heatmap_row(inspections: Sequence, name: str) -> list[np.ndarray]:
    """Image ``name`` as the first run loaded it, then each run's anomaly map of it blended on the image
    (`render.overlay_rgb`) on that run's fixed scale (`Inspection.scale`: its normal validation images'),
    with the run's pixel-threshold contour (cyan) and the ground-truth contour (green) where a mask is
    known; each (h, w, 3) uint8 at about the same display size whatever the run's input size."""
    first = inspections[0]
    i = first.names.index(name)
    h, w = first.images[i].shape[:2]
    row = [zoom(as_rgb(first.images[i], first.kind == "wafer"), auto_zoom(h, w))]
    for insp in inspections:
        j = insp.names.index(name)
        mh, mw = insp.maps[j].shape
        mask = None if insp.masks is None else insp.masks[j]
        row.append(overlay_rgb(insp.images[j], insp.maps[j], insp.scale, mask, insp.kind == "wafer",
                               auto_zoom(mh, mw), insp.border))
    return row


def scale_caption(names: Sequence[str], inspections: Sequence) -> str:
    """The legend of `heatmap_row`'s colours beside `render.scale_bar_rgb`: each run's own scale and threshold."""
    scales = "; ".join(f"{n}: {scale_text(i.scale.vmin)} to {scale_text(i.scale.vmax)}, pixel threshold "
                       f"{scale_text(i.scale.threshold)}" for n, i in zip(names, inspections))
    truth = any(i.masks is not None for i in inspections)
    bordered = [f"{n} {i.border} px" for n, i in zip(names, inspections) if i.border]  # QA sweep 22: unexplained
    faded = f"; the border each run's image score leaves out is faded, without outline ({', '.join(bordered)})"
    return (f"Colours from low (left) to high (right) on each run's own scale ({scales}); "
            + outlines_legend(truth, "the run's pixel threshold") + (faded if bordered else "") + ".")
