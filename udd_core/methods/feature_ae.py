"""The feature autoencoder: udd's autoencoder trained on pretrained backbone features (DFR's idea).

A frozen backbone turns each image into a feature tensor (C, H/s, W/s) (`feature_input.py` says
which layers, pooling and grid); the features are standardised per channel with statistics of the
training images, and the config's `AutoEncoder` learns to reconstruct them. The anomaly map is the
per-location squared feature error, averaged over channels, upsampled bilinearly to the image and
smoothed by scoring (describe()'s "smooth_sigma"); the image score is by default the mean of the
map's top 10% without a band of 1/16 of the side at the edges (`scoring.wide_image_score`), or of its
top 1% on images under 192 px a side, times the *latent novelty* to the power `latent_power` (2 by
default; 0 leaves it out): the distance of the image's latent code to its nearest training code, in
units of that code's spread (its mean distance to its 9 nearest training codes), as the memory bank
measures patches. The map shows where the features are rebuilt badly; the factor says how unlike
every training image the whole code is, which the error alone misses when an AE rebuilds an unusual
photo well. With error "channel" (the default) each channel's error is first divided by its mean
error on the normal validation features, so channels the AE never rebuilds well do not drown the rest.

Training computes the features once per image into a float16 cache (`feeds.cache_features`) and runs
the ordinary training loop (`train.train`) on it through a `feeds.FeatureFeed`: background thread,
stop, resume and live curves come for free, and the live probes show residual heatmaps.

A run folder holds config.json (with its "input" field), model.safetensors (the AE, as any AE
run), method.json, and feature_stats.safetensors (`feature_stats.FeatureStats`: the per-channel mean, std
and error weight, and the training codes (N, D) with their spread (N,), written when the fit ends).
"""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
from torch import nn

from .. import run_status
from ..feature_input import FeatureInput, feature_shape
from ..feeds import cache_features, channel_stats, feature_cache_bytes, make_feature_maps
from ..model import WEIGHTS_FILE, AutoEncoder, load_model, save_model
from ..scoring import check_post_processing, wide_image_score
from ..tensor_files import ModelFileError
from .base import METHOD_FILE, Detector, MapOutput
from .feature_residual import FeatureResidualMap, feature_error
from .feature_stats import STATS_FILE, FeatureStats, channel_error_weight, latent_codes

RESIDUALS = ("feature",)
# Scoring defaults chosen on the selection half of magnetic_tile (bench/RESULTS.md, "Feature autoencoder"):
DEFAULT_SMOOTH = 8.0  # px at the image: the preset's map is an 8x8 grid upsampled 32x; it barely matters there
DEFAULT_SCORE = "topk"  # the mean of the map's top 1%: steadier than the maximum (+0.02 image AUROC there)
TOPK_PERCENT = 1.0  # from 192 px a side, `scoring.wide_image_score` instead: top 10%, border (+0.026 there)
ERRORS = ("plain", "channel")  # the channel-mean squared error, or each channel's scaled by 1 / its normal error
DEFAULT_ERROR = "channel"
# The image score is the map's reduction times the latent novelty to this power (0: the map alone).
# magnetic_tile's selection half: image AUROC 0.922 for the map alone, 0.958 / 0.965 / 0.967 at powers
# 1 / 2 / 3 (held-out 0.959 / 0.965 / 0.964): 2 keeps nearly all the gain with the milder exponent.
LATENT_POWER = 2.0


# --- the detector ----------------------------------------------------------------------------

