"""Ready-made model designs: a config and the input shape it was made for."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

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
