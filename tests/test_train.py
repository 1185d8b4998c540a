"""Training: settings, losses, the loop (checkpoints, reproducibility, failures) and the job."""
import json
import math
import os
import threading
import time
from datetime import datetime

import numpy as np
import pytest
import torch
from safetensors import safe_open

from udd_core import runs
from udd_core.notices import is_caution
from udd_core import run_status
from udd_core import train as train_mod
from udd_core.config import parse_config
from udd_core.losses import LOSSES, SOFTMAX_LOSSES, make_loss
from udd_core.model import CONFIG_FILE, AutoEncoder, load_model
from udd_core.jobs import JobManager, TrainJob
from udd_core.resume import images_digest, resume_offer
from udd_core.progress import progress_bar
from udd_core.settings import TrainSettings, form_values, settings_from_form, training_presets
from udd_core.scoring import calibrate
from udd_core.tensor_files import write_tensors
from udd_core.train import TrainingFailed, seeded_model, train
from udd_core.training_data import normal_images, split_indices

SHAPE = (1, 32, 32)


def make_images(n=12, seed=0, c=1, size=32):
    """Smooth random textures (N, H, W, C) uint8: learnable, unlike white noise."""
    rng = np.random.default_rng(seed)
    small = rng.random((n, size // 4, size // 4, c))
    return (np.kron(small, np.ones((1, 4, 4, 1))) * 255).astype(np.uint8)


def fast(**kw) -> TrainSettings:
    return TrainSettings(**{"epochs": 2, "batch_size": 4, "device": "cpu", "n_probe": 2, **kw})


def wait_for(pred, timeout=30.0):
    t0 = time.monotonic()
    while not pred():
        if time.monotonic() - t0 > timeout:
            raise AssertionError("timed out waiting")
        time.sleep(0.02)


def weights_meta(path):
    with safe_open(str(path), framework="pt") as f:
        return f.metadata()


# --- settings --------------------------------------------------------------------------------

def test_settings_round_trip_through_json():
    s = TrainSettings(epochs=3, betas=(0.9, 0.99), lr_step=5, patch_size=(4, 9), loss="mse+ssim", amp_bf16=True)
    back = TrainSettings.from_dict(json.loads(json.dumps(s.to_dict())))
    assert back == s and isinstance(back.betas, tuple)
    assert TrainSettings.from_dict({}) == TrainSettings()


@pytest.mark.parametrize("field,value", [
    ("epochs", 0), ("epochs", 2.5), ("batch_size", True), ("lr", -1.0), ("lr", 0), ("betas", (1.5, 0.9)),
    ("betas", (0.5,)), ("weight_decay", -0.1), ("lr_step", 0), ("lr_gamma", 0), ("val_split", 0.95),
    ("seed", -1), ("loss", "l1"), ("device", "tpu"), ("noise_patches", -1), ("patch_size", (5, 2)),
    ("patch_size", (0, 3)), ("n_probe", 99), ("compile", "yes"),
])
def test_bad_setting_raises_naming_the_field(field, value):
    with pytest.raises(ValueError) as e:
        TrainSettings(**{field: value})
    assert str(e.value).startswith(field + ":")


def test_unknown_setting_is_refused_by_name():
    with pytest.raises(ValueError, match="^warp_speed:"):
        TrainSettings.from_dict({"warp_speed": 9})


def test_training_presets_are_fresh_and_differ():
    p = training_presets()
    assert p["reference"].betas == (0.5, 0.999) and p["reference"].lr == 1e-3 and p["reference"].weight_decay == 0
    w = p["wafer"]
    assert (w.weight_decay, w.lr_step, w.lr_gamma) == (1e-3, 40, 0.5)
    p["reference"] = None
    assert training_presets()["reference"] is not None


def test_every_training_preset_round_trips_through_the_settings_form():
    """The Train page's widgets hold `form_values`; Start builds `settings_from_form` of them: nothing lost
    (the feature-ae preset's Adam betas have no widget and must still arrive)."""
    for name, preset in training_presets().items():
        assert settings_from_form(form_values(preset)) == preset, name
    v = form_values(TrainSettings(train_on="Center, Donut", lr_step=5, patch_dir="/p"))
    assert (v["on_mode"], v["on_classes"], v["lr_step"], v["patch_dir"]) == ("classes", "Center, Donut", 5, "/p")
    back = settings_from_form(v | {"on_classes": " Center ", "lr_step": 0, "patch_dir": "  "})
    assert (back.train_on, back.lr_step, back.patch_dir) == ("Center", None, None)
    with pytest.raises(ValueError, match="^epochs"):
        settings_from_form(v | {"epochs": 0})
    # QA sweep 7: recorded as typed, spaces and all; an empty box got "expected 'normal', 'all' or ..., got ''"
    assert settings_from_form(v | {"on_classes": "center, edge-loc ,loc"}).train_on == "center,edge-loc,loc"
    with pytest.raises(ValueError, match=r"^train_on: an empty class name in ' , ,'$"):
        settings_from_form(v | {"on_classes": " , ,"})
    for empty in ("", "  "):
        with pytest.raises(ValueError, match=r"^train_on: type the class labels to train on, separated by commas$"):
            settings_from_form(v | {"on_classes": empty})
    # The Train page's class picker: an empty pick is asked to be picked; it starts from the known classes
    from udd_core.settings import chosen_classes, classes_among

    with pytest.raises(ValueError, match=r"^train_on: pick the classes to train on$"):
        chosen_classes("", picked=True)
    assert classes_among(" Loc, nope,Center,", {"Center": 3, "Loc": 2}) == ["Loc", "Center"]
    assert classes_among(None, {"Center": 3}) == []


def test_the_settings_form_offers_only_values_the_settings_accept():
    """Every number box's ends (`FORM_NUMBERS`, `NOISE_NUMBERS`) go through `settings_from_form` unrefused,
    and every box edits a form value that Start reads."""
    from udd_core.settings import FORM_NUMBERS, NOISE_NUMBERS, ONE_PASS_NUMBERS

    base = form_values(TrainSettings())
    boxes = FORM_NUMBERS + NOISE_NUMBERS
    assert {f.key for f in boxes} <= set(base) and set(ONE_PASS_NUMBERS) <= {f.key for f in FORM_NUMBERS}
    for f in boxes:
        for end in (f.lo, f.hi):
            v = base | {f.key: end} | ({"patch_min": end, "patch_max": end} if f.key.startswith("patch_") else {})
            settings_from_form(v)  # a ValueError here: the page would offer a value Start refuses
        assert f.lo <= base[f.key] <= f.hi, f.key  # the default is inside the box
    assert [f.format for f in FORM_NUMBERS if f.key in ("epochs", "lr", "lr_gamma")] == [None, "%g", None]


def test_split_is_seeded_disjoint_and_keeps_one_each():
    tr, va = split_indices(20, 0.1, seed=3)
    assert len(va) == 2 and sorted(np.concatenate([tr, va]).tolist()) == list(range(20))
    assert np.array_equal(va, split_indices(20, 0.1, seed=3)[1])
    assert not np.array_equal(va, split_indices(20, 0.1, seed=4)[1]) or not np.array_equal(
        va, split_indices(20, 0.1, seed=5)[1])
    assert [len(x) for x in split_indices(3, 0.01, 0)] == [2, 1]
    assert [len(x) for x in split_indices(1, 0.5, 0)] == [1, 0]
    assert [len(x) for x in split_indices(10, 0.0, 0)] == [10, 0]


def test_a_split_by_groups_keeps_each_photos_tiles_on_one_side_and_a_run_keeps_it():
    """QA sweep 18: a tiled run drew its validation tiles one by one, from its training photos."""
    from udd_core.training_data import run_split

    groups = [f"p{i // 4}.png" for i in range(48)]  # 12 photos of 4 tiles
    tr, va = split_indices(48, 0.1, 0, groups)
    assert {groups[i] for i in va}.isdisjoint({groups[i] for i in tr}) and len(va) >= 5 and len(va) % 4 == 0
    assert sorted(np.concatenate([tr, va]).tolist()) == list(range(48))
    assert np.array_equal(va, split_indices(48, 0.1, 0, groups)[1])  # seeded
    assert np.array_equal(split_indices(8, 0.5, 0, ["one.png"] * 8)[1], split_indices(8, 0.5, 0)[1])  # one photo
    assert len(split_indices(8, 0.9, 0, ["a", "b"] * 4)[0]) == 4  # one group always trains
    # a run keeps its drawn validation indices in train.json, and resume and Inspect take them from there
    assert np.array_equal(run_split(48, 0.1, 0, va.tolist())[1], va)
    assert np.array_equal(run_split(48, 0.1, 0, [99])[1], split_indices(48, 0.1, 0)[1])  # damaged: drawn again


# --- losses ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", LOSSES)
def test_losses_are_zero_on_identity_and_differentiable(name):
    fn = make_loss(name)
    x = torch.rand(2, 3, 16, 16)
    if name in SOFTMAX_LOSSES:  # cross-entropy compares a one-hot target with probabilities
        x = torch.nn.functional.one_hot(torch.randint(0, 3, (2, 16, 16)), 3).permute(0, 3, 1, 2).float()
    assert float(fn(x, x.clone())) == pytest.approx(0.0, abs=1e-5)
    y = (x + 0.2 * torch.randn_like(x)).requires_grad_()
    if name in SOFTMAX_LOSSES:
        y = torch.softmax(torch.randn_like(x), dim=1).requires_grad_()
    loss = fn(x, y)
    loss.backward()
    assert float(loss.detach()) > 0 and y.grad is not None and y.grad.abs().sum() > 0


def test_unknown_loss_refused():
    with pytest.raises(ValueError, match="loss"):
        make_loss("l7")


# --- the loop --------------------------------------------------------------------------------

def _run_sync(tmp_path, name, cfg, settings, images=None):
    imgs = make_images() if images is None else images
    tr, va = split_indices(len(imgs), settings.val_split, settings.seed)
    model = seeded_model(cfg, SHAPE, settings.seed)
    run = runs.new_run(tmp_path, name)
    status = train(model, imgs[tr], imgs[va], settings, run)
    return status, model, run


def test_train_writes_every_run_file_and_learns(tmp_path, tiny_config):
    status, model, run = _run_sync(tmp_path, "r", tiny_config, fast(epochs=4, val_split=0.25))
    assert status == "finished"
    names = {f.name for f in run.iterdir()}
    assert {"config.json", "model.safetensors", "last.safetensors", "trainer.pt", "history.jsonl", "status.json",
            "calibration.json"} <= names
    assert not [n for n in names if ".tmp" in n]
    hist = runs.read_history(run)
    assert [h["epoch"] for h in hist] == [1, 2, 3, 4]
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    assert all(h["images_per_s"] > 0 and h["seconds"] >= 0 and h["lr"] == 1e-3 for h in hist)
    assert run_status.read_status(run)["status"] == "finished"
    loaded = load_model(run)
    assert loaded.input_shape == SHAPE


def test_best_and_last_checkpoints_differ_when_validation_gets_worse(tmp_path, tiny_config, monkeypatch):
    scripted = iter([0.5, 0.2, 0.4])
    monkeypatch.setattr(train_mod, "_mean_loss", lambda *a, **k: next(scripted))
    status, model, run = _run_sync(tmp_path, "r", tiny_config, fast(epochs=3))
    assert status == "finished"
    assert weights_meta(run / "model.safetensors")["epoch"] == "2"
    assert weights_meta(run / "last.safetensors")["epoch"] == "3"
    best, last = load_model(run), load_model(run, weights_name="last.safetensors")
    assert any(not torch.equal(a, b) for a, b in zip(best.state_dict().values(), last.state_dict().values()))
    for a, b in zip(last.state_dict().values(), model.state_dict().values()):
        assert torch.equal(a, b.cpu())  # last = the weights the loop ended with
    assert [h["best"] for h in runs.read_history(run)] == [True, True, False]
    assert json.loads((run / "calibration.json").read_text())["epoch"] == 2  # calibrated on the best model


def test_same_seed_same_losses_and_weights(tmp_path):
    cfg = {"block_ker": [3, 3], "drop": [0.2, 0.2], "block_size_in": [[1, 4, 4], [4, 8, 8]],
           "block_size_out": [[8, 8, 4], [4, 4, 1]], "latent_size": 4, "latent_ker": 3, "latent_opad": 1,
           "out_pad": [1, 1]}  # dropout and noise patches both draw random numbers
    s = fast(noise_patches=2, patch_size=(3, 8), seed=11)
    _, m1, r1 = _run_sync(tmp_path, "a", cfg, s)
    _, m2, r2 = _run_sync(tmp_path, "b", cfg, s)
    _, m3, r3 = _run_sync(tmp_path, "c", cfg, s.replace(seed=12))
    l1, l2, l3 = ([(h["train_loss"], h["val_loss"]) for h in runs.read_history(r)] for r in (r1, r2, r3))
    assert l1 == l2 and l1 != l3
    assert all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values()))


