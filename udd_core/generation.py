"""Generation glue: load a model and its data, pick source images, and generate from their latent codes.

Sits between the latent tools (`latent`) and the front ends (the Generate page, `udd generate`): it
knows run folders and class labels; `display` turns what it makes into pictures and files.
Deterministic: the seed picks the sources and the noise.
"""
from __future__ import annotations

import math
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch

from . import runs
from .data import ImageSet, load_dataset, resolved, same_data, to_tensor
from .data_preview import size_for_sizeless_model
from .latent import LatentStats, decode, encode, interpolate, noised_latents, random_latents, stats_of
from .model import AutoEncoder, load_model
from .scoring import model_device
from .training_data import NORMAL_LABELS, as_spelled, class_counts, training_images

STATS_MAX_IMAGES = 1024  # latent statistics use at most this many images, evenly spaced
_ENCODE_BATCH = 32  # images encoded per forward pass when fitting latent statistics
MAX_SAMPLES = 10_000  # more is a typo, not a request


# --- loading ---------------------------------------------------------------------------------

def require_decoder(path: Union[str, Path]) -> None:
    """Refuse, in one line, a run whose method does not generate (no decoder, or one that only serves its score)."""
    from .methods import a_method, detector_class, run_method

    method = run_method(path)
    if not detector_class(method).generates:
        raise ValueError(f"{path}: {a_method(method)} run does not generate images; "
                         "generation needs an autoencoder run")


def load_generator(path: Union[str, Path], size: Optional[Sequence[int]] = None,
                   device: str = "cpu", data: Optional[Union[str, Path]] = None, split: str = "train",
                   notices: Optional[list[str]] = None) -> AutoEncoder:
    """A model folder's AutoEncoder with a known ``input_shape`` (C, H, W).

    Run folders store the input size; a reference-package folder does not, so there ``size``
    (H, W) is needed, else the common size of the images at ``data`` (``split``) is taken, as
    `udd score` does, and its notice appended to ``notices``. The design is checked to mirror at
    that size. Given for a folder that stores a size, ``size`` must agree with it.
    """
    require_decoder(path)
    model = load_model(path, device=device)
    if size is None and model.input_shape is None and data:
        size, notice = size_for_sizeless_model(data, split)
        if notices is not None:
            notices.append(notice)
    if size is not None:
        h, w = (int(v) for v in size)
        shape = (model.config.in_channels, h, w)
        if model.input_shape is not None and tuple(model.input_shape) != shape:
            raise ValueError(f"size {h}x{w}: the model in {path} was trained for "
                             f"{model.input_shape[1]}x{model.input_shape[2]}")
        if model.input_shape is None:
            from .shapes import propagate  # only needed for folders without a stored size

            report = propagate(model.config, shape)
            if not report.ok:
                raise ValueError(f"size {h}x{w}: {report.problems[0].message}")
            model.input_shape = shape
    if model.input_shape is None:
        raise ValueError(f"size: the model folder {path} stores no input size; give its H,W or the data to take it from")
    return model


def load_images(model: AutoEncoder, data_path: Union[str, Path], split: str = "train",
                tile: bool = False) -> ImageSet:
    """The data set at ``data_path`` loaded at the model's input size (C, H, W)."""
    if model.input_shape is None:
        raise ValueError("model: input size unknown; load it with load_generator(path, size)")
    ds = load_dataset(data_path, tuple(model.input_shape), split=split, tile=tile)
    if len(ds) == 0:
        raise ValueError(f"{data_path}: no images for split {split!r}")
    return ds


def model_kind(model: AutoEncoder, data_kind: str) -> str:
    """'wafer' when a 3-channel model works on wafer maps (outputs are argmax'ed), else 'image'."""
    return "wafer" if data_kind == "wafer" and model.config.in_channels == 3 else "image"


# --- choosing sources ------------------------------------------------------------------------

def class_pool(labels: Optional[Sequence[str]], n_images: int, class_filter: Optional[str] = None) -> np.ndarray:
    """Indices (ascending) of the images of class ``class_filter``; all images when it is None."""
    if class_filter is None:
        return np.arange(n_images)
    if labels is None:
        raise ValueError(f"class {class_filter!r}: the data has no labels to filter by")
    if len(labels) != n_images:
        raise ValueError(f"labels: {len(labels)} labels for {n_images} images")
    names = np.asarray([str(v) for v in labels])
    want = as_spelled(str(class_filter), labels)
    pool = np.flatnonzero(names == want)
    if not len(pool) and want.lower() in NORMAL_LABELS:  # "good", as scores call WM-811K's "none" (QA sweep 15)
        pool = np.flatnonzero(np.isin(np.char.lower(names), NORMAL_LABELS))
    if not len(pool):
        raise ValueError(f"class {class_filter!r}: no images with this label "
                         f"(classes: {', '.join(class_counts(labels)) or 'none'})")
    return pool


