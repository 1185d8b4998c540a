"""Detection methods behind one interface (`base.Detector`); see base.py.

A new method is one module here and one line in `_REGISTRY`. Modules load lazily, so listing the
methods (the CLI's --help, the Train page) imports no torch model code.
"""
from __future__ import annotations

from importlib import import_module
from pathlib import Path
from typing import Any, Optional, Union

from ..runs import TRAIN_FILE
from .base import (METHOD_FILE, Detector, MapOutput, a_method, defaults_from, scoring_defaults, scoring_record,
                   scoring_with)

# method name -> "module:Class" in this package
_REGISTRY = {
    "autoencoder": "autoencoder:AutoencoderDetector",
    "memory-bank": "memory_bank:MemoryBankDetector",
    "feature-ae": "feature_ae:FeatureAEDetector",
    "dsvdd": "dsvdd:DeepSVDDDetector",
    "latent-knn": "latent_knn:LatentKnnDetector",
}
METHODS = tuple(_REGISTRY)
_LOCAL = frozenset(v.split(":")[0] for v in _REGISTRY.values())  # modules of this package


def detector_class(method: str) -> type[Detector]:
    """The Detector subclass registered as `method`; ValueError naming the choices otherwise."""
    if method not in _REGISTRY:
        raise ValueError(f"method: must be one of {', '.join(METHODS)}, got {method!r}")
    module, cls = _REGISTRY[method].split(":")
    # A bare name is a module of this package; a method defined elsewhere (a plugin, a test) is importable by its name.
    here = module in _LOCAL
    return getattr(import_module(f".{module}" if here else module, __name__ if here else None), cls)


def fitted_in_one_pass(method: str) -> bool:
    """True for a registered method without training epochs (the memory bank); False for the others
    and for a name this udd does not know (its folder is shown as it is)."""
    try:
        return not detector_class(method).trains_epochs
    except ValueError:
        return False


WAFER_FEATURES = "mean little on one-hot wafer maps"  # the words of `wafer_features_note`, which Compare looks for


def wafer_features_note(method: Detector, residual: Optional[str] = None) -> Optional[str]:
    """A caution for wafer maps scored through an ImageNet backbone (a `method`'s own maps, or an autoencoder's
    feature `residual`), which sees no such thing in one-hot die maps; None otherwise. QA sweep 19a: a memory
    bank's heatmaps on wafer maps missed the patterns at image AUROC 0.89, unsaid, where the feature AE's note
    pointed to residuals it refuses."""
    from ..notices import Caution

    if method.imagenet_features:
        return Caution(f"{method.method} compares an ImageNet backbone's features, which {WAFER_FEATURES}: its "
                       "heatmaps may miss the pattern, whatever its AUROC; a pixel autoencoder (the wafer-26 model) "
                       "measures the dies themselves")
    if residual == "feature":
        return Caution(f"the feature residual compares an ImageNet backbone's features, which {WAFER_FEATURES}: l2 or "
                       "l1 measure the dies themselves")
    return None


def epoch_loops(run_dir: Union[str, Path]) -> list[tuple[str, list[dict]]]:
    """`Detector.epoch_loops` of the run's method: (caption, records) per epoch loop; the history alone for a
    method this udd does not know."""
    from ..runs import read_history

    try:
        return detector_class(run_method(run_dir)).epoch_loops(run_dir)
    except ValueError:  # an unknown method or a damaged method.json: its training loop's history is all there is
        return [("", read_history(run_dir))]


def parse_options(text: str, method: str) -> dict:
    """Method options typed as a JSON object (blank: {}); ValueError "method options: ..." otherwise."""
    import json

    if not text.strip():
        return {}
    try:
        options = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"method options: not JSON ({e.msg} at character {e.pos})") from None
    except RecursionError:  # QA sweep 15: a traceback, where a config says "nested too deeply"
        raise ValueError("method options: nested too deeply") from None
    if not isinstance(options, dict):
        raise ValueError("method options: give a JSON object, e.g. " + detector_class(method).option_example)
    return options


def check_choice(method: str, input_shape: tuple[int, int, int], options: Optional[dict] = None,
                 config: Any = None, seed: int = 0) -> int:
    """Refuse, before any data loads, what `method` cannot build for images of `input_shape` (C, H, W):
    a bad option, size or config, as a ValueError naming it. Returns the feature bytes a fit keeps
    per image (`Detector.feature_bytes_per_image`), for the memory estimate."""
    cls, shape, opts = detector_class(method), tuple(input_shape), dict(options or {}) or None
    cls.build(shape, opts, config, seed).check_input(shape)
    return cls.feature_bytes_per_image(shape, opts, config)


