"""Compare page: 2 to 4 runs side by side, to see why one beat another.

Config diff, shape tables, settings diff (train.json), loss curves, and on one data set the
metrics, ROC curves and the same images' heatmaps, each on its run's fixed scale. Runs of every
method compare alike. What differs between the runs is udd_core.compare, how they score the same
images udd_core.compare_scores; the scoring is udd_core.inspection, cached per (run, weights time,
data, split).
"""
import os
from collections.abc import Sequence

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from pages.run_focus import (KEEP, focused_run, hand_over_deep_link, heal_pick, run_label, set_focus, show_notice,
                             warn_stale_link)
from udd_core import compare as cmp
from udd_core import compare_scores as cmp_scores
from udd_core import runs
from udd_core.data import data_kind, kind_mismatch, typed_path
from udd_core.display import breakable, markdown_literal, score_text
from udd_core.methods import WAFER_FEATURES, detector_class, epoch_loops, fitted_in_one_pass, has_detector
from udd_core.notices import as_sentence, error_line, is_caution
from udd_core.run_notes import damaged_note, ending_note, history_note, learned_defects_note, unfinished_note
from udd_core.inspection import inspect_run
from udd_core.render import scale_bar_rgb

hand_over_deep_link("pages/compare.py")  # first: a deep link before app.py ever ran

ROOT = runs.runs_root()
CHANGED_BG = "background-color: rgba(245, 133, 24, 0.28)"  # changed fields and differing stages
BEST_BG = "background-color: rgba(84, 162, 75, 0.30)"  # the best run of a metric
ss = st.session_state


@st.cache_resource(show_spinner=False, max_entries=8)
def cached_inspection(run_dir: str, data: str, split: str, stamp: float):
    """One run scored on the data set with its default post-processing (stamp: the model files' mtime)."""
    return inspect_run(run_dir, data, split=split)


def short(name: str, data: str) -> str:
    """An image's name relative to the data set ("test/spot/000.png"), else as the loader named it."""
    return os.path.relpath(name, data) if name.startswith(data.rstrip("/") + "/") else name


def diff_table(rows: list, names: list[str], key: str, without: Sequence[str] = (), noun: str = "field") -> None:
    """Fields as rows, runs as columns; changed rows highlighted (and listed in the "changed" column).
    ``without``: "run: why" of the runs that have no such table (no autoencoder config, or an unreadable one);
    they take no part in "differ"."""
    changed = [r.field for r in rows if r.changed]
    among = f" among the runs with an autoencoder config ({'; '.join(without)})" if without else ""
    if lone := len(names) - len(without) < 2:  # nothing to compare a lone config with: no "changed" column
        st.caption(f"Only one of these runs has a readable autoencoder config ({'; '.join(without)}).")
    else:
        st.caption(cmp.differ_line(changed, among, noun=noun))
    if ss.get("cmp_only_changed"):
        rows = [r for r in rows if r.changed]
    df = pd.DataFrame([[r.field, *r.values, r.changed] for r in rows], columns=["field", *names, "changed"])
    if df.empty:
        return
    if lone:
        st.dataframe(df.drop(columns="changed"), hide_index=True, key=key)
        return
    style = df.style.apply(lambda row: [CHANGED_BG if row["changed"] else ""] * len(row), axis=1)
    st.dataframe(style, hide_index=True, key=key, column_config={"changed": st.column_config.CheckboxColumn()})


def on_pick() -> None:
    heal_pick("cmp_runs", list(by_name))  # runs, not their old status labels
    if ss["cmp_runs"] and focused_run() not in ss["cmp_runs"]:
        set_focus(ss["cmp_runs"][0])  # the focused run left the comparison: the first one takes its place


st.title("Compare")
st.caption("Two to four runs side by side: what differs between them, and how each scores the same images.")
found = runs.list_runs(ROOT)
by_name = {r.name: r for r in found}
if len(found) < cmp.MIN_RUNS:
    st.info(f"Compare needs at least two runs (found {len(found)} in `{ROOT}`). Train them on the **Train** page.")
    st.stop()

