"""udd_core.generation: sources by class, seeded generation, wafer rendering, PNG/zip output, loading.

The helpers at the top (tiny wafer model, labelled wafer file, run folder) are shared with
test_cli_generate.py and test_page_generate.py.
"""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from udd_core import display, runs
from udd_core import generation as gen
from udd_core.data import load_dataset, onehot_to_wafer, to_tensor, wafer_to_onehot
from udd_core.latent import latent_stats
from udd_core.model import build_model, save_model
from udd_core.synthetic import wafer_maps

WAFER_CFG = {"block_ker": [3, 3], "drop": [0.0, 0.0], "block_size_in": [[3, 4, 4], [4, 8, 8]],
             "block_size_out": [[8, 8, 4], [4, 4, 3]], "latent_size": 4, "latent_ker": 3,
             "latent_opad": 0, "out_pad": [0, 1]}  # mirrors at 3x26x26, latent 4x4x4
SHAPE = (3, 26, 26)
COLOURS = {tuple(c) for c in display.WAFER_COLOURS}


def wafer_model(seed: int = 0):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(WAFER_CFG, SHAPE).eval()


def write_wafers(path: Path, n_per_class: int = 3, n_none: int = 6) -> Path:
    """A labelled wafer .npz: every synthetic pattern class plus 'none' maps."""
    maps, labels = wafer_maps(n_per_class, size=26, seed=3, n_none=n_none)
    np.savez(path, maps=maps, labels=np.array(labels))
    return path


def fitted_model(data: Path, steps: int = 40, seed: int = 0):
    """The tiny model after a few Adam steps on the maps: outputs look like wafers, not like noise."""
    model = wafer_model(seed).train()
    x = to_tensor(load_dataset(data, SHAPE).images)  # (N, 3, 26, 26)
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), x).backward()
        opt.step()
    return model.eval()


def make_run(root: Path, name: str = "tiny", data: Path | None = None, model=None) -> Path:
    """A run-like folder: model files with the input shape, train.json naming the data, a status."""
    run = root / name
    save_model(model if model is not None else wafer_model(), run, metadata={"epoch": "1"})
    info = {"input_shape": list(SHAPE), "created": "2024-01-01T00:00:00+0000",
            "data": {"path": str(data) if data else "", "kind": "wafer", "tile": False}}
    (run / "train.json").write_text(json.dumps(info))
    (run / "status.json").write_text(json.dumps({"status": "finished", "message": "done"}))
    return run


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """(labelled wafer file, a tiny model fitted to it): trained once per test module."""
    data = write_wafers(tmp_path_factory.mktemp("wafers") / "w.npz")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # module fixtures run before conftest's per-test thread limit
    try:
        return data, fitted_model(data)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture
def model():
    return wafer_model()


@pytest.fixture
def ds(tmp_path):
    return load_dataset(write_wafers(tmp_path / "w.npz"), SHAPE)


# --- generate ----------------------------------------------------------------------------------

def test_generate_shapes_and_sources(model, ds):
    g = gen.generate(model, ds.images, 0.5, 7, seed=1)
    assert g.outputs.shape == (7, *SHAPE)
    assert g.sources.shape == (7,) and len(set(g.sources.tolist())) == 7  # n sources, all different
    assert all(0 <= s < len(ds) for s in g.sources)
    g = gen.generate(model, ds.images, 0.5, 7, seed=1, n_sources=3)
    rows = g.by_source()
    assert len(rows) == 3 and sorted(j for _, js in rows for j in js) == list(range(7))
    assert [len(js) for _, js in rows] == [3, 2, 2]  # output j from source j % 3


def test_generate_is_deterministic_with_a_seed(model, ds):
    before = torch.random.get_rng_state()
    a = gen.generate(model, ds.images, 0.8, 6, seed=5, n_sources=2)
    assert torch.equal(torch.random.get_rng_state(), before)
    b = gen.generate(model, ds.images, 0.8, 6, seed=5, n_sources=2)
    assert torch.equal(a.outputs, b.outputs) and np.array_equal(a.sources, b.sources)
    c = gen.generate(model, ds.images, 0.8, 6, seed=6, n_sources=2)
    assert not torch.equal(a.outputs, c.outputs)
    # The same sources with other noise still differ: the seed reaches the latent noise too.
    d = gen.generate(model, ds.images, 0.8, 6, seed=6, n_sources=len(ds))
    e = gen.generate(model, ds.images, 0.8, 6, seed=7, n_sources=len(ds))
    assert np.array_equal(d.sources, e.sources) and not torch.equal(d.outputs, e.outputs)


