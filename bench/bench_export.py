"""ONNX export: how long `export_run` takes, and onnxruntime's scoring speed against udd's torch path.

A pixel-AE run (preset rgb-tile-256 by default) is trained for one short epoch on RGB tiles (the
shared magnetic_tile photos when present, else synthetic ones), so the export has validation images
to check parity on. Then, per scoring (the default l2 / mean, and SSIM + smoothing + top-k, the
magnetic-tile recipe's kind of graph):

- the export: trace, onnx.checker, onnxruntime parity on the validation images (median of repeats);
- scoring the same tiles: udd's torch path (`reference_outputs`: detector map, `smooth_maps`, score)
  against onnxruntime running the exported file, both on float32 batches, alternated, median.

    .venv/bin/python bench/bench_export.py --quick
    .venv/bin/python bench/bench_export.py
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import machine_note, markdown_table, median, write_rgb_tiles  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer images and repeats")
    ap.add_argument("--config", default="rgb-tile-256", help="model preset (default rgb-tile-256)")
    ap.add_argument("--size", type=int, default=256, help="tile side in px (default 256)")
    ap.add_argument("--train-images", type=int, default=32, help="tiles the run trains on (a quarter validates)")
    ap.add_argument("--images", type=int, help="tiles scored (default 64; --quick 16)")
    ap.add_argument("--batch-size", type=int, default=16, help="images per call, both sides (default 16)")
    ap.add_argument("--repeats", type=int, help="alternating repeats (default 3; --quick 2)")
    ap.add_argument("--threads", type=int, default=2, help="torch and onnxruntime threads (default 2)")
    ap.add_argument("--source", default="auto", help="auto, magnetic_tile or synthetic tiles")
    a = ap.parse_args(argv)
    a.images = a.images or (16 if a.quick else 64)
    a.repeats = a.repeats or (2 if a.quick else 3)
    return a


def train_run(root: Path, a: argparse.Namespace) -> Path:
    """A one-epoch run of the preset on the tiles in root/tiles."""
    from udd_core.data import load_dataset
    from udd_core.jobs import TrainJob
    from udd_core.presets import model_presets
    from udd_core.settings import TrainSettings

    tiles = root / "tiles"
    source = write_rgb_tiles(tiles, a.train_images, a.size, a.source)
    preset = model_presets()[a.config]
    shape = (preset.input_shape[0], a.size, a.size)
    ds = load_dataset(tiles, shape)
    settings = TrainSettings(epochs=1, batch_size=8, val_split=0.25, seed=0, n_probe=0, device="cpu")
    job = TrainJob.create(root / "run", preset.config.to_dict(), shape, ds.images, settings,
                          source={"path": str(tiles), "kind": "folder", "tile": False})
    job.start().join(3600)
    if job.snapshot().status != "finished":
        raise SystemExit(f"training failed: {job.snapshot().message}")
    print(f"run: {a.config} at {shape}, {a.train_images} {source} tiles, one epoch", file=sys.stderr)
    return root / "run"


def main(argv=None) -> int:
    a = parse_args(argv)
    import numpy as np
    import onnxruntime as ort
    import torch

    from udd_core.data import load_dataset, to_tensor
    from udd_core.export import default_scoring, export_run, reference_outputs
    from udd_core.methods import load_detector

    torch.set_num_threads(a.threads)
    note = machine_note(a.threads)
    with tempfile.TemporaryDirectory(prefix="udd-bench-export-") as tmp:
        run = train_run(Path(tmp), a)
        det = load_detector(run)
        images = load_dataset(Path(tmp) / "tiles", det.input_shape).images
        images = images[np.arange(a.images) % len(images)]  # (N, H, W, C) uint8
        rows = []
        for label, kw in (("l2, mean (default)", {}),
                          ("ssim, smooth 2, top-1%", dict(residual="ssim", smooth_sigma=2.0, score="topk"))):
            times, exp = [], None
            for _ in range(a.repeats):
                t = time.perf_counter()
                exp = export_run(run, **kw)
                times.append(time.perf_counter() - t)
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = a.threads
            opts.inter_op_num_threads = 1
            sess = ort.InferenceSession(exp.onnx, opts, providers=["CPUExecutionProvider"])
            scoring = default_scoring(det, **kw)

            def run_torch():
                return reference_outputs(det, images, scoring)[1]

            def run_onnx():
                out = []
                for s in range(0, len(images), a.batch_size):
                    x = to_tensor(images[s:s + a.batch_size]).contiguous().numpy()
                    out.append(sess.run(["score"], {"images": x})[0])
                return np.concatenate(out)

            run_torch(), run_onnx()  # warm-up
            t_torch, t_onnx = [], []
            for _ in range(a.repeats):
                for fn, acc in ((run_torch, t_torch), (run_onnx, t_onnx)):
                    t = time.perf_counter()
                    got = fn()
                    acc.append(time.perf_counter() - t)
            diff = float(np.max(np.abs(run_onnx() / run_torch() - 1)))
            par = exp.info["parity"]
            rows.append([label, f"{median(times):.2f}", f"{len(exp.onnx) / 1e6:.1f}",
                         f"{par['max_rel_score_diff']:.1e}", f"{a.images / median(t_torch):.1f}",
                         f"{a.images / median(t_onnx):.1f}", f"{median(t_torch) / median(t_onnx):.2f}x",
                         f"{diff:.1e}"])
            del got
    print(note)
    print(f"{a.images} tiles scored in batches of {a.batch_size}; {a.repeats} repeats, medians")
    print(markdown_table(["scoring", "export s", "file MB", "parity (val)", "torch img/s", "onnxruntime img/s",
                          "onnxruntime speed-up", "max rel score diff (scored tiles)"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