# The run in focus (picked on any page) is always among the compared ones; by default with the newest other
# run trained on the same data (else the newest other run).
warn_stale_link(list(by_name), ROOT)
focus = focused_run() if focused_run() in by_name else found[0].name
# The widget's value; after a visit to another page (which drops widget values) the copy kept in cmp_picked.
picked = [n for n in ss.get("cmp_runs", ss.get("cmp_picked", [])) if n in by_name]
# A run newly put in focus joins; one the user took out here stays out (the list may be cleared).
if focus not in picked and ss.get("cmp_focus_seen") != focus:
    picked = [focus, *[n for n in picked if n != focus]][:cmp.MAX_RUNS]
ss["cmp_focus_seen"] = focus
shared = [n for n in st.query_params.get("with", "").split(",") if n in by_name and n not in picked]
if "cmp_picked" not in ss and shared:  # a reload or a shared link (?with=): the runs it compared (QA sweep 19b)
    picked += shared[:cmp.MAX_RUNS - len(picked)]
elif "cmp_picked" not in ss:  # the first visit: the focus and the newest other run, one on the same data first
    candidates = [by_name[n].path for n in by_name if n not in picked]
    scorable = [p for p in candidates if has_detector(p)] or candidates  # not a run that saved nothing yet
    others = cmp.same_data_first(by_name[focus].path, scorable)
    picked += [p.name for p in others][:cmp.MIN_RUNS - len(picked)]
ss["cmp_runs"] = picked
set_focus(focus)
# No "Select all" (it would fill the 4 places with the list's first runs) and no fuzzy matching: typing part
# of a run's name lists the runs whose names contain it.
st.multiselect("Runs", list(by_name), key="cmp_runs", max_selections=cmp.MAX_RUNS, on_change=on_pick,
               select_all=False, filter_mode="contains", format_func=lambda n: f"{n} · {run_label(by_name[n])}",
               help="The run in focus on the other pages comes first; add up to three more.")
names = ss["cmp_picked"] = list(ss["cmp_runs"])
along = ",".join(n for n in names if n != focused_run())  # the focus is ?run=; the others ride beside it
if along and st.query_params.get("with") != along:
    st.query_params["with"] = along
elif not along and "with" in st.query_params:
    del st.query_params["with"]
if len(names) < cmp.MIN_RUNS:
    st.info("Pick at least two runs to compare.")
    st.stop()
sides = [cmp.read_side(by_name[n].path) for n in names]
st.toggle("Only fields that differ", key="cmp_only_changed", persist_state=KEEP)

st.subheader("Config")
without = [f"{n}: {s.no_config}" for n, s in zip(names, sides) if s.config is None]
if all(s.config is None for s in sides):
    st.info(f"None of these runs has a readable autoencoder config ({'; '.join(without)}).")
else:
    diff_table(cmp.config_diff(sides), names, "cmp_config", without)

st.subheader("Shapes")
st.caption("Each stage's output (C x H x W) at the run's input size; stages that differ between the runs "
           "are highlighted.")
if all(s.config is None for s in sides):
    st.info(f"No shapes to show: none of these runs has a readable autoencoder config ({'; '.join(without)}).")
else:
    diff_table(cmp.shape_rows(sides), names, "cmp_shapes", without,
               noun="row")  # stages and the totals (params, MACs, ...), not config fields

st.subheader("Settings")
diff_table(cmp.settings_diff(sides), names, "cmp_settings")

st.subheader("Loss curves")
log = st.toggle("Log scale", key=f"cmp_log_{abs(hash(tuple(names))) % 10**8}", value=cmp.wants_log_scale(sides),
                help="On by default when the runs' losses lie ten times apart or more: on a linear axis the lower "
                     "curves would lie flat on zero.")
