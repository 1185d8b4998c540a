"""Design page: edit the autoencoder's config (JSON text or block table) and see every shape live.

The AE's input is the image's pixels or a pretrained backbone's feature tensor (the config's
"input" field); with features, every shape, diagnostic and fix starts from the feature tensor.

State: udd_core.design_state.DesignState owns it and every edit; this page draws the widgets, wires their
callbacks to it, and renders the shape report.
"""
from functools import partial

import pandas as pd
import streamlit as st

from pages.run_focus import KEEP, hand_over_deep_link
from udd_core import architecture as arch
from udd_core.display import markdown_literal
from udd_core.config import CONFIG_UPLOAD_MB, MAX_BLOCKS, MAX_FEATURES, MAX_KERNEL
from udd_core.design_state import CONFIG, INPUT_KINDS, DesignState, parse
from udd_core.feature_input import BACKBONES, DEFAULT_POOL, MAX_POOL, describe_input
from udd_core.image_shapes import MAX_SIDE, ae_input_shape, propagate_image
from udd_core.shapes import ShapeError

hand_over_deep_link("pages/design.py")  # first: a deep link before app.py ever ran

ss = st.session_state
design = DesignState(ss)  # every callback below is one of its methods
presets = design.presets


def on_upload() -> None:
    if (f := ss.get("design_upload")) is not None:
        design.on_upload(f.name, f.getvalue())


design.start(st.query_params.get("design"))
# The edited design rides in the URL: a refresh or a shared link opens it again.
if (link := design.link_value()) is None:
    st.query_params.pop("design", None)
elif st.query_params.get("design") != link:
    st.query_params["design"] = link
config, unknown = parse(ss[CONFIG])
shape = design.shape()  # (C, H, W) of the images

# The boxes take every value the parser accepts (same limits), so a loaded config always shows as it is
# and an edit never rewrites a field the user did not touch.
# --- inputs --------------------------------------------------------------------------------------
st.title("Design")
st.caption("Shape the autoencoder: every edit re-runs the shape check at once, no tensor is built.")
if notice := design.pop_notice():
    (st.success if notice[0] == "success" else st.error)(notice[1])

top = st.columns([3, 1, 1, 1])
top[0].selectbox("Preset", list(presets), key="design_preset", on_change=design.load_preset,
                 help="Pick a ready-made design; it replaces the current config and input shape.")
if ss.get("design_source"):
    top[0].caption(f"Loaded from {markdown_literal(design.label())}; pick a preset to replace it.")
else:
    top[0].caption("Edited: the design below is no longer this preset's; pick a preset again to restore it."
                   if design.is_edited() else presets[ss["design_preset"]].description)
if undo := ss.get("design_undo"):
    top[0].button(f"Undo: back to the edited {undo[2]} design", key="design_undo_button", on_click=design.undo_preset,
                  icon=":material/undo:", help="Loading the preset replaced your edits; this brings them back.")
top[1].number_input("Channels (C)", min_value=1, max_value=MAX_FEATURES, step=1, key="design_c", on_change=design.on_shape,
                    help="Image channels; for pixels the first encoder and last decoder features follow.")
top[2].number_input("Height (H)", min_value=1, max_value=MAX_SIDE, step=1, key="design_h", on_change=design.on_shape)
top[3].number_input("Width (W)", min_value=1, max_value=MAX_SIDE, step=1, key="design_w", on_change=design.on_shape)

st.subheader("Input")
inp = st.columns([2, 2, 3, 1])
inp[0].radio("The autoencoder reconstructs", INPUT_KINDS, key="design_input_kind", on_change=design.on_input,
             help="Pixels: the image itself. Backbone features: a frozen pretrained CNN's feature maps (DFR), "
                  "which see texture and structure a small AE trained on a few hundred photos does not.")
if ss["design_input_kind"] == INPUT_KINDS[1]:
    inp[1].selectbox("Backbone", list(BACKBONES), key="design_backbone", on_change=design.on_input)
    inp[2].multiselect("Layers", list(BACKBONES[ss["design_backbone"]]), key="design_layers",
                       on_change=design.on_input,
                       help="Each layer's maps are resized to the finest chosen layer's grid and stacked.")
    inp[3].number_input("Pooling", min_value=1, max_value=MAX_POOL, step=2, key="design_pool", on_change=design.on_input,
                        help=f"Average over a pool x pool neighbourhood of feature cells (odd; 1: none; "
                             f"default {DEFAULT_POOL}).")
try:
    ae_input_shape(config, shape)  # refuses what the backbone cannot take (e.g. 5 image channels)
    st.caption(f"The AE's input: {describe_input(config.input, shape)}.")
except ShapeError as e:
    st.error(str(e))

st.subheader("Blocks")
st.caption("Row b holds entry b-1 of each list: block_ker, drop, block_size_in (encoder block b), and "
           "block_size_out, out_pad (decoder block b, counted from the latent; the decoder takes kernels and "
           "dropouts in reverse). Editing an `_out` feature count also updates the next row's `_in`.")
if err := ss.pop("design_table_error", None):
    st.error(err)
