"""Training settings: one frozen dataclass saved in train.json, its presets, and the device choice."""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Mapping, Optional

import torch

from .losses import LOSSES

DEVICES = ("auto", "cpu", "cuda", "mps")
TRAIN_ON_WORDS = ("normal", "all")  # besides these, train_on is a comma-separated list of class labels


def train_on_classes(train_on: str) -> Optional[tuple[str, ...]]:
    """The class labels a `train_on` value names, in order; None for "normal" or "all".

    "normal": the defect-free images only (detection); "all": every image, defects included
    (generation); "Center,Donut": the images of those classes only. Raises ValueError naming train_on.
    """
    if not isinstance(train_on, str) or not train_on.strip():
        raise ValueError(f"train_on: expected 'normal', 'all' or class names separated by commas, got {train_on!r}")
    if train_on.strip() in TRAIN_ON_WORDS:
        return None
    names = [p.strip() for p in train_on.split(",")]
    if any(not p for p in names):
        raise ValueError(f"train_on: an empty class name in {train_on!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"train_on: a class is named twice in {train_on!r}")
    return tuple(names)

@dataclass(frozen=True)
class TrainSettings:
    """Everything that shapes a training run; saved in train.json."""

    epochs: int = 50  # passes over the training images
    batch_size: int = 16  # images per optimiser step
    lr: float = 1e-3  # Adam learning rate
    betas: tuple[float, float] = (0.5, 0.999)  # Adam betas; the reference package's defaults
    weight_decay: float = 0.0  # Adam L2 weight decay
    lr_step: Optional[int] = None  # StepLR period in epochs; None keeps the learning rate constant
    lr_gamma: float = 0.5  # StepLR factor applied every lr_step epochs
    val_split: float = 0.1  # fraction of the (normal) training images held out for validation
    seed: int = 0  # seeds model init, the split, shuffling, noise and dropout: same seed, same losses
    shuffle: bool = True  # reshuffle the training images every epoch; False: the same batches in the same order
    loss: str = "mse"  # "mse", "ssim" or "mse+ssim"
    device: str = "auto"  # "auto" picks cuda, then mps, then cpu; or "cpu", "cuda", "cuda:1", "mps"
    noise_patches: int = 0  # 0: plain AE; >0: patches painted on the input, the clean image is the target
    patch_size: tuple[int, int] = (10, 100)  # min, max patch side in px (clamped to the image)
    patch_dir: Optional[str] = None  # folder of pattern images: their shapes are painted instead of rectangles
    n_probe: int = 4  # fixed validation images whose reconstructions are shown each epoch
    # Measured in bench/RESULTS.md ("Training speed"): inputs are already an NHWC view, so channels_last
    # changes nothing on CPU; compile saves 8-15% per step but costs 40-130 s of compiling on 2 cores.
    channels_last: bool = False  # NHWC weights and activations (can be faster on CPU/GPU convs)
    compile: bool = False  # torch.compile the model (slow first step, needs a C++ compiler on CPU)
    # On by default: used only on native-bf16 hardware and after a float32 parity check on real
    # images (precision.py), re-checked each epoch; validation stays float32. Else float32 + a notice.
    amp_bf16: bool = True  # bfloat16 autocast for the training steps (~1.8x per step on AVX512-BF16 CPUs)
    # What the run learns from: "normal" (defect-free images only: an autoencoder for detection), "all"
    # (defects too: a generator of every pattern) or class labels "Center,Donut". See train_on_classes.
    train_on: str = "normal"

    def __post_init__(self) -> None:
        _validate_settings(self)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TrainSettings":
        """Settings from a dict; missing keys take defaults, unknown keys or bad values raise ValueError."""
        if not isinstance(d, Mapping):
            raise ValueError(f"settings: expected a dict, got {type(d).__name__}")
        names = {f.name for f in fields(cls)}
        unknown = [k for k in d if k not in names]
        if unknown:
            raise ValueError(f"{unknown[0]}: unknown training setting")
        kw = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**kw)

    def replace(self, **changes: Any) -> "TrainSettings":
        """A validated copy with some fields changed."""
        return replace(self, **changes)


# What a method fitted in one pass (no training loop: a memory bank) still uses of the settings; the rest
# (epochs, lr, loss, ...) would do nothing, so train.json leaves them out and the views do not show them.
ONE_PASS_FIELDS = ("val_split", "seed", "device", "train_on")


def applied_settings(settings: Mapping[str, Any], trains_epochs: bool) -> dict[str, Any]:
    """The recorded settings (a `to_dict()`) that a method uses: all of them for a method trained in
    epochs, `ONE_PASS_FIELDS` for one fitted in one pass (older runs recorded all of them)."""
    return dict(settings) if trains_epochs else {k: v for k, v in settings.items() if k in ONE_PASS_FIELDS}


