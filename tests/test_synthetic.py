"""Tests for udd_core.synthetic generators and the committed sample_data/ sets."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from udd_core.data import load_dataset
from udd_core.synthetic import SURFACE_DEFECTS, WAFER_CLASSES, wafer_maps, write_surface_dataset

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"


def radius(size: int) -> np.ndarray:
    c = (np.arange(size) + 0.5 - size / 2) / (size / 2)
    return np.hypot(*np.meshgrid(c, c, indexing="ij"))  # in wafer radii


@pytest.fixture(scope="module")
def wafers():
    return wafer_maps(20, size=26, seed=3)


def test_wafer_maps_shapes_values_classes(wafers):
    maps, labels = wafers
    assert maps.shape == (20 * 9, 26, 26) and maps.dtype == np.uint8
    assert set(np.unique(maps)) == {0, 1, 2}
    assert [labels.count(c) for c in WAFER_CLASSES] == [20] * 9
    inside = radius(26) <= 1
    assert ((maps > 0) == inside).all()  # the same round wafer on every map
    assert maps[:, 0, 0].max() == 0 and (maps[:, 13, 13] > 0).all()


def test_wafer_maps_determinism_and_counts():
    a, la = wafer_maps(2, size=20, seed=1, n_none=5)
    b, _ = wafer_maps(2, size=20, seed=1, n_none=5)
    c, _ = wafer_maps(2, size=20, seed=2, n_none=5)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert la.count("none") == 5 and len(la) == 8 * 2 + 5 and a.shape == (21, 20, 20)
    with pytest.raises(ValueError):
        wafer_maps(-1)


def test_wafer_patterns_are_recognisable(wafers):
    maps, labels = wafers
    r = radius(26)
    zones = {"core": r < 0.25, "mid": (r > 0.35) & (r < 0.6), "rim": (r > 0.88) & (r <= 1)}

    def rate(cls, zone=None):
        sel = maps[[i for i, lab in enumerate(labels) if lab == cls]]
        where = (r <= 1) if zone is None else zones[zone]
        return (sel[:, where] == 2).mean()

    assert rate("none") < 0.15
    assert rate("Near-full") > 0.7 and 0.25 < rate("Random") < 0.6
    assert rate("Center", "core") > 0.6 > 0.2 > rate("Center", "rim")
    assert rate("Edge-Ring", "rim") > 0.6 and rate("Edge-Ring", "core") < 0.15
    assert rate("Donut", "mid") > 2 * rate("Donut", "core")
    for cls in ("Loc", "Edge-Loc", "Scratch"):
        assert rate(cls) < 0.4  # local patterns leave most of the wafer good

    # A pattern is a cluster: the share of failing dies with >= 3 failing neighbours is high for
    # every pattern class and near zero for the sparse random fails of "none".
    f = (maps == 2).astype(int)
    p = np.pad(f, ((0, 0), (1, 1), (1, 1)))
    neighbours = sum(p[:, 1 + dy:27 + dy, 1 + dx:27 + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1)) - f
    clustered = ((neighbours >= 3) & (f == 1)).sum((1, 2)) / np.maximum(f.sum((1, 2)), 1)
    by_class = {c: clustered[[lab == c for lab in labels]].mean() for c in WAFER_CLASSES}
    assert by_class.pop("none") < 0.08
    assert min(by_class.values()) > 0.15, by_class


def test_surface_dataset(tmp_path):
    root = write_surface_dataset(tmp_path / "s", n_train=3, n_test_good=2, n_per_defect=2, size=64, seed=4)
    assert len(list((root / "train" / "good").glob("*.png"))) == 3
    for kind in SURFACE_DEFECTS:
        for i in range(2):
            img = Image.open(root / "test" / kind / f"{i:03d}.png")
            mask = np.asarray(Image.open(root / "ground_truth" / kind / f"{i:03d}_mask.png"))
            assert img.mode == "L" and img.size == (64, 64)
            assert set(np.unique(mask)) == {0, 255} and 0 < (mask > 0).mean() < 0.15
    s = load_dataset(root, (1, 64, 64), split="test")
    assert s.labels.count("good") == 2 and s.masks[2:].any(axis=(1, 2)).all()
    # Defects stand out: inside the mask, pixels differ from the surface's typical level.
    d = s.images[2:, ..., 0].astype(float)
    inside = np.abs(d[s.masks[2:]] - 125).mean()
    outside = np.abs(d[~s.masks[2:]] - 125).mean()
    assert inside > 1.5 * outside
    again = write_surface_dataset(tmp_path / "t", n_train=3, n_test_good=2, n_per_defect=2, size=64, seed=4)
    for f in root.rglob("*.png"):
        assert f.read_bytes() == (again / f.relative_to(root)).read_bytes()


# ----------------------------------------------------------------------------- committed sample_data


def test_sample_wafer_maps_load():
    path = SAMPLE / "wafer_maps_26x26.npz"
    with np.load(path, allow_pickle=False) as z:
        assert z["maps"].dtype == np.uint8 and z["maps"].shape[1:] == (26, 26)
        assert z["labels"].dtype.kind == "U" and set(z["labels"]) == set(WAFER_CLASSES)
    s = load_dataset(path, (3, 26, 26))
    assert s.kind == "wafer" and s.labels.count("none") >= len(s) // 4 and not s.notices


def test_sample_surface_loads():
    train = load_dataset(SAMPLE / "surface", (1, 128, 128))
    test = load_dataset(SAMPLE / "surface", (1, 128, 128), split="test")
    assert len(train) >= 50 and train.masks is None and not train.notices
    assert set(test.labels) == {"good", *SURFACE_DEFECTS}
    defective = np.array([lab != "good" for lab in test.labels])
    assert test.masks[defective].any(axis=(1, 2)).all() and not test.masks[~defective].any()
    total = sum(p.stat().st_size for p in SAMPLE.rglob("*") if p.is_file())
    assert total < 5 * 2**20


def test_sample_data_is_up_to_date(tmp_path):
    """The committed files equal what generate.py's generators make now (stale files fail here)."""
    spec = importlib.util.spec_from_file_location("generate", SAMPLE / "generate.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    maps, labels = wafer_maps(gen.N_PER_CLASS, size=26, seed=gen.WAFER_SEED, n_none=gen.N_NONE)
    with np.load(SAMPLE / "wafer_maps_26x26.npz", allow_pickle=False) as z:
        assert np.array_equal(z["maps"], maps) and z["labels"].tolist() == labels
    fresh = write_surface_dataset(tmp_path / "s", 60, 12, 8, size=128, seed=gen.SURFACE_SEED)
    committed = sorted(p.relative_to(SAMPLE / "surface") for p in (SAMPLE / "surface").rglob("*.png"))
    assert committed == sorted(p.relative_to(fresh) for p in fresh.rglob("*.png"))
    for rel in committed[::7]:
        assert (fresh / rel).read_bytes() == (SAMPLE / "surface" / rel).read_bytes()
