"""The memory-bank detector (PatchCore, Roth et al. 2022): no training, a bank of normal patch features.

Fit: every training image goes once through the frozen backbone (`backbone.FeatureExtractor`:
EfficientNet-Lite0's stride-16 stage 5 and stride-32 stages 6 and 7, 3x3 neighbourhood pooling, the
stride-32 maps resized to the stride-16 grid); greedy k-center selection (`coreset.greedy_coreset`)
keeps a fraction of the patches as the bank, and each bank patch's spread (`coreset.bank_spread`:
its mean distance to its 9 nearest bank patches) is stored with it. Map: each patch of an image gets
the mean distance to its k nearest bank patches (k = 1 by default) divided by the nearest one's
spread, upsampled bilinearly to the input size. Image score: the mean of the top 10% of the map
after Gaussian smoothing, leaving out a band of 1/16 of the side at the photo's edges (the map's
maximum on small images); these are the scoring defaults in `describe()`, which every consumer
applies.

Why these layers: on magnetic_tile (bench/RESULTS.md, "Memory bank") the stride-8 + stride-16
features PatchCore uses see each patch's texture but not its context, and a region of a normal
texture in the wrong place (the "uneven" defects, a quarter of a photo) looked normal to them. The
stride-32 stages see most of a 256x256 image; with them image AUROC rose from 0.85 to 0.93 and pixel
AUROC from 0.76 to 0.82, within the time budget (bench/RESULTS.md).

Why the spread: a distance counted in units of the bank's local spacing (the local outlier factor's
idea; PatchCore's paper reweights its image score by the nearest patch's neighbourhood for the same
reason) tells a patch beside a sparse, varied kind of normal patch from one beside a tight cluster.
On magnetic_tile it lifted image AUROC from 0.948 to 0.977 and pixel AUROC from 0.819 to 0.836, at a
cost in AUPRO (0.692 to 0.645) and 4 s of fit (bench/RESULTS.md, "Memory bank").

Run folder: method.json (options, bank size, covering radius, timings) and bank.safetensors (the
bank, (M, D) float32, and its spread, (M,) float32). The backbone's weights come from the installed
weights package, not the run.
"""
from __future__ import annotations

import math
import threading
import time
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
from torch import nn

from .. import backbone as bb
from .. import run_status
from ..coreset import bank_spread, greedy_coreset, knn_chunk_rows
from ..tensor_files import read_tensors, write_tensors
from .bank_map import BankMap, patches
from .bank_options import DEFAULTS, NAME, SAVED_BEFORE_SCORE_OPTIONS, SAVED_BEFORE_SPREAD, check_options
from .base import METHOD_FILE, Detector, MapOutput

BANK_FILE = "bank.safetensors"
KNN_BUDGET = 64 << 20  # bytes of one chunk's (patches x bank) distance block