@pytest.mark.parametrize("shuffle", [True, False])
def test_batch_order_fixed_or_reshuffled(tmp_path, tiny_config, shuffle):
    """shuffle=False feeds the training images in their given order every epoch, as the reference does."""
    imgs = make_images(8)
    model = seeded_model(tiny_config, SHAPE, 0)
    seen = []  # the first pixel of every image the encoder sees, per forward pass in train mode
    model.encoder.register_forward_hook(lambda m, i, o: seen.append(i[0][:, 0, 0, 0].tolist()) if m.training else None)
    train(model, imgs, None, fast(shuffle=shuffle, epochs=2), runs.new_run(tmp_path, "r"))
    first = (imgs[:, 0, 0, 0] / 255.0).astype("float32").tolist()
    fed = [v for batch in seen for v in batch]
    assert len(fed) == 16
    assert (fed == first * 2) is (not shuffle)
    assert sorted(fed[:8]) == pytest.approx(sorted(first))  # every image once per epoch either way


def test_calibration_matches_the_best_model(tmp_path, tiny_config):
    imgs = make_images(16)
    s = fast(val_split=0.25)
    _, _, run = _run_sync(tmp_path, "r", tiny_config, s, imgs)
    cal = json.loads((run / "calibration.json").read_text())
    _, va = split_indices(16, 0.25, s.seed)
    assert cal["n_images"] == len(va) == 4 and cal["source"] == "validation" and cal["residual"] == "l2"
    again = calibrate(load_model(run), imgs[va])
    assert cal["norm"]["mean"] == pytest.approx(again["norm"]["mean"], rel=1e-5)
    assert cal["norm"]["std"] > 0 and cal["norm"]["q99"] >= cal["norm"]["mean"]
    assert cal["scores"]["mean"] == pytest.approx(again["scores"]["mean"], rel=1e-5)
    assert all(mx >= mn for mx, mn in zip(cal["scores"]["max"], cal["scores"]["mean"]))


