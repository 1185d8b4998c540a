"""What a run's files mean for whoever uses its model: one line each, shown by `udd train`, `udd score`,
`udd export`, the Train and Inspect pages and the report.

- `unfinished_note`: the run's training has not finished, so its model is the one saved so far.
- `still_learning_note`: it finished while its validation loss was still falling, so more epochs
  (a resume) would likely give better maps; `overfit_note`: its validation loss rose far above its early
  best, so fewer epochs give the same model (or, its training loss rising too, it diverged: a lower
  learning rate may do better); `ending_note`: either, or a jump of its training loss on the way, or a
  loss no reconstruction could reach (it blew up).
- `learned_defects_note`: it trained on defects too (every image, or chosen classes), so a low score no
  longer means "like the normal images".
- `scored_training_data_note`: the images scored include those it learned.
- `damaged_note`: one of its files cannot be read, so nothing can load it, whatever its status says.
- `next_step`: where a run that has stopped goes next (Inspect or Generate), finished or not.
"""
from __future__ import annotations

import math
import shlex
import warnings
from pathlib import Path
from typing import Any, Mapping, Optional, Union

from .notices import Caution
from .run_status import read_status, status_message
from .runs import (HISTORY_FILE, LAST_WEIGHTS, STATUS_FILE, TRAIN_FILE, history_records, out_spec, read_history,
                   read_json, read_train, run_source, run_train_on, train_settings)

STILL_FALLING = 0.05  # the share by which the validation loss fell over a run's last epochs that means "still learning"
FALL_EPOCHS = 3  # how many of the last epochs that share is measured over
# ... or over its last quarter, for a run of 8 epochs or more whose best epoch lies in its last 5%: a slow,
# steady fall (QA sweep 15: the README's wafer run fell 15% over its last 20 of 120 epochs, 3% over the last 3).
LATE_SHARE, BEST_SHARE, LATE_MIN_EPOCHS = 0.25, 0.05, 8


def unfinished_note(run_dir: Union[str, Path]) -> Optional[str]:
    """One line for a run whose training has not finished (stopped, interrupted, failed or still running):
    what scores it, exports it or compares it uses the model saved so far. None for a finished run and
    for a model folder without status.json (the reference package's)."""
    p = Path(run_dir)
    if not (p / STATUS_FILE).is_file():
        return None
    st = read_status(p)
    if st["status"] == "finished":
        return None
    said = status_message(st)
    # Weights saved inside epoch 1 (a stop or a crash there) and no epoch in the history: barely trained.
    untrained = (p / LAST_WEIGHTS).is_file() and not read_history(p)
    return (f"run {p.name} is {st['status']}" + (f" ({said})" if said else "") +
            (": no epoch has finished, so its weights are barely trained" if untrained else
             ": this is the model saved so far, not a finished one"))


def still_learning_note(run_dir: Union[str, Path]) -> Optional[str]:
    """One line for a finished run whose validation loss was still falling when training ended: its last
    epoch is its best, and the loss fell by `STILL_FALLING` or more over the last `FALL_EPOCHS` epochs, or by
    as much over its last quarter with its best epoch in its last 5% (`LATE_SHARE`, `BEST_SHARE`): the
    reconstructions, and so the heatmaps, would likely improve with more epochs. None otherwise: for an
    unfinished run (`unfinished_note` speaks for it), and for methods that score latent codes, which a
    lower reconstruction loss need not improve (Deep SVDD, latent-knn), or train no epochs (the memory bank)."""
    p = Path(run_dir)
    return _still_learning(p, *curve) if (curve := _finished_curve(p)) else None