def test_class_filter_draws_only_from_that_class(model, ds):
    for cls in ("Donut", "Scratch", "none"):
        g = gen.generate(model, ds.images, 0.3, 10, seed=2, labels=ds.labels, class_filter=cls)
        assert {ds.labels[s] for s in g.sources} == {cls}
    pool = gen.class_pool(ds.labels, len(ds), "Loc")
    assert len(pool) == ds.labels.count("Loc")
    with pytest.raises(ValueError, match="'Nope'.*classes: Center"):
        gen.generate(model, ds.images, 0.3, 2, seed=0, labels=ds.labels, class_filter="Nope")
    with pytest.raises(ValueError, match="no labels"):
        gen.generate(model, ds.images, 0.3, 2, seed=0, class_filter="Donut")


def test_sigma_zero_is_the_plain_reconstruction(model, ds):
    g = gen.generate(model, ds.images, 0.0, 5, seed=4)
    with torch.no_grad():
        plain = model(to_tensor(ds.images[g.sources]))
    torch.testing.assert_close(g.outputs, plain)
    torch.testing.assert_close(gen.reconstruct(model, ds.images, g.sources.tolist()), plain)
    assert not torch.allclose(gen.generate(model, ds.images, 1.0, 5, seed=4).outputs, plain)


@pytest.mark.parametrize("kw, match", [({"sigma": -1.0}, "sigma"), ({"sigma": float("nan")}, "sigma"),
                                       ({"n": 0}, "n must"), ({"n_sources": 0}, "n_sources"),
                                       ({"seed": -1}, "seed must")])
def test_generate_refuses_bad_arguments(model, ds, kw, match):
    args = {"sigma": 0.5, "n": 3, "seed": 0, **kw}
    with pytest.raises(ValueError, match=match):
        gen.generate(model, ds.images, **args)


def test_random_latents_follow_the_training_statistics(model, ds):
    stats = gen.training_stats(model, ds.images)
    ref = latent_stats(model, to_tensor(ds.images))
    np.testing.assert_allclose(stats.mean, ref.mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stats.std, ref.std, rtol=1e-5, atol=1e-6)
    assert len(gen.training_stats(model, ds.images, max_images=5).mean) == 4
    assert gen.latent_hw(model) == (4, 4)
    a = gen.generate_random(model, stats, 5, seed=1)
    assert a.shape == (5, *SHAPE)
    assert torch.equal(a, gen.generate_random(model, stats, 5, seed=1))
    assert not torch.equal(a, gen.generate_random(model, stats, 5, seed=2))


def test_per_position_random_wafers_keep_the_outline(tmp_path):
    """Every training map shares its round outline; per-position statistics keep it, pooled ones blur it."""
    data = write_wafers(tmp_path / "w.npz")
    model = fitted_model(data, steps=300)  # long enough that reconstructions keep the outline
    ds = load_dataset(data, SHAPE)
    outside = (onehot_to_wafer(ds.images) == 0).mean(axis=0) > 0.5  # (26, 26) off-wafer in most maps

    def outline_agreement(per_position: bool) -> float:
        stats = gen.training_stats(model, ds.images, per_position=per_position)
        maps = onehot_to_wafer(gen.generate_random(model, stats, 16, seed=0))  # (16, 26, 26)
        return float(((maps == 0) == outside).mean())

    kept, pooled = outline_agreement(True), outline_agreement(False)
    assert kept > 0.95 and kept > pooled + 0.1


def test_sigma_scale_follows_the_latent_spread(model, ds):
    spread = float(np.median(gen.training_stats(model, ds.images, 64).std))
    suggested, top = gen.sigma_scale(model, ds.images)
    assert spread / 2 <= suggested <= 1.25 * spread and 4 * spread <= top <= 10 * spread  # up to 2.5x up
    assert all(f"{v:.0e}"[0] in "125" for v in (suggested, top))  # 1-2-5 steps
    with torch.no_grad():
        for p in model.encoder.parameters():  # latents that never vary: a constant encoder
            p.zero_()
    assert gen.sigma_scale(model, ds.images) == (0.5, 3.0)


