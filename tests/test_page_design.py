"""The Design page (driven headless with AppTest) and its engine helpers in udd_core.architecture."""
import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from udd_core import architecture as arch
from udd_core import parse_config, propagate
from udd_core.config import ConfigError
from udd_core.presets import model_presets

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 30


@pytest.fixture
def at():
    """The Design page, run once: it opens with the default preset."""
    app = AppTest.from_file(str(ROOT / "pages" / "design.py"), default_timeout=TIMEOUT).run()
    assert not app.exception
    return app


def config_of(app) -> dict:
    return app.session_state["design_config"]


def editor(app):
    return app.data_editor[0]


def stages(app):
    """The stage summary table (the second dataframe: the block editor comes first)."""
    return app.dataframe[1].value


def text(app) -> dict:
    return json.loads(app.text_area(key="design_json").value)


def errors(app) -> str:
    return " | ".join(e.value for e in app.error)


def edit_json(app, **changes):
    d = text(app)
    d.update(changes)
    app.text_area(key="design_json").input(json.dumps(d)).run()
    assert not app.exception
    return app


# --- the page ----------------------------------------------------------------------------------

def test_app_opens_on_the_design_page_with_a_preset():
    app = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT).run()
    assert not app.exception
    preset = model_presets()[app.session_state["design_preset"]]
    assert config_of(app) == preset.config.to_dict()
    assert tuple(app.session_state["design_input_shape"]) == preset.input_shape
    assert text(app) == preset.config.to_dict()
    assert len(editor(app).value) == preset.config.n_blocks
    assert [m.label for m in app.metric] == ["Parameters", "MACs / image", "Compression", "Receptive field"]
    assert not app.error and app.get("plotly_chart")
    assert preset.description in [c.value for c in app.caption]


def test_choosing_another_preset_changes_everything(at):
    other = next(n for n in model_presets() if n != at.session_state["design_preset"])
    before = editor(at).value.copy()
    at.selectbox(key="design_preset").select(other).run()
    p = model_presets()[other]
    assert config_of(at) == p.config.to_dict()
    assert tuple(at.session_state["design_input_shape"]) == p.input_shape
    assert editor(at).value["enc_out"].tolist() == [b[2] for b in p.config.block_size_in]
    assert not editor(at).value.equals(before)
    assert at.number_input(key="design_h").value == p.input_shape[1]
    assert text(at) == p.config.to_dict()


def test_edits_a_preset_switch_replaced_come_back_with_one_click(at):
    """QA: picking another preset (or Reload) threw the edited design away for good."""
    first = at.session_state["design_preset"]
    other = next(n for n in model_presets() if n != first)
    at.selectbox(key="design_preset").select(other).run()
    assert not [b for b in at.button if b.key == "design_undo_button"]  # nothing was edited: nothing to undo
    at.selectbox(key="design_preset").select(first).run()
    at.number_input(key="design_h").set_value(96).run()
    edited = dict(text(at), block_ker=[5] + text(at)["block_ker"][1:])
    at.text_area(key="design_json").input(json.dumps(edited)).run()
    assert config_of(at) == edited
    at.selectbox(key="design_preset").select(other).run()
    assert config_of(at) == model_presets()[other].config.to_dict()
    undo = at.button(key="design_undo_button")
    assert first in undo.label
    undo.click().run()
    assert not at.exception
    assert config_of(at) == edited and at.number_input(key="design_h").value == 96
    assert at.session_state["design_preset"] == first and text(at) == edited
    assert not [b for b in at.button if b.key == "design_undo_button"]  # used once, then gone
    at.button(key="design_reload").click().run()  # Reload throws the edits away too: undoable alike
    assert config_of(at) == model_presets()[first].config.to_dict()
    at.number_input(key="design_w").set_value(96).run()  # any later change ends the offer
    assert not [b for b in at.button if b.key == "design_undo_button"]


def test_json_padding_edit_shows_the_mismatch_and_apply_fixes_it(at):
    pads = text(at)["out_pad"]
    pads[0] = 1 - pads[0]
    edit_json(at, out_pad=pads)
    assert config_of(at)["out_pad"] == pads
    assert editor(at).value["out_pad_h"].tolist()[0] == pads[0]
    bad = stages(at)[~stages(at)["ok"]]
    assert "dec1" in bad["stage"].tolist()
    assert "do not mirror" in errors(at)
    at.button(key="design_apply").click().run()
    assert not at.exception and not at.error
    report = propagate(config_of(at), tuple(at.session_state["design_input_shape"]))
    assert report.ok and stages(at)["ok"].all()
    assert text(at) == config_of(at)


