"""Training speed: `udd train` vs `defect_detection.deepAE_train`, whole processes, side by side.

Both sides get the same config file, the same JPEG tiles on disk, the same epochs, batch size,
noise patches (count and size range) and the same number of training and validation images, and
start from the same initial weights (the reference script seeds torch as udd's `seeded_model`
does; the module trees match). Every repeat runs each variant once, in a rotated order, so drift in
the machine's load hits all of them alike. Reported: wall and CPU seconds of each child process
(imports and data loading included), its peak RSS, and its final float32 validation loss.

    .venv/bin/python bench/bench_train.py --quick      # ~2 min on 2 quiet cores
    .venv/bin/python bench/bench_train.py              # ~12 min: the fuller run behind bench/RESULTS.md
    .venv/bin/python bench/bench_train.py --profile    # in-process: where one step's time goes
    bash bench/gpu_check.sh                            # both benchmarks on a GPU (--device cuda)

The reference needs noise patches (it crashes with npatch=0), batches of exactly `batch_size`
files, and takes its validation images as the last `val_batches` batches of the file listing.
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

from common import (PYTHON, UDD_CMD, Child, last_json_line, machine_note, markdown_table, median,  # noqa: E402
                    run_child, thread_env, write_rgb_tiles)

# The reference side: deepAE_train as a user would call it, plus the seeding that makes its initial
# weights equal udd's and a JSON line with the losses of the last epoch.
REFERENCE_SCRIPT = r'''
import json, sys, time
t0 = time.perf_counter()
import torch
import defect_detection as dd
a = json.loads(sys.argv[1])
torch.set_num_threads(a["threads"])
t_import = time.perf_counter() - t0
torch.manual_seed(a["seed"])  # same initial weights as udd's seeded_model(config, shape, seed)
loss, loss_val = dd.deepAE_train(
    a["model"], a["config"], a["data"], data_dir=a["data_dir"], model_dir=a["model_dir"], dev=a["device"],
    epochs=a["epochs"], batch_size=a["batch_size"], ntrain=a["ntrain"], npatch=a["npatch"],
    patch_size=tuple(a["patch_size"]), seed=a["seed"])
print(json.dumps({"train_loss": float(loss[-1].mean()), "val_loss": float(loss_val[-1].mean()),
                  "val_curve": [float(v.mean()) for v in loss_val],
                  "import_s": t_import, "total_s": time.perf_counter() - t0}))
'''

VARIANTS = ("reference", "float32", "bf16")


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small run: one config, fewer images/epochs/repeats")
    ap.add_argument("--configs", help="comma-separated model presets (default: reference-example,rgb-tile-256; "
                                      "--quick: reference-example)")
    ap.add_argument("--size", type=int, default=256, help="tile side in px (default 256)")
    ap.add_argument("--images", type=int, help="tiles written (default 96; --quick 48)")
    ap.add_argument("--batch-size", type=int, help="images per step (default 16; --quick 8)")
    ap.add_argument("--val-batches", type=int, default=1, help="batches held out for validation (default 1)")
    ap.add_argument("--epochs", type=int, help="epochs (default 3; --quick 2)")
    ap.add_argument("--npatch", type=int, default=5, help="noise patches per image (>0: the reference needs it)")
    ap.add_argument("--patch-size", default="10,100", help="reference patch_size (min, max exclusive)")
    ap.add_argument("--repeats", type=int, help="runs of each variant (default 3; --quick 2)")
    ap.add_argument("--threads", type=int, default=2, help="torch/OpenMP threads per side (default 2)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda, for both sides (--profile: cpu only)")
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"subset of {','.join(VARIANTS)}")
    ap.add_argument("--source", default="auto", help="auto, magnetic_tile or synthetic tiles")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", metavar="FILE", help="also write every measurement to FILE")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (runs, logs)")
    ap.add_argument("--profile", action="store_true", help="in-process profile of one step of each side instead")
    a = ap.parse_args(argv)
    q = a.quick
    a.configs = (a.configs or ("reference-example" if q else "reference-example,rgb-tile-256")).split(",")
    a.images = a.images or (48 if q else 96)
    a.batch_size = a.batch_size or (8 if q else 16)
    a.epochs = a.epochs or (2 if q else 3)
    a.repeats = a.repeats or (2 if q else 3)
    a.variants = [v for v in a.variants.split(",") if v]
    if any(v not in VARIANTS for v in a.variants):
        ap.error(f"--variants: choose from {VARIANTS}")
    if a.images % a.batch_size or a.images // a.batch_size <= a.val_batches:
        ap.error("--images must be a multiple of --batch-size with more batches than --val-batches")
    if a.profile and a.device != "cpu":
        ap.error("--profile measures CPU kernels; run it without --device")
    if a.npatch < 1:
        ap.error("--npatch must be >= 1 (the reference crashes without noise patches)")
    a.patch_size = tuple(int(v) for v in a.patch_size.split(","))
    return a


def config_dict(name: str) -> dict:
    from udd_core.presets import model_presets

    presets = model_presets()
    if name not in presets:
        raise SystemExit(f"--configs: {name!r} is not a preset ({', '.join(presets)})")
    return presets[name].config.to_dict()


def run_reference(a, work: Path, cfg_file: Path, data_dir: Path, tag: str) -> tuple[Child, dict]:
    script = work / "reference_train.py"
    script.write_text(REFERENCE_SCRIPT)
    cwd = work / f"ref-{tag}"  # deepAE_train writes temp.txt into its working directory
    cwd.mkdir()
    args = {"model": f"m-{tag}", "config": str(cfg_file), "data": "tiles", "data_dir": str(data_dir) + "/",
            "model_dir": str(cwd) + "/", "epochs": a.epochs, "batch_size": a.batch_size,
            "ntrain": a.images // a.batch_size - a.val_batches, "npatch": a.npatch,
            "patch_size": list(a.patch_size), "seed": a.seed, "threads": a.threads, "device": a.device}
    child = run_child([PYTHON, str(script), json.dumps(args)], thread_env(a.threads), cwd,
                      work / f"ref-{tag}.log").check("reference training")
    return child, last_json_line(child.log)


def udd_folder(a, data_dir: Path) -> Path:
    """The same tiles (hard links), named so that udd's seeded split holds out the reference's val images.

    deepAE_train validates on the last `val_batches` batches of its sorted listing; udd draws a
    seeded random split. Placing those images at udd's validation positions makes both sides
    train on the same images and report the loss of the same held-out ones.
    """
    from udd_core.training_data import split_indices

    n, k = a.images, a.val_batches * a.batch_size
    tr, va = split_indices(n, k / n, a.seed)
    if len(va) != k:
        raise SystemExit(f"udd's split holds out {len(va)} images, the reference {k}")
    src = sorted((data_dir / "tiles").glob("*.jpg"))
    out = data_dir / "udd_tiles"
    out.mkdir(exist_ok=True)
    for pos, img in zip(list(tr) + list(va), src[: n - k] + src[n - k:]):
        target = out / f"{pos:04d}.jpg"
        if not target.exists():
            target.hardlink_to(img)
    return out


def run_udd(a, work: Path, cfg_file: Path, data_dir: Path, precision: str, tag: str) -> tuple[Child, dict]:
    out = work / f"udd-{precision}-{tag}"
    n_val = a.val_batches * a.batch_size
    lo, hi = a.patch_size
    argv = [*UDD_CMD, "train", str(cfg_file), "--data", str(udd_folder(a, data_dir)), "--out", str(out),
            "--epochs", str(a.epochs), "--batch-size", str(a.batch_size), "--noise-patches", str(a.npatch),
            "--patch-size", f"{lo},{hi - 1}",  # udd's range is inclusive, the reference's randint excludes max
            "--val-split", repr(n_val / a.images), "--seed", str(a.seed), "--size", f"{a.size},{a.size}",
            "--device", a.device, "--precision", precision]
    child = run_child(argv, thread_env(a.threads), work, work / f"udd-{precision}-{tag}.log").check("udd train")
    rows = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines() if line.strip()]
    notes = [line[6:] for line in child.log.read_text().splitlines() if line.startswith("note: ")]
    return child, {"train_loss": rows[-1]["train_loss"], "val_loss": rows[-1]["val_loss"],
                   "val_curve": [r["val_loss"] for r in rows],
                   "precision": [r.get("precision") for r in rows], "notes": notes}


def bench_config(a, work: Path, name: str, data_dir: Path) -> dict:
    cfg_file = work / f"{name}.AE_config.txt"
    cfg_file.write_text(repr(config_dict(name)))  # the reference evals a printed dict; udd reads it too
    results = {v: [] for v in a.variants}
    for rep in range(a.repeats):
        order = a.variants[rep % len(a.variants):] + a.variants[:rep % len(a.variants)]
        for v in order:
            tag = f"{name}-{rep}"
            child, info = (run_reference(a, work, cfg_file, data_dir, tag) if v == "reference"
                           else run_udd(a, work, cfg_file, data_dir, v, tag))
            results[v].append({"wall_s": child.wall_s, "cpu_s": child.cpu_s, "max_rss_mb": child.max_rss_mb, **info})
            print(f"  [{name} rep {rep + 1}/{a.repeats}] {v:9s} {child.wall_s:7.1f} s wall {child.cpu_s:7.1f} s cpu "
                  f"{child.max_rss_mb:6.0f} MiB  val {info['val_loss']:.5g} (saved model {saved_val(v, info):.5g})",
                  flush=True)
    return results


def saved_val(variant: str, info: dict) -> float:
    """Validation loss of the model each side hands over: the reference saves its last epoch's
    weights; udd's model.safetensors is the epoch with the lowest validation loss."""
    return info["val_loss"] if variant == "reference" else min(info["val_curve"])


