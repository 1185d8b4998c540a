"""Regenerate everything in sample_data/ from fixed seeds: `python sample_data/generate.py`.

- wafer_maps_26x26.npz: synthetic WM-811K-style maps, keys `maps` uint8 (N, 26, 26) and `labels`
  (fixed-width unicode; loads with allow_pickle=False).
- surface/: a textured-surface set in MVTec AD layout (128x128 grayscale PNGs with masks).

The output is byte-identical from run to run (fixed seeds, fixed zip timestamps, PNG has none).
"""
from __future__ import annotations

import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from anywhere without installing the package

from udd_core.synthetic import wafer_maps, write_surface_dataset  # noqa: E402

WAFER_SEED, SURFACE_SEED = 811, 2024
N_PER_CLASS, N_NONE = 40, 160  # a large pattern-free share: that is what a model trains on


def save_npz_deterministic(path: Path, **arrays: np.ndarray) -> None:
    """Like np.savez_compressed, but with a fixed timestamp in the zip so reruns give the same bytes."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key, arr in arrays.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with zf.open(info, "w") as fp:
                np.lib.format.write_array(fp, np.asarray(arr), allow_pickle=False)


def main() -> None:
    maps, labels = wafer_maps(N_PER_CLASS, size=26, seed=WAFER_SEED, n_none=N_NONE)
    save_npz_deterministic(HERE / "wafer_maps_26x26.npz", maps=maps, labels=np.array(labels, dtype="<U9"))
    surface = HERE / "surface"
    shutil.rmtree(surface, ignore_errors=True)  # drop stale files from a run with other counts
    write_surface_dataset(surface, n_train=60, n_test_good=12, n_per_defect=8, size=128, seed=SURFACE_SEED)
    files = [p for p in HERE.rglob("*") if p.is_file() and p.suffix in (".npz", ".png")]
    total = sum(p.stat().st_size for p in files)
    print(f"wrote {len(maps)} wafer maps and {len(files) - 1} surface PNGs, {total / 2**20:.2f} MB in {HERE}")


if __name__ == "__main__":
    main()