class FeatureAEDetector(Detector):
    """An AutoEncoder over standardised backbone features; the feature error is the anomaly map."""

    method = "feature-ae"
    residuals = RESIDUALS
    imagenet_features = True
    summary = "AE on pretrained features"
    option_example = '{"smooth_sigma": 8, "latent_power": 2}'
    probe_label = "residual heatmap"  # features cannot be shown as pictures
    paints_noise = False  # patches would have to go through the backbone, which the feature cache skips
    generates = False  # its decoder makes features, not images
    resumable = True  # the AE continues from last.safetensors; the features are recomputed
    uses_config = True  # the AE design, with its "input" field

    def __init__(self, model: AutoEncoder, spec: FeatureInput, image_shape: tuple[int, int, int],
                 features: Optional[nn.Module] = None, stats: Optional[FeatureStats] = None,
                 smooth_sigma: float = DEFAULT_SMOOTH, score: str = DEFAULT_SCORE, error: str = DEFAULT_ERROR,
                 topk_percent: float = TOPK_PERCENT, border: int = 0, latent_power: float = 0.0):
        self.model, self.spec, self.input_shape = model, spec, tuple(image_shape)
        self.features = features
        self.stats = stats or FeatureStats.neutral(model.config.in_channels)  # standardisation, weights, codes
        self.smooth_sigma, self.score, self.error = float(smooth_sigma), score, error
        self.topk_percent, self.border = float(topk_percent), int(border)  # the image score's defaults
        self.latent_power = float(latent_power)  # the image score's latent-novelty exponent; 0: none

    # building ------------------------------------------------------------------------------
    @classmethod
    def build(cls, input_shape: tuple[int, int, int], options: Optional[dict] = None, config: Any = None,
              seed: int = 0) -> "FeatureAEDetector":
        from ..config import parse_config
        from ..image_shapes import input_spec, propagate_image
        from ..train import seeded_model

        if config is None:
            raise ValueError("config: the feature autoencoder needs a model config (a file or the feature-ae preset)")
        options = dict(options or {})
        wide = wide_image_score(input_shape) or {"score": DEFAULT_SCORE, "topk_percent": TOPK_PERCENT, "border": 0}
        smooth = options.pop("smooth_sigma", DEFAULT_SMOOTH)
        score = options.pop("score", wide["score"])
        topk = options.pop("topk_percent", wide["topk_percent"])
        border = options.pop("border", wide["border"])
        error = options.pop("error", DEFAULT_ERROR)
        power = options.pop("latent_power", LATENT_POWER)
        if options:
            key = next(iter(options))
            where = ("; a feature AE takes its backbone and layers from its config's \"input\" field (the Design "
                     "page's input kind, or the feature-ae preset)" if key in ("backbone", "layers", "pool") else "")
            raise ValueError(f"{key}: not a feature-ae option "
                             f"(smooth_sigma, score, topk_percent, border, error, latent_power){where}")
        if isinstance(power, bool) or not isinstance(power, (int, float)) or not 0 <= power <= 4:
            raise ValueError(f"latent_power: must be a number in [0, 4] (0: the map alone), got {power!r}")
        if error not in ERRORS:
            raise ValueError(f"error: must be one of {', '.join(ERRORS)}, got {error!r}")
        smooth, score, topk, border = check_post_processing(smooth, score, topk, border, tuple(input_shape[1:]))
        c = parse_config(config)
        spec = input_spec(c, cls.method)
        if c.input is None:  # a pixel config tried on features: record the input it now takes
            from dataclasses import replace

            c = replace(c, input=spec)
        report = propagate_image(c, tuple(input_shape), cls.method)  # ShapeError (ValueError) names the fix
        if not report.ok:
            raise ValueError(report.problems[0].message)
        model = seeded_model(c, report.input, seed)
        return cls(model, spec, tuple(input_shape), smooth_sigma=smooth, score=score, error=error,
                   topk_percent=topk, border=border, latent_power=float(power))

    @classmethod
    def preferred_preset(cls, config: Any) -> Optional[str]:
        # a pixel config's channels are the image's, not the backbone's: it cannot take the features
        return "feature-ae" if config is None or config.input is None else None

    def check_input(self, shape: tuple[int, int, int]) -> None:
        if shape[0] not in (1, 3):
            raise ValueError(f"channels: the {self.spec.backbone} backbone takes gray or RGB images, got {shape[0]}")
        want = feature_shape(self.spec, self.input_shape)
        got = feature_shape(self.spec, tuple(shape))
        if got != want:
            raise ValueError(f"size {shape[1]}x{shape[2]}: its features are {'x'.join(map(str, got))}, the run "
                             f"was trained on {'x'.join(map(str, want))} (images of {self.input_shape[1]}x"
                             f"{self.input_shape[2]})")

    def feature_extractor(self) -> nn.Module:
        """The frozen backbone extractor, loaded on first use."""
        if self.features is None:
            self.features = make_feature_maps(self.spec).to(self._device())
        return self.features

    def _device(self) -> torch.device:
        return next(self.model.parameters()).device

    def describe(self) -> dict[str, Any]:
        return {"method": self.method, "input": self.spec.to_dict(), "image_shape": list(self.input_shape),
                "feature_shape": list(feature_shape(self.spec, self.input_shape)),
                "residual": RESIDUALS[0], "error": self.error, "smooth_sigma": self.smooth_sigma, "score": self.score,
                "topk_percent": self.topk_percent, "border": self.border, "latent_power": self.latent_power,
                **({"image_score": self._score_words()} if self.latent_power and self.stats.codes is not None else {})}

    def _score_words(self) -> str:
        """What the image score is, for Inspect's caption and the report (method.json's "image_score")."""
        power = "squared" if self.latent_power == 2 else f"to the power {self.latent_power:g}"
        return (f"the hottest part of the map (the image score setting) times the latent novelty {power}: how far "
                "the image's code in the autoencoder's bottleneck lies from the closest training image's code, "
                "relative to how far apart the training codes lie there. A bright map can still pass when the "
                "code is familiar, and the score is not in the heatmap's units")

    # maps --------------------------------------------------------------------------------
    def map_meaning(self, residual: str) -> str:
        weighed = ", each channel's in units of its mean error on normal images" if self.error == "channel" else ""
        return ("the squared error between the standardised backbone features and their reconstruction, mean over "
                f"the channels{weighed}")

    def _kind(self, residual: Optional[str]) -> str:
        kind = residual or RESIDUALS[0]
        if kind not in RESIDUALS:
            raise ValueError(f"residual: the feature autoencoder's map is the feature error ({RESIDUALS[0]}), "
                             f"got {kind!r}")
        return kind

    def _novelty(self) -> Optional[nn.Module]:
        """The latent-novelty factor's module, or None (latent_power 0, or no training codes yet)."""
        from .latent_knn import CodeNovelty

        if self.latent_power == 0 or self.stats.codes is None:
            return None
        return CodeNovelty(self.stats.codes, self.stats.code_spread, self.latent_power)

    def map_module(self, residual: Optional[str] = None) -> nn.Module:
        self._kind(residual)
        st = self.stats
        return FeatureResidualMap(self.feature_extractor(), self.model, st.mean, st.std, st.weight,
                                  self._novelty()).eval()

    def outputs_of_features(self, f: torch.Tensor, standardised: bool = False) -> MapOutput:
        """What `anomaly_maps` gives for the images of cached features (B, Cf, h, w) (raw, unless `standardised`)."""
        f = f.to(self._device(), torch.float32)
        if not standardised:
            f = self.stats.standardise(f)
        self.model.eval()
        st = self.stats
        module = FeatureResidualMap(nn.Identity(), self.model, st.mean, st.std, st.weight, self._novelty())
        maps, factor = module.parts_of_features(f, tuple(self.input_shape[1:]))
        return MapOutput(maps=maps, score_factor=factor)

    def anomaly_maps(self, x: torch.Tensor, residual: Optional[str] = None) -> MapOutput:
        self.model.eval()
        maps, factor = self.map_module(residual).parts(x)
        return MapOutput(maps=maps, recon=None, score_factor=factor)

    # fitting ------------------------------------------------------------------------------
    def fit(self, train_images: np.ndarray, val_images: Optional[np.ndarray], settings: Any,
            run_dir: Union[str, Path], *, stop_event: Optional[threading.Event] = None,
            board: Any = None, resume: bool = False) -> str:
        from ..progress import fit_handles
        from ..settings import resolve_device

        run_dir, stop_event, board = fit_handles(run_dir, settings.epochs, stop_event, board)
        for what, imgs in (("training images", train_images), ("validation images", val_images)):
            if imgs is not None:
                self._check_images(imgs, what)
        dev = resolve_device(settings.device)
        self.to(dev)
        extractor = self.feature_extractor()
        n_all = len(train_images) + (0 if val_images is None else len(val_images))
        board.update(status="running", message=f"computing features of {n_all} images "
                     f"({feature_cache_bytes(self.spec, self.input_shape, n_all) / 2**20:.0f} MiB cache)")
        done, beat = [0], [time.monotonic()]
        counts = {k: v for k, v in run_status.read_status(run_dir).items()
                  if k in ("epoch", "epochs")}  # a resume's

        def tick(k: int, n: int) -> None:
            message = f"computing features: {done[0] + k}/{n_all} images"
            board.update(message=message)
            if time.monotonic() - beat[0] > 5.0:  # status.json's heartbeat: a long cache is not a dead run
                beat[0] = time.monotonic()
                run_status.write_status(run_dir, "running", message, **counts)

        train_f = cache_features(extractor, train_images, dev, stop_event, tick)
        done[0] = len(train_images)
        val_f = None
        if train_f is not None and val_images is not None and len(val_images):
            val_f = cache_features(extractor, val_images, dev, stop_event, tick)
        if train_f is None or (val_images is not None and len(val_images) and val_f is None):
            board.update(status="stopped", message="stopped while computing features")
            run_status.write_status(run_dir, "stopped", "stopped while computing features", epoch=0,
                                    epochs=settings.epochs)
            return "stopped"
        return self.fit_cached(train_f, val_f, train_images, val_images, settings, run_dir,
                               stop_event=stop_event, board=board, resume=resume)

    def fit_cached(self, train_f: torch.Tensor, val_f: Optional[torch.Tensor], train_images: np.ndarray,
                   val_images: Optional[np.ndarray], settings: Any, run_dir: Union[str, Path], *,
                   stop_event: Optional[threading.Event] = None, board: Any = None, resume: bool = False) -> str:
        """`fit` on features already cached by `cache_features` (float16 (N, Cf, h, w), raw, unstandardised).

        The images are only shown (the probes); a benchmark trying several designs embeds once.
        """
        from ..feeds import FeatureFeed
        from ..progress import fit_handles
        from ..train import train

        run_dir, stop_event, board = fit_handles(run_dir, settings.epochs, stop_event, board)
        want = feature_shape(self.spec, self.input_shape)
        for what, f in (("training features", train_f), ("validation features", val_f)):
            if f is not None and tuple(f.shape[1:]) != want:
                raise ValueError(f"{what}: {tuple(f.shape[1:])}, the detector takes {want}")
        c = self.model.config.in_channels
        # Resuming, the standardisation the saved weights were trained with. The error weights are set from the
        # trained AE below, and its codes after training: until then (and after a hard kill) the run scores by the
        # map alone, and method.json no longer names the latent factor.
        if resume and (run_dir / STATS_FILE).is_file():
            old = FeatureStats.load(run_dir, c)
            mean, std = old.mean, old.std
        else:
            mean, std = channel_stats(train_f)
        self.stats = FeatureStats(mean, std, torch.ones(c))
        self.stats.save(run_dir)
        self.write_spec(run_dir)
        self.stats = self.stats.to(self._device())
        train_f = self.stats.standardise(train_f)  # once, in the cache's float16
        val_f = self.stats.standardise(val_f) if val_f is not None else None
        size = tuple(self.input_shape[1:])

        def heat(f: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
            return feature_error(f, g, size)  # (b, H, W); plain error: the weights come after training

        status = train(self.model, FeatureFeed(train_f, train_images, heat),
                       FeatureFeed(val_f, val_images, heat) if val_f is not None else None,
                       settings, run_dir, stop_event=stop_event, board=board, resume=resume, calibrate=False)
        # The run's best weights score; calibrate the maps of the normal held-out images with them.
        best = load_model(run_dir, device=str(self._device()))
        self.model.load_state_dict(best.state_dict())
        self.model.eval()
        c = self.model.config.in_channels
        weight = (torch.ones(c, device=self._device()) if self.error == "plain" else
                  channel_error_weight(self.model, val_f if val_f is not None else train_f))
        self.stats = FeatureStats(self.stats.mean, self.stats.std, weight, *latent_codes(self.model, train_f))
        self.save(run_dir)
        normal = (val_f, "validation") if val_f is not None else (train_f, "train")
        self._calibrate(run_dir, *normal)
        return status

    def _check_images(self, images: np.ndarray, what: str) -> None:
        if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4:
            raise ValueError(f"{what}: expected uint8 images (N, H, W, C), got {type(images).__name__} "
                             f"{getattr(images, 'dtype', '')} {getattr(images, 'shape', '')}")
        n, h, w, c = images.shape
        if (h, w) != tuple(self.input_shape[1:]):
            raise ValueError(f"{what}: images are {h}x{w}, the detector was built for "
                             f"{self.input_shape[1]}x{self.input_shape[2]}")
        self.check_input((c, h, w))

    def _calibrate(self, run_dir: Path, feats: torch.Tensor, source: str) -> None:
        """calibration.json as scoring.calibrate writes it, from the maps (and score factors) of normal
        standardised features."""
        from .. import runs
        from ..scoring import calibration_record

        with torch.inference_mode():
            outs = (self.outputs_of_features(feats[s:s + 32].to(self._device()), standardised=True)
                    for s in range(0, len(feats), 32))
            record = calibration_record(((o.maps, o.score_factor) for o in outs), RESIDUALS[0])
        runs.write_json_atomic(run_dir / runs.CALIBRATION_FILE, {
            **record, "smooth_sigma": 0.0, "source": source, "weights": WEIGHTS_FILE, "created": runs.now_iso()})

    # saving --------------------------------------------------------------------------------
    def write_spec(self, run_dir: Union[str, Path]) -> None:
        from ..model import CONFIG_FILE
        from ..runs import write_json_atomic

        super().write_spec(run_dir)
        write_json_atomic(Path(run_dir) / CONFIG_FILE, self.model.config.to_dict())

    def save(self, run_dir: Union[str, Path]) -> None:
        from ..runs import write_json_atomic

        save_model(self.model, run_dir)
        self.stats.save(run_dir)
        write_json_atomic(Path(run_dir) / METHOD_FILE, self.describe())

    @classmethod
    def load(cls, run_dir: Union[str, Path], device: str = "cpu") -> "FeatureAEDetector":
        from ..runs import read_json

        p = Path(run_dir)
        info = read_json(p / METHOD_FILE, None)
        if not isinstance(info, dict) or info.get("method") != cls.method:
            raise ModelFileError(f"{p / METHOD_FILE}: not a feature-ae method file")
        model = load_model(p, device=device)
        spec = model.config.input
        if spec is None:
            raise ModelFileError(f"{p}: config.json has no feature \"input\" field")
        shape = info.get("image_shape")
        if not (isinstance(shape, list) and len(shape) == 3 and all(isinstance(v, int) and v > 0 for v in shape)):
            raise ModelFileError(f"{p / METHOD_FILE}: image_shape must be three positive integers")
        # No codes while the fit runs: until it ends, the map alone scores (and method.json says so).
        stats = FeatureStats.load(p, model.config.in_channels, device)
        return cls(model, spec, tuple(shape), stats=stats, smooth_sigma=float(info.get("smooth_sigma", DEFAULT_SMOOTH)),
                   error=str(info.get("error", DEFAULT_ERROR)), score=str(info.get("score", DEFAULT_SCORE)),
                   topk_percent=float(info.get("topk_percent", TOPK_PERCENT)),
                   border=int(info.get("border", 0)),  # runs saved before the border: the whole map
                   latent_power=float(info.get("latent_power", 0.0)))  # and before the latent factor: none

    def to(self, device: Union[str, torch.device]) -> "FeatureAEDetector":
        self.model.to(device)
        self.stats = self.stats.to(device)
        if self.features is not None:
            self.features.to(device)
        return self

