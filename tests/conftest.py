"""Shared fixtures: small configs that build tiny models, a folder of tiny images, a check that no
training job outlives its test, and a clean torch state per test."""
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

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


@pytest.fixture
def image_folder(tmp_path) -> Path:
    """8 smooth grayscale 32x32 PNGs in a plain folder."""
    rng = np.random.default_rng(0)
    d = tmp_path / "imgs"
    d.mkdir()
    for i in range(8):
        a = (np.kron(rng.random((8, 8)), np.ones((4, 4))) * 255).astype(np.uint8)
        Image.fromarray(a, "L").save(d / f"{i}.png")
    return d


@pytest.fixture
def dead_pid() -> int:
    """The pid of a process that has ended and been reaped: no process has it (until the system reuses it)."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


@pytest.fixture
def no_job_left_behind():
    """After the test, every training job it started has ended: a test that starts a long job stops it,
    and anything still training after that is a leak."""
    yield
    left = [t for t in threading.enumerate() if t.name.startswith("udd-train-")]
    for t in left:
        t.join(60)
    assert not any(t.is_alive() for t in left), "a training job outlived its test"
