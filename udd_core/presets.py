"""Ready-made model designs (a config and the input shape it was made for), and what picking one, or a
detection method, sets on the Train page's form."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

from .config import AEConfig, parse_config

PIXEL_PRESET = "gray-tile-128"  # the pixel design the pages open on: small, quick to train on a CPU


@dataclass(frozen=True)
class ModelPreset:
    """A named starting point for the Design page and the command line."""

    name: str
    description: str
    config: AEConfig
    input_shape: tuple[int, int, int]  # (C, H, W)
    training: Optional[str] = None  # the training preset it was made and measured with (the Train page picks it)

    def is_design(self, config: dict, input_shape) -> bool:
        """Whether a design (a config as a dict, its images' (C, H, W)) is still this preset, unedited."""
        return config == self.config.to_dict() and tuple(input_shape) == tuple(self.input_shape)


def model_presets() -> dict[str, ModelPreset]:
    """All presets by name, built fresh on each call (nothing module-level to mutate)."""
    presets = [
        ModelPreset(
            "reference-example",
            "The defect_detection package's example: 2 blocks of 5x5 kernels, 512x512 RGB tiles.",
            parse_config({
                "block_ker": [5, 5], "drop": [0.1, 0.1],
                "block_size_in": [[3, 25, 20], [20, 15, 10]], "block_size_out": [[5, 10, 15], [15, 20, 3]],
                "latent_size": 3, "latent_ker": 3, "latent_opad": [1, 1], "out_pad": [[1, 1], [1, 1]],
            }),
            (3, 512, 512),
        ),
        ModelPreset(
            "wafer-26",
            "WM-811K-style wafer maps as 3 one-hot channels (outside, good die, failing die), 26x26.",
            parse_config({
                "block_ker": [3, 3], "drop": [0.0, 0.0],
                "block_size_in": [[3, 16, 16], [16, 32, 32]], "block_size_out": [[32, 32, 16], [16, 16, 3]],
                "latent_size": 8, "latent_ker": 3, "latent_opad": 0, "out_pad": [0, 1],
            }),
            (3, 26, 26),
            training="wafer",
        ),
        ModelPreset(
            "wafer-26-gen",
            "Wafer maps at 26x26 for generation (train with the 'wafer-generation' preset): wafer-26's two "
            "blocks, wider, with a softmax over the 3 one-hot channels for a cross-entropy loss "
            "(bench/bench_wafer_generation.py).",
            parse_config({
                "block_ker": [3, 3], "drop": [0.0, 0.0],
                "block_size_in": [[3, 32, 32], [32, 64, 64]], "block_size_out": [[64, 64, 32], [32, 32, 3]],
                "latent_size": 16, "latent_ker": 3, "latent_opad": 0, "out_pad": [0, 1], "output": "softmax",
            }),
            (3, 26, 26),
            training="wafer-generation",
        ),
        ModelPreset(
            "rgb-tile-256",
            "RGB surface tiles at 256x256: 4 blocks of 3x3 kernels down to an 8x8 latent.",
            parse_config({
                "block_ker": [3, 3, 3, 3], "drop": [0.0, 0.0, 0.0, 0.0],
                "block_size_in": [[3, 32, 32], [32, 64, 64], [64, 96, 96], [96, 128, 128]],
                "block_size_out": [[128, 128, 96], [96, 96, 64], [64, 64, 32], [32, 32, 3]],
                "latent_size": 32, "latent_ker": 3, "latent_opad": 1, "out_pad": [1, 1, 1, 1],
            }),
            (3, 256, 256),
        ),
        ModelPreset(
            "gray-tile-128",
            "Grayscale surface tiles at 128x128 (sample_data/surface): 3 small blocks, quick to train on a CPU.",
            parse_config({
                "block_ker": [3, 3, 3], "drop": [0.0, 0.0, 0.0],
                "block_size_in": [[1, 16, 16], [16, 32, 32], [32, 48, 48]],
                "block_size_out": [[48, 48, 32], [32, 32, 16], [16, 16, 1]],
                "latent_size": 16, "latent_ker": 3, "latent_opad": 1, "out_pad": [1, 1, 1],
            }),
            (1, 128, 128),
        ),
        ModelPreset(
            "magnetic-tile",
            "Magnetic-tile photos resized to 96x96 gray: gray-tile-128's blocks, trained as a denoising AE "
            "with the 'magnetic-tile' training preset; score with the SSIM residual, unsmoothed, top-1% mean "
            "(bench/bench_quality.py).",
            parse_config({
                "block_ker": [3, 3, 3], "drop": [0.0, 0.0, 0.0],
                "block_size_in": [[1, 16, 16], [16, 32, 32], [32, 48, 48]],
                "block_size_out": [[48, 48, 32], [32, 32, 16], [16, 16, 1]],
                "latent_size": 16, "latent_ker": 3, "latent_opad": 1, "out_pad": [1, 1, 1],
            }),
            (1, 96, 96),
            training="magnetic-tile",
        ),
        ModelPreset(
            "feature-ae",
            FEATURE_AE_NOTE,
            parse_config({
                "block_ker": [3], "drop": [0.0],
                "block_size_in": [[512, 128, 128]], "block_size_out": [[128, 128, 512]],
                "latent_size": 32, "latent_ker": 3, "latent_opad": 1, "out_pad": [1],
                "input": {"kind": "features", "backbone": "lite0", "layers": ["stage6", "s32"], "pool": 3},
            }),
            (1, 256, 256),
            training="feature-ae",
        ),
    ]
    return {p.name: p for p in presets}


# Why the feature-ae preset looks as it does: measured in bench/bench_feature_ae.py (bench/RESULTS.md).
FEATURE_AE_NOTE = (
    "Feature autoencoder (method feature-ae) for 256x256 images, with the feature-ae training preset (96 "
    "epochs): it reconstructs EfficientNet-Lite0's stride-32 features (stages 6 and 7, 3x3 pooled: 512x8x8), "
    "one block of 3x3 kernels down to a 32x2x2 latent. Measured on magnetic_tile (bench/bench_feature_ae.py): "
    "the stride-32 features see each patch in the context of most of the photo, so a region of normal-looking "
    "texture in the wrong place stands out (at 24 epochs image AUROC 0.87, against 0.84 with stage 5 added on a "
    "16x16 grid and 0.77 for the earlier stage 4 + 5 design), and the 8x8 grid trains 4x faster per epoch, so 96 "
    "epochs fit in the time budget (0.89; 0.915 with the top-10% score, and 0.965 with the latent novelty that "
    "the method multiplies in). DFR's 1x1 kernels cannot work in this block structure (a stride-2 transposed 1x1 "
    "conv fills only every other cell, so 3/4 of the map is bias). The narrow 32x2x2 latent is also what the "
    "latent novelty compares. The memory bank is still a little stronger there (0.977).")


def design_label(preset_name: Optional[str], config: Any) -> str:
    """How the Train page names the Design page's config: the preset it started from ("unet-ish"), with
    ", edited" once its fields differ from the preset's, or "custom"."""
    name = preset_name or "custom"
    preset = model_presets().get(name)
    return f"{name}, edited" if preset is not None and preset.config.to_dict() != config else name


def design_input(config: Any, method: Optional[str], design_shape: Sequence[int]) -> tuple[int, int, int]:
    """The images' (C, H, W) for the Design page's `config` at its own input `design_shape` (C, H, W) under
    `method`; a ValueError that sends the user back to the Design page when the design does not mirror there
    (that page lists every problem and applies the fixes)."""
    from .image_shapes import checked_image_shape

    try:
        return checked_image_shape(config, method, tuple(design_shape[1:]), int(design_shape[0]))
    except ValueError as e:
        size = "x".join(map(str, design_shape[1:]))
        raise ValueError(f"the Design page's config does not mirror at {size} ({e}): apply the suggested "
                         "paddings on the Design page") from None


def preset_choice(name: str, trains_epochs: bool) -> dict[str, Any]:
    """What picking model preset `name` sets on a training form: "model_preset", its input size ("h", "w"),
    and the training preset it was made with ("preset": wafer-26 -> wafer, feature-ae -> its epochs and rate)
    where it names one and the method trains in epochs."""
    preset = model_presets()[name]
    out: dict[str, Any] = {"model_preset": name, "h": preset.input_shape[1], "w": preset.input_shape[2]}
    if preset.training and trains_epochs:
        out["preset"] = preset.training
    return out


def method_choice(method: Any, current: Optional[str]) -> dict[str, Any]:
    """What picking a detection method (a `methods.Detector` class) sets on a training form whose model preset
    is `current`: the side its defaults were tuned at, and, when `current` cannot serve it (the feature AE on a
    pixel preset, a pixel method on the feature-ae preset), its own preset with `preset_choice`'s changes. A
    method leaving a preset that brought its own training preset for one that brings none goes back to the
    first training preset, not the old preset's epochs and rate. Keys as `preset_choice`'s; {} for none."""
    from .settings import training_presets

    out: dict[str, Any] = {}
    if method.preferred_side:  # a pixel preset's 128 would be kept otherwise
        out["h"] = out["w"] = method.preferred_side
    presets = model_presets()
    old = presets.get(current) if current else None
    if name := method.preferred_preset(old.config if old else None):
        out |= preset_choice(name, method.trains_epochs)
        if method.trains_epochs and old is not None and old.training and not presets[name].training:
            out["preset"] = next(iter(training_presets()))
    return out


def resized_note(method: Any, before: tuple, changes: dict[str, Any]) -> Optional[str]:
    """The line that says a method switch (`method_choice`'s `changes`) replaced the typed Height and Width
    `before` (QA sweep 12: the memory bank set 256x256 over a typed 128 without a word); None when it did not."""
    after = (changes.get("h", before[0]), changes.get("w", before[1]))
    if None in before or after == tuple(before):
        return None
    return (f"ℹ️ Height and Width set to {after[0]}x{after[1]} for {method.method}, the size its defaults suit "
            f"(they were {before[0]}x{before[1]}: type them again to keep those).")


def paired_training_preset(model_preset: Optional[str], method: Any) -> Optional[str]:
    """The training preset the Train page brings for model preset `model_preset` (None or a name that is no
    preset: a config file) under `method` (a `methods.Detector` class), as `method_choice` and `preset_choice`
    set it there: the method's own where it needs its own model preset (feature-ae), else the model preset's
    (wafer-26: wafer). None where neither names one, and for a method without training epochs."""
    if not method.trains_epochs:
        return None
    name = model_preset if model_preset in model_presets() else None
    choice = method_choice(method, name)
    if "preset" not in choice and name is not None:
        choice = preset_choice(name, True)
    return choice.get("preset")