def _still_learning(p: Path, history: list[dict], losses: list[float]) -> Optional[str]:
    n = len(losses)
    best = min(range(n), key=losses.__getitem__)
    windows = [min(FALL_EPOCHS, n - 1)] if best == n - 1 else []  # (k epochs back)
    if n >= LATE_MIN_EPOCHS and best >= n - max(1, round(BEST_SHARE * n)):
        windows.append(n // 4)
    falls = [(k, (losses[-1 - k] - losses[best]) / losses[-1 - k]) for k in windows if losses[-1 - k] > 0]
    k, drop = next(((k, d) for k, d in falls if d >= STILL_FALLING), (0, 0.0))
    if not k:
        return None
    epochs = "the last epoch" if k == 1 else f"the last {k} epochs"
    total = more_epochs(_epoch_of(history[-1], len(history)))
    data = run_source(p).get("path")
    moved = bool(data) and not Path(data).exists()  # QA sweep 13: the call failed as printed, asking for --data
    spec = out_spec(p)
    call = f"udd train --out {shlex.quote(spec)} --resume --epochs {total}" + (" --data NEW_PLACE" if moved else "")
    # The Train page lists the runs folder's runs only (QA sweep 13: it was offered for a run outside it).
    where = "Resume on the Train page, or" if spec == p.name else "Resume with"
    return (f"run {p.name} was still learning when its training ended: its validation loss fell {drop:.0%} over "
            f"{epochs}, so more epochs would likely lower it further ({where} `{call}`"
            + (f", NEW_PLACE being where its data {data} now lies" if moved else "") + ")")


OVERFIT_RISE = 1.5  # the last validation loss this many times the best one, long after it: "overfit"
OVERFIT_SHARE = 0.7  # ... with the best epoch within this share of the run's epochs


def overfit_note(run_dir: Union[str, Path]) -> Optional[str]:
    """One line for a finished run whose validation loss reached its lowest early and then rose a lot (QA sweep
    13: the wafer-generation preset's best epoch was 52 of 120, its last validation loss 3x the best). Its
    model.safetensors is the best epoch, which every score and image uses; the epochs after it cost time
    only. None otherwise, and for methods whose maps do not come from the epochs' model."""
    p = Path(run_dir)
    return _overfit(p, *curve) if (curve := _finished_curve(p)) else None


def _overfit(p: Path, history: list[dict], losses: list[float]) -> Optional[str]:
    if len(losses) < 4:
        return None
    best = min(range(len(losses)), key=losses.__getitem__)
    if best + 1 > OVERFIT_SHARE * len(losses) or losses[best] <= 0 or losses[-1] < OVERFIT_RISE * losses[best]:
        return None
    trained = [r.get("train_loss") for r in (history[best], history[-1])]
    if not all(isinstance(v, (int, float)) for v in trained):
        return None
    at, last = _epoch_of(history[best], best + 1), _epoch_of(history[-1], len(history))
    rose = (f"its validation loss was lowest at epoch {at} ({losses[best]:.4g}) and rose to {losses[-1]:.4g} by "
            f"epoch {last}")
    kept = f"its model is epoch {at}'s (model.safetensors), which every score and image uses"
    if trained[1] > trained[0]:  # the training loss rose too: diverged, not overfit (QA sweeps 14 and 17)
        return (f"run {p.name} diverged: {rose}, and its training loss rose too ({trained[0]:.4g} to "
                f"{trained[1]:.4g}), as a learning rate too high makes it; {kept}; a lower learning rate may "
                "reach a lower loss")
    return (f"run {p.name} overfit: {rose}; {kept}, so the epochs after it cost time only: about {at} epochs "
            "train the same model")


SPIKE = 10.0  # an epoch's training loss this many times the lowest before it: a jump, not noise
# The most a pixel loss can be for a reconstruction anywhere in the images' [0, 1] range (1 - SSIM lies in [0, 2]):
# a lowest validation loss above it means no epoch reconstructed at all (QA sweep 20: 4.7e30 at lr 0.3, unsaid)
PIXEL_LOSS_BOUND = {"mse": 1.0, "ssim": 2.0, "mse+ssim": 3.0}


def _blown_up(p: Path, history: list[dict], losses: list[float]) -> Optional[str]:
    """A pixel autoencoder whose every validation loss lies above `PIXEL_LOSS_BOUND`: its training blew up."""
    from .methods import run_method

    bound = PIXEL_LOSS_BOUND.get(str(train_settings(read_train(p)).get("loss", "mse")))
    if bound is None or run_method(p) != "autoencoder" or min(losses) <= bound:
        return None
    return (f"run {p.name} blew up: its lowest validation loss is {min(losses):.4g}, more than any reconstruction in "
            f"the images' [0, 1] range could score ({bound:g}), as a learning rate far too high makes it; its maps "
            "and scores mean nothing, whatever its AUROC; train it again with a lower learning rate")


def _spiked(p: Path, history: list[dict], losses: list[float]) -> Optional[str]:
    """The largest jump of the training loss in one epoch, when it came back down (a rise that stays is
    `_overfit`'s "diverged"): QA sweep 19b, a bf16 run's loss went from 0.027 to 20.3 for one epoch, unsaid, and
    the Train page's linear curve went flat."""
    trained = [r.get("train_loss") for r in history]
    if not all(isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in trained):
        return None
    jumps = [(trained[i] / min(trained[:i]), i) for i in range(1, len(trained))]
    ratio, i = max(jumps, default=(0.0, 0))
    if ratio < SPIKE or min(trained[i + 1:], default=math.inf) > 2 * min(trained[:i]):
        return None
    best = min(range(len(losses)), key=losses.__getitem__)
    bf16 = " (its steps ran in bf16 then: --precision float32, or the Train page's bf16 switch off, avoids it)" \
        if history[i].get("precision") == "bf16" else ""
    return (f"run {p.name}'s training loss jumped {ratio:.0f}x at epoch {_epoch_of(history[i], i + 1)} "
            f"({min(trained[:i]):.4g} to {trained[i]:.4g}) and came back down: an unstable step, as a learning rate "
            f"too high makes it{bf16}; its model is epoch {_epoch_of(history[best], best + 1)}'s, the best "
            "validation loss; the Train page's log scale shows the rest of the curve")


def history_note(run_dir: Union[str, Path]) -> Optional[str]:
    """What history.jsonl lacks: epochs with no readable record between those that read (a killed writer's cut
    line, which a resume does not write again, or damage since), a note; or no record at all among lines that do
    not read, a caution. The loss curve and the epoch count lack them (QA sweep 21: "finished · 3 epochs" above
    "No epoch has finished", unsaid). None when every epoch up to the last reads."""
    records, skipped = history_records(run_dir)
    epochs = {int(r["epoch"]) for r in records if isinstance(r.get("epoch"), int)}
    missing = sorted(set(range(1, max(epochs) + 1)) - epochs) if epochs else []
    if missing:
        listed = ", ".join(map(str, missing[:5])) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        return (f"{Path(run_dir) / HISTORY_FILE}: no record of epoch{'s' * (len(missing) > 1)} {listed} reads (cut "
                "by a killed writer, or damaged since): the loss curve and the epoch count lack "
                f"{'them' if len(missing) > 1 else 'it'}")
    if not records and skipped:
        return Caution(f"{Path(run_dir) / HISTORY_FILE}: no line reads (damaged): the loss curve and the epoch "
                       "count lack every epoch")
    return None


def ending_note(run_dir: Union[str, Path]) -> Optional[str]:
    """What the end of a finished run's training says of its model: a jump of its loss on the way, still
    learning, or overfit; None. Its files are read once for all (Compare asks for each of its runs on every
    rerun)."""
    p = Path(run_dir)
    if not (curve := _finished_curve(p)):
        return None
    return _blown_up(p, *curve) or _spiked(p, *curve) or _still_learning(p, *curve) or _overfit(p, *curve)


def more_epochs(done: int) -> int:
    """The new total that resuming a run suggests once its planned epochs are done: twice those done, as
    both the still-learning note and the Train page's Resume box offer it."""
    return max(2 * int(done), int(done) + 1)


def _learned(run_dir: Union[str, Path]) -> str:
    """What a run trained on, in words."""
    train_on = run_train_on(run_dir)
    return ("normal images" if train_on == "normal" else "every image, defects included" if train_on == "all"
            else f"the classes {train_on}")


def learned_defects_note(run_dir: Union[str, Path]) -> Optional[str]:
    """One line for a run trained on defects too (`--train-on all` or chosen classes); None for a run
    trained on normal images only."""
    if run_train_on(run_dir) == "normal":
        return None
    return (f"run {Path(run_dir).name} was trained on {_learned(run_dir)}, not on normal images only: it learned "
            "to reconstruct those defects, so a low score no longer means 'like the normal images'. Use it to "
            "generate maps; for detection, train a run on normal images")


def scored_training_data_note(run_dir: Union[str, Path]) -> str:
    """The line for scoring a run on the images it trained on: what it learned scores lower (more normal)
    than unseen images would."""
    if run_train_on(run_dir) == "normal":
        return ("these are the run's training data: the normal images it learned are scored too, "
                "so normal scores look better than on unseen images")
    return (f"these are the run's training data: it learned {_learned(run_dir)}, and those scored here look "
            "more normal than unseen ones would")


def _finished_curve(p: Path) -> Optional[tuple[list[dict], list[float]]]:
    """(history, validation losses) of a finished run whose maps come from its epochs' model, with at least two
    epochs, every one with a finite validation loss; None otherwise."""
    if not (p / STATUS_FILE).is_file() or read_status(p)["status"] != "finished" or not _scored_by_its_epochs(p):
        return None
    history = read_history(p)
    losses = [r.get("val_loss") for r in history]
    if len(losses) < 2 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in losses):
        return None
    return history, losses