def test_table_edit_reaches_the_json_and_chains_features(at):
    # AppTest cannot type into st.data_editor; it can seed the editor's edit state, which the page
    # folds in through the same path a browser edit takes (checked by hand in chromium).
    key = editor(at).key
    at.session_state[key] = {"edited_rows": {0: {"enc_out": 20, "kernel": 5}}, "added_rows": [], "deleted_rows": []}
    at.run()
    assert not at.exception and not at.error
    d = text(at)
    assert d["block_ker"][0] == 5 and d["block_size_in"][0][2] == 20 and d["block_size_in"][1][0] == 20
    assert config_of(at) == d
    assert editor(at).key != key  # a fresh editor, so the old delta cannot linger
    assert editor(at).value["enc_in"].tolist()[1] == 20


def test_invalid_table_edit_is_refused_inline(at):
    before = config_of(at)
    at.session_state[editor(at).key] = {"edited_rows": {1: {"kernel": 0}}, "added_rows": [], "deleted_rows": []}
    at.run()
    assert not at.exception
    assert "block_ker[1]" in errors(at)
    assert config_of(at) == before
    assert editor(at).value["kernel"].tolist()[1] == before["block_ker"][1]


def test_invalid_json_shows_an_error_and_keeps_the_last_config(at):
    before = config_of(at)
    at.text_area(key="design_json").input('{"block_ker": [3, 3,').run()
    assert not at.exception
    assert "config:" in errors(at)
    assert config_of(at) == before
    assert at.text_area(key="design_json").value == '{"block_ker": [3, 3,'  # the user's text is kept
    assert len(at.dataframe) == 3  # the shape tables still show the last valid config


def test_a_stale_unknown_key_warning_goes_while_the_json_is_invalid(at):
    d = {**config_of(at), "blok_ker": [3]}
    at.text_area(key="design_json").input(json.dumps(d)).run()
    assert any("unknown keys kept but unused: blok\\_ker" in w.value for w in at.warning)  # markdown-escaped
    at.text_area(key="design_json").input(json.dumps(d)[:-5]).run()  # now broken: only its error is shown
    assert "config:" in errors(at) and not any("blok" in w.value for w in at.warning)


def test_any_valid_config_shows_as_it_is_and_survives_other_edits(at):
    # Values beyond any "typical" range, all accepted by the parser: the boxes must show them, and an
    # edit of another box must not clamp them (a loaded config is never silently rewritten).
    d = {"block_ker": [3], "drop": [0.0], "block_size_in": [[100, 8, 8]], "block_size_out": [[8, 8, 100]],
         "latent_size": 5000, "latent_ker": 45, "latent_opad": 1, "out_pad": [1]}
    at.text_area(key="design_json").input(json.dumps(d)).run()
    assert not at.exception and config_of(at) == d
    assert "no longer this preset's" in " ".join(c.value for c in at.caption)
    assert at.number_input(key="design_c").value == 100
    assert at.number_input(key="design_latent_ker").value == 45
    assert at.number_input(key="design_latent_size").value == 5000
    at.number_input(key="design_h").set_value(64).run()
    assert not at.exception and config_of(at) == d and at.session_state["design_input_shape"][0] == 100
    at.number_input(key="design_latent_size").set_value(4999).run()
    assert config_of(at) == dict(d, latent_size=4999)


def test_config_field_error_names_the_field(at):
    edit_json(at, drop=[1.5] * len(config_of(at)["drop"]))
    assert "drop[0]" in errors(at)


def test_code_in_a_config_is_refused_and_never_run(at, tmp_path):
    marker = tmp_path / "pwned"
    at.text_area(key="design_json").input(
        "{'block_ker': __import__('os').system('touch %s'), 'drop': [0.0]}" % marker).run()
    assert not at.exception
    assert "at line 1, column 15 is not a number, string, list or dict" in errors(at)  # the call, by position
    assert not marker.exists()


def test_identity_warning_for_a_huge_latent(at):
    assert not any("identity" in w.value for w in at.warning)
    c, h, w = at.session_state["design_input_shape"]
    at.number_input(key="design_latent_size").set_value(4096).run()
    assert not at.exception
    assert config_of(at)["latent_size"] == 4096 and text(at)["latent_size"] == 4096
    assert any("identity" in w.value for w in at.warning)


def test_unknown_keys_are_listed(at):
    edit_json(at, colour="blue")
    assert any("colour" in w.value for w in at.warning)
    assert config_of(at)["colour"] == "blue"


