"""Inspect page: score a trained run on a data set, look at the residuals, set the threshold, export.

The expensive part (model + images, then scoring per post-processing) is cached with
st.cache_resource on (run, weights time, data, split) and (residual, smoothing, score): moving
the threshold only re-counts the confusion matrix. All logic lives in udd_core.inspection.
"""
import threading

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from pages.run_focus import (KEEP, focused_run, follow_focus, hand_over_deep_link, heal_pick, run_label, set_focus,
                             show_notice, warn_unfinished)
from udd_core import inspection_views as views
from udd_core import runs
from udd_core.run_notes import learned_defects_note
from udd_core.data import data_kind, typed_path
from udd_core.display import folder_and_name, scale_text, score_text
from udd_core.export import ParityError, export_run, parity_caption
from udd_core.inspection import inspect_run
from udd_core.inspection_inputs import load_inputs, moved_data, training_data_gone
from udd_core.metrics import METRIC_HELP
from udd_core.notices import as_sentence, error_line
from udd_core.methods import detector_class, has_detector, run_method, run_scoring_defaults, run_spec
from udd_core.render import WAFER_LEGEND, scale_bar_rgb
from udd_core.heatmap_export import heatmaps_zip
from udd_core.report import build_report, scores_csv
from udd_core.scoring import SCORES, max_border, trained_scoring_note

hand_over_deep_link("pages/inspect.py")  # first: a deep link before app.py ever ran

ROOT = runs.runs_root()
PAGE = 12  # gallery rows per "show more"
SMOOTH_MAX = 16.0  # px; the smoothing slider's top: twice the largest default (8 px), so a default is never at the end
ss = st.session_state


@st.cache_resource(show_spinner=False, max_entries=2)
def cached_inputs(run_dir: str, data: str, split: str, stamp: float):
    """Model and images (stamp: the weights' mtime, so a retrained run is reloaded)."""
    return load_inputs(run_dir, data, split)


@st.cache_resource(show_spinner=False, max_entries=6)
def cached_inspection(run_dir: str, data: str, split: str, stamp: float, residual: str, smooth: float,
                      score: str, topk: float, border: int):
    return inspect_run(residual=residual, score=score, smooth_sigma=smooth, topk_percent=topk, border=border,
                       loaded=cached_inputs(run_dir, data, split, stamp))


@st.cache_resource
def onnx_export_lock() -> threading.Lock:
    """One ONNX export at a time: torch's exporter keeps process-wide state (QA sweep 15: a double click)."""
    return threading.Lock()


st.title("Inspect")
all_runs = [r for r in runs.list_runs(ROOT) if has_detector(r.path)]
if not all_runs:
    st.info("No trained run yet. Train a model on the **Train** page: its runs appear here, ready to inspect.")
    st.stop()

by_name = {r.name: r for r in all_runs}


def new_run() -> None:
    """A new run on this page: its own training data, its method's post-processing, the gallery from its top."""
    path = by_name[ss["insp_run"]].path
    ss["insp_data"] = str(runs.run_source(path).get("path", ""))
    post = run_scoring_defaults(path)
    ss["insp_residual"], ss["insp_score"] = post["residual"], post["score"]
    ss["insp_smooth"], ss["insp_topk"] = float(post["smooth_sigma"]), post["topk_percent"]
    ss["insp_border"] = post["border"]
    ss["insp_show"] = PAGE


def on_run() -> None:
    # Only another run resets the settings, not the same run under its new status label (heal_pick).
    if (name := heal_pick("insp_run", list(by_name))) and name != focused_run():
        set_focus(name)  # the new focus, before follow_focus reads it
        new_run()


if follow_focus("insp_run", list(by_name), ROOT):
    new_run()


