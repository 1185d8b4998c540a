"""Generate page: new images (new wafer maps) from a trained run, by adding Gaussian noise to latent codes.

Shows what a model has learned: source images next to their reconstruction and noised variants,
random latents drawn from the training images' latent statistics, and a latent interpolation strip.
All computing is in udd_core.generation; models and data are cached per run folder and mtime.
"""

import math

import plotly.graph_objects as go
import streamlit as st

from pages.run_focus import (KEEP, focused_run, follow_focus, hand_over_deep_link, heal_pick, run_label, set_focus,
                             show_notice, warn_unfinished)
from udd_core import display
from udd_core import generation as gen
from udd_core import generation_views as views
from udd_core import latent_map
from udd_core import wafer_generation as wg
from udd_core.data import data_kind, kind_mismatch, same_data, typed_path
from udd_core.inspection_inputs import training_data_gone
from udd_core.methods import detector_class, has_detector, run_method
from udd_core.model import WEIGHTS_FILE
from udd_core.notices import as_sentence, error_line
from udd_core import runs
from udd_core.runs import list_runs

hand_over_deep_link("pages/generate.py")  # first: a deep link before app.py ever ran

ROOT = runs.runs_root()
MODES = ("Noised latents", "Random latents")
LINE = 10  # images to a line: a source, its reconstruction and up to 8 variants
GAP = 4  # px of transparent space either side of each image
ss = st.session_state


@st.cache_resource(show_spinner="Loading the model ...", max_entries=4)
def cached_model(run_dir: str, mtime: float):
    """The run's best model; a new mtime (training saved better weights) loads it again."""
    return gen.load_generator(run_dir)


@st.cache_resource(show_spinner="Loading the images ...", max_entries=2)
def cached_data(run_dir: str, mtime: float, data_path: str, split: str, tile: bool):
    return gen.load_images(cached_model(run_dir, mtime), data_path, split, tile)


@st.cache_resource(show_spinner="Measuring the latent spread ...", max_entries=4)
def cached_sigma_scale(run_dir: str, mtime: float, data_path: str, split: str, tile: bool):
    """(suggested σ, slider maximum) from the latent spread of the images the run trained on; the
    same default `udd generate` takes without --sigma."""
    return gen.default_sigma_scale(cached_model(run_dir, mtime), cached_data(run_dir, mtime, data_path, split, tile),
                                   runs.run_train_on(run_dir))


@st.cache_data(show_spinner="Generating the HW2 view ...", max_entries=4)
def cached_class_grids(run_dir: str, mtime: float, data_path: str, split: str, tile: bool, sigma: float, seed: int,
                       k: int, per: int):
    """One grid per pattern class (sources, reconstructions, variants) as die values."""
    ds = cached_data(run_dir, mtime, data_path, split, tile)
    return wg.class_grids(cached_model(run_dir, mtime), ds.images, ds.labels, sigma, seed, n_sources=k,
                          per_source=per)


@st.cache_resource(show_spinner="Encoding the images for the latent map ...", max_entries=2)
def cached_latent_map(run_dir: str, mtime: float, data_path: str, split: str, tile: bool):
    return latent_map.fit_latent_map(cached_model(run_dir, mtime), cached_data(run_dir, mtime, data_path, split, tile))


@st.cache_resource(show_spinner="Fitting latent statistics ...", max_entries=4)
def cached_stats(run_dir: str, mtime: float, data_path: str, split: str, tile: bool, per_position: bool):
    """Latent statistics of the images the run learned from (its train_on)."""
    images = gen.images_trained_on(cached_data(run_dir, mtime, data_path, split, tile), runs.run_train_on(run_dir))
    return gen.training_stats(cached_model(run_dir, mtime), images, per_position=per_position)


def show_error(e: Exception) -> None:
    st.error(error_line(e))


