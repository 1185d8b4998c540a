"""Scoring speed: udd's `score_images` / `udd score` vs the reference's load_batch + batch_apply.

Both sides score the same JPEG tiles with the same weights (one model folder in the reference's
format, which `udd score` reads too). In process, udd scores its uint8 cache (decoding happens once,
when a data set is loaded) and, for a like-for-like row, also with the decoding included; the
reference decodes every file on every call, as its API does. Whole processes add imports and model
loading: `udd score MODEL --data DIR --json` against a small reference script that loads the model,
loops load_batch + batch_apply and makes each image's error map with `defect_detection.emap`.

    .venv/bin/python bench/bench_score.py --quick
    .venv/bin/python bench/bench_score.py
    bash bench/gpu_check.sh                            # both benchmarks on a GPU (--device cuda)

The MSE of every image is compared between the sides (it must stay float32-exact), and the
bf16-autocast error maps are compared with the float32 ones (max abs and relative error), to show
what reduced precision would cost if it were used for the maps.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import (PYTHON, UDD_CMD, last_json_line, machine_note, markdown_table, median, run_child,  # noqa: E402
                    sync, thread_env, write_rgb_tiles)

REFERENCE_SCRIPT = r'''
import json, sys, time
t0 = time.perf_counter()
import torch
import defect_detection as dd
from defect_detection.functions import loss_def
a = json.loads(sys.argv[1])
torch.set_num_threads(a["threads"])
ae = dd.deepAE_load(a["model"], dev=a["device"], use_only=True, loss_fn=loss_def)
ae.eval()
files = a["files"]
mse, peaks = [], []
for s in range(0, len(files), a["batch_size"]):
    x = dd.load_batch(files[s:s + a["batch_size"]], dev=a["device"])
    y, loss = ae.batch_apply(x)
    x = x.cpu()  # emap takes numpy-able tensors
    for j in range(len(y) if a.get("emap", True) else 0):
        m = dd.emap(x[j], y[j], "mean")  # the per-pixel error map a user inspects
        peaks.append(float(m.max()))
    mse += loss.tolist()
print(json.dumps({"mse": mse, "peak": peaks, "total_s": time.perf_counter() - t0}))
'''


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small run: fewer images and repeats")
    ap.add_argument("--config", default="rgb-tile-256", help="model preset (default rgb-tile-256)")
    ap.add_argument("--size", type=int, default=256, help="tile side in px (default 256)")
    ap.add_argument("--images", type=int, help="tiles scored (default 64; --quick 24)")
    ap.add_argument("--few", type=int, default=4, help="image count of the small whole-process job (default 4)")
    ap.add_argument("--batch-size", type=int, default=16, help="images per forward pass, both sides (default 16)")
    ap.add_argument("--train-steps", type=int, help="fp32 Adam steps on the tiles before scoring, so residuals "
                                                     "look like a trained model's (default 30; --quick 10)")
    ap.add_argument("--repeats", type=int, help="alternating repeats (default 3; --quick 2)")
    ap.add_argument("--threads", type=int, default=2, help="torch/OpenMP threads per side (default 2)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda, for both sides (default cpu)")
    ap.add_argument("--source", default="auto", help="auto, magnetic_tile or synthetic tiles")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", metavar="FILE", help="also write every measurement to FILE")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    a = ap.parse_args(argv)
    a.images = a.images or (24 if a.quick else 64)
    a.train_steps = a.train_steps if a.train_steps is not None else (10 if a.quick else 30)
    a.repeats = a.repeats or (2 if a.quick else 3)
    return a


def make_model_dir(a, tiles, out: Path):
    """A briefly trained model saved in the reference's format (AE_config.txt + AE_state.save)."""
    import torch

    from udd_core.data import to_tensor
    from udd_core.losses import mse_loss
    from udd_core.presets import model_presets
    from udd_core.train import seeded_model

    preset = model_presets()[a.config]
    model = seeded_model(preset.config, (3, a.size, a.size), a.seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.5, 0.999))
    rng = torch.Generator().manual_seed(a.seed)
    for _ in range(a.train_steps):
        idx = torch.randperm(len(tiles), generator=rng)[:8].numpy()
        x = to_tensor(tiles[idx])
        opt.zero_grad(set_to_none=True)
        loss = mse_loss(x, model(x))
        loss.backward()
        opt.step()
    model.eval()
    out.mkdir(parents=True)
    (out / "AE_config.txt").write_text(repr(preset.config.to_dict()))
    torch.save(model.state_dict(), out / "AE_state.save")
    return model


