"""The memory-bank detector: coreset and kNN kernels, save/load, stop, options, and real detection on sample_data."""
import json
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from udd_core import coreset as cs
from udd_core.data import load_dataset, to_tensor
from udd_core.metrics import compute_metrics
from udd_core.methods import detector_class, load_detector
from udd_core.methods.bank_options import DEFAULTS, defaults_for
from udd_core.methods.memory_bank import BANK_FILE, MemoryBankDetector
from udd_core.progress import ProgressBoard
from udd_core.residuals import smooth_maps
from udd_core.scoring import image_scores
from udd_core.settings import TrainSettings

SURFACE = Path(__file__).resolve().parents[1] / "sample_data" / "surface"
SHAPE = (1, 64, 64)


# -- coreset ----------------------------------------------------------------------------------

@pytest.mark.parametrize("ratio, block, proj_dim", [(0.05, 0, 0), (0.1, 300, 0), (0.02, 700, 8), (0.5, 0, 4)])
def test_coreset_size_and_every_point_within_the_covering_radius(ratio, block, proj_dim):
    x = torch.randn(2000, 16, generator=torch.Generator().manual_seed(1)) * torch.linspace(0.2, 3, 16)
    c = cs.greedy_coreset(x, ratio, proj_dim=proj_dim, block=block, seed=3)
    assert len(c.indices) == int(np.ceil(ratio * 2000)) and not c.stopped
    assert torch.equal(c.indices, torch.unique(c.indices))  # sorted, no repeats
    proj = cs.random_projection(16, proj_dim, 3)
    z = x if proj is None else x @ proj
    nearest = torch.cdist(z.double(), z[c.indices].double()).min(dim=1).values
    assert nearest.max().item() <= c.radius * (1 + 1e-5) + 1e-6
    if block == 0:  # one block: the radius is attained, not a loose bound
        assert nearest.max().item() >= c.radius * (1 - 1e-3)


def test_greedy_picks_the_farthest_point_each_time():
    # On a line, the second pick is the end farther from the random start.
    x = torch.arange(101, dtype=torch.float32).unsqueeze(1)
    for seed in range(5):
        a, b = cs.greedy_coreset(x, 2 / 101, proj_dim=0, block=0, seed=seed).indices.tolist()
        start, end = (a, b) if b in (0, 100) and abs(b - a) >= 50 else (b, a)
        assert end == (100 if start < 50 else 0)


