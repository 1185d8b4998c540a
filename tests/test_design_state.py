"""udd_core.design_state: the Design page's edits, driven on a plain dict with no streamlit."""
import json

import pytest

from udd_core.design_state import CONFIG, INPUT_KINDS, PRESET_NAME, SHAPE, DesignState
from udd_core.config import parse_config
from udd_core.feature_input import parse_input
from udd_core.image_shapes import propagate_image
from udd_core.presets import PIXEL_PRESET, model_presets
from udd_core.shapes import propagate


@pytest.fixture
def design():
    d = DesignState({})
    d.start()
    return d


def other_preset() -> str:
    return next(n for n in model_presets() if n != PIXEL_PRESET)


def test_a_first_visit_opens_the_default_preset_and_seeds_every_widget(design):
    p = model_presets()[PIXEL_PRESET]
    ss = design.ss
    assert ss[CONFIG] == p.config.to_dict() and design.shape() == p.input_shape
    assert ss[PRESET_NAME] == ss["design_preset"] == PIXEL_PRESET and not design.is_edited()
    assert json.loads(ss["design_json"]) == p.config.to_dict()
    assert (ss["design_c"], ss["design_h"], ss["design_w"]) == p.input_shape
    assert ss["design_blocks"] == p.config.n_blocks and ss["design_input_kind"] == INPUT_KINDS[0]
    assert design.pop_notice() is None


def test_start_keeps_the_widgets_the_user_set_and_refills_lost_ones(design):
    design.ss["design_h"] = 999  # a widget value not yet applied by its callback
    del design.ss["design_latent_size"]  # another page was shown: the widget's state is gone
    design.start()
    assert design.ss["design_h"] == 999
    assert design.ss["design_latent_size"] == design.ss[CONFIG]["latent_size"]


def test_an_invalid_stored_design_is_replaced_with_a_notice():
    ss = {CONFIG: {"block_ker": "nonsense"}, SHAPE: (1, 64, 64), "design_preset": PIXEL_PRESET}
    d = DesignState(ss)
    d.start()
    level, text = d.pop_notice()
    assert level == "error" and "stored design was invalid" in text
    assert ss[CONFIG] == model_presets()[PIXEL_PRESET].config.to_dict()
    assert d.pop_notice() is None  # shown once


def test_a_preset_switch_over_edits_can_be_undone_once(design):
    ss = design.ss
    ss["design_h"] = 96
    design.on_shape()
    edited = (ss[CONFIG], design.shape())
    assert design.is_edited()
    ss["design_preset"] = other_preset()
    design.load_preset()
    assert ss[CONFIG] == model_presets()[other_preset()].config.to_dict()
    assert ss["design_undo"][2] == PIXEL_PRESET
    design.undo_preset()
    assert (ss[CONFIG], design.shape()) == edited and ss["design_preset"] == PIXEL_PRESET
    assert "design_undo" not in ss and ss["design_h"] == 96


def test_an_unedited_preset_switch_offers_no_undo(design):
    design.ss["design_preset"] = other_preset()
    design.load_preset()
    assert "design_undo" not in design.ss


def test_bad_json_keeps_the_last_config_and_says_why(design):
    before = design.ss[CONFIG]
    design.ss["design_json"] = "{'block_ker': __import__('os')}"
    design.on_json()
    assert design.ss[CONFIG] == before and design.ss["design_json_error"]
    good = dict(before, latent_size=before["latent_size"] + 1)
    design.ss["design_json"] = json.dumps(good)
    design.on_json()
    assert design.ss[CONFIG] == good and "design_json_error" not in design.ss
    assert design.ss["design_latent_size"] == good["latent_size"]  # the other widgets follow the text


def test_latent_and_block_count_edits_rewrite_the_config(design):
    ss = design.ss
    ss["design_latent_size"], ss["design_lopad_h"] = 7, 1 - ss["design_lopad_h"]
    design.on_latent()
    assert ss[CONFIG]["latent_size"] == 7
    n = ss["design_blocks"] + 1
    ss["design_blocks"] = n
    design.on_blocks()
    assert len(ss[CONFIG]["block_ker"]) == n
    assert json.loads(ss["design_json"]) == ss[CONFIG]


def test_features_need_a_layer_and_a_feature_ae_keeps_gray_or_rgb_images(design):
    ss = design.ss
    ss["design_input_kind"], ss["design_layers"] = INPUT_KINDS[1], []
    design.on_input()
    assert design.pop_notice()[0] == "error"
    assert ss["design_input_kind"] == INPUT_KINDS[0] and ss[CONFIG].get("input") is None  # widgets reset
    ss["design_input_kind"] = INPUT_KINDS[1]
    design.on_input()
    assert ss[CONFIG]["input"]["kind"] == "features"
    spec = parse_input(ss[CONFIG]["input"])
    assert ss[CONFIG]["block_size_in"][0][0] == ss[CONFIG]["block_size_out"][-1][-1] == spec.channels
    assert propagate_image(design.config(), design.shape()).ok  # paddings re-solved for the feature grid
    ss["design_c"] = 5
    design.on_shape()
    level, text = design.pop_notice()
    assert level == "error" and "Channels" in text and design.shape()[0] in (1, 3)


