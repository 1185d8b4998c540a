"""Deep SVDD and latent kNN: detectors on a pretrained pixel autoencoder's latent code."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from udd_core.methods import METHODS, detector_class, load_detector
from udd_core.methods.dsvdd import (BOUNDED, SVDD_HISTORY, DeepSVDDDetector, bias_free_copy, check_codes_alive,
                                   init_center)
from udd_core.methods.latent_knn import LatentKnnDetector
from udd_core.settings import TrainSettings

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "surface"


def images(n: int, seed: int) -> np.ndarray:
    """(n, 32, 32, 1) uint8: smooth random blobs, so the autoencoder has something to learn."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:32, 0:32]
    out = np.empty((n, 32, 32, 1), np.uint8)
    for i in range(n):
        cy, cx, r = rng.uniform(8, 24), rng.uniform(8, 24), rng.uniform(4, 8)
        out[i, ..., 0] = (255 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))).astype(np.uint8)
    return out


def settings(epochs: int = 2) -> TrainSettings:
    return TrainSettings(epochs=epochs, batch_size=8, val_split=0.0, device="cpu", amp_bf16=False)


def fitted(method, tmp_path, tiny_config, options, n=24, epochs=2, name="run"):
    det = detector_class(method).build((1, 32, 32), options, tiny_config, seed=0)
    status = det.fit(images(n, 1), images(6, 2), settings(epochs), tmp_path / name)
    return det, status, tmp_path / name


