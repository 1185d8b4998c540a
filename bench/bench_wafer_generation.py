"""Wafer-map generation that looks like its class (issue 13): train, generate, measure resemblance.

For each data set and each recipe, trains a run through `udd train`, then generates 16 variants
per pattern class at the run's default σ (what `udd generate` takes without --sigma), from
different source maps while the class has them, and classifies each variant with the nearest
centroid of the real maps' failing-die maps (`udd_core.resemblance`). Reports the share that
lands in its source class against chance, the same rule on the source maps themselves (its
ceiling), and the share of on-wafer dies changed from the source (a copy would change none).

Data sets:
- sample: `sample_data/wafer_maps_26x26.npz` (synthetic, 9 classes, 40 maps per pattern class).
- real: `../shared/data/wm811k_small/labelled_first100.npz` resized to 26x26 nearest-neighbour
  (none 83, Edge-Loc 8, Loc 4, Center 2; the 3 "unlabeled" maps are no class), with, for
  training only and on request (`--real-extra`), the 716 unlabelled real maps. The pattern maps
  are split into two stratified halves: recipes are compared on variants of the selection
  half's sources, and both halves are reported (the centroids use every labelled map).

Recipes:
- detect: wafer-26 + the `wafer` preset (normal maps only, MSE): the status quo of the issue.
- mse-all: wafer-26 + the `wafer` preset with --train-on all (patterns seen, still MSE).
- gen: wafer-26-gen + the `wafer-generation` preset (all maps, cross-entropy, batch 8).
- gen-b32, gen-balanced-b32: the same in batches of 32, with the plain and the class-balanced
  cross-entropy.
- gen-rare: gen trained on the pattern maps only (--train-on CLASS,...), batch 4, no validation
  split, 4x the epochs.

    .venv/bin/python bench/bench_wafer_generation.py --data sample real --epochs 120
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from udd_core.cli import main as udd  # noqa: E402
from udd_core.generation import default_sigma_scale, load_generator, load_images  # noqa: E402
from udd_core.resemblance import measure_model  # noqa: E402
from udd_core.wafermaps import load_wafer_file  # noqa: E402

SAMPLE = ROOT / "sample_data" / "wafer_maps_26x26.npz"
REAL = ROOT.parent / "shared" / "data" / "wm811k_small"
RECIPES = {
    "detect": ["wafer-26", "--preset", "wafer"],
    "mse-all": ["wafer-26", "--preset", "wafer", "--train-on", "all"],
    "gen": ["wafer-26-gen", "--preset", "wafer-generation"],
    "gen-b32": ["wafer-26-gen", "--preset", "wafer-generation", "--batch-size", "32"],
    "gen-balanced-b32": ["wafer-26-gen", "--preset", "wafer-generation", "--loss", "ce-balanced", "--batch-size", "32"],
    # Only the pattern maps (--train-on with every defect class of the data), in small batches and for
    # EPOCHS_RARE times the epochs: the few real pattern maps are a tiny set, seen once per epoch.
    "gen-rare": ["wafer-26-gen", "--preset", "wafer-generation", "--train-on", "{patterns}",
                 "--batch-size", "4", "--val-split", "0"],
}
EPOCHS_RARE = 4
REAL_CLASSES = ["none", "Center", "Edge-Loc", "Loc"]  # the labelled classes of the real subset


def stratified_half(labels: list[str], seed: int = 0) -> np.ndarray:
    """(N,) bool: the selection half, half of each class (rounded up), drawn with `seed`."""
    rng = np.random.default_rng(seed)
    sel = np.zeros(len(labels), bool)
    for c in sorted(set(labels)):
        idx = rng.permutation(np.flatnonzero(np.asarray(labels) == c))
        sel[idx[: (len(idx) + 1) // 2]] = True
    return sel


def real_files(tmp: Path, extra: bool) -> tuple[Path, Path]:
    """(training file, measured file) of the real subset at 26x26, written into `tmp`."""
    images, labels, _, _ = load_wafer_file(REAL / "labelled_first100.npz", (26, 26))
    maps = np.argmax(images, axis=-1).astype(np.uint8)  # (100, 26, 26) die values
    measured = tmp / "real_labelled_26.npz"
    np.savez(measured, maps=maps, labels=np.asarray(labels))
    if not extra:
        return measured, measured
    more = np.load(REAL / "maps_26x26_unlabelled.npy")
    train = tmp / "real_train_26.npz"
    np.savez(train, maps=np.concatenate([maps, more]),
             labels=np.asarray(list(labels) + ["good"] * len(more)))
    return train, measured


def measure_run(out: Path, measured: Path, seed: int, classes: list[str] | None, halves: bool) -> dict:
    """The resemblance of a trained run's variants at its default σ, on the whole data or on each half."""
    model = load_generator(out)
    ds = load_images(model, measured)
    train_on = json.loads((out / "train.json").read_text())["settings"].get("train_on", "normal")
    sigma = default_sigma_scale(model, ds, train_on)[0]
    labels = [str(v) for v in ds.labels]
    row = {"recipe": out.name, "sigma": sigma}
    parts = {"all": None}
    if halves:
        sel = stratified_half(labels, seed=0)
        parts = {"selection": sel, "held-out": ~sel}
    for part, mask in parts.items():
        r, _, _ = measure_model(model, ds.images, labels, sigma, per_class=16, seed=seed, classes=classes,
                                sources_from=mask)
        row[part] = r.to_dict()
    return row


