"""Training: settings, the headless training loop, and a background job the app and CLI drive.

The images stay in memory as uint8 (N, H, W, C) and become float tensors one batch at a time
(`data.to_tensor`), so a data set costs a quarter of its float size and no per-image Python runs
in the hot path. A `TrainJob` runs `train()` in a daemon thread; its progress is a lock-protected
board that UIs read as frozen `Progress` snapshots. Nothing here imports streamlit.
"""
from __future__ import annotations

import math
import os
import sys
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import numpy as np
import torch
from safetensors.torch import load_file

from . import runs
from .data import add_noise_patches, load_dataset, to_tensor
from .losses import LOSSES, make_loss
from .config import load_config
from .model import CONFIG_FILE, WEIGHTS_FILE, AutoEncoder, build_model, load_model, save_model
from .precision import PARITY_IMAGES, autocast, bf16_fast, check_bf16_parity
from .scoring import evaluating, fit_norm_stats, image_scores, residual_map

DEVICES = ("auto", "cpu", "cuda", "mps")
EMA_ALPHA = 0.1  # weight of the newest step in the smoothed per-step loss curve
HEARTBEAT_S = 10.0  # status.json heartbeat period while an epoch runs
CHECKPOINT_S = 120.0  # mid-epoch last.safetensors period, for epochs longer than this


# --- settings --------------------------------------------------------------------------------

@dataclass(frozen=True)
class TrainSettings:
    """Everything that shapes a training run; saved in train.json."""

    epochs: int = 50  # passes over the training images
    batch_size: int = 16  # images per optimiser step
    lr: float = 1e-3  # Adam learning rate
    betas: tuple[float, float] = (0.5, 0.999)  # Adam betas; the reference package's defaults
    weight_decay: float = 0.0  # Adam L2 weight decay
    lr_step: Optional[int] = None  # StepLR period in epochs; None keeps the learning rate constant
    lr_gamma: float = 0.5  # StepLR factor applied every lr_step epochs
    val_split: float = 0.1  # fraction of the (normal) training images held out for validation
    seed: int = 0  # seeds model init, the split, shuffling, noise and dropout: same seed, same losses
    loss: str = "mse"  # "mse", "ssim" or "mse+ssim"
    device: str = "auto"  # "auto" picks cuda, then mps, then cpu; or "cpu", "cuda", "cuda:1", "mps"
    noise_patches: int = 0  # 0: plain AE; >0: patches painted on the input, the clean image is the target
    patch_size: tuple[int, int] = (10, 100)  # min, max patch side in px (clamped to the image)
    n_probe: int = 4  # fixed validation images whose reconstructions are shown each epoch
    channels_last: bool = False  # NHWC weights and activations (can be faster on CPU/GPU convs)
    compile: bool = False  # torch.compile the model (slow first step, needs a C++ compiler on CPU)
    amp_bf16: bool = False  # bfloat16 autocast for the forward pass (fast on recent GPUs/CPUs)

    def __post_init__(self) -> None:
        _validate_settings(self)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TrainSettings":
        """Settings from a dict; missing keys take defaults, unknown keys or bad values raise ValueError."""
        if not isinstance(d, Mapping):
            raise ValueError(f"settings: expected a dict, got {type(d).__name__}")
        names = {f.name for f in fields(cls)}
        unknown = [k for k in d if k not in names]
        if unknown:
            raise ValueError(f"{unknown[0]}: unknown training setting")
        kw = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**kw)

    def replace(self, **changes: Any) -> "TrainSettings":
        """A validated copy with some fields changed."""
        return replace(self, **changes)


