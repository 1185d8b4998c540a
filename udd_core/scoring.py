"""Scoring: image scores from anomaly maps, normalisation statistics, calibration and batched scoring.

The maps themselves come from each method (`methods`), the pixel AE's from `residuals`.

Conventions used across udd: a pixel or image is called defective when its value is strictly
greater than a threshold (``value > threshold``).
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Callable, Iterable, Iterator, Optional

import numpy as np
import torch

from .data import to_tensor
from .losses import SSIM_SCORING_NOTE
from .residuals import residual_map, smooth_maps

SCORES = ("mean", "max", "topk")


# The feature methods' image score on images of at least WIDE_SIDE px a side: the mean of the top 10%
# of the map without a band of the shorter side // BORDER_PART at the edges. Chosen on magnetic_tile's
# selection half for the memory bank (image AUROC 0.927 -> 0.946) and the feature AE (0.896 -> 0.922),
# and held on the held-out half (bench/RESULTS.md); smaller images keep each method's own default.
WIDE_SIDE, BORDER_PART, WIDE_TOPK = 192, 16, 10.0

# An autoencoder on wafer maps: the residual smoothed over 1.5 dies and the mean of its top 5%. Per die, a
# failing die in a pattern and a lone random one have the same residual (the AE draws a near-blank wafer), so
# the outline fell on scattered single dies; smoothing turns the map into a local density of failing dies,
# where a pattern stands out. Chosen on synthetic maps with known pattern dies, held on a held-out set (pattern
# dies outlined 0.07 -> 0.92, image AUROC 0.898 -> 0.988) and on the real WM-811K maps (bench/RESULTS.md,
# "Wafer maps: the heatmap on the pattern").
WAFER_SCORING = {"smooth_sigma": 1.5, "score": "topk", "topk_percent": 5.0}
WAFER_SCORING_NOTE = ("this autoencoder works on wafer maps, so by default its map is smoothed over 1.5 dies and "
                      "scored by the mean of its top 5%: a lone failing die is spread thin while a failure pattern, "
                      "dense in failing dies, stands out, and the outline lands on it (bench/RESULTS.md, \"Wafer "
                      "maps: the heatmap on the pattern\"); no smoothing and the map's mean remain a choice")

# The notes of an autoencoder scored with the defaults its training suggests, with the words Compare says of each.
TRAINED_SCORING_NOTES = ((SSIM_SCORING_NOTE, "the SSIM residual and top 1%, as its SSIM training loss suggests"),
                         (WAFER_SCORING_NOTE, "its map smoothed over 1.5 dies and top 5%, as on wafer maps"))


def trained_scoring_note(notices) -> Optional[str]:
    """The `TRAINED_SCORING_NOTES` note among `notices`, or None."""
    return next((n for n, _ in TRAINED_SCORING_NOTES if n in notices), None)


def wide_image_score(input_shape) -> Optional[dict]:
    """{"score", "topk_percent", "border"} for images (C, H, W) of at least WIDE_SIDE px a side, else None."""
    if input_shape is None or min(input_shape[1], input_shape[2]) < WIDE_SIDE:
        return None
    return {"score": "topk", "topk_percent": WIDE_TOPK, "border": min(input_shape[1], input_shape[2]) // BORDER_PART}


def max_border(size: tuple[int, int]) -> int:
    """The widest band (px) that leaves some of a (H, W) map to score."""
    return (min(size) - 1) // 2


def check_border(border: int, size: tuple[int, int]) -> int:
    """`border` px as a valid band to leave out of a (H, W) map's image score; ValueError naming it."""
    if isinstance(border, bool) or not isinstance(border, int) or border < 0 or border > max_border(size):
        raise ValueError(f"border: must be an integer of pixels in [0, {max_border(size)}] for "
                         f"{size[0]}x{size[1]} maps, got {border!r}")
    return border


MAX_SMOOTH = 100.0  # px: the Gaussian kernel is 6 sigma wide, so beyond this it blurs the map away