def test_no_validation_follows_training_loss(tmp_path, tiny_config):
    status, _, run = _run_sync(tmp_path, "r", tiny_config, fast(val_split=0.0))
    assert status == "finished"
    assert all(h["val_loss"] is None for h in runs.read_history(run))
    assert json.loads((run / "calibration.json").read_text())["source"] == "train"


def test_lr_schedule_halves(tmp_path, tiny_config):
    _, _, run = _run_sync(tmp_path, "r", tiny_config, fast(epochs=3, lr_step=1, lr_gamma=0.5))
    assert [h["lr"] for h in runs.read_history(run)] == pytest.approx([1e-3, 5e-4, 2.5e-4])


@pytest.mark.parametrize("loss", ["ssim", "mse+ssim"])
def test_ssim_losses_train(tmp_path, tiny_config, loss):
    status, _, run = _run_sync(tmp_path, "r", tiny_config, fast(epochs=1, loss=loss))
    assert status == "finished" and math.isfinite(runs.read_history(run)[0]["train_loss"])


def test_an_ssim_trained_run_is_scored_the_way_its_loss_measures(tmp_path, tiny_config):
    """The magnetic-tile recipe trains with SSIM: every consumer then scores it with the SSIM residual and the
    top-1% score by default (QA sweep 10: they used l2/mean, which localised its defects at half the AUPRO)."""
    from udd_core.methods import load_detector, run_scoring_defaults, scoring_defaults

    assert _job(tmp_path, tiny_config, epochs=1, loss="ssim", val_split=0.25).start().join(60)
    run = tmp_path / "r"
    want = {"residual": "ssim", "score": "topk", "topk_percent": 1.0}
    assert {k: run_scoring_defaults(run)[k] for k in want} == want  # read without loading (Inspect's sidebar)
    assert {k: scoring_defaults(load_detector(run))[k] for k in want} == want  # udd score, export, reports
    cal = json.loads((run / "calibration.json").read_text())
    assert cal["residual"] == "ssim"  # Inspect's default needs no rescoring of the normal images
    assert _job(tmp_path, tiny_config, "m", epochs=1, loss="mse").start().join(60)
    assert run_scoring_defaults(tmp_path / "m")["residual"] == "l2"  # MSE: the reference's scoring, unchanged
    assert run_scoring_defaults(tmp_path / "m")["score"] == "mean"
    assert json.loads((tmp_path / "m" / "calibration.json").read_text())["residual"] == "l2"