def _validate_settings(s: TrainSettings) -> None:
    def num(name: str, lo: float, hi: float = math.inf, integer: bool = False, lo_open: bool = False) -> None:
        v = getattr(s, name)
        ok_type = isinstance(v, int) if integer else isinstance(v, (int, float))
        if isinstance(v, bool) or not ok_type or not (lo < v if lo_open else lo <= v) or not v <= hi:
            kind = "an integer" if integer else "a number"
            raise ValueError(f"{name}: expected {kind} in {'(' if lo_open else '['}{lo}, {hi}], got {v!r}")

    num("epochs", 1, 1_000_000, integer=True)
    num("batch_size", 1, 1_000_000, integer=True)
    num("lr", 0, 10, lo_open=True)
    num("weight_decay", 0, 1)
    num("lr_gamma", 0, 1, lo_open=True)
    num("val_split", 0, 0.9)
    num("seed", 0, 2**63 - 1, integer=True)
    num("noise_patches", 0, 1000, integer=True)
    num("n_probe", 0, 16, integer=True)
    if s.lr_step is not None:
        num("lr_step", 1, 1_000_000, integer=True)
    for name, lo, hi, integer in (("betas", 0, 0.99999999, False), ("patch_size", 1, 100_000, True)):
        v = getattr(s, name)
        types = int if integer else (int, float)
        if not isinstance(v, tuple) or len(v) != 2 or any(
                isinstance(x, bool) or not isinstance(x, types) or not lo <= x <= hi for x in v):
            kind = "integers" if integer else "numbers"
            raise ValueError(f"{name}: expected a pair of {kind} in [{lo}, {hi}], got {v!r}")
    if s.patch_size[0] > s.patch_size[1]:
        raise ValueError(f"patch_size: min {s.patch_size[0]} is larger than max {s.patch_size[1]}")
    if s.loss not in LOSSES:
        raise ValueError(f"loss: must be one of {LOSSES}, got {s.loss!r}")
    if not isinstance(s.device, str) or s.device.split(":")[0] not in DEVICES:
        raise ValueError(f"device: must be one of {DEVICES} (or cuda:N), got {s.device!r}")
    for name in ("channels_last", "compile", "amp_bf16"):
        if not isinstance(getattr(s, name), bool):
            raise ValueError(f"{name}: expected true or false, got {getattr(s, name)!r}")


def training_presets() -> dict[str, TrainSettings]:
    """Named starting points, built fresh on each call."""
    return {
        # The reference package's optimiser: Adam(1e-3, betas (0.5, 0.999)), constant rate, MSE.
        "reference": TrainSettings(),
        # Wafer maps: small images, many of them; weight decay and a halving schedule against overfitting.
        "wafer": TrainSettings(epochs=120, batch_size=64, weight_decay=1e-3, lr_step=40, lr_gamma=0.5),
        # Magnetic-tile photos at 96x96 gray (bench/bench_quality.py): a denoising AE (two painted
        # patches per image) with an SSIM loss, insensitive to the photos' brightness differences.
        "magnetic-tile": TrainSettings(epochs=18, batch_size=8, loss="ssim", noise_patches=2, patch_size=(3, 19)),
    }


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda if available, else mps, else cpu; other names are checked for availability."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        return torch.device("mps" if mps is not None and mps.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device: {name!r} requested but CUDA is not available")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("device: 'mps' requested but it is not available")
    return torch.device(name)


def split_indices(n: int, val_split: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) indices of n images: a seeded random `val_split` share for validation.

    At least one image stays in each part when there are two or more and val_split > 0.
    """
    n_val = 0 if val_split <= 0 or n < 2 else min(n - 1, max(1, round(n * val_split)))
    order = np.random.default_rng([seed, 0x5A11]).permutation(n)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


NORMAL_LABELS = ("good", "none", "normal")  # labels of defect-free images (MVTec "good", WM-811K "none")


def normal_images(ds: Any) -> tuple[np.ndarray, Optional[str]]:
    """The defect-free images of a loaded ImageSet, and a note when labelled defects were left out.

    MVTec train splits hold only good images already; labelled wafer files mix normal maps and
    failure patterns, and an autoencoder must only ever learn the normal ones.
    """
    labels = [str(v).strip().lower() for v in ds.labels]
    keep = np.array([v in NORMAL_LABELS for v in labels], dtype=bool)
    if keep.all() or not keep.any():
        return ds.images, None
    return ds.images[keep], (f"trained on the {int(keep.sum())} normal images (labels {'/'.join(NORMAL_LABELS)}); "
                             f"{int((~keep).sum())} with other labels left out")


def seeded_model(config: Any, input_shape: tuple[int, int, int], seed: int) -> AutoEncoder:
    """build_model with weights drawn from `seed`, leaving the global RNG as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(config, input_shape)