def _epoch_of(record: Mapping[str, Any], default: int) -> int:
    """A history record's epoch number, or `default` where it has none (a hand-edited file)."""
    e = record.get("epoch")
    return e if isinstance(e, int) and e > 0 else default


def _scored_by_its_epochs(run_dir: Path) -> bool:
    """True when a run's maps come from the model its epochs train (an autoencoder, a feature AE)."""
    from .methods import detector_class, run_method

    try:
        cls = detector_class(run_method(run_dir))
    except ValueError:  # an unknown or damaged method file: the page that opens it says why
        return False
    return cls.trains_epochs and not cls.own_scores


def _unreadable(run: Path, skip: tuple[str, ...] = ()) -> Optional[tuple[str, str]]:
    """(file name, why) of the first run file that does not parse: train.json, method.json, config.json, then
    the tensor files other than `skip`; None when all read. Headers only, cheap enough for every rerun."""
    from .config import parse_config  # the config parser and safetensors: only for whoever asks here
    from .tensor_files import check_tensor_file

    for name in (TRAIN_FILE, "method.json", "config.json"):
        path = run / name
        if not path.is_file():
            continue
        value = read_json(path)
        if not isinstance(value, dict):
            return name, f"{path}: not a readable JSON object"
        if name == "config.json":
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # unknown keys are kept, not damage
                    parse_config(value)
            except ValueError as e:
                return name, f"{path}: {e}"
    for path in sorted(run.glob("*.safetensors")):
        if path.name not in skip:
            try:
                check_tensor_file(path)
            except ValueError as e:
                return path.name, str(e)
    return None