def test_images_that_do_not_fit_the_model_are_refused(tmp_path, tiny_config):
    model = seeded_model(tiny_config, SHAPE, 0)
    rgb = make_images(4, c=3)
    with pytest.raises(ValueError, match="channels"):
        train(model, rgb, None, fast(), runs.new_run(tmp_path, "r"))
    with pytest.raises(ValueError, match="uint8"):
        train(model, make_images(4).astype(np.float32), None, fast(), runs.new_run(tmp_path, "s"))
    assert run_status.read_status(tmp_path / "s")["status"] == "failed"


def test_nan_loss_stops_with_a_clear_message(tmp_path, tiny_config, monkeypatch):
    mse = make_loss("mse")
    calls = {"n": 0}

    def flaky(x, y):
        calls["n"] += 1
        out = mse(x, y)
        return out * float("nan") if calls["n"] == 3 else out

    monkeypatch.setattr(train_mod, "make_loss", lambda name: flaky)
    model = seeded_model(tiny_config, SHAPE, 0)
    run = runs.new_run(tmp_path, "r")
    imgs = make_images(12)
    job = TrainJob(run, model, imgs, None, fast(epochs=5)).start()
    assert job.join(30)
    p = job.snapshot()
    assert p.status == "failed"
    assert p.error == "loss became nan at epoch 1 step 3; lower the learning rate"
    st = run_status.read_status(run)
    assert st["status"] == "failed" and "nan" in st["message"]


def test_huge_learning_rate_diverges_cleanly(tmp_path, tiny_config):
    model = seeded_model(tiny_config, SHAPE, 0)
    with pytest.raises(TrainingFailed, match=r"loss became (nan|inf) at epoch \d+ step \d+; lower the learning rate"):
        train(model, make_images(8) // 2 + 100, None, fast(epochs=200, lr=10.0, betas=(0.0, 0.0)),
              runs.new_run(tmp_path, "r"))


# --- the job ---------------------------------------------------------------------------------

def _job(tmp_path, cfg, name="r", **kw) -> TrainJob:
    return TrainJob.create(tmp_path / name, cfg, SHAPE, make_images(12), fast(**kw), source={"path": "synthetic"})


def test_create_writes_train_json_and_refuses_a_used_folder(tmp_path, tiny_config):
    job = _job(tmp_path, tiny_config, epochs=3, val_split=0.25)
    info = json.loads((tmp_path / "r" / "train.json").read_text())
    assert info["settings"]["epochs"] == 3 and info["input_shape"] == [1, 32, 32]
    assert info["data"] == {"path": "synthetic", "count": 12, "n_train": 9, "n_val": 3,
                            "digest": images_digest(make_images(12))}
    assert images_digest(make_images(12, seed=1)) != info["data"]["digest"]
    assert set(info["versions"]) >= {"torch", "numpy", "udd"} and info["created"]
    assert (job.n_train, job.n_val) == (9, 3)
    with pytest.raises(ValueError, match="not empty"):
        _job(tmp_path, tiny_config)


def test_a_handful_of_validation_images_is_noted(tmp_path, tiny_config):
    """QA sweep 15: a generation run of 14 maps validated on 1, and its best epoch rested on it unsaid."""
    few = list(_job(tmp_path, tiny_config, "few", val_split=0.1).snapshot().notices)  # 12 images: 1 to validate
    assert few == ["only 1 validation image: the best epoch (the model kept) and the still-learning and overfit "
                   "notes rest on so few; a larger validation split, or more images, steadies them"]
    assert not _job(tmp_path, tiny_config, "enough", val_split=0.5).snapshot().notices  # 6 of them


def test_create_refuses_a_design_that_does_not_mirror(tmp_path, tiny_config):
    with pytest.raises(ValueError):
        TrainJob.create(tmp_path / "r", tiny_config, (1, 30, 30), make_images(4, size=32)[:, :30, :30], fast())
    assert not (tmp_path / "r").exists()


def test_unwritable_runs_root_is_a_clear_error(tmp_path, tiny_config):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(OSError) as e:
        TrainJob.create(tmp_path / "afile" / "runs" / "r", tiny_config, SHAPE, make_images(4), fast())
    assert str(e.value).startswith("cannot create") and "\n" not in str(e.value)


def test_storage_failure_mid_run_fails_the_job_cleanly(tmp_path, tiny_config, monkeypatch):
    def full(run_dir, record):
        raise runs.storage_error(run_dir / "history.jsonl", OSError(28, "No space left on device"))

    monkeypatch.setattr(runs, "append_history", full)
    job = _job(tmp_path, tiny_config).start()
    assert job.join(30)
    p = job.snapshot()
    assert p.status == "failed" and "No space left on device" in p.error and "history.jsonl" in p.error
    assert run_status.read_status(job.run_dir)["status"] == "failed"