# --- progress --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Progress:
    """A frozen snapshot of a job, safe to read from any thread."""

    status: str  # pending | running | finished | stopped | failed
    epoch: int  # current (1-based) epoch, or epochs done when not running
    epochs: int
    step: int  # step within the epoch
    steps_per_epoch: int
    train_loss: tuple[float, ...]  # per finished epoch, including earlier sessions of a resumed run
    val_loss: tuple[Optional[float], ...]  # per finished epoch; None without validation
    step_loss: tuple[float, ...]  # EMA-smoothed loss of every step this session
    lr: float
    images_per_s: float
    eta_s: Optional[float]
    probe_input: Optional[np.ndarray]  # (n_probe, H, W, C) uint8, read-only
    probe_recon: Optional[np.ndarray]  # (n_probe, H, W, C) uint8, refreshed each epoch, read-only
    message: str
    error: Optional[str]  # failure message
    error_where: Optional[str]  # "file:line in func" of the innermost frame
    run_dir: str
    notices: tuple[str, ...] = ()


@dataclass
class _Board:
    """The mutable progress a job's thread writes and snapshot() copies, under one lock."""

    run_dir: str
    epochs: int
    status: str = "pending"
    epoch: int = 0
    step: int = 0
    steps_per_epoch: int = 0
    train_loss: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    step_loss: list = field(default_factory=list)
    lr: float = 0.0
    images_per_s: float = 0.0
    eta_s: Optional[float] = None
    probe_input: Optional[np.ndarray] = None
    probe_recon: Optional[np.ndarray] = None
    message: str = ""
    error: Optional[str] = None
    error_where: Optional[str] = None
    notices: list = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def update(self, **kw: Any) -> None:
        with self.lock:
            for k, v in kw.items():
                setattr(self, k, v)

    def snapshot(self) -> Progress:
        with self.lock:
            d = {f.name: getattr(self, f.name) for f in fields(Progress)}
        for k in ("train_loss", "val_loss", "step_loss", "notices"):
            d[k] = tuple(d[k])
        return Progress(**d)


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.array(a, copy=True)
    a.flags.writeable = False
    return a


# --- the loop --------------------------------------------------------------------------------

class TrainingFailed(RuntimeError):
    """Training cannot go on (the loss diverged); the message says what to change."""


def _to_uint8(y: torch.Tensor) -> np.ndarray:
    """(B, C, H, W) float reconstructions -> (B, H, W, C) uint8 for display."""
    return y.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def _check_images(images: np.ndarray, model: AutoEncoder, what: str) -> None:
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(f"{what}: expected uint8 images (N, H, W, C), got "
                         f"{type(images).__name__} {getattr(images, 'dtype', '')} {getattr(images, 'shape', '')}")
    c = model.config.in_channels
    if images.shape[-1] != c:
        raise ValueError(f"{what}: images have {images.shape[-1]} channels, the model takes {c}")
    if model.input_shape is not None and tuple(images.shape[1:3]) != tuple(model.input_shape[1:]):
        raise ValueError(f"{what}: images are {images.shape[1]}x{images.shape[2]}, the model was built for "
                         f"{model.input_shape[1]}x{model.input_shape[2]}")


def _mean_loss(fwd, model, images, loss_fn, dev, bs, amp) -> float:
    """Image-weighted mean loss over `images` in eval mode, without gradients and without noise.

    Training passes amp=False: validation stays float32 even when the steps use bf16, so val losses
    (and the best-model choice) compare across precisions and with the reference package.
    """
    total = 0.0
    with evaluating(model):
        for s in range(0, len(images), bs):
            x = to_tensor(images[s:s + bs], dev)  # (b, C, H, W)
            with autocast(dev, amp):
                y = fwd(x)
            total += float(loss_fn(x, y.float())) * len(x)
    return total / len(images)


def _notice(board: _Board, text: str) -> None:
    with board.lock:
        board.notices.append(text)


def _start_bf16(model: AutoEncoder, images: np.ndarray, s: TrainSettings, dev: torch.device, board: _Board) -> bool:
    """Whether the steps may use bf16 autocast: asked for, fast on `dev`, and at parity on real images.

    The check feeds the first training images (with noise patches when the run paints them, from
    their own generator so the run's random streams are untouched) through the model in float32
    and in bf16, comparing the MSE and the weight gradients. Any refusal leaves a notice.
    """
    if not s.amp_bf16:
        return False
    if not bf16_fast(dev):
        _notice(board, f"bf16 autocast is not supported natively on {dev.type}; training in float32")
        return False
    batch = images[:PARITY_IMAGES]  # (b, H, W, C) uint8
    x = to_tensor(batch, dev)
    x_in = x
    if s.noise_patches:
        x_in = to_tensor(add_noise_patches(batch, s.noise_patches, s.patch_size,
                                           np.random.default_rng([s.seed, 0xB16])), dev)
    parity = check_bf16_parity(model, x_in, x, with_grad=True)
    if not parity.ok:
        _notice(board, f"{parity.describe()}: too far apart, training in float32")
        return False
    _notice(board, f"training in bf16 autocast ({parity.describe()}); validation stays float32")
    return True


