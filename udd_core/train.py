"""Training: the headless loop that fits an autoencoder to normal images, and its checkpoints.

The images stay in memory as uint8 (N, H, W, C) and become float tensors one batch at a time
(`data.to_tensor`), so a data set costs a quarter of its float size and no per-image Python runs
in the hot path. `jobs.TrainJob` runs `train()` in a daemon thread; its progress goes to a
`progress.ProgressBoard`. Nothing here imports streamlit.
"""
from __future__ import annotations

import math
import threading
import time
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch

from . import runs
from . import run_status
from .atomic import write_atomic
from .data import add_noise_patches, to_tensor
from .feeds import ImageFeed, as_feed
from .images import load_patterns
from .losses import check_loss_fits, loss_scoring, make_loss
from .model import WEIGHTS_FILE, AutoEncoder, build_model, load_model, save_model
from .progress import ProgressBoard, fit_handles, frozen_copy
from .settings import TrainSettings, resolve_device
from .precision import PARITY_IMAGES, autocast, bf16_fast, check_bf16_parity
from .scoring import calibrate, evaluating
from .tensor_files import read_tensors

EMA_ALPHA = 0.1  # weight of the newest step in the smoothed per-step loss curve
HEARTBEAT_S = 10.0  # status.json heartbeat period while an epoch runs
CHECKPOINT_S = 120.0  # mid-epoch last.safetensors period, for epochs longer than this


