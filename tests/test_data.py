"""Tests for udd_core.data (loaders, noise patches, preprocessing) and udd_core.uploads."""
from __future__ import annotations

import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from archives import zip_bytes
from udd_core.data import (
    DataError, ImageSet, add_noise_patches, data_kind, extract_zip, load_dataset, preprocess, save_uploads,
)
from udd_core.data_preview import estimate_cache_bytes, native_size
from udd_core.sources import shared_data_dir

REAL = shared_data_dir(Path(__file__).resolve().parents[1])  # ../shared/data beside the checkout


def png(path: Path, arr, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(arr), mode).save(path)
    return path


def gray(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w), dtype=np.uint8)


@pytest.fixture
def mvtec(tmp_path: Path) -> Path:
    root = tmp_path / "mv"
    for i in range(3):
        png(root / "train" / "good" / f"{i:02d}.png", gray(20, 24, i))
    for i in range(2):
        png(root / "test" / "good" / f"{i:02d}.png", gray(20, 24, 10 + i))
    for i in range(2):
        png(root / "test" / "scratch" / f"{i:02d}.png", gray(40, 48, 20 + i))
    m = np.zeros((40, 48), np.uint8)
    m[:, :24] = 255  # left half defective
    png(root / "ground_truth" / "scratch" / "00_mask.png", m)  # 01 has no mask on purpose
    return root


# ----------------------------------------------------------------------------- layouts and splits


def test_mvtec_train_split(mvtec):
    s = load_dataset(mvtec, (1, 8, 8))
    assert isinstance(s, ImageSet) and s.kind == "image"
    assert s.images.shape == (3, 8, 8, 1) and s.images.dtype == np.uint8
    assert s.labels == ["good"] * 3 and s.masks is None
    assert s.names == sorted(s.names) and s.names[0].endswith("00.png")


def test_mvtec_test_split_masks(mvtec):
    s = load_dataset(mvtec, (1, 8, 12), split="test")
    assert s.labels == ["good", "good", "scratch", "scratch"]
    assert s.masks.shape == (4, 8, 12) and s.masks.dtype == bool
    assert not s.masks[:2].any()
    assert s.masks[2, :, :6].all() and not s.masks[2, :, 6:].any()  # left half, nearest resize
    assert not s.masks[3].any()  # no mask file -> empty, with a notice
    assert any("no mask" in n for n in s.notices)


def test_mvtec_all_and_estimate(mvtec):
    s = load_dataset(mvtec, (3, 8, 8), split="all")
    assert len(s) == 7 and s.masks.shape == (7, 8, 8) and not s.masks[:3].any()
    assert estimate_cache_bytes(mvtec, (3, 8, 8), split="all") == (7, s.images.nbytes + s.masks.nbytes)
    t = load_dataset(mvtec, (3, 8, 8), split="train")
    assert estimate_cache_bytes(mvtec, (3, 8, 8)) == (3, t.images.nbytes)


def test_plain_folder_ignores_split_and_recurses(tmp_path):
    png(tmp_path / "a.png", gray(10, 10))
    png(tmp_path / "sub" / "b.jpg", gray(12, 9))
    (tmp_path / "notes.txt").write_text("not an image")
    assert data_kind(tmp_path) == "folder"
    s = load_dataset(tmp_path, (1, 6, 6), split="test")
    assert len(s) == 2 and s.labels == ["good", "good"] and s.masks is None
    assert [Path(n).name for n in s.names] == ["a.png", "b.jpg"]


def test_one_image_file_is_a_data_set_of_one(tmp_path):
    """QA sweep 17: checking one suspect part meant putting it in a folder first ("not a data set")."""
    one = png(tmp_path / "part 3 – prüf.png", gray(10, 12))
    assert data_kind(one) == "folder" and estimate_cache_bytes(one, (1, 6, 6)) == (1, 36)
    s = load_dataset(one, (1, 6, 6), split="test")
    assert len(s) == 1 and s.names == [str(one)] and s.labels == ["good"]
    broken = tmp_path / "broken.jpg"
    broken.write_text("no")
    with pytest.raises(DataError, match=r"no loadable images \(1 file skipped; broken.jpg: not a readable image"):
        load_dataset(broken, (1, 6, 6))


def test_a_typed_path_loses_its_spaces_and_one_pair_of_quotes():
    """QA sweep 15: " /d/good " and a pasted '"/d/good"' read as no such file or folder."""
    from udd_core.data import typed_path

    assert typed_path("  /d/good ") == "/d/good" and typed_path('"/d/my parts"') == "/d/my parts"
    assert typed_path(" '/d/x' ") == "/d/x" and typed_path("'/d/x\"") == "'/d/x\"" and typed_path('"') == '"'


