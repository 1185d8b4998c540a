"""What an autoencoder takes in: pixels, or the feature maps of a frozen pretrained backbone.

A config's optional "input" field says which. Without it (or with {"kind": "pixels"}) the AE sees
the image, as the reference package's did. With {"kind": "features", ...} it sees the backbone's
feature tensor (C, H/s, W/s): the chosen layers' maps, each averaged over a pool x pool
neighbourhood, resized to the finest chosen layer's grid and stacked along channels (the
feature-reconstruction idea of DFR, Shi et al. 2021).

Everything here is pure arithmetic on the backbone's known layer table, so the Design page and
`udd shapes` can show the feature tensor's shape without loading torch or any weights; a test holds
`feature_shape` against a real forward pass of the backbone.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional

KINDS = ("pixels", "features")
# Per backbone: layer name -> (channels, stride), as `backbone.py` names them: the output of each
# EfficientNet stage, and the stride aliases (the last stage at that stride). A test holds this
# table against `backbone.layer_info`; it is copied here so that parsing a config needs no torch.
_LITE0 = {"stage1": (16, 2), "stage2": (24, 4), "stage3": (40, 8), "stage4": (80, 16),
          "stage5": (112, 16), "stage6": (192, 32), "stage7": (320, 32)}
_ALIASES = {"s2": "stage1", "s4": "stage2", "s8": "stage3", "s16": "stage5", "s32": "stage7"}
BACKBONES: dict[str, dict[str, tuple[int, int]]] = {
    "lite0": {**_LITE0, **{a: _LITE0[s] for a, s in _ALIASES.items()}},
}
BACKBONE_ALIASES = {"efficientnet-lite0": "lite0"}
DEFAULT_BACKBONE = "lite0"
DEFAULT_LAYERS = ("s8", "s16")  # stages 3 and 5: 40 + 112 = 152 channels at stride 8
DEFAULT_POOL = 3
MAX_POOL = 15
FEATURE_BYTES = 2  # the training cache holds float16


class InputError(ValueError):
    """A bad "input" field; the message names the sub-field (e.g. "input.layers[1]: ...")."""


@dataclass(frozen=True)
class FeatureInput:
    """The AE reconstructs `backbone`'s `layers`, pooled over `pool` x `pool` and stacked."""

    backbone: str = DEFAULT_BACKBONE
    layers: tuple[str, ...] = DEFAULT_LAYERS
    pool: int = DEFAULT_POOL

    kind = "features"

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of the config's "input" field."""
        return {"kind": "features", "backbone": self.backbone, "layers": list(self.layers), "pool": self.pool}

    @property
    def channels(self) -> int:
        """Channels of the feature tensor: the chosen layers' channels summed."""
        table = BACKBONES[self.backbone]
        return sum(table[name][0] for name in self.layers)

    @property
    def stride(self) -> int:
        """Image pixels per feature cell: the finest chosen layer's stride."""
        table = BACKBONES[self.backbone]
        return min(table[name][1] for name in self.layers)


def parse_input(v: Any) -> Optional[FeatureInput]:
    """The config's "input" value -> a FeatureInput, or None for pixels; InputError naming the sub-field."""
    if v is None:
        return None
    if isinstance(v, FeatureInput):
        return v
    if not isinstance(v, Mapping):
        raise InputError(f"input: expected a dict like {{\"kind\": \"features\", ...}}, got {type(v).__name__}")
    kind = v.get("kind", "features")
    if kind not in KINDS:
        raise InputError(f"input.kind: must be one of {', '.join(KINDS)}, got {kind!r}"[:200])
    unknown = [str(k) for k in v if k not in ("kind", "backbone", "layers", "pool")]
    if unknown:
        raise InputError(f"input.{unknown[0]}: unknown field (known: kind, backbone, layers, pool)")
    if kind == "pixels":
        if len(v) > 1:
            raise InputError(f"input.{next(k for k in v if k != 'kind')}: only feature inputs take it")
        return None
    backbone = v.get("backbone", DEFAULT_BACKBONE)
    backbone = BACKBONE_ALIASES.get(backbone, backbone) if isinstance(backbone, str) else backbone
    if backbone not in BACKBONES:
        raise InputError(f"input.backbone: must be one of {', '.join(BACKBONES)}, got {backbone!r}"[:200])
    table = BACKBONES[backbone]
    layers = v.get("layers", list(DEFAULT_LAYERS))
    if not isinstance(layers, (list, tuple)) or not layers:
        raise InputError(f"input.layers: expected a non-empty list of layer names ({', '.join(table)})")
    for i, name in enumerate(layers):
        if not isinstance(name, str) or name not in table:
            raise InputError(f"input.layers[{i}]: must be one of {', '.join(table)}, got {name!r}"[:200])
    stages = [_ALIASES.get(name, name) for name in layers]
    if len(set(stages)) != len(stages):
        raise InputError(f"input.layers: a stage is named twice in {', '.join(layers)}")
    pool = v.get("pool", DEFAULT_POOL)
    if isinstance(pool, float) and pool.is_integer():
        pool = int(pool)
    if isinstance(pool, bool) or not isinstance(pool, int) or not (1 <= pool <= MAX_POOL and pool % 2 == 1):
        raise InputError(f"input.pool: must be an odd integer from 1 to {MAX_POOL} (1: no pooling), got {pool!r}"[:200])
    # The backbone's order, so [s16, s8] and [s8, s16] are one design (the channels stack finest first).
    order = {name: i for i, name in enumerate(_LITE0)}
    return FeatureInput(backbone, tuple(sorted(layers, key=lambda n: order[_ALIASES.get(n, n)])), pool)


def _down(n: int, stride: int) -> int:
    """Length after log2(stride) stride-2 convs with padding k // 2 (each gives ceil(n / 2))."""
    while stride > 1:
        n, stride = -(-n // 2), stride // 2
    return n


def feature_shape(spec: Optional[FeatureInput], image_shape: tuple[int, int, int]) -> tuple[int, int, int]:
    """The AE's input (C, H, W) for images of `image_shape` (C, H, W): the image itself for pixels.

    For features: (sum of the layers' channels, H and W at the finest layer's stride). Gray images
    go to the backbone as 3 channels, so the image's channel count does not matter.
    """
    c, h, w = image_shape
    if spec is None:
        return (c, h, w)
    s = spec.stride
    return (spec.channels, _down(h, s), _down(w, s))


def cache_bytes(spec: FeatureInput, image_shape: tuple[int, int, int], n_images: int) -> int:
    """Bytes of the float16 feature cache that training keeps for `n_images` images."""
    c, h, w = feature_shape(spec, image_shape)
    return n_images * c * h * w * FEATURE_BYTES


def describe_input(spec: Optional[FeatureInput], image_shape: tuple[int, int, int]) -> str:
    """One line for the Design page and `udd shapes`: what the AE sees and how big it is."""
    if spec is None:
        return f"pixels: the image itself, {'x'.join(map(str, image_shape))}"
    c, h, w = feature_shape(spec, image_shape)
    table = BACKBONES[spec.backbone]
    parts = " + ".join(f"{name} ({table[name][0]} ch, stride {table[name][1]})" for name in spec.layers)
    return (f"{spec.backbone} features: {parts}, {spec.pool}x{spec.pool} average pooling, on the stride-{spec.stride} "
            f"grid: {c}x{h}x{w}")
