"""From the images a run loads to what its autoencoder takes in: pixels, or backbone features.

`shapes.propagate` is pure AE arithmetic on an input tensor's shape. A feature AE's input is not the
image but the backbone's feature tensor (`feature_input.feature_shape`), and which of the two a run
sees depends on its config's "input" field and on the method. The CLI, the Train, Design and Compare
pages and the feature-AE detector all ask here, so they agree on the images' channels and the AE's
input for the same (config, method, size).
"""
from __future__ import annotations

from dataclasses import replace
from math import prod
from typing import Any, Optional

from .config import parse_config
from .feature_input import FeatureInput, feature_shape
from .shapes import Shape, ShapeError, ShapeReport, propagate

FEATURE_METHODS = ("feature-ae",)  # methods whose AE reconstructs backbone features, not pixels
MAX_SIDE = 16_384  # largest image height or width the app's boxes and the CLI's --size / --input take


def input_spec(config: Any, method: Optional[str] = None) -> Optional[FeatureInput]:
    """What the AE of `config` takes under `method`: a FeatureInput, or None for pixels.

    The config's own "input" field decides; a feature method with a pixel config takes the default
    backbone features (so any config can be tried on features from the command line).
    """
    c = parse_config(config)
    if c.input is not None or method not in FEATURE_METHODS:
        return c.input
    return FeatureInput()


def config_method(config: Any = None) -> str:
    """The detection method that trains `config` when none is chosen: the feature AE for a design on backbone
    features (its "input" field, which every pixel method refuses), else the pixel autoencoder."""
    return FEATURE_METHODS[0] if config is not None and parse_config(config).input is not None else "autoencoder"


def image_channels(config: Any = None, method: Optional[str] = None, preferred: Optional[int] = None) -> int:
    """Channels of the images a run of `config` under `method` loads.

    A pixel AE's are its config's. An AE on backbone features (and a method with no config at all)
    sees images through the RGB backbone: `preferred` when it takes it (gray 1 or RGB 3), else 3.
    The CLI, the Train page and the Design page all ask here, so they load the same images.
    """
    if config is not None and input_spec(config, method) is None:
        return parse_config(config).in_channels
    return preferred if preferred in (1, 3) else 3


def checked_image_shape(config: Any, method: Optional[str], size: tuple[int, int],
                        preferred: Optional[int] = None) -> tuple[int, int, int]:
    """The images' (C, H, W) for `config` under `method` at `size` (H, W) (channels: `image_channels`);
    a ShapeError (a ValueError) with the first shape problem, and the fixed config when paddings fix it,
    when the design does not fit that size. A method with no
    config (the memory bank) has no design to check: its images load as the backbone takes them."""
    shape = (image_channels(config, method, preferred), int(size[0]), int(size[1]))
    if config is not None and not (report := propagate_image(config, shape, method)).ok:
        raise ShapeError(report.problems[0].message, report.suggested)
    return shape


def ae_input_shape(config: Any, image_shape: tuple[int, int, int], method: Optional[str] = None) -> Shape:
    """The AE's input (C, H, W) for images of `image_shape`: the image, or the backbone's feature tensor."""
    spec = input_spec(config, method)
    if spec is not None:
        if len(image_shape) != 3 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in image_shape):
            raise ShapeError(f"input shape: expected three positive integers C,H,W, got {tuple(image_shape)}")
        if image_shape[0] not in (1, 3):
            raise ShapeError(f"input shape: the {spec.backbone} backbone takes gray (1) or RGB (3) images, "
                             f"got {image_shape[0]} channels")
    return feature_shape(spec, tuple(image_shape))


def propagate_image(config: Any, image_shape: tuple[int, int, int], method: Optional[str] = None) -> ShapeReport:
    """`propagate` from what the AE really sees for images of `image_shape` (pixels or features).

    For features, a channel mismatch is a ShapeError whose `suggested` config takes the feature
    channels (the Design page's one-click fix).
    """
    c = parse_config(config)
    inp = ae_input_shape(c, image_shape, method)
    spec = input_spec(c, method)
    if spec is not None and inp[0] != c.in_channels:
        first, last = c.block_size_in[0], c.block_size_out[-1]
        fixed = replace(c, block_size_in=((inp[0], *first[1:]),) + c.block_size_in[1:],
                        block_size_out=c.block_size_out[:-1] + ((*last[:2], inp[0]),))
        raise ShapeError(f"input shape: the {spec.backbone} features have {inp[0]} channels "
                         f"({' + '.join(spec.layers)}), but block_size_in[0][0] = {c.in_channels}; "
                         f"set block_size_in[0][0] and block_size_out[-1][2] to {inp[0]}", fixed)
    return propagate(c, inp)


def batch_bytes(config: Any, image_shape: tuple[int, int, int], method: Optional[str], batch_size: int) -> int:
    """Bytes one training step of `batch_size` images holds for the autoencoder: its input and every layer's
    float32 output, which autograd keeps for the backward pass; 0 without a config (a memory bank).

    Measured peaks of a step (Adam, float32) were 0.7-1.0x this for the pixel presets at 512-1024 px (0.4x in
    bf16): an estimate to refuse a size that cannot run (QA sweep 10: 4096x4096 passed the images' own check and
    the kernel killed the process at 22 GB), not a budget."""
    if config is None:
        return 0
    report = propagate_image(config, image_shape, method)
    per_image = prod(report.input) + sum(prod(layer.out_shape) for layer in report.layers)  # float32 values
    return int(batch_size) * 4 * per_image
