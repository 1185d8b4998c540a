"""Benchmark: Deep SVDD and latent kNN against the pixel autoencoder on one-class digits.

Run:   .venv/bin/python bench/bench_dsvdd.py            (the chosen settings, all 10 classes)
       .venv/bin/python bench/bench_dsvdd.py --search   (the grid on the selection classes 0-4)
       .venv/bin/python bench/bench_dsvdd.py --grid-all (the grid on all classes, after the choice: how
                                                         the other settings fare on the held-out classes)
       .venv/bin/python bench/bench_dsvdd.py --quick    (a smoke run: 2 classes, few epochs)

Protocol (Ruff et al.'s one-class MNIST, on scikit-learn's bundled 8x8 digits, which need no
download): the images (0..16) scaled to uint8 and upscaled bilinearly to 32x32 gray, each class
split in a seeded half for training and a half for testing. One class at a time is normal: every
detector fits on that class's training half and scores the test halves of all ten classes
(about 90 normal and 810 anomalous images); the figure is the image AUROC, averaged over classes.

Detectors, all on the same autoencoder config and pretraining settings:
- pixel AE, l2: `AutoencoderDetector`, mean of the l2 residual map;
- pixel AE, SSIM: the same trained AE, mean of the SSIM residual map;
- latent kNN: `LatentKnnDetector` (its own pretraining), distance of the code to the k nearest training codes;
- Deep SVDD: `DeepSVDDDetector` (its own, bias-free-encoder pretraining, then the one-class phase).

Hyperparameters are chosen with `--search` on classes 0-4 only; classes 5-9 are the held-out
part, untouched by the choice. Fit time and the peak resident memory during the fit (VmHWM, reset
before each fit through /proc/self/clear_refs) are per class, means over the classes.
Records nothing itself: copy the printed tables to RESULTS.md.
"""
from __future__ import annotations

import argparse
import itertools
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing

from udd_core.methods import detector_class  # noqa: E402
from udd_core.residuals import residual_map  # noqa: E402
from udd_core.scoring import image_scores  # noqa: E402
from udd_core.settings import TrainSettings  # noqa: E402

SIZE = 32
SELECTION, HELD_OUT = tuple(range(5)), tuple(range(5, 10))
# 32x32 gray -> 16 -> 8 -> latent 8 x 4 x 4 (128 numbers, 1/8 of the input).
CONFIG = {
    "block_ker": [3, 3], "drop": [0.0, 0.0],
    "block_size_in": [[1, 16, 16], [16, 32, 32]], "block_size_out": [[32, 32, 16], [16, 16, 1]],
    "latent_size": 8, "latent_ker": 3, "latent_opad": 1, "out_pad": [1, 1],
}
CHOSEN = {"epochs": 40, "knn": {"k": 1}, "dsvdd": {"svdd_epochs": 100, "svdd_lr": 1e-3, "weight_decay": 1e-6, "eps": 0.1}}
GRID = {  # --search
    "knn": [{"k": k} for k in (1, 5)],
    "dsvdd": [{"svdd_epochs": e, "svdd_lr": lr, "weight_decay": 1e-6, "eps": 0.1}
              for e, lr in itertools.product((30, 100), (1e-4, 1e-3))],
}