def show(row: views.ImageRow, per_line: int = LINE) -> None:
    """A row of images read left to right, in columns of one width, at most `per_line` to a line: as one list of
    images, a row wrapped its last picture alone onto a line of its own at 1280 px (QA sweeps 11 and 12). Each
    image is at most its own width, and a long caption cannot widen it. PNG: JPEG smears die grids."""
    if row.heading:
        st.markdown(row.heading)
    images = [display.spaced(i, GAP) for i in row.images]
    captions = [display.markdown_literal(display.breakable(c)) for c in row.captions]  # labels shown as typed
    n = math.ceil(len(images) / math.ceil(len(images) / per_line))  # lines of one length: 16 as 8 + 8
    for start in range(0, len(images), n):
        for col, image, caption in zip(st.columns(n, gap="small"), images[start:start + n], captions[start:start + n]):
            col.image(image, caption=caption, width="content", output_format="PNG")


st.title("Generate")
st.caption("New images from a trained model: the latent code of a source image plus Gaussian noise of "
           "std σ, decoded. Small σ stays close to the source; large σ shows what else the decoder draws.")

listed: list = []
try:
    listed = [r for r in list_runs(ROOT) if has_detector(r.path)]
    found = [r for r in listed if detector_class(run_method(r.path)).generates]
except OSError as e:
    found = []
    show_error(e)
no_decoder = {r.name: run_method(r.path) for r in listed if r not in found}
if (asked := focused_run()) in no_decoder and found:  # with none found, the line below names it
    st.info(f"{asked} is a {no_decoder[asked]} run: it does not generate images, so it is not listed "
            "here. Generation needs an autoencoder run: the page shows the run picked below.")  # QA sweep 11
if not found:
    others = "" if not no_decoder else (" The runs there (" + ", ".join(f"{n}: {m}" for n, m in no_decoder.items())
                                        + ") do not generate images.")
    st.info(f"No trained autoencoder runs yet (looked in `{ROOT}`).{others} Train an autoencoder on the **Train** "
            "page first; its runs show up here as soon as the first epoch has saved a model.")
    st.stop()

runs_by_name = {r.name: r for r in found}


def on_pick() -> None:
    if name := heal_pick("gen_run", list(runs_by_name)):  # a run, not its old status label
        set_focus(name)


follow_focus("gen_run", list(runs_by_name), ROOT, warn=asked not in no_decoder)  # said above: not "no such run"
top = st.columns([2, 3, 1])
name = top[0].selectbox("Run", list(runs_by_name), key="gen_run", on_change=on_pick,
                        format_func=lambda n: f"{n} · {run_label(runs_by_name[n])}")
run = runs_by_name[name]
warn_unfinished(run.path)
source = runs.run_source(run.path)
data_path = top[1].text_input("Data", value=source.get("path", ""), key=f"gen_data_{name}",
                              help="The images to start from; by default the data the run was trained on.")
data_path = typed_path(data_path)
if not data_path:
    trained_on = f" (the run was trained on {source['path']})" if source.get("path") else ""
    st.error(f"Data: enter the path of a data set{trained_on}.")
    st.stop()
if gone := training_data_gone(data_path, source.get("path"), "type its new place in Data above"):
    st.error(gone)
    st.stop()
try:
    splits = ("train", "test", "all") if data_kind(data_path) == "mvtec" else ("train",)
except ValueError as e:
    show_error(e)
    st.stop()
split = "train"  # a wafer file or a folder of images has no splits: no box for them
if len(splits) > 1:
    split = top[2].selectbox("Split", splits, key="gen_split",
                             help="MVTec folders: start from the training images, the test images (with defects) or both.")
tile = bool(source.get("tile")) and same_data(data_path, source.get("path"))  # as `udd generate` decides

try:
    mtime = (run.path / WEIGHTS_FILE).stat().st_mtime
    model = cached_model(str(run.path), mtime)
    ds = cached_data(str(run.path), mtime, data_path, split, tile)
except (ValueError, OSError) as e:
    show_error(e)
    st.stop()
if mismatch := kind_mismatch(source.get("kind"), ds.kind, "its reconstructions and generated images"):
    st.warning(as_sentence(mismatch))
kind = gen.model_kind(model, ds.kind)
counts = gen.class_counts(ds.labels)
st.caption(views.data_summary(ds, kind, model.input_shape))
for note in ds.notices:  # skipped files, converted modes, resized maps: as Inspect and `udd score` say them
    show_notice(note)

