import numpy as np
import pytest
import torch

from udd_core.residuals import RESIDUALS, residual_map
from udd_core.scoring import (
    SCORES,
    NormStats,
    check_post_processing,
    fit_norm_stats,
    image_scores,
    mse_per_image,
    normalise,
    score_images,
)

TINY = {"block_ker": [3], "drop": [0.0], "block_size_in": [[1, 4, 4]], "block_size_out": [[4, 4, 1]],
        "latent_size": 2, "latent_ker": 3, "latent_opad": 1, "out_pad": [1]}
BLOB = (slice(10, 14), slice(20, 24))  # rows 10..13, cols 20..23 of a 32x32 image


def _pair(c=3, seed=0):
    """(x, y): a smooth textured clean image and a copy with a bright blob; y is the 'reconstruction'."""
    g = torch.Generator().manual_seed(seed)
    base = 0.4 + 0.1 * torch.rand((1, c, 32, 32), generator=g)
    defective = base.clone()
    defective[:, :, BLOB[0], BLOB[1]] = 0.95
    x = torch.cat([base, defective])  # (2, C, 32, 32): clean, defective
    y = torch.cat([base, base])  # a perfect model of normal data
    return x, y


# The pixel residuals; "feature" works at stride 8-16 and is tested at a size it resolves in
# test_feature_residual.py.
@pytest.mark.parametrize("kind", [k for k in RESIDUALS if k != "feature"])
def test_residual_lights_up_defect(kind):
    x, y = _pair()
    m = residual_map(x, y, kind)
    assert m.shape == (2, 32, 32)
    assert float(m[0].abs().max()) < 1e-5  # clean image reconstructed exactly: no residual
    r, c = divmod(int(m[1].argmax()), 32)
    assert 9 <= r <= 14 and 19 <= c <= 24  # peak at (or, for SSIM's window, next to) the blob
    inside = m[1, BLOB[0], BLOB[1]].mean()
    outside = m[1, :6, :].mean()
    assert inside > 10 * outside + 1e-3


@pytest.mark.parametrize("kind", SCORES)
@pytest.mark.parametrize("residual", RESIDUALS)
def test_scores_rank_defective_above_clean(kind, residual):
    x, y = _pair()
    s = image_scores(residual_map(x, y, residual), kind, topk_percent=2.0)
    assert s.shape == (2,)
    assert s[1] > s[0]


def test_l2_and_l2sum_match_reference_emap():
    from defect_detection.functions import emap

    x, y = _pair(c=3)
    x = x + 0.05 * torch.rand(x.shape, generator=torch.Generator().manual_seed(1))
    for kind, op in (("l2", "mean"), ("l2sum", "sum")):
        m = residual_map(x, y, kind)
        for i in range(2):
            np.testing.assert_allclose(m[i].numpy(), emap(x[i], y[i], op), rtol=1e-6, atol=1e-7)
    l1 = residual_map(x, y, "l1")
    torch.testing.assert_close(l1, (x - y).abs().mean(1))


def test_ssim_identical_is_zero_and_bounded():
    x = torch.rand((2, 3, 20, 20), generator=torch.Generator().manual_seed(3))
    assert float(residual_map(x, x, "ssim").abs().max()) < 1e-4
    m = residual_map(x, torch.rand(x.shape, generator=torch.Generator().manual_seed(4)), "ssim")
    assert float(m.min()) >= -1e-5 and float(m.max()) <= 2.0 + 1e-5
    assert float(m.mean()) > 0.3  # unrelated images are structurally dissimilar


def test_smoothing_keeps_location_and_mass():
    m0 = torch.zeros((1, 1, 40, 40))
    m0[0, 0, 20, 15] = 1.0
    x, y = m0, torch.zeros_like(m0)
    raw = residual_map(x, y, "l2")
    sm = residual_map(x, y, "l2", smooth_sigma=2.0)
    assert sm.shape == raw.shape
    assert divmod(int(sm[0].argmax()), 40) == (20, 15)
    assert float(sm.max()) < 0.1 * float(raw.max())  # a lone spike is flattened
    assert float(sm.sum()) == pytest.approx(float(raw.sum()), rel=1e-4)  # far from borders: mass kept
    assert torch.equal(residual_map(x, y, "l2", smooth_sigma=0.0), raw)


