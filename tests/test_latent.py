import pytest
import torch

from udd_core.latent import (
    LatentStats,
    decode,
    encode,
    interpolate,
    latent_stats,
    noised_samples,
    random_samples,
    stats_of,
)
from udd_core.model import build_model

TINY = {"block_ker": [3], "drop": [0.0], "block_size_in": [[1, 4, 4]], "block_size_out": [[4, 4, 1]],
        "latent_size": 2, "latent_ker": 3, "latent_opad": 1, "out_pad": [1]}


@pytest.fixture
def model():
    torch.manual_seed(0)
    return build_model(TINY)


@pytest.fixture
def x():
    return torch.rand((3, 1, 16, 16), generator=torch.Generator().manual_seed(1))


def _recon(model, x):
    with torch.no_grad():
        return model.eval()(x)


def test_encode_decode_shapes_and_roundtrip(model, x):
    z = encode(model, x)
    assert z.shape == (3, 2, 4, 4)
    y = decode(model, z)
    assert y.shape == x.shape
    torch.testing.assert_close(y, _recon(model, x))


def test_noised_samples_shape_and_determinism(model, x):
    rng_before = torch.random.get_rng_state()
    a = noised_samples(model, x, sigma=0.5, n=7, seed=11)
    assert torch.equal(torch.random.get_rng_state(), rng_before)  # global RNG untouched
    assert a.shape == (7, 1, 16, 16)
    assert torch.equal(a, noised_samples(model, x, sigma=0.5, n=7, seed=11))
    assert not torch.allclose(a, noised_samples(model, x, sigma=0.5, n=7, seed=12))


def test_noised_samples_sigma_zero_is_reconstruction_round_robin(model, x):
    a = noised_samples(model, x, sigma=0.0, n=5, seed=3)
    r = _recon(model, x)
    torch.testing.assert_close(a, r[[0, 1, 2, 0, 1]], rtol=1e-6, atol=1e-6)
    far = noised_samples(model, x, sigma=2.0, n=5, seed=3)
    assert (far - a).abs().mean() > 1e-3  # noise actually changes the output


def test_latent_stats_and_random_samples(model, x):
    st = latent_stats(model, x)
    z = encode(model, x)
    assert len(st.mean) == 2 and len(st.std) == 2
    torch.testing.assert_close(torch.tensor(st.mean), z.mean(dim=(0, 2, 3)).double().float(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(torch.tensor(st.std), z.std(dim=(0, 2, 3), correction=0), rtol=1e-4, atol=1e-6)
    assert LatentStats.from_dict(st.to_dict()) == st
    s1 = random_samples(model, st, n=4, seed=5, latent_hw=(4, 4))
    assert s1.shape == (4, 1, 16, 16)
    assert torch.equal(s1, random_samples(model, st, n=4, seed=5, latent_hw=(4, 4)))
    assert not torch.allclose(s1, random_samples(model, st, n=4, seed=6, latent_hw=(4, 4)))
    zero = LatentStats(mean=st.mean, std=[0.0, 0.0])
    flat = random_samples(model, zero, n=2, seed=0, latent_hw=(4, 4))
    assert torch.equal(flat[0], flat[1])  # no spread: every sample decodes the mean latent


def test_per_position_stats_keep_each_positions_mean(model, x):
    z = encode(model, x)  # (3, 2, 4, 4)
    st = latent_stats(model, x, per_position=True)
    assert st.hw == (4, 4) and st.channels == 2 and len(st.mean) == 2 * 4 * 4
    mean, std = st.tensors()  # (1, 2, 4, 4)
    torch.testing.assert_close(mean[0], z.mean(dim=0), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(std[0], z.std(dim=0, correction=0), rtol=1e-4, atol=1e-6)
    assert LatentStats.from_dict(st.to_dict()) == st
    still = LatentStats(mean=st.mean, std=[0.0] * len(st.std), hw=st.hw)
    out = random_samples(model, still, n=2, seed=0, latent_hw=(4, 4))
    torch.testing.assert_close(out[0], decode(model, z.mean(dim=0, keepdim=True))[0], rtol=1e-5, atol=1e-6)
    pooled = stats_of(z)  # per channel: the same mean once averaged over positions
    torch.testing.assert_close(mean.mean(dim=(2, 3)).flatten().double(), torch.tensor(pooled.mean, dtype=torch.float64),
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="fitted at latent size 4x4"):
        random_samples(model, st, n=1, seed=0, latent_hw=(2, 8))
    with pytest.raises(ValueError, match="hw"):
        LatentStats(mean=[0.0] * 5, std=[1.0] * 5, hw=(2, 2))


def test_interpolation_endpoints_are_reconstructions(model, x):
    path = interpolate(model, x[0], x[1:2], steps=5)
    assert path.shape == (5, 1, 16, 16)
    r = _recon(model, x)
    torch.testing.assert_close(path[0], r[0], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(path[-1], r[1], rtol=1e-6, atol=1e-6)
    mid = decode(model, encode(model, x[:2]).mean(dim=0, keepdim=True))
    torch.testing.assert_close(path[2], mid[0], rtol=1e-5, atol=1e-6)


def test_train_flag_restored(model, x):
    model.train()
    noised_samples(model, x, 0.1, 2, 0)
    interpolate(model, x[0], x[1], 3)
    assert model.training


def test_bad_arguments(model, x):
    with pytest.raises(ValueError, match="sigma"):
        noised_samples(model, x, -1.0, 2, 0)
    with pytest.raises(ValueError, match="n must"):
        noised_samples(model, x, 0.1, 0, 0)
    with pytest.raises(ValueError, match="steps"):
        interpolate(model, x[0], x[1], 1)
    with pytest.raises(ValueError, match="x must"):
        encode(model, x[0])
    with pytest.raises(ValueError, match="latent_hw"):
        random_samples(model, latent_stats(model, x), 2, 0, (0, 4))
    with pytest.raises(ValueError, match="LatentStats"):
        LatentStats.from_dict({"mean": [0.0]})
