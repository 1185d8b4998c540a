"""Benchmark: the "feature" residual against l2 and SSIM for the pixel-AE magnetic-tile recipe.

Run:   .venv/bin/python bench/bench_feature_residual.py [--epochs 6]    (--quick: a smoke run)

The recipe of bench_quality.py (preset `magnetic-tile`: gray 96x96, SSIM-trained denoising AE) is
trained once on all 760 train/good photos; its reconstructions of all 584 test photos are then
scored with each residual (l2, ssim, feature) x blur sigma (0, 2) x image score (max, top-1%).
The best scoring per residual is chosen on the selection half (`stratified_half`) and reported on
the held-out half too. Records nothing itself: copy the printed tables to RESULTS.md.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_quality import DATA, RECIPE, check_data, fmt, load_photos, stratified_half, train_udd  # noqa: E402

from udd_core.backbone import FeatureExtractor  # noqa: E402
from udd_core.data import to_tensor  # noqa: E402
from udd_core.metrics import compute_metrics  # noqa: E402
from udd_core.presets import model_presets  # noqa: E402
from udd_core.residuals import residual_map, smooth_maps  # noqa: E402
from udd_core.scoring import image_scores, score_images  # noqa: E402
from udd_core.settings import training_presets  # noqa: E402

RESIDUALS = ("l2", "ssim", "feature")
SIGMAS = (0.0, 2.0)
SCORES = (("max", 1.0), ("topk", 1.0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    check_data(args.data)
    t0 = time.perf_counter()
    size = 32 if args.quick else model_presets()[RECIPE].input_shape[1]
    settings = training_presets()[RECIPE].replace(epochs=1 if args.quick else args.epochs, seed=args.seed, device="cpu")
    train, test, labels, masks = load_photos(args.data, (1, size, size), args.quick)
    pick = stratified_half(labels, args.seed)
    with tempfile.TemporaryDirectory(prefix="udd_featres_") as tmp:
        t = time.perf_counter()
        model = train_udd(train, size, settings, Path(tmp), "recipe")
        train_s = time.perf_counter() - t
    recon = torch.from_numpy(score_images(model, test).recon)  # (N, 1, H, W)
    x = to_tensor(test)
    features = FeatureExtractor()
    results = {}  # (residual, sigma, score) -> (scores, maps)
    times = {}
    with torch.inference_mode():
        for kind in RESIDUALS:
            t = time.perf_counter()
            raw = torch.cat([residual_map(x[s:s + 64], recon[s:s + 64], kind, features=features)
                             for s in range(0, len(x), 64)])  # (N, H, W)
            times[kind] = time.perf_counter() - t
            for sigma in SIGMAS:
                m = smooth_maps(raw, sigma)
                for score, k in SCORES:
                    results[(kind, sigma, score)] = (image_scores(m, score, k).numpy(), m.numpy())
    print(f"\n## feature residual vs l2 and SSIM: magnetic-tile recipe, {size}x{size}, {settings.epochs} epochs "
          f"(trained in {train_s:.0f} s), seed {args.seed}\n")
    print("Map time for all test photos (s): " + ", ".join(f"{k} {v:.1f}" for k, v in times.items()))
    lab_sel = [v for v, k in zip(labels, pick) if k]
    lab_out = [v for v, k in zip(labels, ~pick) if k]
    print("\n| residual | blur | score | selection: img AUROC | pix AUROC | AUPRO | held-out: img AUROC | pix AUROC | AUPRO |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    best = {}
    for (kind, sigma, score), (sc, mp) in results.items():
        a = compute_metrics(sc[pick], lab_sel, mp[pick], masks[pick])
        b = compute_metrics(sc[~pick], lab_out, mp[~pick], masks[~pick])
        print(f"| {kind} | {sigma:g} | {score} | {fmt(a.image_auroc)} | {fmt(a.pixel_auroc)} | {fmt(a.aupro)} | "
              f"{fmt(b.image_auroc)} | {fmt(b.pixel_auroc)} | {fmt(b.aupro)} |")
        if kind not in best or a.image_auroc > best[kind][0]:
            best[kind] = (a.image_auroc, sigma, score)
    print("\nBest per residual on the selection half (chosen by image AUROC), all photos per type:\n")
    print("| residual (choice) | " + " | ".join(sorted(set(labels) - {"good"})) + " | all img | all pix | all AUPRO |")
    print("| --- |" + " --- |" * (len(set(labels)) - 1 + 3))
    for kind, (_, sigma, score) in best.items():
        sc, mp = results[(kind, sigma, score)]
        m = compute_metrics(sc, labels, mp, masks)
        cells = [fmt(m.per_type[t]["image_auroc"]) for t in sorted(m.per_type)]
        print(f"| {kind} (blur {sigma:g}, {score}) | " + " | ".join(cells) +
              f" | **{fmt(m.image_auroc)}** | {fmt(m.pixel_auroc)} | {fmt(m.aupro)} |")
    print(f"\nwall time {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