opts = st.columns([3, 2])
mode = opts[0].radio("Latents", MODES, key="gen_mode", horizontal=True, persist_state=KEEP,
                     help="Noised: each source image's latent plus noise. Random: latents drawn from the mean "
                          "and std of the normal images' latents (no source image).")
shaded = kind == "wafer" and opts[1].toggle(
    "Shade dies by failing-die share", key="gen_shaded", persist_state=KEEP,
    help="Off: each generated die takes its most likely value. On: dies are blended from grey to red by the "
         "model's failing-die share, which shows failure rates that the most likely value hides.")
patterns = wg.pattern_classes(ds.labels) if kind == "wafer" else []
hw2 = bool(patterns) and mode == MODES[0] and opts[1].toggle(
    "HW2 view", key="gen_hw2", persist_state=KEEP,
    help="One grid per pattern class, as the HW2 study shows them: each row a source map, its reconstruction "
         "and its noised variants.")
ctl = st.columns(5)
seed = int(ctl[0].number_input("Seed", 0, 2**31 - 1, 0, key="gen_seed", persist_state=KEEP,
                               help="Same seed, same images. It picks the source images and the noise."))
view = None  # a views.GeneratedView once the images are made
if mode == MODES[0]:
    suggested, top = cached_sigma_scale(str(run.path), mtime, data_path, split, tile)
    sigma = ctl[1].slider("σ (latent noise std)", 0.0, top, suggested, top / 100, format="%.3g",
                          key=f"gen_sigma_{name}", persist_state=KEEP,
                          help="Scaled to this model's latent codes: the starting value is about half the typical "
                               "spread (std) of the latent codes of the images the run trained on (`udd generate` "
                               "takes the same without --sigma); the range goes to four times it.")
    class_filter = None
    if len(counts) > 1 and not hw2:
        # One box per data set: another file brings other classes and counts, never a stale choice.
        class_filter = ctl[2].selectbox("Class", [None, *counts], key=f"gen_class_{abs(hash((data_path, split)))}",
                                        format_func=lambda k: views.class_option(k, counts, len(ds)))
    # HW2 view: up to 8 sources per class (a smaller class gives all it has).
    most = 8 if hw2 else min(16, counts[class_filter] if class_filter is not None else len(ds))
    # The count typed last, clamped to what this class or data set has: a larger one brings it back.
    ss["gen_sources"] = min(ss.setdefault("gen_sources_wanted", 4), most)  # state only: a widget default warns
    k = int(ctl[3].number_input("Source images" + (" per class" if hw2 else ""), 1, most, key="gen_sources",
                                on_change=lambda: ss.update(gen_sources_wanted=ss["gen_sources"])))
    per = int(ctl[4].number_input("Variants per source", 1, 8, 4, key="gen_per_source", persist_state=KEEP))
    try:
        if hw2:
            grids = cached_class_grids(str(run.path), mtime, data_path, split, tile, float(sigma), seed, k, per)
            view = views.class_grid_view(grids, ds, sigma,
                                         views.class_commands(run.path, grids, sigma, seed, per, data_path, split))
        else:
            cmd = gen.command_line(run.path, k * per, k, sigma, seed, class_filter, data_path, split,
                                   npz=kind == "wafer")
            view = views.noised_view(model, ds, kind, sigma, k, per, seed, class_filter, shaded, cmd)
    except (ValueError, OSError) as e:
        show_error(e)
else:
    n = int(ctl[1].number_input("Samples", 1, 64, 16, key="gen_n_random", persist_state=KEEP))
    per_position = ctl[2].radio("Statistics", ("per channel", "per position"), key="gen_stats", persist_state=KEEP,
                                index=int(kind == "wafer"),  # QA sweep 15: per channel drew blank squares
                                help="Per channel: one mean and std for each latent channel, pooled over all positions. "
                                     "Per position: one for each channel at each position, which keeps the layout "
                                     "the images share (a wafer's outline).") == "per position"
    try:
        stats = cached_stats(str(run.path), mtime, data_path, split, tile, per_position)
        cmd = gen.command_line(run.path, n, 0, 0.0, seed, data=data_path, split=split, random=True,
                               per_position=per_position)
        view = views.random_view(model, stats, n, seed, kind, per_position, runs.run_train_on(run.path), shaded, cmd)
    except (ValueError, OSError) as e:
        show_error(e)

