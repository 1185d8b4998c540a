"""udd_core.start_checks: what the Train page says before Start, in its words."""
from pathlib import Path

from udd_core.presets import model_presets
from udd_core.image_shapes import batch_bytes
from udd_core.start_checks import form_message, model_choice, start_refusal

ROOT = Path(__file__).resolve().parents[1]
WAFERS = ROOT / "sample_data" / "wafer_maps_26x26.npz"
PHOTOS = ROOT / "sample_data" / "surface"


def test_form_message_labels_the_train_on_field():
    assert form_message(ValueError("train_on: no images of class 'x'")) == "Train on: no images of class 'x'"
    assert form_message("patch_dir: /p: not found") == "Noise pattern folder: /p: not found"
    assert form_message("lr: must be > 0") == "lr: must be > 0"  # no such label: as the engine said it
    assert form_message("run name 'a b': use ...") == "run name 'a b': use ..."


def test_each_refusal_is_said_with_what_to_do(tmp_path):
    gen, det = model_presets()["wafer-26-gen"].config, model_presets()["wafer-26"].config
    assert start_refusal(tmp_path, "", str(WAFERS), gen, "ce", True) is None
    assert start_refusal(tmp_path, "", str(WAFERS), det, "ce", True).endswith(", or pick another loss.")
    assert start_refusal(tmp_path, "", str(PHOTOS), gen, "ce", True).endswith(
        ". Pick wafer data, or another model or loss.")
    assert start_refusal(tmp_path, "", str(PHOTOS), det, "ce", False) is None  # no loss: a one-pass fit
    assert "bad name!" in start_refusal(tmp_path, "bad name!", str(WAFERS), None, "mse", True)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "train.json").write_text("{}")
    assert "already exists" in start_refusal(tmp_path, "taken", str(WAFERS), None, "mse", True)
    assert start_refusal(tmp_path, "", str(tmp_path / "missing"), gen, "ce", True).endswith(
        ". Pick wafer data, or another model or loss.")  # unreadable data: one line, never an exception


def test_model_choice_checks_the_size_options_and_config_before_any_data_loads():
    ok = model_choice("autoencoder", "", model_presets()["wafer-26"].config, (26, 26), 3)
    assert ok.refusal is None and ok.shape == (3, 26, 26) and ok.config is not None and ok.per_image == 0
    odd = model_choice("autoencoder", "", model_presets()["wafer-26"].config, (27, 26), 3)
    assert odd.shape is None and odd.config is None and odd.refusal.startswith("model: ")
    assert "Design" in odd.refusal  # a padding has no box on the form: it says where it is set
    bank = model_choice("memory-bank", "", size=(64, 64))
    assert bank.refusal is None and bank.shape == (3, 64, 64) and bank.per_image > 0
    assert model_choice("memory-bank", "{", size=(64, 64)).refusal.startswith("method options: not JSON")
    typo = model_choice("memory-bank", '{"coreset": 7}', size=(64, 64))
    assert typo.refusal.startswith("method options: ") and "coreset" in typo.refusal and typo.options == {"coreset": 7}
    assert model_choice("autoencoder", "").shape is None  # no config file picked yet: nothing to check, no refusal
    assert model_choice("autoencoder", "").refusal is None


def test_model_choice_says_a_bad_config_first_and_sends_a_non_mirroring_design_back():
    bad = model_choice("autoencoder", "{", error=ValueError("latent_size: missing field"))
    assert bad.refusal == "model: latent_size: missing field"  # the config's error, not the options'
    design = model_choice("autoencoder", "", model_presets()["wafer-26"].config, design_shape=(3, 26, 26))
    assert design.shape == (3, 26, 26) and design.refusal is None
    off = model_choice("autoencoder", "", model_presets()["wafer-26"].config, design_shape=(3, 30, 30))
    assert off.shape is None and "the Design page's config does not mirror at 30x30" in off.refusal


def test_a_training_step_is_counted_for_methods_that_train_in_epochs():
    wafer = model_presets()["wafer-26"].config
    ae = model_choice("autoencoder", "", wafer, (26, 26), 3)
    assert ae.step_bytes() == batch_bytes(wafer, (3, 26, 26), "autoencoder", 8) / 8 > 0  # per image of a step
    big = model_choice("autoencoder", "", wafer, (50, 50), 3)
    assert big.step_bytes() > 3.4 * ae.step_bytes()  # about the pixel count (3.7x)
    assert model_choice("memory-bank", "", size=(64, 64)).step_bytes() == 0  # one pass, no training step
    assert model_choice("autoencoder", "", wafer, (27, 26), 3).step_bytes() == 0  # refused: nothing to count