def seeded_model(config: Any, input_shape: tuple[int, int, int], seed: int) -> AutoEncoder:
    """build_model with weights drawn from `seed`, leaving the global RNG as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(config, input_shape)


# --- the loop --------------------------------------------------------------------------------

class TrainingFailed(RuntimeError):
    """Training cannot go on (the loss diverged); the message says what to change."""


def check_images(images: np.ndarray, model: Union[AutoEncoder, tuple[int, int, int]], what: str) -> None:
    """Refuse images (N, H, W, C) whose size or channels do not fit the model (or an input shape (C, H, W)), naming `what`.

    A feed of cached features (`feeds.FeatureFeed`) is checked by its tensor shape instead.
    """
    if isinstance(images, ImageFeed):
        images = images.images
    elif not isinstance(images, np.ndarray) and hasattr(images, "features"):
        want = model.input_shape if isinstance(model, AutoEncoder) else tuple(model)
        if want is not None and tuple(images.shape) != tuple(want):
            raise ValueError(f"{what}: features are {'x'.join(map(str, images.shape))}, the model was built for "
                             f"{'x'.join(map(str, want))}")
        return
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(f"{what}: expected uint8 images (N, H, W, C), got "
                         f"{type(images).__name__} {getattr(images, 'dtype', '')} {getattr(images, 'shape', '')}")
    shape = model.input_shape if isinstance(model, AutoEncoder) else tuple(model)
    c = model.config.in_channels if isinstance(model, AutoEncoder) else shape[0]
    if images.shape[-1] != c:
        raise ValueError(f"{what}: images have {images.shape[-1]} channels, the model takes {c}")
    if shape is not None and tuple(images.shape[1:3]) != tuple(shape[1:]):
        raise ValueError(f"{what}: images are {images.shape[1]}x{images.shape[2]}, the model was built for "
                         f"{shape[1]}x{shape[2]}")


def _mean_loss(fwd, model, feed, loss_fn, dev, bs, amp) -> float:
    """Image-weighted mean loss over `images` in eval mode, without gradients and without noise.

    Training passes amp=False: validation stays float32 even when the steps use bf16, so val losses
    (and the best-model choice) compare across precisions and with the reference package.
    """
    total = 0.0
    with evaluating(model):
        for s in range(0, len(feed), bs):
            x = feed.tensor(slice(s, s + bs), dev)  # (b, C, H, W)
            with autocast(dev, amp):
                y = fwd(x)
            total += float(loss_fn(x, y.float())) * len(x)
    return total / len(feed)


def _notice(board: ProgressBoard, text: str) -> None:
    with board.lock:
        board.notices.append(text)


def _start_bf16(model: AutoEncoder, feed, s: TrainSettings, dev: torch.device, board: ProgressBoard,
                history: list[dict], check_feed) -> bool:
    """Whether the steps may use bf16 autocast: asked for, fast on `dev`, and at parity on real images.

    A new run: the check feeds the first training images (with noise patches when the run paints
    them, from their own generator so the run's random streams are untouched) through the model in
    float32 and in bf16, comparing the MSE and the weight gradients. A resumed run (its `history`)
    goes on as its last epoch trained: in float32 once bf16 had drifted, else after the end-of-epoch
    loss check on `check_feed`. The gradient check is not repeated there: near a minimum the float32
    gradient is small, so bf16's rounding is large relative to it although the epochs trained in
    bf16 kept the loss at parity. Any refusal leaves a notice.
    """
    if not s.amp_bf16:
        return False
    if not bf16_fast(dev):
        _notice(board, f"bf16 autocast is not supported natively on {dev.type}; training in float32")
        return False
    last = history[-1].get("precision") if history else None
    if last == "float32":
        _notice(board, f"epoch {len(history)} trained in float32, so the resumed epochs do too")
        return False
    if last == "bf16":
        if not _recheck_bf16(model, check_feed, dev, len(history), board):
            return False
        _notice(board, f"resuming in bf16 autocast, as epoch {len(history)} trained; validation stays float32")
        return True
    x = feed.tensor(slice(0, PARITY_IMAGES), dev)  # (b, C, H, W)
    x_in = x
    if s.noise_patches and feed.paints_noise:
        batch = feed.images[:PARITY_IMAGES]  # (b, H, W, C) uint8
        x_in = to_tensor(add_noise_patches(batch, s.noise_patches, s.patch_size,
                                           np.random.default_rng([s.seed, 0xB16])), dev)
    parity = check_bf16_parity(model, x_in, x, with_grad=True)
    if not parity.ok:
        _notice(board, f"{parity.describe()}: too far apart, training in float32")
        return False
    _notice(board, f"training in bf16 autocast ({parity.describe()}); validation stays float32")
    return True


def _recheck_bf16(model: AutoEncoder, feed, dev: torch.device, epoch: int, board: ProgressBoard) -> bool:
    """End-of-epoch loss parity on a few held-out images; False (and a notice) once bf16 has drifted."""
    x = feed.tensor(slice(0, PARITY_IMAGES), dev)  # (b, C, H, W)
    parity = check_bf16_parity(model, x, x, with_grad=False)
    if parity.ok:
        return True
    _notice(board, f"epoch {epoch}: {parity.describe()}; float32 from now on")
    return False


def _save_trainer_state(run_dir: Path, opt, sched, epochs_done: int, best: float) -> None:
    state = {"optimizer": opt.state_dict(), "scheduler": sched.state_dict() if sched else {},
             "epochs_done": epochs_done, "best": best}
    path = run_dir / runs.TRAINER_STATE
    try:
        write_atomic(path, lambda tmp: torch.save(state, tmp))
    except OSError as e:
        raise runs.storage_error(path, e) from None


def _save(model: AutoEncoder, run_dir: Path, weights: str, meta: dict) -> None:
    try:
        save_model(model, run_dir, metadata={k: str(v) for k, v in meta.items()}, weights_name=weights)
    except OSError as e:
        raise runs.storage_error(run_dir / weights, e) from None


def train(model: AutoEncoder, train_images: np.ndarray, val_images: Optional[np.ndarray],
          settings: TrainSettings, run_dir: Union[str, Path], *, stop_event: Optional[threading.Event] = None,
          board: Optional[ProgressBoard] = None, resume: bool = False, calibrate: bool = True,
          then: Optional[str] = None) -> str:
    """Train `model` on uint8 images, writing checkpoints, history and status into `run_dir`.

    `train_images` and `val_images` may also be feeds (`feeds.FeatureFeed`: cached backbone
    features); the loop is the same, and the live probes show what the feed makes of the outputs.
    `calibrate=False` leaves calibration.json to the caller (a detector whose maps are not pixel residuals).
    `then`: what the caller does next with a finished training (a method's own phase), said in status.json,
    which stays "running" (QA sweep 19b: a Deep SVDD run read "finished" between its two phases).

    Returns the final status: "finished", or "stopped" when `stop_event` was set (checked at
    every batch boundary; weights and optimizer state are saved so the run can be resumed).
    With `resume`, weights and optimizer state come from the run's last checkpoint and the
    epoch count continues. Failures set status "failed" in status.json and re-raise.
    """
    s = settings
    run_dir, stop_event, board = fit_handles(run_dir, s.epochs, stop_event, board)
    try:
        return _train(model, as_feed(train_images), as_feed(val_images), s, run_dir, stop_event, board, resume,
                      calibrate, then)
    except Exception as e:
        msg = str(e) or type(e).__name__
        try:
            run_status.write_status(run_dir, "failed", msg)
        except (OSError, ValueError):
            pass  # the folder itself may be what failed; the job's snapshot still says why
        board.update(status="failed", message=msg)
        raise


def _train(model, train_images, val_images, s, run_dir, stop_event, board, resume, calibrate, then) -> str:
    check_images(train_images, model, "training images")
    check_loss_fits(s.loss, model.config.output)
    if len(train_images) == 0:
        raise ValueError("training images: none given")
    has_val = val_images is not None and len(val_images) > 0
    if has_val:
        check_images(val_images, model, "validation images")
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
    patterns = load_patterns(s.patch_dir) if s.patch_dir and s.noise_patches else None  # read once per run
    history = runs.read_history(run_dir) if resume else []
    done, best = len(history), math.inf
    if resume:
        done, best = _restore(model, opt, sched, run_dir, history)
        if not (run_dir / runs.TRAINER_STATE).is_file():  # QA sweep 15b: a deleted trainer.pt went unsaid
            _notice(board, f"{runs.TRAINER_STATE} is missing: the optimizer and learning-rate schedule start "
                           "afresh from these weights, so the first epochs may not continue the loss curve smoothly")
    probe_feed = val_images if has_val else train_images
    n_probe = min(s.n_probe, len(probe_feed))
    if s.noise_patches and not train_images.paints_noise:
        _notice(board, "noise patches are painted on pixels; this feed is cached features, so none are painted")
    amp = _start_bf16(model, train_images, s, dev, board, history, val_images if has_val else train_images)
    board.update(status="running", epoch=done, step=0, steps_per_epoch=steps, epochs=s.epochs, phase_start=len(history),
                 train_loss=[r.get("train_loss") for r in history], val_loss=[r.get("val_loss") for r in history],
                 probe_input=frozen_copy(probe_feed.probe_pictures(n_probe)) if n_probe else None,
                 lr=opt.param_groups[0]["lr"])
    if not resume:  # a process killed in epoch 1 still leaves a loadable checkpoint behind
        _save(model, run_dir, runs.LAST_WEIGHTS, {"epoch": 0, "partial": 1})
    run_status.write_status(run_dir, "running", f"epoch {done + 1}/{s.epochs}", epoch=done, epochs=s.epochs)
    ema, beat, t_session, imgs_session = None, time.monotonic(), time.monotonic(), 0
    saved = beat
    stopped = False
    for epoch in range(done + 1, s.epochs + 1):
        # One generator per epoch: the run is reproducible, and a resumed epoch draws what it would have.
        rng = np.random.default_rng([s.seed, epoch])
        torch.manual_seed(int(rng.integers(2**62)))  # dropout draws from torch's global generator
        order = rng.permutation(n) if s.shuffle else np.arange(n)  # (n,) image indices in step order
        lr = opt.param_groups[0]["lr"]
        model.train()
        t0, total = time.monotonic(), 0.0
        for step in range(1, steps + 1):
            if stop_event.is_set():
                stopped = True
                break
            idx = order[(step - 1) * bs: step * bs]  # (b,) image indices
            x = train_images.tensor(idx, dev)  # (b, C, H, W) float (pixels in [0, 1], or features): the clean target
            x_in = x  # denoising: the model sees painted patches and must give back the clean batch
            if s.noise_patches and train_images.paints_noise:
                batch = train_images.images[idx]  # (b, H, W, C) uint8
                x_in = to_tensor(add_noise_patches(batch, s.noise_patches, s.patch_size, rng, patterns), dev)
            opt.zero_grad(set_to_none=True)
            with autocast(dev, amp):
                y = fwd(x_in)
            loss = loss_fn(x, y.float())
            loss.backward()
            opt.step()
            lv = loss.item()
            if not math.isfinite(lv):
                raise TrainingFailed(f"loss became {lv} at epoch {epoch} step {step}; lower the learning rate")
            total += lv * len(idx)
            imgs_session += len(idx)
            ema = lv if ema is None else (1 - EMA_ALPHA) * ema + EMA_ALPHA * lv
            now = time.monotonic()
            rate = imgs_session / max(now - t_session, 1e-9)
            left = (steps - step) * bs + (s.epochs - epoch) * n
            with board.lock:
                board.epoch, board.step, board.lr, board.images_per_s, board.eta_s = epoch, step, lr, rate, left / rate
                board.step_loss.append(ema)
                board.message = f"epoch {epoch}/{s.epochs}"
            if now - beat > HEARTBEAT_S:
                run_status.write_status(run_dir, "running", f"epoch {epoch}/{s.epochs} step {step}/{steps}",
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
        if amp and epoch < s.epochs:  # bf16 error grows relative to a shrinking loss: re-check it on held-out
            # images before the next epoch (none after the last: a resume checks again at its start)
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
        if n_probe:
            with evaluating(model):
                xp = probe_feed.tensor(slice(0, n_probe), dev)  # (n_probe, C, H, W)
                recon = frozen_copy(probe_feed.probe_outputs(xp, fwd(xp)))
        with board.lock:
            board.train_loss.append(train_loss)
            board.val_loss.append(val_loss)
            board.probe_recon = recon
            board.epoch = epoch
        run_status.write_status(run_dir, "running", f"epoch {epoch}/{s.epochs} done", epoch=epoch, epochs=s.epochs)
        beat = time.monotonic()
        done = epoch
    if stopped:
        # Keep the work of the interrupted epoch: resume continues from these weights.
        _save(model, run_dir, runs.LAST_WEIGHTS, {"epoch": done, "partial": 1})
        _save_trainer_state(run_dir, opt, sched, done, best)
        if not (run_dir / WEIGHTS_FILE).is_file():  # stopped in epoch 1: still leave a loadable model
            _save(model, run_dir, WEIGHTS_FILE, {"epoch": done, "partial": 1})
    if calibrate:
        _write_calibration(run_dir, (val_images if has_val else train_images).images, dev, 2 * bs,
                           "validation" if has_val else "train", loss_scoring(s.loss).get("residual", "l2"))
    status = "stopped" if stopped else "finished"
    msg = (f"stopped after {done} of {s.epochs} epoch{'s' * (s.epochs != 1)}" if stopped else
           f"finished {s.epochs} epoch{'s' if s.epochs != 1 else ''}") + \
        (f"; best {'validation' if has_val else 'training'} loss {best:.5g}" if math.isfinite(best) else "")
    if then and not stopped:
        run_status.write_status(run_dir, "running", f"{msg}; {then}", epoch=done, epochs=s.epochs)
    else:
        run_status.write_status(run_dir, status, msg, epoch=done, epochs=s.epochs)
    board.update(status=status, message=msg, epoch=done, eta_s=0.0 if not stopped else None)
    model.eval()  # whoever uses job.model next reconstructs, not trains
    return status


def _restore(model, opt, sched, run_dir: Path, history: list) -> tuple[int, float]:
    """Load last weights and optimizer state; (epochs done, best monitored loss)."""
    last = run_dir / runs.LAST_WEIGHTS
    if not last.is_file():
        raise ValueError(f"{run_dir}: nothing to resume ({runs.LAST_WEIGHTS} is missing)")
    model.load_state_dict(read_tensors(last)[0])
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
        if isinstance(state.get("epochs_done"), int) and state["epochs_done"] > done:
            # The history's last record was cut (a writer killed mid-line, QA sweep 15): its epoch was trained
            # all the same, and training it again would record it twice.
            done = state["epochs_done"]
    elif sched is not None:
        sched.last_epoch = done  # no saved state: at least keep the schedule in step with the epochs
    return done, best


def _write_calibration(run_dir: Path, images: np.ndarray, dev, bs: int, source: str, residual: str) -> None:
    """calibration.json: the normal images' statistics under the run's default residual, so that Inspect
    need not score them again."""
    if not (run_dir / WEIGHTS_FILE).is_file() or len(images) == 0:
        return
    best = load_model(run_dir, device=str(dev))
    cal = calibrate(best, images, dev, bs, residual=residual)
    cal.update(source=source, weights=WEIGHTS_FILE, epoch=int(best.metadata.get("epoch", 0)),
               created=runs.now_iso())
    runs.write_json_atomic(run_dir / runs.CALIBRATION_FILE, cal)