def scores(det, x: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255.0
    with torch.inference_mode():
        return det.image_scores(t)


def test_both_methods_are_registered():
    assert {"dsvdd", "latent-knn"} <= set(METHODS)
    assert detector_class("dsvdd") is DeepSVDDDetector and detector_class("latent-knn") is LatentKnnDetector
    assert DeepSVDDDetector.own_scores and LatentKnnDetector.own_scores


def test_centre_is_the_mean_code_with_small_coordinates_pushed_to_eps():
    codes = torch.tensor([[1.0, 0.05, -0.05, 0.0, -2.0, 0.3], [3.0, 0.03, -0.01, 0.0, -4.0, -0.3]])
    c = init_center(codes, eps=0.1)
    assert torch.allclose(c, torch.tensor([2.0, 0.1, -0.1, 0.1, -3.0, 0.1]))
    assert torch.allclose(init_center(codes, eps=0.01), torch.tensor([2.0, 0.04, -0.03, 0.01, -3.0, 0.01]))


def test_fitted_centre_comes_from_the_pretrained_encoder(tmp_path, tiny_config):
    det, status, run = fitted("dsvdd", tmp_path, tiny_config, {"svdd_epochs": 0, "eps": 0.05})
    assert status == "finished"
    x = torch.from_numpy(images(24, 1)).permute(0, 3, 1, 2).float() / 255.0
    with torch.inference_mode():
        codes = det.model.eval().encoder(x).flatten(1)  # the pretrained AE's own encoder, biases and all
    want = codes.double().mean(0)
    small = want.abs() < 0.05
    want[small] = torch.where(want[small] >= 0, 0.05, -0.05).double()
    assert torch.allclose(det.svdd.c, want.float(), atol=1e-6)


def test_trained_part_has_no_bias_and_no_bounded_activation(tmp_path, tiny_config):
    det, _, _ = fitted("dsvdd", tmp_path, tiny_config, {"svdd_epochs": 1})
    enc = det.svdd.encoder
    assert not [n for n, _ in enc.named_parameters() if "bias" in n]
    convs = [m for m in enc.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(m.bias is None for m in convs)
    assert not [m for m in enc.modules() if isinstance(m, BOUNDED)]
    assert any(isinstance(m, nn.LeakyReLU) for m in enc.modules())
    # the pretrained encoder's biases stayed frozen at zero through pretraining, so the copy was exact
    assert all(float(m.bias.abs().max()) == 0.0 for m in det.model.encoder.modules() if isinstance(m, nn.Conv2d))


def test_bias_free_copy_refuses_what_would_change_or_collapse():
    enc = nn.Sequential(nn.Conv2d(1, 2, 3), nn.LeakyReLU(0.1))
    with pytest.raises(ValueError, match="biases are not zero"):
        bias_free_copy(enc)
    with torch.no_grad():
        enc[0].bias.zero_()
    x = torch.rand(2, 1, 8, 8)
    assert torch.equal(bias_free_copy(enc)(x), enc(x))
    with pytest.raises(ValueError, match="Tanh is a bounded activation"):
        bias_free_copy(nn.Sequential(nn.Conv2d(1, 2, 3, bias=False), nn.Tanh()))


def test_svdd_loss_goes_down_and_is_on_the_board(tmp_path, tiny_config):
    from udd_core.progress import ProgressBoard

    board = ProgressBoard(str(tmp_path / "run"), 2)
    det = DeepSVDDDetector.build((1, 32, 32), {"svdd_epochs": 6, "svdd_lr": 1e-3}, tiny_config, seed=0)
    assert det.fit(images(24, 1), images(6, 2), settings(), tmp_path / "run", board=board) == "finished"
    hist = json.loads((tmp_path / "run" / SVDD_HISTORY).read_text())
    losses = [r["train_loss"] for r in hist]
    assert len(losses) == 6 and losses[-1] < 0.8 * losses[0]
    snap = board.snapshot()
    assert snap.status == "finished" and snap.epochs == 6 and list(snap.train_loss) == losses
    assert any("Deep SVDD phase" in n for n in snap.notices)


@pytest.mark.parametrize("method,options", [("dsvdd", {"svdd_epochs": 2, "svdd_lr": 1e-3}), ("latent-knn", {"k": 2})])
def test_save_load_round_trip_gives_identical_scores_and_an_exportable_score(tmp_path, tiny_config, method, options):
    det, _, run = fitted(method, tmp_path, tiny_config, options)
    info = json.loads((run / "method.json").read_text())
    assert info["method"] == method and "residual" in info["heatmap"] and info["score_stats"]["source"] == "validation"
    back = load_detector(run)
    assert type(back) is type(det) and back.options == det.options
    x = images(5, 9)
    assert torch.equal(scores(det, x), scores(back, x))
    t = torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255.0
    with torch.inference_mode():
        maps = back.anomaly_maps(t, "ssim").maps
        assert torch.equal(back.map_module("ssim")(t), maps) and maps.shape == (5, 32, 32)
        want = back.image_scores(t)
    exported = torch.export.export(back.score_module(), (t,))  # what the ONNX exporter traces
    with torch.inference_mode():
        assert torch.allclose(exported.module()(t), want)
    np.testing.assert_array_equal(back.score_images(x), scores(det, x).double().numpy())
    # calibration.json: the AE's residual statistics (the heatmap's scale), the method's own image scores
    cal = json.loads((run / "calibration.json").read_text())
    assert cal["image_score"] == method and cal["residual"] == "l2" and "norm" in cal
    np.testing.assert_allclose(cal["scores"]["topk"], back.score_images(images(6, 2)), rtol=1e-6)
    assert type(det).is_saved(run)
    (run / type(det).weight_file).unlink()
    assert not type(det).is_saved(run)  # a run still in pretraining holds an AE but no detector yet


@pytest.mark.parametrize("method,options,name", [
    ("dsvdd", {"svdd_epochs": -1}, "svdd_epochs"), ("dsvdd", {"svdd_epochs": 2.5}, "svdd_epochs"),
    ("dsvdd", {"svdd_lr": 0}, "svdd_lr"), ("dsvdd", {"weight_decay": 2}, "weight_decay"),
    ("dsvdd", {"eps": 0.0}, "eps"), ("dsvdd", {"eps": True}, "eps"), ("dsvdd", {"k": 1}, "k"),
    ("latent-knn", {"k": 0}, "k"), ("latent-knn", {"k": "3"}, "k"), ("latent-knn", {"svdd_lr": 1e-3}, "svdd_lr"),
])
def test_bad_options_are_refused_naming_the_option(tiny_config, method, options, name):
    with pytest.raises(ValueError, match=f"^{name}: "):
        detector_class(method).build((1, 32, 32), options, tiny_config)


def test_a_config_is_required_and_k_above_the_images_is_refused_before_training(tmp_path, tiny_config):
    with pytest.raises(ValueError, match="^config: "):
        DeepSVDDDetector.build((1, 32, 32), {}, None)
    det = LatentKnnDetector.build((1, 32, 32), {"k": 9}, tiny_config)
    with pytest.raises(ValueError, match="^k: 9 is more than the 5 training images"):
        det.fit(images(5, 1), None, settings(), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_latent_knn_equals_brute_force(tmp_path, tiny_config):
    det, _, _ = fitted("latent-knn", tmp_path, tiny_config, {"k": 3})
    train, test = images(24, 1), images(7, 5)
    enc = det.model.eval().encoder
    with torch.inference_mode():
        bank = enc(torch.from_numpy(train).permute(0, 3, 1, 2).float() / 255).flatten(1).double().numpy()
        z = enc(torch.from_numpy(test).permute(0, 3, 1, 2).float() / 255).flatten(1).double().numpy()
    want = [np.mean(sorted(np.sqrt(((bank - q) ** 2).sum(1)))[:3]) for q in z]
    np.testing.assert_allclose(det.score_images(test), want, rtol=1e-4, atol=1e-4)


class StopAfter:
    """A stop event that turns on at the n-th is_set() call (the loops call it once per step)."""

    def __init__(self, n: int):
        self.n, self.calls = n, 0

    def is_set(self) -> bool:
        self.calls += 1
        return self.calls >= self.n

    def set(self) -> None:
        self.n = 0


def test_stop_in_the_svdd_phase_then_resume_equals_an_uninterrupted_run(tmp_path, tiny_config):
    opts = {"svdd_epochs": 4, "svdd_lr": 1e-3}
    ref, _, _ = fitted("dsvdd", tmp_path, tiny_config, opts, name="ref")
    steps = 3  # 24 images in batches of 8
    det = DeepSVDDDetector.build((1, 32, 32), opts, tiny_config, seed=0)
    stop = StopAfter(2 * steps + 2 * steps + 1)  # 2 pretraining epochs, 2 SVDD epochs, then stop
    run = tmp_path / "run"
    assert det.fit(images(24, 1), images(6, 2), settings(), run, stop_event=stop) == "stopped"
    assert load_detector(run).epochs_done == 2  # a loadable detector mid-way
    again = DeepSVDDDetector.build((1, 32, 32), opts, tiny_config, seed=0)
    assert again.fit(images(24, 1), images(6, 2), settings(), run, resume=True) == "finished"
    assert again.epochs_done == 4 and len(json.loads((run / SVDD_HISTORY).read_text())) == 4
    x = images(5, 9)
    assert torch.equal(scores(again, x), scores(ref, x))  # same weights, same Adam state, same batches
    assert json.loads((run / "status.json").read_text())["status"] == "finished"


def test_the_svdd_phase_reports_its_own_speed_and_eta(tmp_path, tiny_config):
    """QA: the bar read 'Deep SVDD epoch 17/400 · ETA 00:00 · 47.1 images/s', pretraining's last values."""
    from udd_core.methods.dsvdd import PHASE
    from udd_core.progress import ProgressBoard

    class Recording(ProgressBoard):
        def __setattr__(self, name, value):
            if name == "eta_s" and getattr(self, "phase", None) == PHASE:
                self.__dict__.setdefault("svdd_etas", []).append((value, self.images_per_s))
            super().__setattr__(name, value)

    board = Recording(str(tmp_path / "run"), 2)
    det = DeepSVDDDetector.build((1, 32, 32), {"svdd_epochs": 3}, tiny_config, seed=0)
    assert det.fit(images(24, 1), None, settings(2), tmp_path / "run", board=board) == "finished"
    seen = board.svdd_etas
    assert seen[0] == (None, 0.0)  # the phase starts with no estimate, not pretraining's
    steps, final = seen[1:-1], seen[-1]
    assert len(steps) == 3 * 3 and final[0] == 0.0  # every step of 3 epochs of 3 batches, then "finished"
    assert all(rate > 0 for _, rate in steps)
    left = [round(eta * rate) for eta, rate in steps]  # the images the ETA is for, whatever the speed under load
    assert left == sorted(left, reverse=True) and left[0] > left[4] > left[-1] == 0  # counts down over the phase


def test_stop_in_pretraining_leaves_a_loadable_detector_and_resume_finishes(tmp_path, tiny_config):
    run = tmp_path / "run"
    det = DeepSVDDDetector.build((1, 32, 32), {"svdd_epochs": 2}, tiny_config, seed=0)
    assert det.fit(images(24, 1), None, settings(3), run, stop_event=StopAfter(4)) == "stopped"
    assert load_detector(run).epochs_done == 0
    again = DeepSVDDDetector.build((1, 32, 32), {"svdd_epochs": 2}, tiny_config, seed=0)
    assert again.fit(images(24, 1), None, settings(3), run, resume=True) == "finished"
    assert again.epochs_done == 2 and load_detector(run).epochs_done == 2


# Measured with these exact commands over seeds 0-2 (tiny AE, 8 pretraining epochs, 64x64, 20% validation):
# image AUROC latent-knn 0.920-0.927, dsvdd 0.688-0.691. The floors sit below the lowest seen and above
# chance (0.5); the test runs seed 0. Deep SVDD is weak on this texture (the mean of the same AE's l2 map
# gave 0.78 in a trial run).
@pytest.mark.slow
@pytest.mark.parametrize("method,options,floor", [("latent-knn", ["--k", "1"], 0.85),
                                                  ("dsvdd", ["--option", "svdd_epochs=10", "--option", "svdd_lr=1e-3"], 0.6)])
def test_each_method_end_to_end_through_the_cli_is_above_chance_on_sample_data(tmp_path, capsys, method, options, floor):
    if not SAMPLE.is_dir():
        pytest.skip(f"{SAMPLE} is absent")
    from udd_core.cli import main

    cfg = tmp_path / "ae.json"
    cfg.write_text(json.dumps({"block_ker": [3, 3], "drop": [0.0, 0.0], "block_size_in": [[1, 8, 8], [8, 16, 16]],
                               "block_size_out": [[16, 16, 8], [8, 8, 1]], "latent_size": 8, "latent_ker": 3,
                               "latent_opad": 1, "out_pad": [1, 1]}))
    run = tmp_path / "run"
    assert main(["train", str(cfg), "--method", method, *options, "--data", str(SAMPLE), "--out", str(run),
                 "--size", "64,64", "--epochs", "8", "--batch-size", "8", "--val-split", "0.2",
                 "--device", "cpu", "--precision", "float32"]) == 0
    assert json.loads((run / "method.json").read_text())["method"] == method
    capsys.readouterr()
    assert main(["score", str(run), "--data", str(SAMPLE), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["metrics"]["image_auroc"] > floor
    # the threshold comes from the method's own scores of the validation images, not the AE's residual
    cal = json.loads((run / "calibration.json").read_text())
    assert cal["image_score"] == method and len(cal["scores"]["mean"]) == 12


def test_a_failure_in_the_svdd_phase_marks_the_run_failed(tmp_path, tiny_config, monkeypatch):
    from udd_core.progress import ProgressBoard

    def boom(*a, **k):
        raise RuntimeError("svdd broke")

    monkeypatch.setattr(DeepSVDDDetector, "_train_svdd", boom)
    board = ProgressBoard(str(tmp_path / "run"), 2)
    det = DeepSVDDDetector.build((1, 32, 32), {}, tiny_config, seed=0)
    with pytest.raises(RuntimeError, match="svdd broke"):
        det.fit(images(16, 1), None, settings(1), tmp_path / "run", board=board)
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert status["status"] == "failed" and "svdd broke" in status["message"]
    assert board.snapshot().status == "failed"


@pytest.mark.parametrize("method", ["dsvdd", "latent-knn"])
def test_inspect_says_the_heatmap_is_the_pretrained_autoencoders_residual(tmp_path, tiny_config, method):
    """QA sweep 12: Inspect's caption said "the heatmap is its anomaly map": the run's spec was the pixel
    autoencoder's (no method.json read), so it had no words for the heatmap."""
    from udd_core.inspection_views import method_caption
    from udd_core.methods import run_spec

    _, status, run = fitted(method, tmp_path, tiny_config, None, epochs=1)
    spec = run_spec(run)
    assert status == "finished" and spec == json.loads((run / "method.json").read_text())
    assert method_caption(spec, []).startswith(f"Method **{method}**: the heatmap is the pretrained autoencoder's "
                                               "residual map (of the residual kind chosen, l2 by default)")


def test_an_encoder_that_pretrained_into_zero_codes_fails_the_run_saying_why(tmp_path, tiny_config):
    """QA sweep 12: the wafer preset's weight decay shrank wafer-26's bias-free encoder to codes of 1e-16; every
    map then scored 1.28 (image AUROC 0.5) and the run finished as if nothing were wrong."""
    det = DeepSVDDDetector.build((1, 32, 32), {}, tiny_config, seed=0)
    with torch.no_grad():  # zero weights, no biases: zero codes and zero gradients, as the collapse left them
        for p in det.model.encoder.parameters():
            p.zero_()
    with pytest.raises(ValueError, match=r"^dsvdd: the pretrained encoder maps every image to zero \(largest "
                                         r"\|code\| 0\), so every image would score the same: weight decay 0.001 "
                                         r"shrank its bias-free weights away; train again with weight decay 0 "
                                         r"\(udd train "
                                         r"--weight-decay 0; Weight decay on the Train page\)$"):
        det.fit(images(16, 1), None, settings(1).replace(weight_decay=1e-3), tmp_path / "run")
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert status["status"] == "failed" and "maps every image to zero" in status["message"]
    check_codes_alive(torch.full((4, 8), 1e-3), 0.0)  # small codes that still differ are fine


def test_images_of_another_size_or_channel_count_are_refused(tiny_config):
    det = LatentKnnDetector.build((1, 32, 32), {}, tiny_config)
    det.check_input((1, 32, 32))
    with pytest.raises(ValueError, match="^size 64x64: the latent-knn run was fitted on 32x32"):
        det.check_input((1, 64, 64))  # it would propagate, but its codes would not compare with the bank's
    with pytest.raises(ValueError, match="^channels: "):
        det.check_input((3, 32, 32))


def test_a_job_stopped_in_the_svdd_phase_resumes_through_trainjob(tmp_path, tiny_config):
    from udd_core.jobs import TrainJob
    from udd_core.training_data import split_indices

    imgs, s = images(30, 1), settings(2).replace(val_split=0.2)
    run = tmp_path / "run"
    job = TrainJob.create(run, tiny_config, (1, 32, 32), imgs, s, method="dsvdd",
                          options={"svdd_epochs": 3, "svdd_lr": 1e-3})
    assert json.loads((run / "config.json").read_text())["latent_size"] == tiny_config["latent_size"]
    tr, va = split_indices(len(imgs), 0.2, s.seed)
    # the job's own detector, stopped after 2 pretraining epochs and 1 SVDD epoch (3 steps each)
    assert job.detector.fit(imgs[tr], imgs[va], s, run, stop_event=StopAfter(2 * 3 + 3 + 1)) == "stopped"
    assert len(json.loads((run / SVDD_HISTORY).read_text())) == 1
    again = TrainJob.resume(run, imgs).start()
    assert again.join(60)
    assert again.snapshot().status == "finished"
    assert load_detector(run).epochs_done == 3 and len(json.loads((run / SVDD_HISTORY).read_text())) == 3


def test_a_new_total_on_resume_counts_the_deep_svdd_epochs_once_they_have_begun(tmp_path, tiny_config):
    from udd_core import runs
    from udd_core import run_status
    from udd_core.jobs import TrainJob
    from udd_core.resume import ResumeOffer, resume_offer
    from udd_core.tensor_files import read_tensors

    imgs, s = images(30, 1), settings(2).replace(val_split=0.2)
    run = tmp_path / "run"
    job = TrainJob.create(run, tiny_config, (1, 32, 32), imgs, s, method="dsvdd",
                          options={"svdd_epochs": 3, "svdd_lr": 1e-3}).start()
    assert job.join(60) and job.snapshot().status == "finished"
    first = json.loads((run / SVDD_HISTORY).read_text())
    centre = read_tensors(run / "svdd.safetensors")[0]["c"]
    (info,) = runs.list_runs(tmp_path)
    assert resume_offer(info, "finished") == ResumeOffer("", (1, 32, 32), False, 6, 3, "Deep SVDD epoch")
    with pytest.raises(ValueError, match="already has 3 Deep SVDD epochs; the epoch count is the new total"):
        TrainJob.resume(run, imgs, epochs=3)  # would train nothing
    again = TrainJob.resume(run, imgs, epochs=5).start()  # used to pretrain to 5 and restart Deep SVDD from a new c
    assert again.join(60) and again.snapshot().status == "finished"
    assert len(runs.read_history(run)) == 2  # no more pretraining
    history = json.loads((run / SVDD_HISTORY).read_text())
    assert len(history) == 5 and history[:3] == first  # the 3 epochs kept, 2 more trained on
    assert torch.equal(read_tensors(run / "svdd.safetensors")[0]["c"], centre)  # the same centre
    assert load_detector(run).epochs_done == 5 and load_detector(run).options["svdd_epochs"] == 5
    assert run_status.read_status(run)["message"] == "finished 2 pretraining and 5 Deep SVDD epochs"
    train = runs.read_train(run)
    assert train["options"]["svdd_epochs"] == 5 and train["settings"]["epochs"] == 2
    assert train["resumed"][-1]["after_epoch"] == 3 and train["resumed"][-1]["phase"] == "Deep SVDD epoch"


def test_a_new_total_on_resume_still_counts_pretraining_epochs_before_deep_svdd_began(tmp_path, tiny_config):
    from udd_core import runs
    from udd_core.jobs import TrainJob

    imgs, s = images(30, 1), settings(3).replace(val_split=0.2)
    run = tmp_path / "run"
    job = TrainJob.create(run, tiny_config, (1, 32, 32), imgs, s, method="dsvdd", options={"svdd_epochs": 2})
    assert job.detector.fit(*(imgs[:24], imgs[24:]), s, run, stop_event=StopAfter(4)) == "stopped"  # in epoch 2
    again = TrainJob.resume(run, imgs, epochs=4).start()
    assert again.join(60) and again.snapshot().status == "finished"
    assert len(runs.read_history(run)) == 4 and len(json.loads((run / SVDD_HISTORY).read_text())) == 2


def test_the_run_reads_running_between_pretraining_and_its_own_phase(tmp_path, tiny_config, monkeypatch):
    """QA sweep 19b: status.json said "finished" after pretraining while the Deep SVDD phase had yet to run, and
    a run killed then stayed "finished", with no svdd.safetensors to score."""
    from udd_core import run_status

    written = []
    real = run_status.write_status
    monkeypatch.setattr(run_status, "write_status", lambda d, status, msg, **kw: (written.append((status, msg)),
                                                                                  real(d, status, msg, **kw))[1])
    det = DeepSVDDDetector.build((1, 32, 32), {"svdd_epochs": 2}, tiny_config, seed=0)
    assert det.fit(images(24, 1), None, settings(2), tmp_path / "run") == "finished"
    statuses = [status for status, _ in written]
    assert statuses[-1] == "finished" and "finished" not in statuses[:-1]
    assert any(msg.startswith("finished 2 epochs") and msg.endswith("; the dsvdd phase next") for _, msg in written)
