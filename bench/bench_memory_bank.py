"""Benchmark: the memory-bank detector on the magnetic-tile photos (quality, time, memory).

Run:   .venv/bin/python bench/bench_memory_bank.py             (the detector's defaults; one whole process:
                                                               load, fit, score all 584 test photos, metrics)
       .venv/bin/python bench/bench_memory_bank.py --search    (the choice of layers, coreset ratio, k and
                                                               smoothing, made on the selection half only)
       .venv/bin/python bench/bench_memory_bank.py --quick     (a smoke run on a few photos at 64x64)
       .venv/bin/python bench/bench_memory_bank.py --layer-study   (the detector with each of LAYER_STUDY's
                                                               options: how the context layers were chosen)

All 760 train/good photos are the bank's source, all 584 test photos are scored, at 256x256 gray.
Metrics: `udd_core.metrics.compute_metrics` (image AUROC, pixel AUROC, AUPRO per defect type).
The selection half is `stratified_half(labels, seed)` of bench_quality.py: every choice in --search
is made on it, and every table is also given on the held-out half, untouched by the choice.
Records nothing itself: copy the printed tables to RESULTS.md.
"""
from __future__ import annotations

import time

T_START = time.perf_counter()  # before the heavy imports: the timing covers the whole process

import argparse  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_quality import DATA, check_data, fmt, leave_one_type_out, load_photos, stratified_half  # noqa: E402

from udd_core import backbone as bb  # noqa: E402
from udd_core.coreset import greedy_coreset, knn_chunk_rows  # noqa: E402
from udd_core.data import to_tensor  # noqa: E402
from udd_core.methods import detector_class, scoring_defaults  # noqa: E402
from udd_core.methods.bank_options import DEFAULTS  # noqa: E402
from udd_core.metrics import compute_metrics, pixel_auroc  # noqa: E402
from udd_core.residuals import smooth_maps  # noqa: E402
from udd_core.scoring import image_scores  # noqa: E402

# --search grid. Layers are scored from one pass of the union extractor (channel slices of it equal
# the separate extractors: pooling and upsampling are per layer).
UNION = ("s8", "stage4", "s16")
LAYER_SETS = {"s8+s16": ("s8", "s16"), "s8+stage4": ("s8", "stage4"), "s8+stage4+s16": UNION}
# (layers, sampler, coreset ratio): the greedy coreset against a random subset of the same size
GRID = [("s8+s16", "greedy", 0.01), ("s8+s16", "random", 0.01), ("s8+stage4", "greedy", 0.01),
        ("s8+stage4", "random", 0.01), ("s8+s16", "greedy", 0.03), ("s8+stage4+s16", "greedy", 0.01)]
KS = (1, 3)
FIRST_DEFAULTS = {"coreset": 0.01, "smooth_sigma": 4.0}  # the first session's, which --border-study studied
# --layer-study: the product detector with these options, judged on the selection half. The first is the
# previous default (PatchCore's stride-8 + stride-16 pair); the last is the current default.
LAYER_STUDY = [
    {"layers": ["s8", "s16"], "coreset": 0.01, "smooth_sigma": 4.0},
    {"layers": ["s8", "s16"], "coreset": 0.05, "smooth_sigma": 8.0},
    {"layers": ["stage6", "s32"], "coreset": 1.0, "smooth_sigma": 8.0},
    {"layers": ["s16", "stage6", "s32"], "coreset": 0.05, "smooth_sigma": 8.0},
    {"layers": ["s16", "stage6", "s32"], "coreset": 0.1, "smooth_sigma": 8.0},
]
SIGMAS = (0.0, 2.0, 4.0, 8.0)


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - T_START:7.1f} s] {msg}", file=sys.stderr, flush=True)