def test_unknown_keys_are_shown_as_typed_not_as_markdown(at):
    edit_json(at, __import__="x", **{"a*b*": 1})
    shown = " ".join(w.value for w in at.warning)
    # escaped markup: markdown would otherwise render __import__ as a bold "import" and a*b* as italics
    assert r"\_\_import\_\_" in shown and r"a\*b\*" in shown


def test_too_small_input_is_an_inline_error(at):
    edit_json(at, block_ker=[4] * len(config_of(at)["block_ker"]))  # even kernels can shrink a map to nothing
    at.number_input(key="design_h").set_value(2).run()
    assert not at.exception
    assert "too small" in errors(at)
    assert not at.get("plotly_chart")  # nothing below the error pretends to describe the network


def test_channels_follow_the_input_shape(at):
    at.number_input(key="design_c").set_value(3).run()
    d = config_of(at)
    assert d["block_size_in"][0][0] == 3 and d["block_size_out"][-1][2] == 3
    assert not at.error and at.session_state["design_input_shape"][0] == 3


def test_blocks_number_adds_a_solved_block(at):
    n = len(config_of(at)["block_ker"])
    at.number_input(key="design_blocks").set_value(n + 1).run()
    assert len(editor(at).value) == n + 1
    assert propagate(config_of(at), tuple(at.session_state["design_input_shape"])).ok
    assert not at.error


def test_upload_reads_the_reference_format_and_reports_bad_files(at, tiny_config):
    printed = repr({**tiny_config, "block_ker": tuple(tiny_config["block_ker"])})  # a printed dict with a tuple
    at.file_uploader(key="design_upload").set_value(("AE_config.txt", printed.encode(), "text/plain")).run()
    assert not at.exception
    assert config_of(at) == parse_config(tiny_config).to_dict()
    assert at.session_state["design_input_shape"][0] == 1
    at.file_uploader(key="design_upload").set_value(("broken.json", b"\xff\xfe", "application/json")).run()
    assert not at.exception
    assert "broken.json" in errors(at)


# --- udd_core.architecture ---------------------------------------------------------------------

@pytest.fixture
def report(tiny_config):
    return propagate(tiny_config, (1, 32, 32))


def bars(fig):
    """(name, role, x, height) of every block in the figure, left to right."""
    out = [(n, t.name, x, y) for t in fig.data for n, x, y in zip(t.customdata, t.x, t.y)]
    return sorted(out, key=lambda b: b[2])


def test_figure_has_one_block_per_stage_in_order(report):
    blocks = bars(arch.architecture_figure(report))
    assert [b[0] for b in blocks] == ["input"] + [s.name for s in report.stages]
    roles = {b[0]: b[1] for b in blocks}
    assert roles["latent"] == "latent" and roles["enc1"] == "encoder" and roles["dec1"] == "decoder"


def test_figure_heights_follow_spatial_size(report):
    heights = {b[0]: b[3] for b in bars(arch.architecture_figure(report))}
    size = {"input": report.input[1], **{s.name: s.out[1] for s in report.stages}}
    names = sorted(size, key=size.get)
    for a, b in zip(names, names[1:]):
        assert (heights[a] < heights[b]) if size[a] < size[b] else heights[a] == pytest.approx(heights[b])


def test_figure_marks_mismatching_stages(tiny_config):
    bad = propagate({**tiny_config, "out_pad": [0, 1]}, (1, 32, 32))
    roles = {b[0]: b[1] for b in bars(arch.architecture_figure(bad))}
    assert {n for n, r in roles.items() if r == "mismatch"} == {s.name for s in bad.stages if not s.ok} != set()


def test_markdown_literal_escapes_inline_markup_only():
    from udd_core.display import markdown_literal

    assert markdown_literal("__import__ a*b* `x` $y ~z~ drop[0].") == r"\_\_import\_\_ a\*b\* \`x\` \$y \~z\~ drop[0]."
    # Streamlit reads ":name[text]" as a colour directive and drops the text: a wafer map's name keeps its index
    assert markdown_literal("w.npz:maps[376] · a: b [c]") == r"w.npz\:maps[376] · a: b [c]"


def test_identity_warning_threshold(tiny_config, report):
    assert arch.identity_warning(report) is None  # 4x4x4 latent for 1x32x32: 1/16
    assert arch.identity_warning(report, threshold=report.compression) is not None
    big = propagate({**tiny_config, "latent_size": 16}, (1, 32, 32))  # exactly 1/4
    assert big.compression == arch.IDENTITY_RATIO and "identity" in arch.identity_warning(big)


