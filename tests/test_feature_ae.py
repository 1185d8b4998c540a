"""The feature autoencoder: the config's "input" field, shapes from the feature tensor, the detector end to end."""
import json
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from udd_core import backbone as bb
from udd_core.cli import main as cli_main
from udd_core.config import ConfigError, parse_config
from udd_core.display import score_text
from udd_core.feature_input import BACKBONES, FeatureInput, cache_bytes, feature_shape, parse_input
from udd_core.methods import detector_class, load_detector
from udd_core.feeds import feature_cache_bytes
from udd_core.methods.feature_stats import STATS_FILE
from udd_core.model import build_model
from udd_core.presets import model_presets
from udd_core.image_shapes import ae_input_shape, propagate_image
from udd_core.shapes import ShapeError

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "surface"
REF_TEXT = """{'block_ker': [5, 5], 'drop': [0.1, 0.1], 'block_size_in': [[3, 25, 20], [20, 15, 10]],
'block_size_out': [[5, 10, 15], [15, 20, 3]], 'latent_size': 3, 'latent_ker': 3,
'latent_opad': (1, 1), 'out_pad': [(1, 1), (1, 1)]}"""


def feature_config(channels: int = 152, mid: int = 16, latent: int = 8) -> dict:
    """One 3x3 block over the default features: 152 x h x w -> latent x h/4 x w/4 (mirrors for h, w % 4 == 0)."""
    return {"block_ker": [3], "drop": [0.0], "block_size_in": [[channels, mid, mid]],
            "block_size_out": [[mid, mid, channels]], "latent_size": latent, "latent_ker": 3,
            "latent_opad": 1, "out_pad": [1], "input": {"kind": "features", "backbone": "lite0",
                                                       "layers": ["s8", "s16"], "pool": 3}}


# --- the config field ------------------------------------------------------------------------

def test_feature_config_round_trips_through_json():
    c = parse_config(feature_config())
    assert c.input == FeatureInput("lite0", ("s8", "s16"), 3)
    again = parse_config(c.to_json())
    assert again == c and again.input == c.input
    assert json.loads(c.to_json())["input"] == {"kind": "features", "backbone": "lite0", "layers": ["s8", "s16"],
                                                "pool": 3}


