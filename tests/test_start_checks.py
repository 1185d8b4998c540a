"""udd_core.start_checks: what the Train page says before Start, in its words."""
from pathlib import Path

from udd_core.presets import model_presets
from udd_core.start_checks import form_message, start_refusal

ROOT = Path(__file__).resolve().parents[1]
WAFERS = ROOT / "sample_data" / "wafer_maps_26x26.npz"
PHOTOS = ROOT / "sample_data" / "surface"


def test_form_message_labels_the_train_on_field():
    assert form_message(ValueError("train_on: no images of class 'x'")) == "Train on: no images of class 'x'"
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
