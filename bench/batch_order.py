"""Validation loss per epoch of udd training with reshuffled batches vs the reference's fixed batches.

The data, split and initial weights are those of `bench_train.py` for the same seed (the same tiles,
the reference's 80 training images in its file order, its last batch held out), trained in process
in float32 with udd's loop; only `shuffle` differs between the two runs of each seed.

    .venv/bin/python bench/batch_order.py --seeds 0,1      # ~5 min on 2 cores
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bench_train  # noqa: E402
from common import markdown_table, write_rgb_tiles  # noqa: E402


def val_curve(a, work: Path, shuffle: bool) -> list[float]:
    import torch

    from udd_core import runs
    from udd_core.data import load_dataset
    from udd_core.settings import TrainSettings
    from udd_core.train import seeded_model, train
    from udd_core.training_data import split_indices

    torch.set_num_threads(a.threads)
    folder = bench_train.udd_folder(a, work / "data")
    images = load_dataset(folder, (3, a.size, a.size)).images
    n_val = a.val_batches * a.batch_size
    tr, va = split_indices(len(images), n_val / a.images, a.seed)  # tr lists the reference's files in order
    s = TrainSettings(epochs=a.epochs, batch_size=a.batch_size, noise_patches=a.npatch,
                      patch_size=(a.patch_size[0], a.patch_size[1] - 1), seed=a.seed, device="cpu",
                      amp_bf16=False, shuffle=shuffle)
    run = runs.new_run(work, f"{'shuffled' if shuffle else 'fixed'}-{a.seed}")
    train(seeded_model(bench_train.config_dict(a.configs[0]), (3, a.size, a.size), a.seed), images[tr], images[va],
          s, run)
    return [r["val_loss"] for r in runs.read_history(run)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="0,1", help="comma-separated seeds (default 0,1)")
    ap.add_argument("--config", default="reference-example", help="model preset (default reference-example)")
    ap.add_argument("--epochs", type=int, default=10)
    opts = ap.parse_args(argv)
    rows = []
    for seed in (int(v) for v in opts.seeds.split(",")):
        a = bench_train.parse_args(["--configs", opts.config, "--epochs", str(opts.epochs), "--seed", str(seed)])
        work = Path(tempfile.mkdtemp(prefix="udd-bench-order-"))
        try:
            write_rgb_tiles(work / "data" / "tiles", a.images, a.size, a.source, a.seed)
            for shuffle in (False, True):
                curve = val_curve(a, work, shuffle)
                rows.append([str(seed), "reshuffled each epoch" if shuffle else "fixed (the reference's)",
                             " ".join(f"{v:.4f}" for v in curve), f"{curve[-1]:.5f}", f"{min(curve):.5f}"])
                print(json.dumps({"seed": seed, "shuffle": shuffle, "val_curve": curve}), flush=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    print(markdown_table(["seed", "batch order", "val loss per epoch", "last", "best"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
