"""Tests for udd_core.wafermaps: .npy/.npz wafer files through load_dataset, labels, one-hot round trips."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from udd_core.data import DataError, load_dataset, to_tensor
from udd_core.data_preview import estimate_cache_bytes
from udd_core.sources import shared_data_dir
from udd_core.wafermaps import map_sizes, onehot_to_wafer, wafer_to_onehot

REAL = shared_data_dir(Path(__file__).resolve().parents[1])  # ../shared/data beside the checkout


def test_map_sizes_read_headers_only(tmp_path):
    np.savez(tmp_path / "w.npz", maps_a=np.zeros((2, 6, 7), np.uint8), maps_b=np.ones((5, 9, 4), np.uint8),
             labels_b=np.array(["x"] * 5))
    assert map_sizes(tmp_path / "w.npz") == [(2, (6, 7)), (5, (9, 4))]
    np.save(tmp_path / "one.npy", np.zeros((3, 8), np.uint8))  # a single (H, W) map
    assert map_sizes(tmp_path / "one.npy") == [(1, (3, 8))]


def test_wafer_npy_and_resize(tmp_path):
    maps = np.random.default_rng(0).integers(0, 3, (5, 10, 12)).astype(np.uint8)
    np.save(tmp_path / "w.npy", maps)
    s = load_dataset(tmp_path / "w.npy", (3, 10, 12))
    assert s.kind == "wafer" and s.images.shape == (5, 10, 12, 3) and s.labels == ["good"] * 5
    assert s.names[3] == "w.npy[3]" and s.masks is None
    assert np.array_equal(onehot_to_wafer(s.images), maps)
    big = load_dataset(tmp_path / "w.npy", (3, 20, 24))  # exact 2x: nearest repeats each die
    assert np.array_equal(onehot_to_wafer(big.images), maps.repeat(2, 1).repeat(2, 2))
    assert any("resized 10x12 -> 20x24" in n for n in big.notices)
    assert estimate_cache_bytes(tmp_path / "w.npy", (3, 20, 24)) == (5, big.images.nbytes)


def test_wafer_npz_mixed_sizes_and_labels(tmp_path):
    a = np.ones((2, 8, 8), np.uint8)
    b = np.full((3, 10, 12), 2, np.uint8)
    np.savez(tmp_path / "w.npz", maps_8x8=a, failureType_8x8=np.array(["none", "Loc"]),
             maps_10x12=b, failureType_10x12=np.array([b"Center", b"", b"Scratch"]))
    s = load_dataset(tmp_path / "w.npz", (3, 8, 8))
    assert s.images.shape == (5, 8, 8, 3)
    assert s.labels == ["Center", "good", "Scratch", "none", "Loc"]  # keys in sorted order
    assert s.names[0] == "w.npz:maps_10x12[0]" and s.names[-1] == "w.npz:maps_8x8[1]"
    assert (onehot_to_wafer(s.images[:3]) == 2).all() and (onehot_to_wafer(s.images[3:]) == 1).all()
    # QA sweep 15: two products in one file scored apart; said once, with the sizes
    assert ("w.npz holds maps of 2 sizes (10x12, 8x8), likely different products, all resized to one: a product's "
            "normal maps can score apart from another's; a run per product gives each its own threshold") in s.notices
    np.savez(tmp_path / "simple.npz", maps=a, labels=np.array([3, 7]))
    simple = load_dataset(tmp_path / "simple.npz", (3, 8, 8))
    assert simple.labels == ["3", "7"] and not any("sizes" in n for n in simple.notices)


def test_wafer_labels_needing_pickle_are_dropped(tmp_path):
    labels = np.empty(2, object)
    labels[:] = [np.array([["none"]]), np.array([["Loc"]])]  # like the original WM-811K pickle
    np.savez(tmp_path / "w.npz", maps=np.zeros((2, 4, 4), np.uint8), labels=labels)
    s = load_dataset(tmp_path / "w.npz", (3, 4, 4))
    assert s.labels == ["good", "good"] and any("pickle" in n for n in s.notices)


def test_wafer_errors(tmp_path):
    np.save(tmp_path / "bad.npy", np.full((1, 4, 4), 3, np.uint8))
    with pytest.raises(DataError, match="bad.npy"):
        load_dataset(tmp_path / "bad.npy", (3, 4, 4))
    np.save(tmp_path / "ok.npy", np.zeros((1, 4, 4), np.uint8))
    with pytest.raises(DataError, match="3 input channels"):
        load_dataset(tmp_path / "ok.npy", (1, 4, 4))
    np.savez(tmp_path / "nomaps.npz", labels=np.array(["a"]))
    with pytest.raises(DataError, match="nomaps.npz"):
        load_dataset(tmp_path / "nomaps.npz", (3, 4, 4))
    mixed = np.empty(2, dtype=object)  # LSWMD's style: maps of several sizes in one pickled array
    mixed[0], mixed[1] = np.ones((3, 3), np.uint8), np.ones((4, 5), np.uint8)
    np.save(tmp_path / "mixed.npy", mixed, allow_pickle=True)
    with pytest.raises(DataError, match=r"mixed.npy: holds no \(N, H, W\) wafer map array; an object array would "
                                        r"need pickle.*maps_26x26"):
        load_dataset(tmp_path / "mixed.npy", (3, 4, 4))
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(DataError, match="junk.npz"):
        load_dataset(tmp_path / "junk.npz", (3, 4, 4))


def test_bad_die_values_are_placed_and_refused_as_the_path_is_typed(tmp_path):
    """QA sweep 19a: "bad3.npy: die values must be 0, 1 or 2, found [3]" came only at the Train page's Start, and
    said not which of thousands of maps holds the value."""
    from udd_core.sources import describe

    maps = np.ones((6, 5, 5), np.float32)
    maps[3, 2, 4], maps[5, 0, 0], maps[4, 1, 1] = 3, -1, 0.5
    np.savez(tmp_path / "w.npz", maps=maps)
    said = ("w.npz:maps: die values must be 0, 1 or 2, found [-1.0, 0.5, 3.0] in 3 maps, the first [3] at row 2, "
            "column 4")
    with pytest.raises(DataError, match=re.escape(said)):
        load_dataset(tmp_path / "w.npz", (3, 5, 5))
    with pytest.raises(DataError, match=re.escape(said)):  # the Train page's estimate, before Start
        describe(tmp_path / "w.npz", (3, 5, 5))
    maps[:] = 1
    maps[0, 0, 0] = np.nan
    np.save(tmp_path / "nan.npy", maps)
    with pytest.raises(DataError, match=r"nan.npy: die values must be 0, 1 or 2, found \[nan\] in 1 map, the first"):
        describe(tmp_path / "nan.npy", (3, 5, 5))
    np.save(tmp_path / "ok.npy", np.ones((6, 5, 5), np.uint8))
    assert describe(tmp_path / "ok.npy", (3, 5, 5)).startswith("wafer maps: 6 ")


@pytest.mark.skipif(not (REAL / "wm811k_small").is_dir(), reason="real WM-811K subset not present")
def test_real_wafer_files():
    s = load_dataset(REAL / "wm811k_small" / "labelled_first100.npz", (3, 26, 26))
    assert len(s) == 100 and s.labels.count("none") == 83 and s.labels.count("Edge-Loc") == 8
    u = load_dataset(REAL / "wm811k_small" / "maps_26x26_unlabelled.npy", (3, 26, 26))
    assert u.images.shape == (716, 26, 26, 3)
    assert u.notices == ['716 maps of maps_26x26_unlabelled.npy have no labels: taken as normal ("good"), so a run '
                         'trains on all of them, and metrics on them count no defect']  # QA sweep 19a: unsaid


def test_onehot_round_trip():
    maps = np.random.default_rng(2).integers(0, 3, (4, 5, 7)).astype(np.uint8)
    x = wafer_to_onehot(maps)
    assert x.shape == (4, 5, 7, 3) and x.dtype == np.uint8 and (x.sum(-1) == 255).all()
    assert np.array_equal(onehot_to_wafer(x), maps)
    t = to_tensor(x)  # (N, 3, H, W) float, like a model output
    assert np.array_equal(onehot_to_wafer(t), maps)
    assert np.array_equal(onehot_to_wafer(t.numpy()), maps)
    sq = wafer_to_onehot(np.random.default_rng(3).integers(0, 3, (2, 3, 3)))  # (2, 3, 3, 3): ambiguous
    assert np.array_equal(onehot_to_wafer(torch.from_numpy(sq).permute(0, 3, 1, 2)), onehot_to_wafer(sq))
    with pytest.raises(ValueError):
        wafer_to_onehot(np.full((1, 2, 2), 5))
    with pytest.raises(ValueError):
        onehot_to_wafer(np.zeros((2, 4, 4)))


def test_labels_of_another_length_are_refused_and_an_empty_file_names_itself(tmp_path):
    maps = np.ones((4, 6, 6), np.uint8)
    np.savez(tmp_path / "w.npz", maps=maps, labels=np.array(["Center"] * 3))
    # Taken as unlabelled, the Center maps would train a detector as normal ones.
    with pytest.raises(DataError, match=r"^w.npz:labels: 3 labels fit no map array \(maps: 4 maps\); give one label"):
        load_dataset(tmp_path / "w.npz", (3, 6, 6))
    np.savez(tmp_path / "two.npz", maps_a=maps, maps_b=maps[:3], labels=np.array(["Center"] * 3))
    with pytest.raises(DataError, match=r"two.npz:labels: 3 labels fit no map array \(maps_a: 4, maps_b: 3 maps\)"):
        load_dataset(tmp_path / "two.npz", (3, 6, 6))  # the length fits maps_b, the name does not: not guessed
    np.savez(tmp_path / "two.npz", maps_a=maps, maps_b=maps[:3], labels_b=np.array(["Center"] * 3))
    assert load_dataset(tmp_path / "two.npz", (3, 6, 6)).labels == ["good"] * 4 + ["Center"] * 3
    np.save(tmp_path / "empty.npy", np.zeros((0, 6, 6), np.uint8))
    with pytest.raises(DataError, match="empty.npy: holds no wafer maps"):
        load_dataset(tmp_path / "empty.npy", (3, 6, 6))


def test_training_refuses_a_file_of_defect_labels_only(tmp_path):
    from udd_core.training_data import normal_images

    np.savez(tmp_path / "d.npz", maps=np.ones((4, 6, 6), np.uint8), labels=np.array(["Center", "Donut"] * 2))
    with pytest.raises(ValueError, match=r"every image is labelled as a defect \(Center, Donut\)"):
        normal_images(load_dataset(tmp_path / "d.npz", (3, 6, 6)), for_training=True)
    assert len(normal_images(load_dataset(tmp_path / "d.npz", (3, 6, 6)))[0]) == 4  # scoring and latents use them all


def test_the_refusal_lists_every_class_up_to_twelve(tmp_path):
    from udd_core.training_data import normal_images

    classes = ["Center", "Donut", "Edge-Loc", "Edge-Ring", "Loc", "Near-full", "Random", "Scratch"]
    np.savez(tmp_path / "d.npz", maps=np.ones((8, 6, 6), np.uint8), labels=np.array(classes))
    with pytest.raises(ValueError, match=r"\(Center, Donut, Edge-Loc, Edge-Ring, Loc, Near-full, Random, Scratch\)"):
        normal_images(load_dataset(tmp_path / "d.npz", (3, 6, 6)), for_training=True)  # none cut silently
    many = [f"c{i:02d}" for i in range(14)]
    np.savez(tmp_path / "d.npz", maps=np.ones((14, 6, 6), np.uint8), labels=np.array(many))
    with pytest.raises(ValueError, match=r"c11 and 2 more\)"):
        normal_images(load_dataset(tmp_path / "d.npz", (3, 6, 6)), for_training=True)


def test_wafer_labels_match_the_loader_without_reading_maps(tmp_path):
    """`wafer_labels` (the Train page's check of chosen classes before Start) gives load_dataset's labels, in
    its order, for labelled, unlabelled and pickled-label files alike."""
    from udd_core.data_preview import training_labels
    from udd_core.wafermaps import wafer_labels

    pickled = np.empty(2, object)
    pickled[:] = ["none", "Loc"]
    np.savez(tmp_path / "w.npz", maps_8x8=np.ones((2, 8, 8), np.uint8), failureType_8x8=np.array(["none", "Loc"]),
             maps_10x12=np.ones((3, 10, 12), np.uint8), failureType_10x12=np.array([b"Center", b"", b"Scratch"]),
             maps_4x4=np.ones((1, 4, 4), np.uint8))
    np.savez(tmp_path / "p.npz", maps=np.zeros((2, 4, 4), np.uint8), labels=pickled)
    np.save(tmp_path / "m.npy", np.ones((3, 5, 5), np.uint8))
    for name in ("w.npz", "p.npz", "m.npy"):
        expected = load_dataset(tmp_path / name, (3, 8, 8)).labels
        assert wafer_labels(tmp_path / name) == training_labels(tmp_path / name) == expected
    assert wafer_labels(tmp_path / "w.npz") == ["Center", "good", "Scratch", "good", "none", "Loc"]
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(DataError, match="bad.npz: not a readable numpy file"):
        wafer_labels(tmp_path / "bad.npz")


def test_what_training_keeps_is_said_before_loading_as_loading_says_it(tmp_path):
    """`training_notes` (the Train page, before Start): the loader's notes on labels, and the kept images'."""
    from udd_core.data_preview import training_notes
    from udd_core.training_data import training_images

    np.savez(tmp_path / "w.npz", maps=np.ones((6, 8, 8), np.uint8),
             labels=np.array(["none", "Loc", "none", "unknown", "Center", "none"]))
    np.save(tmp_path / "m.npy", np.ones((3, 5, 5), np.uint8))
    for name, train_on in [("w.npz", "normal"), ("w.npz", "all"), ("w.npz", "loc"), ("m.npy", "normal")]:
        ds = load_dataset(tmp_path / name, (3, 8, 8))
        kept = training_images(ds, train_on)[1]
        said = [n for n in ds.notices if "label" in n] + ([f"This run will be {kept}"] if kept else [])
        assert training_notes(tmp_path / name, train_on) == said and said
    assert training_notes(tmp_path / "w.npz") == [
        "This run will be trained on the 3 normal images (labels good/none/normal); the 2 labelled as defects and "
        "1 with an unknown label left out"]
    assert "3 maps of m.npy have no labels: taken as normal" in training_notes(tmp_path / "m.npy")[0]


def test_training_labels_of_image_folders_are_good(tmp_path):
    from udd_core.data_preview import training_labels

    root = Path(__file__).resolve().parents[1] / "sample_data" / "surface"
    labels = training_labels(root)
    assert labels and set(labels) == {"good"} and len(labels) == len(load_dataset(root, (1, 32, 32)).labels)