def test_collapse_warning_names_the_stages_left_at_one_cell(tiny_config, report):
    assert arch.collapse_warning(report) is None  # 32 -> 16 -> 8 -> latent 4x4
    assert arch.collapse_warning(propagate(tiny_config, (1, 8, 8))) is None  # only the latent is 1x1
    warn = arch.collapse_warning(propagate(tiny_config, (1, 2, 2)))
    assert warn.startswith("enc1, enc2, latent are 1x1") and "after enc1" in warn and "2x2 input" in warn


def test_compression_reads_as_a_plain_ratio(tiny_config):
    wide = propagate({**tiny_config, "latent_size": 1}, (1, 128, 128))  # 1 x 16 x 16 latent for 128 x 128
    assert dict((k, v) for k, v, _ in arch.summary_metrics(wide))["Compression"] == "1:64"
    assert arch.ratio_text(1024.0) == "1,024" and arch.ratio_text(12.5) == "12.5"  # never 1.02e+03


@pytest.mark.parametrize("name", list(model_presets()))
def test_every_single_feature_edit_keeps_the_config_valid(name):
    config = model_presets()[name].config
    for row in range(config.n_blocks):
        for col in ("enc_in", "enc_mid", "enc_out", "dec_in", "dec_mid", "dec_out"):
            edited = parse_config(arch.apply_block_edits(config, {row: {col: 7}}))
            assert arch.block_rows(edited)[row][col] == 7


def test_block_edits_map_to_config_fields(tiny_config):
    config = parse_config(tiny_config)
    d = arch.apply_block_edits(config, {1: {"kernel": 5, "drop": 0.2, "out_pad_w": 0.0}})
    assert d["block_ker"] == [3, 5] and d["drop"] == [0.0, 0.2] and d["out_pad"] == [1, [1, 0]]
    assert arch.apply_block_edits(config, {0: {"enc_out": 6, "enc_in": 2}})["block_size_in"] == [[2, 4, 6], [6, 8, 8]]
    with pytest.raises(ConfigError, match="row 2"):
        arch.apply_block_edits(config, {2: {"kernel": 3}})
    with pytest.raises(ConfigError, match="unknown column"):
        arch.apply_block_edits(config, {0: {"colour": 3}})
    with pytest.raises(ConfigError, match=r"block table: row 1, kernel: a number is needed \(the cell was left empty"):
        arch.apply_block_edits(config, {0: {"kernel": None}})  # QA sweep 19b: "block_ker[0]: ... got None"


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_resize_blocks_keeps_a_valid_chain(tiny_config, n):
    resized = arch.resize_blocks(parse_config(tiny_config), n)
    assert resized.n_blocks == n and resized.in_channels == 1
    report = propagate(resized, (1, 128, 128))
    assert report.ok or report.suggested is not None


def test_latent_fields_and_solved_paddings(tiny_config):
    assert arch.latent_fields(8, 3, 1, 1) == {"latent_size": 8, "latent_ker": 3, "latent_opad": 1}
    assert arch.latent_fields(8, 3, 0, 1)["latent_opad"] == [0, 1]
    broken = parse_config({**tiny_config, "latent_opad": 0})  # does not mirror at 1x32x32
    fixed = arch.with_solved_paddings(broken, (1, 32, 32))
    assert propagate(fixed, (1, 32, 32)).ok and not propagate(broken, (1, 32, 32)).ok
    fae = model_presets()["feature-ae"].config
    assert arch.with_solved_paddings(fae, (5, 256, 256)) is fae  # the backbone refuses 5 channels: the page says so


def test_with_image_shape_follows_pixels_and_guards_features(tiny_config):
    config = parse_config(tiny_config)
    rgb, shape, refusal = arch.with_image_shape(config, (1, 32, 32), (3, 64, 48))
    assert (rgb.in_channels, shape, refusal) == (3, (3, 64, 48), None)  # a pixel AE follows the images
    fae = model_presets()["feature-ae"]
    same, shape, refusal = arch.with_image_shape(fae.config, fae.input_shape, (5, 128, 128))
    assert same is fae.config and shape == (fae.input_shape[0], 128, 128)  # the size applies, 5 channels do not
    assert refusal == "Channels: the lite0 backbone takes gray (1) or RGB (3) images, not 5."