def _recheck_bf16(model: AutoEncoder, images: np.ndarray, dev: torch.device, epoch: int, board: _Board) -> bool:
    """End-of-epoch loss parity on a few held-out images; False (and a notice) once bf16 has drifted."""
    x = to_tensor(images[:PARITY_IMAGES], dev)  # (b, C, H, W)
    parity = check_bf16_parity(model, x, x, with_grad=False)
    if parity.ok:
        return True
    _notice(board, f"epoch {epoch}: {parity.describe()}; float32 from now on")
    return False


def _save_trainer_state(run_dir: Path, opt, sched, epochs_done: int, best: float) -> None:
    state = {"optimizer": opt.state_dict(), "scheduler": sched.state_dict() if sched else {},
             "epochs_done": epochs_done, "best": best}
    path = run_dir / runs.TRAINER_STATE
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    except OSError as e:
        raise runs.storage_error(path, e) from None
    finally:
        tmp.unlink(missing_ok=True)


def _save(model: AutoEncoder, run_dir: Path, weights: str, meta: dict) -> None:
    try:
        save_model(model, run_dir, metadata={k: str(v) for k, v in meta.items()}, weights_name=weights)
    except OSError as e:
        raise runs.storage_error(run_dir / weights, e) from None


def calibrate(model: AutoEncoder, images: np.ndarray, device: Union[str, torch.device] = "cpu",
              batch_size: int = 32, topk_percent: float = 1.0) -> dict:
    """Residual statistics of normal images: l2 pixel NormStats and image scores (mean/max/topk).

    The Inspect page standardises heatmaps with these (never per-image min-max) and proposes
    thresholds from the score distribution.
    """
    maps, scores = [], {"mean": [], "max": [], "topk": []}
    with evaluating(model):
        for s in range(0, len(images), batch_size):
            x = to_tensor(images[s:s + batch_size], device)  # (b, C, H, W)
            m = residual_map(x, model(x), "l2")  # (b, H, W)
            maps.append(m.float().cpu())
            for k in scores:
                scores[k] += image_scores(m, k, topk_percent).float().cpu().tolist()
    stats = fit_norm_stats(torch.cat(maps))

    def summary(v: list) -> dict:
        a = np.asarray(v, dtype=np.float64)
        return {"mean": float(a.mean()), "std": float(a.std()), "q95": float(np.quantile(a, 0.95)),
                "q99": float(np.quantile(a, 0.99)), "max": float(a.max())}

    return {"residual": "l2", "n_images": len(images), "norm": stats.to_dict(), "topk_percent": topk_percent,
            "scores": scores, "score_stats": {k: summary(v) for k, v in scores.items()}}


def train(model: AutoEncoder, train_images: np.ndarray, val_images: Optional[np.ndarray],
          settings: TrainSettings, run_dir: Union[str, Path], *, stop_event: Optional[threading.Event] = None,
          board: Optional[_Board] = None, resume: bool = False) -> str:
    """Train `model` on uint8 images, writing checkpoints, history and status into `run_dir`.

    Returns the final status: "finished", or "stopped" when `stop_event` was set (checked at
    every batch boundary; weights and optimizer state are saved so the run can be resumed).
    With `resume`, weights and optimizer state come from the run's last checkpoint and the
    epoch count continues. Failures set status "failed" in status.json and re-raise.
    """
    run_dir, s = Path(run_dir), settings
    stop_event = stop_event or threading.Event()
    board = board or _Board(str(run_dir), s.epochs)
    try:
        return _train(model, train_images, val_images, s, run_dir, stop_event, board, resume)
    except Exception as e:
        msg = str(e) or type(e).__name__
        try:
            runs.write_status(run_dir, "failed", msg)
        except (OSError, ValueError):
            pass  # the folder itself may be what failed; the job's snapshot still says why
        board.update(status="failed", message=msg)
        raise


