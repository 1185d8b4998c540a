"""Shared fixtures: small configs that build tiny models, and a clean torch state per test."""
import pytest
import torch

TINY = {
    "block_ker": [3, 3],
    "drop": [0.0, 0.0],
    "block_size_in": [[1, 4, 4], [4, 8, 8]],
    "block_size_out": [[8, 8, 4], [4, 4, 1]],
    "latent_size": 4,
    "latent_ker": 3,
    "latent_opad": 1,
    "out_pad": [1, 1],
}  # mirrors at 1x32x32


@pytest.fixture
def tiny_config() -> dict:
    """A fresh copy of a 2-block grayscale config that mirrors at 1x32x32."""
    import copy

    return copy.deepcopy(TINY)


@pytest.fixture(autouse=True)
def _few_threads():
    # Tests run on 2 cores next to other work; fewer threads keep tiny models fast and stable.
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