main = st.empty()  # the page's first line: where a bad data path is reported, not in the narrow sidebar
with st.sidebar:
    st.subheader("Run and data")
    st.selectbox("Run", list(by_name), key="insp_run", persist_state=KEEP, on_change=on_run,
                 format_func=lambda n: f"{n} — {run_label(by_name[n])}")
    st.text_input("Data path", key="insp_data", persist_state=KEEP,
                  help="MVTec folder, folder of images, one image file, or wafer .npy/.npz")
    data_path = typed_path(ss["insp_data"])
    recorded = runs.run_source(by_name[ss["insp_run"]].path).get("path")
    if gone := training_data_gone(data_path, recorded, "type its new place in Data path"):
        main.error(f"Data path (sidebar): {gone}")
        st.stop()
    try:
        kind = data_kind(data_path)
    except ValueError as e:
        why = f" ({runs.no_data_why(by_name[ss['insp_run']].path)})" if not data_path else ""  # no default
        main.error(f"Data path (sidebar): {e}{why}")
        st.stop()
    split = (st.selectbox("Split", ("test", "train", "all"), key="insp_split", persist_state=KEEP)
             if kind == "mvtec" else "all")
    if kind != "mvtec":
        st.caption(views.unsplit_caption(data_path, kind))
    st.subheader("Post-processing")
    run_cls = detector_class(run_method(by_name[ss["insp_run"]].path))
    residual = st.selectbox("Residual", run_cls.residuals, key="insp_residual", persist_state=KEEP)
    # The slider reaches a run's own larger default (an option of its method): never clamped silently.
    smooth = st.slider("Smoothing σ (px)", 0.0, max(SMOOTH_MAX, ss.get("insp_smooth", 0.0)), step=0.5,
                       key="insp_smooth", persist_state=KEEP)
    # A method with its own image score (a latent distance) does not reduce the map: the choice would do nothing.
    own_help = "This method's image score is its own (see the caption), not taken from the map." if run_cls.own_scores else None
    score = st.selectbox("Image score", SCORES, key="insp_score", persist_state=KEEP, disabled=run_cls.own_scores,
                         help=own_help, format_func=(lambda s: "the method's own") if run_cls.own_scores else str)
    ss.setdefault("insp_topk", 1.0)
    topk = st.number_input("Top-k %", 0.01, 100.0, step=0.5, key="insp_topk", persist_state=KEEP,
                           disabled=score != "topk" or run_cls.own_scores)
    shape = runs.trained_shape(by_name[ss["insp_run"]].path)  # the run's maps are this size
    border_max = max_border(shape[1:]) if shape else 100_000
    ss["insp_border"] = min(ss.get("insp_border", 0), border_max)
    border = st.number_input("Border left out of the score (px)", 0, border_max, step=1, key="insp_border",
                             persist_state=KEEP, disabled=run_cls.own_scores,
                             help="Pixels on each side that the image score ignores (the heatmap keeps them): "
                                  "photo edges and backgrounds often vary more than the part itself.")

run = by_name[ss["insp_run"]]
unfinished = warn_unfinished(run.path)
if learned := learned_defects_note(run.path):  # before scoring; the notices below leave it out
    st.warning(as_sentence(learned))
stamp = runs.model_stamp(run.path)
try:
    with st.spinner("Loading the model and the images, then scoring ..."):
        base = cached_inspection(str(run.path), data_path, split, stamp, residual, float(smooth), score,
                                 float(topk) if score == "topk" else 1.0, int(border))
except (ValueError, OSError) as e:
    st.error(error_line(e))
    st.stop()
if mismatch := base.mismatch:  # data of the other kind: the fact every figure below depends on
    st.warning(as_sentence(mismatch))
if said := views.method_caption(run_spec(run.path), base.notices):  # the method, or its loss's scoring
    st.caption(said)
# --- threshold: instant, from the cached scores ------------------------------------------------
tag = abs(hash((run.name, stamp, data_path, split, residual, smooth, score, topk, border))) % 10**8
has_normal = base.normal_scores is not None and len(base.normal_scores) > 0
modes = ("target FPR", "manual", "typed") if has_normal else ("manual", "typed")
c1, c2 = st.columns([1, 2])
mode = c1.radio("Threshold from", modes, key="insp_thr_mode", persist_state=KEEP, horizontal=True)
if mode == "target FPR":
    pct = c2.slider(f"Target false-positive rate on the {base.normal_source} images (%)", 0.0, 20.0, 1.0, 0.1,
                    key="insp_fpr", persist_state=KEEP)
    insp = base.at_target_fpr(pct / 100)
else:
    lo, hi, start = views.manual_threshold_range(base)
    if mode == "manual":
        t = c2.slider("Image-score threshold", lo, hi, start, (hi - lo) / 500, format="%.5g",
                      key=f"insp_thr_{tag}", persist_state=KEEP)
    else:  # exact, any value (QA sweep 21: `udd score --threshold 0.32` was 0.31999 at best on the slider)
        t = c2.number_input("Image-score threshold, as `udd score --threshold` takes it", -1e9, 1e9, start,
                            (hi - lo) / 100, format="%.6g", key=f"insp_typed_{tag}", persist_state=KEEP)
    insp = base.with_threshold(t, "manual")
