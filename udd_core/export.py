"""ONNX export of a run, with a parity check against udd's own scoring before anything is written.

The exported graph takes ``images``, float32 (N, C, H, W) in [0, 1] (uint8 / 255) at the run's
input size, N dynamic, and gives ``anomaly_map`` (N, 1, H, W), the map after the run's default
residual and smoothing, and ``score`` (N), the image score `udd score --json` reports. It is built
from the detector interface only (`map_module`, `image_scores` or `score_module`, and describe()'s
scoring defaults), so every registered method exports the same way.

Before the file is handed out, onnxruntime runs it on the run's normal validation images and its
maps and scores are compared with udd's (`reference_outputs`). The file, and a small JSON beside
it (input size, normalisation, threshold, parity figures), exist only when the largest relative
score difference is at most `TOLERANCE`; otherwise `ParityError` says by how much it failed.

Exporter: torch's TorchScript-based exporter (``dynamo=False``): see `_to_onnx` for why.
"""
from __future__ import annotations

import hashlib
import io
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
from torch import nn

from . import runs
from .atomic import check_new_file, write_bytes_atomic
from .data import to_tensor
from .display import score_text
from .methods import Detector, load_detector, run_method, scoring_record, scoring_with
from .metrics import threshold_for_fpr
from .residuals import smooth_maps
from .scoring import check_post_processing, fit_norm_stats, image_scores, outline_threshold, score_images

TOLERANCE = 1e-4  # largest relative score (and map) difference that passes parity
OPSETS = (13, 20)  # opsets the TorchScript exporter of torch 2.13 writes this graph in (closed range)
DEFAULT_OPSET = 17  # read by onnxruntime >= 1.11 and most C++ runtimes of the last years
TARGET_FPR = 0.01  # `udd score`'s default: the threshold written into the JSON
INPUT, OUTPUTS = "images", ("anomaly_map", "score")
_BATCH = 16  # images per onnxruntime / torch call in the parity check


class ParityError(RuntimeError):
    """The exported graph does not give udd's scores; the message says by how much (CLI exit 1)."""


@dataclass(frozen=True)
class Scoring:
    """The post-processing baked into the graph: map kind, smoothing, image score."""

    residual: str
    smooth_sigma: float
    score: str
    topk_percent: float
    border: int = 0  # px per side left out of the image score (not of the map)

    def to_dict(self) -> dict:
        return {"residual": self.residual, "smooth_sigma": self.smooth_sigma, "score": self.score,
                "topk_percent": self.topk_percent, "border": self.border}


@dataclass(frozen=True)
class Export:
    """An exported run: the ONNX file's bytes and the JSON written beside it."""

    onnx: bytes
    info: dict

    def json_text(self) -> str:
        return json.dumps(self.info, indent=2, allow_nan=False) + "\n"


def default_scoring(detector: Detector, residual: Optional[str] = None, smooth_sigma: Optional[float] = None,
                    score: Optional[str] = None, topk_percent: Optional[float] = None) -> Scoring:
    """The scoring `udd score` uses for this detector (`methods.scoring_with`: describe()'s defaults, else
    the first residual, no smoothing, the mean score, top 1 %, no border), checked. Arguments given override them."""
    post = scoring_with(detector, residual=residual, smooth_sigma=smooth_sigma, score=score, topk_percent=topk_percent)
    smooth, score, topk, border = check_post_processing(post["smooth_sigma"], post["score"], post["topk_percent"],
                                                        post["border"])
    return Scoring(residual=str(post["residual"]), smooth_sigma=smooth, score=score, topk_percent=topk, border=border)


class _OwnScores(nn.Module):
    """x (N, C, H, W) -> (N,) scores of a method whose score is not a map reduction (Deep SVDD)."""

    def __init__(self, detector: Detector):
        super().__init__()
        self.detector = detector  # not a Module: its tensors are traced in as constants

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.detector.image_scores(x)


class ExportGraph(nn.Module):
    """images (N, C, H, W) in [0, 1] -> (anomaly_map (N, 1, H, W), score (N,)), as udd scores them."""

    def __init__(self, detector: Detector, scoring: Scoring):
        super().__init__()
        self.maps = detector.map_module(scoring.residual)  # (N, C, H, W) -> (N, H, W)
        self.scores: Optional[nn.Module] = None  # None: the score reduces the smoothed map
        if callable(getattr(detector, "score_module", None)):
            self.scores = detector.score_module()
        elif detector.own_scores:
            self.scores = _OwnScores(detector)
        self.scoring = scoring

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.scoring
        # A method with a score factor gives its maps and the factor from one pass (`parts`).
        raw, factor = self.maps.parts(images) if hasattr(self.maps, "parts") else (self.maps(images), None)
        m = smooth_maps(raw, s.smooth_sigma)  # (N, H, W)
        score = self.scores(images) if self.scores is not None else image_scores(m, s.score, s.topk_percent, s.border)
        if factor is not None:
            score = score * factor
        return m.unsqueeze(1), score.reshape(-1)