def in_process(a, model, tiles_dir: Path) -> tuple[list[list[str]], dict]:
    """Throughput of both scoring paths in this process, alternating; mse agreement; bf16 map parity."""
    import numpy as np
    import torch

    import defect_detection as dd
    from defect_detection.functions import loss_def
    from udd_core.data import load_dataset, to_tensor
    from udd_core.precision import autocast
    from udd_core.residuals import residual_map
    from udd_core.scoring import score_images

    torch.set_num_threads(a.threads)
    files = sorted(str(p) for p in tiles_dir.glob("*.jpg"))
    dev = a.device
    ae = dd.deepAE_load(str(tiles_dir.parent / "model") + "/", dev=dev, use_only=True, loss_fn=loss_def)
    ae.eval()
    shape = (3, a.size, a.size)
    cached = load_dataset(tiles_dir, shape).images  # (N, H, W, 3) uint8
    bs = a.batch_size

    def ref_scoring(with_emap: bool):
        def f():
            mse = []
            for s in range(0, len(files), bs):
                x = dd.load_batch(files[s:s + bs], dev=dev)
                y, loss = ae.batch_apply(x)
                if with_emap:
                    x = x.cpu()
                    for j in range(len(y)):
                        dd.emap(x[j], y[j], "mean")
                mse += loss.tolist()
            return np.asarray(mse, dtype=np.float32)
        return f

    def udd_cached():
        return score_images(model, cached, residual="l2", score="mean", batch_size=bs, device=dev).mse

    def udd_decode():
        return score_images(model, load_dataset(tiles_dir, shape).images, residual="l2", batch_size=bs,
                            device=dev).mse

    x_all = to_tensor(cached, dev)  # (N, C, H, W), the NHWC view both loaders produce

    def bare(net):
        def f():
            with torch.inference_mode():
                for s in range(0, len(x_all), bs):
                    net(x_all[s:s + bs])
            sync(dev)
        return f

    sides = {"reference: load_batch + batch_apply": ref_scoring(False),
             "reference: + emap per image": ref_scoring(True),
             "udd score_images (cached uint8)": udd_cached,
             "udd load_dataset + score_images": udd_decode,
             "bare forward, reference AE_cls (same tensor)": bare(ae),
             "bare forward, udd AutoEncoder (same tensor)": bare(model)}
    times = {k: [] for k in sides}
    outs = {}
    for k, f in sides.items():  # warm-up (oneDNN primitive caches, page cache)
        outs[k] = f()
    outs = {k: v for k, v in outs.items() if v is not None}
    for rep in range(a.repeats):
        keys = list(sides)
        keys = keys[rep % len(keys):] + keys[:rep % len(keys)]
        for k in keys:
            t = time.perf_counter()
            sides[k]()
            times[k].append(time.perf_counter() - t)
    ref_t = median(times["reference: load_batch + batch_apply"])
    rows = [[k, f"{median(v):.2f}", f"{len(files) / median(v):.1f}", f"{ref_t / median(v):.2f}x"]
            for k, v in times.items()]
    ref_mse, our_mse = outs["reference: load_batch + batch_apply"], outs["udd score_images (cached uint8)"]

    # bf16 maps vs float32 maps on the same images (what reduced precision would cost the heatmaps).
    with torch.inference_mode():
        x = to_tensor(cached[: 2 * bs], dev)
        m32 = residual_map(x, model(x), "l2")  # (B, H, W)
        sync(dev)
        t = time.perf_counter()
        with autocast(torch.device(dev).type, True):
            y16 = model(x)
        sync(dev)
        t16 = time.perf_counter() - t
        t = time.perf_counter()
        model(x)
        sync(dev)
        t32 = time.perf_counter() - t
        m16 = residual_map(x, y16.float(), "l2")
    err = (m16 - m32).abs()
    s32, s16 = m32.mean((1, 2)), m16.mean((1, 2))
    parity = {"max_abs": float(err.max()), "map_max": float(m32.max()),
              "max_abs_over_map_max": float(err.max() / m32.max()),
              "median_pixel_rel": float((err / m32.clamp_min(1e-12)).median()),
              "score_rel_max": float(((s16 - s32).abs() / s32).max()),
              "fwd_speedup": t32 / t16}
    return rows, {"times": times, "mse_bit_identical": bool(np.array_equal(ref_mse, our_mse)),
                  "mse_max_abs_diff": float(np.abs(ref_mse - our_mse).max()), "bf16_maps": parity}


