"""The "feature" residual: backbone-feature distance between an image and its reconstruction."""
import pytest
import torch

from udd_core import backbone as bb
from udd_core.methods.autoencoder import AutoencoderDetector
from udd_core.model import AutoEncoder
from udd_core.config import parse_config
from udd_core.residuals import feature_residual, residual_map
from udd_core.scoring import score_images


@pytest.fixture(scope="module")
def features():
    return bb.FeatureExtractor()


def _texture(seed: int, c: int = 1, size: int = 64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.linspace(0, 12.0, size)
    base = 0.5 + 0.2 * torch.sin(t)[None, :] * torch.cos(t)[:, None]  # (H, W) gratings
    return (base + 0.05 * torch.rand(1, c, size, size, generator=g)).clamp(0, 1)


def test_identical_images_have_no_feature_residual(features):
    x = _texture(0)
    m = feature_residual(x, x.clone(), features)
    assert m.shape == (1, 64, 64) and float(m.abs().max()) < 1e-3


def test_feature_residual_is_high_where_the_structure_changed(features):
    x = _texture(1, size=128)
    y = x.clone()
    x[:, :, 36:48, 8:20] = 0.0  # a dark blot the "reconstruction" does not have
    m = feature_residual(x, y, features)[0]
    inside, far = m[36:48, 8:20].mean(), m[:, 80:].mean()  # the stride-16 features see ~30 px around
    assert inside > 5 * far


def test_a_gray_image_equals_its_rgb_copy(features):
    x, y = _texture(3), _texture(4)
    torch.testing.assert_close(feature_residual(x, y, features),
                               feature_residual(x.expand(-1, 3, -1, -1), y.expand(-1, 3, -1, -1), features))


def test_other_channel_counts_are_refused_in_one_line():
    with pytest.raises(ValueError, match="^residual feature: needs 1 or 3 image channels, got 2$"):
        residual_map(torch.rand(1, 2, 32, 32), torch.rand(1, 2, 32, 32), "feature")


def _detector() -> AutoencoderDetector:
    from inspect_fixtures import TINY  # not conftest: with tests/browser collected, "conftest" is ambiguous

    cfg = parse_config(TINY)  # a 2-block gray model that mirrors at 32x32
    torch.manual_seed(0)
    return AutoencoderDetector(AutoEncoder(cfg, (1, 32, 32)))


def test_l2_scoring_never_loads_the_backbone(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("the backbone was loaded for an l2 score")

    monkeypatch.setattr(bb, "pretrained_lite0", refuse)
    det = _detector()
    images = (torch.rand(3, 32, 32, 1) * 255).to(torch.uint8).numpy()
    res = score_images(det, images, residual="l2")
    assert res.maps.shape == (3, 32, 32) and det._features is None


def test_autoencoder_feature_maps_equal_the_map_module_and_reuse_one_backbone():
    det = _detector()
    x = _texture(5, size=32)
    with torch.inference_mode():
        a = det.anomaly_maps(x, "feature").maps
        first = det._features
        b = det.map_module("feature")(x)
        want = feature_residual(x, det.model(x), first)
    assert det._features is first is not None
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, want)