def test_image_channels_and_tables(report, tiny_config):
    rgb = arch.set_image_channels(parse_config(tiny_config), 3)
    assert rgb.in_channels == 3 and rgb.block_size_out[-1][2] == 3
    rows = arch.layer_rows(report)
    assert len(rows) == len(report.layers)
    conv = next(r for r, l in zip(rows, report.layers) if l.kernel is not None)
    assert conv["kernel"] == str(next(l.kernel for l in report.layers if l.kernel is not None))
    assert all(r["kernel"] == "" and r["output_padding"] == "" for r, l in zip(rows, report.layers)
               if l.kernel is None)  # activations and dropouts: blank, never "None"
    assert [r["stage"] for r in arch.stage_rows(report)] == [s.name for s in report.stages]
    bad = propagate({**tiny_config, "latent_opad": 0}, (1, 32, 32))
    rows = {r["stage"]: r for r in arch.stage_rows(bad)}
    assert not rows["latent_up"]["ok"] and "latent_opad" in rows["latent_up"]["fix"]
    assert all(not r["ok"] for r in arch.layer_rows(bad) if r["stage"] == "latent_up")
    labels = [m[0] for m in arch.summary_metrics(report)]
    assert labels == ["Parameters", "MACs / image", "Compression", "Receptive field"]
    assert arch.human(1_234_567) == "1.23 M" and arch.human(999) == "999"


def test_an_invalid_stored_design_falls_back_to_the_preset(at):
    at.session_state["design_config"] = {"block_ker": "nonsense"}
    at.run()
    assert not at.exception
    assert "invalid" in errors(at)
    assert config_of(at) == model_presets()[at.session_state["design_preset"]].config.to_dict()


def test_form_values_follow_the_config_and_shape():
    """The Design form is written from one udd_core function: the latent paddings split, the input kind."""
    from udd_core import architecture as arch
    from udd_core.presets import model_presets

    pixel = arch.form_values({**model_presets()["gray-tile-128"].config.to_dict(), "latent_opad": [0, 1]},
                             (1, 128, 100))
    assert (pixel["lopad_h"], pixel["lopad_w"], pixel["c"], pixel["w"], pixel["features"]) == (0, 1, 1, 100, False)
    feat = arch.form_values(model_presets()["feature-ae"].config.to_dict(), (1, 256, 256))
    assert feat["features"] and feat["layers"] == ["stage6", "s32"] and feat["pool"] == 3
    assert feat["blocks"] == 1 and '"latent_size": 32' in feat["json"]


def test_an_edited_design_is_in_the_url_and_a_fresh_session_opens_it(at):
    """QA: a browser refresh threw the edited design away; it now rides in `?design=`."""
    assert "design" not in at.query_params  # the preset, unedited: a clean URL
    at.number_input(key="design_h").set_value(96).run()
    link = at.query_params["design"]
    link = link[0] if isinstance(link, list) else link
    fresh = AppTest.from_file(str(ROOT / "pages" / "design.py"), default_timeout=TIMEOUT)
    fresh.query_params["design"] = link
    fresh.run()
    assert not fresh.exception and not fresh.error
    assert config_of(fresh) == config_of(at) and fresh.number_input(key="design_h").value == 96
    at.button(key="design_reload").click().run()  # back to the preset: the URL is clean again
    assert "design" not in at.query_params


def test_a_broken_design_link_opens_the_preset_with_one_line(at):
    fresh = AppTest.from_file(str(ROOT / "pages" / "design.py"), default_timeout=TIMEOUT)
    fresh.query_params["design"] = '{"shape": [1, 64], "config": {}}'
    fresh.run()
    assert not fresh.exception
    assert "The design in the link could not be read (shape: expected 3 whole numbers" in errors(fresh)
    assert config_of(fresh) == config_of(at)


def test_a_half_typed_config_survives_a_visit_to_another_page(monkeypatch, tmp_path):
    """QA sweep 7: invalid text in the JSON box was replaced by the last valid config after a page switch."""
    monkeypatch.setenv("UDD_RUNS_DIR", str(tmp_path / "runs"))
    app = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT).run()
    valid = config_of(app)
    typed = '{"block_ker": [3, 3], "drop": '
    app.text_area(key="design_json").input(typed).run()
    assert app.error and config_of(app) == valid  # refused; the design is the last valid one
    app.switch_page("pages/train.py").run()
    app.switch_page("pages/design.py").run()
    assert not app.exception
    assert app.text_area(key="design_json").value == typed and app.error  # the typing and why it is refused
    assert config_of(app) == valid
    app.text_area(key="design_json").input(json.dumps({**valid, "latent_size": 7})).run()  # finished typing
    assert not app.error and config_of(app)["latent_size"] == 7
