"""The magnetic-tile recipe: its model preset mirrors and builds, its training preset trains, and the
quality benchmark's helpers behave (without the real data: that only runs by hand)."""
import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from udd_core import runs
from udd_core.losses import LOSSES
from udd_core.model import load_model
from udd_core.presets import model_presets
from udd_core.shapes import propagate
from udd_core.jobs import TrainJob
from udd_core.settings import TrainSettings, training_presets

RECIPE = "magnetic-tile"
BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_quality.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_quality", BENCH)
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_quality", mod)  # dataclasses look their module up by name
    spec.loader.exec_module(sys.modules["bench_quality"])
    return sys.modules["bench_quality"]


def test_model_preset_mirrors_at_its_input_shape():
    preset = model_presets()[RECIPE]
    report = propagate(preset.config, preset.input_shape)
    assert report.ok, [p.message for p in report.problems]
    assert report.output == preset.input_shape
    assert preset.input_shape[0] == preset.config.in_channels == 1  # the photos are gray
    assert report.compression < 1  # a real bottleneck, not an identity map


def test_training_preset_is_a_denoising_recipe_that_fits_the_input():
    s = training_presets()[RECIPE]
    assert isinstance(s, TrainSettings) and s.loss in LOSSES
    assert s.noise_patches > 0
    h = model_presets()[RECIPE].input_shape[1]
    assert s.patch_size[1] < h  # a patch never paints the whole image over
    assert TrainSettings.from_dict(s.to_dict()) == s  # survives train.json


def test_recipe_trains_one_step_on_synthetic_photos(tmp_path):
    preset = model_presets()[RECIPE]
    c, h, w = preset.input_shape
    rng = np.random.default_rng(0)
    # Smooth gray texture (N, H, W, 1): 4 images, one batch, one validation image.
    small = rng.random((4, h // 8, w // 8, c))
    images = (np.kron(small, np.ones((1, 8, 8, 1))) * 255).astype(np.uint8)
    settings = training_presets()[RECIPE].replace(epochs=1, batch_size=8, device="cpu", val_split=0.25, n_probe=1)
    job = TrainJob.create(tmp_path / "run", preset.config, preset.input_shape, images, settings)
    before = {k: v.clone() for k, v in job.model.state_dict().items()}
    job.start()
    assert job.join(120)
    snap = job.snapshot()
    assert snap.status == "finished", snap.error
    assert len(snap.train_loss) == 1 and math.isfinite(snap.train_loss[0])
    after = job.model.state_dict()
    assert any(not torch.equal(before[k], after[k].cpu()) for k in before)  # the step moved the weights
    model = load_model(tmp_path / "run")
    x = torch.rand(2, *preset.input_shape)
    assert model(x).shape == x.shape
    assert runs.read_history(tmp_path / "run")[0]["epoch"] == 1


def test_bench_exits_with_a_clear_message_without_the_data(tmp_path):
    bench = load_bench()
    with pytest.raises(SystemExit) as e:
        bench.check_data(tmp_path / "nowhere")
    assert "magnetic-tile data not found" in str(e.value) and "nowhere" in str(e.value)


def test_bench_selection_half_is_stratified_and_seeded():
    bench = load_bench()
    labels = ["good"] * 10 + ["crack"] * 7 + ["fray"] * 2
    a = bench.stratified_half(labels, 0)
    lab = np.asarray(labels)
    assert [int(a[lab == t].sum()) for t in ("good", "crack", "fray")] == [5, 3, 1]
    assert np.array_equal(a, bench.stratified_half(labels, 0))
    assert not all(np.array_equal(a, bench.stratified_half(labels, s)) for s in range(1, 6))


@pytest.mark.parametrize("size", [32, 96, 128])
def test_bench_reference_scales_keep_patches_and_jitter_inside_the_image(size):
    sc = load_bench().reference_scales(size)
    lo, hi = sc["patch_size"]
    assert 1 <= lo < hi < size  # the reference draws randint(lo, hi) and randint(0, size - width)
    assert sc["offset"] >= 1 and sc["dw"] >= 2  # it draws randint(-offset, offset) and randint(0, dw)


def test_cli_offers_every_training_preset():
    from udd_core.cli_parser import TRAIN_PRESETS
    from udd_core.settings import training_presets

    assert set(TRAIN_PRESETS) == set(training_presets())


def test_design_label_names_the_preset_and_an_edit():
    from udd_core.presets import design_label, model_presets

    cfg = model_presets()["gray-tile-128"].config.to_dict()
    assert design_label("gray-tile-128", cfg) == "gray-tile-128"
    assert design_label("gray-tile-128", {**cfg, "latent_size": cfg["latent_size"] + 1}) == "gray-tile-128, edited"
    assert design_label(None, cfg) == "custom" and design_label("my own", cfg) == "my own"


def test_what_picking_a_preset_or_a_method_sets_on_the_training_form():
    """The Train page applies these as they are (pages/train.py, apply_choice)."""
    from udd_core.methods import detector_class
    from udd_core.presets import method_choice, preset_choice

    assert preset_choice("wafer-26", True) == {"model_preset": "wafer-26", "h": 26, "w": 26, "preset": "wafer"}
    assert "preset" not in preset_choice("wafer-26", False)  # a one-pass fit has no training preset
    assert "preset" not in preset_choice("gray-tile-128", True)  # none of its own: the user's settings stay
    # the memory bank's tuned side, and no preset: it takes no config
    assert method_choice(detector_class("memory-bank"), "gray-tile-128") == {"h": 256, "w": 256}
    feature = method_choice(detector_class("feature-ae"), "gray-tile-128")  # a pixel preset cannot serve it
    assert (feature["model_preset"], feature["preset"]) == ("feature-ae", "feature-ae")
    back = method_choice(detector_class("dsvdd"), "feature-ae")  # and a pixel method leaves the feature preset
    assert back == {"model_preset": "gray-tile-128", "h": 128, "w": 128, "preset": "reference"}
    assert method_choice(detector_class("dsvdd"), "gray-tile-128") == {}  # it serves: nothing changes
    assert method_choice(detector_class("autoencoder"), None) == {}


def test_a_design_that_does_not_mirror_sends_the_user_back_to_the_design_page():
    from udd_core.presets import design_input, model_presets

    cfg = model_presets()["gray-tile-128"].config
    assert design_input(cfg, None, (1, 128, 128)) == (1, 128, 128)
    with pytest.raises(ValueError, match=r"^the Design page's config does not mirror at 100x128 \(.+\): apply the "
                                         r"suggested paddings on the Design page$"):
        design_input(cfg, None, (1, 100, 128))
