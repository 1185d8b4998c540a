"""Generated wafer maps as data: die values from model output, the augmentation .npz, the HW2 view.

A wafer model gives three channels per die (outside, good, failing). A generated map takes its
wafer outline from its source map, so no variant grows or loses dies at the rim, and each die on
the wafer takes the likelier of "good" and "failing" (argmax over those two channels). The maps
are saved as an .npz a classifier can load as more examples of rare patterns: ``maps`` uint8
(N, H, W) in {0, 1, 2}, ``labels`` (the source's class) and ``sources`` (the source's index).
"""
from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch

from .atomic import check_new_file, write_bytes_atomic
from .notices import Caution
from .training_data import NORMAL_LABELS, UNKNOWN_LABELS
from .wafermaps import onehot_to_wafer


def generated_maps(outputs, source_maps: np.ndarray) -> np.ndarray:
    """Die values (N, H, W) uint8 of model outputs (N, 3, H, W), the outline kept from ``source_maps``.

    Outside the source's wafer every die is 0; on it, 1 or 2 by whichever of the good and failing
    channels is larger (ties go to "good").
    """
    y = outputs.detach().float().cpu().numpy() if isinstance(outputs, torch.Tensor) else np.asarray(outputs)
    src = np.asarray(source_maps)
    if y.ndim != 4 or y.shape[1] != 3:
        raise ValueError(f"outputs: expected wafer model output (N, 3, H, W), got shape {y.shape}")
    if src.shape != (y.shape[0], *y.shape[2:]):
        raise ValueError(f"source maps: expected shape {(y.shape[0], *y.shape[2:])}, got {src.shape}")
    maps = np.where(y[:, 2] > y[:, 1], 2, 1).astype(np.uint8)  # (N, H, W) on-wafer dies
    maps[src == 0] = 0
    return maps


def no_failing_dies_note(maps: np.ndarray, sources: np.ndarray) -> Optional[str]:
    """A caution when none of the generated die `maps` (N, H, W) has a failing die while their `sources` (N, H, W)
    have some: a run trained for detection rebuilds normal maps, so its variants are blank wafers, which taught
    a classifier nothing (QA sweep 19a: 12 of 12 blank, said only "wrote 12 wafer maps")."""
    if (np.asarray(maps) == 2).any() or not (failing := int((np.asarray(sources) == 2).sum())):
        return None
    return Caution(f"none of the {len(maps)} generated maps has a failing die, where their sources have {failing}: "
                   "this run rebuilds normal maps, as a model trained for detection does; for maps with the "
                   "patterns, train the wafer-26-gen model with the wafer-generation training preset")


def source_maps(images: np.ndarray) -> np.ndarray:
    """Die values (N, H, W) uint8 of the one-hot image cache (N, H, W, 3) of a wafer ImageSet."""
    return onehot_to_wafer(np.asarray(images))


def npz_bytes(maps: np.ndarray, labels: Sequence[str], sources: Sequence[int], source_names: Sequence[str]) -> bytes:
    """The augmentation file as bytes: ``maps`` uint8 (N, H, W) in {0, 1, 2}, ``labels`` str (N,),
    ``sources`` int64 (N,): each one's source map as an index into the loaded data set (all its map arrays in
    turn), and ``source_names`` str (N,): the same map as the captions name it, file, array and index in that
    array ("w.npz:maps_53x58[19]"). Plain arrays only: it loads with ``np.load(..., allow_pickle=False)``."""
    maps = np.asarray(maps)
    if maps.ndim != 3 or (maps.size and (maps.min() < 0 or maps.max() > 2)):
        raise ValueError(f"maps: expected (N, H, W) die values 0..2, got shape {maps.shape}")
    if not len(labels) == len(sources) == len(source_names) == len(maps):
        raise ValueError(f"labels/sources: {len(labels)} labels, {len(sources)} sources and {len(source_names)} "
                         f"source names for {len(maps)} maps")
    buf = io.BytesIO()
    np.savez_compressed(buf, maps=maps.astype(np.uint8), labels=np.asarray([str(v) for v in labels], dtype=str),
                        sources=np.asarray(sources, dtype=np.int64),
                        source_names=np.asarray([str(v) for v in source_names], dtype=str))
    return buf.getvalue()