def choice_message(error: ValueError, options: dict) -> str:
    """A refusal of `parse_options` or `check_choice` as one line for a form: "method options: ..." when it
    names an option the user gave, else "model: ..." (the config, its fit to the size, the channels)."""
    text = str(error)
    field = text.partition(": ")[0]
    if text.startswith("method options: ") or field.startswith("size "):  # already named (the input size)
        return text
    if field in options:
        return f"method options: {text}"
    # A padding is a design field a training form has no box for: say where it is set.
    fix = (" Another Height/Width may fit; or set the size on the **Design** page, where one click applies "
           "the paddings." if getattr(error, "suggested", None) is not None else "")
    if fix and not text.rstrip().endswith((".", ")")):  # "... set latent_opad = [0, 0]" then a new sentence
        text = text.rstrip() + "."
    return f"model: {text}{fix}"


def run_method(run_dir: Union[str, Path]) -> str:
    """The method a run/model folder holds: method.json's "method", else "autoencoder" (older runs, reference folders)."""
    from ..runs import read_json

    path = Path(run_dir) / METHOD_FILE
    info = read_json(path, None)
    if info is None and not path.is_file():
        return "autoencoder"
    if info is None:  # QA sweep 15: a cut method.json read as an autoencoder's, whatever the run's method
        raise ValueError(f"{path}: not a readable JSON object (damaged): the run's method is unknown")
    if not isinstance(info, dict) or not isinstance(info.get("method"), str):
        raise ValueError(f"{Path(run_dir) / METHOD_FILE}: not a method file (needs a \"method\" name)")
    return info["method"]


def run_spec(run_dir: Union[str, Path]) -> dict:
    """What a run's describe() says (its METHOD_FILE; a pixel AE's scoring defaults from its training loss);
    no weights read."""
    return detector_class(run_method(run_dir)).saved_spec(run_dir)


def spec_options(spec: dict) -> dict:
    """The method's own parameters in a `run_spec`: without its name, its shapes and what its fit measured
    (the fit record, the normal images' score statistics), which differ between any two runs."""
    return {k: v for k, v in spec.items()
            if k not in ("method", "input_shape", "image_shape", "feature_shape", "fit", "score_stats")}


def run_scoring_defaults(run_dir: Union[str, Path]) -> dict:
    """A run's default post-processing (residual, score, smooth_sigma, topk_percent) without loading it."""
    spec = run_spec(run_dir)
    return defaults_from(spec, detector_class(spec["method"]).residuals)


def has_detector(run_dir: Union[str, Path]) -> bool:
    """True when `run_dir` holds a saved detector of a known method (what Inspect and Compare can open)."""
    try:
        return detector_class(run_method(run_dir)).is_saved(run_dir)
    except ValueError:
        return False


def load_detector(run_dir: Union[str, Path], device: str = "cpu") -> Detector:
    """Load whatever detector `run_dir` holds; a run folder that has saved none yet is refused in those words
    (not as "not a model folder": its method.json or train.json is there; QA sweep 21: a run killed seconds
    in held only config.json, status.json and train.json)."""
    cls = detector_class(run_method(run_dir))
    try:
        return cls.load(run_dir, device=device)
    except (ValueError, OSError) as e:  # a method's own loader names the missing file
        run_files = (Path(run_dir) / name for name in (METHOD_FILE, TRAIN_FILE))
        if any(p.is_file() for p in run_files) and not cls.is_saved(run_dir):
            from ..run_status import read_status

            if read_status(run_dir)["status"] == "finished":  # QA sweep 22: "no saved model yet" of a finished run
                raise ValueError(f"{run_dir}: its saved model files are missing, removed after the run finished "
                                 f"({e}); train a new run") from None
            raise ValueError(f"{run_dir}: no saved model yet: the run stopped, or is still running, before its first "
                             f"save ({e})") from None
        raise


__all__ = ["METHODS", "METHOD_FILE", "Detector", "MapOutput", "a_method", "check_choice", "choice_message",
           "detector_class", "fitted_in_one_pass", "has_detector", "load_detector", "parse_options", "run_method",
           "run_scoring_defaults", "run_spec", "scoring_defaults", "scoring_with", "spec_options"]
