"""Background training of any detection method: a `TrainJob` owns a thread, a stop Event and a progress board; a
`JobManager` holds one process's jobs by run name so a page refresh finds its job again."""
from __future__ import annotations

import atexit
import sys
import threading
import traceback
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np
import torch

from . import runs
from . import run_status
from .atomic import remove_leftover_temps
from .config import load_config
from .data import load_dataset, resolved
from .images import load_patterns
from .methods import Detector, a_method, detector_class, fitted_in_one_pass, run_method, wafer_features_note
from .methods.autoencoder import AutoencoderDetector
from .model import CONFIG_FILE, AutoEncoder
from .notices import Caution
from .progress import Progress, ProgressBoard
from .resume import check_restorable, check_resume_data, images_digest
from .run_notes import resume_blocker
from .settings import TrainSettings, applied_settings, resolve_device
from .losses import check_fits_data, check_loss_fits
from .train import TrainingFailed, check_images
from .training_data import run_split, split_indices, training_images

FEW_VALIDATION = 5  # fewer validation images than this: the best epoch rests on a handful (a note says so)


def checked_settings(settings: TrainSettings) -> TrainSettings:
    """Fail now, before a run folder is written, on what the thread would only find later: an unavailable
    device or a wrong pattern folder. The pattern folder is kept absolute, so a resume works from anywhere."""
    resolve_device(settings.device)
    if not settings.patch_dir or not settings.noise_patches:  # unused without patches (`udd train` says so)
        return settings
    try:
        load_patterns(settings.patch_dir)
    except ValueError as e:  # named as the field, so `udd train` says --patch-dir (QA sweep 12)
        raise type(e)(f"patch_dir: {e}") from None  # a DataError stays one
    return settings.replace(patch_dir=str(Path(settings.patch_dir).resolve()))


