"""Speed features: bf16 autocast only after a parity check against float32, float32 validation, fallbacks."""
import math

import pytest
import torch
from torch import nn

from udd_core import precision, runs
from udd_core import train as train_mod
from udd_core.cli import main
from udd_core.cli_parser import build_parser
from udd_core.train_options import settings_from_args
from udd_core.data import to_tensor
from udd_core.model import load_model
from udd_core.precision import Parity, bf16_fast, check_bf16_parity
from udd_core.settings import TrainSettings
from udd_core.train import seeded_model, train
from udd_core.training_data import split_indices

from test_train import SHAPE, make_images

def fast(**kw) -> TrainSettings:
    return TrainSettings(**{"epochs": 2, "batch_size": 4, "device": "cpu", "n_probe": 2, "val_split": 0.25, **kw})


def run_sync(tmp_path, cfg, settings, name="r"):
    imgs = make_images()
    tr, va = split_indices(len(imgs), settings.val_split, settings.seed)
    model = seeded_model(cfg, SHAPE, settings.seed)
    run = runs.new_run(tmp_path, name)
    board = train_mod.ProgressBoard(str(run), settings.epochs)
    status = train(model, imgs[tr], imgs[va], settings, run, board=board)
    return status, model, run, board, imgs[va]


class Cancelling(nn.Module):
    """y = a*x + b*x with a ~ -b: exact in float32, wrecked once bf16 rounds the two weights."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, 1, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([300.7, -299.7]).view(1, 2, 1, 1))

    def forward(self, x):
        return self.conv(torch.cat([x, x], dim=1))


# --- the parity check ------------------------------------------------------------------------

def test_parity_of_a_real_model_is_close_and_leaves_no_trace(tiny_config):
    model = seeded_model(tiny_config, SHAPE, 0)
    model.train()
    x = to_tensor(make_images(4))
    marker = [torch.full_like(p, 7.0) for p in model.parameters()]
    for p, g in zip(model.parameters(), marker):
        p.grad = g
    rng_before = torch.get_rng_state()
    p = check_bf16_parity(model, x, x)
    assert p.ok and 0 <= p.loss_rel < precision.LOSS_TOL and 0 <= p.grad_rel < precision.GRAD_TOL
    assert p.loss_fp32 > 0 and math.isclose(p.loss_bf16, p.loss_fp32, rel_tol=precision.LOSS_TOL)
    assert model.training  # train flag restored
    assert all(q.grad is g for q, g in zip(model.parameters(), marker))  # earlier gradients put back
    assert torch.equal(torch.get_rng_state(), rng_before)  # eval mode: dropout drew nothing


def test_parity_catches_a_model_that_bf16_breaks():
    x = torch.rand(2, 1, 8, 8)
    p = check_bf16_parity(Cancelling(), x, x)
    assert not p.ok and p.loss_rel > 1.0
    assert "tol" in p.describe() and "gradients" in p.describe()
    loss_only = check_bf16_parity(Cancelling(), x, x, with_grad=False)
    assert loss_only.grad_rel is None and not loss_only.ok


def test_parity_tolerances_decide_ok():
    assert Parity(1.0, 1.001, 1e-3, 1e-3).ok
    assert not Parity(1.0, 1.1, 0.1, 1e-3).ok
    assert not Parity(1.0, 1.0, 0.0, 0.2).ok
    assert not Parity(1.0, math.nan, math.nan, None).ok
    assert Parity(1.0, 1.0, 0.0, None).ok


def test_bf16_fast_is_a_plain_answer():
    assert isinstance(bf16_fast("cpu"), bool)
    assert bf16_fast("meta") is False


# --- training with bf16 ----------------------------------------------------------------------

def test_bf16_training_validates_in_float32(tmp_path, tiny_config, monkeypatch):
    monkeypatch.setattr(train_mod, "bf16_fast", lambda dev: True)  # exercise the path on any CPU
    status, model, run, board, val = run_sync(tmp_path, tiny_config, fast(amp_bf16=True))
    assert status == "finished"
    hist = runs.read_history(run)
    assert [h["precision"] for h in hist] == ["bf16", "bf16"]
    assert any(n.startswith("training in bf16 autocast") for n in board.notices)
    # The recorded val loss is the float32 loss of the weights the last epoch ended with.
    last = load_model(run, weights_name=runs.LAST_WEIGHTS)
    with torch.inference_mode():
        x = to_tensor(val)
        fp32 = float(torch.mean(torch.square(last(x) - x)))
        with torch.autocast("cpu", torch.bfloat16):
            bf16 = float(torch.mean(torch.square(last(x).float() - x)))
    assert hist[-1]["val_loss"] == pytest.approx(fp32, rel=1e-5)
    assert bf16 != fp32  # so the check above could tell the two apart


def test_failed_parity_falls_back_to_float32_with_a_notice(tmp_path, tiny_config, monkeypatch):
    monkeypatch.setattr(train_mod, "bf16_fast", lambda dev: True)
    monkeypatch.setattr(train_mod, "check_bf16_parity", lambda *a, **k: Parity(0.1, 0.2, 1.0, 0.5))
    status, _, run, board, _ = run_sync(tmp_path, tiny_config, fast(amp_bf16=True))
    assert status == "finished"
    assert [h["precision"] for h in runs.read_history(run)] == ["float32", "float32"]
    assert any("too far apart, training in float32" in n for n in board.notices)


def drift_after_start(monkeypatch) -> list:
    """bf16 on, the start check passing and every end-of-epoch check failing; the checks' with_grad flags."""
    monkeypatch.setattr(train_mod, "bf16_fast", lambda dev: True)
    calls = []

    def scripted(model, x_in, x, with_grad=True, **kw):
        calls.append(with_grad)
        return Parity(0.1, 0.1, 0.0, 0.0) if with_grad else Parity(0.1, 0.15, 0.5, None)

    monkeypatch.setattr(train_mod, "check_bf16_parity", scripted)
    return calls


