"""Pictures of images and model outputs: wafer colours, clipping, upscaling, probes, PNG files and zips."""
import io
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from udd_core import display
from udd_core.data import wafer_to_onehot


def test_shaded_wafers_blend_good_to_failing():
    y = torch.zeros((1, 3, 1, 3))
    y[0, 0, 0, 0] = 1.0  # outside
    y[0, 1, 0, 1], y[0, 2, 0, 1] = 0.8, 0.2  # mostly good
    y[0, 1, 0, 2], y[0, 2, 0, 2] = 0.4, 0.6  # argmax says failing
    out = display.to_display(y, "wafer", min_side=1, shaded=True)[0, 0]
    good, fail = (np.array(c, dtype=float) for c in display.WAFER_COLOURS[1:])
    assert tuple(out[0]) == display.WAFER_COLOURS[0]
    np.testing.assert_allclose(out[1], 0.8 * good + 0.2 * fail, atol=0.51)
    np.testing.assert_allclose(out[2], 0.4 * good + 0.6 * fail, atol=0.51)
    hard = display.to_display(y, "wafer", min_side=1)[0, 0]
    assert tuple(hard[1]) == display.WAFER_COLOURS[1] and tuple(hard[2]) == display.WAFER_COLOURS[2]


def test_an_outline_draws_the_dies_of_the_source_wafer():
    y = torch.zeros((1, 3, 1, 3))
    y[0, 0, 0, 0] = y[0, 0, 0, 1] = 1.0  # the model says "outside" at dies 0 and 1 ...
    y[0, 1, 0, 2], y[0, 2, 0, 2] = 0.3, 0.7
    outline = np.array([[[0, 1, 2]]])  # ... but the source wafer has die 1
    hard = display.to_display(y, "wafer", min_side=1, outline=outline)[0, 0]
    assert [tuple(c) for c in hard] == [display.WAFER_COLOURS[0], display.WAFER_COLOURS[1], display.WAFER_COLOURS[2]]
    shaded = display.to_display(y, "wafer", min_side=1, shaded=True, outline=outline)[0, 0]
    assert tuple(shaded[0]) == display.WAFER_COLOURS[0] and tuple(shaded[1]) != display.WAFER_COLOURS[0]
    assert tuple(display.to_display(y, "wafer", min_side=1)[0, 0, 1]) == display.WAFER_COLOURS[0]  # no outline


def test_image_outputs_are_clipped_and_gray_is_2d():
    y = torch.tensor([-0.5, 0.25, 1.7]).view(1, 1, 1, 3)
    out = display.to_display(y, "image", min_side=1)
    assert out.shape == (1, 1, 3) and out.tolist() == [[[0, 64, 255]]]
    rgb = display.to_display(torch.full((2, 3, 40, 50), 0.5), "image")
    assert rgb.shape == (2, 160, 200, 3) and (rgb == 128).all()  # upscaled x4: 40 -> 160 >= 128
    cache = np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4, 1)
    np.testing.assert_array_equal(display.to_display(cache, "image", min_side=1), cache[..., 0])
    with pytest.raises(ValueError, match="kind"):
        display.to_display(y, "video")


def test_png_and_zip_round_trip():
    imgs = [np.full((5, 6, 3), v, dtype=np.uint8) for v in (10, 200)] + [np.eye(4, dtype=np.uint8) * 255]
    names = display.output_names(3, "sample")
    assert names == ["sample_0000.png", "sample_0001.png", "sample_0002.png"]
    assert display.output_names(12345)[-1] == "sample_12344.png"
    with zipfile.ZipFile(io.BytesIO(display.zip_pngs(imgs, names))) as zf:
        assert zf.namelist() == names
        back = [np.asarray(Image.open(io.BytesIO(zf.read(n)))) for n in names]
    for a, b in zip(imgs, back):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="uint8"):
        display.png_bytes(np.zeros((4, 4), dtype=np.float32))


def test_write_pngs_refuses_to_overwrite_unless_forced(tmp_path):
    out = tmp_path / "new" / "dir"
    imgs = [np.full((4, 4, 3), v, dtype=np.uint8) for v in (1, 2)]
    paths = display.write_pngs(imgs, out, ["a.png", "b.png"])
    assert [p.name for p in paths] == ["a.png", "b.png"]
    before = (out / "a.png").read_bytes()
    other = [np.full((4, 4, 3), 99, dtype=np.uint8)] * 2
    with pytest.raises(ValueError, match="b.png: already exists"):
        display.write_pngs(other, out, ["c.png", "b.png"])
    assert not (out / "c.png").exists()  # nothing written when any name is taken
    display.write_pngs(other, out, ["a.png", "b.png"], force=True)
    assert (out / "a.png").read_bytes() != before
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png"]  # no temp files left


