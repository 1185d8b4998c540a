"""The detector interface: what every detection method gives the rest of udd.

A *detector* fits on normal images, turns images into anomaly maps at the input resolution, and
saves itself into a run folder (safetensors and JSON, never pickle). Everything downstream -
calibration, thresholds, heatmap scales, `udd score`, Inspect, reports, Compare, ONNX export -
talks to this interface only, so a new method is one new module in this package plus one line in
its registry (`methods/__init__.py`).

Image scores are, by default, the reduction of the (optionally smoothed) map that
`scoring.image_scores` computes (mean, max or top-k), the same for every method, times the
`MapOutput.score_factor` a method may give (the feature AE's latent novelty); a method that gives one
lets its `map_module` have `parts(x) -> (maps, factor)` for the ONNX export. A method whose
score is not a map reduction (Deep SVDD's distance to a centre) sets `own_scores` and implements
`image_scores`; the map then only shows where to look.

`describe()` may carry the method's scoring defaults under the keys "residual", "smooth_sigma",
"score" and "topk_percent"; `udd score`, Inspect and the ONNX export use them when the user sets none.
"""
from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Optional, Union

import numpy as np
import torch
from torch import nn

from ..residuals import RESIDUAL_MEANING

METHOD_FILE = "method.json"  # in a run folder: {"method": NAME, ...the method's own parameters}


@dataclass(frozen=True)
class MapOutput:
    """What a detector gives back for a batch of images."""

    maps: torch.Tensor  # (B, H, W) float32 anomaly map at the input resolution, before any smoothing
    recon: Optional[torch.Tensor] = None  # (B, C, H, W) pixel reconstruction on the input's scale, or None
    score_factor: Optional[torch.Tensor] = None  # (B,) multiplies the map's reduction into the image score, or None