def test_drift_after_an_epoch_switches_to_float32(tmp_path, tiny_config, monkeypatch):
    calls = drift_after_start(monkeypatch)
    _, _, run, board, _ = run_sync(tmp_path, tiny_config, fast(amp_bf16=True, epochs=3))
    assert calls == [True, False]  # the start check, then one end-of-epoch check until it failed
    assert [h["precision"] for h in runs.read_history(run)] == ["bf16", "float32", "float32"]
    assert any(n.startswith("epoch 1: bf16 vs float32") and "float32 from now on" in n for n in board.notices)


def test_no_bf16_recheck_after_the_last_epoch(tmp_path, tiny_config, monkeypatch):
    calls = drift_after_start(monkeypatch)
    _, _, run, board, _ = run_sync(tmp_path, tiny_config, fast(amp_bf16=True, epochs=1))
    assert calls == [True]  # nothing trains after the last epoch: no check, no "float32 from now on"
    assert not any("from now on" in n for n in board.notices)


def resume_sync(run, cfg, settings) -> train_mod.ProgressBoard:
    """Train the stopped or finished `run` on to `settings.epochs`, as TrainJob.resume does."""
    imgs = make_images()
    tr, va = split_indices(len(imgs), settings.val_split, settings.seed)
    board = train_mod.ProgressBoard(str(run), settings.epochs)
    assert train(seeded_model(cfg, SHAPE, settings.seed), imgs[tr], imgs[va], settings, run, board=board,
                 resume=True) == "finished"
    return board


def test_resume_goes_on_in_bf16_after_the_loss_check_only(tmp_path, tiny_config, monkeypatch):
    monkeypatch.setattr(train_mod, "bf16_fast", lambda dev: True)
    _, _, run, _, _ = run_sync(tmp_path, tiny_config, fast(amp_bf16=True))
    calls = []

    def scripted(model, x_in, x, with_grad=True, **kw):  # a trained model's gradients fail, its loss does not
        calls.append(with_grad)
        return Parity(0.1, 0.1, 0.0, 0.7 if with_grad else None)

    monkeypatch.setattr(train_mod, "check_bf16_parity", scripted)
    board = resume_sync(run, tiny_config, fast(amp_bf16=True, epochs=4))
    assert calls == [False, False]  # the end-of-epoch loss check at the resume, then after epoch 3
    assert [h["precision"] for h in runs.read_history(run)] == ["bf16"] * 4
    assert any(n.startswith("resuming in bf16 autocast, as epoch 2 trained") for n in board.notices)