def whole_process(a, work: Path, tiles_dir: Path, n: int) -> tuple[list[list[str]], dict]:
    """`udd score` vs the reference script on the first n tiles, alternating, fresh processes."""
    sub = work / f"tiles-{n}"
    if not sub.exists():
        sub.mkdir()
        for p in sorted(tiles_dir.glob("*.jpg"))[:n]:
            (sub / p.name).hardlink_to(p)
    files = sorted(str(p) for p in sub.glob("*.jpg"))
    model_dir = str(work / "model") + "/"
    script = work / "reference_score.py"
    script.write_text(REFERENCE_SCRIPT)
    env = thread_env(a.threads)
    ref_arg = json.dumps({"model": model_dir, "files": files, "batch_size": a.batch_size, "threads": a.threads,
                          "device": a.device})
    cmds = {"reference script": [PYTHON, str(script), ref_arg],
            "udd score": [*UDD_CMD, "score", str(work / "model"), "--data", str(sub), "--json",
                          "--batch-size", str(a.batch_size), "--device", a.device]}
    res = {k: [] for k in cmds}
    out = {}
    for rep in range(a.repeats):
        for k in (list(cmds) if rep % 2 == 0 else list(cmds)[::-1]):
            c = run_child(cmds[k], env, work, work / f"score-{k.split()[0]}-{n}-{rep}.log").check(k)
            res[k].append(c)
            out[k] = c.log
    ref_mse = last_json_line(out["reference script"])["mse"]
    text = out["udd score"].read_text()
    udd_rows = json.loads(text[text.index("{"):])["images"]
    udd_mse = [r["mse"] for r in sorted(udd_rows, key=lambda r: r["path"])]
    diff = max(abs(u - r) for u, r in zip(udd_mse, ref_mse))
    ref_t = median([c.wall_s for c in res["reference script"]])
    rows = [[f"{n} images", k, f"{median([c.wall_s for c in v]):.2f}", f"{median([c.cpu_s for c in v]):.2f}",
             f"{ref_t / median([c.wall_s for c in v]):.2f}x", f"{max(c.max_rss_mb for c in v):.0f}"]
            for k, v in res.items()]
    return rows, {"mse_max_abs_diff": diff,
                  "runs": {k: [vars(c) | {"log": str(c.log)} for c in v] for k, v in res.items()}}


