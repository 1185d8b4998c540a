"""udd_core.sources: the data sets offered for training, their size estimate, uploads and the set cache."""
import io
import re
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from archives import zip_bytes
from udd_core import sources
from udd_core.data import DataError


def png(path: Path, size=(20, 16), value=100) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(size[::-1], value, np.uint8)).save(path)
    return path


@pytest.fixture
def tree(tmp_path) -> Path:
    """<tmp>/app (the checkout) with sample_data, and <tmp>/shared/data next to it."""
    app = tmp_path / "app"
    for i in range(3):
        png(app / "sample_data" / "surface" / "train" / "good" / f"{i}.png")
    np.savez(app / "sample_data" / "maps.npz", maps=np.ones((5, 8, 8), np.uint8))
    (app / "sample_data" / "README.md").write_text("not data")
    (app / "sample_data" / "generate.py").write_text("# not data")
    shared = tmp_path / "shared" / "data"
    png(shared / "plain" / "a.png")
    (shared / "wm").mkdir(parents=True)
    np.save(shared / "wm" / "m.npy", np.ones((4, 6, 6), np.uint8))
    np.savez(shared / "wm" / "l.npz", maps=np.ones((2, 6, 6), np.uint8))
    (shared / "wm" / "README.md").write_text("x")
    (shared / "empty").mkdir()
    return app


def test_sources_list_sample_then_shared_data(tree):
    found = sources.list_sources(tree)
    labels = [s.label for s in found]
    assert labels == ["sample_data/maps.npz (wafer maps)", "sample_data/surface (MVTec folder)",
                      "shared/data/plain (image folder)", "shared/data/wm/l.npz (wafer maps)",
                      "shared/data/wm/m.npy (wafer maps)"]
    assert all(s.path.is_absolute() and s.path.exists() for s in found)
    assert [s.kind for s in found] == ["wafer", "mvtec", "folder", "wafer", "wafer"]


def test_without_shared_data_only_the_samples_are_listed(tmp_path):
    png(tmp_path / "app" / "sample_data" / "s" / "x.png")
    assert [s.label for s in sources.list_sources(tmp_path / "app")] == ["sample_data/s (image folder)"]
    assert sources.list_sources(tmp_path / "nothing") == []


def test_the_bundled_sample_data_is_offered():
    root = Path(__file__).resolve().parents[1]
    kinds = {s.path.name: s.kind for s in sources.list_sources(root)}
    assert kinds.get("surface") == "mvtec" and kinds.get("wafer_maps_26x26.npz") == "wafer"


def test_describe_says_before_start_that_a_one_channel_model_drops_colour(tmp_path):
    """QA sweep 19b: colour PCB photos went gray with the default 1-channel model, said only once training began."""
    rng = np.random.default_rng(0)
    (tmp_path / "colour").mkdir()
    (tmp_path / "gray_as_rgb").mkdir()
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(tmp_path / "colour" / f"{i}.png")
        g = rng.integers(0, 256, (24, 24), dtype=np.uint8)
        Image.fromarray(np.dstack([g, g, g])).save(tmp_path / "gray_as_rgb" / f"{i}.jpg")  # RGB files, gray photos
    said = ("; its images are in colour and this model takes 1 channel: the colour is dropped (a 3-channel model "
            "keeps it)")
    assert sources.describe(tmp_path / "colour", (1, 24, 24)).endswith(said)
    assert said not in sources.describe(tmp_path / "colour", (3, 24, 24))  # kept
    assert said not in sources.describe(tmp_path / "gray_as_rgb", (1, 24, 24))  # nothing to drop