def check_post_processing(smooth_sigma, score, topk_percent, border=0, size: Optional[tuple[int, int]] = None
                          ) -> tuple[float, str, float, int]:
    """The post-processing of a map (smoothing, image score, top-k share, border), checked alike for every
    method's options, `udd score` and the export: (smooth_sigma, score, topk_percent, border), or a
    ValueError naming the first bad field. `border` is checked against the map `size` (H, W) when given."""
    def number(v) -> bool:
        return not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)

    if not (number(smooth_sigma) and 0 <= smooth_sigma <= MAX_SMOOTH):
        raise ValueError(f"smooth_sigma: must be a number of pixels in [0, {MAX_SMOOTH:g}], got {smooth_sigma!r}")
    if score not in SCORES:
        raise ValueError(f"score: must be one of {', '.join(SCORES)}, got {score!r}")
    if not (number(topk_percent) and 0 < topk_percent <= 100):
        raise ValueError(f"topk_percent: must be a number in (0, 100], got {topk_percent!r}")
    if size is not None:
        check_border(border, size)
    elif isinstance(border, bool) or not isinstance(border, int) or border < 0:
        raise ValueError(f"border: must be an integer of pixels, got {border!r}")
    return float(smooth_sigma), str(score), float(topk_percent), int(border)


def image_scores(maps: torch.Tensor, kind: str = "mean", topk_percent: float = 1.0, border: int = 0) -> torch.Tensor:
    """Reduce residual maps (B, H, W) to one score per image (B,).

    ``topk`` averages the highest ``topk_percent`` % of pixels (at least one): it reacts to
    small defects that a plain mean dilutes, while being less noise-driven than the max.
    ``border`` px on every side are left out of the score (not of the map): a photo's edges and
    background vary more than its inside, and on magnetic_tile they held normal photos' maxima
    (bench/RESULTS.md, "Memory bank").
    """
    if maps.ndim != 3:
        raise ValueError(f"maps must be (B, H, W), got shape {tuple(maps.shape)}")
    if kind not in SCORES:
        raise ValueError(f"score kind must be one of {SCORES}, got {kind!r}")
    if check_border(border, tuple(maps.shape[-2:])):
        maps = maps[:, border:maps.shape[1] - border, border:maps.shape[2] - border]  # (B, H-2b, W-2b)
    flat = maps.flatten(1)  # (B, H*W); no batch size read, so an exported graph keeps N dynamic
    if kind == "mean":
        return flat.mean(dim=1)
    if kind == "max":
        return flat.amax(dim=1)
    if not 0 < topk_percent <= 100:
        raise ValueError(f"topk_percent must be in (0, 100], got {topk_percent}")
    k = max(1, math.ceil(flat.shape[1] * topk_percent / 100.0))
    return flat.topk(k, dim=1, sorted=False).values.mean(dim=1)


def mse_per_image(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared error per image (B,), float32, bit-identical to the reference package's loss."""
    return torch.mean(torch.square(x - y), (1, 2, 3))


@dataclass(frozen=True)
class NormStats:
    """Location/scale of residual pixels over the normal validation images."""

    mean: float
    std: float
    q99: float

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "NormStats":
        try:
            return cls(mean=float(d["mean"]), std=float(d["std"]), q99=float(d["q99"]))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"NormStats dict needs numeric mean, std, q99: {e}") from None


def outline_threshold(norm: NormStats, threshold: Optional[float], score: str, scaled: bool) -> float:
    """The pixel threshold of the heatmaps' cyan outline, in heatmap units (standard deviations of the normal
    pixels above their mean): the image threshold in map units when the image score is the map's max or top-k
    mean (and not `scaled` by a factor), so that the outline marks what makes an image defective; else the
    normal pixels' 99th percentile. Inspect, reports and the ONNX JSON draw the same outline."""
    if threshold is not None and score in ("max", "topk") and not scaled:
        return (threshold - norm.mean) / norm.std
    return (norm.q99 - norm.mean) / norm.std


