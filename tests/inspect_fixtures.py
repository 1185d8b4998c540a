"""Tiny synthetic data and runs shared by the inspection, report, CLI-score and Inspect-page tests.

Imported as a plain module (pytest puts tests/ on sys.path): `from inspect_fixtures import ...`.
"""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
from PIL import Image

TINY = {
    "block_ker": [3, 3], "drop": [0.0, 0.0],
    "block_size_in": [[1, 4, 4], [4, 8, 8]], "block_size_out": [[8, 8, 4], [4, 4, 1]],
    "latent_size": 4, "latent_ker": 3, "latent_opad": 1, "out_pad": [1, 1],
}  # mirrors at 1x32x32 (and any size divisible by 8)
SIZE = 32
DEFECT = (slice(10, 18), slice(12, 20))  # the planted bright square (rows, cols)
METRIC_KEYS = {"image_auroc", "image_ap", "f1_max", "pixel_auroc", "aupro", "per_type"}  # `udd score --json` "metrics"


def tiny_config() -> dict:
    return copy.deepcopy(TINY)


def texture(rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    """A smooth gray gradient with mild noise: easy for a tiny autoencoder. (H, W) uint8."""
    yy, xx = np.mgrid[0:size, 0:size]
    base = 90 + 40 * np.sin(xx / 5.0 + rng.uniform(0, 1)) + 20 * yy / size
    return np.clip(base + rng.normal(0, 3, (size, size)), 0, 255).astype(np.uint8)


def make_mvtec(root: Path, n_train: int = 12, n_good: int = 4, n_defect: int = 4, seed: int = 0,
               size: int = SIZE) -> Path:
    """An MVTec-layout folder: train/good, test/good, test/spot with masks in ground_truth/spot."""
    rng = np.random.default_rng(seed)
    for d in ("train/good", "test/good", "test/spot", "ground_truth/spot"):
        (root / d).mkdir(parents=True, exist_ok=True)
    for i in range(n_train):
        Image.fromarray(texture(rng, size)).save(root / "train" / "good" / f"{i:03d}.png")
    for i in range(n_good):
        Image.fromarray(texture(rng, size)).save(root / "test" / "good" / f"{i:03d}.png")
    for i in range(n_defect):
        img = texture(rng, size)
        img[DEFECT] = 250
        mask = np.zeros((size, size), np.uint8)
        mask[DEFECT] = 255
        Image.fromarray(img).save(root / "test" / "spot" / f"{i:03d}.png")
        Image.fromarray(mask).save(root / "ground_truth" / "spot" / f"{i:03d}_mask.png")
    return root


def make_run(run_dir: Path, data: Path, epochs: int = 1, val_split: float = 0.25, config: dict | None = None,
             method: str = "autoencoder", options: dict | None = None, size: int = SIZE, tile: bool = False) -> Path:
    """A real (tiny) run on the train split of `data` at `size` x `size`: model, history, calibration
    (``config``: the model, default TINY; None for a method without one, such as "memory-bank")."""
    from udd_core.data import load_dataset
    from udd_core.jobs import TrainJob
    from udd_core.settings import TrainSettings

    config = (config or tiny_config()) if method in ("autoencoder", "dsvdd") else config
    shape = (config["block_size_in"][0][0] if config else 1, size, size)  # gray images load as RGB for C = 3
    ds = load_dataset(data, shape, split="train", tile=tile)
    settings = TrainSettings(epochs=epochs, batch_size=4, val_split=val_split, seed=0, n_probe=0, device="cpu")
    job = TrainJob.create(run_dir, config, shape, ds.images, settings,
                          source={"path": str(data.resolve()), "kind": "mvtec", "tile": tile},
                          method=method, options=options)
    job.start().join(120)
    assert job.snapshot().status == "finished", job.snapshot().message
    return run_dir


def send_label(app, picker, label) -> None:
    """Make the next ``app.run()`` send ``label`` (a string, or a list for a multiselect) as the run picker's
    value, as a browser does with an option's label that the server no longer offers; AppTest itself only
    sends labels of the current options."""
    from streamlit.runtime.state.common import TESTING_KEY

    if isinstance(label, str):  # a selectbox sends the index of one of its options
        picker.options.append(label)
    app.session_state[TESTING_KEY][picker.id] = lambda v: v  # the label is sent as it is
    picker.set_value(label)