def _train(model, train_images, val_images, s, run_dir, stop_event, board, resume) -> str:
    _check_images(train_images, model, "training images")
    if len(train_images) == 0:
        raise ValueError("training images: none given")
    has_val = val_images is not None and len(val_images) > 0
    if has_val:
        _check_images(val_images, model, "validation images")
    dev = resolve_device(s.device)
    n, bs = len(train_images), s.batch_size
    steps = math.ceil(n / bs)
    model.to(dev)
    if s.channels_last:
        model.to(memory_format=torch.channels_last)
    fwd = torch.compile(model) if s.compile else model
    opt = torch.optim.Adam(model.parameters(), lr=s.lr, betas=s.betas, weight_decay=s.weight_decay)
    sched = torch.optim.lr_scheduler.StepLR(opt, s.lr_step, s.lr_gamma) if s.lr_step else None
    loss_fn = make_loss(s.loss)
    history = runs.read_history(run_dir) if resume else []
    done, best = len(history), math.inf
    if resume:
        done, best = _restore(model, opt, sched, run_dir, history)
    probe = (val_images if has_val else train_images)[: s.n_probe]
    amp = _start_bf16(model, train_images, s, dev, board)
    board.update(status="running", epoch=done, step=0, steps_per_epoch=steps, epochs=s.epochs,
                 train_loss=[r.get("train_loss") for r in history], val_loss=[r.get("val_loss") for r in history],
                 probe_input=_frozen(probe) if len(probe) else None, lr=opt.param_groups[0]["lr"])
    if not resume:  # a process killed in epoch 1 still leaves a loadable checkpoint behind
        _save(model, run_dir, runs.LAST_WEIGHTS, {"epoch": 0, "partial": 1})
    runs.write_status(run_dir, "running", f"epoch {done + 1}/{s.epochs}", epoch=done, epochs=s.epochs)
    ema, beat, t_session, imgs_session = None, time.monotonic(), time.monotonic(), 0
    saved = beat
    stopped = False
    for epoch in range(done + 1, s.epochs + 1):
        # One generator per epoch: the run is reproducible, and a resumed epoch draws what it would have.
        rng = np.random.default_rng([s.seed, epoch])
        torch.manual_seed(int(rng.integers(2**62)))  # dropout draws from torch's global generator
        order = rng.permutation(n)
        lr = opt.param_groups[0]["lr"]
        model.train()
        t0, total = time.monotonic(), 0.0
        for step in range(1, steps + 1):
            if stop_event.is_set():
                stopped = True
                break
            batch = train_images[order[(step - 1) * bs: step * bs]]  # (b, H, W, C) uint8
            x = to_tensor(batch, dev)  # (b, C, H, W) float in [0, 1]: the clean target
            x_in = x  # denoising: the model sees painted patches and must give back the clean batch
            if s.noise_patches:
                x_in = to_tensor(add_noise_patches(batch, s.noise_patches, s.patch_size, rng), dev)
            opt.zero_grad(set_to_none=True)
            with autocast(dev, amp):
                y = fwd(x_in)
            loss = loss_fn(x, y.float())
            loss.backward()
            opt.step()
            lv = loss.item()
            if not math.isfinite(lv):
                raise TrainingFailed(f"loss became {lv} at epoch {epoch} step {step}; lower the learning rate")
            total += lv * len(batch)
            imgs_session += len(batch)
            ema = lv if ema is None else (1 - EMA_ALPHA) * ema + EMA_ALPHA * lv
            now = time.monotonic()
            rate = imgs_session / max(now - t_session, 1e-9)
            left = (steps - step) * bs + (s.epochs - epoch) * n
            with board.lock:
                board.epoch, board.step, board.lr, board.images_per_s, board.eta_s = epoch, step, lr, rate, left / rate
                board.step_loss.append(ema)
                board.message = f"epoch {epoch}/{s.epochs}"
            if now - beat > HEARTBEAT_S:
                runs.write_status(run_dir, "running", f"epoch {epoch}/{s.epochs} step {step}/{steps}",
                                  epoch=epoch - 1, epochs=s.epochs)
                beat = now
            if now - saved > CHECKPOINT_S:  # long epochs: a crash loses at most this much work
                _save(model, run_dir, runs.LAST_WEIGHTS, {"epoch": epoch - 1, "partial": 1})
                saved = now
        if stopped:
            break
        seconds = time.monotonic() - t0
        train_loss = total / n
        val_loss = _mean_loss(fwd, model, val_images, loss_fn, dev, 2 * bs, False) if has_val else None
        epoch_amp = amp
        if amp:  # bf16 error grows relative to a shrinking loss: re-check it on held-out images
            amp = _recheck_bf16(model, val_images if has_val else train_images, dev, epoch, board)
        if val_loss is not None and not math.isfinite(val_loss):
            raise TrainingFailed(f"validation loss became {val_loss} at epoch {epoch}; lower the learning rate")
        if sched is not None:
            sched.step()
        monitor = val_loss if has_val else train_loss
        if monitor < best:
            best = monitor
            _save(model, run_dir, WEIGHTS_FILE, {"epoch": epoch, "loss": monitor})
        _save(model, run_dir, runs.LAST_WEIGHTS, {"epoch": epoch})
        _save_trainer_state(run_dir, opt, sched, epoch, best)
        runs.append_history(run_dir, {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "lr": lr,
                                      "seconds": round(seconds, 3), "images_per_s": round(n / max(seconds, 1e-9), 2),
                                      "best": monitor == best, "precision": "bf16" if epoch_amp else "float32"})
        recon = None
        if len(probe):
            with evaluating(model):
                recon = _frozen(_to_uint8(fwd(to_tensor(probe, dev))))
        with board.lock:
            board.train_loss.append(train_loss)
            board.val_loss.append(val_loss)
            board.probe_recon = recon
            board.epoch = epoch
        runs.write_status(run_dir, "running", f"epoch {epoch}/{s.epochs} done", epoch=epoch, epochs=s.epochs)
        beat = time.monotonic()
        done = epoch
    if stopped:
        # Keep the work of the interrupted epoch: resume continues from these weights.
        _save(model, run_dir, runs.LAST_WEIGHTS, {"epoch": done, "partial": 1})
        _save_trainer_state(run_dir, opt, sched, done, best)
        if not (run_dir / WEIGHTS_FILE).is_file():  # stopped in epoch 1: still leave a loadable model
            _save(model, run_dir, WEIGHTS_FILE, {"epoch": done, "partial": 1})
    _write_calibration(run_dir, val_images if has_val else train_images, dev, 2 * bs,
                       "validation" if has_val else "train")
    status = "stopped" if stopped else "finished"
    msg = (f"stopped after {done} of {s.epochs} epochs" if stopped else
           f"finished {s.epochs} epoch{'s' if s.epochs != 1 else ''}") + \
        (f"; best {'validation' if has_val else 'training'} loss {best:.4g}" if math.isfinite(best) else "")
    runs.write_status(run_dir, status, msg, epoch=done, epochs=s.epochs)
    board.update(status=status, message=msg, epoch=done, eta_s=0.0 if not stopped else None)
    model.eval()  # whoever uses job.model next reconstructs, not trains
    return status


