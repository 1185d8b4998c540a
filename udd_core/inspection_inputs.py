"""What an inspection scores: a run's detector and a data set loaded at the run's input size.

`load_inputs` loads both once (the Inspect page caches the result across reruns) and gathers the
notes a user must see beside the numbers: the run's own training data scored again, another kind of
data, another size. `run_validation_images` reloads a run's normal validation images, split as
training split them, which fix the heatmap scale and the threshold (`inspection.inspect_run`) and
check an ONNX export (`export.py`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np

from . import runs
from .data import (DataError, ImageSet, data_kind, kind_mismatch, load_dataset, same_data, resolved,
                   scores_training_data)
from .data_preview import estimate_cache_bytes, size_for_sizeless_model
from .methods import Detector, load_detector
from .resume import images_digest
from .run_notes import ending_note, learned_defects_note, scored_training_data_note, unfinished_note
from .settings import resolve_device
from .training_data import reference_normals, training_mask


@dataclass
class Loaded:
    """A detector and the images to score, loaded once (the app caches this across reruns)."""

    model_dir: Path
    detector: Detector
    data: ImageSet
    data_path: str
    split: str
    input_shape: tuple[int, int, int]  # (C, H, W) the images were loaded at
    run: dict  # train.json; {} for a reference-package folder
    calibration: Optional[dict]  # calibration.json when it was made at this input size
    notices: list[str] = field(default_factory=list)
    mismatch: Optional[str] = None  # `data.kind_mismatch`: data of the other kind than the run's (also a notice)
    relation: str = ""  # `data_relation`: TRAINING, OWN, OTHER, or "" (the run records no data)
    memo: dict = field(default_factory=dict, repr=False)  # reloaded validation images, filled on first need


# How scored data stands to a run's training data (`data_relation`).
TRAINING = "training"  # the scored images include those the run learned: its data, or a copy of them elsewhere
OWN = "own"  # the run's data set, a split it never trained on (an MVTec test split)
OTHER = "other"  # other data


def data_relation(data_path: str, split: str, ds: ImageSet, run: dict, shape: Optional[tuple[int, int, int]],
                  tile: bool = False) -> str:
    """TRAINING, OWN or OTHER for data set `ds` loaded from `data_path` (`split`) at the run's input `shape`
    (None: at another size), "" when train.json (`run`) names no data. A copy of the training images at
    another path is TRAINING, known by train.json's digest of them (QA sweep 15: a byte-identical copy was
    "other data", and the caution that its metrics include images the run learned went away); the digest holds
    at the run's input size only. A data set whose train split is such a copy (the run's data set moved or
    copied whole) has the run's own test split (OWN), and its "all" split holds the training images (TRAINING):
    that train split is decoded only when its image count, read from file headers (tiles for a `tile` run),
    is the run's (QA sweeps 17 and 18: "other data", whose threshold "may not fit", on the run's own data)."""
    src = runs.train_source(run)
    recorded = src.get("path")
    if not recorded:
        return ""
    if scores_training_data(data_path, recorded, split):
        return TRAINING
    if same_data(data_path, recorded):
        return OWN
    if Path(data_path).expanduser().is_file() and resolved(data_path).is_relative_to(resolved(recorded)):
        # one image of the run's own data set, scored alone (QA sweep 18: "other data"): a training image, or
        # one of an MVTec set's test split
        within = resolved(data_path).relative_to(resolved(recorded)).parts
        return OWN if data_kind(recorded) == "mvtec" and "train" not in within[:-1] else TRAINING
    if shape is None:
        return OTHER
    if _holds_training_images(ds, run):
        return TRAINING
    if split in ("test", "all") and data_kind(data_path) == "mvtec":
        try:
            same_count = estimate_cache_bytes(data_path, shape, split="train", tile=tile)[0] == src.get("count")
            if same_count and _holds_training_images(load_dataset(data_path, shape, split="train", tile=tile), run):
                return OWN if split == "test" else TRAINING
        except DataError:  # no train split here (a test-only copy), or none of it loads
            pass
    return OTHER


def _holds_training_images(ds: ImageSet, run: dict) -> bool:
    src = runs.train_source(run)
    if not src.get("digest"):
        return False
    try:
        keep = training_mask(ds, runs.train_on(run))[0]
    except ValueError:  # none of the classes the run learned
        return False
    return int(keep.sum()) == src.get("count") and images_digest(ds.images[keep]) == src["digest"]


def _same_epoch(cal: dict, det: Detector) -> bool:
    """Whether calibration.json (``cal``) was made for the model the detector loaded: the epoch in both
    (QA sweep 15: a resume killed after saving epoch 10 left epoch 2's threshold and heatmap scale, which
    called 0 of 300 images defective where the model's own called 10). Either without an epoch: trusted."""
    made = cal.get("epoch")
    saved = (getattr(getattr(det, "model", None), "metadata", None) or {}).get("epoch")
    try:
        return made is None or saved is None or int(made) == int(saved)
    except (TypeError, ValueError):  # a damaged field: not trusted
        return False


def moved_data(run_dir: Union[str, Path], typed: str) -> Optional[str]:
    """The data typed on a page when the run's own training data is gone: its new place, which an export
    takes as `udd export --data`; None while the run's data is where it was."""
    recorded = runs.run_source(run_dir).get("path")
    return typed if recorded and not Path(recorded).expanduser().exists() else None


def training_data_gone(data_path: str, recorded: Optional[str], fix: str) -> Optional[str]:
    """The line for a run's own training data (train.json's data.path, `recorded`) that is no longer where the
    run saw it, with `fix` saying where to give its new place; None for other data, or data that is there.
    A bare "no such file or folder" on Inspect and Generate said nothing of what happened (QA sweep 12)."""
    if not data_path or not same_data(data_path, recorded) or Path(data_path).expanduser().exists():
        return None
    return f"{data_path}: the run's training data is gone (moved or deleted); {fix}"


def load_inputs(model_dir, data_path=None, split: str = "test", size: Optional[tuple[int, int]] = None,
                tile: Optional[bool] = None, device: str = "cpu",
                progress: Optional[Callable[[int, int], None]] = None) -> Loaded:
    """Load a run/model folder and a data set at the model's input size (or ``size`` (H, W)).

    ``data_path`` defaults to the run's training data; ``tile`` to the run's tiling. A folder
    without a stored size (reference package) scores images at their own (common) size.
    """
    p = Path(model_dir)
    det = load_detector(p, device=str(resolve_device(device)))
    run = runs.read_train(p)
    source = runs.train_source(run)
    if data_path is None:
        data_path = source.get("path")
        if not data_path:
            raise ValueError(f"{p}: no data given and {runs.no_data_why(p)}")
        if gone := training_data_gone(data_path, data_path, "give its new place with --data PATH"):
            raise ValueError(gone)
    trained = tuple(int(v) for v in (det.input_shape or runs.train_shape(run) or ()))
    c = trained[0] if trained else det.model.config.in_channels  # only a reference AE folder stores no size
    if size is not None:
        shape = (c, int(size[0]), int(size[1]))
    elif trained:
        shape = trained
    else:
        hw, size_notice = size_for_sizeless_model(data_path, split)
        shape = (c, *hw)
    det.check_input(shape)
    tile = bool(source.get("tile", False)) if tile is None else tile
    ds = load_dataset(data_path, shape, split=split, tile=tile, progress=progress)
    cal = None
    # Training calibrates on its validation split, which for a run trained on every image or on chosen
    # classes holds defects: such a run's normal reference is re-scored from `run_validation_images`.
    if shape == trained and (p / runs.CALIBRATION_FILE).is_file() and runs.train_on(run) == "normal":
        cal = runs.read_json(p / runs.CALIBRATION_FILE)
        if isinstance(cal, dict) and not _same_epoch(cal, det):
            cal = None  # made for an earlier model: its validation images are re-scored instead
    notices = ([] if size is not None or trained else [size_notice]) + list(ds.notices)
    relation = data_relation(str(data_path), split, ds, run, shape if shape == trained else None, tile)
    if relation == OTHER:
        if Path(source["path"]).exists():
            notices.append(f"the run was trained on {source['path']}: scores on other data show how it carries "
                           "over, and its threshold (set on its own normal images) may not fit them")
        else:  # moved, most likely (QA sweep 13: the same data at its new place was called "other data")
            notices.append(f"the run was trained on {source['path']}, which is no longer there: if these are its "
                           "data moved, its scores and threshold hold here; if not, they show how it carries over "
                           "to other data")
    if relation == TRAINING:
        notices.append(scored_training_data_note(p))
    if learned := learned_defects_note(p):
        notices.insert(0, learned)
    if mismatch := kind_mismatch(source.get("kind"), ds.kind):
        notices.insert(0, mismatch)
    if trained and shape != trained:
        notices.append(f"scored at {shape[1]}x{shape[2]}, the model was trained at {trained[1]}x{trained[2]}")
    if unfinished := unfinished_note(p):  # first: every score below comes from that model
        notices.insert(0, unfinished)
    elif learning := ending_note(p):
        notices.append(learning)
    scored = split if data_kind(data_path) == "mvtec" else "all"  # a plain folder or a wafer file is scored whole
    return Loaded(p, det, ds, str(data_path), scored, shape, run, cal if isinstance(cal, dict) else None, notices,
                  mismatch, relation)


def run_validation_images(run: dict, input_shape: tuple[int, int, int], exact: bool = False
                          ) -> tuple[Optional[np.ndarray], str, list[str]]:
    """The normal images that set a run's heatmap scale and threshold (its train.json as ``run``), reloaded
    at ``input_shape`` (C, H, W): (images or None, "validation" / "unseen normal" / "training" / "", notes).

    The normal images of the run's validation split, as training split them
    (`training_data.reference_normals`, which also covers runs trained on chosen classes or on every
    image); when the data cannot be reloaded the images are None and the notes say why. ``exact``: data that
    is not the images the run trained on (another count, or train.json's digest differs) is a ValueError,
    not a note: an exported threshold must come from the run's own split (QA sweep 9).
    """
    src, st = runs.train_source(run), runs.train_settings(run)
    if not src.get("path"):
        return None, "", []
    other = None
    try:
        ds = load_dataset(src["path"], input_shape, split="train", tile=bool(src.get("tile", False)))
        train_on = runs.train_on(run)
        keep = training_mask(ds, train_on, for_training=False)[0]
        count = int(keep.sum())  # no copy of the images
        if src.get("count") not in (None, count):
            other = f"holds {count} images the run would train on, the run had {src['count']}"
        elif exact and src.get("digest") and images_digest(ds.images[keep]) != src["digest"]:
            other = f"holds {count} images, as the run had, but other ones"
        notes = [f"the training data now {other}; its validation split may differ"] if other else []
        images, source = reference_normals(ds, train_on, float(st.get("val_split", 0.1)), int(st.get("seed", 0)),
                                           src.get("val"))
    except (ValueError, TypeError, OSError) as e:  # TypeError: a damaged val_split or seed in train.json
        return None, "", [f"cannot reload the run's validation images: {e}"]
    if exact and other:
        raise ValueError(f"{src['path']}: not the images the run trained on (it {other}): its threshold and "
                         "heatmap scale would come from other images; give the run's own data")
    return images, source, notes


def validation_images(loaded: Loaded) -> tuple[Optional[np.ndarray], str, list[str]]:
    """The run's normal validation images (memoised on ``loaded``)."""
    if "val" not in loaded.memo:
        loaded.memo["val"] = run_validation_images(loaded.run, loaded.input_shape)
    return loaded.memo["val"]
