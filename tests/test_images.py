"""Tests for udd_core.images: decoding any image mode to 8 bits, broken files, bombs, tiles, patterns."""
from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from udd_core.data import DataError, load_dataset
from udd_core.images import conversion_notices, decode_one, load_patterns, pattern_folder_problem, to_8bit

from test_data import gray, png


def test_odd_modes_to_rgb(tmp_path):
    a16 = np.array([[0, 32768], [65535, 1000]], np.uint16).repeat(4, 0).repeat(4, 1)
    png(tmp_path / "a_16bit.png", a16)
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 255
    rgba[:4, ..., 3] = 0  # top half transparent
    png(tmp_path / "b_rgba.png", rgba, "RGBA")
    pal = Image.new("P", (8, 8))
    pal.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    pal.paste(1, (0, 0, 8, 8))
    pal.save(tmp_path / "c_palette.png")
    bit = np.zeros((8, 8), bool)
    bit[:, 4:] = True
    Image.fromarray(bit).save(tmp_path / "d_1bit.png")
    Image.fromarray(np.full((8, 8), 0.5, np.float32), "F").save(tmp_path / "e_float.tif")

    s = load_dataset(tmp_path, (3, 8, 8))
    assert s.images.shape == (5, 8, 8, 3)
    im16, rgb, p, b, f = s.images
    assert im16[0, 0, 0] == 0 and im16[0, 4, 0] == 128 and im16[4, 0, 0] == 255 and (im16[..., 0] == im16[..., 2]).all()
    assert (rgb[:4] == 0).all() and (rgb[4:] == [200, 0, 0]).all()  # transparent -> black
    assert (p == [10, 200, 30]).all()
    assert (b[:, :4] == 0).all() and (b[:, 4:] == 255).all()
    assert (f == 128).all()
    text = " ".join(s.notices)
    for word in ("16-bit", "transparent pixels composited onto black: on a lighter part a black area may score as a "
                 "defect: b_rgba.png", "palette", "1-bit",
                 "floating-point", "3 grayscale images repeated"):
        assert word in text


def test_stretched_images_and_real_transparency_are_told_apart_and_named(tmp_path):
    """QA sweep 19b: portrait boards squeezed to landscape were counted as "resized" with the 4:3 ones, and fully
    opaque RGBA files as "with transparency"; no file was named, and both then scored as defects."""
    rgb = np.full((30, 40, 3), 90, np.uint8)
    png(tmp_path / "land.png", rgb, "RGB")  # 4:3, as the model's 60x80
    png(tmp_path / "big.png", np.full((60, 80, 3), 90, np.uint8), "RGB")  # the size itself
    png(tmp_path / "port.png", rgb.transpose(1, 0, 2), "RGB")  # 3:4: stretched
    png(tmp_path / "opaque.png", np.dstack([rgb, np.full((30, 40), 255, np.uint8)]), "RGBA")
    s = load_dataset(tmp_path, (3, 60, 80))
    assert sorted(n for n in s.notices if "bilinear" in n) == [
        "1 image of another aspect ratio stretched to 60x80 (bilinear), its shapes distorted: fine when every image "
        "is stretched alike, else a likely false alarm; rotate, crop or pad it, or cut the photos into tiles: port.png",
        "2 images resized to 60x80 (bilinear)"]  # land.png and opaque.png keep their 4:3
    assert not any("transparen" in n for n in s.notices)  # an alpha channel opaque everywhere changes nothing