if any(s.history for s in sides):
    st.plotly_chart(go.Figure(cmp.loss_figure(sides, log)), key="cmp_loss")
    if later := [s.name for s in sides if len(epoch_loops(s.path)) > 1]:  # Deep SVDD's loss measures another thing
        st.caption(f"{', '.join(later)}: the pretraining loss; the later epoch loop (Deep SVDD's distance to its "
                   "centre) is drawn on the Train page.")
    for note in cmp.curve_notes(sides):
        show_notice(note)
elif all(fitted_in_one_pass(s.method) for s in sides):
    st.info("These runs are fitted in one pass, with no training epochs: they have no loss curves.")
else:
    st.info("No epoch has finished in these runs yet.")
for s in sides:  # why a run may lose: it is not done, or it ended while its loss still fell
    for note in (unfinished_note(s.path) or ending_note(s.path), learned_defects_note(s.path), history_note(s.path)):
        if note:
            show_notice(note)

# --- one data set, scored by every run ---------------------------------------------------------------
st.subheader("On one data set")
c1, c2 = st.columns([4, 1])
default = str((sides[0].info.get("data") or {}).get("path", ""))
data = typed_path(c1.text_input("Data set", value=default, key=f"cmp_data_{names[0]}",
                                help="MVTec folder, folder of images or wafer .npy/.npz; by default the first run's "
                                     "training data."))
if not data:
    st.info("Enter the path of a data set to score every run on it.")
    st.stop()
try:
    kind = data_kind(data)
except ValueError as e:
    st.error(error_line(e))
    st.stop()
split = c2.selectbox("Split", ("test", "train", "all"), key="cmp_split") if kind == "mvtec" else "all"
scored, inspections = [], []
with st.spinner("Scoring every run on the data set ..."):
    for s in sides:
        if not has_detector(s.path):
            st.warning(f"{s.name}: not scored ({error_line(damaged_note(s.path) or 'no saved model yet')}).")
            continue
        # A wafer run on photos (or the other way round) is left out: its numbers would rank beside the others'
        # in the table and the ROC, as `udd score` refuses to produce them.
        if mismatch := kind_mismatch((s.info.get("data") or {}).get("kind"), kind, "its scores"):
            st.warning(f"{s.name}: not scored ({mismatch}).")
            continue
        try:
            inspections.append(cached_inspection(str(s.path), data, split, runs.model_stamp(s.path)))
            scored.append(s.name)
        except (ValueError, OSError) as e:
            st.warning(f"{s.name}: not scored ({error_line(e)}).")
if not inspections:
    st.stop()
# After scoring: a copy of a run's own images elsewhere is told apart from other data by their digest.
trained_on = [str((s.info.get("data") or {}).get("path", "")) for s in sides if s.name in scored]
if elsewhere := cmp_scores.trained_elsewhere(scored, trained_on, inspections):
    st.info(f"Trained on other data than {data}: {'; '.join(elsewhere)}. Their scores here show how they "
            "carry over, not how they do on their own data.")
if here := cmp_scores.trained_here(scored, inspections):  # as Inspect notes it for one run
    one = len(here) == 1
    st.info(f"Trained on these images: {', '.join(here)}. The images {'it' if one else 'they'} learned are "
            f"scored too, and score more normal than unseen images would, so {'its' if one else 'their'} metrics "
            "here are not those of new images.")

if blind := cmp_scores.wafer_features_runs(scored, inspections):  # their heatmaps are no equals of the others'
    whose = "its" if len(blind) == 1 else "their"
    st.warning(f"{', '.join(blind)}: ImageNet backbone features {WAFER_FEATURES}, so {whose} heatmaps may miss the "
               "pattern whatever the metrics say; a pixel autoencoder measures the dies.")

rows = cmp_scores.metric_rows(inspections)
method_of = {s.name: s.method for s in sides}
st.caption("Runs: " + "; ".join(f"**{n}**: {method_of[n]}" for n in scored))  # timestamped names say no method
# As text: Streamlit shows a missing number as "None" whatever the Styler's na_rep says.
df = pd.DataFrame([[r.metric, *["n/a" if v is None else cmp_scores.shown_value(r.metric, v) for v in r.values]]
                   for r in rows], columns=["metric", *scored])