def reference_outputs(detector: Detector, images: np.ndarray, scoring: Scoring) -> tuple[np.ndarray, np.ndarray]:
    """udd's own maps (N, H, W) and scores (N,) of uint8 images (N, H, W, C): `scoring.score_images`,
    the function behind `udd score` and Inspect, with the same post-processing."""
    res = score_images(detector, images, batch_size=_BATCH, keep_recon=False, **scoring.to_dict())
    return res.maps, res.scores


def _to_onnx(graph: ExportGraph, example: torch.Tensor, opset: int) -> bytes:
    """Trace ``graph`` on ``example`` (N, C, H, W) into ONNX bytes with a dynamic batch axis.

    The TorchScript exporter (``dynamo=False``), not the torch.export one: it writes the opset asked
    for (13-20; the dynamo exporter starts at 18 and silently keeps 18 when asked for less), it needs
    no onnxscript, and it exports the pixel AE in ~2 s where the dynamo path takes ~10 s on 2 cores.
    Its one risk, a value baked in by tracing, is what the parity check (run at other batch sizes
    than the traced one) catches. torch is pinned, so its deprecation warning is silenced here.
    """
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # TracerWarnings of shape checks, the exporter's deprecation note
        torch.onnx.export(graph, (example,), buf, dynamo=False, opset_version=opset, input_names=[INPUT],
                          output_names=list(OUTPUTS), do_constant_folding=True,
                          dynamic_axes={INPUT: {0: "N"}, OUTPUTS[0]: {0: "N"}, OUTPUTS[1]: {0: "N"}})
    return buf.getvalue()


def _with_metadata(model_bytes: bytes, props: dict[str, str]) -> bytes:
    """The model with ``props`` as metadata_props and a doc string, checked by onnx.checker."""
    import onnx

    model = onnx.load_from_string(model_bytes)
    model.doc_string = "udd anomaly detector: images (N,C,H,W) float32 in [0,1] -> anomaly_map (N,1,H,W), score (N)"
    for k, v in props.items():
        model.metadata_props.add(key=k, value=v)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def onnx_outputs(model_bytes: bytes, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Maps (N, H, W) and scores (N,) of uint8 images (N, H, W, C) from the ONNX model in onnxruntime.

    The first call takes one image and the rest go in batches of up to 16, so the dynamic batch
    axis is exercised at sizes other than the traced one.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # errors only: the session's info lines are noise for a user
    opts.intra_op_num_threads = max(1, torch.get_num_threads())
    sess = ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])
    maps, scores = [], []
    bounds = [0, 1, *range(1 + _BATCH, len(images), _BATCH), len(images)] if len(images) > 1 else [0, len(images)]
    for s, e in zip(bounds, bounds[1:]):
        x = to_tensor(images[s:e]).contiguous().numpy()  # (b, C, H, W) float32
        m, sc = sess.run(list(OUTPUTS), {INPUT: x})
        maps.append(np.asarray(m)[:, 0])
        scores.append(np.asarray(sc).reshape(-1))
    return np.concatenate(maps), np.concatenate(scores)


def parity(ref_maps: np.ndarray, ref_scores: np.ndarray, maps: np.ndarray, scores: np.ndarray) -> dict:
    """Largest differences between the ONNX outputs and udd's: relative to each score, and to the map scale.

    A score's relative difference is |onnx - udd| / |udd|, floored at 1e-6 of the largest |score|
    so that a score of (almost) exactly 0 does not divide by 0; when every udd score is exactly 0 (a
    latent-knn run of one image, checked on the image it stored), the difference is taken as it is,
    since float round-off of 1e-8 would otherwise be "1e22 times" nothing. Non-finite outputs count as inf.
    """
    if maps.shape != ref_maps.shape or scores.shape != ref_scores.shape:
        raise ParityError(f"parity failed: the ONNX outputs have shapes {maps.shape} and {scores.shape}, "
                          f"udd's {ref_maps.shape} and {ref_scores.shape}")
    d_s = np.abs(scores.astype(np.float64) - ref_scores)
    top = float(np.max(np.abs(ref_scores), initial=0.0))
    floor = top * 1e-6 if top > 0 else 1.0
    rel_s = d_s / np.maximum(np.abs(ref_scores.astype(np.float64)), floor)
    d_m = np.abs(maps.astype(np.float64) - ref_maps)
    scale = max(float(np.max(np.abs(ref_maps), initial=0.0)), 1e-30)

    def worst(a: np.ndarray) -> float:
        return float("inf") if not np.all(np.isfinite(a)) else float(np.max(a, initial=0.0))

    return {"images": int(len(ref_scores)), "max_rel_score_diff": worst(rel_s), "max_abs_score_diff": worst(d_s),
            "max_abs_map_diff": worst(d_m), "max_rel_map_diff": worst(d_m / scale), "tolerance": TOLERANCE}