def _restore(model, opt, sched, run_dir: Path, history: list) -> tuple[int, float]:
    """Load last weights and optimizer state; (epochs done, best monitored loss)."""
    last = run_dir / runs.LAST_WEIGHTS
    if not last.is_file():
        raise ValueError(f"{run_dir}: nothing to resume ({runs.LAST_WEIGHTS} is missing)")
    model.load_state_dict(load_file(str(last), device="cpu"))
    done = len(history)
    losses = [r["val_loss"] if r.get("val_loss") is not None else r.get("train_loss") for r in history]
    best = min((v for v in losses if isinstance(v, (int, float))), default=math.inf)
    state_file = run_dir / runs.TRAINER_STATE
    if state_file.is_file():
        state = torch.load(state_file, map_location="cpu", weights_only=True)  # plain tensors/numbers only
        opt.load_state_dict(state["optimizer"])
        if sched is not None and state.get("scheduler"):
            sched.load_state_dict(state["scheduler"])
        if isinstance(state.get("best"), float):
            best = min(best, state["best"])
    elif sched is not None:
        sched.last_epoch = done  # no saved state: at least keep the schedule in step with the epochs
    return done, best


def _write_calibration(run_dir: Path, images: np.ndarray, dev, bs: int, source: str) -> None:
    if not (run_dir / WEIGHTS_FILE).is_file() or len(images) == 0:
        return
    best = load_model(run_dir, device=str(dev))
    cal = calibrate(best, images, dev, bs)
    cal.update(source=source, weights=WEIGHTS_FILE, epoch=int(best.metadata.get("epoch", 0)),
               created=runs.now_iso())
    runs.write_json_atomic(run_dir / runs.CALIBRATION_FILE, cal)