class Detector(ABC):
    """One detection method. Subclasses set the class attributes and implement the abstract methods."""

    method: ClassVar[str]  # registry name, e.g. "autoencoder", "memory-bank"; written to method.json
    residuals: ClassVar[tuple[str, ...]]  # the map kinds `anomaly_maps` accepts; the first is the default
    generates: ClassVar[bool] = False  # True when noised latent codes decode to images (Generate page)
    own_scores: ClassVar[bool] = False  # True when image scores come from `image_scores`, not the map
    trains_epochs: ClassVar[bool] = True  # False when fitted in one pass (no epochs, loss curves or training loop)
    resumable: ClassVar[bool] = False  # True when `fit(..., resume=True)` continues a stopped fit
    uses_config: ClassVar[bool] = False  # True when `build` needs an autoencoder config (AEConfig)
    imagenet_features: ClassVar[bool] = False  # True when its maps come from an ImageNet backbone's features
    summary: ClassVar[str] = ""  # a few words for the Train page's method choice
    option_example: ClassVar[str] = "{}"  # its options as JSON, the Train page's placeholder
    probe_label: ClassVar[str] = "reconstruction"  # what its training probes show under each input
    paints_noise: ClassVar[bool] = True  # False when denoising patches cannot be painted on what it trains on
    preferred_side: ClassVar[Optional[int]] = None  # the input side its defaults were tuned at, when it has one

    input_shape: tuple[int, int, int]  # (C, H, W) of the images it takes

    @classmethod
    @abstractmethod
    def build(cls, input_shape: tuple[int, int, int], options: Optional[dict] = None, config: Any = None,
              seed: int = 0) -> "Detector":
        """An unfitted detector for images of `input_shape` (C, H, W).

        `options` are the method's own settings by name (e.g. {"coreset": 0.1, "k": 1}; missing
        ones take defaults); `config` is an `AEConfig` for the methods built on an autoencoder.
        A bad value is a ValueError that names the option, e.g. "coreset: must be in (0, 1], got 2".
        """

    @classmethod
    def feature_bytes_per_image(cls, input_shape: tuple[int, int, int], options: Optional[dict] = None,
                                config: Any = None) -> int:
        """Bytes of what a fit computes once per image and keeps (backbone features); 0 when nothing.

        The Train page adds it to the images' own memory estimate. A bad option is a ValueError.
        """
        return 0

    @classmethod
    def preferred_preset(cls, config: Any) -> Optional[str]:
        """The model preset to switch to when `config` (an AEConfig, or None) cannot serve this method; None: keep it.

        The Train page asks when the method changes, so that it never opens on a config the method refuses.
        """
        return None

    def check_input(self, shape: tuple[int, int, int]) -> None:
        """Raise a one-line ValueError when images of `shape` (C, H, W) cannot be scored."""
        if shape[0] != self.input_shape[0]:
            raise ValueError(f"channels: the {self.method} run takes {self.input_shape[0]}, got {shape[0]}")

    @abstractmethod
    def anomaly_maps(self, x: torch.Tensor, residual: Optional[str] = None) -> MapOutput:
        """Maps of a batch (B, C, H, W), float32 in [0, 1] on the detector's device; no grad needed.

        `residual` is one of `residuals` (None: the first). Called under `torch.inference_mode()`.
        """

    @abstractmethod
    def map_module(self, residual: Optional[str] = None) -> nn.Module:
        """A self-contained `nn.Module` (B, C, H, W) in [0, 1] -> (B, H, W) maps, equal to `anomaly_maps`.

        Used for ONNX export: it must be traceable (no Python data-dependent control flow, no numpy).
        """

    def map_meaning(self, residual: str) -> str:
        """What one value of the `residual` map measures: the unit of its heatmap and of scores reduced from it."""
        return RESIDUAL_MEANING.get(residual, f"the {residual} residual")

    def image_scores(self, x: torch.Tensor) -> torch.Tensor:
        """(B,) image scores of a batch (B, C, H, W), for methods with `own_scores`; traceable for export."""
        raise NotImplementedError(f"{self.method}: scores are a reduction of its anomaly map")

    @abstractmethod
    def fit(self, train_images: np.ndarray, val_images: Optional[np.ndarray], settings: Any,
            run_dir: Union[str, Path], *, stop_event: Optional[threading.Event] = None,
            board: Any = None, resume: bool = False) -> str:
        """Fit on normal uint8 images (N, H, W, C), writing into `run_dir` as it goes.

        Reports progress on `board` (a `progress.ProgressBoard`: status, message, step /
        steps_per_epoch, epoch / epochs), checks `stop_event` often, writes status.json, and leaves
        a loadable detector in `run_dir` when it returns. Returns "finished" or "stopped".
        """

    @classmethod
    def settings_caution(cls, settings: dict) -> Optional[str]:
        """A caution (`notices.Caution`), before Start, on training settings (`TrainSettings.to_dict()` keys)
        that this method is known to fail with; None when they are fine (the default)."""
        return None

    @classmethod
    def later_epochs(cls, run_dir: Union[str, Path]) -> list[tuple[str, int]]:
        """(phase name, epochs done) of each epoch loop after the training loop's (`epoch_loops`[1:]), read without
        the training history: what a run picker adds to its label on every rerun. None by default."""
        return []

    @classmethod
    def epoch_loops(cls, run_dir: Union[str, Path]) -> list[tuple[str, list[dict]]]:
        """(caption, per-epoch records) of each epoch loop a fit of this method runs, in order; where there are
        several, the caption says what each loop's loss measures."""
        from ..runs import read_history

        return [("", read_history(run_dir))]

    @classmethod
    def resume_phase(cls, run_dir: Union[str, Path], epochs: int, options: dict) -> "ResumePhase":
        """The epoch loop that resuming the run in `run_dir` continues (the training settings ask for `epochs`,
        the method options are `options`): the training loop's, unless a method has a later one under way."""
        from ..runs import read_history

        return ResumePhase(len(read_history(run_dir)), epochs)

    def write_spec(self, run_dir: Union[str, Path]) -> None:
        """Write what defines the detector before it is fitted (METHOD_FILE), so a half-fitted run is readable."""
        from ..runs import write_json_atomic

        write_json_atomic(Path(run_dir) / METHOD_FILE, self.describe())

    @abstractmethod
    def save(self, run_dir: Union[str, Path]) -> None:
        """Write the detector (METHOD_FILE, weights as safetensors) into `run_dir`, each file atomically."""

    @classmethod
    def is_saved(cls, run_dir: Union[str, Path]) -> bool:
        """True when `run_dir` holds this method's saved files (cheap: no weights are read)."""
        p = Path(run_dir)
        return (p / METHOD_FILE).is_file() and any(p.glob("*.safetensors"))

    @classmethod
    @abstractmethod
    def load(cls, run_dir: Union[str, Path], device: str = "cpu") -> "Detector":
        """Rebuild the detector saved in `run_dir` (refusing, in one line, what does not fit)."""

    @abstractmethod
    def to(self, device: Union[str, torch.device]) -> "Detector":
        """Move to `device`; returns self."""

    def describe(self) -> dict[str, Any]:
        """The method's parameters, as written to METHOD_FILE (shown on Inspect and Compare)."""
        return {"method": self.method}

    @property
    def scoring_note(self) -> Optional[str]:
        """Why the detector's scoring defaults (in `describe`) are what they are, said wherever it scores with
        them; None when they need no word (the default)."""
        return None

    @classmethod
    def saved_spec(cls, run_dir: Union[str, Path]) -> dict[str, Any]:
        """What a saved run's describe() says, read without loading its weights: its METHOD_FILE."""
        from ..runs import read_json

        info = read_json(Path(run_dir) / METHOD_FILE, None)
        return {**(info if isinstance(info, dict) else {}), "method": cls.method}