def check_npz_target(path: Union[str, Path], force: bool = False, new_folder: Union[str, Path, None] = None) -> Path:
    """Refuse, before any work, an augmentation file that could not be written: a wrong suffix, an
    existing file (unless ``force``) or folder, a missing folder (other than ``new_folder``, the PNG
    folder written first) or one that cannot be written to."""
    if Path(path).suffix.lower() != ".npz":
        raise ValueError(f"--npz {path}: the file name must end in .npz")
    return check_new_file(path, f"--npz {path}", force, new_folder)  # as typed: a trailing slash is refused there


def write_npz(path: Union[str, Path], data: bytes, force: bool = False) -> Path:
    """Write the augmentation file atomically, after `check_npz_target`."""
    path = check_npz_target(path, force)
    try:
        write_bytes_atomic(path, data, replace=force)
    except OSError as e:
        raise OSError(f"{path}: cannot write ({e.strerror or e})") from None
    return path


def pattern_classes(labels: Sequence[str]) -> list[str]:
    """The defect classes among ``labels`` (not none/good/normal, nor an unknown label such as WM-811K's
    "unlabeled": no pattern to show or augment), sorted by name."""
    return sorted({str(v) for v in labels if str(v).strip().lower() not in NORMAL_LABELS + UNKNOWN_LABELS})


@dataclass(frozen=True)
class ClassGrid:
    """One class of the HW2 view: its source maps, their reconstructions and their noised variants."""

    label: str
    sources: np.ndarray  # (k,) data-set indices of the source maps
    source_maps: np.ndarray  # (k, H, W) die values
    recon_maps: np.ndarray  # (k, H, W) die values of the reconstructions (sigma 0), outline kept
    variant_maps: np.ndarray  # (k, per, H, W) die values of the variants, outline kept
    generated: np.ndarray  # (k * per, H, W) the same variants in `udd generate`'s order (cycling the sources)
    generated_sources: np.ndarray  # (k * per,) the data-set index of each one's source map


def class_grids(model, images: np.ndarray, labels: Sequence[str], sigma: float, seed: int,
                classes: Optional[Sequence[str]] = None, n_sources: int = 4, per_source: int = 4) -> list[ClassGrid]:
    """The HW2 view: per class (default: every pattern class), ``n_sources`` source maps, their
    reconstructions and ``per_source`` variants each, at latent noise ``sigma``. Deterministic."""
    from .generation import generate, reconstruct  # generation imports the data stack; kept local

    classes = pattern_classes(labels) if classes is None else list(classes)
    if not classes:
        raise ValueError("labels: the data has no pattern classes (only normal or unlabelled maps)")
    all_maps = source_maps(images)  # (N, H, W)
    grids = []
    names = np.asarray([str(v) for v in labels])
    for i, label in enumerate(classes):
        k = max(1, min(n_sources, int((names == str(label)).sum())))  # a small class gives what it has
        g = generate(model, images, sigma, k * per_source, seed + i, labels, label, n_sources=k)
        rows = g.by_source()
        srcs = np.asarray([s for s, _ in rows])
        recon = generated_maps(reconstruct(model, images, srcs), all_maps[srcs])
        variants = generated_maps(g.outputs, all_maps[g.sources])  # (n, H, W)
        order = np.asarray([j for _, outs in rows for j in outs])
        k = len(rows)
        grids.append(ClassGrid(label, srcs, all_maps[srcs], recon,
                               variants[order].reshape(k, -1, *variants.shape[1:]), variants, g.sources))
    return grids
