"""Train page: pick data, a model config and settings for a new run; start it; watch, stop and resume runs.

Jobs train in TrainJob threads held by one JobManager per process (st.cache_resource), so a page
switch or a browser refresh finds them again; the selected run lives in session state and in the
URL (?run=NAME). This file is the form for a new run; the runs side (the selected run, live while it
trains, Resume and the runs table) is pages/train_runs.py.
"""
from contextlib import suppress
from pathlib import Path

import streamlit as st

from pages.run_focus import KEEP, hand_over_deep_link, show_notice
from pages.train_runs import run_panel, runs_table, select
from udd_core import data_preview, runs, sources
from udd_core.config import CONFIG_UPLOAD_MB, parse_config
from udd_core.data import IMAGE_EXTS, WAFER_EXTS, data_kind, typed_path
from udd_core.losses import LOSSES
from udd_core.methods import METHODS, detector_class
from udd_core.design_state import DesignState
from udd_core.presets import PIXEL_PRESET, method_choice, model_presets, preset_choice, resized_note
from udd_core.image_shapes import MAX_SIDE
from udd_core.images import pattern_folder_problem
from udd_core.jobs import JobManager, TrainJob
from udd_core.start_checks import form_message, model_choice, start_refusal
from udd_core.training_data import check_train_on, class_counts
from udd_core.settings import (DEVICES, FORM_NUMBERS, NOISE_NUMBERS, ONE_PASS_NUMBERS, TrainSettings, chosen_classes,
                               classes_among, form_values, settings_from_form, training_presets)

hand_over_deep_link("pages/train.py")  # first: a deep link before app.py ever ran

APP_ROOT = Path(__file__).resolve().parents[1]
ROOT = runs.runs_root()
UPLOAD_EXTS = IMAGE_EXTS | WAFER_EXTS | {".zip"}  # a lone wafer file in the upload folder is the data set
DATA_MODES, MODEL_MODES = ("Sample / shared", "Path", "Upload"), ("Design page", "Preset", "Config file")
TRAIN_ON = {"normal": "Normal images", "all": "All images", "classes": "Chosen classes"}  # the help says what for
FEATURE_AE = "feature-ae"  # the method that trains a design whose input is backbone features
ss = st.session_state


@st.cache_resource(show_spinner=False)
def job_manager(root: str) -> JobManager:
    """The jobs of this process for one runs folder: every session and rerun shares it."""
    return JobManager()


dataset_cache = st.cache_resource(show_spinner=False)(lambda: sources.DatasetCache(max_entries=2))
data_sources = st.cache_data(ttl=60, show_spinner=False)(sources.list_sources)  # cheap, but every rerun counts
describe = st.cache_data(ttl=60, show_spinner=False)(sources.describe)  # lists (and with tiles, opens) every file
kind_of = st.cache_data(ttl=60, show_spinner=False)(data_kind)  # a plain folder's kind lists its files: not per rerun
labels_of = st.cache_data(ttl=60, show_spinner=False)(data_preview.training_labels)  # a wafer file: once a minute
notes_of = st.cache_data(ttl=60, show_spinner=False)(data_preview.training_notes)


def on_train_preset() -> None:
    for k, v in form_values(training_presets()[ss["train_preset"]]).items():
        ss[f"train_{k}"] = v


def apply_choice(changes: dict) -> None:
    """Form changes of `presets.preset_choice` / `method_choice`; a training preset fills in its settings."""
    for k, v in changes.items():
        ss[f"train_{k}"] = v
    if "preset" in changes:
        on_train_preset()


def on_model_preset() -> None:
    apply_choice(preset_choice(ss["train_model_preset"],
                               detector_class(ss.get("train_method", METHODS[0])).trains_epochs))


def on_method() -> None:
    # a method that cannot use the model preset in place switches to its own: the page would open on an error
    changes = method_choice(method := detector_class(ss["train_method"]), ss.get("train_model_preset"))
    ss["train_size_note"] = resized_note(method, (ss.get("train_h"), ss.get("train_w")), changes)
    apply_choice(changes)


def use_method(name: str) -> None:
    ss["train_method"] = name
    on_method()