def test_job_progress_stop_and_resume(tmp_path, tiny_config, dead_pid):
    job = _job(tmp_path, tiny_config, epochs=100000, val_split=0.25)
    assert job.snapshot().status == "pending"
    job.start()
    wait_for(lambda: len(job.snapshot().train_loss) >= 2)
    p = job.snapshot()
    assert p.status == "running" and p.steps_per_epoch == 3 and p.epochs == 100000
    assert p.step_loss and p.images_per_s > 0 and p.eta_s > 0 and p.lr == 1e-3
    assert p.probe_input.shape == (2, 32, 32, 1) and p.probe_recon.shape == (2, 32, 32, 1)
    assert p.probe_recon.dtype == np.uint8 and not p.probe_recon.flags.writeable
    assert run_status.read_status(job.run_dir)["status"] == "running"
    t0 = time.monotonic()
    job.stop()
    assert job.join(10)
    assert time.monotonic() - t0 < 3.0
    p = job.snapshot()
    done = len(runs.read_history(job.run_dir))
    assert p.status == "stopped" and done >= 2 and f"after {done} of" in p.message
    assert run_status.read_status(job.run_dir)["status"] == "stopped"
    assert load_model(job.run_dir).input_shape == SHAPE

    leftover = job.run_dir / f".trainer.pt.tmp-{dead_pid}"  # half written by a `udd train` killed mid-save
    leftover.write_bytes(b"half")
    again = TrainJob.resume(job.run_dir, make_images(12), epochs=done + 2)
    assert not leftover.exists()  # QA sweep 21: it stayed beside the run, hidden, after a successful resume
    first = again.snapshot()  # QA: the bar read "Starting: epoch 1/N" before the resumed loop caught up
    assert (first.epoch, first.epochs) == (done, done + 2)
    assert progress_bar(first, one_pass=False)[1].startswith(f"Starting: epoch {done + 1}/{done + 2}")
    again.start()
    assert again.join(30)
    q = again.snapshot()
    assert q.status == "finished", q.error
    assert [h["epoch"] for h in runs.read_history(job.run_dir)] == list(range(1, done + 3))
    assert len(q.train_loss) == done + 2 and q.train_loss[:done] == p.train_loss[:done]
    info = json.loads((job.run_dir / "train.json").read_text())
    assert info["settings"]["epochs"] == done + 2 and info["resumed"][0]["after_epoch"] == done


def test_a_started_run_is_running_before_its_first_epoch_and_a_run_never_saved_offers_no_resume(tmp_path, tiny_config):
    """QA: a run read "stopped, created; not started yet" while it computed its features, and one whose process
    died then offered a Resume that could only fail (no last.safetensors)."""
    job = _job(tmp_path, tiny_config, epochs=1)
    assert run_status.read_status(job.run_dir)["status"] == "stopped"
    info = next(r for r in runs.list_runs(tmp_path) if r.name == "r")
    assert resume_offer(info, "stopped") is None  # nothing saved yet: nothing to resume
    seen, real = {}, job.detector.fit

    def fit(*args, **kw):
        seen.update(run_status.read_status(job.run_dir))  # what another page sees as the fit begins
        return real(*args, **kw)

    job.detector.fit = fit
    job.start()
    assert job.join(30)
    assert seen["status"] == "running" and seen["message"] == "starting" and seen["pid"] == os.getpid()
    assert seen["epochs"] == 1
    assert resume_offer(info, "finished") is not None  # saved now: a resume can train it on


def test_stop_in_the_first_epoch_still_leaves_a_loadable_model(tmp_path, tiny_config):
    job = _job(tmp_path, tiny_config, epochs=5)
    job.stop()  # stopped before the first batch
    job.start()
    assert job.join(10)
    assert job.snapshot().status == "stopped"
    assert load_model(job.run_dir).input_shape == SHAPE
    assert runs.read_history(job.run_dir) == []


def test_resume_refusals(tmp_path, tiny_config):
    job = _job(tmp_path, tiny_config, epochs=1).start()
    assert job.join(30)
    with pytest.raises(ValueError, match="already has 1 epoch;"):
        TrainJob.resume(job.run_dir, make_images(12))
    with pytest.raises(ValueError, match="same data"):
        TrainJob.resume(job.run_dir, make_images(10), epochs=3)
    with pytest.raises(ValueError, match="not the images it was trained on"):  # same count, other content
        TrainJob.resume(job.run_dir, make_images(12, seed=1), epochs=3)
    run_status.write_status(job.run_dir, "running")  # as if another live process trained it
    with pytest.raises(ValueError, match="still being trained"):
        TrainJob.resume(job.run_dir, make_images(12), epochs=3)
    with pytest.raises(ValueError, match="not a run"):
        TrainJob.resume(tmp_path / "nothing")
    run_status.write_status(job.run_dir, "stopped", "stopped")
    info = json.loads((job.run_dir / runs.TRAIN_FILE).read_text())
    runs.write_json_atomic(job.run_dir / runs.TRAIN_FILE, {**info, "input_shape": [1, 32]})  # damaged by hand
    with pytest.raises(ValueError, match="not a run folder"):  # one line, not an unpacking error
        TrainJob.resume(job.run_dir, make_images(12), epochs=3)


