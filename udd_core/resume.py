"""What resuming a run needs: that it trains on the very images it learned, and what the Train page offers.

A resume must continue on the run's own data, wherever that now lies: `check_resume_data` refuses
data of the other kind before anything loads, and `images_digest` fingerprints the images at the
run's size (train.json's data.digest), so other images of the same number are refused too.
`resume_offer` is what the Train page's Resume box needs from a run folder.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Union

import numpy as np

from . import runs
from .data import data_kind, kind_mismatch, kind_noun
from .data_preview import training_labels
from .methods import detector_class, run_method
from .notices import error_line
from .run_notes import more_epochs, resume_blocker
from .training_data import training_count


def images_digest(images: np.ndarray) -> str:
    """A fingerprint of a run's training images (N, H, W, C) uint8, as loaded at its size: a resume checks
    that it trains on the same images, wherever they now lie (the count alone let other data through)."""
    h = hashlib.sha1(repr(images.shape).encode())
    h.update(np.ascontiguousarray(images).data)
    return h.hexdigest()


def check_resume_data(info: Mapping[str, Any], data_path: Union[str, Path], run_name: str) -> None:
    """Refuse, in one line and before anything loads, resume data of the other kind than the run's
    (wafer maps for a run trained on images, or the other way round), or holding another number of images
    to train on (counted from file names and labels; a tiled run's tiles are left to the load)."""
    source = runs.train_source(info)
    recorded, given = source.get("kind"), data_kind(data_path)
    if kind_mismatch(recorded, given):
        raise ValueError(f"{data_path}: run {run_name} was trained on {kind_noun(recorded)}, these are "
                         f"{kind_noun(given)}; resume needs the same data")
    if (count := source.get("count")) is None or source.get("tile"):
        return
    n = training_count(training_labels(data_path), runs.train_settings(info).get("train_on") or "normal")
    if n != count:  # QA sweep 11: other images enabled Resume, refused only on its click
        raise ValueError(f"{data_path}: run {run_name} was trained on {count} images, this data holds {n} it "
                         "would train on; resume needs the same data")


@dataclass(frozen=True)
class ResumeOffer:
    """What resuming a stopped or finished run needs from its folder: its data and a starting total."""

    data_path: str  # the data set it trained on ("" when train.json does not say)
    input_shape: Optional[tuple[int, int, int]]  # (C, H, W) as train.json records it; None when it does not
    tile: bool  # cut into tiles of the input size
    total: int  # the Resume box's first value: the planned epochs when more than done, else `more_epochs`
    done: int = 0  # epochs done of the loop a resume continues (`Detector.resume_phase`)
    unit: str = "epoch"  # that loop's epochs: "epoch", or a later phase's ("Deep SVDD epoch")
    train_on: str = "normal"  # what it trained on (settings.train_on): a resume reloads the same images

    def check_total(self, total: int) -> int:
        """`total` as the new epoch count, or a ValueError in the Resume box's words when it would train
        nothing (`TrainJob.resume` refuses the same, worded for `udd train --resume`)."""
        if total <= self.done:
            raise ValueError(f"Resume: enter a total above the {self.done} {self.unit}s done.")
        return int(total)


def resume_offer(run: runs.RunInfo, status: str) -> Optional[ResumeOffer]:
    """A `ResumeOffer` for a run whose method resumes and whose status allows it (stopped, interrupted,
    finished); None otherwise."""
    try:
        cls = detector_class(run_method(run.path))
    except ValueError:  # an unknown method or a damaged method.json: nothing to resume with
        return None
    if status not in ("stopped", "interrupted", "finished") or not cls.resumable:
        return None
    if not (run.path / runs.LAST_WEIGHTS).is_file():  # stopped before its first save: nothing to resume from
        return None
    if resume_blocker(run.path):  # a damaged last.safetensors or config: TrainJob.resume would refuse it
        return None
    info = runs.read_train(run.path)
    shape, data = runs.train_shape(info), runs.train_source(info)
    options = info.get("options")
    if shape is None:  # a damaged train.json: TrainJob.resume would refuse it
        return None
    try:
        phase = cls.resume_phase(run.path, runs.train_epochs(info) or 1, options if isinstance(options, dict) else {})
    except ValueError:  # damaged method options: TrainJob.resume would refuse them
        return None
    return ResumeOffer(str(data.get("path") or ""), shape, bool(data.get("tile")),
                       phase.total if phase.total > phase.done else more_epochs(phase.done), phase.done, phase.unit,
                       runs.train_on(info))


def check_restorable(run_dir: Union[str, Path], detector: Any, loss: str) -> None:
    """Load what a resume will load, before train.json or status.json change: weights that no longer fit the
    config, a damaged trainer.pt, or a loss the model cannot train with fail here in one line naming the file,
    the run left as it was (QA sweep 15: such a resume failed after marking a finished run failed, with a new
    epoch total and a resume entry in train.json, and the app then offered no Resume)."""
    import torch

    from .losses import check_loss_fits
    from .tensor_files import read_tensors

    p, name = Path(run_dir), Path(run_dir).name
    model = getattr(detector, "model", None)
    if model is None:
        return
    if detector.trains_epochs and getattr(model, "config", None) is not None:
        try:
            check_loss_fits(loss, model.config.output)
        except ValueError as e:
            raise ValueError(f"run {name}: cannot resume: {runs.TRAIN_FILE}: {e}") from None
    last, state = p / runs.LAST_WEIGHTS, p / runs.TRAINER_STATE
    if last.is_file():
        weights, meta = _loaded(name, last, lambda: read_tensors(last))
        _check_shape(name, meta.get("input_shape"), getattr(model, "input_shape", None))
        _loaded(name, last, lambda: model.load_state_dict(weights))
    if state.is_file():  # without it the optimizer starts afresh, as it always has
        _loaded(name, state, lambda: torch.load(state, map_location="cpu", weights_only=True))


def check_saved_shape(run_dir: Union[str, Path], shape: tuple[int, int, int]) -> None:
    """Refuse, from last.safetensors' header alone, a train.json input shape other than the one its weights
    trained at, before a resume loads its data at that shape (`udd train --resume --data`: a typed 99999x99999
    loaded the images before `check_restorable` could say so)."""
    from .tensor_files import read_metadata

    p = Path(run_dir)
    if (last := p / runs.LAST_WEIGHTS).is_file():
        _check_shape(p.name, _loaded(p.name, last, lambda: read_metadata(last)).get("input_shape"), tuple(shape))


def _loaded(name: str, path: Path, load: Callable[[], Any]) -> Any:
    """`load()`, its failure one line naming the file (torch's zip and size-mismatch errors: RuntimeError,
    ValueError, pickle's own; quoted to 100 characters, as they run to 400)."""
    try:
        return load()
    except Exception as e:
        why = error_line(e)
        why = why if len(why) <= 100 else why[:100] + "…"
        # QA sweep 21: a truncated trainer.pt gave no way out; without it a resume starts a fresh optimizer
        way_out = (f"; remove {path.name} to resume with a fresh optimizer and learning-rate schedule (the weights "
                   "are kept)" if path.name == runs.TRAINER_STATE else "")
        raise ValueError(f"run {name}: cannot resume: {path.name}: does not load into the run's model "
                         f"({why}){way_out}") from None


def _check_shape(name: str, saved: Optional[str], built: Optional[tuple]) -> None:
    # QA sweep 15: an input_shape of 99999x99999 typed into train.json loaded the data at that size (23 GB,
    # killed by the kernel), while the weights record the size they trained at.
    if saved and built is not None and saved != ",".join(map(str, built)):
        raise ValueError(f"run {name}: cannot resume: {runs.TRAIN_FILE}: input_shape {list(built)} is not "
                         f"the size its weights trained at ({saved.replace(',', 'x')})")
