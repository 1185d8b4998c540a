"""Tests for udd_core.localisation: whether the caught defects' heatmaps peak on their ground truth."""
from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest

from inspect_fixtures import make_mvtec, make_run
from udd_core.inspection import inspect_run
from udd_core.localisation import (off_defect_note, peak_check, peak_on_defect, peak_shown_on_defect, scored_area,
                                   tolerance)
from udd_core.notices import is_caution


def spot(shape=(40, 40), at=(5, 5), size=4) -> np.ndarray:
    """A (H, W) bool mask of one square."""
    m = np.zeros(shape, bool)
    m[at[0]:at[0] + size, at[1]:at[1] + size] = True
    return m


def peak(shape=(40, 40), at=(30, 30), value=5.0) -> np.ndarray:
    """A (H, W) float map, low everywhere but at `at`."""
    a = np.zeros(shape, np.float32)
    a[at] = value
    return a


def test_a_peak_on_or_beside_the_mask_is_on_it_and_a_far_one_is_not():
    mask = spot(at=(5, 5))  # rows and columns 5-8
    d = tolerance(mask.shape)
    assert d == 2  # 5% of 40 px
    assert peak_on_defect(peak(at=(6, 6)), mask)
    assert peak_on_defect(peak(at=(8 + d, 8 + d)), mask)  # within the tolerance, diagonally too
    assert not peak_on_defect(peak(at=(8 + d + 1, 6)), mask)
    assert not peak_on_defect(peak(at=(30, 30)), mask)
    tie = peak(at=(30, 30))
    tie[6, 6] = tie.max()  # highest at two places, one on the defect
    assert peak_on_defect(tie, mask)
    assert not peak_on_defect(peak(at=(6, 6)), np.zeros_like(mask))
    assert tolerance((256, 256)) == 13
    # QA sweep 22: the hot spot around the peak, not its top pixel alone: a small defect inside the one hot blob
    yy, xx = np.mgrid[:100, :100]
    blob = np.exp(-((yy - 30) ** 2 + (xx - 30) ** 2) / (2 * 20.0 ** 2)).astype(np.float32)  # one wide blob at (30, 30)
    assert peak_on_defect(blob, spot((100, 100), at=(42, 42), size=3))  # 17 px from its top, inside the spot
    assert not peak_on_defect(blob, spot((100, 100), at=(85, 85), size=3))  # beyond it


class Scored(SimpleNamespace):
    """What `peak_check` and the gallery's filters read of an Inspection."""

    def __len__(self) -> int:
        return len(self.names)

    @property
    def peaks(self):
        return peak_check(self)


def note_of(insp) -> str | None:
    """The note a scoring gives of where its caught defects' maps point."""
    return off_defect_note(peak_check(insp))


def scored(maps, masks, labels, scores, names=None, threshold=0.5):
    """An Inspection's fields that the check reads, for images named after their labels."""
    labels = list(labels)
    names = names or [f"/d/{lab}/{i:03d}.png" for i, lab in enumerate(labels)]
    return Scored(names=names, labels=labels, scores=np.asarray(scores, np.float32), threshold=threshold,
                  maps=np.stack(maps), masks=np.stack(masks), border=0,
                  images=np.zeros((len(labels), *maps[0].shape, 1), np.uint8), image_labels={},
                  known=np.ones(len(labels), bool), is_defect=np.array([v != "good" for v in labels]))


def changed(insp: Scored, **fields) -> Scored:
    return Scored(**{**vars(insp), **fields})