def test_resume_stays_in_float32_once_bf16_had_drifted(tmp_path, tiny_config, monkeypatch):
    calls = drift_after_start(monkeypatch)
    _, _, run, _, _ = run_sync(tmp_path, tiny_config, fast(amp_bf16=True))
    del calls[:]
    board = resume_sync(run, tiny_config, fast(amp_bf16=True, epochs=3))
    assert calls == []  # no check: the run had already left bf16
    assert [h["precision"] for h in runs.read_history(run)] == ["bf16", "float32", "float32"]
    assert "epoch 2 trained in float32, so the resumed epochs do too" in board.notices


def test_no_native_bf16_means_float32(tmp_path, tiny_config, monkeypatch):
    monkeypatch.setattr(train_mod, "bf16_fast", lambda dev: False)
    _, _, run, board, _ = run_sync(tmp_path, tiny_config, fast(amp_bf16=True, epochs=1))
    assert [h["precision"] for h in runs.read_history(run)] == ["float32"]
    assert any("not supported natively" in n for n in board.notices)


def test_float32_runs_never_check_parity(tmp_path, tiny_config, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("parity checked on a float32 run")

    monkeypatch.setattr(train_mod, "check_bf16_parity", boom)
    _, _, run, board, _ = run_sync(tmp_path, tiny_config, fast(amp_bf16=False, epochs=1))
    assert [h["precision"] for h in runs.read_history(run)] == ["float32"]
    assert not any("bf16" in n for n in board.notices)


def test_parity_batch_gets_noise_patches_from_its_own_generator(tmp_path, tiny_config, monkeypatch):
    monkeypatch.setattr(train_mod, "bf16_fast", lambda dev: True)
    seen = []

    def spy(model, x_in, x, with_grad=True, **kw):
        seen.append((with_grad, bool(torch.equal(x_in, x))))
        return Parity(0.1, 0.1, 0.0, 0.0 if with_grad else None)

    monkeypatch.setattr(train_mod, "check_bf16_parity", spy)
    s = fast(amp_bf16=True, epochs=2, noise_patches=2, patch_size=(3, 6))
    _, m_amp, run_amp, _, _ = run_sync(tmp_path, tiny_config, s, "a")
    assert seen[0] == (True, False)  # the start check sees painted inputs and clean targets
    assert seen[1] == (False, True)  # the epoch check reconstructs clean held-out images
    # The check draws its patches from a generator of its own: the run's random streams are untouched,
    # so the training batches (and their noise) are those of a float32 run with the same seed.
    monkeypatch.setattr(train_mod, "check_bf16_parity", lambda *a, **k: Parity(0.1, 0.1, 0.0, 1.0))
    _, m_fp, run_fp, _, _ = run_sync(tmp_path, tiny_config, s, "b")  # start check fails: float32 steps
    s32 = s.replace(amp_bf16=False)
    _, m_ref, run_ref, _, _ = run_sync(tmp_path, tiny_config, s32, "c")
    assert runs.read_history(run_fp)[0]["train_loss"] == runs.read_history(run_ref)[0]["train_loss"]
    assert all(torch.equal(a, b) for a, b in zip(m_fp.state_dict().values(), m_ref.state_dict().values()))


# --- the command line ------------------------------------------------------------------------

@pytest.mark.parametrize("flag,expected", [([], TrainSettings().amp_bf16), (["--precision", "bf16"], True),
                                           (["--precision", "float32"], False)])
def test_cli_precision_flag(flag, expected):
    args = build_parser().parse_args(["train", "cfg", "--data", "d", "--out", "o", *flag])
    assert settings_from_args(args).amp_bf16 is expected


def test_cli_prints_the_parity_verdict(tmp_path, tiny_config, monkeypatch, capsys):
    import json

    from PIL import Image

    monkeypatch.setattr(train_mod, "bf16_fast", lambda dev: True)
    data = tmp_path / "imgs"
    data.mkdir()
    for i, img in enumerate(make_images(8)):
        Image.fromarray(img[..., 0], "L").save(data / f"{i}.png")
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(tiny_config))
    rc = main(["train", str(cfg), "--data", str(data), "--out", str(tmp_path / "run"), "--epochs", "1",
               "--batch-size", "4", "--size", "32,32", "--device", "cpu", "--precision", "bf16"])
    err = capsys.readouterr().err
    assert rc == 0
    assert "note: training in bf16 autocast (bf16 vs float32: loss rel. diff" in err