def test_a_resume_that_could_not_load_its_files_leaves_the_run_as_it_was(tmp_path, tiny_config):
    """QA sweep 15: a damaged trainer.pt, weights that no longer fit the config, or a loss the model cannot take
    failed the resume after it had marked the finished run failed and rewritten train.json."""
    job = _job(tmp_path, tiny_config, epochs=1).start()
    assert job.join(30)
    before = {p.name: p.read_bytes() for p in job.run_dir.iterdir() if p.is_file()}
    state = before[runs.TRAINER_STATE]
    (job.run_dir / runs.TRAINER_STATE).write_bytes(state[:500])  # cut, as a full disk leaves it
    with pytest.raises(ValueError, match=r"^run r: cannot resume: trainer\.pt: does not load into the run's model "
                                         r"\([^\n]+\); remove trainer\.pt to resume with a fresh optimizer and "
                                         r"learning-rate schedule \(the weights are kept\)$"):
        TrainJob.resume(job.run_dir, make_images(12), epochs=3)
    (job.run_dir / runs.TRAINER_STATE).write_bytes(state)
    config = json.loads(before[CONFIG_FILE])
    (job.run_dir / CONFIG_FILE).write_text(json.dumps({**config, "latent_size": config["latent_size"] * 2}))
    with pytest.raises(ValueError, match=r"cannot resume: last\.safetensors: does not load into the run's model"):
        TrainJob.resume(job.run_dir, make_images(12), epochs=3)
    (job.run_dir / CONFIG_FILE).write_bytes(before[CONFIG_FILE])
    info = json.loads(before[runs.TRAIN_FILE])  # a size typed into train.json: the data would load at it (OOM)
    runs.write_json_atomic(job.run_dir / runs.TRAIN_FILE, {**info, "input_shape": [1, 64, 64]})
    with pytest.raises(ValueError, match=r"train\.json: input_shape \[1, 64, 64\] is not the size its weights "
                                         r"trained at \(1x32x32\)$"):
        TrainJob.resume(job.run_dir, None, epochs=3)
    (job.run_dir / runs.TRAIN_FILE).write_bytes(before[runs.TRAIN_FILE])
    assert {p.name: p.read_bytes() for p in job.run_dir.iterdir() if p.is_file()} == before  # nothing changed
    TrainJob.resume(job.run_dir, make_images(12), epochs=2)  # and, restored, it resumes


def test_a_resume_after_a_cut_last_history_line_trains_on_from_the_epochs_really_done(tmp_path, tiny_config):
    """QA sweep 15: the epoch whose record was cut was trained again and recorded twice (8 epochs run, 7 said)."""
    job = _job(tmp_path, tiny_config, epochs=3).start()
    assert job.join(30)
    path = job.run_dir / runs.HISTORY_FILE
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-1]) + lines[-1][:12])  # epoch 3's record cut mid-line
    again = TrainJob.resume(job.run_dir, make_images(12), epochs=5).start()
    assert again.join(30) and again.snapshot().status == "finished"
    assert [r["epoch"] for r in runs.read_history(job.run_dir)] == [1, 2, 4, 5]  # 3's record is lost, not redone
    assert load_model(job.run_dir, runs.LAST_WEIGHTS).metadata["epoch"] == "5"


def test_a_tiled_run_is_told_that_its_validation_tiles_come_from_its_training_photos(tmp_path, tiny_config):
    """QA sweep 18: 12 of 14 validation tiles shared 66-88% of their pixels with training tiles, and the run's
    threshold then called every normal test photo defective, with no word on why."""
    def notes(source, groups=None):
        job = TrainJob.create(tmp_path / source["path"], tiny_config, SHAPE, make_images(12), fast(), source=source,
                              groups=groups)
        return [n for n in job.snapshot().notices if "validation tiles are drawn from the same photos" in n]

    tiled = notes({"path": "tiled", "tile": True})  # split tile by tile: no photos given (or one photo only)
    assert len(tiled) == 1 and is_caution(tiled[0])
    assert notes({"path": "whole", "tile": False}) == []
    photos = [f"p{i // 4}.png" for i in range(12)]  # split by photo: nothing to warn of
    assert notes({"path": "by-photo", "tile": True}, photos) == []
    assert runs.read_train(tmp_path / "by-photo")["data"]["val"] in ([0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11])


def test_a_resume_without_its_optimizer_state_says_so(tmp_path, tiny_config):
    """QA sweep 15b: with trainer.pt deleted, a resume trained with fresh Adam state and said nothing."""
    job = _job(tmp_path, tiny_config, epochs=2).start()
    assert job.join(30)
    again = TrainJob.resume(job.run_dir, make_images(12), epochs=3).start()
    assert again.join(30) and not any(runs.TRAINER_STATE in n for n in again.snapshot().notices)
    (job.run_dir / runs.TRAINER_STATE).unlink()
    again = TrainJob.resume(job.run_dir, make_images(12), epochs=4).start()
    assert again.join(30) and again.snapshot().status == "finished"
    assert any(n.startswith("trainer.pt is missing: the optimizer") for n in again.snapshot().notices)


