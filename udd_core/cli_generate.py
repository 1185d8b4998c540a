"""`udd generate`: images (or wafer maps) decoded from noised latent codes of a run's autoencoder.

Imported only when the command runs, so the rest of the command line starts without torch.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from . import runs
from .notices import notice_line
from .atomic import check_names_free, check_new_file, check_new_folder, write_text_atomic
from .cli import UsageError, parse_ints, run_dir_arg
from .data import check_outside_data, data_kind, kind_mismatch, kind_noun, same_data
from .run_notes import unfinished_note
from .inspection_inputs import training_data_gone
from .display import output_names, to_display, write_pngs
from .generation import (class_pool, decode, default_sigma_scale, generate, images_trained_on, load_generator,
                         load_images, model_kind, random_codes, training_stats)


def run_generate(args: argparse.Namespace) -> int:
    """Write N images decoded from noised (or random) latents into a folder as PNGs; wafers as maps.

    Without --sigma, σ is the Generate page's default (about half the latent spread of the images
    the run trained on), printed. With --npz, the generated wafer maps are also saved as die values.
    """
    if args.random and args.cls is not None:
        raise UsageError("--class: does not apply with --random (random latents have no source image)")
    if args.per_position and not args.random:
        raise UsageError("--per-position: applies only with --random (it chooses the random latents' statistics)")
    if args.npz and args.random:
        raise UsageError("--npz: needs source maps (their outline and class); not with --random")
    if args.sources is not None and args.random:
        raise UsageError("--sources: does not apply with --random (random latents have no source image)")
    if args.sources is not None and not 1 <= args.sources <= max(args.n, 1):
        raise UsageError(f"--sources: must be between 1 and -n ({args.n}), got {args.sources}")
    if not args.out.strip():  # Path("") is the current folder: name the real mistake
        raise UsageError("--out: the folder name is empty")
    check_new_folder(args.out, f"--out {args.out}")  # a file there, or an unwritable place: before any work
    names = output_names(args.n, "random" if args.random else "sample")
    check_names_free(args.out, names, args.force)  # an earlier run's PNGs: before the model loads
    if args.npz:  # before any work or file: a PNG folder must not be left behind by an unwritable .npz
        from .wafer_generation import check_npz_target

        check_npz_target(args.npz, args.force, new_folder=args.out)  # `--out gen/ --npz gen/x.npz` is fine
    if args.latent_map:
        if Path(args.latent_map).suffix.lower() != ".csv":
            raise UsageError(f"--latent-map {args.latent_map}: the file name must end in .csv")
        check_new_file(args.latent_map, f"--latent-map {args.latent_map}", args.force, new_folder=args.out)
    size = parse_ints(args.size, 2, "--size") if args.size else None  # refused before the run is looked at
    args.run = str(run_dir_arg(args.run))  # a run name under $UDD_RUNS_DIR, as `udd score` and `udd export` take
    source = runs.run_source(args.run)
    data = args.data or source.get("path")
    if gone := training_data_gone(data, source.get("path"), "give its new place with --data PATH"):
        raise UsageError(gone)  # as udd score and train say it (QA sweep 13: "no such file or folder")
    for images, whose in ((data, "the data set"), (source.get("path"), "the run's training data")):
        check_outside_data(args.out, images, f"--out {args.out}", whose)  # its PNGs would join either set
    notices: list[str] = []  # a folder that stores no input size takes the images' own, like `udd score`
    model = load_generator(args.run, size=size,
                           data=data, split=args.split, notices=notices)
    if unfinished := unfinished_note(args.run):  # first, as `udd score` and `udd export` print it
        notices.insert(0, unfinished)
    for note in notices:
        print(notice_line(note), file=sys.stderr)
    if not data:
        raise UsageError(f"--data is required: {runs.no_data_why(args.run)}")
    # A run trained on tiles generates from the same tiles of its own data.
    tile = bool(source.get("tile")) and same_data(data, source.get("path"))
    # Wafer maps for an image run, or photos for a wafer run: refused, as `udd score` refuses to score them.
    if mismatch := kind_mismatch(source.get("kind"), data_kind(data), "its generated images"):
        raise UsageError(f"--data {data}: {mismatch}; generate from data of the kind it trained on")
    ds = load_images(model, data, split=args.split, tile=tile)
    for note in ds.notices:  # skipped files, converted modes: as `udd score` prints them (QA sweep 9)
        print(notice_line(note), file=sys.stderr)
    kind = model_kind(model, ds.kind)
    if args.npz and kind != "wafer":
        c = model.config.in_channels
        raise UsageError(f"--npz: writes wafer maps; {data} holds images, not wafer maps" if ds.kind != "wafer" else
                         f"--npz: writes wafer maps, which need a 3-channel (one-hot) model; this run's model takes "
                         f"{c} channel{'s' if c != 1 else ''}")
    if args.latent_map and len(ds) < 2:  # before the σ line: nothing printed is then refused (QA sweep 11)
        raise UsageError(f"--latent-map {args.latent_map}: a map needs the codes of at least 2 images; {data} "
                         f"holds {len(ds)}")
    if args.random:
        images = images_trained_on(ds, runs.run_train_on(args.run))  # the statistics of what the model learned
        codes = random_codes(model, training_stats(model, images, per_position=args.per_position), args.n, args.seed)
        out, origins = decode(model, codes), ["random latent"] * args.n
    else:
        class_pool(ds.labels, len(ds), args.cls)  # an unknown class is refused before the σ line is printed
        sigma = args.sigma
        if sigma is None:
            sigma = default_sigma_scale(model, ds, runs.run_train_on(args.run))[0]
            print(f"udd generate: sigma {sigma:g} (the default: about half the latent spread of the training images)",
                  file=sys.stderr)
        gen = generate(model, ds.images, sigma, args.n, args.seed, ds.labels, args.cls, n_sources=args.sources)
        out, codes = gen.outputs, gen.latents
        origins = [f"{ds.names[s]} ({ds.labels[s]})" for s in gen.sources.tolist()]
    npz, outline = None, None
    if kind == "wafer" and not args.random:  # each map keeps its source's outline, in the PNGs as in the .npz
        from .wafer_generation import generated_maps, no_failing_dies_note, npz_bytes, source_maps

        outline = source_maps(ds.images[gen.sources])  # (N, H, W)
        maps = generated_maps(out, outline)
        if blank := no_failing_dies_note(maps, outline):
            print(notice_line(blank), file=sys.stderr)
        if args.npz:  # made before any file is written
            npz = npz_bytes(maps, [ds.labels[s] for s in gen.sources.tolist()], gen.sources,
                            [ds.names[s] for s in gen.sources.tolist()])
    table = None
    if args.latent_map:  # made before any file is written
        from .latent_map import fit_latent_map, map_csv

        lmap = fit_latent_map(model, ds)
        picked = None if args.random else gen.sources.tolist()
        table = map_csv(lmap, codes, "random" if args.random else "generated", names, picked,
                        None if picked is None else [ds.labels[s] for s in picked])
    new_folder = not Path(args.out).exists()
    paths = write_pngs(to_display(out, kind, outline=outline), args.out, names, force=args.force)
    written: list[Path] = []
    try:
        if npz is not None:
            from .wafer_generation import write_npz

            written.append(write_npz(args.npz, npz, force=args.force))
        if table is not None:
            target = check_new_file(args.latent_map, f"--latent-map {args.latent_map}", args.force)
            write_text_atomic(target, table, replace=args.force)
            written.append(target)
    except (ValueError, OSError):  # checked at the start, so rare (a full disk, /proc): no half output
        for p in [*paths, *written]:
            p.unlink(missing_ok=True)
        if new_folder:
            with contextlib.suppress(OSError):  # only if empty: nothing but what this call wrote
                Path(args.out).rmdir()
        raise
    for path, origin in zip(paths, origins):
        print(f"{path}\t{origin}")
    what = kind_noun(kind) if len(paths) != 1 else kind_noun(kind)[:-1]  # "1 image", not "1 images"
    print(f"udd generate: wrote {len(paths)} {what} to {args.out}", file=sys.stderr)
    if npz is not None:
        print(f"udd generate: wrote {len(maps)} map{'s' * (len(maps) != 1)} (die values 0/1/2, labels, sources, "
              f"source_names) to {args.npz}", file=sys.stderr)
    if table is not None:
        print(f"udd generate: wrote the latent map ({len(lmap.index)} images and {args.n} generated codes on axes "
              f"holding {lmap.explained[0]:.0%} and {lmap.explained[1]:.0%} of the variance) to {args.latent_map}",
              file=sys.stderr)
    return 0
