"""Benchmark: detection quality on the magnetic-tile photos, udd's recipe against the reference package.

Run:   .venv/bin/python bench/bench_quality.py --search --epochs 6   (RESULTS.md's table; ~25 min on 2 busy cores)
       .venv/bin/python bench/bench_quality.py            (both models at the preset's 18 epochs; the reference
                                                           alone then takes ~45 min here)
       .venv/bin/python bench/bench_quality.py --quick    (a 1-minute smoke run: tiny, meaningless numbers)

Both models train on train/good and are scored on every test photo at the same size, with the same
metrics (`udd_core.metrics.compute_metrics`) against the same masks:

(a) reference: `defect_detection` 0.4.4 used its own way. Its example config, RGB (it reads every
    image as 3-channel), `generate_dataset` (jittered copies written as JPEG files), `deepAE_train`
    with its default Adam(1e-3, betas 0.5/0.999) and MSE, painted noise patches, and the error map
    `emap(x, y, "mean")`, averaged over the image as its score.
(b) udd: the `magnetic-tile` model and training presets, gray, scored with RECIPE_SCORING.

`--search` trains the candidate losses as well and scores each with a small grid of residual,
smoothing and image-score settings; the choice is made on a seeded half of the test set (the
"selection" half) and reported on the other half too, so the selection bias can be seen.
Records nothing itself: copy the printed tables to RESULTS.md.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing

from udd_core.data import load_dataset, to_tensor  # noqa: E402
from udd_core.metrics import compute_metrics  # noqa: E402
from udd_core.model import load_model  # noqa: E402
from udd_core.presets import model_presets  # noqa: E402
from udd_core.residuals import residual_map  # noqa: E402
from udd_core.scoring import image_scores, score_images  # noqa: E402
from udd_core.jobs import TrainJob  # noqa: E402
from udd_core.settings import training_presets  # noqa: E402

DATA = Path("/work/shared/data/magnetic_tile")
RECIPE = "magnetic-tile"  # model and training preset name
RECIPE_SCORING = {"residual": "ssim", "smooth_sigma": 0.0, "score": "topk", "topk_percent": 1.0}
REF_CONFIG = {  # the reference package's example config (its README), unchanged: it mirrors at 96 and 32
    "block_ker": [5, 5], "drop": [0.1, 0.1],
    "block_size_in": [[3, 25, 20], [20, 15, 10]], "block_size_out": [[5, 10, 15], [15, 20, 3]],
    "latent_size": 3, "latent_ker": 3, "latent_opad": [1, 1], "out_pad": [[1, 1], [1, 1]],
}
CANDIDATE_LOSSES = ("mse", "mse+ssim", "ssim")  # --search: the recipe with each of these losses
SCORING_GRID = [  # --search: every trained candidate is scored each of these ways
    {"residual": r, "smooth_sigma": s, "score": k, "topk_percent": 1.0}
    for r in ("l2", "ssim") for s in (0.0, 2.0) for k in ("mean", "max", "topk")
]


@dataclass
class Scored:
    """One model scored one way on the whole test set."""

    name: str
    scores: np.ndarray  # (N,)
    maps: np.ndarray  # (N, H, W)
    train_s: float


# --- data --------------------------------------------------------------------------------------

def check_data(path: Path) -> None:
    """Exit with a clear message when the data set is not where the benchmark expects it."""
    if not (path / "train" / "good").is_dir() or not (path / "test").is_dir():
        sys.exit(f"bench_quality: magnetic-tile data not found at {path} (need train/good and test/ "
                 "in MVTec layout, see its README.md); pass --data PATH")


def stratified_half(labels: list[str], seed: int) -> np.ndarray:
    """Boolean (N,) mask picking a seeded half of every label: the selection half."""
    lab = np.asarray(labels)
    sel = np.zeros(len(lab), dtype=bool)
    rng = np.random.default_rng([seed, 0x5E1])
    for t in sorted(set(labels)):
        idx = rng.permutation(np.flatnonzero(lab == t))
        sel[idx[: len(idx) // 2]] = True
    return sel


def load_photos(data: Path, shape: tuple[int, int, int], quick: bool, quick_train: int = 48):
    """(train images, test images, test labels, test masks) of an MVTec folder at `shape` (C, H, W);
    with `quick`, the first `quick_train` training images and `first_of_each` test label."""
    tr = load_dataset(data, shape, split="train")
    te = load_dataset(data, shape, split="test")
    train, test, labels, masks = tr.images, te.images, list(te.labels), te.masks
    if quick:
        keep = first_of_each(labels)
        train, test, labels, masks = train[:quick_train], test[keep], [labels[i] for i in keep], masks[keep]
    return train, test, labels, masks


def first_of_each(labels: list[str], k: int = 6) -> np.ndarray:
    """Sorted indices of the first `k` images of every label: a --quick run's test set."""
    lab = np.asarray(labels)
    return np.sort(np.concatenate([np.flatnonzero(lab == t)[:k] for t in sorted(set(labels))]))


