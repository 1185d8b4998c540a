"""udd_core: the headless engine of udd (config, shapes, model, data, training, scoring, latent tools).

It never imports streamlit; the app's pages and the `udd` command line are thin layers on top.
"""
from importlib import import_module

from .config import AEConfig, ConfigError, load_config, parse_config
from .shapes import ShapeError, ShapeReport, propagate

__version__ = "0.1.0"

__all__ = [
    "AEConfig", "AutoEncoder", "ConfigError", "ModelFileError", "ShapeError", "ShapeReport",
    "build_model", "load_config", "load_model", "parse_config", "propagate", "save_model",
]

_FROM_MODEL = ("AutoEncoder", "ModelFileError", "build_model", "load_model", "save_model")


def __getattr__(name: str):
    """The model names load torch on first use, so `udd shapes` and `udd --help` start without it."""
    if name in _FROM_MODEL:
        return getattr(import_module(".model", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