def _validate_settings(s: TrainSettings) -> None:
    def num(name: str, lo: float, hi: float = math.inf, integer: bool = False, lo_open: bool = False) -> None:
        v = getattr(s, name)
        ok_type = isinstance(v, int) if integer else isinstance(v, (int, float))
        if isinstance(v, bool) or not ok_type or not (lo < v if lo_open else lo <= v) or not v <= hi:
            kind = "an integer" if integer else "a number"
            raise ValueError(f"{name}: expected {kind} in {'(' if lo_open else '['}{lo}, {hi}], got {v!r}")

    num("epochs", 1, 1_000_000, integer=True)
    num("batch_size", 1, 1_000_000, integer=True)
    num("lr", 0, 10, lo_open=True)
    num("weight_decay", 0, 1)
    num("lr_gamma", 0, 1, lo_open=True)
    num("val_split", 0, 0.9)
    num("seed", 0, 2**63 - 1, integer=True)
    num("noise_patches", 0, 1000, integer=True)
    num("n_probe", 0, 16, integer=True)
    if s.lr_step is not None:
        num("lr_step", 1, 1_000_000, integer=True)
    for name, lo, hi, integer in (("betas", 0, 0.99999999, False), ("patch_size", 1, 100_000, True)):
        v = getattr(s, name)
        types = int if integer else (int, float)
        if not isinstance(v, tuple) or len(v) != 2 or any(
                isinstance(x, bool) or not isinstance(x, types) or not lo <= x <= hi for x in v):
            kind = "integers" if integer else "numbers"
            raise ValueError(f"{name}: expected a pair of {kind} in [{lo}, {hi}], got {v!r}")
    if s.patch_size[0] > s.patch_size[1]:
        raise ValueError(f"patch_size: min {s.patch_size[0]} is larger than max {s.patch_size[1]}")
    if s.patch_dir is not None and not (isinstance(s.patch_dir, str) and s.patch_dir.strip()):
        raise ValueError(f"patch_dir: expected a folder path, got {s.patch_dir!r}")
    if s.loss not in LOSSES:
        raise ValueError(f"loss: must be one of {LOSSES}, got {s.loss!r}")
    _check_device(s.device)
    train_on_classes(s.train_on)
    for name in ("shuffle", "channels_last", "compile", "amp_bf16"):
        if not isinstance(getattr(s, name), bool):
            raise ValueError(f"{name}: expected true or false, got {getattr(s, name)!r}")


def training_presets() -> dict[str, TrainSettings]:
    """Named starting points, built fresh on each call."""
    return {
        # The reference package's optimiser: Adam(1e-3, betas (0.5, 0.999)), constant rate, MSE.
        "reference": TrainSettings(),
        # Wafer maps: small images, many of them; weight decay and a halving schedule against overfitting.
        "wafer": TrainSettings(epochs=120, batch_size=64, weight_decay=1e-3, lr_step=40, lr_gamma=0.5),
        # Magnetic-tile photos at 96x96 gray (bench/bench_quality.py): a denoising AE (two painted
        # patches per image) with an SSIM loss, insensitive to the photos' brightness differences.
        "magnetic-tile": TrainSettings(epochs=18, batch_size=8, loss="ssim", noise_patches=2, patch_size=(3, 19)),
        # Wafer-map generation (bench/bench_wafer_generation.py): every map, patterns included, with the
        # cross-entropy over the one-hot channels, for a softmax model such as wafer-26-gen. Plain, not
        # class-balanced: balancing moves the argmax threshold down to the failing-die prior, so the random
        # failing dies of real maps come out as a wafer half painted red. Small batches: a few hundred
        # real maps give few steps per epoch.
        "wafer-generation": TrainSettings(epochs=120, batch_size=8, lr_step=40, lr_gamma=0.5, loss="ce",
                                          train_on="all"),
        # The feature autoencoder on magnetic_tile (bench/bench_feature_ae.py, the feature-ae model preset):
        # its 512x8x8 features train at ~1.3 s an epoch on 2 CPU cores, and image AUROC still rose from 24
        # epochs (0.865) to 96 (0.892), which fit in the 180 s budget with the features. Adam with
        # momentum 0.9 and a rate halved twice.
        "feature-ae": TrainSettings(epochs=96, batch_size=32, lr=3e-3, betas=(0.9, 0.999), lr_step=32, lr_gamma=0.5),
    }


# The settings a form carries as they are (betas without a widget of its own: it comes with a preset);
# `form_values` reshapes lr_step, patch_size, patch_dir and train_on.
FORM_FIELDS = ("epochs", "batch_size", "lr", "betas", "weight_decay", "lr_gamma", "val_split", "seed", "loss",
               "device", "noise_patches", "amp_bf16")


