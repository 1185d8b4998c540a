"""`udd train`: load the data, start a training job, follow it with a progress line.

Ctrl-C or SIGTERM stops the job at a batch boundary; the run keeps a loadable model (exit 130).
Imported only when the command runs, so the rest of the command line starts without torch.
"""
from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
import threading
from pathlib import Path
from typing import Optional

from .notices import notice_line
from .atomic import check_new_folder, folder_to_make
from .cli import PIPE_CLOSED, UsageError, config_or_preset, parse_ints, run_dir_arg, silence_output
from .data import data_kind, load_dataset
from .data_preview import training_labels
from .jobs import TrainJob, checked_settings
from .resume import check_resume_data, check_saved_shape
from .methods import check_choice, detector_class
from .methods.autoencoder import AutoencoderDetector
from .model import build_model
from .presets import model_presets, paired_training_preset
from .progress import ProgressLine
from .run_notes import ending_note
from .runs import is_empty_dir, read_train, runs_root, train_on, train_shape, train_source, validate_run_name
from .sources import source_record
from .image_shapes import FEATURE_METHODS, batch_bytes, config_method, image_channels
from .losses import check_fits_data, check_loss_fits
from .training_data import split_groups, training_images
from .train_options import (EPOCH_OPTIONS, FIXED_ON_RESUME, fix_hint, method_options, option_error,
                            option_typed, refuse_train_on, settings_from_args)


def _method_for(args: argparse.Namespace, config, notes: list) -> str:
    """--method, or without it the method the config's input takes (`image_shapes.config_method`: a design on
    backbone features trains as feature-ae, said in `notes`). A pixel method named for such a design is refused
    with the Train page's own check (`pixel_config`), before any size is checked against the wrong input."""
    if args.method is None:
        method = config_method(config)
        if method != "autoencoder":
            notes.append(f"{args.config} takes backbone features (its \"input\" field): training it with "
                         f"--method {method}")
        return method
    cls = detector_class(args.method)
    if config is not None and issubclass(cls, AutoencoderDetector):
        try:
            cls.pixel_config(config)
        except ValueError:
            raise UsageError(f"--method {args.method}: {args.config} takes backbone features (its \"input\" field), "
                             f"not pixels; use --method {FEATURE_METHODS[0]} (or leave --method out)") from None
    return args.method


def _paired_preset(args: argparse.Namespace, method, preset_shape, notes: list) -> Optional[str]:
    """Without --preset, the training preset the Train page pairs with the model preset or the method
    (`presets.paired_training_preset`), said in `notes`; None: the defaults (the reference preset)."""
    if args.preset:
        return None
    model_preset = args.config if preset_shape is not None else None  # a file of the same name wins over a preset
    paired = paired_training_preset(model_preset, method)
    if paired:
        own = model_preset is not None and model_presets()[model_preset].training == paired
        why = f"model preset {model_preset}" if own else f"--method {method.method}"
        notes.append(f"training preset {paired}, the one the app pairs with {why} (--preset picks another; "
                     "options given still override it)")
    return paired


def _check_memory(path: str, shape: tuple[int, int, int], per_image_features: int, step_per_image: int = 0,
                  batch_size: int = 0, tile: bool = False) -> None:
    """Refuse, before loading, a data set whose images (and the method's features, and a training step of
    `batch_size` images at `step_per_image` bytes each) cannot fit in memory."""
    from .data_preview import estimate_cache_bytes
    from .sources import memory_shortfall

    n, nbytes = estimate_cache_bytes(path, shape, split="train", tile=tile)
    if short := memory_shortfall(n, nbytes + n * per_image_features, step_per_image, batch_size):
        raise UsageError(f"--size {shape[1]},{shape[2]}: {short}; give a smaller --size"
                         + (" or --batch-size" if step_per_image else ""))


def _stop_signals() -> dict:
    """Make the first Ctrl-C or SIGTERM (kill, a container stop) raise KeyboardInterrupt, and every later one do
    nothing while the job winds down: a second signal (GNU timeout sends SIGTERM to the process and to its
    group) used to abort mid-checkpoint and leave the run "running". Returns the handlers it replaced."""
    first = threading.Event()

    def stop(signum, frame):
        if not first.is_set():
            first.set()
            raise KeyboardInterrupt

    old = {signal.SIGTERM: signal.signal(signal.SIGTERM, stop)}
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # an inherited SIG_IGN stays ignored
        old[signal.SIGINT] = signal.signal(signal.SIGINT, stop)
    return old