class TrainJob:
    """One run fitted in a daemon thread, whatever its detection method: start(), stop(), join(), snapshot()."""

    def __init__(self, run_dir: Union[str, Path], detector: Union[Detector, AutoEncoder], train_images: np.ndarray,
                 val_images: Optional[np.ndarray], settings: TrainSettings, resume: bool = False,
                 notices: tuple[str, ...] = ()):
        self.run_dir = Path(run_dir)
        self.name = self.run_dir.name
        self.settings = settings
        # fitted in place; holds the latest weights. A bare autoencoder is the pixel-AE method.
        self.detector = AutoencoderDetector(detector) if isinstance(detector, AutoEncoder) else detector
        self._data = (train_images, val_images)
        self.n_train, self.n_val = len(train_images), 0 if val_images is None else len(val_images)
        self._resume = resume
        self._stop = threading.Event()
        self._done = threading.Event()  # set when the thread ends; waited on instead of Thread.join, see join()
        self._board = ProgressBoard(str(self.run_dir), settings.epochs, notices=list(notices))
        self._thread: Optional[threading.Thread] = None

    @property
    def model(self) -> Optional[AutoEncoder]:
        """The autoencoder being trained, for the methods built on one; None for the others."""
        return getattr(self.detector, "model", None)

    @classmethod
    def create(cls, run_dir: Union[str, Path], config: Any, input_shape: tuple[int, int, int], images: np.ndarray,
               settings: TrainSettings, source: Optional[Mapping[str, Any]] = None, method: str = "autoencoder",
               options: Optional[Mapping[str, Any]] = None, groups: Optional[Sequence[str]] = None) -> "TrainJob":
        """A new run in `run_dir` (refused if it exists and is not empty) for images (N, H, W, C) uint8:
        the normal ones, or those `settings.train_on` chose (`training_data.training_images`). `groups`: for
        tiles, the photo each was cut from (`training_data.split_groups`), kept whole on one side of the split.

        Builds a seeded detector of `method` with its `options` (an autoencoder's shapes are checked),
        splits off the validation images, and writes the method's spec (config.json, method.json),
        train.json and status.json. `source` describes the data (path, kind, tile).
        """
        detector = detector_class(method).build(tuple(input_shape), dict(options or {}) or None, config, settings.seed)
        detector.check_input(tuple(input_shape))
        check_images(images, tuple(input_shape), "images")
        if (model := getattr(detector, "model", None)) is not None:
            check_loss_fits(settings.loss, model.config.output)
            if (source or {}).get("kind"):
                check_fits_data(settings.loss, model.config.output, source["kind"])
        if len(images) == 0:
            raise ValueError("images: none given")
        settings = checked_settings(settings)
        if groups is not None and len(groups) != len(images):
            raise ValueError(f"groups: {len(groups)} names for {len(images)} images")
        tr, va = split_indices(len(images), settings.val_split, settings.seed, groups)
        by_photo = groups is not None and len(set(groups)) > 1  # else split tile by tile
        notices = []
        if settings.val_split > 0 and len(va) == 0:
            notices.append(f"only {len(images)} image: no validation; the best model follows the training loss")
        elif 0 < len(va) < FEW_VALIDATION and detector.trains_epochs:  # QA sweep 15: 13 training maps, 1 to validate
            notices.append(f"only {len(va)} validation image{'s' if len(va) > 1 else ''}: the best epoch (the model "
                           "kept) and the still-learning and overfit notes rest on so few; a larger validation "
                           "split, or more images, steadies them")
        if (source or {}).get("kind") == "wafer" and (note := wafer_features_note(detector)):  # before the fit's time
            notices.append(note)
        if (source or {}).get("tile") and len(va) and not by_photo:  # QA sweep 18: tiles overlapping training ones
            notices.append(Caution(
                "the validation tiles are drawn from the same photos as the training tiles, and a photo's last row "
                "and column of tiles overlap their neighbours, so the best epoch, the threshold and the heatmap scale "
                "rest on pixels much like the trained ones: expect more false alarms on new photos, and set the "
                "threshold on unseen normal photos (Inspect's target FPR on a test split with good images)"))
        run_dir = runs.create_run_dir(run_dir)
        detector.write_spec(run_dir)
        from . import __version__
        info = {"method": method, "options": dict(options or {}),
                "settings": applied_settings(settings.to_dict(), detector.trains_epochs),
                "input_shape": list(input_shape),
                "data": {**dict(source or {}), "count": len(images), "n_train": len(tr), "n_val": len(va),
                         "digest": images_digest(images), **({"val": va.tolist()} if by_photo else {})},
                "versions": {"udd": __version__, "torch": torch.__version__, "numpy": np.__version__,
                             "python": sys.version.split()[0]},
                "created": runs.now_iso(), "resumed": []}
        runs.write_json_atomic(run_dir / runs.TRAIN_FILE, info)
        run_status.write_status(run_dir, "stopped", "created; not started yet", epoch=0, epochs=settings.epochs)
        return cls(run_dir, detector, images[tr], images[va] if len(va) else None, settings, notices=tuple(notices))

    @classmethod
    def resume(cls, run_dir: Union[str, Path], images: Optional[np.ndarray] = None, epochs: Optional[int] = None,
               device: Optional[str] = None, data_path: Union[str, Path, None] = None) -> "TrainJob":
        """Continue a stopped, interrupted or finished run from last.safetensors and its optimizer state.

        `images` are the run's training images (the normal ones, or what its train_on chose),
        reloaded from train.json's data path when None; `data_path` is the data's new place when it
        has moved: train.json records it (and where it was), so scoring and generating find it too.
        `epochs` raises the total epoch count. History is appended to, never rewritten.
        """
        run_dir = Path(run_dir)
        info = runs.read_train(run_dir)
        shape = runs.train_shape(info)
        if "settings" not in info or shape is None:
            raise ValueError(f"{run_dir}: not a run folder (no readable {runs.TRAIN_FILE})")
        st = run_status.read_status(run_dir)
        if st["status"] == "running":
            raise ValueError(f"run {run_dir.name}: is still being trained (pid {st.get('pid')}); stop it first")
        method = info.get("method") or run_method(run_dir)
        if not detector_class(method).resumable:
            raise ValueError(f"run {run_dir.name}: {a_method(method)} run cannot be resumed; fit a new run instead")
        remove_leftover_temps(run_dir)  # half-written files of the process that was killed (QA sweep 21)
        settings = TrainSettings.from_dict(info["settings"])
        settings = settings.replace(**{k: v for k, v in (("device", device),) if v is not None})
        if not (run_dir / runs.LAST_WEIGHTS).is_file():
            raise ValueError(f"run {run_dir.name}: nothing to resume ({runs.LAST_WEIGHTS} is missing)")
        if blocker := resume_blocker(run_dir):  # before train.json or status.json change (QA sweep 8)
            raise ValueError(f"run {run_dir.name}: cannot resume: {blocker}")
        options = dict(info.get("options") or {})
        # The epoch loop to continue: the training loop's, or a later phase under way (Deep SVDD's one-class
        # epochs), whose total then takes the new count, so no epoch of it is trained again or lost.
        phase = detector_class(method).resume_phase(run_dir, settings.epochs, options)
        done, unit = phase.done, phase.unit
        units = unit + "s" * (done != 1)  # "1 epoch", "2 epochs"
        # The epoch count is the new total: asking for no more than are done would train nothing while
        # train.json and status.json claimed a finished run of that length.
        if epochs is not None and epochs <= done:
            # "leave it out" only where that trains on: a run whose planned epochs are not all done (QA sweep 17)
            rest = ", or leave it out to finish the run as it was set up" if done < phase.total else ""
            raise ValueError(f"run {run_dir.name}: already has {done} {units}; the epoch count is the new "
                             f"total, so ask for more than {done}{rest}")
        # A stopped run with every epoch of its loop done was stopped after it (in calibration): resuming ends it.
        if epochs is None and done >= phase.total and st["status"] not in ("stopped", "interrupted"):
            raise ValueError(f"run {run_dir.name}: already has {done} {units}; "
                             f"ask for more than {done} (the epoch count is the new total)")
        if epochs is not None and phase.option:
            options[phase.option] = epochs
            info["options"] = options
        elif epochs is not None:
            settings = settings.replace(epochs=epochs)
        c, h, w = shape
        data = runs.train_source(info)
        moved_from = None
        if data_path is not None and str(resolved(data_path)) != str(data.get("path")):
            check_resume_data(info, data_path, run_dir.name)
            moved_from, data = data.get("path"), {**data, "path": str(resolved(data_path))}  # absolute, as at create
            info["data"] = data  # written with the rest below, once every check has passed
        config = load_config(run_dir / CONFIG_FILE) if (run_dir / CONFIG_FILE).is_file() else None
        detector = detector_class(method).build((c, h, w), options or None, config, settings.seed)
        check_restorable(run_dir, detector, settings.loss)  # before the data loads at train.json's size
        if images is None:
            if not data.get("path"):
                raise ValueError(f"run {run_dir.name}: train.json names no data path; give its data (--data PATH)")
            if not Path(data["path"]).exists():  # QA sweep 12: "/x: no such file or folder" said not what to do
                raise ValueError(f"run {run_dir.name}: its training data {data['path']} is gone (moved or deleted); "
                                 "give its new place with --data PATH")
            ds = load_dataset(data["path"], (c, h, w), split="train", tile=bool(data.get("tile", False)))
            images, _ = training_images(ds, settings.train_on)
        if data.get("count") not in (None, len(images)):
            raise ValueError(f"run {run_dir.name}: was trained on {data['count']} images, got {len(images)}; "
                             "resume needs the same data")
        if data.get("digest") not in (None, images_digest(images)):  # runs made before the digest have none
            raise ValueError(f"run {run_dir.name}: these are not the images it was trained on (the same number, "
                             "other content); resume needs the same data")
        check_images(images, (c, h, w), "images")
        settings = checked_settings(settings)  # everything is checked before train.json changes
        tr, va = run_split(len(images), settings.val_split, settings.seed, data.get("val"))  # whole photos, if tiled
        info["settings"] = settings.to_dict()
        info["resumed"] = list(info.get("resumed", [])) + [{"time": runs.now_iso(), "after_epoch": done}
                                                           | ({"phase": unit} if phase.option else {})
                                                           | ({"data_moved_from": moved_from} if moved_from else {})]
        runs.write_json_atomic(run_dir / runs.TRAIN_FILE, info)
        job = cls(run_dir, detector, images[tr], images[va] if len(va) else None, settings, resume=True)
        if not phase.option:  # the bar counts on from the epochs done ("epoch 4/8"), not from "epoch 1/8"
            job._board.update(epoch=done)
        return job

    def start(self) -> "TrainJob":
        """Start training in a daemon thread (once)."""
        if self._thread is not None:
            raise RuntimeError(f"job {self.name}: already started")
        self._board.update(status="running", message="starting")
        self._thread = threading.Thread(target=self._run, name=f"udd-train-{self.name}", daemon=True)
        # When the process ends while the job trains (the app stopped with Ctrl-C or a kill), the daemon thread
        # would die mid-step, leaving the run "running" (QA sweep 8: and torch aborted the process): stop it
        # first, as the Stop button does. Unregistered when the job ends, so an ended job is not kept alive.
        atexit.register(self._stop_at_exit)
        self._thread.start()
        return self

    def _stop_at_exit(self) -> None:
        self.stop()
        self.join(60)

    def _run(self) -> None:
        train_images, val_images = self._data
        # From now on the run is live: "running" with this process's id, so that other pages, Compare and a
        # later look at the folder see it so (and "interrupted" should the process die before its first epoch,
        # e.g. while a feature AE computes its features), not "stopped, created; not started yet".
        was = run_status.read_status(self.run_dir)
        run_status.write_status(self.run_dir, "running", "starting",
                          **{k: was[k] for k in ("epoch", "epochs") if k in was})
        try:
            self.detector.fit(train_images, val_images, self.settings, self.run_dir,
                              stop_event=self._stop, board=self._board, resume=self._resume)
        except BaseException as e:  # noqa: BLE001 - a thread's exception must land in the snapshot, never be lost
            frames = traceback.extract_tb(e.__traceback__)
            where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno} in {frames[-1].name}" if frames else ""
            msg = str(e) or type(e).__name__
            if not isinstance(e, (TrainingFailed, ValueError, OSError)):
                msg = f"{type(e).__name__}: {msg}"
            self._board.update(status="failed", message=msg, error=msg, error_where=where, eta_s=None)
        finally:
            self._data = (None, None)  # let the image cache go once the job is over
            atexit.unregister(self._stop_at_exit)
            self._done.set()

    def stop(self) -> None:
        """Ask the job to stop at the next batch boundary; checkpoints are kept (status "stopped")."""
        self._stop.set()

    def join(self, timeout: Optional[float] = None) -> bool:
        """Wait for the thread; True when it has ended (or never started).

        Waits on an Event rather than in Thread.join: on Python < 3.12, a Ctrl-C landing inside
        Thread.join marks a still-running thread as stopped (bpo-45274), and the process then
        exits under the training thread's feet.
        """
        if self._thread is None:
            return True
        if self._done.wait(timeout):
            self._thread.join()  # the thread is past its last statement: returns at once
        return not self.is_alive()

    def is_alive(self) -> bool:
        """True while the training thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def snapshot(self) -> Progress:
        """A frozen copy of the progress, cheap enough to poll several times a second."""
        return self._board.snapshot()


RUN_COLUMNS = ("name", "method", "status", "epochs", "best loss", "created", "message")


def run_rows(listed: Sequence[runs.RunInfo], statuses: Mapping[str, str]) -> list[tuple]:
    """The runs table (`RUN_COLUMNS`), one row per run. A method fitted in one pass has no epochs or
    losses: None there, not a misleading 0. "created" is the run's local wall time as a datetime (None when
    train.json holds none or garbage), so a table can show it short."""
    rows = []
    for r in listed:
        looped = not fitted_in_one_pass(r.method)
        rows.append((r.name, r.method, statuses.get(r.name, r.shown_status), r.epochs_done if looped else None,
                     r.best_val_loss if looped else None, _wall_time(r.created),
                     f"damaged: {r.damaged}" if r.damaged and statuses.get(r.name) != "running" else r.message))
    return rows


def _wall_time(text: Any) -> Optional[datetime]:
    try:  # the offset dropped: runs made in summer and in winter sort and show by their own clocks
        return datetime.fromisoformat(text).replace(tzinfo=None)
    except (TypeError, ValueError):
        return None


class JobManager:
    """The training jobs of one process, by run name: a page refresh can find its running job again."""

    def __init__(self) -> None:
        self._jobs: dict[str, TrainJob] = {}
        self._lock = threading.Lock()

    def start(self, job: TrainJob) -> TrainJob:
        """Register and start `job`; refused while another job trains the same run."""
        with self._lock:
            old = self._jobs.get(job.name)
            if old is not None and old is not job and old.is_alive():
                raise ValueError(f"run {job.name}: a training job is already running for it")
            self._jobs[job.name] = job
        return job.start()

    def get(self, name: str) -> Optional[TrainJob]:
        """The latest job of run `name`, running or ended; None if there is none."""
        with self._lock:
            return self._jobs.get(name)

    def active(self) -> list[TrainJob]:
        """Jobs whose thread is still running."""
        with self._lock:
            return [j for j in self._jobs.values() if j.is_alive()]

    def sharing_note(self, listed: Sequence[runs.RunInfo] = ()) -> Optional[str]:
        """One line beside Start while runs train, in this process or, among the `listed` runs, in another (a
        `udd train`): a new run shares the machine with them (on a small CPU each then trains at a fraction of
        its speed); None when nothing trains. QA sweep 19b: a CLI run went unsaid, and after Start the line read
        as if the run just started were another one."""
        names = [j.name for j in self.active()]
        names += [f"{r.name} (udd train)" for r in listed if r.status == "running" and r.name not in names]
        if not names:
            return None
        them = "it" if len(names) == 1 else "them"
        return f"Training now: {', '.join(names)}. Another run started shares the processor with {them}, and each " \
               "trains slower."

    def statuses(self, listed: Sequence[runs.RunInfo]) -> dict[str, str]:
        """Each listed run's status, "running" for a job of this process whose thread is alive (its
        status.json may lag behind by a heartbeat), "damaged" for a run whose files cannot be read."""
        return {r.name: "running" if (j := self.get(r.name)) and j.is_alive() else r.shown_status for r in listed}

    def stop_all(self, timeout: Optional[float] = None) -> bool:
        """Stop every job and wait up to `timeout` s for each; True when all have ended."""
        jobs = self.active()
        for j in jobs:
            j.stop()
        return all(j.join(timeout) for j in jobs)