def test_coreset_stops_on_the_event_and_reports_progress():
    ev, seen = threading.Event(), []

    def progress(done, total):
        seen.append((done, total))
        if done >= 20:
            ev.set()

    c = cs.greedy_coreset(torch.randn(5000, 8), 0.1, proj_dim=0, block=0, stop_event=ev, progress=progress)
    assert c.stopped and 20 <= len(c.indices) < 500
    assert seen[0][1] == 500 and [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_coreset_refuses_a_bad_ratio():
    with pytest.raises(ValueError, match="^coreset: must be in"):
        cs.greedy_coreset(torch.randn(10, 2), 0.0)


# -- kNN --------------------------------------------------------------------------------------

@pytest.mark.parametrize("k", [1, 3])
def test_knn_equals_brute_force(k):
    g = torch.Generator().manual_seed(0)
    q, bank = torch.randn(503, 24, generator=g) * 3 + 1, torch.randn(97, 24, generator=g) * 3
    got = cs.knn_distance(q, bank, k, chunk_rows=50)  # several chunks, the last one short
    want = torch.cdist(q.double(), bank.double()).topk(k, dim=1, largest=False).values.mean(dim=1)
    torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("k", [1, 3])
def test_knn_divided_by_the_spread_equals_brute_force(k):
    """Each distance is divided by the spread of the query's nearest bank row, chunked or not."""
    g = torch.Generator().manual_seed(2)
    q, bank = torch.randn(301, 12, generator=g) * 2, torch.randn(64, 12, generator=g)
    spread = torch.rand(64, generator=g) + 0.5
    d = torch.cdist(q.double(), bank.double())  # (Q, M)
    want = d.topk(k, dim=1, largest=False).values.mean(dim=1) / spread.double()[d.argmin(dim=1)]
    torch.testing.assert_close(cs.knn_distance(q, bank, k, chunk_rows=40, spread=spread).double(), want,
                               rtol=1e-4, atol=1e-4)


def test_bank_spread_is_the_mean_distance_to_the_other_rows_floored_at_a_quarter_of_the_median():
    g = torch.Generator().manual_seed(4)
    bank = torch.randn(90, 6, generator=g) * torch.linspace(0.5, 4, 90).unsqueeze(1)  # sparser further on
    d = torch.cdist(bank.double(), bank.double()).fill_diagonal_(float("inf"))
    want = d.topk(3, dim=1, largest=False).values.mean(dim=1)
    torch.testing.assert_close(cs.bank_spread(bank, 3, chunk_rows=16).double(), want, rtol=1e-4, atol=1e-4)
    dup = torch.cat([bank, bank[:1].repeat(5, 1)])  # six copies of one row: their spread would be 0
    s = cs.bank_spread(dup, 3)
    assert s.min().item() == pytest.approx(s.median().item() / 4) and s.min() > 0
    same = torch.full((20, 6), 3.0)  # identical rows (identical training images): every spread is noise
    rms = 3.0 * 6 ** 0.5
    assert cs.bank_spread(same, 3).tolist() == pytest.approx([0.01 * rms] * 20)  # not 1e-6: scores stay sane
    assert cs.bank_spread(bank[:1], 9).tolist() == [1.0]  # one row: nothing to measure against
    assert cs.bank_spread(bank[:3], 9).shape == (3,)  # k capped at M - 1


def test_knn_of_a_bank_point_is_zero_and_chunks_bound_memory():
    bank = torch.randn(50, 8)
    assert cs.knn_distance(bank, bank, 1).max() < 5e-3  # clamped, never NaN from a tiny negative
    assert cs.knn_chunk_rows(1000, 4_000_000) == 1000  # 1000 x 1000 float32 = the 4 MB budget


# -- the detector -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def surface():
    return load_dataset(SURFACE, SHAPE, split="train"), load_dataset(SURFACE, SHAPE, split="test")


@pytest.fixture(scope="module")
def fitted(surface, tmp_path_factory):
    run = tmp_path_factory.mktemp("bank")
    det = detector_class("memory-bank").build(SHAPE, {"coreset": 0.1}, None, 0)
    board = ProgressBoard(str(run), epochs=0)
    messages = []
    orig = board.update
    board.update = lambda **kw: (messages.append(kw.get("message", "")), orig(**kw))[1]
    settings = TrainSettings(epochs=1, batch_size=16, device="cpu")  # AE-only fields are ignored
    status = det.fit(surface[0].images, None, settings, run, stop_event=threading.Event(), board=board)
    return det, run, status, messages, board


def test_fit_reports_both_phases_and_writes_the_run(fitted):
    det, run, status, messages, board = fitted
    assert status == "finished" and board.snapshot().status == "finished"
    assert any(m.startswith("embedding images") for m in messages)
    assert any(m.startswith("selecting the coreset") for m in messages)
    info = json.loads((run / "method.json").read_text())
    assert info["method"] == "memory-bank" and info["score"] == "max"
    assert info["smooth_sigma"] == defaults_for(SHAPE)["smooth_sigma"] == 4.0
    _, h, w = det.feature_shape()
    assert (h, w) == (8, 8)  # 64x64 is small: the stride-8 + stride-16 pair
    assert info["fit"]["bank"] == det.bank.shape[0] == int(np.ceil(0.1 * 60 * h * w))
    assert info["fit"]["covering_radius"] > 0
    assert json.loads((run / "status.json").read_text())["status"] == "finished"


def test_beats_chance_by_a_wide_margin_on_sample_data(fitted, surface):
    det, test = fitted[0], surface[1]
    maps = smooth_maps(det.anomaly_maps(to_tensor(test.images)).maps, det.options["smooth_sigma"])  # (N, H, W)
    scores = image_scores(maps, "max")
    m = compute_metrics(scores.numpy(), test.labels, maps.numpy(), test.masks)
    # Measured: image AUROC 1.00, pixel AUROC ~0.97 at 64x64 (chance is 0.5 for both).
    assert m.image_auroc > 0.9 and m.pixel_auroc > 0.85


def test_save_load_round_trip_gives_identical_maps(fitted, surface):
    det, run = fitted[0], fitted[1]
    x = to_tensor(surface[1].images[:6])
    again = load_detector(run)
    assert isinstance(again, MemoryBankDetector) and again.describe() == det.describe()
    assert torch.equal(again.anomaly_maps(x).maps, det.anomaly_maps(x).maps)


def test_map_module_equals_the_maps_and_traces(fitted, surface):
    det = fitted[0]
    x = to_tensor(surface[1].images[:3])
    module = det.map_module()
    with torch.inference_mode():
        torch.testing.assert_close(module(x), det.anomaly_maps(x).maps, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        traced = torch.jit.trace(module, x, check_trace=False)
        torch.testing.assert_close(traced(x), det.anomaly_maps(x).maps, rtol=1e-5, atol=1e-5)


def test_stop_during_the_coreset_returns_stopped_with_a_loadable_bank(surface, tmp_path):
    ev = threading.Event()

    class Board:  # stops the fit as soon as the coreset selection reports
        def update(self, **kw):
            if str(kw.get("message", "")).startswith("selecting the coreset"):
                ev.set()

    det = detector_class("memory-bank").build(SHAPE, {"coreset": 0.5}, None, 0)
    assert det.fit(surface[0].images, None, None, tmp_path, stop_event=ev, board=Board()) == "stopped"
    assert json.loads((tmp_path / "status.json").read_text())["status"] == "stopped"
    again = load_detector(tmp_path)
    assert 1 <= again.bank.shape[0] < 0.5 * 60 * 64 and (tmp_path / BANK_FILE).is_file()


@pytest.mark.parametrize("options, name", [
    ({"coreset": 0}, "coreset"), ({"coreset": 1.5}, "coreset"), ({"coreset": "a"}, "coreset"),
    ({"k": 0}, "k"), ({"k": 2.5}, "k"), ({"layers": ["s8", "s7"]}, "layers"), ({"pool": 4}, "pool"),
    ({"smooth_sigma": -1}, "smooth_sigma"), ({"backbone": "resnet18"}, "backbone"), ({"depth": 3}, "depth"),
    ({"proj_dim": -2}, "proj_dim"), ({"score": "median"}, "score"), ({"topk_percent": 0}, "topk_percent"),
    ({"border": 32}, "border"), ({"border": -1}, "border"), ({"border": 2.0}, "border"),
])
def test_bad_options_are_refused_naming_the_option(options, name):
    with pytest.raises(ValueError, match=rf"^{name}: ") as e:
        detector_class("memory-bank").build(SHAPE, options, None, 0)
    assert "\n" not in str(e.value)


def test_the_backbone_takes_its_weights_package_name_as_a_config_does():
    """QA sweep 12: a config's input.backbone took "efficientnet-lite0", `udd train --backbone` refused it."""
    det = detector_class("memory-bank").build(SHAPE, {"backbone": "efficientnet-lite0"}, None, 0)
    assert det.options["backbone"] == "lite0"


def test_bad_inputs_are_refused_in_one_line(tmp_path):
    with pytest.raises(ValueError, match="^config: "):
        detector_class("memory-bank").build(SHAPE, None, {"x": 1}, 0)
    with pytest.raises(ValueError, match="^size 8x64: "):
        detector_class("memory-bank").build((1, 8, 64), None, None, 0)
    det = detector_class("memory-bank").build(SHAPE, None, None, 0)
    with pytest.raises(ValueError, match="^channels: "):
        det.check_input((3, 64, 64))
    with pytest.raises(ValueError, match="^residual: "):
        det.map_module("l2")
    (tmp_path / "method.json").write_text(json.dumps(det.describe()))
    with pytest.raises(ValueError, match="bank.safetensors: missing"):
        load_detector(tmp_path)


def test_the_default_layers_follow_the_image_size_and_a_users_choice_wins():
    """Context layers (stride 32) from CONTEXT_MIN_SIDE pixels a side; PatchCore's pair below; never over the user's."""
    big = detector_class("memory-bank").build((1, 256, 256), None, None, 0)
    small = detector_class("memory-bank").build((1, 128, 256), None, None, 0)
    assert big.options["layers"] == DEFAULTS["layers"] == ["s16", "stage6", "s32"] and big.options["smooth_sigma"] == 8.0
    assert big.feature_shape() == (624, 16, 16)
    assert small.options["layers"] == ["s8", "s16"] and small.options["smooth_sigma"] == 4.0
    mine = detector_class("memory-bank").build((1, 64, 64), {"layers": ["stage6", "s32"], "smooth_sigma": 2}, None, 0)
    assert mine.options["layers"] == ["stage6", "s32"] and mine.options["smooth_sigma"] == 2.0
    assert defaults_for((1, 192, 192))["layers"] == DEFAULTS["layers"] and defaults_for(None) == DEFAULTS


def test_the_image_score_defaults_follow_the_size_and_older_runs_keep_theirs(tmp_path):
    """From CONTEXT_MIN_SIDE px: top 10% without a border of 1/16 of the side (chosen on magnetic_tile);
    below it the whole map's maximum; a run saved before these options keeps the maximum it was scored by."""
    from safetensors.torch import save_file

    from udd_core.methods import scoring_defaults

    big = detector_class("memory-bank").build((1, 256, 320), None, None, 0)
    assert scoring_defaults(big) == {"residual": "knn", "score": "topk", "topk_percent": 10.0, "border": 16,
                                     "smooth_sigma": 8.0}
    small = detector_class("memory-bank").build(SHAPE, None, None, 0)
    assert scoring_defaults(small)["score"] == "max" and scoring_defaults(small)["border"] == 0
    mine = detector_class("memory-bank").build((1, 256, 256), {"border": 0, "score": "max"}, None, 0)
    assert (scoring_defaults(mine)["border"], scoring_defaults(mine)["score"]) == (0, "max")
    old = {k: v for k, v in big.describe().items() if k not in ("score", "topk_percent", "border", "spread_k")}
    (tmp_path / "method.json").write_text(json.dumps({**old, "score": "max"}))  # as written before the options
    save_file({"bank": torch.zeros(4, big.feature_shape()[0])}, str(tmp_path / BANK_FILE))
    again = load_detector(tmp_path)
    assert (scoring_defaults(again)["score"], scoring_defaults(again)["border"]) == ("max", 0)
    assert again.options["spread_k"] == 0 and again.spread is None  # plain distances, as it was scored


def test_the_spread_is_saved_and_a_bank_file_without_it_is_refused(fitted, tmp_path):
    """Default spread_k 9: the fit stores the bank's spread beside it; maps are distances in its units."""
    import shutil

    from safetensors.torch import load_file, save_file

    det, run = fitted[0], fitted[1]
    assert det.options["spread_k"] == DEFAULTS["spread_k"] == 9
    saved = load_file(str(run / BANK_FILE))
    torch.testing.assert_close(saved["spread"], cs.bank_spread(det.bank, 9))
    x = to_tensor(np.zeros((1, 64, 64, 1), np.uint8) + 128)
    plain = MemoryBankDetector(det.input_shape, {**det.options, "spread_k": 0}, 0, det.bank)
    q = det.anomaly_maps(x).maps
    assert not torch.allclose(q, plain.anomaly_maps(x).maps)  # the spread changes the map
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    save_file({"bank": saved["bank"]}, str(copy / BANK_FILE))  # the spread lost
    with pytest.raises(ValueError, match=r"bank.safetensors: spread must be \(\d+,\) for spread_k 9, got None$"):
        load_detector(copy)


def test_a_bad_spread_k_is_named():
    with pytest.raises(ValueError, match=r"^spread_k: must be an integer in 0..100"):
        detector_class("memory-bank").build(SHAPE, {"spread_k": -1}, None, 0)


def test_udd_train_help_states_the_memory_banks_defaults():
    """The help text spells the defaults out (no torch at --help time): a test keeps it from drifting."""
    from udd_core.cli_parser import build_parser
    from udd_core.methods.bank_options import CONTEXT_MIN_SIDE, SMALL_IMAGE_DEFAULTS

    sub = next(a for a in build_parser()._actions if a.dest == "command").choices["train"]
    helps = {a.dest: a.help for a in sub._actions}
    assert f"default {','.join(DEFAULTS['layers'])}; {','.join(SMALL_IMAGE_DEFAULTS['layers'])} below " \
           f"{CONTEXT_MIN_SIDE} px" in helps["layers"]
    assert f"(default {DEFAULTS['coreset']:g})" in helps["coreset"] and f"(default {DEFAULTS['k']})" in helps["k"]


def test_a_memory_bank_on_wafer_maps_is_cautioned_at_training_and_scoring(tmp_path, capsys):
    """QA sweep 19a: a memory bank's wafer heatmaps missed the patterns (image AUROC 0.89 all the same), and only
    the feature AE's scoring said that ImageNet features mean little on one-hot die maps."""
    from udd_core.cli import main

    wafers = Path(__file__).resolve().parents[1] / "sample_data" / "wafer_maps_26x26.npz"
    run = tmp_path / "bank"
    assert main(["train", "--method", "memory-bank", "--data", str(wafers), "--out", str(run), "--size", "64,64"]) == 0
    said = "warning: memory-bank compares an ImageNet backbone's features, which mean little on one-hot wafer maps"
    err = capsys.readouterr().err
    assert said in err and err.index(said) < err.index("udd train: ")  # before the fit's time is spent
    assert main(["score", str(run)]) == 0
    assert said in capsys.readouterr().err


def test_the_feature_ae_preset_trains_on_wafer_maps_with_their_three_channels(tmp_path, capsys):
    """QA sweep 19a: `udd train feature-ae --data maps.npz` was refused, "the model takes C=1" (the preset's gray
    channel), where the same design from a file trained; now it trains, with the wafer caution first."""
    from udd_core.cli import main
    from udd_core.runs import read_train

    wafers = Path(__file__).resolve().parents[1] / "sample_data" / "wafer_maps_26x26.npz"
    run = tmp_path / "fae"
    assert main(["train", "feature-ae", "--data", str(wafers), "--out", str(run), "--size", "128,128",
                 "--epochs", "1"]) == 0, capsys.readouterr().err
    assert read_train(run)["input_shape"] == [3, 128, 128]
    assert "warning: feature-ae compares an ImageNet backbone's features" in capsys.readouterr().err