class MemoryBankDetector(Detector):
    """PatchCore-style detector: kNN distance of patch features to a coreset of normal patches."""

    method = NAME
    residuals = ("knn",)
    imagenet_features = True
    trains_epochs = False
    summary = "pretrained, no training"
    option_example = '{"coreset": 0.1, "k": 1}'
    preferred_side = 256  # its defaults were chosen on 256x256 photos (below 192 px it falls back to s8 + s16)

    def __init__(self, input_shape: tuple[int, int, int], options: dict, seed: int = 0,
                 bank: Optional[torch.Tensor] = None, stats: Optional[dict] = None,
                 spread: Optional[torch.Tensor] = None):
        self.input_shape = tuple(int(v) for v in input_shape)
        self.options, self.seed = options, int(seed)
        self.bank = bank  # (M, D) float32, None before fitting
        self.spread = spread  # (M,) float32 local spacing of the bank (spread_k > 0), else None
        self.stats = dict(stats or {})
        self.device = torch.device("cpu")
        self._features: Optional[bb.FeatureExtractor] = None

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def build(cls, input_shape: tuple[int, int, int], options: Optional[dict] = None, config: Any = None,
              seed: int = 0) -> "MemoryBankDetector":
        if config is not None:
            raise ValueError(f"config: the {NAME} method takes no model config")
        opts = check_options(options, input_shape)
        det = cls(input_shape, opts, seed)
        det.check_input(det.input_shape)
        return det

    @classmethod
    def feature_bytes_per_image(cls, input_shape: tuple[int, int, int], options: Optional[dict] = None,
                                config: Any = None) -> int:
        return bb.feature_bytes_per_image(input_shape, check_options(options, input_shape)["layers"])

    def check_input(self, shape: tuple[int, int, int]) -> None:
        super().check_input(shape)
        if shape[0] not in (1, 3):
            raise ValueError(f"channels: the {NAME} backbone takes 1 or 3, got {shape[0]}")
        if min(shape[1], shape[2]) < 16:
            raise ValueError(f"size {shape[1]}x{shape[2]}: the {NAME} method needs at least 16x16 pixels")

    @property
    def features(self) -> bb.FeatureExtractor:
        """The frozen backbone, loaded on first use (its weights are ~20 MB)."""
        if self._features is None:
            o = self.options
            self._features = bb.FeatureExtractor(o["layers"], o["pool"], o["backbone"]).to(self.device)
        return self._features

    def feature_shape(self) -> tuple[int, int, int]:
        return bb.feature_shape(self.input_shape, self.options["layers"])

    def describe(self) -> dict[str, Any]:
        d = {"method": NAME, "input_shape": list(self.input_shape), "seed": self.seed,
             **{k: self.options[k] for k in DEFAULTS}, "residual": "knn"}
        if self.stats:
            d["fit"] = self.stats
        return d

    # -- maps ---------------------------------------------------------------------------------
    def _need_bank(self) -> torch.Tensor:
        if self.bank is None:
            raise ValueError(f"{NAME}: not fitted (no bank)")
        return self.bank

    def map_meaning(self, residual: str) -> str:
        spread = (f" in units of that bank patch's spread (its mean distance to its {self.options['spread_k']} "
                  "nearest bank patches)" if self.spread is not None else "")
        return f"each patch's feature distance to its nearest normal patch in the bank{',' * bool(spread)}{spread}"

    def _kind(self, residual: Optional[str]) -> None:
        if residual not in (None, "knn"):
            raise ValueError(f"residual: must be one of knn for a {NAME} run, got {residual!r}")

    def map_module(self, residual: Optional[str] = None) -> nn.Module:
        self._kind(residual)
        return BankMap(self.features, self._need_bank(), self.options["k"], spread=self.spread).eval()

    def anomaly_maps(self, x: torch.Tensor, residual: Optional[str] = None) -> MapOutput:
        self._kind(residual)
        bank = self._need_bank()
        rows = knn_chunk_rows(bank.shape[0], KNN_BUDGET)
        with torch.inference_mode():
            m = BankMap(self.features, bank, self.options["k"], rows, self.spread)(x.to(self.device))
        return MapOutput(maps=m)

    def knn_peak_bytes(self) -> int:
        """Peak bytes of the chunked distance block while scoring (excluding the backbone's activations)."""
        m = self._need_bank().shape[0]
        return 4 * knn_chunk_rows(m, KNN_BUDGET) * m

    # -- fitting ------------------------------------------------------------------------------
    def embed(self, images: np.ndarray, batch_size: int = 16, stop_event: Optional[threading.Event] = None,
              progress=None) -> tuple[torch.Tensor, int]:
        """Patch features of uint8 images (N, H, W, C) -> ((N*h*w, D) float32, images embedded before a stop)."""
        from ..data import to_tensor

        d, h, w = self.feature_shape()
        n = len(images)
        out = torch.empty(n * h * w, d, dtype=torch.float32)  # filled in place: no list of batches + cat
        done = 0
        with torch.inference_mode():
            for s in range(0, n, batch_size):
                if stop_event is not None and stop_event.is_set():
                    break
                e = min(s + batch_size, n)
                f = self.features(to_tensor(images[s:e], self.device))  # (b, D, h, w)
                out[s * h * w:e * h * w] = patches(f).cpu()
                done = e
                if progress is not None:
                    progress(done, n)
        return out[: done * h * w], done

    def fit(self, train_images: np.ndarray, val_images: Optional[np.ndarray], settings: Any,
            run_dir: Union[str, Path], *, stop_event: Optional[threading.Event] = None,
            board: Any = None, resume: bool = False) -> str:
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        if resume:
            raise ValueError(f"{NAME}: a fit cannot be resumed; start a new run")
        try:
            return self._fit(train_images, settings, run_dir, stop_event, board)
        except Exception as e:
            msg = f"{type(e).__name__}: {e}"
            run_status.write_status(run_dir, "failed", msg)
            if board is not None:
                board.update(status="failed", message=msg, error=msg)
            raise

    def _fit(self, images: np.ndarray, settings: Any, run_dir: Path, stop_event, board) -> str:
        from ..settings import resolve_device

        if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4:
            raise ValueError("train images: must be uint8 (N, H, W, C)")
        shape = (images.shape[3], images.shape[1], images.shape[2])
        if shape != self.input_shape:
            raise ValueError(f"train images: {shape} (C, H, W) differ from the detector's {self.input_shape}")
        if len(images) == 0:
            raise ValueError("train images: none")
        bs = int(getattr(settings, "batch_size", 16) or 16)
        device = getattr(settings, "device", "cpu") or "cpu"
        self.to(resolve_device(device) if isinstance(device, str) else device)
        self.write_spec(run_dir)
        stopped = lambda: stop_event is not None and stop_event.is_set()  # noqa: E731

        def report(phase: int, message: str, step: int, steps: int, status: str = "running") -> None:
            if board is not None:
                board.update(status=status, epoch=phase, epochs=2, step=step, steps_per_epoch=steps, message=message)

        t0 = time.perf_counter()
        n = len(images)
        steps = math.ceil(n / bs)
        report(1, f"embedding images 0/{n}", 0, steps)
        run_status.write_status(run_dir, "running", f"embedding {n} images", epoch=0, epochs=2)
        last = [0.0]

        def embed_progress(done: int, total: int) -> None:
            report(1, f"embedding images {done}/{total}", math.ceil(done / bs), steps)
            if time.time() - last[0] > 5.0:  # heartbeat
                last[0] = time.time()
                run_status.write_status(run_dir, "running", f"embedding images {done}/{total}", epoch=0, epochs=2)

        feats, done = self.embed(images, bs, stop_event, embed_progress)
        t_embed = time.perf_counter() - t0
        if done == 0:
            msg = "stopped before any image was embedded (no bank)"
            run_status.write_status(run_dir, "stopped", msg, epoch=0, epochs=2)
            report(1, msg, 0, steps, status="stopped")
            return "stopped"

        def coreset_progress(step: int, total: int) -> None:
            report(2, f"selecting the coreset {step}/{total}", step, total)
            if time.time() - last[0] > 5.0:
                last[0] = time.time()
                run_status.write_status(run_dir, "running", f"selecting the coreset {step}/{total}", epoch=1, epochs=2)

        t1 = time.perf_counter()
        if stopped():  # stopped while embedding: keep a random subset of what was embedded
            g = torch.Generator().manual_seed(self.seed)
            m = max(1, math.ceil(self.options["coreset"] * len(feats)))
            idx, radius, was_stopped = torch.randperm(len(feats), generator=g)[:m].sort().values, None, True
        else:
            cs = greedy_coreset(feats, self.options["coreset"], proj_dim=self.options["proj_dim"],
                                seed=self.seed, stop_event=stop_event, progress=coreset_progress)
            idx, radius, was_stopped = cs.indices, cs.radius, cs.stopped
        self.bank = feats[idx].contiguous()
        t_coreset = time.perf_counter() - t1
        if self.options["spread_k"]:  # a few seconds (M x M distances in chunks): not worth a stop check
            report(2, f"measuring the bank's spread ({len(idx)} patches)", len(idx), len(idx))
            rows = knn_chunk_rows(len(idx), KNN_BUDGET)
            self.spread = bank_spread(self.bank, self.options["spread_k"], chunk_rows=rows)
        t_spread = time.perf_counter() - t1 - t_coreset
        status = "stopped" if was_stopped else "finished"
        self.stats = {"images": int(done), "patches": int(len(feats)), "bank": int(len(idx)),
                      "feature_dim": int(feats.shape[1]), "covering_radius": radius,
                      "embed_s": round(t_embed, 3), "coreset_s": round(t_coreset, 3), "spread_s": round(t_spread, 3),
                      "knn_peak_bytes": self.knn_peak_bytes(), "status": status}
        self.save(run_dir)
        msg = (f"bank of {len(idx)} patch{'es' * (len(idx) != 1)} from {done} image{'s' * (done != 1)}"
               + (f", covering radius {radius:.3g}" if radius is not None else "")
               + (" (stopped early)" if was_stopped else ""))
        run_status.write_status(run_dir, status, msg, epoch=2 if not was_stopped else 1, epochs=2)
        report(2, msg, len(idx), len(idx), status=status)
        return status

    # -- persistence --------------------------------------------------------------------------
    def save(self, run_dir: Union[str, Path]) -> None:
        from ..runs import write_json_atomic

        run_dir = Path(run_dir)
        tensors = {"bank": self._need_bank().float()}
        if self.spread is not None:
            tensors["spread"] = self.spread.float()
        write_tensors(run_dir / BANK_FILE, tensors)
        write_json_atomic(run_dir / METHOD_FILE, self.describe())

    @classmethod
    def load(cls, run_dir: Union[str, Path], device: str = "cpu") -> "MemoryBankDetector":
        from ..runs import read_json

        run_dir = Path(run_dir)
        info = read_json(run_dir / METHOD_FILE, None)
        if not isinstance(info, dict) or info.get("method") != NAME:
            raise ValueError(f"{run_dir / METHOD_FILE}: not a {NAME} method file")
        shape = info.get("input_shape")
        if not (isinstance(shape, list) and len(shape) == 3 and all(isinstance(v, int) and v > 0 for v in shape)):
            raise ValueError(f"{run_dir / METHOD_FILE}: input_shape must be [C, H, W], got {shape!r}")
        stored = {k: info[k] for k in DEFAULTS if k in info}
        if "border" not in info:
            stored.update(SAVED_BEFORE_SCORE_OPTIONS)
        if "spread_k" not in info:
            stored.update(SAVED_BEFORE_SPREAD)
        opts = check_options(stored, tuple(shape))
        path = run_dir / BANK_FILE
        if not path.is_file():
            raise ValueError(f"{path}: missing (the fit did not finish)")
        tensors, _ = read_tensors(path)
        bank = tensors.get("bank")
        want = bb.feature_shape(shape, opts["layers"])[0]
        if bank is None or bank.ndim != 2 or bank.shape[1] != want or bank.shape[0] < 1:
            got = None if bank is None else tuple(bank.shape)
            raise ValueError(f"{path}: bank must be (M, {want}) for layers {','.join(opts['layers'])}, got {got}")
        spread = tensors.get("spread") if opts["spread_k"] else None
        if opts["spread_k"] and (spread is None or tuple(spread.shape) != (bank.shape[0],)):
            got = None if spread is None else tuple(spread.shape)
            raise ValueError(f"{path}: spread must be ({bank.shape[0]},) for spread_k {opts['spread_k']}, got {got}")
        det = cls(tuple(shape), opts, int(info.get("seed", 0)), bank.float(), info.get("fit"),
                  None if spread is None else spread.float())
        return det.to(device)

    def to(self, device: Union[str, torch.device]) -> "MemoryBankDetector":
        self.device = torch.device(device)
        if self.bank is not None:
            self.bank = self.bank.to(self.device)
        if self.spread is not None:
            self.spread = self.spread.to(self.device)
        if self._features is not None:
            self._features.to(self.device)
        return self