def test_describe_counts_and_sizes_before_loading(tree):
    text = sources.describe(tree / "sample_data" / "surface", (1, 32, 32))
    assert text == "MVTec folder: 3 images, 0.00293 MB in memory at 1x32x32"  # 3 * 32 * 32 bytes
    assert "5 images" in sources.describe(tree / "sample_data" / "maps.npz", (3, 8, 8))
    # A training step holds the batch size, or every image when there are fewer (QA sweep 11: a batch of 16
    # on 1 uploaded image was counted as 16 images' activations).
    assert text + ", + 0.0286 MB for a training step on 3" == sources.describe(
        tree / "sample_data" / "surface", (1, 32, 32), step_per_image=10_000, batch_size=16)
    assert sources.describe(tree / "sample_data" / "surface", (1, 32, 32), step_per_image=10_000,
                            batch_size=2).endswith("+ 0.0191 MB for a training step on 2")
    tiled = sources.describe(tree / "sample_data" / "surface", (1, 16, 16), tile=True)  # QA sweep 12: "12 images"
    n_tiles = int(re.match(r"MVTec folder: 3 images → (\d+) tiles, ", tiled).group(1))
    assert n_tiles > 3 and f", {n_tiles * 16 * 16 / 2**20:.3g} MB in memory at 1x16x16" in tiled
    # QA sweep 20: images smaller than one tile are enlarged to hold one, not skipped: one tile each here
    assert sources.describe(tree / "sample_data" / "surface", (1, 64, 64), tile=True).startswith(
        "MVTec folder: 3 images → 6 tiles, ")  # 20x16 (WxH) enlarged to 80x64: 2 tiles each
    with pytest.raises(DataError, match="no such file"):
        sources.describe(tree / "missing", (1, 32, 32))


def test_default_run_names_are_unique_and_valid(tmp_path):
    t = 1_700_000_000
    a = sources.default_run_name(tmp_path, "/data/My Surface set!", now=t)
    assert a == "My-Surface-set-" + time.strftime("%Y%m%d-%H%M%S", time.localtime(t))
    (tmp_path / a).mkdir()
    b = sources.default_run_name(tmp_path, "/data/My Surface set!", now=t)
    assert b == a + "-2"
    assert sources.default_run_name(tmp_path, None, now=t).startswith("run-")
    assert sources.default_run_name(tmp_path, "/x/....", now=t).startswith("run-")  # nothing usable in the name


def test_save_upload_makes_a_new_folder_each_time(tmp_path):
    img = png(tmp_path / "x.png").read_bytes()
    a, notes = sources.save_upload([("x.png", img), ("pack.zip", zip_bytes({"d/y.png": img}))], tmp_path / "runs")
    b, _ = sources.save_upload([("x.png", img)], tmp_path / "runs")
    assert a != b and a.parent == b.parent == tmp_path / "runs" / "uploads" and notes == []
    assert sorted(p.relative_to(a).as_posix() for p in a.rglob("*.png")) == ["d/y.png", "x.png"]


def test_a_replaced_upload_is_removed_unless_a_run_trained_on_it(tmp_path):
    """QA sweep 11: each change of the upload selection left a full copy under runs/uploads."""
    import json

    img = png(tmp_path / "x.png").read_bytes()
    root = tmp_path / "runs"
    used, _ = sources.save_upload([("x.png", img)], root)
    unused, _ = sources.save_upload([("y.png", img)], root)
    (root / "r1").mkdir()
    (root / "r1" / "train.json").write_text(json.dumps({"data": {"path": str(used), "kind": "folder"}}))
    assert not sources.discard_upload(used, root) and used.is_dir()  # a run trained on it: kept
    assert sources.discard_upload(unused, root) and not unused.exists()
    assert not sources.discard_upload(tmp_path, root) and tmp_path.is_dir()  # not an upload folder: untouched


def test_unreadable_images_are_not_kept_and_named(tmp_path):
    img = png(tmp_path / "x.png").read_bytes()
    folder, notes = sources.save_upload([("x.png", img), ("a.png", b"not a png"), ("cut.png", img[:30])],
                                        tmp_path / "runs")
    assert [p.name for p in folder.iterdir()] == ["x.png"]  # the size estimate counts only what will load
    assert notes == ["left out 2 files that are not readable images: a.png, cut.png"]
    jpeg = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8)).save(jpeg, "JPEG")
    folder, notes = sources.save_upload([("x.png", img), ("truncated.jpg", jpeg.getvalue()[:500])], tmp_path / "runs")
    assert [p.name for p in folder.iterdir()] == ["x.png"]  # QA: a JPEG cut short passed the header check
    assert notes == ["left out 1 file that is not a readable image: truncated.jpg"]
    buf = io.BytesIO()
    np.save(buf, np.ones((2, 8, 8), np.uint8))
    folder, notes = sources.save_upload([("x.png", img), ("w_tiny.npy", buf.getvalue())], tmp_path / "runs")
    assert notes == ["left out w_tiny.npy: wafer files among images are not used; upload a wafer file on its own "
                     "to train on its maps"]  # QA: the maps were dropped without a word
    assert [p.name for p in folder.iterdir()] == ["x.png"]  # QA sweep 6: "left out", yet kept in the folder
    with pytest.raises(DataError, match=r"^upload a.png: 1 file that is not a readable image: a.png$"):
        sources.save_upload([("a.png", b"not a png")], tmp_path / "runs")  # nothing usable: refused whole
    assert len(list((tmp_path / "runs" / "uploads").iterdir())) == 3  # the kept uploads, nothing more