def _watch(job, bar: ProgressLine) -> int:
    """Follow a started job until it ends; Ctrl-C (or SIGTERM) stops it gracefully (exit 130)."""
    main_thread = threading.current_thread() is threading.main_thread()
    old_handlers = _stop_signals() if main_thread else {}
    try:
        while not job.join(0.2):
            bar.show(job.snapshot())
    except BrokenPipeError:
        # Whoever read the progress has gone (`udd train ... | head`): stop as on Ctrl-C, silently, so the
        # run is saved and marked stopped instead of left "running" by a dying process.
        silence_output()
        job.stop()
        job.join(60)
        return PIPE_CLOSED
    except KeyboardInterrupt:
        job.stop()
        bar.show(job.snapshot())  # an epoch that ended since the last poll still gets its line
        bar.end()
        print("udd train: stopping, saving the model ...", file=sys.stderr)
        job.join(60)  # a second Ctrl-C or SIGTERM does nothing now (_stop_signals): the checkpoint is written whole
        if main_thread:  # nor until the process exits: at its end Python resets its own handlers to the default
            # (not SIG_IGN), and a late second signal would turn the clean 130 into a kill
            for sig in old_handlers:
                signal.signal(sig, signal.SIG_IGN)
            old_handlers.clear()
        p = job.snapshot()
        bar.show(p)  # and one that ended while the stop was on its way (the loop stops only between steps)
        print(f"udd train: {p.message}; run left in {job.run_dir}", file=sys.stderr)
        _app_hint(job.run_dir)
        return 130
    finally:
        for sig, handler in old_handlers.items():
            signal.signal(sig, handler)
    p = job.snapshot()
    bar.show(p)
    bar.end()
    if p.status == "failed":
        # An unexpected exception (message prefixed with its type) also gets its location, for bug reports.
        head = (p.error or "").split(":", 1)[0]
        where = f" (at {p.error_where})" if p.error_where and head.isidentifier() and head.endswith(("Error", "Exception")) else ""
        print(f"udd train: error: {p.error or p.message}{where}", file=sys.stderr)
        return 2
    print(f"udd train: {p.message}; model in {job.run_dir.resolve()}", file=sys.stderr)
    if learning := ending_note(job.run_dir):
        print(f"note: {learning}", file=sys.stderr)
    _app_hint(job.run_dir)
    return 0


def _app_hint(run_dir: Path) -> None:
    """A run outside the runs folder is not in the app's list: say how to see it there."""
    parent = Path(run_dir).resolve().parent
    if parent != runs_root().resolve():
        print(f"note: the app lists the runs in {runs_root()}; to see this one, start it with "
              f"UDD_RUNS_DIR={shlex.quote(str(parent))}", file=sys.stderr)


def _new_run_dir(spec: str) -> Path:
    """--out of a new run: a bare name ("wdet") is a run under $UDD_RUNS_DIR (default runs/), where the app
    lists runs and where `udd score NAME` and `--resume` look; anything with a folder part ("./wdet",
    "runs/wdet", "/data/wdet") is that folder. Its name follows the app's rule (`runs.validate_run_name`), so
    that the app can list, open and link every run: "bad name!" is refused here as on the Train page."""
    try:
        validate_run_name(Path(spec).name)
    except ValueError as e:
        raise UsageError(f"--out {spec}: {e}") from None
    spec = spec.rstrip("/" + os.sep)  # "wdet/" (a shell's completion) is the bare name, not ./wdet
    if "/" in spec or os.sep in spec:
        return folder_to_make(spec)
    return runs_root() / spec