def subsample(n: int, k: int, seed: int) -> np.ndarray:
    """Sorted seeded choice of min(k, n) indices out of n."""
    return np.sort(np.random.default_rng([seed, 0x5AB]).permutation(n)[: min(k, n)])


# --- (a) the reference package, its own way -------------------------------------------------------

def reference_scales(size: int) -> dict:
    """Jitter and patch sizes of the reference's defaults, scaled from its 512 px tiles to `size`."""
    return {"offset": max(1, round(size / 24)), "dw": max(2, round(size / 32)),
            "patch_size": (max(1, round(size / 32)), max(3, round(size * 0.2)))}


def train_reference(train_paths: list[Path], size: int, epochs: int, batch: int, npatch: int, seed: int,
                    work: Path) -> torch.nn.Module:
    """generate_dataset + deepAE_train on the train photos; returns the trained AE_cls (eval mode)."""
    import cv2
    from defect_detection import deepAE_load, deepAE_train, generate_dataset

    sc = reference_scales(size)
    margin = sc["offset"] + sc["dw"]
    # generate_dataset takes its crop box from the first photo's size, so it needs same-size
    # sources: the variable-size photos are resized (losslessly stored) to size + 2 * margin.
    src = work / "ref_src"
    src.mkdir()
    names = []
    for i, p in enumerate(train_paths):
        im = cv2.imread(str(p), cv2.IMREAD_COLOR)
        cv2.imwrite(str(src / f"{i:04d}.png"), cv2.resize(im, (size + 2 * margin, size + 2 * margin)))
        names.append(f"{i:04d}.png")
    (work / "ref_list.txt").write_text("\n".join(names) + "\n")
    (work / "ref_config.txt").write_text(repr(REF_CONFIG))
    with contextlib.chdir(work), contextlib.redirect_stdout(sys.stderr):
        generate_dataset("ref_data", str(work / "ref_list.txt"), f"{src}/", f"{work}/", Naug=1, offset=sc["offset"],
                         dw=sc["dw"], Nseg=1, size=size, Ncore=2, seed=seed + 1)
        made = len(list((work / "ref_data").glob("*.jpg")))
        if made != len(names):  # its worker processes swallow their errors: count the files instead
            raise RuntimeError(f"generate_dataset wrote {made} of {len(names)} images")
        torch.manual_seed(seed)  # deepAE_train seeds numpy only; this fixes the weight init
        deepAE_train("ref_model", str(work / "ref_config.txt"), "ref_data", loss_fn=torch.nn.MSELoss(),
                     data_dir=f"{work}/", model_dir=f"{work}/", dev="cpu", epochs=epochs, batch_size=batch,
                     npatch=npatch, patch_size=sc["patch_size"], seed=seed + 1)
        model = deepAE_load(f"{work}/ref_model/save/", dev="cpu")
    return model.eval()