def test_smoothing_tiny_map_falls_back_and_keeps_shape():
    x = torch.rand((2, 1, 4, 5), generator=torch.Generator().manual_seed(0))
    m = residual_map(x, torch.zeros_like(x), "l1", smooth_sigma=3.0)  # radius 9 > map side
    assert m.shape == (2, 4, 5) and torch.isfinite(m).all()


def test_image_scores_by_hand():
    m = torch.zeros((1, 10, 10))
    m[0, 0, :3] = torch.tensor([5.0, 3.0, 1.0])
    assert image_scores(m, "mean").item() == pytest.approx(0.09)
    assert image_scores(m, "max").item() == 5.0
    assert image_scores(m, "topk", topk_percent=2.0).item() == pytest.approx(4.0)  # top 2 of 100
    assert image_scores(m, "topk", topk_percent=0.01).item() == pytest.approx(5.0)  # at least 1 pixel


def test_a_border_is_left_out_of_the_score_not_of_the_map():
    m = torch.zeros((2, 10, 10))
    m[:, 0, 0] = 9.0  # a hot corner: the photo's edge
    m[1, 5, 5] = 4.0  # and, in the second image, a defect inside
    assert image_scores(m, "max", border=0).tolist() == [9.0, 9.0]
    assert image_scores(m, "max", border=1).tolist() == [0.0, 4.0]  # only the inner 8x8 counts
    assert image_scores(m, "mean", border=1)[1].item() == pytest.approx(4.0 / 64)
    assert image_scores(m, "topk", topk_percent=100, border=4)[1].item() == pytest.approx(4.0 / 4)  # inner 2x2
    for bad in (5, -1, 1.5, True):  # 5 leaves nothing of a 10-pixel side
        with pytest.raises(ValueError, match=r"^border: must be an integer of pixels in \[0, 4\] for 10x10 maps"):
            image_scores(m, "max", border=bad)


def test_bad_arguments_raise_value_error():
    x, y = _pair()
    with pytest.raises(ValueError, match="residual kind"):
        residual_map(x, y, "l3")
    with pytest.raises(ValueError, match="shape"):
        residual_map(x, y[:1])
    with pytest.raises(ValueError, match="score kind"):
        image_scores(residual_map(x, y), "median")
    with pytest.raises(ValueError, match="topk_percent"):
        image_scores(residual_map(x, y), "topk", topk_percent=0)


def test_mse_equals_reference_loss_bitwise():
    from defect_detection.functions import get_tensor, loss_def

    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (6, 17, 23, 3), dtype=np.uint8)
    x = get_tensor(imgs, "cpu")  # reference layout: channels-last view
    y = torch.rand(x.shape, generator=torch.Generator().manual_seed(0))
    for a, b in ((x, y), (x.contiguous(), y), (x, y.contiguous(memory_format=torch.channels_last))):
        got = mse_per_image(a, b)
        assert got.dtype == torch.float32
        assert torch.equal(got, loss_def(a, b))


def _models(c=1):
    from defect_detection.deep_AE import AE_cls
    from defect_detection.functions import loss_def

    from udd_core.model import build_model

    cfg = dict(TINY, block_size_in=[[c, 4, 4]], block_size_out=[[4, 4, c]])
    torch.manual_seed(0)
    ours = build_model(cfg)
    ref = AE_cls(cfg, True, loss_def)
    ref.load_state_dict(ours.state_dict())
    ref.eval()
    return ours, ref


@pytest.mark.parametrize("c", [1, 3])
def test_score_images_matches_reference_pipeline_exactly(c):
    from defect_detection.functions import get_tensor

    ours, ref = _models(c)
    imgs = np.random.default_rng(c).integers(0, 256, (7, 16, 16, c), dtype=np.uint8)
    res = score_images(ours, imgs, batch_size=3)
    y_ref, mse_ref = zip(*(ref.batch_apply(get_tensor(imgs[s:s + 3], "cpu")) for s in range(0, 7, 3)))
    assert res.mse.dtype == np.float32 and res.recon.dtype == np.float32
    assert np.array_equal(res.mse, np.concatenate(mse_ref))
    assert np.array_equal(res.recon, np.concatenate(y_ref))
    assert res.recon.shape == (7, c, 16, 16) and res.maps.shape == (7, 16, 16) and res.scores.shape == (7,)
    # With l2 residuals and mean scores, the score is the MSE computed another way.
    np.testing.assert_allclose(res.scores, res.mse, rtol=1e-5)