def on_upload() -> None:
    replaced = ss.get("train_upload_dir")  # this session's last upload: removed below unless a run trained on it
    for k in ("train_upload_dir", "train_upload_error", "train_upload_notes"):
        ss.pop(k, None)
    if files := ss.get("train_upload"):
        try:
            folder, ss["train_upload_notes"] = sources.save_upload([(f.name, f.getvalue()) for f in files], ROOT)
            ss["train_upload_dir"] = str(folder)
        except ValueError as e:  # DataError: a hostile zip, too large, unwritable runs folder
            ss["train_upload_error"] = str(e)
    if replaced:  # after the save: the new folder never takes the old one's name
        sources.discard_upload(replaced, ROOT)


def load_images(path, shape, tile, train_on="normal"):
    """`DatasetCache.training_set` with a progress bar while images decode."""
    bar = st.progress(0.0, text="Loading images")
    try:
        return dataset_cache().training_set(path, shape, tile, train_on,
                                            lambda i, n: bar.progress(i / n, f"Loading {i}/{n}"))
    finally:
        bar.empty()


def number_boxes(boxes) -> list:
    """The settings' number boxes (`settings.FormNumber`s) in rows of three; returns the last row's columns."""
    for i, f in enumerate(boxes):
        if i % 3 == 0:
            row = st.columns(3)
        row[i % 3].number_input(f.label, f.lo, f.hi, key=f"train_{f.key}", step=f.step, format=f.format,
                                help=f.help, persist_state=KEEP)
    return row


# --- state ---------------------------------------------------------------------------------------
for k, v in form_values(training_presets()["reference"]).items():
    ss.setdefault(f"train_{k}", v)
design_config, design_shape = ss.get("design_config"), ss.get("design_input_shape")
mgr = job_manager(str(ROOT.resolve()))

st.title("Train")
st.caption("Train a detector on normal images: an autoencoder (or, to generate maps of every pattern, one trained "
           "on all of them); a memory bank of pretrained backbone features, which needs no training; an autoencoder "
           "on those features (feature-ae); or Deep SVDD and latent-knn, which score the autoencoder's latent code. "
           "Jobs run in the background: switch pages or refresh the browser at will, this page finds them again.")
left, right = st.columns([5, 6], gap="large")