def summarise(name: str, results: dict) -> list[list[str]]:
    rows = []
    ref = results.get("reference")
    for v, runs in results.items():
        walls = [r["wall_s"] for r in runs]
        ratio = paired = "1"
        if ref and v != "reference":
            ratio = f"{median([r['wall_s'] for r in ref]) / median(walls):.2f}x"
            paired = f"{median([r['wall_s'] / o['wall_s'] for r, o in zip(ref, runs)]):.2f}x"
        prec = "" if v == "reference" else ("/".join(sorted(set(p for r in runs for p in r["precision"]))))
        rows.append([name, "defect_detection 0.4.4" if v == "reference" else f"udd train --precision {v}",
                     f"{median(walls):.1f}", f"{min(walls):.1f}-{max(walls):.1f}",
                     f"{median([r['cpu_s'] for r in runs]):.1f}", ratio, paired,
                     f"{max(r['max_rss_mb'] for r in runs):.0f}",
                     f"{median([r['val_loss'] for r in runs]):.5f}",
                     f"{median([saved_val(v, r) for r in runs]):.5f}", prec or "float32"])
    return rows


def startup_costs(a, work: Path) -> list[list[str]]:
    """Imports alone: what every whole-process run pays before its first image."""
    cmds = {"import defect_detection (+torch)": "import torch, defect_detection",
            "import udd_core.cli + train (+torch)": "import udd_core.cli, udd_core.train"}
    rows = []
    walls = {k: [] for k in cmds}
    for _ in range(max(3, a.repeats)):
        for k, code in cmds.items():
            c = run_child([PYTHON, "-c", code], thread_env(a.threads), work, work / "import.log").check(k)
            walls[k].append((c.wall_s, c.max_rss_mb))
    for k, v in walls.items():
        rows.append([k, f"{median([w for w, _ in v]):.2f}", f"{max(m for _, m in v):.0f}"])
    return rows