def score_reference(model: torch.nn.Module, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The reference's own scoring: emap(x, y, "mean") per photo, its mean as the photo's score."""
    from defect_detection import emap

    maps = np.empty(images.shape[:3], dtype=np.float32)  # (N, H, W)
    with torch.inference_mode():
        for s in range(0, len(images), 32):
            x = to_tensor(images[s:s + 32])  # (b, 3, H, W)
            y = model(x)
            for i in range(len(x)):
                maps[s + i] = emap(x[i], y[i], "mean")
    return maps.reshape(len(maps), -1).mean(1), maps


# --- (b) udd -----------------------------------------------------------------------------------

def train_udd(images: np.ndarray, size: int, settings, work: Path, name: str) -> torch.nn.Module:
    """Train the recipe's config at (1, size, size); returns the best-validation weights."""
    preset = model_presets()[RECIPE]
    job = TrainJob.create(work / name, preset.config, (1, size, size), images, settings, {"kind": "mvtec"})
    job.start().join()
    snap = job.snapshot()
    if snap.status != "finished":
        raise RuntimeError(f"{name}: training {snap.status}: {snap.error or snap.message}")
    return load_model(work / name)


def score_grid(model: torch.nn.Module, images: np.ndarray, grid: list[dict]) -> list[tuple[dict, np.ndarray, np.ndarray]]:
    """One reconstruction pass, then every scoring in `grid`: [(scoring, scores (N,), maps (N, H, W))]."""
    recon = torch.from_numpy(score_images(model, images).recon)  # (N, C, H, W)
    x = to_tensor(images)
    out = []
    for g in grid:
        maps = torch.cat([residual_map(x[s:s + 64], recon[s:s + 64], g["residual"], g["smooth_sigma"])
                          for s in range(0, len(x), 64)])  # (N, H, W)
        out.append((g, image_scores(maps, g["score"], g["topk_percent"]).numpy(), maps.numpy()))
    return out


def scoring_name(g: dict) -> str:
    k = f"top{g['topk_percent']:g}%" if g["score"] == "topk" else g["score"]
    return f"{g['residual']}, blur {g['smooth_sigma']:g}, {k}"


# --- report ------------------------------------------------------------------------------------

def fmt(v) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def table(results: list[Scored], labels: list[str], masks: np.ndarray, keep: np.ndarray | None = None) -> str:
    """Markdown table: one row per defect type and a total; image AUROC, pixel AUROC, AUPRO per model."""
    keep = np.ones(len(labels), dtype=bool) if keep is None else keep
    lab = [v for v, k in zip(labels, keep) if k]
    mets = [compute_metrics(r.scores[keep], lab, r.maps[keep], masks[keep]) for r in results]
    head = "| defect (n) | " + " | ".join(f"{r.name}: img AUROC | pix AUROC | AUPRO" for r in results) + " |"
    rows = [head, "|" + " --- |" * (1 + 3 * len(results))]
    for t in sorted(mets[0].per_type):
        cells = [f"{t} ({mets[0].per_type[t]['n']})"]
        for m in mets:
            p = m.per_type[t]
            cells += [fmt(p["image_auroc"]), fmt(p["pixel_auroc"]), fmt(p["aupro"])]
        rows.append("| " + " | ".join(cells) + " |")
    cells = [f"**all** ({sum(v != 'good' for v in lab)} + {sum(v == 'good' for v in lab)} good)"]
    for m in mets:
        cells += [f"**{fmt(m.image_auroc)}**", f"**{fmt(m.pixel_auroc)}**", f"**{fmt(m.aupro)}**"]
    rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def leave_one_type_out(scores: np.ndarray, maps: np.ndarray, labels: list[str], masks: np.ndarray) -> str:
    """Markdown table: the pooled metrics with each defect type's photos left out in turn.

    The pooled pixel AUROC ranks every defect pixel against every normal pixel of every photo, so one
    type with many weakly scored defect pixels can hold it down while every per-type figure is high.
    """
    lab = np.asarray(labels)
    rows = ["| left out (n) | img AUROC | pix AUROC | AUPRO |", "| --- | --- | --- | --- |"]
    for t in ["nothing", *sorted(set(labels) - {"good"})]:
        keep = lab != t
        m = compute_metrics(scores[keep], list(lab[keep]), maps[keep], masks[keep])
        rows.append(f"| {t} ({int((~keep).sum())}) | {fmt(m.image_auroc)} | {fmt(m.pixel_auroc)} | {fmt(m.aupro)} |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA, help="magnetic-tile folder (MVTec layout)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 32x32, 1 epoch, a few images")
    ap.add_argument("--search", action="store_true", help="also train the other candidate losses and score grid")
    ap.add_argument("--epochs", type=int, default=None, help="epochs for both models (default: the preset's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=None, help="keep the runs here (default: a temporary folder)")
    args = ap.parse_args()
    check_data(args.data)
    t_all = time.perf_counter()
    base = training_presets()[RECIPE]
    size = 32 if args.quick else model_presets()[RECIPE].input_shape[1]
    epochs = args.epochs or (1 if args.quick else base.epochs)
    scales = reference_scales(size)
    settings = base.replace(epochs=epochs, seed=args.seed, patch_size=scales["patch_size"], device="cpu")

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t_all:7.1f} s] {msg}", file=sys.stderr, flush=True)

    gray_tr = load_dataset(args.data, (1, size, size), split="train")
    gray_te = load_dataset(args.data, (1, size, size), split="test")
    rgb_te = np.repeat(gray_te.images, 3, axis=-1)  # the photos are gray: RGB = the gray channel 3 times
    itr, ite = np.arange(len(gray_tr)), np.arange(len(gray_te))
    if args.quick:
        itr = subsample(len(gray_tr), 48, args.seed)
        ite = first_of_each(gray_te.labels)
    labels = [gray_te.labels[i] for i in ite]
    masks = gray_te.masks[ite]
    pick = stratified_half(labels, args.seed)
    log(f"loaded {len(itr)} train and {len(ite)} test photos at {size}x{size}")

    results: list[Scored] = []
    with tempfile.TemporaryDirectory(prefix="udd_quality_") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        ref = train_reference([Path(gray_tr.names[i]) for i in itr], size, epochs, settings.batch_size,
                              settings.noise_patches, args.seed, work)
        ref_s = time.perf_counter() - t
        log(f"reference trained in {ref_s:.0f} s")
        s, m = score_reference(ref, rgb_te[ite])
        results.append(Scored("reference", s, m, ref_s))

        losses = CANDIDATE_LOSSES if args.search else (base.loss,)
        grid = SCORING_GRID if args.search else [RECIPE_SCORING]
        assert RECIPE_SCORING in grid
        candidates = []  # (loss, scoring, scores, maps, train_s)
        for loss in losses:
            t = time.perf_counter()
            model = train_udd(gray_tr.images[itr], size, settings.replace(loss=loss), work, f"udd_{loss}")
            took = time.perf_counter() - t
            log(f"udd {loss} trained in {took:.0f} s")
            for g, sc, mp in score_grid(model, gray_te.images[ite], grid):
                candidates.append((loss, g, sc, mp, took))
                if loss == base.loss and g == RECIPE_SCORING:  # the recipe, as the presets define it
                    results.append(Scored("udd recipe", sc, mp, took))
        ref_with_recipe_scoring = score_grid(ref, rgb_te[ite], [RECIPE_SCORING])[0]
        results.append(Scored("reference model, udd scoring", ref_with_recipe_scoring[1], ref_with_recipe_scoring[2],
                              ref_s))

    print(f"\n## magnetic_tile quality: {size}x{size}, {epochs} epochs, seed {args.seed}, "
          f"{torch.get_num_threads()} threads, {platform.machine()}, torch {torch.__version__}")
    print(f"udd settings: {settings.to_dict()}; scoring {scoring_name(RECIPE_SCORING)}")
    print(f"reference: generate_dataset(Naug=1, Nseg=1, size={size}, offset={scales['offset']}, dw={scales['dw']}), "
          f"deepAE_train(epochs={epochs}, batch_size={settings.batch_size}, npatch={settings.noise_patches}, "
          f"patch_size={scales['patch_size']}), emap mean")
    print("training time: " + ", ".join(f"{r.name} {r.train_s:.0f} s" for r in results[:2]))
    if args.search:
        print("\n### Candidates on the selection half (image AUROC, pixel AUROC, AUPRO), best first\n")
        rows = []
        for loss, g, sc, mp, _ in candidates:
            m = compute_metrics(sc[pick], [v for v, k in zip(labels, pick) if k], mp[pick], masks[pick])
            rows.append((m.image_auroc or 0.0, f"| {loss} | {scoring_name(g)} | {fmt(m.image_auroc)} | "
                                               f"{fmt(m.pixel_auroc)} | {fmt(m.aupro)} |"))
        print("| loss | scoring | img AUROC | pix AUROC | AUPRO |\n| --- | --- | --- | --- | --- |")
        print("\n".join(r for _, r in sorted(rows, key=lambda r: -r[0])))
        best = max(range(len(rows)), key=lambda i: rows[i][0])
        loss, g, sc, mp, took = candidates[best]
        results.insert(2, Scored(f"selected ({loss}; {scoring_name(g)})", sc, mp, took))
    print("\n### All test photos\n")
    print(table(results, labels, masks))
    print("\n### Held-out half only (not used for any choice)\n")
    print(table(results, labels, masks, ~pick))
    print(f"\nwall time {time.perf_counter() - t_all:.0f} s")


if __name__ == "__main__":
    main()