# --- a new run -----------------------------------------------------------------------------------
with left:
    st.subheader("1 · Data")
    mode = st.radio("Data source", DATA_MODES, key="train_data_mode", horizontal=True, persist_state=KEEP)
    if mode == DATA_MODES[0]:
        found = {s.label: str(s.path) for s in data_sources(str(APP_ROOT))}
        path = found.get(st.selectbox("Data set", list(found), key="train_source", persist_state=KEEP))
    elif mode == DATA_MODES[1]:
        path = typed_path(st.text_input("Folder (MVTec or plain images) or wafer .npz/.npy file", key="train_path",
                                        persist_state=KEEP)) or None
    else:
        st.file_uploader("Image files, one .zip of a data set, or one wafer .npz/.npy", accept_multiple_files=True,
                         key="train_upload", on_change=on_upload, type=sorted(e[1:] for e in UPLOAD_EXTS))
        if err := ss.get("train_upload_error"):
            st.error(err)
        for note in ss.get("train_upload_notes", []):  # unreadable files, left out of the saved folder
            st.warning(note)
        path = ss.get("train_upload_dir")
        st.caption(f"Saved in {path}" if path else "Uploads are saved in a new folder under the runs folder.")
    tile = st.checkbox("Cut images into tiles", key="train_tile", persist_state=KEEP,  # a short label: cut at 1280 px
                       help="Tiles of the input size instead of resizing each image to it: one every H rows and W "
                            "columns, the last row and column flush with the far edges, so every pixel is in a tile.")
    estimate = st.empty()

    st.subheader("2 · Method and model")
    method = st.selectbox("Method", METHODS, key="train_method", persist_state=KEEP, on_change=on_method,
                          format_func=lambda m: f"{m} — {detector_class(m).summary}")
    method_cls = detector_class(method)
    mmode = st.radio("Config", MODEL_MODES[0 if design_config and design_shape else 1:], key="train_model_mode",
                     horizontal=True, persist_state=KEEP, disabled=not method_cls.uses_config)
    design_note = st.empty()  # the Design page's config and its input, once checked below
    config = config_error = preset = size = None
    from_design = False
    try:
        if method_cls.uses_config and mmode == MODEL_MODES[0]:  # the Design page's config, at its size
            from_design, config = True, parse_config(design_config)
        elif not method_cls.uses_config:
            for side in ("train_h", "train_w"):  # not a bare tuple, which Streamlit's "magic" would draw
                ss.setdefault(side, 256)
        else:
            ss.setdefault("train_model_preset", PIXEL_PRESET)
            if "train_h" not in ss:
                on_model_preset()
            if mmode == MODEL_MODES[1]:
                preset = model_presets()[st.selectbox("Preset", list(model_presets()), key="train_model_preset",
                                                      on_change=on_model_preset, persist_state=KEEP)]
                config = preset.config
            elif up := st.file_uploader("config.json or the reference AE_config.txt", type=["json", "txt"],
                                        key="train_config_file", max_upload_size=CONFIG_UPLOAD_MB):
                config = parse_config(up.getvalue())
    except ValueError as e:  # a config file (or design) that does not parse
        config_error = e
    if not from_design:
        hw = st.columns(2)
        size = (hw[0].number_input("Height", 1, MAX_SIDE, key="train_h", persist_state=KEEP),
                hw[1].number_input("Width", 1, MAX_SIDE, key="train_w", persist_state=KEEP))
        if note := ss.pop("train_size_note", None):  # once, right after the method switch that set it
            st.caption(note)
    text = st.text_input("Method options (JSON)", key="train_options", persist_state=KEEP,
                         placeholder=method_cls.option_example,
                         help="The method's own settings; empty: its defaults. See the README's table of methods.")
    choice = model_choice(method, text, config, size, preset.input_shape[0] if preset else None,
                          design_shape if from_design else None, config_error)
    config, shape, options = choice.config, choice.shape, choice.options
    if from_design and shape:
        design_note.caption(f"The Design page's config ({DesignState(ss).label()}), input "
                            f"{'x'.join(map(str, shape))}; change it there.")
    if choice.refusal is not None:
        st.error(choice.refusal)
        # The Design page's feature-AE design, with a pixel method still chosen: one click trains it as designed.
        if from_design and method != FEATURE_AE and isinstance(design_config, dict) and design_config.get("input"):
            st.button(f"Train this design with {FEATURE_AE}", key="train_use_feature_ae", on_click=use_method,
                      args=(FEATURE_AE,))
    data_error = patterns_error = None
    if path and shape:
        try:
            batch = ss["train_batch_size"]  # the settings below: a step's activations count too (QA sweep 10)
            estimate.caption(f"≈ {describe(path, shape, tile, choice.per_image, choice.step_bytes(), batch)}")
        except (ValueError, OSError) as e:
            data_error = str(e)
            estimate.error(data_error)  # shown once, here; Start stays off until the data is usable

    st.subheader("3 · Settings")
    if not method_cls.trains_epochs:  # one pass, no epochs: the training loop's settings (and presets) do nothing
        st.caption(f"{method} is fitted in one pass, with no training epochs: only the validation split, "
                   "the seed, the device and what to train on apply.")
        row = number_boxes([f for f in FORM_NUMBERS if f.key in ONE_PASS_NUMBERS])
        row[2].selectbox("Device", DEVICES, key="train_device", persist_state=KEEP)
    else:
        st.selectbox("Training preset", list(training_presets()), key="train_preset", on_change=on_train_preset,
                     persist_state=KEEP, help="Fills in every setting below; edit them afterwards.")
        number_boxes(FORM_NUMBERS)[2].selectbox("Loss", LOSSES, key="train_loss", persist_state=KEEP)
        if caution := method_cls.settings_caution({"weight_decay": ss["train_weight_decay"]}):  # Deep SVDD's
            show_notice(caution)
        row = st.columns(3, vertical_alignment="bottom")
        row[0].selectbox("Device", DEVICES, key="train_device", persist_state=KEEP)
        row[1].toggle("bf16", key="train_amp_bf16", persist_state=KEEP,
                      help="bfloat16 autocast for the training steps where the hardware runs it natively, after a "
                           "check that loss and gradients match float32; validation stays float32. Off: float32 "
                           "throughout.")
        if method_cls.paints_noise:  # a feature AE trains on cached features: nothing to paint on
            number_boxes(NOISE_NUMBERS)
            st.text_input("Noise pattern folder (optional)", key="train_patch_dir", persist_state=KEEP,
                          help="Images whose shapes are painted as noise instead of rectangles (dark pixels = shape).")
            if ss["train_noise_patches"] and (patterns_error := pattern_folder_problem(ss["train_patch_dir"])):
                st.error(f"Noise pattern folder: {patterns_error}")  # as typed, not after Start (QA sweep 12)
    st.selectbox("Train on", list(TRAIN_ON), key="train_on_mode", format_func=TRAIN_ON.get, persist_state=KEEP,
                 help="Normal images: an autoencoder for detection learns only defect-free images (labels "
                      "good/none/normal, or unlabelled). All images: defects too, to generate every pattern "
                      "(its scores then no longer mean 'unlike normal'). Chosen classes: only those labels.")
    train_on, known = ss["train_on_mode"], None  # classes below, at the form's width: beside, a sliver (QA sweep 15)
    if train_on == "classes":
        with suppress(ValueError, OSError):  # the data's labels and counts; unreadable: the check below says why
            known = class_counts(labels_of(path)) if path and shape and data_error is None else None
        if known:  # QA sweep 11: picked from the data's own labels, not typed (a typo was the usual mistake)
            pick_key = f"train_on_picked_{abs(hash(path)) % 10**8}"
            ss.setdefault(pick_key, classes_among(ss.get("train_on_classes"), known))  # a preset's, or typed
            st.multiselect("Classes", list(known), key=pick_key, format_func=lambda k: f"{k} ({known[k]})",
                           placeholder="the labels to train on")
            ss["train_on_classes"] = ",".join(ss[pick_key])  # the form's text value, which settings read
        else:  # no readable labels yet: typed, and checked once the data reads
            st.text_input("Classes (labels, separated by commas)", key="train_on_classes", persist_state=KEEP,
                          placeholder="e.g. Center,Donut,none")
        try:  # none picked, or an empty name typed: said at once
            train_on = chosen_classes(ss["train_on_classes"], picked=bool(known))
        except ValueError as e:
            data_error = data_error or str(e)
            st.error(form_message(e))
    if path and shape and data_error is None:  # the data is readable (its estimate above)
        try:  # a class the data lacks, or no normal image to learn: from the labels, before Start (QA sweep 7)
            train_on = check_train_on(labels_of(path), train_on)  # as the data spells the classes: what Start records
            for note in notes_of(path, train_on):  # what Start would say of the labels (QA sweep 20), before it
                show_notice(note)
        except (ValueError, OSError) as e:
            data_error = str(e)
            st.error(form_message(e))
    if ss.pop("train_name_taken", False):  # the last start used the typed name: the next run needs its own
        ss["train_name"] = ""
    run_name = st.text_input("Run name", key="train_name", persist_state=KEEP,
                             placeholder=f"automatic, e.g. {sources.default_run_name(ROOT, path)}").strip()
    sharing = st.empty()  # filled once the runs are listed below, the one just started among them
    if data_error is None and (data_error := start_refusal(ROOT, run_name, path, config, ss["train_loss"],
                                                           method_cls.trains_epochs, kind_of)):
        st.error(data_error)
    if st.button("Start training", type="primary", icon=":material/play_arrow:",
                 disabled=not path or shape is None or bool(data_error or patterns_error)):  # nothing to start
        try:
            settings = settings_from_form({k: ss[f"train_{k}"] for k in form_values(TrainSettings())})
            run_dir = sources.new_run_path(ROOT, run_name, path)
            images, notices, groups = load_images(path, shape, tile, settings.train_on)
            settings = settings.replace(train_on=train_on)  # the classes as the data spells them (checked above)
            source = sources.source_record(path, tile, notices)
            mgr.start(TrainJob.create(run_dir, config, shape, images, settings, source, method, options, groups))
            select(run_dir.name)
        except (ValueError, OSError) as e:  # settings, run name, data, an unwritable runs folder: one line
            st.error(form_message(e))  # the field as this page labels it
        else:
            if run_name:
                ss["train_name_taken"] = True
                st.rerun()  # clears the name box before the next Start could reuse it

# --- runs ----------------------------------------------------------------------------------------
all_runs = runs.list_runs(ROOT)  # read once for the panel and the table's poll decision
if note := mgr.sharing_note(all_runs):
    sharing.caption(f"ℹ️ {note}")
with right:
    run_panel(mgr, ROOT, all_runs, load_images)
st.subheader("All runs")  # the page's width: seven columns, none cut off
runs_table(mgr, ROOT, all_runs)