for note in insp.all_notes():  # after the threshold: they follow it
    if note not in (unfinished, learned, mismatch, trained_scoring_note([note])):  # shown above
        show_notice(note)
# Two rows of four: eight in one row cut the values to "0.…" at 1280 px (QA sweep 10).
for col, (label, value) in zip([*st.columns(4), *st.columns(4)], views.metric_tiles(insp)):
    col.metric(label, value, help=METRIC_HELP[label])
st.caption(views.threshold_caption(insp))
own = st.toggle("Each heatmap on its own colour scale", key="insp_own_scale", persist_state=KEEP,
                help="Off: one scale for every image, so colours compare across images. On: each image from its "
                     "median pixel to its highest, to see where its map peaks when all of it is above the fixed "
                     "scale (a small image, or a photo unusual everywhere).")

tab_gallery, tab_image, tab_plots, tab_export = st.tabs(["Gallery", "One image", "Plots", "Export"])
order = insp.order()

with tab_gallery:
    filters = views.gallery_filters(insp)
    which = st.radio("Show", list(filters), horizontal=True, key="insp_filter", persist_state=KEEP)
    shown = [int(i) for i in order if filters[which][i]]
    n_show = ss.setdefault("insp_show", PAGE)
    st.caption(views.gallery_count(insp, len(shown)))
    columns = views.gallery_columns(insp)  # (panel, its header)
    legend = st.columns([2, 3], vertical_alignment="center")  # one fixed scale for every heatmap
    legend[0].image(scale_bar_rgb(), width="stretch")
    # wafer maps: what the die colours mean, as the report and Generate say it (QA sweep 19a)
    legend[1].caption(insp.scale_legend(own) + (f" {WAFER_LEGEND}." if insp.kind == "wafer" else ""))
    for h, (_, header) in zip(st.columns(len(columns)), columns):
        h.markdown(f"**{header}**")
    for i in shown[:n_show]:
        st.markdown(views.gallery_row_title(insp, i))
        p = insp.panels(i, own_scale=own)
        for col, (key, _) in zip(st.columns(len(columns)), columns):
            col.image(p[key], width="stretch")
    if len(shown) > n_show and st.button(f"Show {min(PAGE, len(shown) - n_show)} more", key="insp_more"):
        ss["insp_show"] = n_show + PAGE
        st.rerun()

with tab_image:
    options = [int(i) for i in order]
    # The widget's key follows the post-processing (its options are reordered); the chosen image does not.
    same = [i for i in options if insp.names[i] == ss.get("insp_picked")]
    pick = st.selectbox("Image (by score)", options, index=options.index(same[0]) if same else 0,
                        key=f"insp_pick_{tag}", persist_state=KEEP,
                        format_func=lambda i: f"{insp.names[i]} — {insp.labels[i]}, "
                                              f"score {score_text(insp.scores[i])}")
    ss["insp_picked"] = insp.names[pick]
    left, right = st.columns([3, 2])
    left.plotly_chart(go.Figure(views.heatmap_figure(insp, pick, insp.image_scale(pick) if own else insp.scale)),
                      key="insp_heat")
    pix = ss.get(f"insp_pix_{tag}", insp.pixel_threshold)  # the box below: its outline and its regions agree
    right.image(insp.panels(pick, pixel_threshold=pix, own_scale=own)["overlay"], width="stretch",
                caption="overlay" + ("" if pix == insp.pixel_threshold else f", outline at {scale_text(pix)}"))
    right.metric("score", score_text(insp.scores[pick]), f"{insp.scores[pick] - insp.threshold:+.3g} vs threshold",
                 delta_color="inverse", help="This image's score; below it, how far it lies above (red: defective) "
                                             "or below the threshold." + insp.units_note())
    if insp.factors is not None:  # the score is not the map's alone: show both parts
        right.caption(insp.score_text(pick).capitalize())
    if unmarked := insp.unmarked_line(pick):  # defective, yet no outline: say why beside it (QA sweep 11)
        right.caption(unmarked)
    r1, r2, r3, r4, r5 = st.columns(5)
    method = r1.radio("Regions", ("components", "dbscan"), key="insp_method", persist_state=KEEP)
    pix = r2.number_input("Pixel threshold", value=float(insp.pixel_threshold), format="%.4g", key=f"insp_pix_{tag}",
                          persist_state=KEEP)
    eps = r3.number_input("DBSCAN eps", 0.5, 50.0, 2.0, 0.5, key="insp_eps", persist_state=KEEP,
                          disabled=method != "dbscan")
    min_s = r4.number_input("DBSCAN min samples", 1, 100, 4, key="insp_mins", persist_state=KEEP,
                            disabled=method != "dbscan")
    min_px = r5.number_input("Min pixels", 0, 100000, 5, key="insp_minpx", persist_state=KEEP)
    regs = insp.regions(pick, method, pix, eps, int(min_s), int(min_px))
    st.dataframe(pd.DataFrame(views.region_rows(regs), columns=list(views.REGION_COLUMNS)), hide_index=True)
    if specks := views.regions_line(insp, pick, regs, pix, int(min_px)):
        st.caption(specks)
    st.caption(views.regions_caption(insp, pick))

