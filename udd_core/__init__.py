"""udd_core: the headless engine of udd (config, shapes, model, data, training, scoring, latent tools).

It never imports streamlit; the app's pages and the `udd` command line are thin layers on top.
"""
from .config import AEConfig, ConfigError, load_config, parse_config
from .model import AutoEncoder, ModelFileError, build_model, load_model, save_model
from .shapes import ShapeError, ShapeReport, propagate

__version__ = "0.1.0"

__all__ = [
    "AEConfig", "AutoEncoder", "ConfigError", "ModelFileError", "ShapeError", "ShapeReport",
    "build_model", "load_config", "load_model", "parse_config", "propagate", "save_model",
]