def test_only_caught_defects_with_a_mask_are_checked_and_the_off_ones_named_worst_first():
    m, none = spot(), np.zeros((40, 40), bool)
    insp = scored(maps=[peak(at=(6, 6)), peak(), peak(), peak(), peak(), peak()],
                  masks=[m, m, m, m, none, none],
                  labels=["scratch", "scratch", "scratch", "scratch", "scratch", "good"],
                  scores=[0.9, 0.7, 0.8, 0.2, 0.9, 0.9])
    check = peak_check(insp)
    # 0 peaks on its defect; 1 and 2 off; 3 is not caught; 4 has no mask; 5 is normal.
    assert check.checked == 3 and check.off == ["/d/scratch/002.png", "/d/scratch/001.png"] and check.units == "images"
    note = note_of(insp)
    assert note.startswith("2 of the 3 defective images caught have their heatmap's hot spot off the defect")
    assert note.endswith("the map is hottest elsewhere: scratch/002.png, scratch/001.png") and is_caution(note)
    assert "lie within" not in note  # (30, 30) lies 9 px from the edge
    # photo edges vary more than the part: said, with what would fade them
    edgy = changed(insp, maps=np.stack([peak(at=(6, 6)), peak(at=(39, 20)), *insp.maps[2:]]))
    assert ("(1 of them lies within 2 px of the image's edge, which a border left out of the image score (Border, "
            "--border) would fade): the call is right") in note_of(edgy)
    # with such a border, faded in every heatmap, the peak is the scored area's: (30, 30) lies in a 10 px one
    assert note_of(changed(insp, border=10)) is None
    assert note_of(changed(insp, border=3)) == note  # inside a 3 px one: still off, and not at the edge
    # QA sweep 22: a defect in that border, the map hottest on it, was "off" (the scored area peaks elsewhere)
    edge_crack, hot = spot(at=(0, 14), size=3), peak(at=(1, 15), value=5.0)
    hot[20, 20] = 4.0  # the scored area's own peak, far from the crack
    assert peak_shown_on_defect(hot, edge_crack, border=5) and not peak_on_defect(scored_area(hot, 5), edge_crack)
    one_off = note_of(changed(insp, scores=np.array([0.9, 0.7, 0.2, 0.2, 0.9, 0.9], np.float32)))
    assert one_off.startswith("1 of the 2 defective images caught has its") and not is_caution(one_off)  # half
    assert note_of(changed(insp, threshold=None)) is None and note_of(changed(insp, masks=None)) is None


def test_a_tiled_run_is_judged_per_photo_put_back_together():
    """The photo's highest point, over all its tiles, against its whole mask: a tile that peaks on its small
    part of the defect does not make up for a hotter tile elsewhere in the photo."""
    names = [f"/d/crack/a.png#tile{i}@x{x},y0" for i, x in enumerate((0, 40))]
    names += [f"/d/crack/b.png#tile{i}@x{x},y0" for i, x in enumerate((0, 40))]
    m, none = spot(), np.zeros((40, 40), bool)
    insp = scored(maps=[peak(at=(6, 6), value=2.0), peak(value=3.0), peak(at=(6, 6), value=3.0), peak(value=1.0)],
                  masks=[m, none, m, none], labels=["crack", "good", "crack", "good"],
                  scores=[0.6, 0.9, 0.9, 0.6], names=names)
    check = peak_check(insp)
    assert check.units == "photos" and check.checked == 2 and check.off == ["/d/crack/a.png"]
    assert note_of(insp).startswith("1 of the 2 defective photos caught has its heatmap's hot spot")
    from udd_core.inspection_views import OFF_DEFECT, gallery_filters  # its tiles, in the gallery (QA sweep 22)

    assert gallery_filters(changed(insp, known=np.ones(4, bool)))[OFF_DEFECT].tolist() == [True, True, False, False]


@pytest.fixture(scope="module")
def insp(tmp_path_factory):
    data = make_mvtec(tmp_path_factory.mktemp("data") / "parts")
    return inspect_run(make_run(tmp_path_factory.mktemp("runs") / "tiny", data), data)


def test_every_view_of_a_scoring_says_it(insp):
    """`Inspection.all_notes` (Inspect, `udd score`, the report, the heatmaps' README.txt) carries the note."""
    low = insp.with_threshold(float(insp.scores.min()) - 1, "manual")  # every defect caught
    bad = np.flatnonzero(low.is_defect)
    assert len(bad) and low.masks[bad].any(axis=(1, 2)).all()
    on = low.maps.copy()
    on[bad] = 0
    on[bad, 12, 14] = 10.0  # inside the planted square
    assert not [n for n in replace(low, maps=on).all_notes() if "hot spot off the defect" in n]
    off = on.copy()
    off[bad] = 0
    off[bad, 30, 1] = 10.0  # a corner far from it
    said = [n for n in replace(low, maps=off).all_notes() if "hot spot off the defect" in n]
    assert said == [note_of(replace(low, maps=off))] and is_caution(said[0])
    assert said[0].startswith(f"{len(bad)} of the {len(bad)} defective images caught")
