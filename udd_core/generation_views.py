"""What the Generate page shows, without streamlit: rows of pictures with captions, and the files to download.

Each view (noised latents, the HW2 class grids, random latents, an interpolation strip) turns what
`generation` and `wafer_generation` make into display-ready uint8 pictures, so that the page only lays
the rows out and a test can read exactly what a user will see and download.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from . import display
from . import generation as gen
from . import wafer_generation as wg
from .data import ImageSet
from .render import WAFER_DIES
from .training_data import is_unknown


@dataclass(frozen=True)
class ImageRow:
    """One row of pictures, read left to right."""

    images: list[np.ndarray]  # display-ready uint8, each (H, W) gray or (H, W, 3) RGB
    captions: list[str]  # one per picture, shown as typed (data labels are not markdown)
    heading: Optional[str] = None  # a title above the row (the HW2 view's class name)


@dataclass(frozen=True)
class GeneratedView:
    """A generation as the page shows it, and what its download buttons hand out."""

    rows: list[ImageRow]
    caption: str  # what the rows are, above them
    outputs: np.ndarray  # (n, H, W[, 3]) uint8: the generated pictures alone, for the zip of PNGs
    names: list[str]  # their file names in the zip
    npz: Optional[bytes] = None  # wafer runs: the generated die maps for augmentation (`udd generate --npz`)
    latents: Optional[np.ndarray] = None  # (n, D) the codes that were decoded, for the latent map
    origins: Optional[np.ndarray] = None  # (n, D) each one's source image's code (noised latents only)
    sources: Optional[np.ndarray] = None  # (n,) each one's source image's index in the data (noised latents only)
    hover: Optional[list[str]] = None  # what the latent map says of each generated code
    notice: Optional[str] = None  # a caution on what was generated (`wafer_generation.no_failing_dies_note`)


def image_label(ds: ImageSet, i: int) -> str:
    """'Center · maps[12]': the image's label and the tail of its file or array name."""
    return f"{ds.labels[i]} · {display.short_name(ds.names[i])}"


def noised_view(model, ds: ImageSet, kind: str, sigma: float, n_sources: int, per_source: int, seed: int,
                class_filter: Optional[str] = None, shaded: bool = False, command: str = "") -> GeneratedView:
    """Per source image (of `class_filter`, or any): the source, its reconstruction (σ 0) and `per_source`
    variants at latent noise `sigma`. Wafer maps keep their source's outline, so what is shown is what the
    .npz holds. `command` is the `udd generate` line that writes the same images."""
    g = gen.generate(model, ds.images, sigma, n_sources * per_source, seed, ds.labels, class_filter,
                     n_sources=n_sources)
    by_source = g.by_source()
    srcs = [s for s, _ in by_source]
    wafer = kind == "wafer"
    src_img = display.to_display(ds.images[srcs], kind)
    rec_img = display.to_display(gen.reconstruct(model, ds.images, srcs), kind, shaded=shaded,
                                 outline=wg.source_maps(ds.images[srcs]) if wafer else None)
    outline = wg.source_maps(ds.images[g.sources]) if wafer else None  # (k * per, H, W)
    outputs = display.to_display(g.outputs, kind, shaded=shaded, outline=outline)
    spread = gen.training_stats(model, ds.images[srcs]).std  # cheap: only the k sources
    caption = (f"Each row: a source image, its reconstruction (σ = 0) and {per_source} variants. For scale, the "
               f"latent channels of these sources have std {min(spread):.3g}–{max(spread):.3g}."
               + (f" The same images headless: `{command}`" if command else ""))
    rows = [ImageRow([src_img[r], rec_img[r], *(outputs[j] for j in outs)],
                     [image_label(ds, s), "reconstruction", *(f"σ {sigma:g} · #{j}" for j in outs)])
            for r, (s, outs) in enumerate(by_source)]
    npz = notice = None
    if wafer:
        maps = wg.generated_maps(g.outputs, outline)  # (n, H, W)
        notice = wg.no_failing_dies_note(maps, outline)
        npz = wg.npz_bytes(maps, [ds.labels[i] for i in g.sources.tolist()], g.sources,
                           [ds.names[i] for i in g.sources.tolist()])
    codes = gen.encode_images(model, ds.images, srcs).flatten(1).numpy()  # (k, D): the sources, at σ 0
    origins = codes[[srcs.index(i) for i in g.sources.tolist()]]  # (n, D): each variant's source code
    hover = [f"σ {sigma:g} · #{j} from {display.short_name(ds.names[i])}" for j, i in enumerate(g.sources.tolist())]
    return GeneratedView(rows, caption, outputs, display.output_names(len(outputs), "sample"), npz,
                         g.latents.flatten(1).cpu().numpy(), origins, g.sources, hover, notice)