table = pd.DataFrame(arch.block_rows(config), columns=arch.BLOCK_COLUMNS)
table.index = pd.RangeIndex(1, len(table) + 1, name="block")
# Widths in px, so that every column and its header fit the page's width at 1400 px, the out_pad pair included.
# No min/max on the columns: the grid would drop an out-of-range cell without a word, where the parser
# refuses it with a line that names the field (absorb_table_edits).
num = partial(st.column_config.NumberColumn, width=84)
st.data_editor(table, key=design.editor_key(), num_rows="fixed", column_config={
    "kernel": num("kernel", width=72, step=1, help=f"1 to {MAX_KERNEL}"),
    "drop": num("drop", width=72, step=0.05, format="%.2f", help="dropout, in [0, 1)"),
    "out_pad_h": num("out_pad (h)", width=104, step=1, help="out_pad[i] along H: 0 or 1"),
    "out_pad_w": num("out_pad (w)", width=104, step=1, help="out_pad[i] along W: 0 or 1"),
    **{c: num(c, step=1, help=f"features, 1 to {MAX_FEATURES}") for c in arch.BLOCK_COLUMNS[2:8]}})
row = st.columns(5)
row[0].number_input("blocks", min_value=1, max_value=MAX_BLOCKS, step=1, key="design_blocks", on_change=design.on_blocks,
                    help="Adds or removes the deepest block on both sides.")
row[1].number_input("latent_size", min_value=1, max_value=MAX_FEATURES, step=1, key="design_latent_size",
                    on_change=design.on_latent, help="Channels of the latent code.")
row[2].number_input("latent_ker", min_value=1, max_value=MAX_KERNEL, step=1, key="design_latent_ker", on_change=design.on_latent)
row[3].number_input("latent_opad (h)", min_value=0, max_value=1, step=1, key="design_lopad_h", on_change=design.on_latent)
row[4].number_input("latent_opad (w)", min_value=0, max_value=1, step=1, key="design_lopad_w", on_change=design.on_latent)

left, right = st.columns([3, 2])
with left:
    st.subheader("Config (JSON)")
    # Kept across a visit to another page: a half-typed (invalid) config is not thrown away (QA sweep 7).
    st.text_area("Config as JSON (or the reference's printed-dict format)", key="design_json", height=260,
                 on_change=design.on_json, label_visibility="collapsed", persist_state=KEEP,
                 help="Applied when you leave the box or press Ctrl+Enter.")
    if err := ss.get("design_json_error"):
        st.error(f"{markdown_literal(err)} — the page still shows the last valid config.")
with right:
    st.subheader("Files")
    st.file_uploader("Load a config (.json, or the reference AE_config.txt)", type=["json", "txt"],
                     key="design_upload", on_change=on_upload, max_upload_size=CONFIG_UPLOAD_MB)
    if upload_notice := design.pop_notice("design_upload_notice"):  # beside the uploader, not at the page's top
        getattr(st, upload_notice[0])(markdown_literal(upload_notice[1]))
    st.download_button("Download config.json", data=config.to_json(), file_name="config.json",
                       mime="application/json", on_click="ignore", icon=":material/download:",
                       help="The config the page shows: the last valid one while the JSON box holds an error.")
    st.button(f"Reload preset {ss['design_preset']}", on_click=design.load_preset, key="design_reload",
              icon=":material/restart_alt:", help="Undo every edit: back to the preset's config and input shape.")
if unknown and not ss.get("design_json_error"):  # escaped user text: "__import__" must not render as bold "import"
    st.warning(markdown_literal(" ".join(unknown)) + " (the model ignores them; they are kept in the "
               "downloaded file).")

# --- the shape report ----------------------------------------------------------------------------
try:
    report = propagate_image(config, shape)  # from the feature tensor when the AE takes features
except ValueError as e:  # ShapeError: the network cannot run at this input size
    st.error(str(e))
    if getattr(e, "suggested", None) is not None:  # e.g. the feature channels: one click sets them
        st.button("Apply suggested fix", type="primary", on_click=design.apply, args=(e.suggested.to_dict(),),
                  key="design_apply")
    st.stop()

for col, (label, value, help_text) in zip(st.columns(4), arch.summary_metrics(report, shape[1:])):
    col.metric(label, value, help=help_text)
for warn in arch.design_warnings(report):
    st.warning(warn, icon="⚠️")

st.plotly_chart(arch.architecture_figure(report), key="design_figure")

if report.ok:
    st.success(f"The decoder mirrors the encoder: {arch.shape_text(report.input)} in, "
               f"{arch.shape_text(report.output)} out.")
else:
    st.error(f"{len(report.problems)} stage(s) do not mirror the encoder:\n\n"
             + "\n".join(f"- {p.message}" for p in report.problems))
    if report.suggested is not None:
        st.button("Apply suggested paddings", type="primary", on_click=design.apply,
                  args=(report.suggested.to_dict(),), key="design_apply")


def red_when_bad(frame: pd.DataFrame):
    return frame.style.apply(lambda r: ["background-color: rgba(228, 87, 86, 0.25)" if not r["ok"] else ""] * len(r),
                             axis=1)


status = {"ok": st.column_config.CheckboxColumn("ok", width="small", help="the stage's output mirrors the encoder")}
st.subheader("Stages")
# The fix is the long text: the other columns stay narrow so that it shows whole.
narrow = {c: st.column_config.TextColumn(width="small") for c in ("stage", "output", "must mirror")}
st.dataframe(red_when_bad(pd.DataFrame(arch.stage_rows(report))), hide_index=True,
             column_config={**status, **narrow, "fix": st.column_config.TextColumn(width="large")})
st.subheader("Layers")
layers = pd.DataFrame(arch.layer_rows(report))
right = {c: st.column_config.TextColumn(alignment="right") for c in ("kernel", "stride", "padding", "output_padding")}
st.dataframe(red_when_bad(layers), hide_index=True, column_config={**status, **right},
             height=min(38 + 35 * len(report.layers), 600))