def test_data_kind(tmp_path, mvtec):
    assert data_kind(mvtec) == "mvtec"
    np.save(tmp_path / "w.npy", np.ones((2, 4, 4), np.uint8))
    assert data_kind(tmp_path / "w.npy") == "wafer"
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(DataError, match="x.txt"):
        data_kind(tmp_path / "x.txt")
    with pytest.raises(DataError, match="nope"):
        data_kind(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty"):
        data_kind(tmp_path / "empty")
    for blank in ("", "  "):  # never the working folder, scanned whole
        with pytest.raises(DataError, match="no data set given"):
            data_kind(blank)
    with pytest.raises(DataError) as e:  # QA sweep 15: OSError "File name too long", an exception box on a page
        data_kind(tmp_path / ("a" * 5000))
    assert len(str(e.value)) < 200 and "\n" not in str(e.value) and "…" in str(e.value)


def test_wrapped_mvtec_folder_is_unwrapped(tmp_path, mvtec):
    shutil.copytree(mvtec, tmp_path / "upload" / "bottle")
    assert data_kind(tmp_path / "upload") == "mvtec"
    assert len(load_dataset(tmp_path / "upload", (1, 8, 8))) == 3


def test_bad_arguments(mvtec):
    for shape in [(8, 8), (1, 0, 8), "abc"]:
        with pytest.raises(DataError, match="input_shape"):
            load_dataset(mvtec, shape)
    with pytest.raises(DataError, match=r"block_size_in\[0\]\[0\]: the model takes 2 input channels"):
        load_dataset(mvtec, (2, 8, 8))
    with pytest.raises(DataError, match="split"):
        load_dataset(mvtec, (1, 8, 8), split="val")


def test_progress_reports_every_file(mvtec):
    calls = []
    load_dataset(mvtec, (1, 8, 8), split="all", progress=lambda i, n: calls.append((i, n)))
    assert calls == [(i, 7) for i in range(1, 8)]


# ----------------------------------------------------------------------------- decoding


def test_tiling_images_and_masks(tmp_path):
    img = gray(40, 70)
    png(tmp_path / "test" / "good" / "a.png", gray(16, 16))
    png(tmp_path / "test" / "hole" / "b.png", img)
    png(tmp_path / "test" / "hole" / "tiny.png", gray(10, 10))
    m = np.zeros((40, 70), np.uint8)
    m[16:32, 16:32] = 255
    png(tmp_path / "ground_truth" / "hole" / "b_mask.png", m)
    s = load_dataset(tmp_path, (1, 16, 16), split="test", tile=True)
    # a: 1 tile; b (40x70): rows at 0, 16 and 24 (flush with the bottom), columns at 0, 16, 32, 48 and 54:
    # every pixel is in a tile (QA sweep 10: the remainder was dropped, defects in it never inspected)
    # QA sweep 20: tiny (10x10) is enlarged to one 16x16 tile, not skipped, so that it is inspected too
    assert s.images.shape == (1 + 3 * 5 + 1, 16, 16, 1)
    # QA sweep 17: each tile's name says where it lies in its image (x, y of its top-left)
    assert s.names[1].endswith("b.png#tile0@x0,y0") and s.names[-2].endswith("b.png#tile14@x54,y24")
    assert s.names[1 + 6].endswith("b.png#tile6@x16,y16") and s.names[-1].endswith("tiny.png#tile0@x0,y0")
    assert np.array_equal(s.images[1 + 6, ..., 0], img[16:32, 16:32])  # tile (1, 1)
    assert np.array_equal(s.images[-2, ..., 0], img[24:40, 54:70])  # the bottom-right corner
    assert s.masks[1 + 6].all() and s.masks.sum() == 16 * 16 + 8 * 16  # tile (2, 1) overlaps the defect too
    # Each tile is labelled by its own mask: the defect's two tiles "hole", the other 13 tiles of b "good"
    assert [lab for lab in s.labels[1:-1]] == ["hole" if k in (6, 11) else "good" for k in range(15)]
    assert any("13 tiles of defective images hold no defect pixel" in n for n in s.notices)
    assert any(n.startswith("1 image smaller than one 16x16 tile enlarged until it holds one") and "tiny.png" in n
               for n in s.notices)
    assert estimate_cache_bytes(tmp_path, (1, 16, 16), split="test", tile=True) == (
        17, s.images.nbytes + s.masks.nbytes)


@pytest.mark.skipif(not (REAL / "magnetic_tile").is_dir(), reason="real magnetic-tile data not present")
def test_real_magnetic_tile_sample(tmp_path):
    src = REAL / "magnetic_tile"
    crack = sorted((src / "test" / "crack").glob("*.jpg"))[:2]
    for d in ("train/good", "test/crack", "ground_truth/crack"):
        (tmp_path / d).mkdir(parents=True)
    for f in sorted((src / "train" / "good").glob("*.jpg"))[:3]:
        shutil.copy(f, tmp_path / "train" / "good")
    for f in crack:
        shutil.copy(f, tmp_path / "test" / "crack")
        shutil.copy(src / "ground_truth" / "crack" / f"{f.stem}_mask.png", tmp_path / "ground_truth" / "crack")
    s = load_dataset(tmp_path, (1, 64, 64), split="all")
    assert s.images.shape == (5, 64, 64, 1) and s.labels.count("crack") == 2
    assert s.masks[3:].any() and not s.masks[:3].any()


# ----------------------------------------------------------------------------- native sizes


def test_native_size_from_headers(tmp_path, mvtec):
    assert native_size(mvtec, "train") == (20, 24)
    with pytest.raises(ValueError, match="differ in size .*20x24 and 40x48"):
        native_size(mvtec, "test")
    np.savez(tmp_path / "w.npz", maps_a=np.zeros((2, 6, 7), np.uint8), maps_b=np.ones((1, 6, 7), np.uint8))
    assert native_size(tmp_path / "w.npz") == (6, 7)
    (mvtec / "train" / "good" / "00.png").write_bytes(b"")  # unreadable files are passed over
    assert native_size(mvtec, "train") == (20, 24)


# ----------------------------------------------------------------------------- uploads


def tree(p: Path) -> list[str]:
    return sorted(str(q.relative_to(p)) for q in p.rglob("*"))


def test_extract_zip_normal(tmp_path):
    data = zip_bytes({"set/a.png": b"A", "set/sub/b.png": b"BB", "set/": b"", "__MACOSX/set/._a.png": b"x"})
    out = extract_zip(data, tmp_path / "dest")
    assert [p.relative_to(tmp_path / "dest").as_posix() for p in out] == ["set/a.png", "set/sub/b.png"]
    assert out[1].read_bytes() == b"BB"
    assert tree(tmp_path / "dest") == ["set", "set/a.png", "set/sub", "set/sub/b.png"]
    (tmp_path / "f.zip").write_bytes(data)
    assert len(extract_zip(tmp_path / "f.zip", tmp_path / "dest2")) == 2


@pytest.mark.parametrize("bad", ["../evil.txt", "ok/../../evil.txt", "/abs/evil.txt", "C:/evil.txt", "..\\evil.txt", "link"])
def test_extract_zip_rejects_hostile_members(tmp_path, bad):
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")
    data = zip_bytes({"fine.txt": b"ok", bad: b"x"}, symlinks=("link",))
    with pytest.raises(DataError, match="member"):
        extract_zip(data, dest)
    assert tree(dest) == ["keep.txt"] and (dest / "keep.txt").read_text() == "mine"
    assert not (tmp_path / "evil.txt").exists()


def test_extract_zip_limits(tmp_path):
    many = zip_bytes({f"{i}.txt": b"x" for i in range(5)})
    with pytest.raises(DataError, match="limit of 4"):
        extract_zip(many, tmp_path / "d1", max_files=4)
    big = zip_bytes({"zeros.bin": bytes(2**20)})
    with pytest.raises(DataError, match="bytes"):
        extract_zip(big, tmp_path / "d2", max_total_bytes=2**19)
    assert not (tmp_path / "d1").exists() and not (tmp_path / "d2").exists()
    with pytest.raises(DataError, match="not a readable zip"):
        extract_zip(b"not a zip", tmp_path / "d3")


def test_extract_zip_bomb_with_lying_sizes(tmp_path):
    data = bytearray(zip_bytes({"a.txt": b"fine", "bomb.bin": bytes(4 * 2**20)}))
    # Claim 100 bytes uncompressed for bomb.bin in both its local and its central header.
    for sig, off in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        pos = data.index(sig, data.index(sig) + 1)  # second member's header
        struct.pack_into("<I", data, pos + off, 100)
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(DataError, match="bomb.bin"):
        extract_zip(bytes(data), dest, max_total_bytes=2**20)
    assert tree(dest) == []


def test_save_uploads(tmp_path):
    dest = tmp_path / "up"
    out = save_uploads([("C:\\Users\\me\\a.png", b"A"), ("set.zip", zip_bytes({"x/b.png": b"B"}))], dest)
    assert [p.relative_to(dest).as_posix() for p in out] == ["a.png", "x/b.png"]
    assert (dest / "a.png").read_bytes() == b"A"
    with pytest.raises(DataError, match="evil"):
        save_uploads([("c.png", b"C"), ("bad.zip", zip_bytes({"../evil": b"x"}))], dest)
    assert not (dest / "c.png").exists() and tree(dest) == ["a.png", "x", "x/b.png"]
    with pytest.raises(DataError, match="upload name"):
        save_uploads([("..", b"x")], dest)


# ----------------------------------------------------------------------------- noise patches


def test_noise_patches_deterministic_and_input_untouched():
    x = np.full((4, 20, 20, 3), 128, np.uint8)
    before = x.copy()
    a = add_noise_patches(x, 3, (2, 6), np.random.default_rng(5))
    b = add_noise_patches(x, 3, (2, 6), np.random.default_rng(5))
    c = add_noise_patches(x, 3, (2, 6), np.random.default_rng(6))
    assert np.array_equal(x, before) and a is not x
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    zero = add_noise_patches(x, 0, (2, 6), np.random.default_rng(5))
    assert np.array_equal(zero, x) and zero is not x


def test_noise_patch_size_and_colours():
    x = np.full((50, 30, 30, 1), 128, np.uint8)
    y = add_noise_patches(x, 1, (3, 5), np.random.default_rng(0))
    for img in y[..., 0]:
        rows, cols = np.nonzero(img != 128)
        h, w = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
        assert 3 <= h <= 5 and 3 <= w <= 5 and len(rows) == h * w  # one full rectangle
        v = img[rows[0], cols[0]]
        assert 40 <= v <= 44 or 235 <= v <= 239
    dark = np.mean([img.min() < 128 for img in y[..., 0]])
    assert 0.2 < dark < 0.8  # both colours occur
    clamped = add_noise_patches(np.full((2, 6, 8, 1), 128, np.uint8), 1, (20, 30), np.random.default_rng(0))
    assert (clamped != 128).all()
    with pytest.raises(ValueError, match="size_range"):
        add_noise_patches(x, 1, (5, 3), np.random.default_rng(0))


def test_noise_patterns_are_stencils():
    x = np.full((20, 16, 16, 3), 128, np.uint8)
    white = [np.full((8, 8), 255, np.uint8)]
    assert np.array_equal(add_noise_patches(x, 2, (4, 8), np.random.default_rng(0), white), x)
    half = np.full((8, 8, 3), 255, np.uint8)
    half[:, :4] = 0  # left half paints
    y = add_noise_patches(x, 1, (8, 8), np.random.default_rng(0), [half])
    changed = (y != 128).any(-1).sum((1, 2))
    assert (changed == 32).all()  # exactly half of each 8x8 patch, whatever the rotation


# ----------------------------------------------------------------------------- preprocess


def test_preprocess_crop_and_tiles():
    x = np.arange(2 * 20 * 30, dtype=np.int64).reshape(2, 20, 30, 1).astype(np.uint8)
    t = preprocess(x, np.random.default_rng(0), crop=(2, 3, 16, 24), nseg=4)
    assert t.shape == (2 * 16, 4, 6, 1)
    assert np.array_equal(t[0], x[0, 2:6, 3:9]) and np.array_equal(t[5], x[0, 6:10, 9:15])
    assert np.array_equal(t[16 + 15], x[1, 14:18, 21:27])
    with pytest.raises(ValueError, match="crop"):
        preprocess(x, np.random.default_rng(0), crop=(10, 0, 16, 24))


def test_preprocess_augmentation_shapes_and_determinism():
    x = np.random.default_rng(1).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    plain = preprocess(x, np.random.default_rng(0), nseg=2, n_aug=2)  # no jitter: exact copies
    assert plain.shape == (3 * 4 * 3, 16, 16, 3)
    assert np.array_equal(plain[0], plain[1]) and np.array_equal(plain[0], plain[2])
    assert np.array_equal(plain[3], x[0, :16, 16:])
    kw = dict(nseg=2, n_aug=2, offset=4, scale=(0.8, 1.2), brightness=0.1, contrast=0.2)
    a = preprocess(x, np.random.default_rng(7), **kw)
    b = preprocess(x, np.random.default_rng(7), **kw)
    c = preprocess(x, np.random.default_rng(8), **kw)
    assert a.dtype == np.uint8 and a.shape == plain.shape
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.array_equal(a[::3], plain[::3])  # originals are kept as they are
    assert not np.array_equal(a[1], plain[1])


def test_preprocess_brightness_only_shifts_levels():
    x = np.full((1, 8, 8, 1), 100, np.uint8)
    y = preprocess(x, np.random.default_rng(3), n_aug=20, brightness=0.2)
    shifts = y[1:, ..., 0].astype(int) - 100
    assert (shifts == shifts[:, :1, :1]).all()  # one constant shift per copy
    assert np.abs(shifts).max() <= 51 and len(np.unique(shifts[:, 0, 0])) > 5


def test_extract_zip_replaces_files_but_restores_them_on_failure(tmp_path):
    dest = tmp_path / "dest"
    (dest / "set").mkdir(parents=True)
    (dest / "set" / "a.txt").write_text("old")
    (dest / "set" / "b").mkdir()  # a member named set/b cannot replace a folder
    with pytest.raises(DataError, match="set/b"):
        extract_zip(zip_bytes({"set/a.txt": b"new", "set/new/c.txt": b"c", "set/b": b"x"}), dest)
    assert (dest / "set" / "a.txt").read_text() == "old" and tree(dest) == ["set", "set/a.txt", "set/b"]
    extract_zip(zip_bytes({"set/a.txt": b"new"}), dest)
    assert (dest / "set" / "a.txt").read_text() == "new" and not list(dest.glob(".udd-unzip-*"))


def test_kind_mismatch_between_a_run_and_its_data():
    from udd_core.data import kind_mismatch

    assert "trained on wafer maps but these data are images" in kind_mismatch("wafer", "image")
    assert "trained on images but these data are wafer maps" in kind_mismatch("mvtec", "wafer")
    assert kind_mismatch("folder", "image") is None and kind_mismatch("wafer", "wafer") is None
    assert kind_mismatch(None, "wafer") is None  # a reference-package folder records no data


def test_same_data_compares_resolved_paths(tmp_path, monkeypatch):
    from udd_core.data import resolved, same_data

    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "d").mkdir()
    assert resolved("~/d") == (tmp_path / "d").resolve()
    assert same_data("~/d", str(tmp_path / "d")) and same_data(tmp_path / "x" / ".." / "d", tmp_path / "d")
    assert not same_data(tmp_path / "d", tmp_path / "e")
    assert not same_data(tmp_path / "d", None) and not same_data("", tmp_path / "d")  # nothing recorded or given