def gray_mvtec_workload(a, work: Path) -> tuple[list[list[str]], dict]:
    """Issue 10's workload: the seed example's 5x5-kernel model (reference format) and an MVTec folder
    whose test split holds N grayscale 256x256 PNGs; `udd score` against load_batch + batch_apply."""
    import numpy as np
    import torch
    from PIL import Image

    from udd_core.presets import model_presets
    from udd_core.train import seeded_model

    n = 40 if a.quick else 200
    root = work / "gray-mvtec"
    rng = np.random.default_rng(a.seed)
    for split, count in (("train/good", 4), ("test/good", n)):
        (root / split).mkdir(parents=True)
        for i in range(count):
            xx = np.arange(256)[None, :]
            g = np.clip(100 + 50 * np.sin(xx / 7 + i) + rng.normal(0, 8, (256, 256)), 0, 255).astype(np.uint8)
            Image.fromarray(g).save(root / split / f"{i:04d}.png")
    preset = model_presets()["reference-example"]
    model_dir = work / "gray-model"
    model_dir.mkdir()
    (model_dir / "AE_config.txt").write_text(repr(preset.config.to_dict()))
    torch.save(seeded_model(preset.config, (3, 256, 256), a.seed).state_dict(), model_dir / "AE_state.save")
    files = sorted(str(p) for p in (root / "test" / "good").glob("*.png"))
    script = work / "reference_score.py"
    script.write_text(REFERENCE_SCRIPT)
    env = thread_env(a.threads)
    ref_arg = json.dumps({"model": str(model_dir) + "/", "files": files, "batch_size": 32, "threads": a.threads,
                          "device": a.device, "emap": False})
    cmds = {"reference: load_batch + batch_apply": [PYTHON, str(script), ref_arg],
            "udd score --json": [*UDD_CMD, "score", str(model_dir), "--data", str(root), "--json",
                                 "--device", a.device]}
    res = {k: [] for k in cmds}
    for rep in range(a.repeats):
        for k in (list(cmds) if rep % 2 == 0 else list(cmds)[::-1]):
            res[k].append(run_child(cmds[k], env, work, work / f"gray-{len(res[k])}-{k.split()[0]}.log").check(k))
    ref_t = median([c.wall_s for c in res["reference: load_batch + batch_apply"]])
    rows = [[f"{n} gray PNGs, 5x5 model", k, f"{median([c.wall_s for c in v]):.2f}",
             f"{median([c.cpu_s for c in v]):.2f}", f"{ref_t / median([c.wall_s for c in v]):.2f}x",
             f"{max(c.max_rss_mb for c in v):.0f}"] for k, v in res.items()]
    return rows, {k: [vars(c) | {"log": str(c.log)} for c in v] for k, v in res.items()}


def main(argv=None) -> int:
    a = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="udd-bench-score-"))
    try:
        from udd_core.data import load_dataset

        tiles_dir = work / "tiles"
        source = write_rgb_tiles(tiles_dir, a.images, a.size, a.source, a.seed)
        note = machine_note(a.threads, a.device)
        print(f"machine: {note}\ndata: {a.images} RGB JPEG tiles {a.size}x{a.size} from {source}; model "
              f"{a.config} after {a.train_steps} fp32 steps; batch {a.batch_size}", flush=True)
        t0 = time.perf_counter()
        import torch

        torch.set_num_threads(a.threads)
        model = make_model_dir(a, load_dataset(tiles_dir, (3, a.size, a.size)).images, work / "model").to(a.device)
        rows, info = in_process(a, model, tiles_dir)
        print()
        print(markdown_table(["in process (same model, same tiles)", "seconds (median)", "images/s", "speed-up"], rows))
        print(f"\nper-image MSE, udd vs reference: bit-identical {info['mse_bit_identical']}, "
              f"max abs diff {info['mse_max_abs_diff']:.3g}")
        p = info["bf16_maps"]
        print(f"bf16-autocast l2 maps vs float32: max abs err {p['max_abs']:.3g} (map max {p['map_max']:.3g}, "
              f"ratio {p['max_abs_over_map_max']:.3g}); median per-pixel rel err {p['median_pixel_rel']:.3g}; "
              f"mean-score rel err max {p['score_rel_max']:.3g}; bf16 forward {p['fwd_speedup']:.2f}x faster")
        whole_rows, whole = [], {}
        for n in sorted({min(a.few, a.images), a.images}):
            r, whole[n] = whole_process(a, work, tiles_dir, n)
            whole_rows += r
        r, whole["gray-mvtec"] = gray_mvtec_workload(a, work)
        whole_rows += r
        print()
        print(markdown_table(["job", "process", "wall s (median)", "CPU s", "speed-up", "peak RSS MiB"], whole_rows))
        print("per-image MSE, udd score vs reference script: max abs diff "
              + ", ".join(f"{w['mse_max_abs_diff']:.3g} ({n} images)" for n, w in whole.items() if n != "gray-mvtec"))
        print(f"\nbench time {time.perf_counter() - t0:.0f} s; machine: {note}")
        if a.json:
            Path(a.json).write_text(json.dumps({"machine": note, "source": source, "in_process": info,
                                                "whole_process": whole}, indent=1, default=str))
    finally:
        if a.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