def test_uploads_load_or_are_refused_naming_the_file(design, tiny_config):
    design.on_upload("mine.json", json.dumps(tiny_config).encode())
    assert design.pop_notice("design_upload_notice") == ("success", "Loaded mine.json.")
    tiny = parse_config(tiny_config).to_dict()
    assert design.ss[CONFIG] == tiny
    design.on_upload("broken.json", b"{not json")
    level, text = design.pop_notice("design_upload_notice")
    assert level == "error" and text.startswith("broken.json: ")
    assert design.ss[CONFIG] == tiny


def test_table_edits_are_folded_in_or_refused_by_field(design):
    ss = design.ss
    key = design.editor_key()
    ss[key] = {"edited_rows": {0: {"kernel": 5}}}
    design.absorb_table_edits()
    assert ss[CONFIG]["block_ker"][0] == 5 and design.editor_key() != key
    ss[design.editor_key()] = {"edited_rows": {0: {"kernel": 0}}}
    design.absorb_table_edits()
    assert ss["design_table_error"].startswith("Table edit not applied: block_ker[0]")
    assert ss[CONFIG]["block_ker"][0] == 5
    assert design.editor_key() not in ss  # the rejected edit is dropped with the old editor


def test_apply_takes_a_suggested_fix(design):
    ss = design.ss
    flip = [1 - p if isinstance(p, int) else [1 - q for q in p] for p in ss[CONFIG]["out_pad"]]
    broken = dict(ss[CONFIG], out_pad=flip)
    design.apply(broken)
    report = propagate(ss[CONFIG], design.shape())
    assert not report.ok and report.suggested is not None
    design.apply(report.suggested.to_dict())
    assert propagate(ss[CONFIG], design.shape()).ok


def test_an_edited_design_rides_in_the_link_and_comes_back_from_it(design):
    assert design.link_value() is None  # the preset as it is: nothing to carry
    design.ss["design_h"] = 96
    design.on_shape()
    link = design.link_value()
    assert link and " " not in link  # compact
    again = DesignState({})
    again.start(link)
    assert again.ss[CONFIG] == design.ss[CONFIG] and again.shape() == design.shape()
    assert again.ss["design_preset"] == PIXEL_PRESET and again.is_edited() and again.pop_notice() is None
    assert again.link_value() == link


@pytest.mark.parametrize("link,why", [
    ("{not json", "could not be read"),
    ('{"shape": [1, 0, 64], "config": {}}', "shape: expected 3 whole numbers"),
    ('{"shape": [1, 64, 64], "config": {"block_ker": [0]}}', "drop: missing field"),
    ("[1, 2]", "not a JSON object"),
])
def test_a_link_that_holds_no_design_opens_the_preset_with_a_line_why(link, why):
    d = DesignState({})
    d.start(link)
    level, text = d.pop_notice()
    assert level == "error" and why in text and text.startswith("The design in the link could not be read")
    assert d.ss[CONFIG] == model_presets()[PIXEL_PRESET].config.to_dict()


def test_a_session_that_has_a_design_ignores_the_link(design):
    design.ss["design_h"] = 80
    design.on_shape()
    other = DesignState({}, design.presets)
    other.start()
    other.ss["design_w"] = 72
    other.on_shape()
    design.start(other.link_value())  # a link changed by hand while the session lives: the session's design stays
    assert design.shape()[1:] == (80, model_presets()[PIXEL_PRESET].input_shape[2])


def test_an_uploaded_config_is_named_after_its_file_until_a_preset_replaces_it(design, tiny_config):
    """QA sweep 6: an uploaded AE_config.txt was called "gray-tile-128, edited" here and on the Train page."""
    assert design.label() == PIXEL_PRESET
    design.on_upload("AE_config.txt", json.dumps(tiny_config).encode())
    assert design.label() == "AE_config.txt"
    design.ss["design_latent_size"] = design.ss["design_latent_size"] + 1
    design.on_latent()
    assert design.label() == "AE_config.txt, edited"
    design.ss["design_preset"] = other_preset()
    design.load_preset()
    assert design.label() == other_preset()
    design.ss["design_h"] += 8
    design.on_shape()
    assert design.label() == other_preset()  # the shape is not the config: the Train page's name is unchanged
