"""Gaps found in a QA sweep of the pages: widgets that would do nothing for the chosen method."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from test_page_train import data, page, runs_dir  # noqa: E402,F401  (fixtures and the page driver)

LOOP = ("train_epochs", "train_lr", "train_batch_size", "train_noise_patches", "train_latent_noise")


def _keys(at) -> set:
    return {w.key for w in at.number_input} | {w.key for w in at.selectbox} | {w.key for w in at.toggle}


def test_memory_bank_shows_only_the_settings_a_one_pass_fit_uses(tiny_config, data, runs_dir):
    at = page(tiny_config, data, train_method="memory-bank")
    keys = _keys(at)
    assert not keys & set(LOOP) and "train_preset" not in keys and "train_loss" not in keys
    assert {"train_val_split", "train_seed", "train_device"} <= keys
    assert any("fitted in one pass" in c.value for c in at.caption)
    # An autoencoder keeps the whole training loop.
    at.selectbox(key="train_method").set_value("autoencoder").run()
    assert not at.exception
    assert set(LOOP) | {"train_preset", "train_loss"} <= _keys(at)
    assert not any("fitted in one pass" in c.value for c in at.caption)
