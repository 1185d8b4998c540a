"""Benchmark: the feature autoencoder (method feature-ae) on the magnetic-tile photos at 256x256.

Run:   .venv/bin/python bench/bench_feature_ae.py                       (the feature-ae model and training presets: RESULTS.md)
       .venv/bin/python bench/bench_feature_ae.py --config my.json --epochs 20 --lr 3e-3
       .venv/bin/python bench/bench_feature_ae.py --quick               (a smoke run: a few images, meaningless numbers)

Every train/good photo (760) fits the detector, every test photo (584) is scored, gray at 256x256.
The fit is the product's (`FeatureAEDetector.fit`, the training loop of `udd train`), timed as a
whole: the backbone features of the training images, then the epochs. The test photos' features are
computed once and every scoring choice (`--sigmas` x `score_choices` x `--powers` of the latent
novelty factor) is applied to the same maps. Scoring choices are picked on the seeded selection half
of the test set (`stratified_half` of bench_quality.py) and the other half is reported beside it, so
selection bias shows.

Records nothing itself: copy the printed tables to RESULTS.md, with `uptime`'s load (printed).
"""
from __future__ import annotations

import argparse
import itertools
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_quality import DATA, check_data, first_of_each, fmt, leave_one_type_out, stratified_half  # noqa: E402
from udd_core.config import load_config  # noqa: E402
from udd_core.data import load_dataset  # noqa: E402
from udd_core.methods import detector_class  # noqa: E402
from udd_core.feeds import cache_features, feature_cache_bytes  # noqa: E402
from udd_core.metrics import compute_metrics  # noqa: E402
from udd_core.presets import model_presets  # noqa: E402
from udd_core.runs import read_history  # noqa: E402
from udd_core.residuals import smooth_maps  # noqa: E402
from udd_core.scoring import image_scores  # noqa: E402

# Image scores compared on the same maps: (kind, top-k percent, border px); the border is a band of
# 1/16 of the side, as the memory bank's default.
def score_choices(border: int) -> tuple:
    return (("max", 1.0, 0), ("topk", 1.0, 0), ("topk", 10.0, 0), ("max", 1.0, border), ("topk", 1.0, border),
            ("topk", 10.0, border))
from udd_core.settings import training_presets  # noqa: E402
from udd_core.training_data import split_indices  # noqa: E402


