"""Detection methods behind one interface (`base.Detector`); see base.py.

A new method is one module here and one line in `_REGISTRY`. Modules load lazily, so listing the
methods (the CLI's --help, the Train page) imports no torch model code.
"""
from __future__ import annotations

from importlib import import_module
from pathlib import Path
from typing import Union

from .base import METHOD_FILE, Detector, MapOutput

# method name -> "module:Class" in this package
_REGISTRY = {
    "autoencoder": "autoencoder:AutoencoderDetector",
    "feature-ae": "feature_ae:FeatureAEDetector",
}
METHODS = tuple(_REGISTRY)


def detector_class(method: str) -> type[Detector]:
    """The Detector subclass registered as `method`; ValueError naming the choices otherwise."""
    if method not in _REGISTRY:
        raise ValueError(f"method: must be one of {', '.join(METHODS)}, got {method!r}")
    module, cls = _REGISTRY[method].split(":")
    return getattr(import_module(f".{module}", __name__), cls)


def run_method(run_dir: Union[str, Path]) -> str:
    """The method a run/model folder holds: method.json's "method", else "autoencoder" (older runs, reference folders)."""
    from ..runs import read_json

    info = read_json(Path(run_dir) / METHOD_FILE, None)
    if info is None:
        return "autoencoder"
    if not isinstance(info, dict) or not isinstance(info.get("method"), str):
        raise ValueError(f"{Path(run_dir) / METHOD_FILE}: not a method file (needs a \"method\" name)")
    return info["method"]


def load_detector(run_dir: Union[str, Path], device: str = "cpu") -> Detector:
    """Load whatever detector `run_dir` holds."""
    return detector_class(run_method(run_dir)).load(run_dir, device=device)


__all__ = ["METHODS", "METHOD_FILE", "Detector", "MapOutput", "detector_class", "load_detector", "run_method"]