def _input_description(kind: str, shape: tuple[int, int, int], tile: bool = False) -> dict:
    """The model input and how udd made it from a file (`images.decode_one`): a production line that
    resizes or converts otherwise gets other scores near the threshold."""
    c, h, w = shape
    channels = {1: "gray", 3: "RGB"}.get(c, f"{c} channels")
    if kind == "wafer":
        channels = "wafer one-hot: outside the wafer, good die, failing die (each 0 or 1)"
        steps = (f"die values 0/1/2 one-hot encoded; maps of another size resized to {h}x{w} by nearest "
                 "neighbour")
    else:
        convert = ("colour images to gray by Pillow's ITU-R 601-2 luma (L = R*299/1000 + G*587/1000 + B*114/1000)"
                   if c == 1 else "gray images repeated to 3 channels")
        fit = (f"cut into {h}x{w} tiles every {h} rows and {w} columns from the top-left, plus a last row and "
               "column flush with the bottom and right edges (overlapping) where the size is no multiple" if tile else
               f"resized to {w}x{h} (width x height, aspect ratio not kept) with Pillow's BILINEAR filter "
               "(JPEGs first decoded at Pillow's reduced draft scale no smaller than that)")
        steps = (f"8-bit (16-bit images scaled down: by 255/4095 when no value exceeds 4095, 12-bit camera data, "
                 f"else by 255/65535); {convert}; {fit}")
    norm = ("none: each channel is 0 or 1 as encoded" if kind == "wafer" else
            "uint8 pixel / 255, nothing else (no mean or std)")
    return {"name": INPUT, "shape": ["N", c, h, w], "dtype": "float32", "layout": "NCHW", "range": [0.0, 1.0],
            "normalisation": norm, "channels": channels, "preprocessing": steps}


def run_input_shape(detector: Detector, run: dict, run_dir: Path) -> tuple[int, int, int]:
    """The (C, H, W) the run was trained at: the detector's, else train.json's; ValueError without one."""
    shape = getattr(detector, "input_shape", None) or runs.train_shape(run)
    if not shape or len(shape) != 3:
        raise ValueError(f"{run_dir}: stores no input size, so it cannot be exported (export a run trained by udd)")
    return tuple(int(v) for v in shape)  # type: ignore[return-value]


