"""Exports of an inspection: the scores as CSV and a one-page HTML report (the heatmap PNGs: `heatmap_export`).

The report is a single self-contained file an engineer can mail: everything is inline (CSS, the
training curve as SVG, images as base64 PNGs), so it opens offline and references no URL at all.
"""
from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import time
from pathlib import Path
from typing import Optional

import numpy as np

from . import runs
from . import run_status
from .config import config_text
from .settings import applied_settings
from .inspection_result import Inspection
from .methods import METHODS, detector_class, fitted_in_one_pass, run_spec, spec_options
from .metrics import metric_label
from .display import breakable, folder_and_name, scale_text, score_text, verdict_word
from .render import WAFER_LEGEND, png_bytes, scale_bar_rgb
from .tile_rollup import rollup_counts, rollup_of, rollup_summary, whole_image

PANEL_NAMES = {"residual": "anomaly map"}  # a panel's column title where its key is no word for a reader

# method.json's "fit" record as a reader names it (a memory bank's; other keys are shown with spaces for _)
FIT_LABELS = {"images": "images embedded", "patches": "patches", "bank": "bank (patches kept)",
              "feature_dim": "feature channels", "covering_radius": "coreset covering radius",
              "embed_s": "embedding time (s)", "coreset_s": "coreset selection time (s)",
              "spread_s": "bank spread time (s)", "knn_peak_bytes": "kNN peak memory (bytes)", "status": "status"}


# --- exports ---------------------------------------------------------------------------------

def scores_csv(insp: Inspection) -> str:
    """CSV text: path, label, score, mse, defective, and the threshold that `defective` compares the score
    with (the same on every line: the file reads on its own, QA sweep 8); for a score with a factor its two
    parts after the score's columns (`Inspection.to_rows`); one line per image in data order."""
    buf = io.StringIO()
    parts = ["map_score", "factor"] if insp.factors is not None else []
    w = csv.DictWriter(buf, fieldnames=["path", "label", "score", "mse", "defective", "threshold", *parts],
                       lineterminator="\n")
    w.writeheader()
    for row in insp.to_rows():
        w.writerow({k: "" if v is None else v for k, v in {**row, "threshold": insp.threshold}.items()})
    return buf.getvalue()