@dataclass(frozen=True)
class ResumePhase:
    """The epoch loop a resume continues: its epochs done and planned, and where a new total goes."""

    done: int  # epochs of this loop in the run's files
    total: int  # the epochs planned for it
    unit: str = "epoch"  # how messages count them: "epoch", "Deep SVDD epoch"
    option: Optional[str] = None  # the method option that holds its total; None: the training settings' epochs


def a_method(method: str) -> str:
    """The method's name with its article, for messages: "an autoencoder", "a memory-bank"."""
    return ("an " if method[:1] in "aeiou" else "a ") + method


def scoring_defaults(detector: Detector) -> dict[str, Any]:
    """The post-processing a detector is scored with when the user sets none; see `defaults_from`."""
    return defaults_from(detector.describe(), detector.residuals)


def scoring_with(detector: Detector, **given: Any) -> dict[str, Any]:
    """`scoring_defaults` with the values given (not None) over them: residual, score, smooth_sigma,
    topk_percent, border. A residual the method does not have is a one-line ValueError."""
    post = {**scoring_defaults(detector), **{k: v for k, v in given.items() if v is not None}}
    if post["residual"] not in detector.residuals:
        raise ValueError(f"residual: must be one of {', '.join(detector.residuals)} for "
                         f"{a_method(detector.method)} run, got {post['residual']!r}")
    return post


def scoring_record(detector: Detector, post: dict[str, Any]) -> dict[str, Any]:
    """The post-processing `post` as outputs record it (udd score --json, the report, the ONNX JSON). For a
    method with its own image score (`own_scores`), that score in words replaces the map reduction, top-k
    share and border, which it does not use: a reader would take them for how the score is made."""
    if not detector.own_scores:  # a score with a factor (a feature AE's latent novelty) says so in words
        words = detector.describe().get("image_score")
        return dict(post) | ({"image_score": words} if words else {})
    own = detector.describe().get("image_score") or f"the {detector.method} method's own"
    return {**{k: v for k, v in post.items() if k not in ("score", "topk_percent", "border")},
            "score": f"{own} (not from the map)"}


def defaults_from(info: dict, residuals: tuple[str, ...]) -> dict[str, Any]:
    """Scoring defaults from a describe() dict (or METHOD_FILE): its own, else the first residual, the
    mean score, no smoothing, top 1% and no border left out."""
    return {"residual": info.get("residual") or residuals[0], "score": info.get("score") or "mean",
            "smooth_sigma": float(info.get("smooth_sigma") or 0.0),
            "topk_percent": float(info.get("topk_percent") or 1.0), "border": int(info.get("border") or 0)}