def run_recipe(name: str, train_data: Path, measured: Path, out: Path, epochs: int, seed: int,
               classes: list[str] | None, halves: bool) -> dict:
    from udd_core.wafer_generation import pattern_classes

    with np.load(measured) as z:
        patterns = ",".join(c for c in pattern_classes(z["labels"].tolist()) if classes is None or c in classes)
    if name == "gen-rare":
        epochs *= EPOCHS_RARE
    t0 = time.monotonic()
    rc = udd(["train", *(a.replace("{patterns}", patterns) for a in RECIPES[name]), "--data", str(train_data),
              "--out", str(out), "--epochs", str(epochs), "--seed", str(seed)])
    if rc != 0:
        raise SystemExit(f"udd train for {name} failed ({rc})")
    train_s = time.monotonic() - t0
    return {**measure_run(out, measured, seed, classes, halves), "recipe": name, "train_s": round(train_s, 1),
            "epochs": epochs}


def fmt(rows: list[dict]) -> str:
    lines = ["| data | recipe | part | σ | in source class | chance | rule on the sources | dies changed "
             "(σ 0) | n |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        for part in ("all", "selection", "held-out"):
            if part in row:
                r = row[part]
                lines.append(f"| {row['data']} | {row['recipe']} | {part} | {row['sigma']:g} | {r['in_class']:.2f} | "
                             f"{r['chance']:.2f} | {r['real_in_class']:.2f} | {r['changed']:.3f} ({r['recon_changed']:.3f}) | "
                             f"{r['n']} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", nargs="+", choices=("sample", "real"), default=["sample", "real"])
    ap.add_argument("--recipes", nargs="+", choices=list(RECIPES), default=list(RECIPES))
    ap.add_argument("--epochs", type=int, default=120)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--real-extra", action="store_true",
                    help="also train on the 716 unlabelled real maps (the measure still uses the 100 labelled ones)")
    ap.add_argument("--json", type=Path, help="also write the rows (with per-class detail) to this file")
    ap.add_argument("--keep", type=Path, help="train the runs into this (new) folder and keep them")
    ap.add_argument("--measure", type=Path, nargs="+", metavar="RUN",
                    help="measure these trained runs (a stopped one too) on --data instead of training")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="udd-wgen-") as tmp:
        tmp = Path(tmp)
        for data in args.data:
            if data == "real" and not REAL.is_dir():
                print(f"skipping real: {REAL} is absent", file=sys.stderr)
                continue
            train_data, measured = (SAMPLE, SAMPLE) if data == "sample" else real_files(tmp, args.real_extra)
            if args.measure:
                for run in args.measure:
                    row = measure_run(run, measured, args.seed, None if data == "sample" else REAL_CLASSES,
                                      halves=data == "real")
                    rows.append({**row, "data": data})
                continue
            for name in args.recipes:
                run_dir = (args.keep or tmp) / f"{data}-{name}"
                row = run_recipe(name, train_data, measured, run_dir, args.epochs, args.seed,
                                 None if data == "sample" else REAL_CLASSES, halves=data == "real")
                row["data"] = data
                rows.append(row)
                print(fmt([row]).splitlines()[-1] if data == "sample" else "\n".join(fmt([row]).splitlines()[2:]),
                      flush=True)
    print(fmt(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