def fit_norm_stats(maps: np.ndarray | torch.Tensor) -> NormStats:
    """Fit pixel statistics on residual maps (N, H, W) of NORMAL images."""
    a = maps.detach().cpu().numpy() if isinstance(maps, torch.Tensor) else np.asarray(maps)
    a = a.reshape(-1)
    if a.size == 0:
        raise ValueError("maps is empty: need at least one residual pixel to fit NormStats")
    if not np.all(np.isfinite(a)):
        raise ValueError("maps contains NaN or inf values")
    mean = float(a.mean(dtype=np.float64))
    std = float(a.std(dtype=np.float64))
    # A constant map would give std 0; keep the scale finite so normalise() never divides by 0.
    std = max(std, 1e-12)
    return NormStats(mean=mean, std=std, q99=float(np.quantile(a, 0.99)))


def normalise(maps, stats: NormStats):
    """Standardise maps with statistics of normal images: ``(map - mean) / std``; same type out.

    Deliberately NOT per-image min-max: that stretches every image's own worst pixel to 1, so
    a defect-free image would look as "defective" as a real defect and neither maps nor
    thresholds would be comparable between images. A global normal-data scale keeps 0 meaning
    "typical of normal data" and large values meaning "unusual" for every image alike.
    """
    return (maps - stats.mean) / stats.std