def test_probe_pairs_stack_input_over_reconstruction():
    inputs = np.zeros((3, 40, 50, 1), np.uint8)
    recons = np.full((3, 40, 50, 1), 7, np.uint8)
    pairs = display.probe_pairs(inputs, recons, "folder", min_side=40, gap=2)
    assert len(pairs) == 3 and pairs[0].shape == (82, 50)
    assert (pairs[0][:40] == 0).all() and (pairs[0][40:42] == 255).all() and (pairs[0][42:] == 7).all()
    assert [p.shape for p in display.probe_pairs(inputs, None, "folder", min_side=40)] == [(40, 50)] * 3
    with pytest.raises(ValueError, match="recons"):
        display.probe_pairs(inputs, recons[:2], "folder")


def test_wafer_probes_are_drawn_as_dies_and_enlarged():
    maps = np.array([[[0, 1], [2, 1]]], np.uint8)  # (1, 2, 2) die values
    (pair,) = display.probe_pairs(wafer_to_onehot(maps), wafer_to_onehot(maps[:, ::-1]), "wafer", min_side=6, gap=1)
    assert pair.shape == (13, 6, 3)  # 2 px enlarged x3, twice, and the gap
    assert tuple(pair[0, 0]) == display.WAFER_COLOURS[0] and tuple(pair[5, 0]) == display.WAFER_COLOURS[2]
    assert tuple(pair[7, 0]) == display.WAFER_COLOURS[2] and tuple(pair[6, 0]) == (255, 255, 255)  # flipped below
    gray = display.probe_pairs(np.zeros((2, 128, 100, 1), np.uint8), None, "mvtec")
    assert [g.shape for g in gray] == [(128, 100), (128, 100)]  # big enough already: left alone
    with pytest.raises(ValueError, match="uint8"):
        display.probe_pairs(np.zeros((2, 4, 4, 1)), None, "folder")


def test_class_output_names_number_within_each_class():
    assert display.class_output_names(["Donut", "Donut", "Edge-Loc", "Donut", "a/b c", ".."]) == [
        "Donut_0000.png", "Donut_0001.png", "Edge-Loc_0000.png", "Donut_0002.png", "a_b_c_0000.png", "class_0000.png"]


def test_short_names_keep_the_index_whole():
    assert display.short_name("/data/w.npz:maps[12]") == "maps[12]"  # short: the array and index
    s = display.short_name("/d/maps_26x26_unlabelled.npy[249]")
    assert len(s) == 24 and s.startswith("…") and s.endswith("unlabelled.npy[249]")
    long_file = display.short_name("C:\\photos\\a_very_long_photograph_name_0001.png")
    assert len(long_file) == 24 and long_file.startswith("…") and long_file.endswith("_0001.png")


def test_a_gallery_names_an_image_with_its_folder_and_a_wafer_map_without():
    """QA sweeps 19a and 19b: "003.png#tile1@x64,y0 · label spot" beside "003.png#tile1@x64,y0 · label scratch"."""
    assert display.folder_and_name("/d/test/scratch/003.png#tile1@x64,y0") == "scratch/003.png#tile1@x64,y0"
    assert display.folder_and_name("C:\\boards\\good\\001.png") == "good/001.png"
    assert display.folder_and_name("a.png") == "a.png"
    assert display.folder_and_name("/data/w.npz:maps[12]") == "w.npz:maps[12]"


def test_breakable_captions_wrap_file_names_between_their_parts():
    """QA sweep 7: Generate's narrow captions broke 'exp1_num_138599.jpg' as 'exp1_num_138599.jp' / 'g'."""
    zw = "\u200b"
    assert display.breakable("good · exp1_num_138599.jpg") == f"good · exp1_{zw}num_{zw}138599.{zw}jpg"
    assert display.breakable("good · exp1_num_138599.jpg").replace(zw, "") == "good · exp1_num_138599.jpg"
    assert display.breakable("a_ b.") == "a_ b."  # nothing added before a space or at the end
    assert display.breakable("σ 2.5 · #0") == "σ 2.5 · #0"  # a number stays whole


def test_breakable_takes_another_mark_and_breaks_paths_after_slashes():
    """The HTML report marks break points with <wbr> (nothing is copied with the text) and breaks a long path
    after its '/' (QA: it wrapped "exp1_num_192 | 126.jpg")."""
    assert display.breakable("/d/mt_small/exp1_num_192126.jpg", "<wbr>") == \
        "/<wbr>d/<wbr>mt_<wbr>small/<wbr>exp1_<wbr>num_<wbr>192126.<wbr>jpg"


@pytest.mark.parametrize("value, shown", [(0.77595123, "0.77595"), (0.917, "0.91700"), (1.28000009, "1.2800"),
                                          (12345.0, "12345"), (123456.0, "1.2346e+05"), (1e-5, "1.0000e-05")])
def test_scores_keep_five_significant_digits_with_their_trailing_zeros(value, shown):
    """QA sweep 12: 0.917 beside 0.77595 read as another precision."""
    assert display.score_text(value) == shown


@pytest.mark.parametrize("value, shown", [(7.09, "7.090"), (4.5612, "4.561"), (0.0, "0"), (0.01, "0.01000"),
                                          (1234.0, "1234")])
def test_scale_values_keep_four_significant_digits_with_their_trailing_zeros(value, shown):
    """QA sweep 13: a colour bar's top of 7.090 read "7.09" in the heatmaps' README and 4.561 in Inspect."""
    assert display.scale_text(value) == shown