def class_grid_view(grids: Sequence[wg.ClassGrid], ds: ImageSet, sigma: float,
                    commands: Sequence[str] = ()) -> GeneratedView:
    """The HW2 view of `wafer_generation.class_grids`: per pattern class a heading (with its `udd generate`
    line from ``commands``, `class_commands`), then one row per source map (the map, its reconstruction, its
    variants); the zip's files are named by class."""
    counts = gen.class_counts(ds.labels)
    rows, maps, labels, srcs = [], [], [], []
    per = grids[0].variant_maps.shape[1] if grids else 0
    for grid, command in zip(grids, list(commands) or [""] * len(grids)):
        heading = f"**{grid.label}** · {counts.get(grid.label, 0)} maps" + (f" · headless: `{command}`" * bool(command))
        for r, s in enumerate(grid.sources.tolist()):
            pics = display.upscale(display.render_wafer(np.concatenate(
                [grid.source_maps[r:r + 1], grid.recon_maps[r:r + 1], grid.variant_maps[r]])))
            rows.append(ImageRow(list(pics), [image_label(ds, s), "reconstruction",
                                              *(f"variant {j + 1}" for j in range(per))],
                                 heading=heading if r == 0 else None))
        maps.append(grid.generated)  # (k * per, H, W): as its `udd generate` line writes them (QA: not regrouped)
        labels += [grid.label] * len(grid.generated)
        srcs += grid.generated_sources.tolist()
    caption = (f"One grid per pattern class: each row a source map, its reconstruction (σ = 0) and {per} "
               f"variants at σ {sigma:g}. Dies outside the source's wafer stay outside; each die on it takes "
               "the likelier of good and failing.")
    all_maps = np.concatenate(maps)  # (n, H, W) die values
    return GeneratedView(rows, caption, display.upscale(display.render_wafer(all_maps)),
                         display.class_output_names(labels),
                         wg.npz_bytes(all_maps, labels, srcs, [ds.names[i] for i in srcs]),
                         notice=wg.no_failing_dies_note(all_maps, wg.source_maps(ds.images[srcs])))


def class_commands(run_dir, grids: Sequence[wg.ClassGrid], sigma: float, seed: int, per: int, data, split: str
                   ) -> list[str]:
    """Per grid of `wafer_generation.class_grids(..., seed)`, the `udd generate` call that writes its variants
    (class i draws with seed + i, as the grids do), each into its own OUT-<class> folder and .npz."""
    return [gen.command_line(run_dir, len(g.sources) * per, len(g.sources), sigma, seed + i, g.label, data, split,
                             npz=True, out=f"OUT-{g.label}") for i, g in enumerate(grids)]


def random_view(model, stats, n: int, seed: int, kind: str, per_position: bool, train_on: str,
                shaded: bool = False, command: str = "") -> GeneratedView:
    """`n` pictures decoded from latents drawn from `stats` (`generation.training_stats`), in one row;
    `command` is the `udd generate --random` line that writes the same images."""
    z = gen.random_codes(model, stats, n, seed)  # (n, L, h, w): what `generate_random` decodes
    outputs = display.to_display(gen.decode(model, z), kind, shaded=shaded)
    caption = gen.random_latents_caption(per_position, train_on) + (
        f" The same images headless: `{command}`" if command else "")
    return GeneratedView([ImageRow(list(outputs), [f"#{j}" for j in range(len(outputs))])], caption, outputs,
                         display.output_names(len(outputs), "random"), latents=z.flatten(1).cpu().numpy(),
                         hover=[f"random #{j}" for j in range(len(outputs))])


def interpolation_row(model, ds: ImageSet, kind: str, a: int, b: int, steps: int, shaded: bool = False) -> ImageRow:
    """Image `a`, `steps` decoded blends of its latent code into image `b`'s, and image `b`."""
    strip = display.to_display(gen.interpolation(model, ds.images, int(a), int(b), steps), kind, shaded=shaded)
    ends = display.to_display(ds.images[[int(a), int(b)]], kind)
    return ImageRow([ends[0], *strip, ends[1]], ["from", *(f"{t / (steps - 1):.2f}" for t in range(steps)), "to"])


def other_class_index(labels: Sequence[str]) -> int:
    """The first image whose class differs from the first image's (the last image if all share one): the
    interpolation's default far end."""
    return next((i for i, lab in enumerate(labels) if lab != labels[0]), len(labels) - 1)


def data_summary(ds: ImageSet, kind: str, input_shape: Sequence[int]) -> str:
    """The Generate page's line on its data: count, size, channels, pattern classes apart from an unknown
    label (WM-811K's "unlabeled" is no class: QA sweep 11), and for wafer maps what the die colours mean."""
    c, h, w = input_shape
    counts = gen.class_counts(ds.labels)
    unknown = sum(n for k, n in counts.items() if is_unknown([k])[0])
    classes = sum(not is_unknown([k])[0] for k in counts)
    noun = f"{'wafer map' if kind == 'wafer' else 'image'}{'s' * (len(ds) != 1)}"
    return (f"{len(ds)} {noun} at {h}x{w}, {c} channel{'s' * (c > 1)}"
            + (f" · {classes} classes" if classes > 1 else "")
            + (f" · {unknown} with an unknown label" if unknown else "")
            + (f" · {WAFER_DIES}" if kind == "wafer" else ""))


def class_option(label: Optional[str], counts: dict, total: int) -> str:
    """A Class filter option: "all classes (N)" for None, else the label with its count (and "unknown label")."""
    if label is None:
        return f"all classes ({total})"
    return f"{label} ({counts[label]}{', unknown label' if is_unknown([label])[0] else ''})"
