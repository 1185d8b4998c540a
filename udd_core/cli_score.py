"""`udd score`: scores, verdicts, metrics and heatmaps of a data set under a trained run, any method.

Imported only when the command runs, so the rest of the command line starts without torch.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from .notices import notice_line
from .display import score_text, verdict_word
from .cli import UsageError, parse_ints, run_dir_arg
from .inspection import inspect_run
from .metrics import metric_label
from .methods import a_method, detector_class, run_method
from .atomic import check_new_file, check_new_folder, write_text_atomic
from .data import check_outside_data
from .heatmap_export import LEGEND_FILE, write_heatmaps
from .report import build_report, scores_csv
from .runs import run_source
from .tile_rollup import rollup_metrics, rollup_of, rollup_summary
from .tiles import one_image


def _finite_json(v):
    """NaN/inf are not JSON: null them (recursively)."""
    if isinstance(v, float):
        return v if v == v and v not in (float("inf"), float("-inf")) else None
    if isinstance(v, dict):
        return {k: _finite_json(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_finite_json(x) for x in v]
    return v


def _score_table(insp) -> str:
    """The readable per-image table, the threshold and the metrics of `udd score`."""
    def num(v) -> str:
        return "n/a" if v is None else f"{v:.4f}"

    items = insp.to_rows()
    with_mse = any(r["mse"] is not None for r in items)  # methods that do not reconstruct have no MSE
    rows = [("path", "label", "score", *(("mse",) if with_mse else ()), "verdict")]
    for r in items:
        verdict = "" if r["defective"] is None else verdict_word(r["defective"])
        mse = (f"{r['mse']:.6g}" if r["mse"] is not None else "nan",) if with_mse else ()  # as the reference's loss
        rows.append((r["path"], r["label"], score_text(r["score"]) if r["score"] is not None else "nan", *mse, verdict))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in rows]
    m = insp.metrics
    thr = "none" if insp.threshold is None else f"{score_text(insp.threshold)} ({insp.threshold_source})"
    # one part checked alone, unlabelled: its verdict is the answer, and a rate over its tiles is none (QA 19a)
    alone = one_image(insp.names) and not insp.is_defect.any()
    auroc, ap, fpr, tpr = (metric_label(k, insp.units()[1]) for k in ("image AUROC", "image AP", "FPR", "TPR"))
    lines += ["", *([f"score: {insp.score_meaning}"] if insp.score_meaning else []),
              f"threshold {thr}" + ("" if alone else f"   {fpr} {num(insp.fpr)}   {tpr} {num(insp.tpr)}"),
              f"{auroc} {num(m.image_auroc)}   {ap} {num(m.image_ap)}   F1 max {num(m.f1_max)}   "
              f"pixel AUROC {num(m.pixel_auroc)}   AUPRO {num(m.aupro)}"]
    for t, d in m.per_type.items():  # as Inspect's and the report's table (QA sweep 21: no AP, no normal count)
        lines.append(f"  {t:<16} {d['n']} defective vs {d['normal']} normal   {auroc} {num(d['image_auroc'])}   "
                     f"{ap} {num(d['image_ap'])}   pixel AUROC {num(d['pixel_auroc'])}   AUPRO {num(d['aupro'])}")
    if rolled := rollup_of(insp):  # a tiled run: per image too
        lines.append(f"per image, its tiles rolled up: {rollup_summary(rolled)}")
    return "\n".join(lines)


def check_heatmap_folder(folder: str, force: bool) -> None:
    """Refuse, before any scoring, a --heatmaps folder that cannot take the PNGs: a file, (without --force) a
    folder holding PNGs already, which names of this data set could overwrite, or a place that cannot be written."""
    out = Path(folder)
    check_new_folder(out, f"--heatmaps {out}")  # a file in its place, or an unwritable place: refused now
    if not out.exists() and out.suffix.lower() in (".png", ".jpg", ".jpeg"):  # a folder named "000.png" helps nobody
        raise UsageError(f"--heatmaps {out}: names a folder for the PNGs (one per image), not a file; e.g. "
                         f"--heatmaps {out.parent / 'heatmaps'}")
    if not force and out.is_dir() and (n := sum(1 for _ in out.glob("*.png"))):
        raise UsageError(f"--heatmaps {out}: holds {n} PNG file{'s' * (n != 1)} already (choose a new folder, or "
                         "pass --force to overwrite those of the same names)")


def run_score(args: argparse.Namespace) -> int:
    """Score a data set with a trained run (or a reference model folder): scores, metrics, heatmaps."""
    size = parse_ints(args.size, 2, "--size") if args.size else None
    run_dir = run_dir_arg(args.run)
    if args.heatmaps:
        check_heatmap_folder(args.heatmaps, args.force)
        trained = run_source(run_dir).get("path")  # the run's training set, whose split sets the threshold
        for data, whose in ((args.data, "the data set"), (trained, "the run's training data")):
            check_outside_data(args.heatmaps, data, f"--heatmaps {args.heatmaps}", whose)
    if args.report:  # refused before any scoring: an existing report is not overwritten without --force
        if Path(args.report).suffix.lower() not in (".html", ".htm"):  # a browser opens it by its name
            raise UsageError(f"--report {args.report}: the report is an HTML page; give a name ending in .html")
        check_new_file(args.report, f"--report {args.report}", args.force)
    if args.csv:  # the Export tab's scores CSV, headless (QA sweep 12: only the app wrote it)
        if Path(args.csv).suffix.lower() != ".csv":
            raise UsageError(f"--csv {args.csv}: the file name must end in .csv")
        check_new_file(args.csv, f"--csv {args.csv}", args.force)
    method = run_method(run_dir)
    given = [f for f, v in (("--score", args.score), ("--topk", args.topk), ("--border", args.border)) if v is not None]
    if detector_class(method).own_scores and given:
        # Its image score is a latent distance, not a reduction of the map: the option would change nothing.
        raise UsageError(f"{given[0]}: {a_method(method)} run scores images by its own "
                         "distance, not from the map; leave it out (--residual and --smooth still shape the map)")
    if args.data:  # wafer maps scored by an image model, or images by a wafer model: numbers without meaning
        from .data import data_kind, kind_mismatch

        if mismatch := kind_mismatch(run_source(run_dir).get("kind"), data_kind(args.data), "its scores"):
            raise UsageError(f"--data {args.data}: {mismatch}; score it on data of the kind it trained on")
    insp = inspect_run(run_dir, args.data, split=args.split or "test", residual=args.residual,
                       score=args.score, smooth_sigma=args.smooth, topk_percent=args.topk, border=args.border,
                       size=size,
                       threshold=args.threshold, target_fpr=args.target_fpr, batch_size=args.batch_size,
                       device=args.device, keep_recon=bool(args.report))  # the report shows reconstructions
    if args.split and insp.settings.get("split") == "all" and args.split != "all":  # a wafer file or plain folder
        insp.notices.insert(0, f"--split {args.split}: {insp.settings.get('data')} has no splits; all its images "
                               "were scored")
    for note in insp.all_notes():  # with the one on defective calls left unmarked, as Inspect (QA sweep 14)
        print(notice_line(note), file=sys.stderr)
    if args.heatmaps:
        wholes = len(write_heatmaps(insp, args.heatmaps, force=args.force)) - 2 - len(insp)  # less the key's 2
        what = f"{len(insp)} tile heatmaps and {wholes} whole images" if wholes else f"{len(insp)} heatmaps"
        print(f"udd score: wrote {what} to {args.heatmaps}, with their key in {LEGEND_FILE}", file=sys.stderr)
    if args.report:
        write_text_atomic(args.report, build_report(insp, run_dir), replace=args.force)
        print(f"udd score: wrote the report to {args.report}", file=sys.stderr)
    if args.csv:
        write_text_atomic(args.csv, scores_csv(insp), replace=args.force)
        print(f"udd score: wrote {len(insp)} scores to {args.csv}", file=sys.stderr)
    if args.json:
        rolled = rollup_of(insp)  # a tiled run's photos: "metrics" count its tiles ("units")
        out = {"images": insp.to_rows(), "metrics": insp.metrics.to_dict(), "threshold": insp.threshold,
               "threshold_source": insp.threshold_source, "fpr": insp.fpr, "tpr": insp.tpr,
               "settings": insp.settings_used(), "notices": insp.all_notes(),
               "units": insp.units()[1], "per_image": [{**asdict(r), "defective": r.defective} for r in rolled],
               "per_image_metrics": rollup_metrics(rolled) if rolled else None}
        print(json.dumps(_finite_json(out), indent=1))
    else:
        print(_score_table(insp))
    return 0