def test_two_uploads_of_one_name_are_refused_naming_both(tmp_path):
    """QA sweep 6: two zips of good/000.png ... kept only the second's 10 images, without a word."""
    img = png(tmp_path / "x.png").read_bytes()
    with pytest.raises(DataError, match=r"^upload: good/000.png comes twice \(b1.zip and b2.zip\); rename one"):
        sources.save_upload([("b1.zip", zip_bytes({"good/000.png": img})), ("b2.zip", zip_bytes({"good/000.png": img}))],
                            tmp_path / "runs")
    # QA sweep 12: "a.png comes twice (a.png and a.png)"
    with pytest.raises(DataError, match=r"^upload: a.png was added twice \(two files of that name\); remove or rename"):
        sources.save_upload([("a.png", img), ("C:\\other\\a.png", img)], tmp_path / "runs")
    with pytest.raises(DataError, match=r"^upload: 001.png comes twice \(001.png and set.zip\)"):
        sources.save_upload([("001.png", img), ("set.zip", zip_bytes({"001.png": img}))], tmp_path / "runs")
    assert list((tmp_path / "runs" / "uploads").iterdir()) == []  # nothing half kept


@pytest.mark.parametrize("member", ["../evil.png", "/abs/evil.png", "a/../../evil.png"])
def test_hostile_zip_is_refused_and_leaves_nothing(tmp_path, member):
    with pytest.raises(DataError) as e:
        sources.save_upload([("evil.zip", zip_bytes({"fine.png": b"1", member: b"2"}))], tmp_path / "runs")
    assert "\n" not in str(e.value) and str(e.value).startswith("evil.zip: zip member")
    assert list((tmp_path / "runs" / "uploads").iterdir()) == []
    assert not list(tmp_path.rglob("evil.png"))


def test_an_upload_without_images_is_refused_and_leaves_nothing(tmp_path):
    with pytest.raises(DataError, match=r"upload notes.zip: folder holds no images"):
        sources.save_upload([("notes.zip", zip_bytes({"a.txt": b"1", "b.csv": b"2"}))], tmp_path / "runs")
    assert list((tmp_path / "runs" / "uploads").iterdir()) == []


def test_upload_into_an_unwritable_runs_folder_is_a_data_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(DataError, match="cannot write uploads"):
        sources.save_upload([("a.png", b"1")], blocker / "runs")
    with pytest.raises(DataError, match="no files"):
        sources.save_upload([], tmp_path / "runs")