if view is not None:
    if view.notice:  # blank wafers from a detection run: before the rows that show them
        st.warning(as_sentence(view.notice))
    st.caption(view.caption)
    for row in view.rows:
        show(row)
if view is not None and len(view.outputs):
    made = "hw2" if hw2 else "noised" if mode == MODES[0] else "random"
    st.download_button(f"Download the {len(view.outputs)} generated images (zip of PNGs)",
                       display.zip_pngs(list(view.outputs), view.names), mime="application/zip", key="gen_download",
                       file_name=f"{name}-{made}-seed{seed}.zip", on_click="ignore")
    if view.npz is not None:
        st.download_button(f"Download the {len(view.outputs)} generated maps for augmentation (.npz)", view.npz,
                           mime="application/octet-stream", key="gen_download_npz", on_click="ignore",
                           file_name=f"{name}-{made}-seed{seed}.npz",
                           help="maps: uint8 (N, H, W) die values 0/1/2 (argmax, the wafer outline kept from the "
                                "source); labels: each map's source class; sources: the source's index in the data. "
                                "The same file as `udd generate ... --npz OUT.npz`.")

st.subheader("Latent map")
if st.toggle("Show every image's latent code on a map", True, key="gen_latent_map", persist_state=KEEP):
    try:
        lmap = cached_latent_map(str(run.path), mtime, data_path, split, tile)
    except (ValueError, OSError) as e:  # fewer than two images, or one code for all
        st.info(error_line(e))
    else:
        drawn = view if view is not None and view.latents is not None else None
        made = None if drawn is None else "noised" if drawn.origins is not None else "random"
        st.caption(latent_map.map_caption(lmap, "hw2" if hw2 else made))
        kind_name = "generated" if made == "noised" else "random"
        codes, origins, sources, hover = ((drawn.latents, drawn.origins, drawn.sources, drawn.hover) if drawn
                                          else (None, None, None, None))
        st.plotly_chart(go.Figure(latent_map.latent_figure(lmap, codes, origins, kind_name, hover)),
                        key="gen_latent_figure")
        table = latent_map.map_csv(lmap, codes, kind_name, drawn and drawn.names, sources,
                                   None if sources is None else [ds.labels[i] for i in sources.tolist()])
        st.download_button("Download the latent map (CSV)", table, f"{name}-latent-map.csv", "text/csv",
                           key="gen_latent_csv", on_click="ignore",
                           help="Each image's and each generated code's place on the two axes: the same file as "
                                "`udd generate ... --latent-map OUT.csv`.")

st.subheader("Interpolate")
st.caption("Blend the latent codes of two images in equal steps and decode each blend; the inputs are at both ends.")
ic = st.columns([2, 2, 1])
other = views.other_class_index(ds.labels)  # another class if any
# Keyed by the data set: another set's picks (QA sweep 11: both ends on image 0 after a smaller set) never stay.
ends = f"{abs(hash((data_path, split, len(ds)))) % 10**8}"
if len(ds) <= 2000:
    idx = list(range(len(ds)))
    a = ic[0].selectbox("From", idx, index=0, key=f"gen_interp_a_{ends}",
                        format_func=lambda i: f"{i} · {views.image_label(ds, i)}")
    b = ic[1].selectbox("To", idx, index=other, key=f"gen_interp_b_{ends}",
                        format_func=lambda i: f"{i} · {views.image_label(ds, i)}")
else:  # thousands of options make a slow select box; an index is as good
    a = ic[0].number_input("From (index)", 0, len(ds) - 1, 0, key=f"gen_interp_a_{ends}")
    b = ic[1].number_input("To (index)", 0, len(ds) - 1, other, key=f"gen_interp_b_{ends}")
steps = int(ic[2].slider("Steps", 3, 12, 7, key="gen_steps"))
try:
    strip = views.interpolation_row(model, ds, kind, int(a), int(b), steps, shaded)
except (ValueError, OSError) as e:
    show_error(e)
else:
    show(strip, per_line=len(strip.images))  # one line, however many steps