with tab_plots:
    a, b = st.columns(2)
    a.plotly_chart(go.Figure(views.score_histogram(insp, base.normal_scores, base.normal_source)), key="insp_hist")
    if (roc := views.roc_with_threshold(insp)) is not None:
        b.plotly_chart(go.Figure(roc), key="insp_roc")
    else:
        b.info("ROC and per-type metrics need both normal and defective images with labels.")
    table = pd.DataFrame(insp.metric_table())
    st.caption("Each type's row: the normal images against that type's images alone; \"all\": against every "
               "defective image, so its pixel AUROC can lie below every type's (the types' maps differ in level).")
    st.dataframe(table, hide_index=True, placeholder="—",  # a metric a type cannot have (no masks): not "None"
                 column_config={c: st.column_config.NumberColumn(help=METRIC_HELP[c], format="%.4f")  # 0.7 -> 0.7000
                                for c in table.columns if c in METRIC_HELP})
    cm = insp.at(insp.threshold)
    st.markdown("**Confusion matrix at the threshold**")
    st.dataframe(pd.DataFrame({"predicted defective": [cm["tp"], cm["fp"]], "predicted good": [cm["fn"], cm["tn"]]},
                              index=["defective", "good"]))
    if rolled := views.image_rollup(insp):  # a tiled run: a verdict per image, which an inspector acts on
        st.markdown(rolled[0])
        st.dataframe(pd.DataFrame(rolled[1]), hide_index=True)
        whole = st.selectbox("Whole image", [r["image"] for r in rolled[1]], key="insp_whole", persist_state=KEEP,
                             format_func=folder_and_name)
        picture, said = views.whole_image_overlay(insp, whole, own)
        st.image(picture, said, width=min(picture.shape[1], 720))  # its own pixels, not blown up to the page

with tab_export:
    st.download_button("Scores (CSV)", scores_csv(insp), f"{run.name}_scores.csv", "text/csv", on_click="ignore")
    st.download_button("Heatmaps (zip of PNGs)", lambda: heatmaps_zip(insp), f"{run.name}_heatmaps.zip",
                       "application/zip", on_click="ignore")
    st.download_button("One-page HTML report", lambda: build_report(insp, run.path), f"{run.name}_report.html",
                       "text/html", on_click="ignore")
    st.caption("The report is a single self-contained HTML file (images inline, no links): mail it as is.")
    st.markdown("**ONNX model for the line**")
    st.caption("One graph from images (N, C, H, W), float32 in [0, 1], to the anomaly map and the image score, with "
               "the run's default post-processing (what `udd export` and `udd score` use, not the sidebar's). It runs "
               "in onnxruntime on the run's validation images and is offered only when its scores match udd's.")
    onnx_key = (str(run.path), stamp)
    if st.button("Export to ONNX", key="insp_onnx"):
        with st.spinner("Exporting and checking the scores in onnxruntime ..."), onnx_export_lock():
            try:  # the run's training data, or, where it has moved, the data typed here
                ss["insp_onnx_result"] = (onnx_key, export_run(run.path, data=moved_data(run.path, data_path)))
            except (ValueError, OSError, ParityError) as e:
                ss["insp_onnx_result"] = (onnx_key, error_line(e))
    done = ss.get("insp_onnx_result")
    if done and done[0] == onnx_key:  # an export of another run (or older weights) is not offered
        if isinstance(done[1], str):
            st.error(done[1])
        else:
            exp = done[1]
            d1, d2 = st.columns(2)
            d1.download_button(f"Download {run.name}.onnx", exp.onnx, f"{run.name}.onnx", "application/octet-stream",
                               on_click="ignore", key="insp_onnx_file")
            d2.download_button(f"Download {run.name}.json (input, threshold, parity)", exp.json_text(),
                               f"{run.name}.json", "application/json", on_click="ignore", key="insp_onnx_json")
            st.caption(parity_caption(exp))
