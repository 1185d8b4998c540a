"""The Design page with a feature autoencoder (AppTest): the input kind, the feature tensor, fixes from it."""
import json

from test_page_design import at, config_of  # noqa: F401 - at is a fixture

from udd_core.presets import model_presets


def captions(app) -> str:
    return " | ".join(c.value for c in app.caption)


def errors(app) -> str:
    return " | ".join(e.value for e in app.error)


def stage_rows(app) -> list:
    return app.dataframe[1].value.to_dict("records")


def test_switching_to_features_reshapes_the_design_from_the_feature_tensor(at):
    at.selectbox(key="design_preset").select("gray-tile-128").run()
    at.radio(key="design_input_kind").set_value("backbone features").run()
    assert not at.exception and not errors(at)
    c = config_of(at)
    assert c["input"] == {"kind": "features", "backbone": "lite0", "layers": ["s8", "s16"], "pool": 3}
    assert c["block_size_in"][0][0] == 152 and c["block_size_out"][-1][2] == 152
    assert tuple(at.session_state["design_input_shape"]) == (1, 128, 128)  # the images stay gray
    assert "152x16x16" in captions(at)
    assert stage_rows(at)[0]["output"] == "16×8×8"  # enc1 halves the 16x16 feature grid
    assert at.success and "152×16×16 in" in at.success[0].value
    # back to pixels: the AE takes the image's channel again
    at.radio(key="design_input_kind").set_value("pixels").run()
    c = config_of(at)
    assert "input" not in c and c["block_size_in"][0][0] == 1 and c["block_size_out"][-1][2] == 1
    assert at.success and "1×128×128 in" in at.success[0].value


def test_the_feature_ae_preset_shows_its_feature_tensor(at):
    at.selectbox(key="design_preset").select("feature-ae").run()
    p = model_presets()["feature-ae"]
    assert config_of(at) == p.config.to_dict() and not errors(at)
    assert at.radio(key="design_input_kind").value == "backbone features"
    assert at.multiselect(key="design_layers").value == ["stage6", "s32"]
    assert "512x8x8" in captions(at) and "512×8×8 in" in at.success[0].value


def test_layers_and_pooling_change_the_feature_channels(at):
    at.selectbox(key="design_preset").select("feature-ae").run()
    at.multiselect(key="design_layers").set_value(["s8", "stage4", "s16"]).run()
    assert not at.exception and not errors(at)
    c = config_of(at)
    assert c["input"]["layers"] == ["s8", "stage4", "s16"] and c["block_size_in"][0][0] == 232
    assert "232x32x32" in captions(at)
    at.number_input(key="design_pool").set_value(5).run()
    assert config_of(at)["input"]["pool"] == 5
    at.multiselect(key="design_layers").set_value([]).run()  # no layer: refused, the design stays
    assert "input.layers" in errors(at) and config_of(at)["input"]["layers"] == ["s8", "stage4", "s16"]


def test_a_channel_mismatch_with_the_features_is_fixed_in_one_click(at):
    at.selectbox(key="design_preset").select("feature-ae").run()
    d = json.loads(at.text_area(key="design_json").value)
    d["block_size_in"][0][0] = 100
    d["block_size_out"][-1][2] = 100
    at.text_area(key="design_json").input(json.dumps(d)).run()
    assert "512 channels" in errors(at)
    at.button(key="design_apply").click().run()
    assert not errors(at) and config_of(at)["block_size_in"][0][0] == 512


def test_an_image_size_whose_features_do_not_mirror_gets_the_padding_fix(at):
    at.selectbox(key="design_preset").select("feature-ae").run()
    at.number_input(key="design_h").set_value(200).run()  # features 7 high: the paddings must change
    assert "7x8" in captions(at)
    assert at.error and any("out_pad" in e.value or "latent_opad" in e.value for e in at.error)
    at.button(key="design_apply").click().run()
    assert not errors(at) and at.success and "512×7×8 in" in at.success[0].value


def test_a_backbone_refuses_four_channel_images(at):
    at.selectbox(key="design_preset").select("feature-ae").run()
    at.number_input(key="design_c").set_value(4).run()
    assert "gray (1) or RGB (3)" in errors(at) and tuple(at.session_state["design_input_shape"])[0] == 1
