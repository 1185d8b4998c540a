"""udd_core.tile_rollup: a tiled run's tiles rolled up to the images they were cut from (QA sweep 17)."""
import html
import json
import re
import shutil

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import roc_auc_score

from inspect_fixtures import make_mvtec, make_run
from udd_core.cli import main
from udd_core.data import load_dataset
from udd_core.tiles import source_image
from udd_core.tile_rollup import rollup, rollup_summary

NAMES = ["a.png#tile0@x0,y0", "a.png#tile1@x16,y0", "b.png#tile0@x0,y0", "b.png#tile1@x16,y0", "c.png#tile0@x0,y0"]
LABELS = ["good", "crack", "good", "good", "good"]  # a's second tile holds its crack


def test_an_image_is_defective_when_any_tile_is_and_takes_its_worst_tile():
    rows = rollup(NAMES, LABELS, np.array([0.1, 0.9, 0.2, 0.6, 0.05]), threshold=0.5)
    assert [(r.image, r.label, r.tiles, r.above, r.score, r.worst, r.defective) for r in rows] == [
        ("a.png", "crack", 2, 1, 0.9, "#tile1@x16,y0", True),
        ("b.png", "good", 2, 1, 0.6, "#tile1@x16,y0", True),  # a normal image with one tile above: a false alarm
        ("c.png", "good", 1, 0, 0.05, "#tile0@x0,y0", False)]
    assert rollup_summary(rows) == ("3 images (5 tiles): 2 called defective (a tile above the threshold, which was "
                                    "set per tile: a normal photo of 2 tiles is flagged more often than one tile); "
                                    "1 of 1 defective caught, 1 of 2 normal called defective; image AUROC of the "
                                    "highest tile score 1.0000")
    assert rows[0].to_row()["verdict"] == "defective" and rows[0].to_row()["highest tile score"] == "0.90000"


def test_an_image_keeps_its_own_label_whatever_its_tiles_masks_say(tmp_path):
    """QA sweep 18: a defective photo with an empty mask (4 of magnetic_tile's uneven ones) has only "good"
    tiles, and was rolled up as a normal photo. The loader keeps each photo's own label for the roll-up; a
    plain folder's photos are "good" whatever their path, and with no label of its own a tile's defect counts."""
    names = ["/d/test/scratch/s03.png#tile0@x0,y0", "/d/test/scratch/s03.png#tile1@x64,y0",
             "/d/test/good/g.png#tile0@x0,y0"]
    rows = rollup(names, ["good", "good", "good"], [0.2, 0.3, 0.1], 0.5,
                  {"/d/test/scratch/s03.png": "scratch", "/d/test/good/g.png": "good"})
    assert {r.image.split("/")[-1]: r.label for r in rows} == {"s03.png": "scratch", "g.png": "good"}
    assert {r.label for r in rollup(names, ["good"] * 3, [0.2, 0.3, 0.1], 0.5)} == {"good"}  # not from its path
    data = make_mvtec(tmp_path / "parts", n_defect=2, size=32)
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(data / "ground_truth" / "spot" / "001_mask.png")  # empty
    ds = load_dataset(data, (1, 16, 16), split="test", tile=True)
    empty = str(data / "test" / "spot" / "001.png")
    assert [lab for n, lab in zip(ds.names, ds.labels) if n.startswith(empty)] == ["good"] * 4
    assert ds.source_labels[empty] == "spot" and len(ds.source_labels) == 6
    assert "6 images cut into 24 tiles of 16x16" in ds.notices  # 32 = 2 x 16: no overlap to speak of (QA 19a)
    plain = load_dataset(data / "test" / "spot", (1, 16, 16), tile=True)  # a plain folder named after a defect
    assert set(plain.source_labels.values()) == {"good"}
    assert load_dataset(data, (1, 16, 16), split="test").source_labels == {}  # not tiled: its labels are its own