@contextmanager
def evaluating(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Run a block with ``model.eval()`` and inference mode, then restore the model's train flag."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield model
    finally:
        model.train(was_training)


def model_device(model: torch.nn.Module) -> torch.device:
    """Device of the model's first parameter (CPU for a parameter-less module)."""
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def calibrate(model: torch.nn.Module, images: np.ndarray, device: str | torch.device = "cpu",
              batch_size: int = 32, topk_percent: float = 1.0, residual: str = "l2") -> dict:
    """Residual statistics of normal images: the `residual`'s pixel NormStats and image scores (mean/max/topk).

    The Inspect page standardises heatmaps with these (never per-image min-max) and proposes
    thresholds from the score distribution.
    """
    with evaluating(model):
        xs = (to_tensor(images[s:s + batch_size], device) for s in range(0, len(images), batch_size))  # (b, C, H, W)
        return calibration_record(((residual_map(x, model(x), residual), None) for x in xs), residual, topk_percent)


def calibration_record(outputs: Iterable[tuple[torch.Tensor, Optional[torch.Tensor]]], residual: str,
                       topk_percent: float = 1.0) -> dict:
    """What `calibrate` returns, from the maps (b, H, W) of normal images and their score factors ((b,) or
    None; `MapOutput.score_factor`), batch by batch: the maps' NormStats and the image scores with a summary."""
    maps, scores = [], {"mean": [], "max": [], "topk": []}
    for m, factor in outputs:
        maps.append(m.float().cpu())
        for k in scores:
            v = image_scores(m, k, topk_percent)
            scores[k] += (v if factor is None else v * factor).float().cpu().tolist()
    stats = fit_norm_stats(torch.cat(maps))

    def summary(v: list) -> dict:
        a = np.asarray(v, dtype=np.float64)
        return {"mean": float(a.mean()), "std": float(a.std()), "q95": float(np.quantile(a, 0.95)),
                "q99": float(np.quantile(a, 0.99)), "max": float(a.max())}

    return {"residual": residual, "n_images": sum(len(m) for m in maps), "norm": stats.to_dict(),
            "topk_percent": topk_percent, "scores": scores, "score_stats": {k: summary(v) for k, v in scores.items()}}


@dataclass
class ScoreResult:
    """Scoring of N images: anomaly maps, image scores, and for reconstructing methods the reconstructions."""

    recon: Optional[np.ndarray]  # (N, C, H, W) float32, or None when the method does not reconstruct
    maps: np.ndarray  # (N, H, W) float32, after smoothing
    scores: np.ndarray  # (N,) float32
    mse: np.ndarray  # (N,) float32, reference-equal; NaN when the method does not reconstruct
    factors: Optional[np.ndarray] = None  # (N,) float32 score factors (MapOutput.score_factor) in the scores, or None


def score_images(
    model,
    images: np.ndarray,
    residual: Optional[str] = "l2",
    score: str = "mean",
    smooth_sigma: float = 0.0,
    topk_percent: float = 1.0,
    border: int = 0,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    progress: Callable[[int, int], None] | None = None,
    keep_recon: bool = True,
) -> ScoreResult:
    """Score uint8 images (N, H, W, C) in batches with a detector (or a bare autoencoder); ``progress(done, total)``.

    ``keep_recon`` False leaves out the reconstructions (N, C, H, W) float32, the largest output by far,
    when only scores and maps are wanted (`udd score`).

    ``model`` is a `methods.Detector` or an autoencoder ``nn.Module`` (scored as the pixel AE).
    ``residual`` None takes the method's default. The model must already live on ``device``.
    Inputs are fed in the layout ``to_tensor`` gives (a channels-last view of the uint8 cache),
    the same layout as the reference package's loader, so the autoencoder's reconstructions and
    the MSE are bit-identical to the reference's.
    """
    from .methods.autoencoder import AutoencoderDetector  # methods import this module: keep it one-way

    if not isinstance(images, np.ndarray) or images.dtype != np.uint8:
        raise ValueError(f"images must be a uint8 numpy array, got {type(images).__name__} {getattr(images, 'dtype', '')}")
    if images.ndim == 3:  # (N, H, W) grayscale -> (N, H, W, 1)
        images = images[..., None]
    if images.ndim != 4:
        raise ValueError(f"images must be (N, H, W, C), got shape {images.shape}")
    det = AutoencoderDetector(model) if isinstance(model, torch.nn.Module) else model
    if residual is not None and residual not in det.residuals:
        raise ValueError(f"residual: must be one of {', '.join(det.residuals)}, got {residual!r}")
    if score not in SCORES:
        raise ValueError(f"score must be one of {SCORES}, got {score!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n, h, w, c = images.shape
    recon, factors = None, None
    maps = np.empty((n, h, w), dtype=np.float32)
    scores = np.empty(n, dtype=np.float32)
    mse = np.full(n, np.nan, dtype=np.float32)
    # Torch views of the outputs: results are written once, straight into the numpy buffers.
    maps_t, scores_t, mse_t = torch.from_numpy(maps), torch.from_numpy(scores), torch.from_numpy(mse)
    module = det.model if isinstance(det, AutoencoderDetector) else torch.nn.Module()
    with evaluating(module):
        for s in range(0, n, batch_size):
            e = min(s + batch_size, n)
            x = to_tensor(images[s:e], device)  # (b, C, H, W) float32 in [0, 1]
            out = det.anomaly_maps(x, residual)
            m = smooth_maps(out.maps, smooth_sigma)  # (b, H, W)
            if det.own_scores:
                scores_t[s:e].copy_(det.image_scores(x))
            elif out.score_factor is not None:  # a reduction of the map, times the method's own factor
                scores_t[s:e].copy_(image_scores(m, score, topk_percent, border) * out.score_factor)
                if factors is None:
                    factors = np.ones(n, dtype=np.float32)
                factors[s:e] = out.score_factor.float().cpu().numpy()
            else:
                scores_t[s:e].copy_(image_scores(m, score, topk_percent, border))
            maps_t[s:e].copy_(m)
            if out.recon is not None:
                mse_t[s:e].copy_(mse_per_image(x, out.recon))
            if out.recon is not None and keep_recon:
                if recon is None:
                    recon = np.empty((n, c, h, w), dtype=np.float32)
                torch.from_numpy(recon)[s:e].copy_(out.recon)
            if progress is not None:
                progress(e, n)
    return ScoreResult(recon=recon, maps=maps, scores=scores, mse=mse, factors=factors)