def test_interpolation_runs_from_one_reconstruction_to_the_other(model, ds):
    strip = gen.interpolation(model, ds.images, 0, 9, steps=5)
    assert strip.shape == (5, *SHAPE)
    ends = gen.reconstruct(model, ds.images, [0, 9])
    torch.testing.assert_close(strip[[0, -1]], ends, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="second image: index 999"):
        gen.interpolation(model, ds.images, 0, 999, steps=5)


# --- display -----------------------------------------------------------------------------------

def test_wafer_rendering_uses_only_the_three_colours(fitted, ds):
    out = display.to_display(gen.generate(fitted[1], ds.images, 2.0, 6, seed=0).outputs, "wafer")
    assert out.shape == (6, 130, 130, 3) and out.dtype == np.uint8  # 26 px upscaled x5 to >= 128
    used = {tuple(c) for c in out.reshape(-1, 3)}
    assert used <= COLOURS and len(used) >= 2  # a fitted model draws the wafer, not just "outside"
    # Sources (the one-hot uint8 cache) render to exactly the colours of their die values.
    maps = np.array([[[0, 1], [2, 1]]], dtype=np.uint8)
    shown = display.to_display(wafer_to_onehot(maps), "wafer", min_side=1)
    assert shown.shape == (1, 2, 2, 3)
    assert [tuple(shown[0, i, j]) for i, j in ((0, 0), (0, 1), (1, 0))] == list(display.WAFER_COLOURS)


# --- loading -----------------------------------------------------------------------------------

def test_load_generator_needs_a_size_when_the_folder_stores_none(tmp_path, ds):
    run = make_run(tmp_path, data=tmp_path / "w.npz")
    m = gen.load_generator(run)
    assert m.input_shape == SHAPE
    assert runs.run_source(run)["path"] == str(tmp_path / "w.npz") and runs.run_source(tmp_path) == {}
    with pytest.raises(ValueError, match="trained for 26x26"):
        gen.load_generator(run, size=(32, 32))

    bare = build_model(WAFER_CFG)  # no input shape: like a reference-package folder
    save_model(bare, tmp_path / "bare")
    with pytest.raises(ValueError, match="stores no input size"):
        gen.load_generator(tmp_path / "bare")
    with pytest.raises(ValueError, match="size 27x27"):
        gen.load_generator(tmp_path / "bare", size=(27, 27))  # does not mirror at 27
    m = gen.load_generator(tmp_path / "bare", size=(26, 26))
    assert m.input_shape == SHAPE
    loaded = gen.load_images(m, tmp_path / "w.npz")
    assert loaded.kind == "wafer" and gen.model_kind(m, loaded.kind) == "wafer"
    assert gen.class_counts(loaded.labels)["none"] == 6


def test_next_page_after_a_run_follows_what_it_trained_on(tmp_path):
    from udd_core.run_notes import next_page

    assert next_page(tmp_path) == ("Inspect", "score test images")  # no train.json: a detection run
    (tmp_path / "train.json").write_text('{"settings": {"train_on": "all"}}')
    assert next_page(tmp_path) == ("Generate", "generate maps")


def test_command_line_names_only_what_differs_from_the_run(tmp_path):
    data = write_wafers(tmp_path / "w.npz")
    run = make_run(tmp_path / "runs", data=data)
    cmd = gen.command_line(run, 16, 4, 1 / 3, 7)
    assert cmd == f"udd generate {run} -n 16 --sources 4 --sigma 0.3333333333333333 --seed 7 --out OUT"  # σ exact
    assert gen.command_line(run, 4, 2, 5.0, 0, data=data) == f"udd generate {run} -n 4 --sources 2 --sigma 5.0 " \
                                                             "--seed 0 --out OUT"  # its own data: left out
    other = tmp_path / "my data.npz"
    assert gen.command_line(run, 4, 2, 5.0, 0, "Edge-Loc", other, "test").endswith(
        f"--class Edge-Loc --data '{other}' --split test --out OUT")  # quoted for a shell