@dataclass(frozen=True)
class FormNumber:
    """One number box of the settings form: the form value it edits (`form_values`) and what it offers."""

    key: str  # the form value's key: a TrainSettings field, or lr_step (0 = off), patch_min, patch_max
    label: str  # the box's label on the Train page
    lo: float  # the smallest value offered; a float makes a float box
    hi: float  # the largest value offered
    step: Optional[float] = None  # the +/- step; None: 1 for integers, Streamlit's 0.01 for floats
    help: Optional[str] = None  # the box's tooltip

    @property
    def format(self) -> Optional[str]:
        """"%g" for small float steps (1e-4 would show as 0.00), else Streamlit's own format."""
        return "%g" if self.step is not None and self.step < 0.01 else None


# The settings form's number boxes in page order (rows of three), and those a method fitted in one pass uses.
# A test holds every range to what TrainSettings accepts, so that the form never offers a value it refuses.
FORM_NUMBERS = (
    FormNumber("epochs", "Epochs", 1, 1_000_000),
    FormNumber("batch_size", "Batch size", 1, 4096),
    FormNumber("lr", "Learning rate", 1e-7, 10.0, 1e-4),
    FormNumber("weight_decay", "Weight decay", 0.0, 1.0, 1e-4),
    FormNumber("lr_step", "LR step (0 = off)", 0, 1_000_000,
               help="Epochs between two multiplications of the learning rate by LR gamma; 0: a constant rate."),
    FormNumber("lr_gamma", "LR gamma", 0.01, 1.0, 0.05),
    FormNumber("val_split", "Validation split", 0.0, 0.9, 0.05),
    FormNumber("seed", "Seed", 0, 2**31 - 1),
)
ONE_PASS_NUMBERS = ("val_split", "seed")
NOISE_NUMBERS = (  # only for methods that paint noise on their input images
    FormNumber("noise_patches", "Noise patches", 0, 1000,
               help="0: plain autoencoder; > 0: patches are painted on the input, the target stays clean."),
    FormNumber("patch_min", "Patch size min (px)", 1, 100_000),
    FormNumber("patch_max", "Patch size max (px)", 1, 100_000),
)


def form_values(s: TrainSettings) -> dict[str, Any]:
    """`s` as the flat values of a settings form (the Train page's widgets): the step schedule's "off" as
    0, the patch size as min and max, and train_on as a mode ("normal", "all", "classes") plus class names."""
    chosen = s.train_on not in ("normal", "all")
    return {k: getattr(s, k) for k in FORM_FIELDS} | {
        "lr_step": s.lr_step or 0, "patch_min": s.patch_size[0], "patch_max": s.patch_size[1],
        "patch_dir": s.patch_dir or "", "on_mode": "classes" if chosen else s.train_on,
        "on_classes": s.train_on if chosen else ""}


def settings_from_form(values: Mapping[str, Any]) -> TrainSettings:
    """The TrainSettings of a form's values (`form_values`' inverse); ValueError naming a bad field."""
    v = dict(values)
    mode, classes, lo, hi = v.pop("on_mode"), v.pop("on_classes"), v.pop("patch_min"), v.pop("patch_max")
    return TrainSettings.from_dict(v | {"lr_step": v["lr_step"] or None, "patch_size": (lo, hi),
                                        "patch_dir": str(v["patch_dir"]).strip() or None,
                                        "train_on": chosen_classes(classes) if mode == "classes" else mode})


def chosen_classes(typed: str, picked: bool = False) -> str:
    """The Train page's "Chosen classes" as a `train_on` value, tidied ("center, edge-loc ,loc" is recorded,
    and shown on Inspect, as "center,edge-loc,loc"); a ValueError quoting what was typed. `picked`: the
    classes came from its multiselect (joined with commas), so an empty choice is asked to be picked."""
    if not str(typed).strip():
        raise ValueError("train_on: pick the classes to train on" if picked else
                         "train_on: type the class labels to train on, separated by commas")
    train_on_classes(str(typed))  # an empty or repeated name: refused as typed (" , ,"), not tidied
    return ",".join(c.strip() for c in str(typed).split(","))


def classes_among(train_on: str, known) -> list[str]:
    """The classes of a `train_on` value (a preset's, a resumed run's, what was typed) that are among `known`
    labels, in its order: what the Train page's class picker starts from."""
    return [c for c in (s.strip() for s in str(train_on or "").split(",")) if c in known]


def _check_device(name) -> None:
    if not (isinstance(name, str) and (name in DEVICES or re.fullmatch(r"cuda:\d+", name))):
        raise ValueError(f"device: must be one of {DEVICES} (or cuda:N), got {name!r}")


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda if available, else mps, else cpu; other names are checked for availability."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        return torch.device("mps" if mps is not None and mps.is_available() else "cpu")
    _check_device(name)
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device: {name!r} requested but CUDA is not available")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("device: 'mps' requested but it is not available")
    return torch.device(name)