def load() -> str:
    return " ".join(f"{v:.1f}" for v in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA, help="magnetic-tile folder (MVTec layout)")
    ap.add_argument("--config", default="feature-ae", help="config file or model preset name (default feature-ae)")
    ap.add_argument("--size", type=int, default=256, help="image side (default 256)")
    ap.add_argument("--epochs", type=int, default=None, help="default: the feature-ae training preset's")
    ap.add_argument("--lr", type=float, default=None, help="default: the feature-ae training preset's")
    ap.add_argument("--batch-size", type=int, default=None, help="default: the feature-ae training preset's")
    ap.add_argument("--error", default="channel", choices=("channel", "plain"), help="the map's channel weighting")
    ap.add_argument("--sigmas", default="0,4,8", help="Gaussian smoothing of the maps to compare (px)")
    ap.add_argument("--powers", default="0,1,2,3",
                    help="latent-novelty exponents to compare (0: the map alone; the preset's default is 2)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="smoke run: 48 train and 30 test photos, 2 epochs")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    check_data(args.data)
    if args.threads:
        torch.set_num_threads(args.threads)
    t_all = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t_all:7.1f} s, load {load()}] {msg}", file=sys.stderr, flush=True)

    presets = model_presets()
    config = presets[args.config].config if args.config in presets else load_config(args.config)
    size = (1, args.size, args.size)
    tr = load_dataset(args.data, size, split="train")
    te = load_dataset(args.data, size, split="test")
    itr, ite = np.arange(len(tr)), np.arange(len(te))
    epochs = args.epochs
    if args.quick:
        itr = itr[:48]
        ite = first_of_each(te.labels)
        epochs = 2
    labels = [te.labels[i] for i in ite]
    masks = te.masks[ite]
    pick = stratified_half(labels, args.seed)
    images = tr.images[itr]
    log(f"loaded {len(images)} train and {len(ite)} test photos at {args.size}x{args.size}")

    # the "feature-ae" training preset (what `udd train --preset feature-ae` and the Train page use);
    # --epochs / --lr / --batch-size override it, the halving schedule keeping its three steps
    base = training_presets()["feature-ae"]
    epochs = epochs or base.epochs
    settings = base.replace(epochs=epochs, batch_size=args.batch_size or base.batch_size, lr=args.lr or base.lr,
                            lr_step=max(1, epochs // 3), seed=args.seed, device="cpu", n_probe=0)
    det = detector_class("feature-ae").build(size, {"error": args.error}, config, args.seed)
    log(f"features {det.model.input_shape}, float16 cache of the {len(images)} training photos: "
        f"{feature_cache_bytes(det.spec, size, len(images)) / 2**20:.0f} MiB")
    tr_idx, va_idx = split_indices(len(images), settings.val_split, settings.seed)
    with tempfile.TemporaryDirectory(prefix="udd_featae_") as run_dir:
        t0 = time.perf_counter()
        status = det.fit(images[tr_idx], images[va_idx], settings, run_dir)  # features + epochs, as `udd train`
        fit_s = time.perf_counter() - t0
        epochs_s = sum(float(r.get("seconds", 0.0)) for r in read_history(run_dir))
    log(f"fit {status} in {fit_s:.1f} s (epochs {epochs_s:.1f} s, features and the rest {fit_s - epochs_s:.1f} s)")

    t1 = time.perf_counter()
    feats = cache_features(det.feature_extractor(), te.images[ite])  # (N, Cf, h, w) float16
    with torch.inference_mode():
        outs = [det.outputs_of_features(feats[s:s + 32]) for s in range(0, len(feats), 32)]
        raw = torch.cat([o.maps for o in outs])  # (N, H, W)
        factor = torch.cat([o.score_factor for o in outs]) if det.latent_power else None  # (N,) or None
    score_s = time.perf_counter() - t1
    log(f"scored {len(ite)} test photos in {score_s:.1f} s")

    rows = []
    powers = [float(v) for v in args.powers.split(",")] if factor is not None else [0.0]
    border = args.size // 16  # the memory bank's default band (bench/RESULTS.md, "Memory bank")
    for sigma in [float(v) for v in args.sigmas.split(",")]:
        maps = smooth_maps(raw, sigma) if sigma > 0 else raw
        m_np = maps.numpy()
        for (kind, topk, b), power in itertools.product(score_choices(border), powers):
            sc = image_scores(maps, kind, topk, b).numpy()
            if power:  # the latent-novelty factor at the preset's power, raised to this one instead
                sc = sc * (factor.numpy() ** (power / det.latent_power))
            sel = compute_metrics(sc[pick], [v for v, k in zip(labels, pick) if k], m_np[pick], masks[pick])
            held = compute_metrics(sc[~pick], [v for v, k in zip(labels, ~pick) if k], m_np[~pick], masks[~pick])
            name = (kind + (f" {topk:g}%" if kind == "topk" else "") + (f", border {b} px" if b else "")
                    + (f" x latent novelty^{power:g}" if power else ""))
            rows.append((sigma, name, sel, held, sc, m_np))
    best = max(rows, key=lambda r: (r[2].image_auroc or 0) + (r[2].pixel_auroc or 0))
    print(f"\nfeature-ae {args.config}, error {args.error}, {epochs} epochs, lr {settings.lr}, batch {settings.batch_size}; "
          f"fit {fit_s:.1f} s (epochs {epochs_s:.1f} s), scoring {score_s:.1f} s, "
          f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB, load {load()}\n")
    print("| smoothing | score | selection: img AUROC | pix AUROC | AUPRO | held-out: img AUROC | pix AUROC | AUPRO |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for sigma, kind, sel, held, _, _ in rows:
        mark = " (chosen)" if (sigma, kind) == best[:2] else ""
        print(f"| {sigma:g}{mark} | {kind} | {fmt(sel.image_auroc)} | {fmt(sel.pixel_auroc)} | {fmt(sel.aupro)} | "
              f"{fmt(held.image_auroc)} | {fmt(held.pixel_auroc)} | {fmt(held.aupro)} |")
    sigma, kind, _, _, sc, m_np = best
    allm = compute_metrics(sc, labels, m_np, masks)
    print(f"\nchosen on the selection half: smoothing {sigma:g}, score {kind}; all {len(labels)} test photos:\n")
    print("| defect (n) | img AUROC | pix AUROC | AUPRO |\n| --- | --- | --- | --- |")
    for t in sorted(allm.per_type):
        p = allm.per_type[t]
        print(f"| {t} ({p['n']}) | {fmt(p['image_auroc'])} | {fmt(p['pixel_auroc'])} | {fmt(p['aupro'])} |")
    print(f"| **all** | **{fmt(allm.image_auroc)}** | **{fmt(allm.pixel_auroc)}** | **{fmt(allm.aupro)}** |")
    print("\npooled metrics with one defect type left out (all test photos):\n\n" + leave_one_type_out(sc, m_np, labels, masks))
    log("done")


if __name__ == "__main__":
    main()