def test_a_damaged_wafer_file_is_named_before_the_models_channels(tmp_path):
    """QA: a truncated .npz with a 1-channel model was reported as 'wafer maps need 3 input channels'."""
    good = tmp_path / "good.npz"
    np.savez(good, maps=np.ones((4, 8, 8), np.uint8))
    damaged = tmp_path / "w_trunc.npz"
    damaged.write_bytes(good.read_bytes()[:100])
    for call in (lambda p: estimate_cache_bytes(p, (1, 8, 8)), lambda p: load_dataset(p, (1, 8, 8))):
        with pytest.raises(DataError, match=r"w_trunc\.npz: not a readable numpy file"):
            call(damaged)
        with pytest.raises(DataError, match="wafer maps need 3 input channels"):  # a sound file: the channels
            call(good)


def test_a_model_of_other_channels_is_refused_naming_the_config_field(tmp_path):
    """QA: a 4-channel config got 'input_shape must be (C, H, W) with C in {1, 3}', naming no field."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / "a.png")
    with pytest.raises(DataError, match=r"^block_size_in\[0\]\[0\]: the model takes 4 input channels; data load "
                                        r"as 1 \(gray\) or 3"):
        load_dataset(folder, (4, 8, 8))
    with pytest.raises(DataError, match="H, W >= 1"):
        load_dataset(folder, (1, 0, 8))


def test_a_train_only_set_scored_on_its_test_split_is_told_which_splits_it_has(tmp_path):
    """QA sweep 11: "no test folder" alone left the user to guess that the train split would do."""
    png(tmp_path / "set" / "train" / "good" / "a.png", np.zeros((8, 8), np.uint8))
    with pytest.raises(DataError, match=r"set: no test folder \(it has train/good only: score the train split"):
        load_dataset(tmp_path / "set", (1, 8, 8), split="test")
    assert len(load_dataset(tmp_path / "set", (1, 8, 8), split="train")) == 1
