"""Which images a run learns from and which it validates on.

Normal images only by default (an autoencoder must never learn to reconstruct a defect), all of
them, or chosen classes of a labelled wafer set; then a seeded split into training and validation
that Inspect, `udd score` and the ONNX check repeat exactly to find a run's validation images again.
Plain numpy, no torch: the pages and the generators ask here without loading the training stack.
"""
from __future__ import annotations

from collections import Counter
from types import SimpleNamespace
from typing import Any, Optional, Sequence

import numpy as np

from .tiles import is_tile, source_image
from .settings import train_on_classes


def split_indices(n: int, val_split: float, seed: int, groups: Optional[Sequence[str]] = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) indices of n images: a seeded random `val_split` share for validation.

    At least one image stays in each part when there are two or more and val_split > 0. `groups` (n names,
    such as the photo each tile was cut from) keeps a group whole on one side: whole groups are drawn for
    validation until they hold the share (QA sweep 18: a tiled run validated on tiles of its training
    photos, overlapping its training tiles). With fewer than two groups the images are split one by one.
    """
    n_val = 0 if val_split <= 0 or n < 2 else min(n - 1, max(1, round(n * val_split)))
    rng = np.random.default_rng([seed, 0x5A11])
    if groups is None or len(set(groups)) < 2 or n_val == 0:
        order = rng.permutation(n)
        return np.sort(order[n_val:]), np.sort(order[:n_val])
    names = list(dict.fromkeys(groups))  # in first-seen order, so that the draw depends on the seed alone
    index = {g: i for i, g in enumerate(names)}
    member = np.array([index[g] for g in groups])  # (n,) group number of each image
    val = np.zeros(n, dtype=bool)
    for g in rng.permutation(len(names))[:len(names) - 1]:  # one group at least stays for training
        if val.sum() >= n_val:
            break
        val |= member == g
    return np.flatnonzero(~val), np.flatnonzero(val)


NORMAL_LABELS = ("good", "none", "normal")  # labels of defect-free images (MVTec "good", WM-811K "none")
UNKNOWN_LABELS = ("unlabeled", "unlabelled", "unknown", "?")  # neither normal nor a defect (WM-811K "unlabeled")


def normal_images(ds: Any, for_training: bool = False) -> tuple[np.ndarray, Optional[str]]:
    """The defect-free images of a loaded ImageSet, and a note when labelled defects were left out.

    MVTec train splits hold only good images already; labelled wafer files mix normal maps and
    failure patterns, and an autoencoder must only ever learn the normal ones. A set whose labels are
    all defects gives all its images back, except `for_training`, where it is a ValueError.
    """
    keep, note = _normal_mask(ds, for_training)
    return (ds.images if keep.all() else ds.images[keep]), note


def _normal_mask(ds: Any, for_training: bool) -> tuple[np.ndarray, Optional[str]]:
    """`normal_images` as an (N,) bool mask: all True for a set without normal labels (unless `for_training`)."""
    keep = is_normal(ds.labels)
    if keep.all() or (not keep.any() and not for_training):
        return np.ones(len(keep), dtype=bool), None
    if not keep.any():  # training on defects would teach the model to reconstruct them
        found = _listed(sorted(set(map(str, ds.labels))))
        raise ValueError(f"data: every image is labelled as a defect ({found}); training needs normal images "
                         f"(labels {'/'.join(NORMAL_LABELS)}) or unlabelled ones")
    return keep, (f"trained on the {int(keep.sum())} normal images (labels {'/'.join(NORMAL_LABELS)}); the "
                  f"{_defects_and_unknown([v for v, k in zip(ds.labels, keep) if not k])} left out")


def is_normal(labels) -> np.ndarray:
    """(N,) bool: which labels name a defect-free image (`NORMAL_LABELS`, any case)."""
    return np.array([str(v).strip().lower() in NORMAL_LABELS for v in labels], dtype=bool)


def is_unknown(labels) -> np.ndarray:
    """(N,) bool: which labels say the image's class is unknown (`UNKNOWN_LABELS`, any case): no defect class."""
    return np.array([str(v).strip().lower() in UNKNOWN_LABELS for v in labels], dtype=bool)


def _defects_and_unknown(labels) -> str:
    """'14 labelled as defects and 3 with an unknown label' for the labels that are not normal."""
    unknown = int(is_unknown(labels).sum())
    defects = len(labels) - int(is_normal(labels).sum()) - unknown
    parts = [f"{defects} labelled as defects"] * bool(defects) + [f"{unknown} with an unknown label"] * bool(unknown)
    return " and ".join(parts)