def export_run(run_dir: Union[str, Path], opset: int = DEFAULT_OPSET, residual: Optional[str] = None,
               smooth_sigma: Optional[float] = None, score: Optional[str] = None,
               topk_percent: Optional[float] = None, data: Union[str, Path, None] = None) -> Export:
    """Export a run to ONNX in memory and check it against udd's scoring on the run's validation images.

    Returns the file's bytes and its JSON; raises ValueError (one line) for a run that cannot be
    exported and `ParityError` when onnxruntime's scores differ from udd's by more than `TOLERANCE`.
    The scoring arguments override the method's defaults (None: the default, as `udd score`); `data` is
    the run's training data where it is now, when it has moved since training.
    """
    import onnxruntime

    from . import __version__
    from .inspection_inputs import run_validation_images

    lo, hi = OPSETS
    if isinstance(opset, bool) or not isinstance(opset, int) or not lo <= opset <= hi:
        raise ValueError(f"opset: must be an integer in [{lo}, {hi}], got {opset!r}")
    p = Path(run_dir)
    if not p.is_dir():
        raise ValueError(f"{p}: no such run folder")
    method = run_method(p)
    detector = load_detector(p, device="cpu")  # a folder without a model: a one-line ModelFileError
    run = runs.read_train(p)
    if data is not None:  # the same images, moved: the split below picks the same validation images
        run = {**run, "data": {**runs.train_source(run), "path": str(data)}}
    shape = run_input_shape(detector, run, p)
    scoring = default_scoring(detector, residual, smooth_sigma, score, topk_percent)
    images, source, notes = run_validation_images(run, shape, exact=True)  # the line gets the run's threshold
    if images is None or not len(images):
        why = notes[0] if notes else runs.no_data_why(p)
        hint = "" if data is not None else " (where the data has moved, give its new place with --data PATH)"
        raise ValueError(f"{p}: no images to check parity on: {why}{hint}")

    ref_maps, ref_scores = reference_outputs(detector, images, scoring)
    threshold = threshold_for_fpr(ref_scores, TARGET_FPR)
    norm = fit_norm_stats(ref_maps)
    scaled = detector.own_scores or bool(detector.describe().get("image_score"))  # a score not in map units
    outline = outline_threshold(norm, threshold, scoring.score, scaled)  # Inspect's cyan outline, as a line needs it
    example = to_tensor(images[np.arange(2) % len(images)])  # (2, C, H, W): parity then runs 1 and up to 16
    graph = ExportGraph(detector, scoring).eval()
    model = _with_metadata(_to_onnx(graph, example, opset), {
        "udd.method": method, "udd.run": p.name, "udd.scoring": json.dumps(scoring.to_dict()),
        "udd.threshold": repr(threshold), "udd.version": __version__})
    maps, scores = onnx_outputs(model, images)
    par = parity(ref_maps, ref_scores, maps, scores)
    if not par["max_rel_score_diff"] <= TOLERANCE or not par["max_rel_map_diff"] <= TOLERANCE:
        raise ParityError(
            f"parity failed on {len(images)} {source} images: largest relative score difference "
            f"{par['max_rel_score_diff']:.3g} (allowed {TOLERANCE:g}), largest map difference "
            f"{par['max_rel_map_diff']:.3g} of the map's scale; nothing written")
    kind = str((run.get("data") or {}).get("kind", "image"))
    info: dict[str, Any] = {
        "format": "udd-onnx 1", "run": p.name, "method": method, "opset": opset,
        "input": _input_description(kind, shape, bool(runs.train_source(run).get("tile"))),
        "outputs": {OUTPUTS[0]: {"shape": ["N", 1, shape[1], shape[2]], "dtype": "float32"},
                    OUTPUTS[1]: {"shape": ["N"], "dtype": "float32"}},
        "scoring": scoring_record(detector, scoring.to_dict()),
        "threshold": threshold, "threshold_rule": "defective when score > threshold",
        "threshold_source": f"target FPR {TARGET_FPR:.2%} on the run's {len(images)} {source} images",
        "map_normalisation": {**norm.to_dict(), "rule": "heatmap value = (anomaly_map - mean) / std, "
                                                        "0 = a typical normal pixel (udd's fixed heatmap scale)",
                              "pixel_threshold": outline, "heatmap_top": 2 * outline,
                              "outline_rule": "udd outlines heatmap values above pixel_threshold (cyan) and colours "
                                              "0 to heatmap_top"},
        "parity": {**par, "source": source, "notes": notes},
        "sha256": hashlib.sha256(model).hexdigest(),
        "versions": {"udd": __version__, "torch": torch.__version__.split("+")[0],
                     "onnxruntime": onnxruntime.__version__},
    }
    return Export(model, info)


def sidecar_path(out: Union[str, Path]) -> Path:
    """The JSON written beside OUT.onnx: OUT.json."""
    return Path(out).with_suffix(".json")


def check_target(out: Union[str, Path], force: bool = False) -> tuple[Path, Path]:
    """(OUT.onnx, OUT.json) when both can be written; a one-line ValueError naming --onnx otherwise, checked
    before exporting (`atomic.check_new_file`, as `udd score --report` checks its file)."""
    what = f"--onnx {out}"
    if Path(out).suffix.lower() != ".onnx":
        raise ValueError(f"{what}: the file name must end in .onnx")
    onnx_path = check_new_file(out, what, force)
    side = sidecar_path(onnx_path)
    return onnx_path, check_new_file(side, f"{what}: {side}", force)


def parity_caption(export: Export) -> str:
    """One line on an export's check in onnxruntime, for the page that offers it: on how many images, the largest
    score and map differences against the tolerance, and the threshold the JSON carries."""
    par, n = export.info["parity"], export.info["parity"]["images"]
    return (f"Parity on {n} {par['source']} image{'s' * (n != 1)}: largest relative score difference "
            f"{par['max_rel_score_diff']:.2g}, largest map difference {par['max_rel_map_diff']:.2g} of its scale "
            f"(allowed {par['tolerance']:g}). Threshold {score_text(export.info['threshold'])} (defective when "
            "score > threshold).")


def write_export(export: Export, out: Union[str, Path], force: bool = False) -> tuple[Path, Path]:
    """Write OUT.onnx and OUT.json, each atomically; without ``force`` neither may exist yet."""
    onnx_path, side = check_target(out, force)
    write_bytes_atomic(onnx_path, export.onnx, durable=True, replace=force)
    try:
        write_bytes_atomic(side, export.json_text().encode("utf-8"), durable=True, replace=force)
    except OSError:
        onnx_path.unlink(missing_ok=True)  # no model without its JSON
        raise
    return onnx_path, side