# --- the HTML report --------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1100px;color:#222}
h1{font-size:22px;margin-bottom:2px} h2{font-size:17px;margin:26px 0 8px;border-bottom:1px solid #ddd}
.sub{color:#666;font-size:13px} table{border-collapse:collapse;font-size:13px}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:left} th{background:#f4f4f4}
td.n{text-align:right;font-variant-numeric:tabular-nums} pre{background:#f7f7f7;padding:8px;font-size:12px;overflow:auto}
.imgs{white-space:nowrap} .imgs img{width:150px;image-rendering:pixelated;margin-right:4px;border:1px solid #ccc}
td.name{overflow-wrap:anywhere}
.bad{color:#b00;font-weight:600} .ok{color:#070} .note{color:#8a5a00;font-size:13px}
.legend{font-size:12px;color:#555}
.scale img{vertical-align:middle;margin:0 6px}
.summary{font-size:16px;font-weight:600;margin:14px 0}
"""


def _e(v) -> str:
    return html.escape(str(v), quote=True)


def _num(v, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    tiny = v != 0 and abs(v) < 1e-3  # an exact 0 (an FPR) as 0.0000 beside 0.4000, not "0" (QA sweep 13)
    return f"{v:.{digits}g}" if tiny or abs(v) >= 1e4 else f"{v:.{digits}f}"


def _fields(d: dict) -> str:
    """Settings as a line a process engineer reads ("score: topk; topk percent: 10"), not a JSON blob;
    unset (None) fields are left out, and so is the top-k share of a score that is not top-k."""
    def value(v) -> str:
        if isinstance(v, bool):
            return "yes" if v else "no"
        if isinstance(v, float):
            return f"{v:.4g}"
        if isinstance(v, (list, tuple)):
            return ", ".join(value(x) for x in v)
        return json.dumps(v) if isinstance(v, dict) else str(v)
    unused = {"topk_percent"} if d.get("score") not in (None, "topk") else set()
    return "; ".join(f"{k.replace('_', ' ')}: {value(v)}" for k, v in d.items()
                     if v is not None and k not in unused) or "none"


def _img(rgb: np.ndarray, alt: str) -> str:
    data = base64.b64encode(png_bytes(rgb)).decode("ascii")
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def loss_curve_svg(history: list[dict], width: int = 560, height: int = 220) -> str:
    """Inline SVG of the training and validation loss per epoch (log scale when they span > 10x)."""
    series = {k: [(r.get("epoch", i + 1), r.get(k)) for i, r in enumerate(history)] for k in ("train_loss", "val_loss")}
    series = {k: [(e, float(v)) for e, v in pts if isinstance(v, (int, float)) and math.isfinite(v) and v > 0]
              for k, pts in series.items()}
    values = [v for pts in series.values() for _, v in pts]
    if not values:
        return '<p class="sub">No training history.</p>'
    epochs = [e for pts in series.values() for e, _ in pts]
    e0, e1 = min(epochs), max(max(epochs), min(epochs) + 1)
    lo, hi = min(values), max(values)
    log = hi / lo > 10
    f = math.log10 if log else (lambda v: v)
    y0, y1 = f(lo), f(hi) if f(hi) > f(lo) else f(lo) + 1e-12
    ml, mr, mt, mb = 60, 110, 10, 30  # margins: tick labels left, legend right

    def xy(e, v):
        x = ml + (e - e0) / (e1 - e0) * (width - ml - mr)
        y = mt + (1 - (f(v) - y0) / (y1 - y0)) * (height - mt - mb)
        return f"{x:.1f},{y:.1f}"

    parts = [f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="training curve" style="font:11px sans-serif">',
             f'<rect x="{ml}" y="{mt}" width="{width - ml - mr}" height="{height - mt - mb}" fill="none" stroke="#bbb"/>']
    for v in (lo, hi):
        parts.append(f'<text x="{ml - 4}" y="{xy(e0, v).split(",")[1]}" text-anchor="end" dy="4">{_num(v, 3)}</text>')
    for e in (e0, e1):
        parts.append(f'<text x="{xy(e, lo).split(",")[0]}" y="{height - 12}" text-anchor="middle">{e}</text>')
    parts.append(f'<text x="{(width - mr + ml) / 2}" y="{height - 1}" text-anchor="middle">epoch'
                 f'{" (log loss)" if log else ""}</text>')
    colours = {"train_loss": "#1f77b4", "val_loss": "#d62728"}
    for i, (k, pts) in enumerate(series.items()):
        if not pts:
            continue
        c = colours[k]
        parts.append(f'<polyline fill="none" stroke="{c}" stroke-width="2" points="{" ".join(xy(e, v) for e, v in pts)}"/>')
        if len(pts) == 1:
            x, y = xy(*pts[0]).split(",")
            parts.append(f'<circle cx="{x}" cy="{y}" r="3" fill="{c}"/>')
        ly = mt + 14 + 16 * i
        parts.append(f'<line x1="{width - mr + 10}" y1="{ly - 4}" x2="{width - mr + 30}" y2="{ly - 4}" stroke="{c}" '
                     f'stroke-width="2"/><text x="{width - mr + 34}" y="{ly}">{k.replace("_loss", "")}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _metrics_table(insp: Inspection) -> str:
    m = insp.metrics
    table = insp.metric_table()  # Inspect's rows: each set's defective images against every normal one
    cols = list(table[0]) if table else []
    head = "<tr>" + "".join(f"<th>{_e(c)}</th>" for c in cols) + "</tr>"
    rows = [f"<tr><td>{'<b>all</b>' if r['defect type'] == 'all' else _e(r['defect type'])}</td>"
            + "".join(f"<td class=n>{v if isinstance(v, int) else _num(v)}</td>" for v in list(r.values())[1:])
            + "</tr>" for r in table]
    per_tile = " (per tile)" if insp.units()[1] == "tiles" else ""
    return f"<table>{head}{''.join(rows)}</table><p>F1 max{per_tile}: {_num(m.f1_max)}</p>"


def _threshold_block(insp: Inspection) -> str:
    if insp.threshold is None:
        return "<p>No threshold: the data has no normal reference or labels to set one.</p>"
    r = insp.at(insp.threshold)
    conf = (f"<table><tr><th></th><th>predicted defective</th><th>predicted good</th></tr>"
            f"<tr><th>defective</th><td class=n>{r['tp']}</td><td class=n>{r['fn']}</td></tr>"
            f"<tr><th>good</th><td class=n>{r['fp']}</td><td class=n>{r['tn']}</td></tr></table>")
    meaning = f"<p class=sub>Score: {_e(insp.score_meaning)}.{_e(insp.units_note())}</p>" if insp.score_meaning else ""
    fpr, tpr = (metric_label(k, insp.units()[1]) for k in ("FPR", "TPR"))  # a tiled run's: per tile (QA sweep 22)
    return (f"<p>Image threshold <b>{score_text(insp.threshold)}</b> ({_e(insp.threshold_source)}): "
            f"{fpr} {_num(r['fpr'])}, {tpr} {_num(r['tpr'])}. {insp.call_rule()}.</p>"
            f"{meaning}{conf}")


def _image_table(insp: Inspection, indices) -> str:
    """Rows of images (rank, name, label, score, verdict, panels) for the given indices, in that order."""
    shown = ("input", "reconstruction", "overlay") if insp.recon_raw is not None else ("input", "overlay")
    if insp.kind == "wafer":  # on the bright failing dies the overlay's heat colours turn pale (QA sweep 8):
        shown = (*shown[:-1], "residual", "overlay")  # the map itself, in the colour bar's colours
    rows = []
    for rank, i in enumerate(indices, 1):
        i = int(i)
        p = insp.panels(i)
        bad = insp.threshold is not None and bool(insp.scores[i] > insp.threshold)
        verdict = "" if insp.threshold is None else f'<span class="{"bad" if bad else "ok"}">{verdict_word(bad)}</span>'
        parts = "" if insp.factors is None else f"<br><span class=sub>{_e(insp.score_text(i))}</span>"
        imgs = "".join(_img(p[k], k) for k in shown)
        short = folder_and_name(insp.names[i])
        # <wbr>: a long path wraps after a '/' or '_', not mid-number (QA); a wafer map's name has no folder
        full = "" if short == insp.names[i] else f"<br><span class=sub>{breakable(_e(insp.names[i]), '<wbr>')}</span>"
        rows.append(f"<tr><td class=n>{rank}</td><td class=name>{breakable(_e(short), '<wbr>')}{full}</td><td>{_e(insp.labels[i])}</td><td class=n>"
                    f"{score_text(insp.scores[i])}{parts}</td><td>{verdict}</td><td class=imgs>{imgs}</td></tr>")
    return ("<table><tr><th>#</th><th>image</th><th>label</th><th>score</th><th>verdict</th>"
            f"<th>{' | '.join(PANEL_NAMES.get(k, k) for k in shown)}</th></tr>" + "".join(rows) + "</table>")


def _rollup(insp: Inspection, n_worst: int) -> list[str]:
    """For a tiled run, the verdict per image, its tiles rolled up (`tile_rollup`), as Inspect shows it: the
    report is what reaches the process engineer, who acts on a part (QA sweep 18: per tile only). The
    `n_worst` highest-scoring images are shown whole, their tiles' maps put back in place."""
    rows = rollup_of(insp)
    if not rows:
        return []
    table = [r.to_row() for r in rows]
    head = "".join(f"<th>{_e(k)}</th>" for k in table[0])
    body = "".join("<tr>" + "".join(f"<td>{_e('' if v is None else v)}</td>" for v in row.values()) + "</tr>"
                   for row in table)
    said = [" · ".join(v for v in (row["label"], row["highest tile score"], row["verdict"]) if v) for row in table]

    def whole_row(image: str, words: str) -> str:  # the photo on the fixed scale, then on its own (QA sweep 20)
        whole = whole_image(insp, image)
        return (f"<tr><td>{_e(folder_and_name(image))}<br>{_e(words)}</td>"
                + "".join(f"<td>{_img(whole.overlay(scale), image)}</td>"
                          for scale in (insp.scale, whole.own_scale(insp.pixel_threshold))) + "</tr>")

    wholes = "".join(whole_row(r.image, words) for r, words in zip(rows[:n_worst], said))
    return [f"<h2>Per image, its tiles rolled up</h2><p class=sub>{_e(rollup_summary(rows))}.</p>"
            f"<table><tr>{head}</tr>{body}</table>",
            f"<h2>Whole images, highest score first</h2><p class=sub>The {min(n_worst, len(rows))} highest-scoring "
            "images with their tiles' maps put back in place (where tiles overlap, the higher value): on the "
            "colour scale of the galleries above, then on each photo's own scale, from its median pixel to its "
            "highest, where its map peaks shows even when the fixed scale leaves it dark.</p>"
            f"<table><tr><th>image</th><th>fixed scale</th><th>its own scale</th></tr>{wholes}</table>"]


TILE_LABELS = ("<p class=sub>A tile is labelled by its own mask: a tile of a defective photo that its mask misses "
               "counts as normal.</p>")


def _galleries(insp: Inspection, n_worst: int, n_errors: int) -> list[str]:
    """The worst images by score, then (at a threshold, on labelled images) the missed defects and the false
    alarms nearest the threshold: an engineer sees where the detector fails, not only where it succeeds."""
    sc = insp.scale
    # The colours themselves, as the app's Inspect page shows them: the legend's words alone name no colour. Before
    # the first overlay, so that a reader of the galleries has the key (QA sweep 8: it came after all of them).
    bar = (f'<p class="legend scale"><span>{scale_text(sc.vmin)}</span>{_img(scale_bar_rgb(256, 14), "colour scale")}'
           f"<span>{scale_text(sc.vmax)}</span></p>")
    order, unit = insp.order(), insp.units()[1]  # a tiled run's galleries show tiles (QA sweep 20)
    dies = f'<p class="legend">{_e(WAFER_LEGEND)}.</p>' if insp.kind == "wafer" else ""
    out = [f"<h2>Worst {min(n_worst, len(insp))} {unit} by score</h2>" + bar
           + f'<p class="legend">Overlay: the anomaly map ({_e(insp.settings.get("residual"))}) on a fixed '
             f"scale. {_e(insp.scale_legend())}</p>" + dies + _image_table(insp, order[:n_worst])]
    if insp.threshold is not None:
        above = insp.scores > insp.threshold
        missed = [i for i in order if insp.known[i] and insp.is_defect[i] and not above[i]]  # nearest misses first
        alarms = [i for i in order[::-1] if insp.known[i] and not insp.is_defect[i] and above[i]]  # lowest first
        n_defect = int((insp.known & insp.is_defect).sum())
        n_normal = int((insp.known & ~insp.is_defect).sum())
        for title, found, of in (("Missed defects", missed, f"{n_defect} defective"),
                                 ("False alarms", alarms, f"{n_normal} normal")):
            if found:  # "14 of the 24 defective images", then how many of them are shown
                shown = min(n_errors, len(found))
                out.append(f"<h2>{title}: {len(found)} of the {of} {unit}; "
                           f"{'the ' + str(shown) if shown < len(found) else 'all'} shown, nearest the threshold "
                           "first</h2>" + (TILE_LABELS if unit == "tiles" else "")
                           + _image_table(insp, found[:n_errors]))
    return out


def precision_used(history: list[dict]) -> str:
    """What the training steps ran in, from history.jsonl's per-epoch `precision`: "float32 in all 30
    epochs", or "bf16 in epochs 1-12, float32 in epochs 13-30" after a switch; "" for older runs."""
    used = [r.get("precision") for r in history]
    if not used or any(not isinstance(u, str) for u in used):
        return ""
    if len(set(used)) == 1:
        return f"{used[0]} in all {len(used)} epoch{'s' if len(used) > 1 else ''}"
    parts, start = [], 0
    for i in range(1, len(used) + 1):
        if i == len(used) or used[i] != used[start]:
            parts.append(f"{used[start]} in epoch{'s' if i - start > 1 else ''} "
                         + (f"{start + 1}-{i}" if i - start > 1 else f"{i}"))
            start = i
    return ", ".join(parts)


def summary_line(insp: Inspection) -> str:
    """The report's first line, for the process engineer who reads no further: at the threshold, how many
    defective images were caught and how many normal ones were called defective, beside the target rate the
    threshold was set for (QA sweep 19b: the verdict hid in a confusion matrix below training internals)."""
    if insp.threshold is None:
        return ("No threshold is set (no normal reference images or labels), so no image is called defective or "
                "normal; the scores below rank them.")
    c, unit = insp.at(insp.threshold), insp.units()[1]
    n_bad, n_good = c["tp"] + c["fn"], c["fp"] + c["tn"]
    if rows := rollup_of(insp):  # a tiled run: the photos, which an inspector acts on, then the tiles (QA sweep 20)
        caught, bad, false, good = rollup_counts(rows)
        per_photo = [f"{caught} of {bad} defective images caught"] * bool(bad)
        per_photo += [f"{false} of {good} normal images called defective"] * bool(good)
        if per_photo:
            return (f"At the threshold {score_text(insp.threshold)}, per image (any tile above it): "
                    f"{'; '.join(per_photo)}. Per tile: {c['tp']} of {n_bad} defective tiles caught, {c['fp']} of "
                    f"{n_good} normal tiles called defective.")
    parts = [f"{c['tp']} of {n_bad} defective {unit} caught"] if n_bad else []
    if n_good:
        target = insp.settings.get("target_fpr") if insp.threshold_source.startswith("target FPR") else None
        parts.append(f"{c['fp']} of {n_good} normal {unit} called defective ({c['fp'] / n_good:.0%} false alarms"
                     + (f", for a target of {float(target):.0%} on the {insp.normal_source} images)"
                        if target is not None else ")"))
    if not parts:  # no labelled image: every one unknown
        return f"{int((insp.scores > insp.threshold).sum())} of {len(insp)} {unit} called defective (no labels)."
    return f"At the threshold {score_text(insp.threshold)}: {'; '.join(parts)}."


def build_report(insp: Inspection, run_dir=None, n_worst: int = 8, title: Optional[str] = None,
                 n_errors: int = 4) -> str:
    """The report as one HTML string: settings, config, training curve, metrics, threshold, the worst images,
    and up to `n_errors` missed defects and false alarms."""
    run = Path(run_dir or insp.settings.get("model", "."))
    config = runs.read_json(run / "config.json")
    train = runs.read_train(run)
    history = runs.read_history(run)
    s = insp.settings
    title = title or f"udd inspection report: {run.name}"
    scoring = {k: s[k] for k in ("residual", "score", "smooth_sigma", "topk_percent", "border")
               if k in s and (k != "topk_percent" or s.get("score") == "topk")}  # a top-k share only where used
    if s.get("target_fpr") is not None and insp.threshold_source.startswith("target FPR"):  # not beside a threshold
        scoring["target FPR"] = f"{100 * float(s['target_fpr']):g}%"  # set by hand; as the Threshold section says
    setup = [("model", s.get("model")), ("data", s.get("data")), ("split", s.get("split")),
             ("input shape (C, H, W)", s.get("input_shape")), ("images", len(insp)),
             ("scoring", _fields(scoring)), ("normal reference", insp.normal_source or "none")]
    spec = run_spec(run)
    one_pass = fitted_in_one_pass(spec["method"])
    options = spec_options(spec)
    summary = detector_class(spec["method"]).summary if spec["method"] in METHODS else ""
    setup.insert(0, ("method", spec["method"] + (f" ({summary})" if summary else "")))
    if options:
        setup.insert(1, ("method options", _fields(options)))
    if (run / runs.STATUS_FILE).is_file():  # a stopped run must not pass for a finished one
        st = run_status.read_status(run)
        setup.append(("run status", f"{st['status']}: {run_status.status_message(st)}".rstrip(": ")))
    if runs.train_settings(train):
        shown = applied_settings(runs.train_settings(train), not one_pass)
        setup.append(("fit settings" if one_pass else "training settings", _fields(shown)))
    # Each epoch loop of the method, with what its loss measures (QA sweep 21: a Deep SVDD run's report drew only
    # its pretraining, unsaid, while its own phase makes the score)
    loops = detector_class(spec["method"]).epoch_loops(run) if spec["method"] in METHODS else [("", history)]
    if used := precision_used(history):  # amp_bf16 above is what was asked; this is what the epochs ran
        setup.append(("precision used" + (" (pretraining)" if len(loops) > 1 else ""), used))
    if one_pass:  # no epochs, so no curve: what the fit did instead (method.json's "fit")
        fit = spec.get("fit") if isinstance(spec.get("fit"), dict) else {}
        last = ("<h2>Fit</h2><p class=sub>Fitted in one pass, with no training epochs.</p>" + (
            "<table>" + "".join(f"<tr><th>{_e(FIT_LABELS.get(k, k.replace('_', ' ')))}</th>"
                                f"<td>{_e(f'{v:.4g}' if isinstance(v, float) else v)}</td></tr>"
                                for k, v in fit.items()) + "</table>"
            if fit else ""))
    else:
        last = "<h2>Training curve</h2>" + "".join((f"<p class=sub>{_e(caption)}</p>" if caption else "")
                                                   + loss_curve_svg(records) for caption, records in loops)
    # The notes qualify the numbers below them (too few normal images for the FPR, the run's own training data
    # scored): read before them, not after the galleries and the config (QA sweep 8).
    rolled = _rollup(insp, n_worst)  # the table per image, then (after the galleries' colour key) whole images
    said = insp.all_notes()
    notes = ["<h2>Notes</h2><ul>" + "".join(f"<li class=note>{_e(n)}</li>" for n in said) + "</ul>"] if said else []
    body = [f"<h1>{_e(title)}</h1><div class=sub>generated {_e(time.strftime('%Y-%m-%d %H:%M'))} by udd</div>",
            f"<p class=summary>{_e(summary_line(insp))}</p>",
            "<h2>Setup</h2><table>" + "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in setup) + "</table>",
            *notes, "<h2>Metrics</h2>" + _metrics_table(insp),
            "<h2>Threshold</h2>" + _threshold_block(insp), *rolled[:1], *_galleries(insp, n_worst, n_errors),
            *rolled[1:], last]
    if config is not None:
        text = config_text(config) if isinstance(config, dict) else json.dumps(config)
        body.append("<h2>Model config</h2><pre>" + html.escape(text, quote=False) + "</pre>")
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
            f"<style>{_CSS}</style></head><body>{''.join(body)}</body></html>\n")
