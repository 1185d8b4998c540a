"""Benchmark: do the heatmaps point at the defect? Where each caught defect's map peaks, per method.

Run:   .venv/bin/python bench/bench_peaks.py [--runs DIR] [--methods memory-bank,feature-ae] [--size 256]

Trains each method with its defaults (`udd train`, into --runs; a run already there is reused) on
magnetic_tile's train/good photos, scores the 584 test photos (`inspection.inspect_run`, the method's
default scoring and threshold), and counts, per defect type, the caught defective photos whose map's hot
spot reaches their mask or comes within `localisation.PEAK_TOLERANCE` of it (`localisation.peak_on_defect`):
over the whole map, and as the scoring's note judges it (`localisation.peak_shown_on_defect`: with the border
the image score leaves out faded in every heatmap, the scored area's hot spot or the whole map's). Given on all
photos and on the held-out half (`stratified_half` of bench_quality.py). Records nothing itself: copy the
table to RESULTS.md.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_quality import DATA, check_data, stratified_half  # noqa: E402
from common import UDD_CMD  # noqa: E402

from udd_core.inspection import inspect_run  # noqa: E402
from udd_core.localisation import PEAK_TOLERANCE, peak_near_edge, peak_on_defect, peak_shown_on_defect  # noqa: E402


def trained(runs: Path, method: str, size: int) -> Path:
    """The run of `method` at `size`, trained with its defaults unless it is there already."""
    run = runs / f"{method}-{size}"
    if not (run / "status.json").is_file():
        config = ["feature-ae"] if method == "feature-ae" else []
        t = time.perf_counter()
        subprocess.run([*UDD_CMD, "train", *config, "--method", method, "--data", str(DATA), "--out", str(run),
                        "--size", f"{size},{size}"], check=True)
        print(f"{method}: trained in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    return run


def rows(insp, keep: np.ndarray) -> list[tuple[str, int, int, int, int, int]]:
    """(defect type, defective photos, caught, caught with the map's peak on the defect, caught with it off the
    defect and within the border the image score leaves out, caught with the peak on the defect as the scoring's
    note judges it with that border faded: the scored area's or the whole map's) for the photos `keep`."""
    caught = keep & insp.is_defect & (insp.scores > insp.threshold) & insp.masks.any(axis=(1, 2))
    b = int(insp.settings["border"])
    on = np.array([bool(c) and peak_on_defect(insp.maps[i], insp.masks[i]) for i, c in enumerate(caught)])
    edge = caught & ~on & np.array([peak_near_edge(a, b) for a in insp.maps])
    scored = np.array([bool(c) and peak_shown_on_defect(insp.maps[i], insp.masks[i], b)
                       for i, c in enumerate(caught)])
    labels = np.asarray(insp.labels)
    out = []
    for t in [*sorted(set(labels[insp.is_defect])), "all"]:
        of = keep & insp.is_defect & ((labels == t) if t != "all" else True)
        out.append((t, int(of.sum()), int((caught & of).sum()), int((on & of).sum()), int((edge & of).sum()),
                    int((scored & of).sum())))
    return out


def share(k: int, n: int) -> str:
    return f"{k}/{n} ({k / n:.0%})" if n else "-"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=Path, default=Path("/tmp/bench_peaks_runs"))
    ap.add_argument("--methods", default="memory-bank,feature-ae")
    ap.add_argument("--size", type=int, default=256)
    args = ap.parse_args()
    check_data(DATA)
    print("| method | defect type | defective | caught | peak on the defect (all) | held-out half | off, at the edge "
          "| faded border: peak on the defect (all) | held-out half |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for method in args.methods.split(","):
        insp = inspect_run(trained(args.runs, method, args.size), DATA)
        held = ~stratified_half(insp.labels, 0)
        for (t, n, c, on, edge, sc), (_, _, hc, hon, _, hsc) in zip(rows(insp, np.ones(len(insp), bool)),
                                                                   rows(insp, held)):
            print(f"| {method} | {t} | {n} | {c} | {share(on, c)} | {share(hon, hc)} | {edge}/{c - on} "
                  f"| {share(sc, c)} | {share(hsc, hc)} |")
    print(f"\nthreshold: each run's default (target FPR 1% on its validation images); tolerance "
          f"{PEAK_TOLERANCE:.0%} of the map's side ({args.size} px maps); edge: the scoring's border", file=sys.stderr)


if __name__ == "__main__":
    main()