def cpu_s() -> float:
    """User + system CPU seconds of this process so far: on a shared machine, the load-independent cost."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def table(scores: np.ndarray, maps: np.ndarray, labels: list, masks: np.ndarray, keep: np.ndarray) -> str:
    lab = [v for v, k in zip(labels, keep) if k]
    m = compute_metrics(scores[keep], lab, maps[keep], masks[keep])
    rows = ["| defect (n) | img AUROC | pix AUROC | AUPRO |", "| --- | --- | --- | --- |"]
    for t in sorted(m.per_type):
        p = m.per_type[t]
        rows.append(f"| {t} ({p['n']}) | {fmt(p['image_auroc'])} | {fmt(p['pixel_auroc'])} | {fmt(p['aupro'])} |")
    rows.append(f"| **all** ({sum(v != 'good' for v in lab)} + {sum(v == 'good' for v in lab)} good) | "
                f"**{fmt(m.image_auroc)}** | **{fmt(m.pixel_auroc)}** | **{fmt(m.aupro)}** |")
    return "\n".join(rows)


def run_default(args, train, test, labels, masks, pick) -> None:
    """The detector as users get it: build, fit, score every test photo; whole-process time and peak memory."""
    opts = {k: v for k, v in (("coreset", args.coreset), ("k", args.k), ("smooth_sigma", args.sigma),
                              ("layers", args.layers)) if v is not None}
    det = detector_class("memory-bank").build((1, args.size, args.size), opts, None, args.seed)
    t_fit = time.perf_counter()
    with torch.no_grad():
        status = det.fit(train, None, None, args.work, stop_event=threading.Event())
    fit_s = time.perf_counter() - t_fit
    log(f"fit {status} in {fit_s:.1f} s: {det.stats}")
    t_score = time.perf_counter()
    n = len(test)
    maps = np.empty((n, args.size, args.size), np.float32)
    scores = np.empty(n, np.float32)
    post = scoring_defaults(det)  # the image score every consumer applies (udd score, Inspect)
    sigma = post["smooth_sigma"]
    for s in range(0, n, args.batch):
        m = smooth_maps(det.anomaly_maps(to_tensor(test[s:s + args.batch])).maps, sigma)  # (b, H, W)
        maps[s:s + len(m)] = m.numpy()
        scores[s:s + len(m)] = image_scores(m, post["score"], post["topk_percent"], post["border"]).numpy()
    score_s = time.perf_counter() - t_score
    total_s = time.perf_counter() - T_START
    log(f"scored {n} photos in {score_s:.1f} s")
    print(f"\n## memory bank on magnetic_tile: {args.size}x{args.size}, options {det.describe()}")
    print(f"\nfit {fit_s:.1f} s (embedding {det.stats['embed_s']:.1f} s, coreset {det.stats['coreset_s']:.1f} s), "
          f"scoring {n} photos {score_s:.1f} s, whole process (imports and photo loading included) "
          f"{total_s:.1f} s, CPU {cpu_s():.0f} s (user + system); peak RSS {peak_rss_mib():.0f} MiB; kNN chunk block {det.knn_peak_bytes() / 2**20:.0f} MiB; "
          f"{torch.get_num_threads()} threads; load average at start {args.load_start}, at end {os.getloadavg()}")
    print("\n### All test photos\n\n" + table(scores, maps, labels, masks, np.ones(n, bool)))
    print("\n### Selection half\n\n" + table(scores, maps, labels, masks, pick))
    print("\n### Held-out half (not used for any choice)\n\n" + table(scores, maps, labels, masks, ~pick))
    print("\n### Where the pooled pixel AUROC is lost (all test photos)\n\n" + pixel_breakdown(maps, labels, masks))
    print("\n### Pooled metrics with one defect type left out (all test photos)\n\n"
          + leave_one_type_out(scores, maps, labels, masks))


def pixel_breakdown(maps: np.ndarray, labels: list, masks: np.ndarray, n: int = 200_000) -> str:
    """Pixel AUROC of each type's defect pixels against the normal pixels of each type's photos.

    The pooled pixel AUROC mixes every photo's normal pixels; this shows which of them outscore which
    defects (at most `n` seeded samples per group: an AUROC to about +-0.003).
    """
    from sklearn.metrics import roc_auc_score

    lab, rng = np.asarray(labels), np.random.default_rng(0)
    types = sorted(set(labels) - {"good"})

    def sample(a: np.ndarray) -> np.ndarray:
        return a if len(a) <= n else rng.choice(a, n, replace=False)

    pos = {t: sample(maps[lab == t][masks[lab == t] > 0]) for t in types}
    neg = {t: sample(maps[lab == t][masks[lab == t] == 0]) for t in ["good", *types]}
    total = sum(int((masks[lab == t] > 0).sum()) for t in types)
    rows = ["| defect pixels of (share) | " + " | ".join(f"vs normal pixels of {t}" for t in neg) + " |",
            "| --- |" + " --- |" * len(neg)]
    for t in types:
        share = (masks[lab == t] > 0).sum() / total
        cells = [fmt(roc_auc_score(np.r_[np.ones(len(pos[t])), np.zeros(len(v))], np.r_[pos[t], v])) for v in neg.values()]
        rows.append(f"| {t} ({share:.1%}) | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def run_layer_study(args, train, test, labels, masks, pick) -> None:
    """Each LAYER_STUDY option set through the detector itself: fit on all train photos, score all test photos."""
    rows = []
    for opts in LAYER_STUDY:
        det = detector_class("memory-bank").build((1, args.size, args.size), opts, None, args.seed)
        t = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="udd_bank_") as tmp:
            det.fit(train, None, None, tmp, stop_event=threading.Event())
        fit_s = time.perf_counter() - t
        t = time.perf_counter()
        maps = torch.cat([smooth_maps(det.anomaly_maps(to_tensor(test[s:s + args.batch])).maps, opts["smooth_sigma"])
                          for s in range(0, len(test), args.batch)])  # (N, H, W)
        score_s = time.perf_counter() - t
        sc, mp = image_scores(maps, "max").numpy(), maps.numpy()
        _, h, w = det.feature_shape()
        cells = []
        for keep in (pick, ~pick):
            m = compute_metrics(sc[keep], [v for v, k in zip(labels, keep) if k], mp[keep], masks[keep])
            cells.append(f"{fmt(m.image_auroc)} / {fmt(m.pixel_auroc)} / {fmt(m.aupro)}")
        rows.append(f"| {'+'.join(opts['layers'])} | {h}x{w} | {opts['coreset']:g} ({len(det.bank)}) | "
                    f"{opts['smooth_sigma']:g} | {cells[0]} | {cells[1]} | {fit_s:.0f} + {score_s:.0f} |")
        log(rows[-1])
    print(f"\n## memory-bank layer study on magnetic_tile ({args.size}x{args.size}), k 1, image score = max\n")
    print("| layers | grid | coreset (bank) | sigma | selection img / pix AUROC / AUPRO | "
          "held-out img / pix AUROC / AUPRO | fit + scoring s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    print("\n".join(rows))


def union_features(images: np.ndarray, size: int, batch: int) -> torch.Tensor:
    fe = bb.FeatureExtractor(UNION, pool=3)
    d, h, w = bb.feature_shape((1, size, size), UNION)
    out = torch.empty(len(images), h * w, d)
    with torch.inference_mode():
        for s in range(0, len(images), batch):
            f = fe(to_tensor(images[s:s + batch]))  # (b, D, h, w)
            out[s:s + len(f)] = f.permute(0, 2, 3, 1).reshape(len(f), h * w, d)
    return out  # (N, h*w, D)


def channel_slice(name: str) -> list[int]:
    cols, at = [], 0
    for layer in UNION:
        c = bb.layer_info(layer)[0]
        if layer in LAYER_SETS[name]:
            cols += list(range(at, at + c))
        at += c
    return cols


def knn_k(q: torch.Tensor, bank: torch.Tensor, kmax: int) -> torch.Tensor:
    """(Q, kmax) sorted distances to the kmax nearest bank rows, chunked like the detector."""
    bsq = (bank * bank).sum(1)
    rows = knn_chunk_rows(len(bank))
    out = torch.empty(len(q), kmax)
    for s in range(0, len(q), rows):
        c = q[s:s + rows]
        d2 = torch.addmm(bsq.unsqueeze(0), c, bank.t(), alpha=-2.0) + (c * c).sum(1, keepdim=True)
        out[s:s + len(c)] = torch.topk(d2, kmax, dim=1, largest=False).values.clamp_(min=0).sqrt_()
    return out


def run_search(args, train, test, labels, masks, pick) -> None:
    """Grid over layers x coreset ratio x k x sigma, judged on the selection half; the winner on both halves."""
    size = args.size
    cache = args.cache / f"union_{size}.safetensors" if args.cache else None
    if cache is not None and cache.is_file():
        from safetensors.torch import load_file

        ftr, fte = (load_file(str(cache))[k] for k in ("train", "test"))
    else:
        ftr = union_features(train, size, args.batch)
        fte = union_features(test, size, args.batch)
        if cache is not None:
            from safetensors.torch import save_file

            cache.parent.mkdir(parents=True, exist_ok=True)
            save_file({"train": ftr, "test": fte}, str(cache))
    log(f"features: train {tuple(ftr.shape)}, test {tuple(fte.shape)}")
    sel = np.flatnonzero(pick)
    _, h, w = bb.feature_shape((1, size, size), UNION)
    lab_sel = [labels[i] for i in sel]
    rows, best = [], None
    for name, sampler, ratio in GRID:
        cols = channel_slice(name)
        x = ftr[:, :, cols].reshape(-1, len(cols))
        t = time.perf_counter()
        if sampler == "greedy":
            idx = greedy_coreset(x, ratio, proj_dim=DEFAULTS["proj_dim"], seed=args.seed).indices
        else:
            g = torch.Generator().manual_seed(args.seed)
            idx = torch.randperm(len(x), generator=g)[: math.ceil(ratio * len(x))]
        t_cs = time.perf_counter() - t
        bank = x[idx].contiguous()
        t = time.perf_counter()
        d = knn_k(fte[sel][:, :, cols].reshape(-1, len(cols)), bank, max(KS))  # (Q, kmax)
        t_knn = time.perf_counter() - t
        for k in KS:
            raw = d[:, :k].mean(1).reshape(len(sel), 1, h, w)
            up = torch.nn.functional.interpolate(raw, size=(size, size), mode="bilinear", align_corners=False)[:, 0]
            for sigma in SIGMAS:
                m = smooth_maps(up, sigma)
                sc = image_scores(m, "max").numpy()
                img = compute_metrics(sc, lab_sel).image_auroc
                pix = pixel_auroc(m.numpy(), masks[sel])  # AUPRO only for the winner: it is the slow one
                key = img + pix  # both targets count
                rows.append((key, f"| {name} | {sampler} {ratio} | {len(bank)} | {k} | {sigma:g} | {fmt(img)} | "
                                  f"{fmt(pix)} | {t_cs:.1f} | {t_knn:.1f} |"))
                if best is None or key > best[0]:
                    best = (key, name, f"{sampler} {ratio}", k, sigma, bank)
        log(f"{name} {sampler} {ratio}: bank {len(bank)}, coreset {t_cs:.1f} s, kNN of the selection half {t_knn:.1f} s")
    print(f"\n## memory-bank search on magnetic_tile ({size}x{size}), selection half only, best first "
          f"(ranked by image + pixel AUROC)\n")
    print("| layers | coreset | bank | k | sigma | img AUROC | pix AUROC | coreset s | kNN s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    print("\n".join(r for _, r in sorted(rows, key=lambda r: -r[0])))
    _, name, ratio, k, sigma, bank = best
    cols = channel_slice(name)
    d = knn_k(fte[:, :, cols].reshape(-1, len(cols)), bank, k).mean(1).reshape(len(test), 1, h, w)
    m = smooth_maps(torch.nn.functional.interpolate(d, size=(size, size), mode="bilinear", align_corners=False)[:, 0], sigma)
    sc, mp = image_scores(m, "max").numpy(), m.numpy()
    print(f"\n### Selected: layers {name}, coreset {ratio}, k {k}, sigma {sigma:g}\n")
    print("Selection half:\n\n" + table(sc, mp, labels, masks, pick))
    print("\nHeld-out half (not used for the choice):\n\n" + table(sc, mp, labels, masks, ~pick))
    print(f"\nwall time {time.perf_counter() - T_START:.0f} s, peak RSS {peak_rss_mib():.0f} MiB")


def run_border_study(args, labels, masks, pick) -> None:
    """Image score = max of the smoothed map with a border of 0..3 patches (8 px each) left out.

    Uses the --cache features of a --search run and the first session's default bank (s8+s16, 1% greedy coreset).
    """
    from safetensors.torch import load_file

    size = args.size
    data = load_file(str(args.cache / f"union_{size}.safetensors"))
    cols = channel_slice("s8+s16")
    x = data["train"][:, :, cols].reshape(-1, len(cols))
    bank = x[greedy_coreset(x, FIRST_DEFAULTS["coreset"], proj_dim=DEFAULTS["proj_dim"], seed=args.seed).indices]
    fte = data["test"]
    _, h, w = bb.feature_shape((1, size, size), UNION)
    d = knn_k(fte[:, :, cols].reshape(-1, len(cols)), bank, 1)[:, 0].reshape(len(fte), 1, h, w)
    up = torch.nn.functional.interpolate(d, size=(size, size), mode="bilinear", align_corners=False)[:, 0]
    m = smooth_maps(up, FIRST_DEFAULTS["smooth_sigma"])
    print(f"\n## border study ({size}x{size}, bank {len(bank)}, sigma {FIRST_DEFAULTS['smooth_sigma']})\n")
    print("| border left out of the image score | selection img AUROC | held-out img AUROC | all img AUROC |")
    print("| --- | --- | --- | --- |")
    for border in (0, 1, 2, 3):
        px = border * size // h
        inner = m[:, px:size - px, px:size - px] if px else m
        sc = inner.flatten(1).amax(1).numpy()
        r = [compute_metrics(sc[k], [v for v, t in zip(labels, k) if t]).image_auroc
             for k in (pick, ~pick, np.ones(len(labels), bool))]
        print(f"| {border} patches ({px} px) | {fmt(r[0])} | {fmt(r[1])} | {fmt(r[2])} |")
    lab = np.asarray(labels)
    print("\nper type, all photos:", {t: [fmt(compute_metrics(
        m[(lab == t) | (lab == "good")][:, p:size - p or None, p:size - p or None].flatten(1).amax(1).numpy(),
        list(lab[(lab == t) | (lab == "good")])).image_auroc) for p in (0, 16)] for t in sorted(set(labels) - {"good"})})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--search", action="store_true", help="choose layers/coreset/k/sigma on the selection half")
    ap.add_argument("--quick", action="store_true", help="smoke run: 64x64, a few photos")
    ap.add_argument("--coreset", type=float, default=None)
    ap.add_argument("--k", type=int, default=None)
    ap.add_argument("--sigma", type=float, default=None)
    ap.add_argument("--layers", default=None, help="comma-separated, e.g. s8,s16")
    ap.add_argument("--border-study", action="store_true", help="with --cache: image score without the border")
    ap.add_argument("--layer-study", action="store_true", help="the detector with each of LAYER_STUDY's options")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--cache", type=Path, default=None, help="--search: keep/reuse the backbone features here")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=None, help="run folder (default: a temporary one)")
    args = ap.parse_args()
    check_data(args.data)
    args.load_start = os.getloadavg()
    if args.quick:
        args.size = 64
    if args.layers:
        args.layers = args.layers.split(",")
    shape = (1, args.size, args.size)
    train, test, labels, masks = load_photos(args.data, shape, args.quick, quick_train=40)
    pick = stratified_half(labels, args.seed)
    log(f"loaded {len(train)} train and {len(test)} test photos at {args.size}x{args.size}")
    if args.search:
        run_search(args, train, test, labels, masks, pick)
        return
    if args.border_study:
        run_border_study(args, labels, masks, pick)
        return
    if args.layer_study:
        run_layer_study(args, train, test, labels, masks, pick)
        return
    with tempfile.TemporaryDirectory(prefix="udd_bank_") as tmp:
        args.work = args.work or Path(tmp)
        run_default(args, train, test, labels, masks, pick)


if __name__ == "__main__":
    main()