def test_resume_refuses_an_epoch_total_already_reached_even_when_stopped(tmp_path, tiny_config):
    """--epochs is the new total: one at or below the epochs done would train nothing yet rewrite the run."""
    job = _job(tmp_path, tiny_config, epochs=2).start()
    assert job.join(30)
    run_status.write_status(job.run_dir, "stopped", "stopped after 2 of 5 epochs")  # as if stopped early
    before = {p.name: p.read_bytes() for p in job.run_dir.iterdir() if p.is_file()}
    for total in (1, 2):
        with pytest.raises(ValueError, match="already has 2 epochs; the epoch count is the new total") as e:
            TrainJob.resume(job.run_dir, make_images(12), epochs=total)
        # QA sweep 17: "or leave it out" only where that trains on; these 2 epochs were all it planned
        assert str(e.value).endswith("ask for more than 2")
    assert {p.name: p.read_bytes() for p in job.run_dir.iterdir() if p.is_file()} == before
    resumed = TrainJob.resume(job.run_dir, make_images(12), epochs=3).start()  # more than done: trains on
    assert resumed.join(30) and len(runs.read_history(job.run_dir)) == 3
    info = runs.read_train(job.run_dir)
    runs.write_json_atomic(job.run_dir / runs.TRAIN_FILE, {**info, "settings": {**info["settings"], "epochs": 5}})
    run_status.write_status(job.run_dir, "stopped", "stopped after 3 of 5 epochs")  # planned epochs remain
    with pytest.raises(ValueError, match="ask for more than 3, or leave it out to finish the run as it was set up$"):
        TrainJob.resume(job.run_dir, make_images(12), epochs=2)


class Boom(AutoEncoder):
    def forward(self, x):
        raise RuntimeError("boom in forward")


def test_exception_in_the_thread_is_captured_with_its_location(tmp_path, tiny_config):
    run = runs.new_run(tmp_path, "r")
    job = TrainJob(run, Boom(parse_config(tiny_config), SHAPE), make_images(8), None, fast()).start()
    assert job.join(30)
    p = job.snapshot()
    assert p.status == "failed"
    assert p.error == "RuntimeError: boom in forward"
    assert p.error_where.startswith("test_train.py:") and p.error_where.endswith("in forward")
    assert run_status.read_status(run)["status"] == "failed"


def test_many_start_stop_cycles_leave_no_thread(tmp_path, tiny_config):
    before = {t.ident for t in threading.enumerate()}
    for i in range(20):
        job = _job(tmp_path, tiny_config, name=f"r{i}", epochs=1000).start()
        job.stop()
        assert job.join(10)
    left = [t for t in threading.enumerate() if t.ident not in before and t.name.startswith("udd-train")]
    assert left == []


def test_job_manager_refuses_two_jobs_on_one_run(tmp_path, tiny_config):
    mgr = JobManager()
    assert mgr.sharing_note() is None  # nothing trains: Start says nothing
    job = mgr.start(_job(tmp_path, tiny_config, epochs=100000))
    assert mgr.get("r") is job and mgr.active() == [job]
    assert mgr.sharing_note() == ("Training now: r. Another run started shares the processor with it, and each "
                                  "trains slower.")
    # QA sweep 19b: a run that `udd train` trains in another process shares the processor too
    cli = runs.RunInfo("cli", "running", 3, None, "", tmp_path / "cli")
    done = runs.RunInfo("old", "finished", 3, None, "", tmp_path / "old")
    assert mgr.sharing_note([cli, done, runs.run_info(job.run_dir)]) == (
        "Training now: r, cli (udd train). Another run started shares the processor with them, and each trains slower.")
    twin = TrainJob(job.run_dir, seeded_model(tiny_config, SHAPE, 0), make_images(4), None, fast())
    with pytest.raises(ValueError, match="already running"):
        mgr.start(twin)
    assert mgr.stop_all(10)
    assert mgr.active() == [] and mgr.get("r").snapshot().status == "stopped" and mgr.sharing_note() is None
    again = mgr.start(TrainJob.resume(job.run_dir, make_images(12), epochs=len(runs.read_history(job.run_dir)) + 1))
    assert again.join(30) and mgr.get("r") is again
    assert mgr.get("nope") is None


def test_normal_images_leave_labelled_defects_out():
    class Set:  # the fields of data.ImageSet that matter here
        images = make_images(5)
        labels = ["none", "Edge-Loc", "good", "Loc", "None"]

    imgs, note = normal_images(Set)
    assert np.array_equal(imgs, Set.images[[0, 2, 4]]) and "3 normal" in note and "the 2 labelled as defects left out" in note
    Set.labels = ["good"] * 5
    assert normal_images(Set) == (Set.images, None)


def test_engine_never_imports_streamlit():
    import subprocess
    import sys

    code = "import sys, udd_core.train, udd_core.runs, udd_core.losses; sys.exit('streamlit' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0


def test_noise_shaped_like_pattern_images(tmp_path, tiny_config):
    from PIL import Image

    from udd_core.data import DataError, load_patterns

    pats = tmp_path / "patterns"
    pats.mkdir()
    star = np.full((20, 20), 255, np.uint8)
    star[5:15, 9:11] = 0  # a bar: dark pixels are the shape
    Image.fromarray(star).save(pats / "bar.png")
    (pats / "broken.png").write_bytes(b"not an image")
    assert [p.shape for p in load_patterns(pats)] == [(20, 20)]
    s = fast(noise_patches=2, patch_size=(4, 12), patch_dir=str(pats), epochs=1)
    job = TrainJob.create(tmp_path / "run", tiny_config, SHAPE, make_images(), s).start()
    assert job.join(60) and job.snapshot().status == "finished"
    assert json.loads((tmp_path / "run" / "train.json").read_text())["settings"]["patch_dir"] == str(pats)
    with pytest.raises(DataError, match="missing"):
        TrainJob.create(tmp_path / "run2", tiny_config, SHAPE, make_images(), s.replace(patch_dir=str(tmp_path / "missing")))
    assert not (tmp_path / "run2").exists()