def run_train(args: argparse.Namespace) -> int:
    """Train a model on normal images into a run folder, with a progress line; Ctrl-C stops cleanly."""
    if not args.out.strip():  # Path("") is the current folder: name the real mistake
        raise UsageError("--out: the run folder name is empty")
    out = Path(args.out)
    bar = ProgressLine()
    if args.resume:
        given = [flag for flag, attr in FIXED_ON_RESUME if option_typed(args, attr)]
        if given:
            raise UsageError(f"{given[0]}: a resumed run keeps the settings in its train.json; only --epochs, "
                             "--device and --data may be given with --resume (start a new run to change others)")
        if args.config:  # it would be silently ignored: a run goes on with the model it has
            raise UsageError(f"CONFIG {args.config}: a resumed run keeps its own config (the run's config.json); "
                             "leave CONFIG out")
        settings_from_args(args)  # --epochs and --device refused with the option's name before any data loads
        try:  # a folder, or a run's name under $UDD_RUNS_DIR, as udd score takes RUN
            out = run_dir_arg(args.out)
        except UsageError:
            raise UsageError(f"--out {out}: no such run folder (nor a run of that name in {runs_root()})") from None
        images = None
        if args.data:
            info = read_train(out)
            shape = train_shape(info)
            if shape is None:
                raise UsageError(f"--out {out}: not a run folder to resume (no readable train.json)")
            check_resume_data(info, args.data, out.name)  # before loading: the other kind is refused in one line
            check_saved_shape(out, shape)  # and a shape its weights did not train at, as TrainJob.resume would
            tile = bool(train_source(info).get("tile"))  # a tiled run's moved photos are tiled as before
            ds = load_dataset(args.data, shape, split="train", tile=tile, progress=bar.loading)
            refuse_train_on(ds.labels, train_on(info), f"--data {args.data} (the run's train_on)")
            images, _ = training_images(ds, train_on(info))
            bar.end()
        job = TrainJob.resume(out, images, epochs=args.epochs, device=args.device, data_path=args.data or None)
    else:
        out = _new_run_dir(args.out)
        # Before CONFIG is read: its own refusal would hide this one (an unknown method: the list of them).
        if args.method and args.config and not detector_class(args.method).uses_config:
            raise UsageError(f"CONFIG: --method {args.method} takes no autoencoder config (got {args.config})")
        config, preset_shape = config_or_preset(args.config) if args.config else (None, None)
        notes: list[str] = []  # printed once the run will go ahead: a refusal stays one line
        method = _method_for(args, config, notes)
        cls = detector_class(method)
        if cls.uses_config and not args.config:
            raise UsageError(f"CONFIG is required for --method {method} (a config file or a model preset name) "
                             "unless --resume is given")
        if not cls.trains_epochs:  # fitted in one pass: a training-loop option would be recorded but do nothing
            given = [flag for flag, attr in EPOCH_OPTIONS if option_typed(args, attr)]
            if given:
                raise UsageError(f"{given[0]}: --method {method} is fitted in one pass, with no training epochs; "
                                 "leave out the training options (its own are --backbone, --layers, --coreset, "
                                 "--k and --option)")
        options = method_options(args)
        if not args.data:
            raise UsageError("--data is required (a folder of images, an MVTec folder or a wafer .npy/.npz)")
        if out.is_dir() and not is_empty_dir(out):  # first: a run there is said to exist, with what to do
            raise UsageError(f"--out {out}: already exists and is not empty (pass --resume to continue it)")
        check_new_folder(out, f"--out {out}")  # a file in its place, or an unwritable place: before the data loads
        settings = settings_from_args(args, _paired_preset(args, cls, preset_shape, notes))
        if caution := cls.settings_caution(settings.to_dict()):  # Deep SVDD with weight decay (QA sweep 15)
            notes.append(caution)
        try:
            if config is not None:
                check_loss_fits(settings.loss, config.output)
        except ValueError as e:
            raise UsageError(f"--loss: {str(e).split(': ', 1)[1]}") from None
        checked_settings(settings)  # an unusable device or pattern folder fails now, not after the data loads
        size = parse_ints(args.size, 2, "--size") if args.size else None  # checked before the data is looked at
        kind = data_kind(args.data)
        if args.tile and kind == "wafer":
            raise UsageError(f"--tile: {args.data} holds wafer maps, which are scored whole; leave --tile out")
        settings = settings.replace(train_on=refuse_train_on(training_labels(args.data), settings.train_on))
        if config is not None:
            try:  # a wafer (die-class) model or loss on photos: refused before the data loads
                check_fits_data(settings.loss, config.output, kind)
            except ValueError as e:
                field, why = str(e).split(": ", 1)
                raise UsageError(f"--loss: {why}" if field == "loss" else f"{args.config}: {field}: {why}") from None
        if size:
            h, w = size
        elif preset_shape is not None:
            h, w = preset_shape[1:]
        else:
            h, w = (26, 26) if kind == "wafer" else (256, 256)
        # a preset's gray channel is for photos: a backbone method on wafer maps takes their 3 one-hot channels
        # (QA sweep 19a: `udd train feature-ae --data maps.npz` was refused as "the model takes C=1")
        preferred = preset_shape[0] if preset_shape and kind != "wafer" else None
        shape = (image_channels(config, method, preferred), h, w)
        if config is not None and method == "autoencoder":
            try:  # refuse a non-mirroring design before spending time on the data
                build_model(config, shape)
            except ValueError as e:
                raise UsageError(f"{args.config} at {h}x{w}: {e}{fix_hint(args.config, shape)}") from None
        try:  # bad method options and sizes are refused before the data loads
            per_image = check_choice(method, shape, options, config, settings.seed)
        except ValueError as e:
            raise option_error(e, args, options, shape) from None
        step = batch_bytes(config, shape, method, 1) if cls.trains_epochs else 0  # per image of a step
        _check_memory(args.data, shape, per_image, step, settings.batch_size, args.tile)
        ds = load_dataset(args.data, shape, split="train", tile=args.tile, progress=bar.loading)
        bar.end()
        images, kept = training_images(ds, settings.train_on)
        for note in notes + ds.notices + ([kept] if kept else []):
            print(notice_line(note), file=sys.stderr)
        job = TrainJob.create(out, config, shape, images, settings,
                              source=source_record(args.data, args.tile, ds.notices + ([kept] if kept else [])),
                              method=method, options=options, groups=split_groups(ds, settings.train_on))
        del ds, images
    for note in job.snapshot().notices:
        print(notice_line(note), file=sys.stderr)
    bar.notices_shown = len(job.snapshot().notices)
    unit = "tiles" if train_source(read_train(job.run_dir)).get("tile") else "images"  # a tiled run counts tiles
    print(f"udd train: {job.n_train} training and {job.n_val} validation {unit}; run {job.run_dir}", file=sys.stderr)
    return _watch(job.start(), bar)
