"""The detector interface: the registry, and the pixel autoencoder behind it."""
import pytest
import torch

from udd_core.methods import METHODS, detector_class, load_detector, run_method
from udd_core.methods.autoencoder import AutoencoderDetector
from udd_core.model import build_model, save_model
from udd_core.presets import model_presets
from udd_core.residuals import residual_map
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
    (path / "method.json").write_text('{"method": "memory-ba')  # QA sweep 15: cut, it read as an autoencoder's
    with pytest.raises(ValueError, match=r"method\.json: not a readable JSON object \(damaged\)"):
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


def test_typed_options_are_a_json_object_or_a_one_line_refusal():
    from udd_core.methods import parse_options

    assert parse_options("  ", "memory-bank") == {} and parse_options('{"k": 3}', "memory-bank") == {"k": 3}
    with pytest.raises(ValueError, match=r"^method options: not JSON \(Expecting value at character 0\)$"):
        parse_options("k=3", "memory-bank")
    with pytest.raises(ValueError, match=r"^method options: give a JSON object, e\.g\. \{\"coreset\""):
        parse_options("[1]", "memory-bank")
    with pytest.raises(ValueError, match=r"^method options: nested too deeply$"):  # QA sweep 15: a traceback
        parse_options('{"a": ' + "[" * 5000, "memory-bank")


def test_a_choice_is_checked_before_any_data_and_its_refusal_names_what_was_wrong():
    """The Train page and `udd train` refuse bad options, sizes and configs with the same check."""
    from udd_core.backbone import feature_bytes_per_image
    from udd_core.methods import check_choice, choice_message
    from udd_core.methods.bank_options import defaults_for

    want = feature_bytes_per_image((3, 64, 64), defaults_for((3, 64, 64))["layers"])
    assert check_choice("memory-bank", (3, 64, 64)) == want > 0
    assert check_choice("autoencoder", (1, 128, 128), {}, model_presets()["gray-tile-128"].config) == 0
    with pytest.raises(ValueError) as bad_option:
        check_choice("memory-bank", (3, 64, 64), {"coreset": 2})
    assert choice_message(bad_option.value, {"coreset": 2}) == "method options: coreset: must be in (0, 1], got 2"
    with pytest.raises(ValueError) as too_small:
        check_choice("memory-bank", (3, 8, 8))
    assert choice_message(too_small.value, {}).startswith("size 8x8: the memory-bank method needs")  # no "model:"
    with pytest.raises(ValueError) as config_needed:
        check_choice("memory-bank", (3, 64, 64), None, model_presets()["gray-tile-128"].config)
    assert choice_message(config_needed.value, {}) == "model: config: the memory-bank method takes no model config"
    features = model_presets()["feature-ae"].config  # a design on backbone features, under a pixel method
    for method in ("autoencoder", "dsvdd", "latent-knn"):
        with pytest.raises(ValueError, match=rf"^config: its input is backbone features .* and {method} needs a "
                                             r"pixel autoencoder: pick a pixel design \(such as gray-tile-128\)"):
            check_choice(method, (1, 256, 256), None, features)
        assert detector_class(method).preferred_preset(features) == "gray-tile-128"  # what the Train page picks
        assert detector_class(method).preferred_preset(model_presets()["gray-tile-128"].config) is None
    typed = ValueError("method options: not JSON (x)")
    assert choice_message(typed, {}) == "method options: not JSON (x)"  # already named: kept as it is
    pads = ValueError("latent_up outputs 48x2x2 but must mirror 48x1x1: set latent_opad = [0, 0]")
    pads.suggested = model_presets()["gray-tile-128"].config  # a shape error that carries its padding fix
    assert choice_message(pads, {}) == ("model: latent_up outputs 48x2x2 but must mirror 48x1x1: set latent_opad = "
                                        "[0, 0]. Another Height/Width may fit; or set the size on the **Design** "
                                        "page, where one click applies the paddings.")  # QA sweep 6: no full stop