def _model_gone(run: Path) -> Optional[str]:
    """Why a finished run holds no detector that loads: method.json gone or naming no known method, or its model
    files gone; None when they are there (QA sweep 21: a deleted bank.safetensors left the run "finished · open
    Inspect", and Inspect showed another run)."""
    from .methods import METHOD_FILE, detector_class, run_method

    method = str(read_train(run).get("method") or "autoencoder")
    if method != "autoencoder" and not (run / METHOD_FILE).is_file():
        return f"{run / METHOD_FILE}: missing, so the run's {method} cannot load (a file was removed after it finished)"
    try:
        cls = detector_class(run_method(run))
    except ValueError as e:  # an unknown method name, or a method.json that names none
        return str(e) if str(e).startswith(str(run)) else f"{run / METHOD_FILE}: {e}"
    if not cls.is_saved(run):
        return f"{run}: its saved model files are missing (removed after the run finished)"
    return None


def damaged_note(run_dir: Union[str, Path]) -> Optional[str]:
    """Why a run cannot be loaded for scoring (a config, train.json or method.json that does not parse, a
    truncated or foreign model file), with what can still be done; None when it loads. last.safetensors only
    serves a resume (`resume_blocker`). QA sweep 8: such runs were shown as "finished · Done: open Inspect"."""
    run = Path(run_dir)
    found = _unreadable(run, skip=(LAST_WEIGHTS,))
    if found is None:
        gone = _model_gone(run) if read_status(run)["status"] == "finished" else None
        return f"{gone}. Inspect, Generate and `udd score` refuse it: train a new run" if gone else None
    name, why = found
    if name == TRAIN_FILE:  # the model loads; only what it trained on, and how, is lost (QA sweep 10)
        return (f"{why}. The model still scores, given the data's path (Inspect's data path, `udd score --data`), "
                "but its training data and settings are unknown, and no resume can repair it")
    if name == "model.safetensors" and resume_blocker(run) is None:
        return f"{why}. Inspect, Generate and `udd score` refuse it; Resume writes it again from {LAST_WEIGHTS}"
    return f"{why}. Inspect, Generate and `udd score` refuse it, and no resume can repair it: train a new run"


def resume_blocker(run_dir: Union[str, Path]) -> Optional[str]:
    """Why a resume of the run could not start (last.safetensors, the config or another file it reads does
    not parse), said before the run changes; None when it can. model.safetensors is not read: a resume
    writes it again. QA sweep 8: a failed resume had already marked a good run "failed"."""
    found = _unreadable(Path(run_dir), skip=("model.safetensors",))
    return None if found is None else found[1]


def next_page(path: Union[str, Path]) -> tuple[str, str]:
    """(page, what to do there) after a run: a run trained on defects too is for generating maps, every other
    run for inspecting."""
    return ("Generate", "generate maps") if run_train_on(path) != "normal" else ("Inspect", "score test images")


def next_step(run_dir: Union[str, Path]) -> Optional[tuple[str, str]]:
    """(page, one line) for a run that finished, or that stopped with a model that scores; None otherwise.
    QA sweep 10: a memory bank stopped while selecting its coreset got no word that its partial bank scores."""
    from .methods import detector_class, has_detector, run_method

    status = read_status(run_dir)["status"]
    title, verb = next_page(run_dir)
    if status == "finished":
        return title, f"Done: open the **{title}** page to {verb} with this run."
    if status not in ("stopped", "interrupted") or not has_detector(run_dir):
        return None
    method = run_method(run_dir)
    resumes = detector_class(method).resumable and (Path(run_dir) / LAST_WEIGHTS).is_file()
    on = ", or **Resume** below to train it further" if resumes else f"; a complete {method} needs a new run"
    ended = "stopped" if status == "stopped" else "ended"
    return title, f"The model saved before the run {ended} scores: open the **{title}** page to {verb} with it{on}."
