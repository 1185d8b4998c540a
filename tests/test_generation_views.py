"""udd_core.generation_views: what the Generate page shows and hands out, read headless on a tiny wafer model."""
import io

import numpy as np
import pytest
import torch
from test_generation import ds, model  # noqa: F401 - fixtures: a tiny wafer model and its labelled maps

from udd_core import display
from udd_core import generation as gen
from udd_core import generation_views as views
from udd_core import wafer_generation as wg


def test_noised_view_rows_match_the_download_and_the_npz(model, ds):
    v = views.noised_view(model, ds, "wafer", 0.5, n_sources=3, per_source=2, seed=1, command="udd generate X")
    assert len(v.rows) == 3 and all(len(r.images) == len(r.captions) == 2 + 2 for r in v.rows)
    assert [r.captions[1] for r in v.rows] == ["reconstruction"] * 3
    shown = [img for r in v.rows for img in r.images[2:]]  # the variants, row by row
    assert len(v.outputs) == len(v.names) == 6
    assert sorted(a.tobytes() for a in shown) == sorted(a.tobytes() for a in v.outputs)
    assert v.caption.endswith("`udd generate X`")
    npz = np.load(io.BytesIO(v.npz))
    assert npz["maps"].shape == (6, 26, 26) and set(np.unique(npz["maps"])) <= {0, 1, 2}
    # The picture of each output is the .npz map of the same output, drawn.
    np.testing.assert_array_equal(display.upscale(display.render_wafer(npz["maps"])), v.outputs)
    first = v.rows[0].captions[0]
    assert first == views.image_label(ds, int(npz["sources"][0]))


def test_noised_view_of_images_has_no_npz_and_a_class_filter_holds(model, ds):
    v = views.noised_view(model, ds, "wafer", 0.0, 2, 1, seed=0, class_filter="Donut")
    assert all(r.captions[0].startswith("Donut · ") for r in v.rows)
    # sigma 0: each variant is the reconstruction
    for r in v.rows:
        np.testing.assert_array_equal(r.images[1], r.images[2])
    img = views.noised_view(model, ds, "image", 0.5, 2, 2, seed=0)
    assert img.npz is None and img.outputs.dtype == np.uint8


def test_class_grid_view_has_a_heading_per_class_and_names_files_by_class(model, ds):
    grids = wg.class_grids(model, ds.images, ds.labels, 0.4, seed=2, n_sources=2, per_source=3)
    v = views.class_grid_view(grids, ds, 0.4)
    headings = [r.heading for r in v.rows if r.heading]
    assert len(headings) == len(grids) and headings[0].startswith(f"**{grids[0].label}**")
    assert all(len(r.images) == 2 + 3 for r in v.rows)
    n = sum(g.variant_maps.shape[0] * 3 for g in grids)
    assert len(v.outputs) == len(v.names) == n
    assert v.names[0].startswith(grids[0].label) and v.names[-1].startswith(grids[-1].label)
    assert np.load(io.BytesIO(v.npz))["labels"].tolist() == [g.label for g in grids
                                                            for _ in range(g.variant_maps.shape[0] * 3)]


def test_random_view_is_seeded_and_says_where_its_statistics_come_from(model, ds):
    stats = gen.training_stats(model, ds.images)
    a = views.random_view(model, stats, 5, 3, "wafer", per_position=False, train_on="all")
    b = views.random_view(model, stats, 5, 3, "wafer", per_position=False, train_on="all")
    assert len(a.rows) == 1 and len(a.outputs) == 5 and np.array_equal(a.outputs, b.outputs)
    assert "every image" in a.caption and a.names[0].startswith("random_")
    # An untrained model's argmax maps all look alike; the decoder's values show the seed.
    c, d = (views.random_view(model, stats, 5, seed, "image", per_position=True, train_on="normal") for seed in (3, 4))
    assert not np.array_equal(c.outputs, d.outputs) and "normal images" in c.caption


def test_interpolation_row_has_both_ends_and_refuses_a_bad_index(model, ds):
    row = views.interpolation_row(model, ds, "wafer", 0, 5, steps=4)
    assert row.captions == ["from", "0.00", "0.33", "0.67", "1.00", "to"] and len(row.images) == 6
    np.testing.assert_array_equal(row.images[0], display.to_display(ds.images[[0]], "wafer")[0])
    with pytest.raises(ValueError, match="second image: index 999"):
        views.interpolation_row(model, ds, "wafer", 0, 999, steps=4)


def test_other_class_index_and_spaced_bands():
    assert views.other_class_index(["a", "a", "b"]) == 2 and views.other_class_index(["a", "a"]) == 1
    out = display.spaced(np.full((2, 3), 7, np.uint8), gap=2)
    assert out.shape == (2, 7, 4) and (out[:, :2, 3] == 0).all() and (out[:, 2:5, :3] == 7).all()
    assert (out[:, 2:5, 3] == 255).all()


def test_torch_state_is_untouched(model, ds):
    before = torch.random.get_rng_state()
    views.noised_view(model, ds, "wafer", 0.5, 2, 2, seed=9)
    assert torch.equal(before, torch.random.get_rng_state())


def test_hw2_npz_holds_each_class_in_the_order_its_udd_generate_line_writes(tmp_path, capsys):
    """QA: the HW2 download held each class's maps grouped by source, its printed `udd generate` line cycling
    the sources: the same set, but index i of one was not index i of the other."""
    import shlex

    from test_generation import SHAPE, fitted_model, make_run, write_wafers
    from udd_core.cli import main
    from udd_core.data import load_dataset

    data = write_wafers(tmp_path / "w.npz")
    run = make_run(tmp_path / "runs", "tiny", data, fitted_model(data, steps=10))
    ds = load_dataset(data, SHAPE)
    model = gen.load_model(run)
    grids = wg.class_grids(model, ds.images, ds.labels, 0.3, seed=5, classes=["Donut", "Loc"], n_sources=2,
                           per_source=3)
    v = views.class_grid_view(grids, ds, 0.3)
    with np.load(io.BytesIO(v.npz)) as z:
        app_maps, app_labels, app_sources = z["maps"], z["labels"].tolist(), z["sources"]
    for cmd, grid in zip(views.class_commands(run, grids, 0.3, 5, 3, data, "train"), grids):
        argv = shlex.split(cmd.replace("OUT-", str(tmp_path / "out-")))[1:]
        assert main(argv) == 0, capsys.readouterr().err
        with np.load(tmp_path / f"out-{grid.label}.npz") as z:
            mine = [i for i, lab in enumerate(app_labels) if lab == grid.label]
            np.testing.assert_array_equal(z["maps"], app_maps[mine])  # index by index
            np.testing.assert_array_equal(z["sources"], app_sources[mine])
        assert len(set(app_sources[mine][:2].tolist())) == 2  # the order cycles the sources: not grouped
