"""The memory bank's options: their defaults, which follow the image size, and their checks.

`check_options` is what `MemoryBankDetector.build` and `load` apply, and what the Train page and
`udd train` refuse a bad option with before any data loads.
"""
from __future__ import annotations

import math
from typing import Optional

from .. import backbone as bb
from ..feature_input import BACKBONE_ALIASES
from ..scoring import WIDE_SIDE, check_post_processing, wide_image_score

NAME = "memory-bank"

# The image score (score, topk_percent, border) is the scoring default every consumer applies: from
# CONTEXT_MIN_SIDE px a side `scoring.wide_image_score`, the top 10% without a band of 1/16 of the side,
# chosen on magnetic_tile's selection half over the map's maximum (image AUROC 0.946 vs 0.927; held-out
# 0.951 vs 0.939): the photo's edges held normal photos' highest values (bench/RESULTS.md, "Memory bank").
# With distances in units of the spread (`spread_k`) it still beats the maximum: 0.983 vs 0.976 (held-out
# 0.970 vs 0.959).
DEFAULTS = {"backbone": "lite0", "layers": ["s16", "stage6", "s32"], "pool": 3, "coreset": 0.1, "k": 1,
            "smooth_sigma": 8.0, "proj_dim": 64, "score": "topk", "topk_percent": 10.0, "border": 0, "spread_k": 9}
# The stride-32 stages need a grid of at least 6x6 cells to place a defect; on smaller images the
# defaults fall back to PatchCore's stride-8 + stride-16 pair (on sample_data's 64x64 surface the
# context layers' 4x4 grid gave pixel AUROC 0.73, the pair 0.97), a sigma for their finer grid, and
# the map's maximum over the whole image (what was measured there).
CONTEXT_MIN_SIDE = WIDE_SIDE  # 192
SMALL_IMAGE_DEFAULTS = {"layers": ["s8", "s16"], "smooth_sigma": 4.0, "score": "max"}
# A run saved before the image-score options scored the whole map's maximum: it keeps doing so.
SAVED_BEFORE_SCORE_OPTIONS = {"score": "max", "border": 0}
# A run saved before `spread_k` scored plain distances (and its bank file holds no spread).
SAVED_BEFORE_SPREAD = {"spread_k": 0}


def defaults_for(input_shape: Optional[tuple[int, int, int]]) -> dict:
    """The default options for images of `input_shape` (C, H, W): DEFAULTS with `scoring.wide_image_score`,
    or below CONTEXT_MIN_SIDE pixels a side SMALL_IMAGE_DEFAULTS over DEFAULTS."""
    opts = dict(DEFAULTS)
    if input_shape is not None and min(input_shape[1], input_shape[2]) < CONTEXT_MIN_SIDE:
        opts.update(SMALL_IMAGE_DEFAULTS)
    elif input_shape is not None:
        opts.update(wide_image_score(input_shape))
    return opts


def check_options(options: Optional[dict], input_shape: Optional[tuple[int, int, int]] = None) -> dict:
    """Options merged over the defaults for `input_shape` (`defaults_for`), validated; ValueError naming
    the first bad option."""
    opts = defaults_for(input_shape)
    for key, value in (options or {}).items():
        if key not in DEFAULTS:
            raise ValueError(f"{key}: not a {NAME} option (options: {', '.join(DEFAULTS)})")
        opts[key] = value
    opts["backbone"] = BACKBONE_ALIASES.get(opts["backbone"], opts["backbone"])  # as a config's input.backbone
    if opts["backbone"] not in bb.BACKBONES:
        raise ValueError(f"backbone: must be one of {', '.join(bb.BACKBONES)}, got {opts['backbone']!r}")
    opts["layers"] = list(bb.check_layers(opts["layers"]))
    bb.check_pool(opts["pool"])

    def number(key: str, ok: bool, rule: str) -> None:
        if isinstance(opts[key], bool) or not ok:
            raise ValueError(f"{key}: must be {rule}, got {opts[key]!r}")

    c = opts["coreset"]
    number("coreset", isinstance(c, (int, float)) and math.isfinite(c) and 0 < c <= 1, "in (0, 1]")
    number("k", isinstance(opts["k"], int) and 1 <= opts["k"] <= 100, "an integer in 1..100")
    number("spread_k", isinstance(opts["spread_k"], int) and 0 <= opts["spread_k"] <= 100,
           "an integer in 0..100 (0: plain distances)")
    number("proj_dim", isinstance(opts["proj_dim"], int) and 0 <= opts["proj_dim"] <= 4096,
           "an integer in 0..4096 (0: no projection)")
    opts["smooth_sigma"], opts["score"], opts["topk_percent"], opts["border"] = check_post_processing(
        opts["smooth_sigma"], opts["score"], opts["topk_percent"], opts["border"],
        None if input_shape is None else (input_shape[1], input_shape[2]))
    opts["coreset"] = float(c)
    return opts