def test_score_images_options_progress_and_mode():
    ours, _ = _models(1)
    ours.train()
    imgs = np.random.default_rng(5).integers(0, 256, (5, 16, 16), dtype=np.uint8)  # grayscale (N, H, W)
    calls = []
    res = score_images(ours, imgs, residual="ssim", score="topk", smooth_sigma=1.0, topk_percent=5,
                       batch_size=2, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(2, 5), (4, 5), (5, 5)]
    assert ours.training  # train flag restored
    x = torch.from_numpy(imgs[:, None].astype(np.float32) / 255)
    with torch.no_grad():
        maps = residual_map(x, ours.eval()(x), "ssim", 1.0)
    np.testing.assert_allclose(res.maps, maps.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(res.scores, image_scores(maps, "topk", 5).numpy(), rtol=1e-4, atol=1e-5)
    whole = score_images(ours, imgs, residual="ssim", score="topk", smooth_sigma=1.0, topk_percent=5, batch_size=5)
    np.testing.assert_allclose(whole.scores, res.scores, rtol=1e-5, atol=1e-6)


def test_score_images_rejects_bad_input():
    ours, _ = _models(1)
    with pytest.raises(ValueError, match="uint8"):
        score_images(ours, np.zeros((2, 16, 16, 1), dtype=np.float32))
    with pytest.raises(ValueError, match="residual"):
        score_images(ours, np.zeros((2, 16, 16, 1), dtype=np.uint8), residual="huber")
    with pytest.raises(ValueError, match="batch_size"):
        score_images(ours, np.zeros((2, 16, 16, 1), dtype=np.uint8), batch_size=0)


def test_norm_stats_fit_roundtrip_and_normalise():
    rng = np.random.default_rng(0)
    maps = rng.gamma(2.0, 0.01, (8, 12, 12)).astype(np.float32)
    st = fit_norm_stats(maps)
    assert st.mean == pytest.approx(float(maps.mean()), rel=1e-5)
    assert st.std == pytest.approx(float(maps.std()), rel=1e-4)
    assert st.q99 == pytest.approx(float(np.quantile(maps, 0.99)), rel=1e-6)
    assert NormStats.from_dict(st.to_dict()) == st
    assert fit_norm_stats(torch.from_numpy(maps)) == st
    z = normalise(maps, st)
    assert isinstance(z, np.ndarray) and abs(float(z.mean())) < 1e-4 and float(z.std()) == pytest.approx(1.0, rel=1e-3)
    zt = normalise(torch.from_numpy(maps), st)
    assert isinstance(zt, torch.Tensor)
    np.testing.assert_allclose(zt.numpy(), z, rtol=1e-5, atol=1e-6)
    flat = fit_norm_stats(np.full((2, 3, 3), 0.5))
    assert np.isfinite(normalise(np.ones(3), flat)).all()
    with pytest.raises(ValueError, match="q99"):
        NormStats.from_dict({"mean": 0.0, "std": 1.0})
    with pytest.raises(ValueError, match="empty"):
        fit_norm_stats(np.zeros((0, 4, 4)))


@pytest.mark.parametrize("args, field", [
    ((-1, "max", 1.0), "smooth_sigma"), ((float("nan"), "max", 1.0), "smooth_sigma"), ((True, "max", 1.0), "smooth_sigma"),
    ((101, "max", 1.0), "smooth_sigma"), ((0, "median", 1.0), "score"), ((0, "topk", 0), "topk_percent"),
    ((0, "topk", 100.5), "topk_percent"), ((0, "topk", 1.0, -1), "border"), ((0, "topk", 1.0, 16, (32, 32)), "border"),
])
def test_post_processing_refusals_name_the_field(args, field):
    with pytest.raises(ValueError) as e:
        check_post_processing(*args)
    assert str(e.value).startswith(f"{field}: ")


def test_post_processing_comes_back_typed():
    assert check_post_processing(4, "topk", 10, 15, (32, 32)) == (4.0, "topk", 10.0, 15)
    assert check_post_processing(0.0, "mean", 100) == (0.0, "mean", 100.0, 0)


def test_max_border_is_the_widest_band_check_border_takes():
    from udd_core.scoring import check_border, max_border

    assert max_border((32, 48)) == 15 and check_border(15, (32, 48)) == 15
    with pytest.raises(ValueError, match=r"\[0, 15\]"):
        check_border(16, (32, 48))