# --- the job ---------------------------------------------------------------------------------

class TrainJob:
    """One run trained in a daemon thread: start(), stop(), join(), snapshot()."""

    def __init__(self, run_dir: Union[str, Path], model: AutoEncoder, train_images: np.ndarray,
                 val_images: Optional[np.ndarray], settings: TrainSettings, resume: bool = False,
                 notices: tuple[str, ...] = ()):
        self.run_dir = Path(run_dir)
        self.name = self.run_dir.name
        self.settings = settings
        self.model = model  # trained in place; holds the latest weights
        self._data = (train_images, val_images)
        self.n_train, self.n_val = len(train_images), 0 if val_images is None else len(val_images)
        self._resume = resume
        self._stop = threading.Event()
        self._done = threading.Event()  # set when the thread ends; waited on instead of Thread.join, see join()
        self._board = _Board(str(self.run_dir), settings.epochs, notices=list(notices))
        self._thread: Optional[threading.Thread] = None

    @classmethod
    def create(cls, run_dir: Union[str, Path], config: Any, input_shape: tuple[int, int, int], images: np.ndarray,
               settings: TrainSettings, source: Optional[Mapping[str, Any]] = None) -> "TrainJob":
        """A new run in `run_dir` (refused if it exists and is not empty) for normal images (N, H, W, C) uint8.

        Builds a seeded model (shapes checked), splits off the validation images, and writes
        config.json, train.json and status.json. `source` describes the data (path, kind, tile).
        """
        model = seeded_model(config, tuple(input_shape), settings.seed)
        _check_images(images, model, "images")
        if len(images) == 0:
            raise ValueError("images: none given")
        tr, va = split_indices(len(images), settings.val_split, settings.seed)
        notices = []
        if settings.val_split > 0 and len(va) == 0:
            notices.append(f"only {len(images)} image: no validation; the best model follows the training loss")
        run_dir = runs.create_run_dir(run_dir)
        runs.write_json_atomic(run_dir / CONFIG_FILE, model.config.to_dict())
        from . import __version__
        info = {"settings": settings.to_dict(), "input_shape": list(input_shape),
                "data": {**dict(source or {}), "count": len(images), "n_train": len(tr), "n_val": len(va)},
                "versions": {"udd": __version__, "torch": torch.__version__, "numpy": np.__version__,
                             "python": sys.version.split()[0]},
                "created": runs.now_iso(), "resumed": []}
        runs.write_json_atomic(run_dir / runs.TRAIN_FILE, info)
        runs.write_status(run_dir, "stopped", "created; not started yet", epoch=0, epochs=settings.epochs)
        return cls(run_dir, model, images[tr], images[va] if len(va) else None, settings, notices=tuple(notices))

    @classmethod
    def resume(cls, run_dir: Union[str, Path], images: Optional[np.ndarray] = None, epochs: Optional[int] = None,
               device: Optional[str] = None) -> "TrainJob":
        """Continue a stopped, interrupted or finished run from last.safetensors and its optimizer state.

        `images` are all the run's normal images (reloaded from train.json's data path when None);
        `epochs` raises the total epoch count. History is appended to, never rewritten.
        """
        run_dir = Path(run_dir)
        info = runs.read_json(run_dir / runs.TRAIN_FILE)
        if not isinstance(info, dict) or "settings" not in info:
            raise ValueError(f"{run_dir}: not a run folder (no readable {runs.TRAIN_FILE})")
        st = runs.read_status(run_dir)
        if st["status"] == "running":
            raise ValueError(f"run {run_dir.name}: is still being trained (pid {st.get('pid')}); stop it first")
        settings = TrainSettings.from_dict(info["settings"])
        settings = settings.replace(**{k: v for k, v in (("epochs", epochs), ("device", device)) if v is not None})
        done = len(runs.read_history(run_dir))
        if done >= settings.epochs:
            raise ValueError(f"run {run_dir.name}: already has {done} epochs; "
                             f"ask for more than {settings.epochs} epochs")
        c, h, w = (int(v) for v in info["input_shape"])
        data = info.get("data") or {}
        if images is None:
            if not data.get("path"):
                raise ValueError(f"run {run_dir.name}: train.json names no data path; pass the images")
            ds = load_dataset(data["path"], (c, h, w), split="train", tile=bool(data.get("tile", False)))
            images, _ = normal_images(ds)
        if data.get("count") not in (None, len(images)):
            raise ValueError(f"run {run_dir.name}: was trained on {data['count']} images, got {len(images)}; "
                             "resume needs the same data")
        model = AutoEncoder(load_config(run_dir / CONFIG_FILE), (c, h, w))
        _check_images(images, model, "images")
        tr, va = split_indices(len(images), settings.val_split, settings.seed)
        info["settings"] = settings.to_dict()
        info["resumed"] = list(info.get("resumed", [])) + [{"time": runs.now_iso(), "after_epoch": done}]
        runs.write_json_atomic(run_dir / runs.TRAIN_FILE, info)
        return cls(run_dir, model, images[tr], images[va] if len(va) else None, settings, resume=True)

    def start(self) -> "TrainJob":
        """Start training in a daemon thread (once)."""
        if self._thread is not None:
            raise RuntimeError(f"job {self.name}: already started")
        self._board.update(status="running", message="starting")
        self._thread = threading.Thread(target=self._run, name=f"udd-train-{self.name}", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        train_images, val_images = self._data
        try:
            train(self.model, train_images, val_images, self.settings, self.run_dir,
                  stop_event=self._stop, board=self._board, resume=self._resume)
        except BaseException as e:  # noqa: BLE001 - a thread's exception must land in the snapshot, never be lost
            frames = traceback.extract_tb(e.__traceback__)
            where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno} in {frames[-1].name}" if frames else ""
            msg = str(e) or type(e).__name__
            if not isinstance(e, (TrainingFailed, ValueError, OSError)):
                msg = f"{type(e).__name__}: {msg}"
            self._board.update(status="failed", message=msg, error=msg, error_where=where, eta_s=None)
        finally:
            self._data = (None, None)  # let the image cache go once the job is over
            self._done.set()

    def stop(self) -> None:
        """Ask the job to stop at the next batch boundary; checkpoints are kept (status "stopped")."""
        self._stop.set()

    def join(self, timeout: Optional[float] = None) -> bool:
        """Wait for the thread; True when it has ended (or never started).

        Waits on an Event rather than in Thread.join: on Python < 3.12, a Ctrl-C landing inside
        Thread.join marks a still-running thread as stopped (bpo-45274), and the process then
        exits under the training thread's feet.
        """
        if self._thread is None:
            return True
        if self._done.wait(timeout):
            self._thread.join()  # the thread is past its last statement: returns at once
        return not self.is_alive()

    def is_alive(self) -> bool:
        """True while the training thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def snapshot(self) -> Progress:
        """A frozen copy of the progress, cheap enough to poll several times a second."""
        return self._board.snapshot()


class JobManager:
    """The training jobs of one process, by run name: a page refresh can find its running job again."""

    def __init__(self) -> None:
        self._jobs: dict[str, TrainJob] = {}
        self._lock = threading.Lock()

    def start(self, job: TrainJob) -> TrainJob:
        """Register and start `job`; refused while another job trains the same run."""
        with self._lock:
            old = self._jobs.get(job.name)
            if old is not None and old is not job and old.is_alive():
                raise ValueError(f"run {job.name}: a training job is already running for it")
            self._jobs[job.name] = job
        return job.start()

    def get(self, name: str) -> Optional[TrainJob]:
        """The latest job of run `name`, running or ended; None if there is none."""
        with self._lock:
            return self._jobs.get(name)

    def active(self) -> list[TrainJob]:
        """Jobs whose thread is still running."""
        with self._lock:
            return [j for j in self._jobs.values() if j.is_alive()]

    def stop_all(self, timeout: Optional[float] = None) -> bool:
        """Stop every job and wait up to `timeout` s for each; True when all have ended."""
        jobs = self.active()
        for j in jobs:
            j.stop()
        return all(j.join(timeout) for j in jobs)