def test_without_a_threshold_or_labels_it_says_less_and_whole_images_roll_up_to_nothing():
    rows = rollup(NAMES, ["good"] * 5, [0.1, 0.9, 0.2, 0.6, 0.05], threshold=None)
    assert all(r.above is None and r.defective is None for r in rows)
    assert rollup_summary(rows) == "3 images (5 tiles)"  # no verdicts, and no AUROC with one kind of label
    assert rollup(["a.png", "b.png"], ["good", "crack"], [0.1, 0.9], 0.5) == [] and rollup_summary([]) == ""
    assert source_image("dir/a b.png#tile3@x48,y0") == "dir/a b.png"
    assert source_image("m.npz:maps[2]") == "m.npz:maps[2]"  # not a tile: as it is


def test_udd_score_on_a_tiled_run_gives_the_verdict_per_image(tmp_path, capsys):
    data = make_mvtec(tmp_path / "parts")
    run = make_run(tmp_path / "tiled", data, size=16, tile=True)  # 32x32 photos: 4 tiles each
    assert main(["score", str(run), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["images"]) == 32 and len(out["per_image"]) == 8  # 4 good + 4 spot photos
    assert {r["label"] for r in out["per_image"]} == {"good", "spot"} and all(r["tiles"] == 4 for r in out["per_image"])
    assert all(r["worst"].startswith("#tile") and r["image"].endswith(".png") for r in out["per_image"])
    assert all(r["defective"] is (r["above"] > 0) for r in out["per_image"])  # the verdict itself (QA sweep 19a)
    # QA sweep 21: "image_auroc" counts tiles, said by "units"; the photos' own figures have their home too
    per, rows = out["per_image_metrics"], out["per_image"]
    assert out["units"] == "tiles" and per["images"] == 8 and per["tiles"] == 32
    assert per["caught"] == sum(r["defective"] for r in rows if r["label"] != "good") and per["defective"] == 4
    assert per["false_alarms"] == sum(r["defective"] for r in rows if r["label"] == "good") and per["normal"] == 4
    assert per["image_auroc"] == pytest.approx(roc_auc_score([r["label"] != "good" for r in rows],
                                                             [r["score"] for r in rows]))
    assert main(["score", str(run), "--report", str(tmp_path / "r.html")]) == 0
    text = capsys.readouterr().out
    assert "per image, its tiles rolled up: 8 images (32 tiles): " in text
    assert f"tile AUROC {out['metrics']['image_auroc']:.4f}" in text and "image AUROC 0" not in text
    assert f"   tile FPR {out['fpr']:.4f}   tile TPR {out['tpr']:.4f}" in text
    page = (tmp_path / "r.html").read_text()  # QA sweep 18: the report, the file that is mailed, had none
    assert "<h2>Per image, its tiles rolled up</h2><p class=sub>8 images (32 tiles): " in page
    assert page.count("#tile") >= 8  # each image's worst tile, named with where it lies
    assert "tile FPR " in page and "tile TPR " in page and "F1 max (per tile): " in page  # QA sweep 22
    assert main(["score", str(run), "--heatmaps", str(tmp_path / "hm")]) == 0
    key = (tmp_path / "hm" / "README.txt").read_text()
    assert "each is one tile cut from its photo" in key and "may look stretched" not in key
    assert "; a tile is defective when its score is above it, and a photo when any of its tiles is." in key
    # QA sweep 18: a whole copy of a tiled run's data set is its own data set too (its count is in tiles)
    copy = shutil.copytree(data, tmp_path / "copy")
    assert main(["score", str(run), "--data", str(copy)]) == 0
    assert "other data" not in capsys.readouterr().err


def test_a_whole_image_is_its_tiles_put_back_with_the_highest_map_where_they_overlap(tmp_path):
    """QA sweep 17 left: tiles alone did not show where on the part the defect lies. 40x40 photos in 16x16 tiles:
    the last row and column overlap their neighbours (origins 0, 16, 24)."""
    from udd_core.inspection import inspect_run
    from udd_core.inspection_views import whole_image_overlay
    from udd_core.tile_rollup import whole_image

    data = make_mvtec(tmp_path / "parts", n_train=4, n_good=1, n_defect=1, size=40)
    run = make_run(tmp_path / "tiled", data, size=16, tile=True)
    insp = inspect_run(run, str(data), split="test")
    assert ("2 images cut into 18 tiles of 16x16, the last row and column of each flush with the far edges "
            "(overlapping their neighbours), so that every pixel is in a tile") in insp.notices
    photo = str(data / "test" / "spot" / "000.png")
    whole = whole_image(insp, photo)
    assert np.array_equal(whole.image[..., 0], np.asarray(Image.open(photo)))  # every pixel back in place
    assert np.array_equal(whole.mask, np.asarray(Image.open(data / "ground_truth" / "spot" / "000_mask.png")) > 0)
    tiles = [i for i, n in enumerate(insp.names) if n.startswith(photo + "#")]
    assert len(tiles) == 9 and whole.map.max() == insp.maps[tiles].max()
    at = {insp.names[i].rsplit("@", 1)[1]: insp.maps[i] for i in tiles}
    assert whole.map[8, 24] == max(at["x16,y0"][8, 8], at["x24,y0"][8, 0])  # column 24 lies in both tiles
    own = whole.own_scale(insp.pixel_threshold)  # its median pixel to its highest, the threshold kept
    assert (own.vmin, own.vmax, own.threshold) == (float(np.median(whole.map)), float(whole.map.max()),
                                                   insp.pixel_threshold)
    assert not np.array_equal(whole_image_overlay(insp, photo, own_scale=True)[0], whole_image_overlay(insp, photo)[0])
    picture, caption = whole_image_overlay(insp, photo)
    assert picture.shape == (160, 160, 3) and caption.startswith("spot/000.png, 40x40: spot · highest tile score ")
    with pytest.raises(ValueError, match="image: 'x.png' is not an image of these tiles"):
        whole_image(insp, "x.png")


def test_exports_and_the_report_of_a_tiled_run_hold_each_photo_whole(tmp_path, capsys):
    data = make_mvtec(tmp_path / "parts", n_train=4, n_good=2, n_defect=2, size=32)
    run = make_run(tmp_path / "tiled", data, size=16, tile=True)
    assert main(["score", str(run), "--heatmaps", str(tmp_path / "hm"), "--report", str(tmp_path / "r.html")]) == 0
    err = capsys.readouterr().err
    assert "wrote 16 tile heatmaps and 4 whole images to" in err
    assert "the threshold rests on 4 validation tiles, too few" in err  # QA sweep 20: "4 validation images"
    wholes = sorted(p.name for p in (tmp_path / "hm").glob("whole-*.png"))
    assert wholes == ["whole-good_000.png", "whole-good_001.png", "whole-spot_000.png", "whole-spot_001.png"]
    assert Image.open(tmp_path / "hm" / "whole-spot_000.png").size == (128, 128)  # 32x32 enlarged 4x
    key = (tmp_path / "hm" / "README.txt").read_text()
    assert "whole-*.png: each photo with its tiles' maps put back in place" in key
    assert "\nwhole-spot_001.png\tspot\t" in key and len(list((tmp_path / "hm").glob("*.png"))) == 1 + 16 + 4
    page = (tmp_path / "r.html").read_text()
    assert "<h2>Whole images, highest score first</h2><p class=sub>The 4 highest-scoring images" in page
    # QA sweep 20: the report's first line counted tiles, its galleries called tiles "images", and the whole images
    # came before the colour key
    first = re.search(r"<p class=summary>([^<]+)</p>", page).group(1)
    assert re.fullmatch(r"At the threshold \S+, per image \(any tile above it\): \d of 2 defective images caught; \d "
                        r"of 2 normal images called defective\. Per tile: \d+ of \d+ defective tiles caught, \d+ of "
                        r"\d+ normal tiles called defective\.", html.unescape(first)), first
    assert re.search(r"<h2>Worst 8 tiles by score</h2>", page)
    assert page.index('alt="colour scale"') < page.index("<h2>Whole images")
    # QA sweep 20 F4: on the fixed scale a photo's crack can stay dark; each whole photo on its own scale beside it
    whole = page[page.index("<h2>Whole images"):]
    assert "<th>fixed scale</th><th>its own scale</th>" in whole
    rows = re.findall(r"<tr><td>[^<]+<br>[^<]+</td>(.*?)</tr>", whole)
    assert len(rows) == 4 and all(r.count('src="data:image/png;base64,') == 2 for r in rows)