def profile_steps(a) -> int:
    """In-process: per-batch data cost and step time of each side, and the convolutions' share of a step."""
    import numpy as np
    import torch
    from torch.profiler import ProfilerActivity, profile

    import defect_detection as dd
    from defect_detection.functions import load_batch
    from udd_core.data import add_noise_patches, load_dataset, to_tensor
    from udd_core.losses import mse_loss
    from udd_core.precision import autocast
    from udd_core.train import seeded_model

    torch.set_num_threads(a.threads)
    work = Path(tempfile.mkdtemp(prefix="udd-bench-prof-"))
    try:
        bs, s, (lo, hi) = a.batch_size, a.size, a.patch_size
        source = write_rgb_tiles(work / "tiles", bs, s, a.source, a.seed)
        files = sorted(str(p) for p in (work / "tiles").glob("*.jpg"))
        cached = load_dataset(work / "tiles", (3, s, s)).images  # (bs, H, W, 3) uint8, decoded once
        rng = np.random.default_rng(0)
        print(f"machine: {machine_note(a.threads)}\none batch of {bs} RGB {s}x{s} tiles ({source}), "
              f"{a.npatch} noise patches; times are the best of 3 after a warm-up", flush=True)

        def best(f, n=3):
            f()
            ts = []
            for _ in range(n):
                t = time.perf_counter()
                f()
                ts.append(time.perf_counter() - t)
            return min(ts) * 1000

        def op_shares(f) -> tuple[float, float]:
            """% of a step's CPU time in convolutions, and in dropout's mask draws (aten::bernoulli_)."""
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                f()
            ev = prof.key_averages()
            total = max(sum(e.self_cpu_time_total for e in ev), 1)
            return tuple(100.0 * sum(e.self_cpu_time_total for e in ev if word in e.key) / total
                         for word in ("conv", "bernoulli"))

        rows = []
        for name in a.configs:
            cfg = config_dict(name)
            torch.manual_seed(a.seed)
            ae = dd.AE_cls(cfg, loss_fn=torch.nn.MSELoss(), opt=torch.optim.Adam,
                           opt_param={"lr": 1e-3, "betas": (0.5, 0.999)})
            model = seeded_model(cfg, (3, s, s), a.seed)
            opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.5, 0.999))
            ref_batch = load_batch(files, dev="cpu", npatch=a.npatch, patch_size=a.patch_size)

            def ref_data():
                return load_batch(files, dev="cpu", npatch=a.npatch, patch_size=a.patch_size)

            def our_data():
                return to_tensor(cached), to_tensor(add_noise_patches(cached, a.npatch, (lo, hi - 1), rng))

            our_batch = our_data()

            def our_step(amp):
                def step():
                    x, x_in = our_batch
                    opt.zero_grad(set_to_none=True)
                    with autocast("cpu", amp):
                        y = model(x_in)
                    loss = mse_loss(x, y.float())
                    loss.backward()
                    opt.step()
                return step

            def ref_step():
                ae.batch_train(ref_batch[0], ref_batch[1])

            data_ref, data_ours = best(ref_data, 10), best(our_data, 10)
            steps = {}
            for _ in range(2):  # alternate the sides; keep each side's best
                for k, f in (("reference", ref_step), ("float32", our_step(False)), ("bf16", our_step(True))):
                    steps[k] = min(steps.get(k, 1e12), best(f, 2))
            shares = {"reference": op_shares(ref_step), "float32": op_shares(our_step(False)),
                      "bf16": op_shares(our_step(True))}
            for k in ("reference", "float32", "bf16"):
                data = data_ref if k == "reference" else data_ours
                rows.append([name, k, f"{data:.1f}", f"{steps[k]:.0f}", f"{100 * data / (data + steps[k]):.1f}%",
                             *(f"{v:.0f}%" for v in shares[k]), f"{steps['reference'] / steps[k]:.2f}x"])
        print(markdown_table(["config", "side", "data per batch ms (disk+noise+tensor)", "train step ms",
                              "data share", "conv ops share of step", "dropout masks share", "step speed-up"],
                             rows))
        layer_efficiency(a)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def layer_efficiency(a) -> None:
    """One thread, CPU time: GFLOP/s of every conv's forward and backward, fp32 and bf16, against GEMM peak.

    Shows how close the float32 convolutions (the same kernels in both packages) already run to what
    this core can do, i.e. how much any rewrite could still gain, and where bf16 stops paying.
    """
    import torch
    import torch.nn.functional as F

    from udd_core.train import seeded_model

    torch.set_num_threads(1)

    def cpu_ms(f, n=3):
        f()
        best = 1e12
        for _ in range(n):
            t = time.process_time()
            f()
            best = min(best, time.process_time() - t)
        return best * 1000

    peaks = {}
    for dt in (torch.float32, torch.bfloat16):
        m = torch.randn(1024, 1024, dtype=dt)
        peaks[dt] = 2 * 1024**3 / cpu_ms(lambda: m @ m) / 1e6
    print(f"\none-thread GEMM peak: float32 {peaks[torch.float32]:.0f} GFLOP/s, bf16 {peaks[torch.bfloat16]:.0f} GFLOP/s")
    bs, s = 8, a.size
    for name in a.configs:
        model = seeded_model(config_dict(name), (3, s, s), 0)
        shapes = []
        hooks = [mod.register_forward_hook(lambda mod, i, o: shapes.append((mod, i[0].shape)))
                 for mod in model.modules() if isinstance(mod, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
        with torch.no_grad():
            model(torch.rand(bs, 3, s, s).contiguous(memory_format=torch.channels_last))
        for h in hooks:
            h.remove()
        rows, tot = [], {}
        for k, (mod, ish) in enumerate(shapes):
            tconv = isinstance(mod, torch.nn.ConvTranspose2d)
            # multiply-adds actually done: every input pixel scatters (transposed) or every output pixel gathers
            row = []
            for dt in (torch.float32, torch.bfloat16):
                w = mod.weight.detach().to(dt).requires_grad_(True)
                b = mod.bias.detach().to(dt).requires_grad_(True)
                x = torch.rand(ish, dtype=dt).contiguous(memory_format=torch.channels_last).requires_grad_(k > 0)

                def conv():
                    if tconv:
                        return F.conv_transpose2d(x, w, b, mod.stride, mod.padding, mod.output_padding)
                    return F.conv2d(x, w, b, mod.stride, mod.padding)

                y = conv()
                g = torch.rand_like(y)
                macs = (ish.numel() * mod.out_channels if tconv else y.numel() * mod.in_channels) * mod.kernel_size[0] ** 2
                with torch.no_grad():
                    tf = cpu_ms(conv)
                tb = cpu_ms(lambda: torch.autograd.grad(y, [x, w, b] if k > 0 else [w, b], g, retain_graph=True))
                bw_flops = 2 * macs * (2 if k > 0 else 1)  # grad input (not for the first layer) + grad weight
                row += [f"{tf + tb:.0f}", f"{2 * macs / tf / 1e6:.0f}", f"{bw_flops / tb / 1e6:.0f}"]
                tot[dt] = tot.get(dt, 0.0) + tf + tb
            rows.append([type(mod).__name__ + ("" if mod.stride[0] == 1 else " s2"),
                         "x".join(map(str, ish[1:])) + f"->{mod.out_channels}", *row])
        print(f"\n{name}, batch {bs}, {s}x{s}: conv fwd+bwd {tot[torch.float32]:.0f} ms float32, "
              f"{tot[torch.bfloat16]:.0f} ms bf16 ({tot[torch.float32] / tot[torch.bfloat16]:.2f}x)")
        print(markdown_table(["layer", "input -> out ch", "fp32 ms", "fp32 fwd GF/s", "fp32 bwd GF/s",
                              "bf16 ms", "bf16 fwd GF/s", "bf16 bwd GF/s"], rows))


def main(argv=None) -> int:
    a = parse_args(argv)
    if a.profile:
        return profile_steps(a)
    work = Path(tempfile.mkdtemp(prefix="udd-bench-train-"))
    try:
        data_dir = work / "data"
        source = write_rgb_tiles(data_dir / "tiles", a.images, a.size, a.source, a.seed)
        (data_dir / "tiles.txt").write_text(repr({"Nseg": 1}))  # deepAE_train reads it; batch_size is given
        note = machine_note(a.threads, a.device)
        print(f"machine: {note}\ndata: {a.images} RGB JPEG tiles {a.size}x{a.size} from {source}; "
              f"{a.epochs} epochs, batch {a.batch_size}, {a.images - a.val_batches * a.batch_size} train / "
              f"{a.val_batches * a.batch_size} val images, {a.npatch} noise patches {a.patch_size}", flush=True)
        t0 = time.perf_counter()
        all_results, rows = {}, []
        for name in a.configs:
            all_results[name] = bench_config(a, work, name, data_dir)
            rows += summarise(name, all_results[name])
        start_rows = startup_costs(a, work)
        header = ["config", "side", "wall s (median)", "wall s (range)", "CPU s", "speed-up (ratio of medians)",
                  "speed-up (median of paired)", "peak RSS MiB", "final val loss", "saved model's val loss",
                  "step precision"]
        print()
        print(markdown_table(header, rows))
        print()
        print(markdown_table(["start-up (child process)", "wall s (median)", "peak RSS MiB"], start_rows))
        print(f"\nbench time {time.perf_counter() - t0:.0f} s; machine: {note}")
        notes = sorted({n for res in all_results.values() for v in res.values() for r in v for n in r.get("notes", [])
                        if "bf16" in n})
        for n in notes[:6]:
            print(f"udd note: {n}")
        if a.json:
            Path(a.json).write_text(json.dumps({"machine": note, "source": source, "args": {
                k: v for k, v in vars(a).items() if k != "json"}, "results": all_results}, indent=1, default=str))
    finally:
        if a.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
