"""A tiny second detection method for the consumer tests: the squared distance to the mean normal image.

It has no autoencoder, no reconstruction and no decoder, so every consumer (TrainJob, udd train /
score / generate, Inspect, reports) is exercised on a method that is not the pixel AE, without the
cost of a pretrained backbone. Registered by the tests with `register(monkeypatch)`.
"""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from udd_core import runs
from udd_core import run_status
from udd_core.data import to_tensor
from udd_core.methods import METHOD_FILE, Detector, MapOutput

NAME = "toy-mean"


class MeanMap(nn.Module):
    """x (B, C, H, W) -> (B, H, W): squared distance to the mean normal image, channel mean."""

    def __init__(self, mean: torch.Tensor):
        super().__init__()
        self.register_buffer("mean", mean)  # (C, H, W)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ((x - self.mean) ** 2).mean(dim=1)


class ToyMeanDetector(Detector):
    method = NAME
    residuals = ("sq",)
    trains_epochs = False  # one pass: the per-pixel mean of the training images

    def __init__(self, input_shape, options=None):
        self.input_shape = tuple(input_shape)
        self.options = dict(options or {})
        self.mean = torch.zeros(self.input_shape)

    @classmethod
    def build(cls, input_shape, options=None, config=None, seed=0):
        if config is not None:
            raise ValueError("config: the toy method takes none")
        for key in options or {}:
            if key != "smooth":
                raise ValueError(f"{key}: not a {NAME} option")
        return cls(input_shape, options)

    def anomaly_maps(self, x, residual=None):
        return MapOutput(maps=MeanMap(self.mean)(x))

    def map_module(self, residual=None):
        return MeanMap(self.mean).eval()

    def fit(self, train_images, val_images, settings, run_dir, *, stop_event=None, board=None, resume=False):
        self.mean = to_tensor(train_images).mean(dim=0)  # (C, H, W)
        self.save(run_dir)
        run_status.write_status(run_dir, "finished", "fitted", epoch=0, epochs=0)
        if board is not None:
            board.update(status="finished", message="fitted")
        return "finished"

    def describe(self):
        return {"method": NAME, "input_shape": list(self.input_shape), "score": "max",
                "smooth_sigma": float(self.options.get("smooth", 1.0))}

    def save(self, run_dir):
        save_file({"mean": self.mean.contiguous()}, str(Path(run_dir) / "toy.safetensors"))
        runs.write_json_atomic(Path(run_dir) / METHOD_FILE, self.describe())

    @classmethod
    def load(cls, run_dir, device="cpu"):
        info = runs.read_json(Path(run_dir) / METHOD_FILE)
        det = cls(info["input_shape"], {"smooth": info["smooth_sigma"]})
        det.mean = load_file(str(Path(run_dir) / "toy.safetensors"))["mean"]
        return det

    def to(self, device):
        self.mean = self.mean.to(device)
        return self


def register(monkeypatch) -> None:
    """Make `--method toy-mean` known for one test."""
    from udd_core import methods

    monkeypatch.setitem(methods._REGISTRY, NAME, "toy_detector:ToyMeanDetector")