def pick_sources(pool: np.ndarray, k: int, seed: int) -> np.ndarray:
    """``min(k, len(pool))`` distinct indices of ``pool``, drawn with ``seed``, in ascending order."""
    if k < 1:
        raise ValueError(f"number of sources must be >= 1, got {k}")
    if not len(pool):
        raise ValueError("no images to pick sources from")
    rng = np.random.default_rng([int(seed), 0x6E4])  # own stream: independent of the latent noise
    return np.sort(rng.choice(pool, size=min(k, len(pool)), replace=False))


# --- generating ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Generation:
    """Generated images and where each came from."""

    outputs: torch.Tensor  # (n, C, H, W) decoder values (softmax probabilities for a softmax model)
    sources: np.ndarray  # (n,) index into the data set of each output's source image
    latents: torch.Tensor  # (n, L, h, w) the noised codes that were decoded, for the latent map

    def by_source(self) -> list[tuple[int, list[int]]]:
        """(source index, output indices) per distinct source, in order of first appearance."""
        rows: dict[int, list[int]] = {}
        for j, s in enumerate(self.sources.tolist()):
            rows.setdefault(s, []).append(j)
        return list(rows.items())


def _as_batch(images, idx: np.ndarray, device) -> torch.Tensor:
    """Rows ``idx`` of a uint8 cache (N, H, W, C) or a float tensor (N, C, H, W), as (k, C, H, W)."""
    if isinstance(images, torch.Tensor):
        return images[torch.as_tensor(idx, dtype=torch.long)].float().to(device)
    a = np.asarray(images)
    if a.dtype != np.uint8 or a.ndim != 4:
        raise ValueError(f"images: expected uint8 (N, H, W, C) or a float (N, C, H, W) tensor, got {a.dtype} {a.shape}")
    return to_tensor(a[idx], device)


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**63:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    return int(seed)


def _check_count(n: int, what: str = "n") -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= MAX_SAMPLES:
        raise ValueError(f"{what} must be an integer in [1, {MAX_SAMPLES}], got {n!r}")
    return int(n)


def generate(model: AutoEncoder, images, sigma: float, n: int, seed: int,
             labels: Optional[Sequence[str]] = None, class_filter: Optional[str] = None,
             n_sources: Optional[int] = None) -> Generation:
    """``n`` new images: latents of source images plus N(0, sigma^2) noise, decoded.

    ``images`` is the uint8 cache (N, H, W, C) of an ImageSet (or a float (N, C, H, W) tensor).
    Sources are ``n_sources`` images (default: up to ``n``, all different) of class
    ``class_filter`` (all images when None), picked with ``seed``; outputs cycle through them,
    output j coming from source j % k. Same arguments, same images.
    """
    n, seed = _check_count(n), _check_seed(seed)
    if not isinstance(sigma, (int, float)) or not math.isfinite(sigma) or sigma < 0:
        raise ValueError(f"sigma must be a finite number >= 0, got {sigma!r}")
    pool = class_pool(labels, len(images), class_filter)
    chosen = pick_sources(pool, n if n_sources is None else _check_count(n_sources, "n_sources"), seed)
    x = _as_batch(images, chosen, model_device(model))  # (k, C, H, W)
    z = noised_latents(model, x, float(sigma), n, seed)  # (n, L, h, w), output j from x[j % k]
    return Generation(decode(model, z), chosen[np.arange(n) % len(chosen)], z)


def training_stats(model: AutoEncoder, images, max_images: int = STATS_MAX_IMAGES,
                   per_position: bool = False) -> LatentStats:
    """Latent mean/std (per channel, or per position) over up to ``max_images`` evenly spaced images."""
    n = len(images)
    if n == 0:
        raise ValueError("images: none given to fit latent statistics on")
    idx = np.unique(np.linspace(0, n - 1, min(n, max_images)).round().astype(int))
    return stats_of(encode_images(model, images, idx).double(), per_position)


def encode_images(model: AutoEncoder, images, idx: Sequence[int]) -> torch.Tensor:
    """Latent codes (k, L, h, w) of images ``idx``, on the CPU. Encoded in chunks: that bounds the
    encoder's activation memory, which for large images dwarfs the latents."""
    idx, dev = np.asarray(idx, dtype=int), model_device(model)
    if not len(idx):
        raise ValueError("images: none given to encode")
    return torch.cat([encode(model, _as_batch(images, idx[s:s + _ENCODE_BATCH], dev)).cpu()
                      for s in range(0, len(idx), _ENCODE_BATCH)])


def sigma_scale(model: AutoEncoder, images, max_images: int = 64) -> tuple[float, float]:
    """(suggested σ, largest σ worth offering) for noised latents, from the latent spread of ``images``.

    Latent codes of different models spread over anything from 0.001 to 10, so no fixed σ range
    serves them all: the suggestion is half the median channel std, the largest four times it,
    both rounded up to a 1-2-5 step. A model whose latents do not vary gets (0.5, 3.0).
    """
    spread = float(np.median(training_stats(model, images, max_images).std))
    if not math.isfinite(spread) or spread <= 0:
        return 0.5, 3.0

    def up125(x: float) -> float:
        e = 10.0 ** math.floor(math.log10(x))
        return next(m * e for m in (1, 2, 5, 10) if m * e >= x * (1 - 1e-9))

    return up125(spread / 2), up125(4 * spread)