def test_run_rows_blank_a_one_pass_methods_epochs_and_show_live_jobs_running(tmp_path):
    from udd_core.jobs import RUN_COLUMNS, run_rows

    ae = runs.RunInfo("ae", "stopped", 3, 0.25, "2026-12-05", tmp_path / "ae", "stopped after 3", "autoencoder")
    bank = runs.RunInfo("bank", "finished", 0, None, "2026-12-05", tmp_path / "bank", "", "memory-bank")
    rows = {r[0]: dict(zip(RUN_COLUMNS, r)) for r in run_rows([ae, bank], {"ae": "running"})}
    assert rows["ae"]["status"] == "running" and (rows["ae"]["epochs"], rows["ae"]["best loss"]) == (3, 0.25)
    assert rows["bank"]["method"] == "memory-bank" and rows["bank"]["epochs"] is None  # not a misleading 0
    assert rows["bank"]["status"] == "finished"  # not in the statuses: its own
    assert rows["ae"]["created"] == datetime(2026, 12, 5)  # a datetime the table shows short
    late = runs.RunInfo("late", "finished", 1, 0.1, "2026-12-05T17:10:36+01:00", tmp_path / "l", "", "autoencoder")
    odd = runs.RunInfo("odd", "finished", 1, 0.1, "yesterday", tmp_path / "o", "", "autoencoder")
    assert [r[5] for r in run_rows([late, odd], {})] == [datetime(2026, 12, 5, 17, 10, 36), None]  # own clock
    assert JobManager().statuses([ae, bank]) == {"ae": "stopped", "bank": "finished"}  # no live job here


def test_resume_offer_follows_the_status_the_method_and_the_plan(tmp_path):
    """The Train page's Resume box: offered for a stopped autoencoder run, with its data and a total of the
    planned epochs (or twice those done once they are reached, as the still-learning note suggests); not for a running run or a one-pass method."""
    import json

    from udd_core import runs
    from udd_core.resume import resume_offer

    run = tmp_path / "r"
    run.mkdir()
    (run / runs.TRAIN_FILE).write_text(json.dumps({"settings": {"epochs": 30}, "input_shape": [1, 32, 32],
                                                   "data": {"path": "/d", "tile": True}}))
    write_tensors(run / runs.LAST_WEIGHTS, {"w": torch.zeros(1)})  # a resume needs a save to start from (a whole file)

    def info(done: int) -> runs.RunInfo:  # the epochs done are counted in the history, as a resume counts them
        (run / runs.HISTORY_FILE).write_text("".join(json.dumps({"epoch": e + 1}) + "\n" for e in range(done)))
        return runs.RunInfo(name="r", status="stopped", epochs_done=done, best_val_loss=None, created="", path=run)

    offer = resume_offer(info(12), "stopped")
    assert (offer.data_path, offer.input_shape, offer.tile, offer.total) == ("/d", (1, 32, 32), True, 30)
    assert resume_offer(info(30), "finished").total == 60  # the plan is reached: twice the epochs done
    assert offer.check_total(13) == 13  # a total above the 12 epochs done
    for total in (12, 3):
        with pytest.raises(ValueError, match=r"^Resume: enter a total above the 12 epochs done\.$"):
            offer.check_total(total)  # would train nothing
    assert resume_offer(info(12), "running") is None
    saved = (run / runs.LAST_WEIGHTS).read_bytes()
    (run / runs.LAST_WEIGHTS).write_bytes(saved[:20])  # QA sweep 8: a truncated save offered a resume that failed
    assert resume_offer(info(12), "stopped") is None
    (run / runs.LAST_WEIGHTS).write_bytes(saved)
    good = (run / runs.TRAIN_FILE).read_text()
    for damaged in ('{"settings": {"epochs": 30}, "input_shape": [1, 32]}', "[1]"):
        (run / runs.TRAIN_FILE).write_text(damaged)  # TrainJob.resume would refuse it: no Resume box
        assert resume_offer(info(12), "stopped") is None
    (run / runs.TRAIN_FILE).write_text(good.replace('"epochs": 30', '"epochs": "many"'))
    assert resume_offer(info(12), "stopped").total == 24  # no readable plan: twice the epochs done
    (run / "method.json").write_text(json.dumps({"method": "memory-bank"}))
    assert resume_offer(info(0), "finished") is None  # fitted in one pass: nothing to resume


def test_a_process_that_ends_stops_its_jobs_and_saves_them(tmp_path):
    """QA sweep 8: stopping the app (Ctrl-C, a kill) while a run trained killed its daemon thread mid-step
    (torch aborted the process) and left the run "running"; JobManager stops its jobs at exit, as Stop does."""
    import subprocess
    import sys
    from pathlib import Path

    tests = Path(__file__).resolve().parent
    script = tmp_path / "ends.py"
    script.write_text(f"""
import sys, time
sys.path.insert(0, {str(tests)!r})
import numpy as np
from inspect_fixtures import tiny_config
from udd_core import runs
from udd_core.jobs import JobManager, TrainJob
from udd_core.settings import TrainSettings
out = {str(tmp_path / "run")!r}
images = np.random.default_rng(0).integers(0, 255, (16, 32, 32, 1), dtype=np.uint8)
job = TrainJob.create(out, tiny_config(), (1, 32, 32), images, TrainSettings(epochs=100000, batch_size=2, device="cpu"),
                      {{"path": "", "kind": "folder", "tile": False}})
JobManager().start(job)
while not runs.read_history(out):
    time.sleep(0.05)
""")  # the main thread returns while the job trains: the interpreter shuts down around it
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0 and "terminate called" not in p.stderr, p.stderr
    st = run_status.read_status(tmp_path / "run")
    assert st["status"] == "stopped" and st["message"].startswith("stopped after "), st
    assert load_model(tmp_path / "run", weights_name="last.safetensors") is not None