def test_pixel_configs_and_the_reference_format_are_unchanged(tiny_config):
    ref = parse_config(REF_TEXT)
    assert ref.input is None and "input" not in ref.to_dict()
    assert list(ref.to_dict()) == ["block_ker", "drop", "block_size_in", "block_size_out", "latent_size",
                                   "latent_ker", "latent_opad", "out_pad"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "input" is a known field now: no unknown-key warning
        assert parse_config(dict(tiny_config, input={"kind": "pixels"})).input is None
    assert parse_config(tiny_config).to_dict() == tiny_config


def test_input_aliases_and_order_are_normalised():
    a = parse_input({"kind": "features", "backbone": "efficientnet-lite0", "layers": ["s16", "stage3"]})
    assert a == FeatureInput("lite0", ("stage3", "s16"), 3) and a.channels == 152 and a.stride == 8


@pytest.mark.parametrize("bad, field", [
    ({"kind": "voxels"}, "input.kind"),
    ({"kind": "features", "backbone": "resnet"}, "input.backbone"),
    ({"kind": "features", "layers": []}, "input.layers"),
    ({"kind": "features", "layers": ["s8", "s7"]}, "input.layers[1]"),
    ({"kind": "features", "layers": ["s8", "stage3"]}, "input.layers"),
    ({"kind": "features", "pool": 2}, "input.pool"),
    ({"kind": "features", "pool": True}, "input.pool"),
    ({"kind": "features", "stride": 8}, "input.stride"),
    ({"kind": "pixels", "pool": 3}, "input.pool"),
    ("features", "input"),
])
def test_bad_input_fields_are_named(bad, field, tiny_config):
    with pytest.raises(ConfigError) as e:
        parse_config(dict(tiny_config, input=bad))
    assert str(e.value).startswith(f"{field}: ") and "\n" not in str(e.value)


def test_layer_table_matches_the_backbone():
    for name, (channels, stride) in BACKBONES["lite0"].items():
        assert bb.layer_info(name) == (channels, stride)
    assert set(BACKBONES) == set(bb.BACKBONES)


# --- shapes ----------------------------------------------------------------------------------

@pytest.mark.parametrize("image", [(1, 256, 256), (3, 97, 130), (1, 64, 40)])
def test_feature_shape_equals_a_real_forward_pass(image):
    spec = FeatureInput()
    fx = bb.FeatureExtractor(spec.layers, spec.pool)
    with torch.inference_mode():
        f = fx(torch.rand(1, *image))
    assert tuple(f.shape[1:]) == feature_shape(spec, image) == bb.feature_shape(image, spec.layers)
    assert cache_bytes(spec, image, 10) == 10 * 2 * int(np.prod(f.shape[1:]))


def test_shape_table_from_the_feature_tensor_equals_the_autoencoder_forward():
    image = (1, 128, 96)
    config = feature_config()
    report = propagate_image(config, image)
    assert report.ok and report.input == (152, 16, 12) == ae_input_shape(config, image)
    model = build_model(config).eval()
    seen = {}
    hooks = [m.register_forward_hook(lambda m, i, o, n=name: seen.__setitem__(n, tuple(o.shape[1:])))
             for name, m in model.named_modules() if not list(m.children())]
    with torch.no_grad():
        out = model(torch.zeros(1, *report.input))
    for h in hooks:
        h.remove()
    assert {l.name: l.out_shape for l in report.layers} == seen
    assert tuple(out.shape[1:]) == report.output == report.input


def test_a_pixel_config_under_the_feature_method_takes_the_default_features(tiny_config):
    assert ae_input_shape(tiny_config, (1, 256, 256)) == (1, 256, 256)
    assert ae_input_shape(tiny_config, (1, 256, 256), "feature-ae") == (152, 32, 32)
    with pytest.raises(ShapeError) as e:  # 1 channel in the config, 152 features: the fix is offered
        propagate_image(tiny_config, (1, 256, 256), "feature-ae")
    assert "152" in str(e.value) and e.value.suggested.in_channels == 152
    with pytest.raises(ShapeError, match="gray"):
        ae_input_shape(feature_config(), (4, 64, 64))


def test_the_feature_ae_preset_mirrors_at_its_size():
    p = model_presets()["feature-ae"]
    report = propagate_image(p.config, p.input_shape)
    assert report.ok and report.input == (512, 8, 8) and p.input_shape[1:] == (256, 256)


def test_udd_shapes_with_the_feature_method(capsys, tmp_path, tiny_config):
    assert cli_main(["shapes", "feature-ae", "--input", "1,256,256", "--method", "feature-ae", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["input"] == [512, 8, 8] and out["image_input"] == [1, 256, 256]
    assert out["input_kind"]["layers"] == ["stage6", "s32"] and out["ok"]
    assert cli_main(["shapes", "feature-ae", "--input", "3,256,256"]) == 0  # the config's own input field
    assert "512x8x8" in capsys.readouterr().out
    path = tmp_path / "pixel.json"
    path.write_text(json.dumps(tiny_config))
    assert cli_main(["shapes", str(path), "--input", "1,256,256", "--method", "feature-ae"]) == 2
    assert "152 channels" in capsys.readouterr().err
    assert cli_main(["shapes", str(path), "--input", "1,32,32", "--method", "nope"]) == 2


# --- the detector ----------------------------------------------------------------------------

def _sample(split: str):
    from udd_core.data import load_dataset

    if not SAMPLE.is_dir():
        pytest.skip(f"{SAMPLE} is missing")
    return load_dataset(SAMPLE, (1, 64, 64), split=split)


def test_feature_ae_end_to_end_on_sample_data(tmp_path):
    from udd_core.metrics import compute_metrics
    from udd_core.progress import ProgressBoard
    from udd_core.coreset import bank_spread
    from udd_core.methods.feature_ae import LATENT_POWER
    from udd_core.methods.feature_stats import CODE_SPREAD_K
    from udd_core.residuals import smooth_maps
    from udd_core.scoring import image_scores, score_images
    from udd_core.settings import TrainSettings

    train, test = _sample("train"), _sample("test")
    det = detector_class("feature-ae").build((1, 64, 64), None, feature_config(), seed=0)
    assert det.generates is False and det.model.input_shape == (152, 8, 8)
    settings = TrainSettings(epochs=4, batch_size=8, lr=2e-3, device="cpu", n_probe=2, val_split=0.0)
    board = ProgressBoard(str(tmp_path), settings.epochs)
    status = det.fit(train.images[:48], train.images[48:], settings, tmp_path, board=board)
    assert status == "finished"
    snap = board.snapshot()
    assert len(snap.train_loss) == 4 and snap.train_loss[-1] < snap.train_loss[0]
    # probes: the validation images above their residual heatmaps, both RGB at the image size
    assert snap.probe_input.shape == (2, 64, 64, 3) and snap.probe_recon.shape == (2, 64, 64, 3)
    assert (tmp_path / STATS_FILE).is_file() and (tmp_path / "calibration.json").is_file()

    loaded = load_detector(tmp_path)
    assert loaded.describe()["smooth_sigma"] > 0 and loaded.describe()["score"] == "topk"
    assert loaded.describe()["error"] == "channel" and not torch.equal(loaded.stats.weight, torch.ones(152))
    from udd_core.data import to_tensor

    x = to_tensor(test.images, "cpu")
    with torch.inference_mode():
        maps = loaded.anomaly_maps(x).maps
        traced = loaded.map_module()(x)
    assert maps.shape == (len(test.images), 64, 64) and torch.allclose(maps, traced)
    scores = image_scores(maps, "topk").numpy()
    m = compute_metrics(scores, list(test.labels))
    assert m.image_auroc > 0.75, m.image_auroc  # chance is 0.5; the defects are plain on sample_data

    # The image score's latent-novelty factor: the nearest training code's distance in units of its spread, squared.
    assert loaded.latent_power == LATENT_POWER == 2.0 and loaded.stats.codes.shape[0] == 48  # the fitted images' codes
    assert "times the latent novelty squared" in loaded.describe()["image_score"]  # Inspect's caption says so
    assert "image_score" not in det.__class__.build((1, 64, 64), None, feature_config()).describe()  # not fitted
    torch.testing.assert_close(loaded.stats.code_spread, bank_spread(loaded.stats.codes, CODE_SPREAD_K))
    with torch.inference_mode():
        out = loaded.anomaly_maps(x)
        z = loaded.model.encode((loaded.feature_extractor()(x) - loaded.stats.mean.reshape(1, -1, 1, 1))
                                / loaded.stats.std.reshape(1, -1, 1, 1)).flatten(1)
    near, nearest = torch.cdist(z.double(), loaded.stats.codes.double()).min(dim=1)
    torch.testing.assert_close(out.score_factor.double(), (near / loaded.stats.code_spread.double()[nearest]) ** 2,
                               rtol=1e-4, atol=1e-6)
    res = score_images(loaded, test.images, residual=None, smooth_sigma=2.0, score="topk", topk_percent=1.0)
    want = image_scores(smooth_maps(out.maps, 2.0), "topk", 1.0) * out.score_factor  # every consumer scores so
    np.testing.assert_allclose(res.scores, want.numpy(), rtol=1e-5)
    np.testing.assert_allclose(res.factors, out.score_factor.numpy(), rtol=1e-4)  # the factor each score carries
    # Inspect shows both parts, and its pixel threshold is not the image threshold (a product, not map units)
    from udd_core.inspection import inspect_run

    insp = inspect_run(tmp_path, str(SAMPLE), keep_recon=False)
    i = int(insp.order()[0])
    assert insp.score_text(i) == (f"score {score_text(insp.scores[i])} = map {insp.scores[i] / insp.factors[i]:.4g} "
                                  f"× latent novelty factor {insp.factors[i]:.4g}")
    assert "the 99th percentile of the normal pixels" in insp.scale_legend()
    assert insp.with_threshold(float(insp.scores.max())).pixel_threshold == insp.pixel_threshold
    # QA sweep 21: udd score's --json and --csv (and Inspect's CSV) carry the two parts too
    from udd_core.report import scores_csv

    row = insp.to_rows()[i]
    assert row["map_score"] * row["factor"] == pytest.approx(row["score"], rel=1e-5)
    assert row["factor"] == pytest.approx(float(insp.factors[i]))
    head, *lines = scores_csv(insp).splitlines()
    assert head == "path,label,score,mse,defective,threshold,map_score,factor" and len(lines) == len(insp)
    assert compute_metrics(res.scores, list(test.labels)).image_auroc > 0.75
    # calibration.json's normal scores (Inspect's thresholds) carry the factor too (float16 cache: close, not equal)
    cal = json.loads((tmp_path / "calibration.json").read_text())
    val = score_images(loaded, train.images[48:], residual=None, smooth_sigma=0.0, score="topk", topk_percent=1.0)
    np.testing.assert_allclose(cal["scores"]["topk"], val.scores, rtol=2e-2)


def test_fit_stops_and_resumes(tmp_path):
    from udd_core.settings import TrainSettings

    train = _sample("train")
    det = detector_class("feature-ae").build((1, 64, 64), None, feature_config(), seed=0)
    stop = threading.Event()
    stop.set()  # stopped before any feature is computed
    settings = TrainSettings(epochs=2, batch_size=8, device="cpu", n_probe=0, val_split=0.0)
    assert det.fit(train.images[:16], None, settings, tmp_path, stop_event=stop) == "stopped"
    assert det.fit(train.images[:16], None, settings.replace(epochs=1), tmp_path) == "finished"
    again = detector_class("feature-ae").build((1, 64, 64), None, feature_config(), seed=0)
    assert again.fit(train.images[:16], None, settings, tmp_path, resume=True) == "finished"
    from udd_core import runs

    assert [r["epoch"] for r in runs.read_history(tmp_path)] == [1, 2]


def test_a_resume_that_dies_leaves_a_run_that_says_it_scores_by_the_map_alone(tmp_path, monkeypatch):
    """A hard kill mid-resume: the codes belonged to the old weights, so they go, and method.json stops naming
    the latent factor (Inspect's caption, `udd score` and the export then agree: the map alone)."""
    from udd_core import train as train_module
    from udd_core.settings import TrainSettings

    images = _sample("train").images[:16]
    settings = TrainSettings(epochs=1, batch_size=8, device="cpu", n_probe=0, val_split=0.0)
    det = detector_class("feature-ae").build((1, 64, 64), None, feature_config(), seed=0)
    assert det.fit(images, None, settings, tmp_path) == "finished"
    assert "image_score" in load_detector(tmp_path).describe()

    def killed(*args, **kwargs):
        raise RuntimeError("killed")

    monkeypatch.setattr(train_module, "train", killed)
    again = detector_class("feature-ae").build((1, 64, 64), None, feature_config(), seed=0)
    with pytest.raises(RuntimeError, match="killed"):
        again.fit(images, None, settings.replace(epochs=2), tmp_path, resume=True)
    left = load_detector(tmp_path)
    assert left.stats.codes is None and "image_score" not in json.loads((tmp_path / "method.json").read_text())
    assert left.anomaly_maps(torch.rand(1, 1, 64, 64)).score_factor is None


def test_bad_images_and_options_are_named():
    det = detector_class("feature-ae").build((1, 64, 64), None, feature_config(), seed=0)
    with pytest.raises(ValueError, match="size 96x64"):
        det.check_input((1, 96, 64))
    with pytest.raises(ValueError, match="^channels"):
        det.check_input((4, 64, 64))
    with pytest.raises(ValueError, match="^coreset"):
        detector_class("feature-ae").build((1, 64, 64), {"coreset": 0.1}, feature_config())
    with pytest.raises(ValueError, match="^smooth_sigma"):
        detector_class("feature-ae").build((1, 64, 64), {"smooth_sigma": -1}, feature_config())
    with pytest.raises(ValueError, match="^config"):
        detector_class("feature-ae").build((1, 64, 64), None, None)
    for bad, name in (({"border": 32}, "border"), ({"topk_percent": 0}, "topk_percent"), ({"score": "p99"}, "score")):
        with pytest.raises(ValueError, match=f"^{name}: "):
            detector_class("feature-ae").build((1, 64, 64), bad, feature_config())


def test_the_image_score_defaults_follow_the_size_and_older_runs_keep_theirs(tmp_path):
    """From 192 px a side the top 10% without a border of 1/16 of the side (chosen on magnetic_tile);
    below, the top 1% of the whole map; a run saved before the border keeps scoring the whole map."""
    from udd_core.methods import scoring_defaults

    wide = detector_class("feature-ae").build((1, 256, 256), None, model_presets()["feature-ae"].config, seed=0)
    assert {k: scoring_defaults(wide)[k] for k in ("score", "topk_percent", "border")} == \
        {"score": "topk", "topk_percent": 10.0, "border": 16}
    small = detector_class("feature-ae").build((1, 64, 64), None, feature_config(), seed=0)
    assert (scoring_defaults(small)["topk_percent"], scoring_defaults(small)["border"]) == (1.0, 0)
    mine = detector_class("feature-ae").build((1, 256, 256), {"border": 0, "topk_percent": 2},
                                              model_presets()["feature-ae"].config, seed=0)
    assert (scoring_defaults(mine)["topk_percent"], scoring_defaults(mine)["border"]) == (2.0, 0)
    wide.save(tmp_path)
    assert load_detector(tmp_path).border == 16
    info = json.loads((tmp_path / "method.json").read_text())
    (tmp_path / "method.json").write_text(json.dumps({k: v for k, v in info.items() if k != "border"}))
    assert load_detector(tmp_path).border == 0  # as written before the border existed


def test_older_runs_score_without_the_latent_factor_and_a_bad_power_is_named(tmp_path):
    det = detector_class("feature-ae").build((1, 64, 64), None, feature_config(), seed=0)
    d = det.model.encode(torch.zeros(1, *det.model.input_shape)).numel()  # a flattened code's length
    det.stats.codes, det.stats.code_spread = torch.randn(5, d), torch.ones(5)
    det.save(tmp_path)
    x = torch.rand(2, 1, 64, 64)
    assert load_detector(tmp_path).anomaly_maps(x).score_factor.shape == (2,)
    info = json.loads((tmp_path / "method.json").read_text())
    (tmp_path / "method.json").write_text(json.dumps({k: v for k, v in info.items() if k != "latent_power"}))
    old = load_detector(tmp_path)
    assert old.latent_power == 0 and old.anomaly_maps(x).score_factor is None  # as it was scored
    for bad in (-1, 5, True, "2"):  # above 4 the factor would amplify float noise past the export parity gate
        with pytest.raises(ValueError, match=r"^latent_power: must be a number in \[0, 4\]"):
            detector_class("feature-ae").build((1, 64, 64), {"latent_power": bad}, feature_config())


def test_cache_size_estimate():
    assert feature_cache_bytes(None, (1, 256, 256), 760) == 760 * 152 * 32 * 32 * 2


def test_feature_stats_round_trip_and_a_damaged_file_is_named(tmp_path):
    from udd_core.methods.feature_stats import FeatureStats
    from udd_core.tensor_files import ModelFileError

    g = torch.Generator().manual_seed(0)
    stats = FeatureStats(torch.randn(6, generator=g), torch.rand(6, generator=g) + 0.5, torch.rand(6, generator=g))
    stats.save(tmp_path)
    back = FeatureStats.load(tmp_path, 6)
    assert back.codes is None and back.code_spread is None  # not fitted to the end: no codes saved
    for a, b in zip((stats.mean, stats.std, stats.weight), (back.mean, back.std, back.weight)):
        torch.testing.assert_close(a, b)
    f = torch.randn(2, 6, 3, 4, generator=g).half()  # the cache's dtype stays
    z = stats.standardise(f)
    assert z.dtype == torch.float16
    torch.testing.assert_close(z.float(), (f.float() - stats.mean.reshape(1, -1, 1, 1))
                               / stats.std.reshape(1, -1, 1, 1), rtol=2e-3, atol=2e-3)
    FeatureStats(stats.mean, stats.std, stats.weight, torch.randn(4, 3, generator=g), torch.ones(4)).save(tmp_path)
    assert FeatureStats.load(tmp_path, 6).codes.shape == (4, 3)
    with pytest.raises(ModelFileError, match=f"{STATS_FILE}: expected mean, std and weight of 7 channels"):
        FeatureStats.load(tmp_path, 7)  # another AE's statistics
    FeatureStats(stats.mean, stats.std, stats.weight, torch.randn(4, 3), torch.ones(3)).save(tmp_path)
    with pytest.raises(ModelFileError, match=r"training codes \(N, D\) and their spread \(N,\)"):
        FeatureStats.load(tmp_path, 6)


def test_channel_error_weights_favour_the_channels_rebuilt_well():
    from udd_core.methods.feature_stats import channel_error_weight

    class Halves(torch.nn.Module):  # rebuilds channel 0 exactly and halves channel 1
        def __init__(self):
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(1))

        def forward(self, f):
            return f * torch.tensor([1.0, 0.5]).reshape(1, 2, 1, 1)

    w = channel_error_weight(Halves(), torch.randn(40, 2, 4, 4, generator=torch.Generator().manual_seed(1)))
    assert w[0] > 100 * w[1]  # the exact channel's error is clamped at 1e-6: by far the larger weight
    torch.testing.assert_close((1 / w).mean(), torch.tensor(1.0))  # scaled so the map keeps the plain error's scale


def test_layers_given_as_an_option_point_to_the_config(tmp_path, capsys):
    from udd_core.cli import main

    root = Path(__file__).resolve().parents[1]
    rc = main(["train", "feature-ae", "--method", "feature-ae", "--data", str(root / "sample_data" / "surface"),
               "--out", str(tmp_path / "r"), "--layers", "s8"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and not (tmp_path / "r").exists()
    assert "--layers: not a feature-ae option" in err and "from its config's \"input\" field" in err
