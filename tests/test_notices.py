"""udd_core.notices: cautions stand apart from routine notices, on the pages and on the command line."""
from udd_core.images import conversion_notices
from udd_core.metrics import too_few_normals
from udd_core.notices import Caution, error_line, is_caution, notice_line


def test_a_caution_is_a_string_that_prints_as_a_warning():
    note = Caution("the threshold rests on 4 images")
    assert note == "the threshold rests on 4 images" and is_caution(note) and not is_caution(str(note))
    assert notice_line(note) == "warning: the threshold rests on 4 images"
    assert notice_line("12 images resized to 96x96 (bilinear)") == "note: 12 images resized to 96x96 (bilinear)"


def test_the_notices_that_change_how_numbers_read_are_cautions():
    """QA sweep 11: seven identical info boxes, three of which changed how the page reads."""
    assert is_caution(too_few_normals(4, 0.01, "validation"))
    notes = conversion_notices({"12-bit": 6, "16-bit": 6, "resized": 12}, "96x96")
    assert [is_caution(n) for n in notes] == [False, False, False, True]  # only the mixed depths
    assert notes[-1].startswith("the 16-bit images were scaled two ways")


def test_a_page_shows_every_notice_as_a_sentence():
    """QA sweep 12: "ℹ️ these are the run's training data" beside "ℹ️ Called defective ..." on one page."""
    from udd_core.notices import as_sentence

    assert as_sentence("these are the run's training data") == "These are the run's training data."
    assert as_sentence("Called defective with no pixel above it.") == "Called defective with no pixel above it."
    assert as_sentence("resume it (`udd train --out r --resume`)") == "Resume it (`udd train --out r --resume`)."
    assert as_sentence("") == ""
    # QA sweep 17: a file name keeps its case ("Labelled_first100.npz holds maps of 2 sizes")
    assert as_sentence("labelled_first100.npz holds maps of 2 sizes") == "labelled_first100.npz holds maps of 2 sizes."


def test_a_system_error_reads_as_the_path_and_what_happened():
    """QA sweep 15b: an unreadable run folder printed "[Errno 13] Permission denied: '…/method.json'"."""
    assert error_line(PermissionError(13, "Permission denied", "/r/method.json")) == "/r/method.json: permission denied"
    assert error_line(OSError("x.png: cannot create the folder (No space left)")) == \
        "x.png: cannot create the folder (No space left)"  # udd's own words stay as they are
    assert error_line(ValueError("--size: bad")) == "--size: bad"
    assert error_line(ValueError("\nfirst\nsecond")) == "first" and error_line(RuntimeError()) == "RuntimeError"