def test_dataset_cache_decodes_once_and_notices_changes(tree, monkeypatch):
    calls = []
    real = sources.load_dataset
    monkeypatch.setattr(sources, "load_dataset", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    cache = sources.DatasetCache(max_entries=2)
    folder = tree / "sample_data" / "surface"
    first = cache.get(folder, (1, 16, 16))
    assert cache.get(str(folder), [1, 16, 16]) is first and len(calls) == 1
    assert first.images.shape == (3, 16, 16, 1)
    cache.get(folder, (1, 8, 8))
    cache.get(folder, (1, 4, 4))  # a third set pushes out the oldest
    assert len(cache) == 2 and len(calls) == 3
    cache.get(folder, (1, 16, 16))
    assert len(calls) == 4
    png(folder / "train" / "good" / "new.png")  # the folder changed: decode again
    assert len(cache.get(folder, (1, 16, 16))) == 4 and len(calls) == 5
    with pytest.raises(DataError, match="input_shape"):
        cache.get(folder, None)


def test_training_set_picks_the_normal_images_and_reports_notes(tmp_path):
    maps = np.random.default_rng(0).integers(0, 3, (5, 8, 8)).astype(np.uint8)  # a labelled wafer file
    np.savez(tmp_path / "w.npz", maps=maps, labels=np.array(["none", "none", "none", "Scratch", "Donut"]))
    cache = sources.DatasetCache()
    normal, notes, groups = cache.training_set(tmp_path / "w.npz", (3, 8, 8))
    both, _, _ = cache.training_set(tmp_path / "w.npz", (3, 8, 8), train_on="all")
    assert normal.shape == (3, 8, 8, 3) and both.shape == (5, 8, 8, 3) and len(cache) == 1  # decoded once
    assert groups is None  # whole maps: no photos to keep together in the split
    assert any("3 normal images" in n and "the 2 labelled as defects left out" in n for n in notes)
    for empty in (None, ""):
        with pytest.raises(DataError, match="no data set given"):
            cache.training_set(empty, (3, 8, 8))


def test_a_path_typed_with_a_tilde_is_the_home_folder(tree, monkeypatch):
    monkeypatch.setenv("HOME", str(tree))  # ~ = the app folder of the fixture
    assert sources.describe("~/sample_data/surface", (1, 8, 8)).startswith("MVTec")
    assert sources.source_record("~/sample_data/surface")["path"] == str((tree / "sample_data" / "surface").resolve())
    images, _, _ = sources.DatasetCache().training_set("~/sample_data/surface", (1, 8, 8))
    assert images.shape == (3, 8, 8, 1)
    with pytest.raises(DataError, match=f"^{tree}/nothing: no such file or folder$"):
        sources.describe("~/nothing", (1, 8, 8))  # the error names the real folder


def test_sources_never_import_streamlit():
    import subprocess
    import sys

    code = "import sys, udd_core.sources; assert 'streamlit' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


def test_new_run_path_and_source_record(tmp_path):
    from udd_core.sources import new_run_path, source_record

    (tmp_path / "taken").mkdir()
    with pytest.raises(ValueError, match="run name 'taken': a run of that name already exists"):
        new_run_path(tmp_path, "taken", None)
    assert new_run_path(tmp_path, "fresh", None) == tmp_path / "fresh"
    auto = new_run_path(tmp_path, "", tmp_path / "parts")  # empty: the data set's default name
    assert auto.parent == tmp_path and auto.name.startswith("parts-") and not auto.exists()
    data = tmp_path / "imgs"
    data.mkdir()
    Image.new("L", (8, 8)).save(data / "a.png")
    assert source_record(data, tile=True) == {"path": str(data.resolve()), "kind": "folder", "tile": True}


def test_an_upload_of_a_wafer_file_without_maps_names_the_file_and_why(tmp_path):
    """QA sweep 8: an object array, maps of the wrong rank or an empty file uploaded on the Train page said only
    "<upload folder>: no training images"; now each is refused at upload as `udd train` refuses the file."""
    def npz(**arrays) -> bytes:
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return buf.getvalue()

    objects = np.empty(2, object)
    objects[:] = [np.zeros((3, 3)), np.zeros((4, 4))]
    for name, data, why in (("objarr.npz", npz(maps=objects), "objarr.npz: holds no (N, H, W) wafer map array; an "
                             "object array would need pickle"),
                            ("ndim.npz", npz(maps=np.ones((10, 26))), "ndim.npz: holds no (N, H, W) wafer map array"),
                            ("empty.npz", npz(maps=np.zeros((0, 26, 26))), "empty.npz: holds no wafer maps")):
        with pytest.raises(DataError) as e:
            sources.save_upload([(name, data)], tmp_path)
        assert str(e.value).startswith(f"upload {why}"), e.value
    with pytest.raises(DataError, match="upload a.npz, b.npz: upload one wafer file at a time"):
        sources.save_upload([("a.npz", npz(maps=np.ones((2, 5, 5)))), ("b.npz", npz(maps=np.ones((2, 5, 5))))], tmp_path)
    assert not any((tmp_path / "uploads").iterdir())  # nothing left behind
    folder, _ = sources.save_upload([("ok.npz", npz(maps=np.ones((2, 5, 5))))], tmp_path)
    assert (folder / "ok.npz").is_file()


def test_gib_reads_as_a_number_a_person_writes():
    """QA sweep 11: a memory refusal said "2.08e+03 GiB"."""
    assert [sources.gib(v * 2**30) for v in (0.5, 12.345, 2080.4, 171.0)] == ["0.500", "12.3", "2,080", "171"]
    assert [sources.gib(v * 2**30) for v in (21.97, 99.97)] == ["22.0", "100"]  # QA sweep 12: "22" beside "22.3"
