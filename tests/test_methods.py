"""The detector interface: the registry, and the pixel autoencoder behind it."""
import pytest
import torch

from udd_core.methods import METHODS, detector_class, load_detector, run_method
from udd_core.methods.autoencoder import AutoencoderDetector
from udd_core.model import build_model, save_model
from udd_core.presets import model_presets
from udd_core.scoring import residual_map
from udd_core.settings import training_presets


@pytest.fixture
def ae_dir(tmp_path):
    torch.manual_seed(0)
    model = build_model(model_presets()["wafer-26"].config, (3, 26, 26))
    save_model(model, tmp_path / "m")
    return tmp_path / "m", model


def test_registry_names_autoencoder_and_refuses_unknown():
    assert "autoencoder" in METHODS
    assert detector_class("autoencoder") is AutoencoderDetector
    with pytest.raises(ValueError, match="method: must be one of"):
        detector_class("nope")


def test_preferred_presets_exist():
    # The Train page switches to these names when the method changes: each must be a real preset.
    for name in METHODS:
        preferred = detector_class(name).preferred_preset(None)
        assert preferred is None or preferred in model_presets(), name
    # and a model preset to the training preset it was made with
    for name, preset in model_presets().items():
        assert preset.training is None or preset.training in training_presets(), name
    assert model_presets()["feature-ae"].training == "feature-ae" and model_presets()["wafer-26"].training == "wafer"


def test_folder_without_method_file_is_an_autoencoder(ae_dir):
    path, _ = ae_dir
    assert run_method(path) == "autoencoder"
    (path / "method.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a method file"):
        run_method(path)


@pytest.mark.parametrize("kind", ["l2", "ssim"])
def test_autoencoder_maps_equal_the_residual_and_the_export_module(ae_dir, kind):
    path, model = ae_dir
    det = load_detector(path)
    x = torch.rand(2, 3, 26, 26)
    with torch.inference_mode():
        out = det.anomaly_maps(x, kind)
        want = residual_map(x, model.eval()(x), kind)
        via_module = det.map_module(kind)(x)
    assert out.maps.shape == (2, 26, 26) and out.recon.shape == x.shape
    assert torch.equal(out.maps, want) and torch.equal(via_module, want)
    with pytest.raises(ValueError, match="residual: must be one of"):
        det.anomaly_maps(x, "feature-nope")