def command_line(run_dir: Union[str, Path], n: int, sources: int, sigma: float, seed: int,
                 class_filter: Optional[str] = None, data: Union[str, Path, None] = None, split: str = "train",
                 random: bool = False, per_position: bool = False, npz: bool = False, out: str = "OUT") -> str:
    """The `udd generate` call that writes the images of the Generate page's choices: ``sources`` source
    images, ``n`` outputs in all, at ``sigma`` (exactly: its repr) and ``seed``; or with ``random`` the ``n``
    random latents (``per_position`` statistics). ``data`` (absolute, so the line runs from any folder) and
    ``split`` only where they differ from the run's training data and the train split; ``npz``: the wafer
    maps' .npz too; ``out``: the placeholder of the output folder (and of the .npz's name)."""
    words = ["udd", "generate", str(run_dir), "-n", str(n)]
    if random:
        words += ["--random"] + (["--per-position"] if per_position else [])
    else:
        words += ["--sources", str(sources), "--sigma", repr(float(sigma))]
    words += ["--seed", str(seed)]
    if class_filter is not None and not random:
        words += ["--class", str(class_filter)]
    if data is not None and not same_data(data, runs.run_source(run_dir).get("path")):
        words += ["--data", str(resolved(data))]
    if split != "train":
        words += ["--split", split]
    words += ["--out", out] + (["--npz", f"{out}.npz"] if npz and not random else [])
    return shlex.join(words)


def images_trained_on(ds: ImageSet, train_on: str = "normal") -> np.ndarray:
    """The images of ``ds`` that a run with setting ``train_on`` learns from (`training_images`), or all
    of them when the data holds none (another data set than the run's): where the latent statistics of
    random latents and of the default σ come from. (N, H, W, C) uint8."""
    try:
        images, _ = training_images(ds, train_on)
    except ValueError:
        return ds.images
    return images if len(images) else ds.images


def default_sigma_scale(model: AutoEncoder, ds: ImageSet, train_on: str = "normal") -> tuple[float, float]:
    """(default σ, largest σ worth offering) of the Generate page and `udd generate` without --sigma:
    `sigma_scale` over the images the run trained on (`images_trained_on`)."""
    return sigma_scale(model, images_trained_on(ds, train_on))


def latent_hw(model: AutoEncoder) -> tuple[int, int]:
    """(h, w) of the model's latent at its input size, from one encoded blank image."""
    if model.input_shape is None:
        raise ValueError("model: input size unknown; load it with load_generator(path, size)")
    z = encode(model, torch.zeros((1, *model.input_shape), device=model_device(model)))  # (1, L, h, w)
    return int(z.shape[2]), int(z.shape[3])


def random_codes(model: AutoEncoder, stats: LatentStats, n: int, seed: int) -> torch.Tensor:
    """``n`` latent codes (n, L, h, w) drawn from ``stats`` (see ``training_stats``): what `generate_random` decodes."""
    return random_latents(stats, _check_count(n), _check_seed(seed), latent_hw(model))


def generate_random(model: AutoEncoder, stats: LatentStats, n: int, seed: int) -> torch.Tensor:
    """``n`` images (n, C, H, W) decoded from latents drawn from ``stats`` (see ``training_stats``)."""
    return decode(model, random_codes(model, stats, n, seed))


def interpolation(model: AutoEncoder, images, i: int, j: int, steps: int) -> torch.Tensor:
    """``steps`` images (steps, C, H, W) blending image ``i`` into image ``j`` in latent space."""
    for name, k in (("first image", i), ("second image", j)):
        if not 0 <= int(k) < len(images):
            raise ValueError(f"{name}: index {k} out of range (0..{len(images) - 1})")
    x = _as_batch(images, np.array([int(i), int(j)]), model_device(model))  # (2, C, H, W)
    return interpolate(model, x[0:1], x[1:2], int(steps))


def reconstruct(model: AutoEncoder, images, idx: Sequence[int]) -> torch.Tensor:
    """Plain reconstructions (k, C, H, W) of images ``idx``: what sigma = 0 gives."""
    x = _as_batch(images, np.asarray(idx, dtype=int), model_device(model))  # (k, C, H, W)
    return decode(model, encode(model, x))


def random_latents_caption(per_position: bool, train_on: str) -> str:
    """What random latents are drawn from, for a run that trained on `train_on` (settings.train_on)."""
    over = {"normal": "the normal images", "all": "every image (the run trained on all)"}.get(
        train_on, f"the images of the classes {train_on} (those it trained on)")
    if per_position:
        return (f"Every latent position is drawn on its own from its position's mean and std over {over}: "
                "their shared layout is kept, the correlation between neighbours is not.")
    return (f"Every latent position is drawn on its own from its channel's mean and std over {over}: the layout "
            "that positions share (a wafer's outline) is not kept, so shapes come out rough. Per-position "
            "statistics keep it.")