best = {(k, b) for k, r in enumerate(rows) for b in r.best}
style = df.style.apply(lambda col: [BEST_BG if (k, scored.index(col.name)) in best else "" for k in range(len(col))],
                       subset=scored)
st.dataframe(style, hide_index=True, key="cmp_metrics",
             column_config={n: st.column_config.TextColumn(alignment="right") for n in scored})
if units := cmp_scores.counting_note(scored, inspections):  # tiles beside whole images
    st.warning(as_sentence(units))
if close := cmp_scores.interval_note(scored, inspections):  # a "best" this test set cannot tell apart
    st.caption(f"ℹ️ {as_sentence(close)}")
if borrowed := [n for n in scored if detector_class(method_of[n]).own_scores]:  # dsvdd, latent-knn
    st.caption(f"{', '.join(borrowed)}: the pixel AUROC and AUPRO judge the pretrained autoencoder's residual map, "
               "the heatmap these runs show; their image score is a latent distance, not read from that map.")
own = cmp_scores.trained_scoring_words(scored, inspections)
st.caption("Green: the best run of a metric (every run that ties for it). Each run scores with its own default "
           f"post-processing (as `udd score` does{own}), not the Inspect sidebar's. Threshold, FPR and TPR are each "
           "run's own operating point (target FPR on its normal validation images).")
if notes := [(n, note) for n, i in zip(scored, inspections) for note in i.notices]:
    with st.expander(f"Scoring notes ({len(notes)}): what the loader and each run's scoring said, such as images "
                     "left out"):
        for n, note in notes:
            st.caption(f"{'⚠️ ' if is_caution(note) else ''}**{n}**: {markdown_literal(note)}")

if (roc := cmp_scores.roc_figure(scored, [method_of[n] for n in scored], inspections)) is not None:
    st.plotly_chart(go.Figure(roc), key="cmp_roc")
else:
    st.info("ROC curves need both normal and defective images with labels.")

st.markdown("**Heatmaps**: each run's anomaly map on the image, on the run's fixed scale.")
rowed = cmp_scores.heatmap_runs(inspections)
if left_out := [scored[k] for k in range(len(scored)) if k not in rowed]:
    st.caption(f"ℹ️ {', '.join(left_out)}: tiled, so {'its' if len(left_out) == 1 else 'their'} heatmaps are of "
               "tiles, not of the images the other runs scored; Inspect shows them.")
scored, inspections = [scored[k] for k in rowed], [inspections[k] for k in rowed]
common = cmp_scores.common_images(inspections)
if not common:
    st.info("The runs scored no image in common (tiled runs cut the images differently).")
    st.stop()

shown = st.multiselect("Images", common, default=cmp_scores.pick_images(inspections),
                       format_func=lambda n: short(n, data),
                       key=f"cmp_images_{abs(hash((tuple(scored), data, split))) % 10**8}",
                       help="By default the defects the runs rank highest and the normal image they rank highest.")
labels = dict(zip(inspections[0].names, inspections[0].labels))
if shown:
    legend = st.columns([2, 3], vertical_alignment="center")
    legend[0].image(scale_bar_rgb(), width="stretch")
    legend[1].caption(cmp_scores.scale_caption(scored, inspections))
for name in shown:
    row = cmp_scores.heatmap_row(inspections, name)
    cols = st.columns(len(row))
    # breakable: a narrow column wraps the name at its '/' and '_', not mid-word (QA sweep 13: "….j | pg").
    cols[0].image(row[0], caption=markdown_literal(breakable(f"{short(name, data)} · {labels[name]}")),
                  width="stretch")
    for col, img, run_name, insp in zip(cols[1:], row[1:], scored, inspections):
        score = float(insp.scores[insp.names.index(name)])
        col.image(img, caption=f"{run_name} ({method_of[run_name]}) · score {score_text(score)}"
                  + cmp_scores.verdict_words(insp, score), width="stretch")
