"""Benchmark: how much magnetic_tile's photo-level split leaks, and each method on a tile-disjoint protocol.

Run:   .venv/bin/python bench/bench_tile_groups.py                       (memory bank: about 5 min on 2 cores)
       .venv/bin/python bench/bench_tile_groups.py --method feature-ae   (the feature AE: two trainings, ~15 min)

The data set photographs every tile under six lightings (file names `exp1_...` to `exp6_...`, with
capture numbers a few dozen apart), and shared/data's split shuffled the defect-free *photos*: almost
every test/good photo has its own tile, under other lights, in train/good. A detector that has stored
or learned those siblings finds the good test photos familiar, while every defective tile is new.

This script
1. groups the defect-free photos (train/good and test/good) into tiles: capture numbers less than
   GAP apart, joined with photos whose 64x64 pixels correlate above LINK at other lightings;
2. prints, per test label, the best pixel correlation of a test photo with any training photo;
3. scores every test photo with the method fitted on (A) the training photos of tiles that have no
   test/good photo and (B) as many training photos drawn at random (siblings allowed): same amount of
   data, with and without the leak;
4. (C) a grouped two-fold protocol over all 952 defect-free photos: fit on the tiles of one fold,
   score the other fold's photos as the normal test photos and every defective photo, then swap;
   the defective photos' maps and scores are the mean of the two fits. Every normal test photo is
   then a new tile, as every defective one is.
Metrics: `compute_metrics` as in bench_memory_bank.py, each method's own scoring defaults.
Records nothing itself: copy the printed tables to RESULTS.md.
"""
from __future__ import annotations

import argparse
import re
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_quality import DATA, check_data, fmt  # noqa: E402

from udd_core.data import load_dataset  # noqa: E402
from udd_core.methods import detector_class, scoring_defaults  # noqa: E402
from udd_core.metrics import compute_metrics  # noqa: E402
from udd_core.presets import model_presets  # noqa: E402
from udd_core.scoring import score_images  # noqa: E402
from udd_core.settings import training_presets  # noqa: E402
from udd_core.training_data import split_indices  # noqa: E402

GAP = 150  # capture numbers of one tile's six photos lie within a few dozen; tiles lie hundreds apart
LINK = 0.9  # pixel correlation (64x64, mean removed) that joins two photos at other lightings
TYPES = ("good", "blowhole", "break", "crack", "fray", "uneven")


def unit_rows(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, C) -> (N, H*W*C) float rows with zero mean and unit norm: dot products are correlations."""
    x = torch.from_numpy(images.reshape(len(images), -1).astype(np.float32))
    x = x - x.mean(1, keepdim=True)
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-6)


def tile_groups(names: list[str], rows: torch.Tensor) -> np.ndarray:
    """(N,) tile id of each defect-free photo (see the module docstring)."""
    num = np.array([int(re.search(r"num_(\d+)", n).group(1)) for n in names])
    light = np.array([re.search(r"(exp\d+)_", n).group(1) for n in names])
    order = np.argsort(num)
    run = np.zeros(len(num), int)
    run[order[1:]] = np.cumsum(np.diff(num[order]) > GAP)
    sim = (rows @ rows.T).numpy()
    link = (run[:, None] == run[None]) | ((sim > LINK) & (light[:, None] != light[None])
                                         & (np.abs(num[:, None] - num[None]) < 4 * GAP))
    return connected_components(csr_matrix(link), directed=False)[1]


def fitted(method: str, images: np.ndarray, size: int, seed: int, epochs: int | None):
    """A detector of `method` fitted on uint8 `images` the way `udd train` fits it (its presets)."""
    shape = (1, size, size)
    if method == "memory-bank":
        det, settings, val = detector_class(method).build(shape, {}, None, seed), None, None
    else:
        base = training_presets()[method]
        epochs = epochs or base.epochs
        settings = base.replace(epochs=epochs, lr_step=max(1, epochs // 3), seed=seed, device="cpu", n_probe=0)
        det = detector_class(method).build(shape, None, model_presets()[method].config, seed)
        tr, va = split_indices(len(images), settings.val_split, seed)
        images, val = images[tr], images[va]
    with tempfile.TemporaryDirectory(prefix="udd_tiles_") as run_dir:
        det.fit(images, val, settings, run_dir, stop_event=threading.Event())
    return det


def scored(det, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(maps (N, H, W), scores (N,)) with the method's own scoring defaults, as `udd score`."""
    r = score_images(det, images, **scoring_defaults(det), keep_recon=False)
    return np.asarray(r.maps, np.float32), np.asarray(r.scores, np.float32)