def digits(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train images, train labels, test images, test labels): uint8 (N, 32, 32, 1), a seeded half of each class."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0).unsqueeze(1)  # (N, 1, 8, 8) in [0, 1]
    x = torch.nn.functional.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    imgs = (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()  # (N, 32, 32, 1)
    y = d.target
    train = np.zeros(len(y), dtype=bool)
    rng = np.random.default_rng([seed, 0xD161])
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(y == c))
        train[idx[: len(idx) // 2]] = True
    return imgs[train], y[train], imgs[~train], y[~train]


def auroc(normal: np.ndarray, scores: np.ndarray) -> float:
    """Image AUROC with anomalies as positives (ties count half)."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(~normal, scores))


def reset_peak() -> float:
    """Reset the process's peak RSS (Linux); the current RSS in MiB."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status_mib("VmRSS")


def _status_mib(key: str) -> float:
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def fit(method: str, options: dict, images: np.ndarray, settings: TrainSettings, work: Path):
    """(fitted detector, seconds, peak RSS MiB, RSS before MiB)."""
    det = detector_class(method).build((1, SIZE, SIZE), options or None, CONFIG, seed=settings.seed)
    before = reset_peak()
    t = time.perf_counter()
    det.fit(images, None, settings, work / f"{method}-{time.perf_counter_ns()}")
    return det, time.perf_counter() - t, _status_mib("VmHWM"), before


def ae_scores(det, images: np.ndarray) -> dict[str, np.ndarray]:
    """Mean l2 and SSIM residual of uint8 images (N, H, W, 1) under the detector's autoencoder."""
    out = {"l2": [], "ssim": []}
    model = det.model.eval()
    with torch.inference_mode():
        for s in range(0, len(images), 128):
            x = torch.from_numpy(images[s:s + 128]).permute(0, 3, 1, 2).float() / 255.0
            y = model(x)
            for k in out:
                out[k].append(image_scores(residual_map(x, y, k), "mean"))
    return {k: torch.cat(v).numpy() for k, v in out.items()}


def run_class(c: int, data, epochs: int, knn: list[dict], svdd: list[dict], work: Path) -> list[dict]:
    """Rows {name, class, auroc, fit_s, peak_mib, base_mib} of every detector for normal class c."""
    xtr, ytr, xte, yte = data
    normal = yte == c
    train = xtr[ytr == c]
    s = TrainSettings(epochs=epochs, batch_size=16, val_split=0.0, device="cpu", amp_bf16=False, seed=0)
    rows = []
    det, sec, peak, base = fit("autoencoder", {}, train, s, work)
    for k, v in ae_scores(det, xte).items():
        rows.append({"name": f"pixel AE, {k}", "class": c, "auroc": auroc(normal, v), "fit_s": sec,
                     "peak_mib": peak, "base_mib": base})
    for opts in knn:
        det, sec, peak, base = fit("latent-knn", opts, train, s, work)
        rows.append({"name": f"latent kNN {opts}", "class": c, "auroc": auroc(normal, det.score_images(xte)),
                     "fit_s": sec, "peak_mib": peak, "base_mib": base})
    for opts in svdd:
        det, sec, peak, base = fit("dsvdd", opts, train, s, work)
        rows.append({"name": f"Deep SVDD {opts}", "class": c, "auroc": auroc(normal, det.score_images(xte)),
                     "fit_s": sec, "peak_mib": peak, "base_mib": base})
        if opts is svdd[0]:  # the pretrained encoder's distance to c before the one-class phase
            pre = detector_class("dsvdd").build((1, SIZE, SIZE), {**opts, "svdd_epochs": 0}, CONFIG, seed=0)
            pre.fit(train, None, s, work / f"pre-{time.perf_counter_ns()}")
            rows.append({"name": "Deep SVDD, 0 epochs (pretrained encoder)", "class": c,
                         "auroc": auroc(normal, pre.score_images(xte)), "fit_s": float("nan"),
                         "peak_mib": float("nan"), "base_mib": float("nan")})
    return rows


def table(rows: list[dict], classes: tuple[int, ...]) -> str:
    names = list(dict.fromkeys(r["name"] for r in rows))
    sel = [c for c in classes if c in SELECTION]
    held = [c for c in classes if c in HELD_OUT]
    head = ("| detector | " + " | ".join(str(c) for c in classes) + " | mean 0-4 (selection) | mean 5-9 (held out) "
            "| mean all | fit s / class | peak RSS MiB (+ over the fit's start) |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for n in names:
        by = {r["class"]: r for r in rows if r["name"] == n}

        def mean(cs):
            return f"{np.mean([by[c]['auroc'] for c in cs]):.3f}" if cs else "-"
        fs = np.nanmean([by[c]["fit_s"] for c in classes]) if not all(np.isnan(by[c]["fit_s"]) for c in classes) else np.nan
        pk = max(by[c]["peak_mib"] for c in classes)
        grow = max(by[c]["peak_mib"] - by[c]["base_mib"] for c in classes)
        lines.append(f"| {n} | " + " | ".join(f"{by[c]['auroc']:.3f}" for c in classes) +
                     f" | {mean(sel)} | {mean(held)} | {mean(list(classes))} | {fs:.1f} | {pk:.0f} (+{grow:.0f}) |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--search", action="store_true", help="the grid on the selection classes 0-4")
    ap.add_argument("--grid-all", action="store_true",
                    help="the grid on all 10 classes: shows how the other choices fare on the held-out classes")
    ap.add_argument("--quick", action="store_true", help="2 classes, 3 epochs: a smoke run")
    ap.add_argument("--epochs", type=int, default=CHOSEN["epochs"], help="autoencoder pretraining epochs")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: steady timings on a shared machine)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    load = os.getloadavg()
    data = digits()
    classes = SELECTION if a.search else (0, 5) if a.quick else tuple(range(10))
    grid = a.search or a.grid_all
    knn = GRID["knn"] if grid else [CHOSEN["knn"]]
    svdd = GRID["dsvdd"] if grid else [CHOSEN["dsvdd"]]
    epochs = 3 if a.quick else a.epochs
    if a.quick:
        svdd = [{**svdd[0], "svdd_epochs": 3}]
    rows = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        # One throw-away fit first, so the first measured fit does not pay torch's one-time set-up.
        fit("autoencoder", {}, data[0][:16], TrainSettings(epochs=1, device="cpu", amp_bf16=False), Path(tmp))
        for c in classes:
            rows += run_class(c, data, epochs, knn, svdd, Path(tmp))
            print(f"class {c} done ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    print(f"digits 8x8 -> {SIZE}x{SIZE}: {len(data[0])} train / {len(data[2])} test images; AE pretraining "
          f"{epochs} epochs, batch 16, Adam 1e-3; {a.threads} torch thread(s); load average at start "
          f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}; wall {time.perf_counter() - t0:.0f} s")
    print(table(rows, classes))


if __name__ == "__main__":
    main()