def training_mask(ds: Any, train_on: str = "normal", for_training: bool = True) -> tuple[np.ndarray, Optional[str]]:
    """(N,) bool: the images of a loaded ImageSet that a run with setting `train_on` learns from (before
    the validation split), and a note saying what was kept.

    "normal": the normal images (when every image is labelled as a defect: a ValueError, or all of
    them when not `for_training`, as `normal_images` gives them); "all": every image, defects included;
    class labels ("Center,Donut"): the images with those labels, and a ValueError naming any label the
    data does not have.
    """
    classes = train_on_classes(train_on)
    if classes is None and train_on.strip() == "normal":
        return _normal_mask(ds, for_training)
    labels = [str(v) for v in ds.labels]
    found = sorted(set(labels))
    if classes is None:  # "all"
        others = _defects_and_unknown(labels)
        return np.ones(len(labels), dtype=bool), (f"trained on all {len(labels)} images, of them {others}"
                                                  if others else None)
    classes = tuple(as_spelled(c, found) for c in classes)
    unknown = [c for c in classes if c not in found]
    if unknown:
        raise ValueError(f"train_on: no images of class {', '.join(map(repr, unknown))} in the data "
                         f"(classes: {_listed(found)})")
    keep = np.isin(np.asarray(labels), classes)
    return keep, (f"trained on the {int(keep.sum())} images of {', '.join(classes)}; "
                  f"{int((~keep).sum())} others left out")


def training_count(labels, train_on: str = "normal") -> int:
    """How many images labelled `labels` a run with setting `train_on` learns from (`training_mask`, on the
    labels alone: counted before any pixel is decoded)."""
    return int(training_mask(SimpleNamespace(labels=list(labels)), train_on)[0].sum())


def check_train_on(labels, train_on: str) -> str:
    """`train_on` as a run records it for data with these labels: chosen classes as the data spells them
    (" center, loc" -> "Center,Loc"). Raises `training_mask`'s ValueError (a class the data lacks, or no
    normal image to train on) before any image is decoded."""
    training_mask(SimpleNamespace(labels=labels), train_on)
    classes = train_on_classes(train_on)
    if classes is None:
        return train_on
    found = sorted(set(map(str, labels)))
    return ",".join(as_spelled(c, found) for c in classes)


def class_counts(labels) -> dict[str, int]:
    """Images per label, classes sorted by name."""
    return dict(sorted(Counter(str(v) for v in labels).items()))


def class_census(labels) -> str:
    """'Center (3), Donut (3), none (6)': each label of a data set and how many images carry it."""
    return _listed([f"{name} ({n})" for name, n in class_counts(labels).items()], most=20)


def as_spelled(name: str, labels) -> str:
    """`name` as the data spells it ("center" -> "Center") when exactly one of its labels matches it
    without regard to case; `name` itself otherwise (an exact match, or none, or an ambiguous one)."""
    found = set(map(str, labels))
    if name in found:
        return name
    same = [v for v in found if v.casefold() == name.casefold()]
    return same[0] if len(same) == 1 else name


def _listed(names: list[str], most: int = 12) -> str:
    """'a, b, c' with at most `most` names, and how many more: a data set's classes in one line."""
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


def training_images(ds: Any, train_on: str = "normal") -> tuple[np.ndarray, Optional[str]]:
    """The images a run with setting `train_on` learns from (`training_mask`), and its note."""
    keep, note = training_mask(ds, train_on)
    return (ds.images if keep.all() else ds.images[keep]), note


def run_split(n: int, val_split: float, seed: int, kept: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) indices of a run's `n` training images as the run split them: `kept`, the validation
    indices its train.json keeps (data.val: a tiled run's, drawn as whole photos), else `split_indices` with
    its `val_split` and `seed` (the same draw, as it depends on them alone). A damaged `kept` is passed over."""
    if isinstance(kept, list) and kept and all(isinstance(i, int) and 0 <= i < n for i in kept):
        va = np.unique(np.array(kept))
        return np.setdiff1d(np.arange(n), va), va
    return split_indices(n, val_split, seed)


def split_groups(ds: Any, train_on: str = "normal") -> Optional[list[str]]:
    """For a tiled data set, the photo each of the images `training_images` gives was cut from, which its
    validation split keeps whole (`split_indices`); None for whole images."""
    if not any(is_tile(n) for n in ds.names):
        return None
    keep = training_mask(ds, train_on)[0]
    return [source_image(n) for n, k in zip(ds.names, keep) if k]


def reference_normals(ds: Any, train_on: str, val_split: float, seed: int, kept_val: Any = None
                      ) -> tuple[Optional[np.ndarray], str]:
    """The normal images that set a run's heatmap scale and threshold, and what they are.

    The run's validation split is repeated as training made it (`training_mask`, then `split_indices`);
    its normal images are "validation". A run that validated on defects only (trained on chosen classes)
    takes the normal images it never saw ("unseen normal"); one with no validation split its normal
    training images ("training"). (None, "") when the data holds no normal image.
    """
    keep = training_mask(ds, train_on, for_training=False)[0]
    # What counts as normal: for a run of normal images, what training kept (all of an all-defect set).
    normal = keep if train_on.strip() == "normal" else is_normal(ds.labels)
    seen = np.flatnonzero(keep)
    tr, va = run_split(len(seen), val_split, seed, kept_val)  # `kept_val`: train.json's data.val, if it keeps one
    for idx, source in ((seen[va], "validation"), (np.flatnonzero(normal & ~keep), "unseen normal"),
                        (seen[tr], "training")):
        idx = idx[normal[idx]]
        if len(idx):
            return ds.images[idx], source
    return None, ""