def row(name: str, scores, maps, labels, masks) -> str:
    m = compute_metrics(scores, list(labels), maps, masks)
    per = " | ".join(fmt(m.per_type[t]["image_auroc"]) for t in TYPES[1:])
    return f"| {name} | {fmt(m.image_auroc)} | {fmt(m.pixel_auroc)} | {fmt(m.aupro)} | {per} |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--method", default="memory-bank", choices=("memory-bank", "feature-ae"))
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=None, help="feature-ae: default the training preset's")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    check_data(args.data)
    t0 = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t0:6.0f} s] {msg}", file=sys.stderr, flush=True)

    small = {s: load_dataset(args.data, (1, 64, 64), split=s) for s in ("train", "test")}
    tr = load_dataset(args.data, (1, args.size, args.size), split="train")
    te = load_dataset(args.data, (1, args.size, args.size), split="test")
    labels = np.asarray(te.labels)
    good = np.flatnonzero(labels == "good")
    n_tr = len(tr.images)
    names = list(small["train"].names) + [small["test"].names[i] for i in good]
    free_rows = unit_rows(np.concatenate([small["train"].images, small["test"].images[good]]))
    tile = tile_groups(names, free_rows)
    t_train, t_good = tile[:n_tr], tile[n_tr:]
    disjoint = np.flatnonzero(~np.isin(t_train, t_good))
    sizes = np.bincount(np.bincount(tile))
    print(f"\n## Tiles: {len(np.unique(tile))} groups of the 952 defect-free photos (groups of 6: {sizes[6] if len(sizes) > 6 else 0}); "
          f"test/good's {len(good)} photos lie in {len(np.unique(t_good))} of them, which hold {n_tr - len(disjoint)} "
          f"of the {n_tr} training photos; {len(disjoint)} training photos share no tile with test/good.")

    best = (unit_rows(small["test"].images) @ free_rows[:n_tr].T).max(1).values.numpy()
    train_rows = free_rows[:n_tr]
    self_sim = train_rows @ train_rows.T
    self_sim.fill_diagonal_(-1.0)
    print("\n| photos | best pixel correlation with a training photo: 10% / 50% / 90% |\n| --- | --- |")
    print(f"| train/good (with another training photo) | {' / '.join(f'{v:.3f}' for v in np.percentile(self_sim.max(1).values.numpy(), [10, 50, 90]))} |")
    for t in TYPES:
        print(f"| test/{t} | {' / '.join(f'{v:.3f}' for v in np.percentile(best[labels == t], [10, 50, 90]))} |")

    head = ("| protocol | img AUROC | pix AUROC | AUPRO | " + " | ".join(TYPES[1:]) + " |\n| --- |"
            + " --- |" * (3 + len(TYPES) - 1))
    print(f"\n## {args.method}, {args.size}x{args.size}\n\n{head}")
    rng = np.random.default_rng(args.seed)
    for name, src in ((f"A: {len(disjoint)} training photos of tiles not in test/good", disjoint),
                      (f"B: {len(disjoint)} random training photos (siblings in)", rng.choice(n_tr, len(disjoint), replace=False))):
        det = fitted(args.method, tr.images[src], args.size, args.seed, args.epochs)
        maps, scores = scored(det, te.images)
        print(row(name, scores, maps, labels, te.masks), flush=True)
        log(name)

    free = np.concatenate([tr.images, te.images[good]])
    fold = dict(zip(np.unique(tile), rng.permutation(len(np.unique(tile))) % 2))
    in_fold = np.array([fold[t] for t in tile])
    defect = np.flatnonzero(labels != "good")
    d_maps = np.zeros((len(defect), args.size, args.size), np.float32)
    d_scores = np.zeros(len(defect), np.float32)
    n_maps, n_scores = [], []
    for f in (0, 1):
        det = fitted(args.method, free[in_fold == f], args.size, args.seed, args.epochs)
        m, s = scored(det, te.images[defect])
        d_maps += m / 2
        d_scores += s / 2
        m, s = scored(det, free[in_fold != f])
        n_maps.append(m)
        n_scores.append(s)
        log(f"fold {f}: fitted on {int((in_fold == f).sum())} photos")
    n = sum(len(s) for s in n_scores)
    lab = np.r_[labels[defect], np.full(n, "good")]
    masks = np.concatenate([te.masks[defect], np.zeros((n, args.size, args.size), te.masks.dtype)])
    print(row(f"C: grouped two folds ({n} normal photos, every one a new tile)", np.r_[d_scores, *n_scores],
              np.concatenate([d_maps, *n_maps]), lab, masks))
    log("done")


if __name__ == "__main__":
    main()