def test_rgb_to_gray_uses_pillow_luminance(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    png(tmp_path / "c.png", rgb)
    s = load_dataset(tmp_path, (1, 8, 8))
    expect = np.asarray(Image.fromarray(rgb).convert("L"))
    assert np.array_equal(s.images[0, ..., 0], expect)
    assert any("1 RGB image converted to 1 channel by luminance" in n for n in s.notices)


def test_broken_files_are_skipped_with_notices(tmp_path):
    png(tmp_path / "good.png", gray(10, 10))
    (tmp_path / "empty.png").write_bytes(b"")
    buf = io.BytesIO()
    Image.fromarray(gray(64, 64)).save(buf, "PNG")
    (tmp_path / "truncated.png").write_bytes(buf.getvalue()[:200])
    (tmp_path / "text.png").write_text("hello, not a png")
    Image.fromarray(gray(10, 10, 3)).save(tmp_path / "really_png.jpg", "PNG")  # wrong extension, valid image
    s = load_dataset(tmp_path, (1, 10, 10))
    assert sorted(Path(n).name for n in s.names) == ["good.png", "really_png.jpg"]
    skipped = [n for n in s.notices if n.startswith("skipped")]
    assert len(skipped) == 3
    for name in ("empty.png", "truncated.png", "text.png"):
        assert any(name in n for n in skipped)
    # each says why in words: QA sweep 21, a truncated file was "not a readable image (OSError)"
    said = " | ".join(skipped)
    assert "empty file" in said and "no image format Pillow knows" in said and "(OSError)" not in said


def test_linked_folders_are_read_and_broken_links_named(tmp_path):
    """QA sweep 15b: images in a linked subfolder read as "no images" (Path.rglob does not follow links before
    Python 3.13), and dangling or looping links were skipped with no notice."""
    for i in range(3):
        png(tmp_path / "elsewhere" / f"{i}.png", gray(10, 10, i))
    data = tmp_path / "data"
    (data / "set1").mkdir(parents=True)
    (data / "set1" / "linked").symlink_to(tmp_path / "elsewhere")
    (data / "loop").symlink_to(data)  # walked once, not forever
    (data / "dangling.png").symlink_to(tmp_path / "nowhere.png")
    (data / "a.png").symlink_to(data / "b.png")
    (data / "b.png").symlink_to(data / "a.png")
    s = load_dataset(data, (1, 10, 10))
    assert sorted(Path(n).name for n in s.names) == ["0.png", "1.png", "2.png"]
    skipped = sorted(n for n in s.notices if n.startswith("skipped"))
    assert skipped == ["skipped a.png: too many levels of symbolic links",
                       "skipped b.png: too many levels of symbolic links",
                       "skipped dangling.png: no such file or directory"]


def test_nothing_loadable_names_folder(tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.png").write_text("nope")
    with pytest.raises(DataError, match=r"bad: no loadable images \(1 file skipped; x.png: not a readable image "
                                        r"\(no image format Pillow knows\)"):
        load_dataset(tmp_path / "bad", (1, 8, 8))


def test_decompression_bombs_are_skipped(tmp_path, monkeypatch):
    png(tmp_path / "a_small.png", gray(20, 20))
    png(tmp_path / "b_warn.png", gray(40, 40))  # 1600 px: above the limit (Pillow warns)
    png(tmp_path / "c_error.png", gray(60, 60))  # 3600 px: above twice the limit (Pillow raises)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    s = load_dataset(tmp_path, (1, 8, 8))
    assert [Path(n).name for n in s.names] == ["a_small.png"]
    bombs = [n for n in s.notices if "decompression bomb" in n]
    assert len(bombs) == 2 and "b_warn.png" in bombs[0] and "c_error.png" in bombs[1]


@pytest.mark.parametrize("mode, tag", [("L", None), ("RGB", None), ("1", "1-bit"), ("I;16", "16-bit"),
                                       ("F", "float"), ("RGBA", "alpha"), ("LA", "alpha"), ("P", "palette"),
                                       ("CMYK", "CMYK")])
def test_to_8bit_modes_and_tags(mode, tag):
    out, got = to_8bit(Image.new(mode, (4, 3)))
    assert got == tag and out.mode in ("L", "RGB") and out.size == (4, 3)


def test_clipped_32_bit_and_float_images_and_extra_frames_are_named(tmp_path):
    """QA sweep 15b: a 32-bit TIFF above 65535 turned white and a float TIFF above 255 was clipped, each with
    the plain "scaled" notice; an animated GIF trained on its first frame with no word."""
    Image.fromarray(np.full((8, 8), 200_000, np.int32), "I").save(tmp_path / "deep.tif")
    Image.fromarray(np.full((8, 8), 1000.0, np.float32), "F").save(tmp_path / "hot.tif")
    Image.fromarray(np.full((8, 8), 0.5, np.float32), "F").save(tmp_path / "unit.tif")  # 0..1: scaled, not clipped
    frames = [Image.fromarray(gray(8, 8, i)) for i in range(3)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    png(tmp_path / "plain.png", gray(8, 8))
    notes = [str(n) for n in load_dataset(tmp_path, (1, 8, 8)).notices]
    assert any(n.startswith("1 32-bit image with values outside 0..65535 clipped") and n.endswith(": deep.tif")
               for n in notes), notes
    assert any(n.startswith("1 floating-point image with values outside 0..255 clipped") and n.endswith(": hot.tif")
               for n in notes), notes
    assert "1 floating-point image scaled to 8 bits" in notes  # unit.tif alone
    assert any(n.startswith("1 image with several frames") and n.endswith(": anim.gif") for n in notes), notes


def test_12_bit_camera_data_in_16_bit_pngs_keeps_its_grey_levels(tmp_path):
    """QA sweep 10: values 0..3808 scaled as 16-bit became 15 grey levels, with only the generic note."""
    a12 = np.linspace(0, 3808, 64).reshape(8, 8).astype(np.uint16)
    png(tmp_path / "cam.png", a12)
    s = load_dataset(tmp_path, (1, 8, 8))
    assert len(np.unique(s.images)) == 64 and s.images.max() == round(3808 * 255 / 4095)
    assert any("holding only values up to 4095 (12-bit camera data)" in n for n in s.notices)
    png(tmp_path / "full.png", (a12.astype(np.uint32) * 16).astype(np.uint16))  # a 16-bit image beside it
    assert any("scaled two ways" in n for n in load_dataset(tmp_path, (1, 8, 8)).notices)


def test_decode_one_resizes_repeats_and_explains_skips(tmp_path):
    src = png(tmp_path / "a.png", gray(10, 12))
    arr, masks, tags, note, _ = decode_one(src, None, (5, 6, 3), tile=False)
    assert arr.shape == (1, 5, 6, 3) and arr.dtype == np.uint8 and masks is None and note is None
    assert tags == ["resized", "to-rgb"] and (arr[..., 0] == arr[..., 2]).all()
    (tmp_path / "empty.png").write_bytes(b"")
    assert decode_one(tmp_path / "empty.png", None, (5, 6, 1), tile=False) == "empty file"
    # QA sweep 20: a photo smaller than one tile is enlarged to hold one (aspect kept), not skipped: 10x12 (HxW)
    # at 16x16 tiles becomes 16x19, two tiles wide, the second flush with the right edge
    arr, _, tags, _, origins = decode_one(src, None, (16, 16, 1), tile=True)
    assert arr.shape == (2, 16, 16, 1) and "tile-enlarged" in tags and origins == [(0, 0), (0, 3)]


def test_decode_one_unreadable_mask_is_a_note(tmp_path):
    src = png(tmp_path / "a.png", gray(8, 8))
    (tmp_path / "a_mask.png").write_text("not a mask")
    arr, masks, _, note, _ = decode_one(src, tmp_path / "a_mask.png", (8, 8, 1), tile=False)
    assert arr.shape == (1, 8, 8, 1) and masks is None and "a_mask.png unreadable" in note


def test_conversion_notices_count_and_size():
    text = conversion_notices(Counter({"resized": 3, "palette": 1, "YCbCr": 2}), "32x48")
    assert sorted(text) == ["1 palette image expanded to RGB", "2 YCbCr images converted to RGB",
                            "3 images resized to 32x48 (bilinear)"]  # QA: "1 palette images"


def test_a_mask_of_another_size_or_with_many_values_is_noted(tmp_path):
    """QA: a 10x10 mask was stretched over its 219x264 photo, and a mask of random values taken as it was,
    both without a word, and the pixel metrics reported as valid."""
    src = png(tmp_path / "a.png", gray(20, 24))
    small = png(tmp_path / "a_mask.png", np.full((10, 10), 255, np.uint8))
    _, masks, tags, note, _ = decode_one(src, small, (8, 8, 1), tile=False)
    assert note == "mask a_mask.png is 10x10, its image 24x20: stretched over the image; check that it belongs to it"
    assert masks.all() and "mask-levels" not in tags
    levels = png(tmp_path / "b_mask.png", (np.arange(20 * 24).reshape(20, 24) % 7 * 30).astype(np.uint8))
    _, masks, tags, note, _ = decode_one(src, levels, (8, 8, 1), tile=False)
    assert note is None and tags.count("mask-levels") == 1
    assert conversion_notices(Counter(tags), "8x8")[0] == ("1 defect mask with more than two values: every value "
                                                           "above 0 counts as defect")
    fine = png(tmp_path / "c_mask.png", np.where(np.arange(20 * 24).reshape(20, 24) % 2, 255, 0).astype(np.uint8))
    assert decode_one(src, fine, (8, 8, 1), tile=False)[3] is None  # a right-sized 0/255 mask: nothing to say


def test_load_patterns_skips_broken_and_names_empty_folder(tmp_path):
    png(tmp_path / "p" / "bar.png", np.full((6, 9, 3), 200, np.uint8))
    (tmp_path / "p" / "broken.png").write_bytes(b"nope")
    assert [a.shape for a in load_patterns(tmp_path / "p")] == [(6, 9)]
    (tmp_path / "q").mkdir()
    with pytest.raises(DataError, match="q: holds no image files to use as patterns"):
        load_patterns(tmp_path / "q")
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "broken.png").write_bytes(b"nope")
    with pytest.raises(DataError, match="r: no readable pattern images"):
        load_patterns(tmp_path / "r")
    with pytest.raises(DataError, match="pattern folder not found"):
        load_patterns(tmp_path / "missing")
    with pytest.raises(DataError, match="bar.png: a file; the pattern option takes a folder"):  # QA: "not found"
        load_patterns(tmp_path / "p" / "bar.png")
    # The Train page's check as the field is typed: no image is read (QA sweep 12: said only after Start)
    assert pattern_folder_problem(tmp_path / "p") is None and pattern_folder_problem("  ") is None
    assert pattern_folder_problem(tmp_path / "q") == f"{tmp_path / 'q'}: holds no image files to use as patterns"
    assert pattern_folder_problem(f" {tmp_path / 'missing'} ").endswith("missing: pattern folder not found")


def test_a_jpeg_decoded_small_still_counts_as_resized(tmp_path):
    Image.fromarray(gray(64, 64)).save(tmp_path / "big.jpg", quality=90)
    arr, _, tags, _, _ = decode_one(tmp_path / "big.jpg", None, (16, 16, 1), tile=False)  # draft decodes at 16x16
    assert arr.shape == (1, 16, 16, 1) and "resized" in tags
    Image.fromarray(gray(16, 16)).save(tmp_path / "same.jpg")
    assert "resized" not in decode_one(tmp_path / "same.jpg", None, (16, 16, 1), tile=False)[2]


def test_a_thumbnail_enlarged_more_than_twice_is_named(tmp_path):
    png(tmp_path / "photo.png", gray(40, 40))
    png(tmp_path / "thumb.png", gray(8, 8))
    notes = load_dataset(tmp_path, (1, 32, 32)).notices
    assert ("1 image less than half of 32x32 in a side, enlarged more than twice: blurred, it may score as defects; "
            "check that it belongs to the set: thumb.png") in notes  # the thumb only, named (QA sweep 13)
    for k in range(6):
        png(tmp_path / f"t{k}.png", gray(8, 8))
    note = next(n for n in load_dataset(tmp_path, (1, 32, 32)).notices if "enlarged" in n)
    assert note.startswith("7 images less than half") and note.endswith(": t0.png, t1.png, t2.png, t3.png, t4.png "
                                                                        "and 2 more")


def test_many_unreadable_files_are_named_up_to_a_limit_then_counted(tmp_path):
    """500 broken files gave 500 notices: 500 lines on the Train page and in train.json."""
    from udd_core.data import SKIPS_NAMED

    png(tmp_path / "good.png", gray(8, 8))
    for i in range(SKIPS_NAMED + 5):
        (tmp_path / f"bad{i:03d}.png").write_text("nope")
    notes = load_dataset(tmp_path, (1, 8, 8)).notices
    assert sum(n.startswith("skipped bad") for n in notes) == SKIPS_NAMED
    assert f"skipped 5 more files (the first {SKIPS_NAMED} skipped are named with why)" in notes
