"""udd_core.latent_map: the codes' main axes, the map of a data set, generated codes on it, and its figure."""
import numpy as np
import pytest
import torch
from test_generation import ds, model  # noqa: F401 - fixtures: a tiny wafer model and its labelled maps

from udd_core import generation as gen
from udd_core import generation_views as views
from udd_core.latent_map import (CLASS_COLOURS, NORMAL_COLOUR, LatentMap, fit_latent_map, fitted_ranges, latent_figure,
                                  main_axes, map_caption)


def pca_by_svd(x):
    xc = x - x.mean(axis=0)
    _, s, vt = np.linalg.svd(xc, full_matrices=False)
    return vt[:2].T, s[:2] ** 2 / (s ** 2).sum()


@pytest.mark.parametrize("n, d", [(300, 20), (30, 500)])  # both Gram matrices: D x D and N x N
def test_main_axes_are_pca_s_first_two_components(n, d):
    rng = np.random.default_rng(n)
    x = rng.normal(size=(n, d)) * np.linspace(4, 0.1, d) + rng.normal(size=d)
    mean, axes, explained = main_axes(x)
    ref, share = pca_by_svd(x)
    np.testing.assert_allclose(mean, x.mean(axis=0))
    np.testing.assert_allclose(np.abs(axes.T @ ref), np.eye(2), atol=1e-9)  # the same directions, up to sign
    np.testing.assert_allclose(explained, share, rtol=1e-9)
    assert all(axes[np.abs(axes[:, k]).argmax(), k] > 0 for k in range(2))  # the sign rule: one picture per data
    _, flipped, _ = main_axes(-x)  # mirrored codes: the same rule, the same axes up to the mirror
    np.testing.assert_allclose(np.abs(flipped), np.abs(axes), atol=1e-9)


def test_main_axes_of_degenerate_codes():
    line = np.outer(np.arange(5.0), [1.0, 2.0, 0.0])  # one direction of spread
    _, axes, explained = main_axes(line)
    assert explained[0] == pytest.approx(1.0) and explained[1] == 0.0 and not axes[:, 1].any()
    _, axes, explained = main_axes(np.arange(4.0)[:, None])  # codes of one value
    assert axes.shape == (1, 2) and explained == (pytest.approx(1.0), 0.0)
    with pytest.raises(ValueError, match="same latent code"):
        main_axes(np.ones((3, 4)))
    with pytest.raises(ValueError, match="at least 2 images"):
        main_axes(np.ones((1, 4)))


def test_the_map_places_each_image_where_its_code_lies(model, ds):
    lmap = fit_latent_map(model, ds)
    assert lmap.n_images == len(ds) and list(lmap.index) == list(range(len(ds)))
    codes = gen.encode_images(model, ds.images, lmap.index)  # (N, L, h, w)
    np.testing.assert_allclose(lmap.place(codes), lmap.xy, atol=1e-6)
    assert lmap.labels == [str(v) for v in ds.labels]
    part = fit_latent_map(model, ds, max_images=5)  # evenly spaced, first and last included
    assert len(part.index) == 5 and part.index[0] == 0 and part.index[-1] == len(ds) - 1
    assert "5 of the" in map_caption(part) and f"all {len(ds)} images" in map_caption(lmap)
    with pytest.raises(ValueError, match="values each"):
        lmap.place(np.zeros((2, 3)))


def test_the_crosses_are_the_codes_that_were_decoded(model, ds):
    v = views.noised_view(model, ds, "wafer", 0.7, n_sources=3, per_source=2, seed=4)
    z = torch.as_tensor(v.latents).view(len(v.latents), *gen.encode_images(model, ds.images, [0]).shape[1:])
    again = views.noised_view(model, ds, "wafer", 0.7, n_sources=3, per_source=2, seed=4)
    np.testing.assert_array_equal(v.latents, again.latents)
    # Decoding the map's crosses gives the variants shown: they are what was generated, not a copy.
    g = gen.generate(model, ds.images, 0.7, 6, 4, ds.labels, n_sources=3)
    torch.testing.assert_close(gen.decode(model, z), g.outputs)
    src = gen.encode_images(model, ds.images, g.sources).flatten(1).numpy()
    np.testing.assert_allclose(v.origins, src, atol=1e-6)  # each cross joined to its own source's code
    assert v.hover[0].startswith("σ 0.7 · #0 from ")
    r = views.random_view(model, gen.training_stats(model, ds.images), 5, 2, "wafer", False, "normal")
    assert r.latents.shape[0] == 5 and r.origins is None
    torch.testing.assert_close(gen.decode(model, torch.as_tensor(r.latents).view_as(z[:5])),
                               gen.generate_random(model, gen.training_stats(model, ds.images), 5, 2))


def test_figure_has_a_trace_per_class_normal_in_grey_and_the_crosses_joined_to_their_sources(model, ds):
    lmap = fit_latent_map(model, ds)
    v = views.noised_view(model, ds, "wafer", 0.5, n_sources=2, per_source=3, seed=0)
    fig = latent_figure(lmap, v.latents, v.origins, "generated", v.hover)
    names = [t.get("name") for t in fig["data"]]
    counts = {}
    for label in ds.labels:
        counts[label] = counts.get(label, 0) + 1
    assert names[0] == f"none ({counts['none']})" and fig["data"][0]["marker"]["color"] == NORMAL_COLOUR
    assert sorted(names[1:len(counts)]) == sorted(f"{k} ({n})" for k, n in counts.items() if k != "none")
    assert sum(len(t["x"]) for t in fig["data"][:len(counts)]) == len(ds)
    lines, ring, crosses = fig["data"][len(counts):]
    assert len(lines["x"]) == 3 * 6 and lines["x"][2::3] == [None] * 6  # one segment per variant
    assert len(ring["x"]) == 2 and crosses["name"] == "generated" and crosses["text"] == v.hover
    np.testing.assert_allclose(np.c_[crosses["x"], crosses["y"]], lmap.place(v.latents))
    np.testing.assert_allclose(lines["x"][0::3], lmap.place(v.origins)[:, 0])
    assert "%" in fig["layout"]["xaxis"]["title"]["text"] and fig["layout"]["yaxis"]["scaleanchor"] == "x"
    assert len(latent_figure(lmap)["data"]) == len(counts)  # no generation: the data alone


def test_the_axes_fit_the_points_even_when_one_axis_does_not_spread():
    """QA sweep 11: two images (axis 2 at 0% of the variance) put codes 0.08 apart in one blob on plotly's
    default -1..1 range, stretched to -1.5..1.5 by the common scale."""
    (x0, x1), (y0, y1) = fitted_ranges(np.array([[-0.04, 0.0], [0.04, 0.0]]))
    assert x0 < -0.04 and x1 > 0.04 and x1 - x0 < 0.1  # fits the two codes, with a margin
    assert (y0, y1) == pytest.approx((-(x1 - x0) / 2, (x1 - x0) / 2))  # as wide, centred on the line
    assert fitted_ranges(np.zeros((3, 2))) == ((-1.0, 1.0), (-1.0, 1.0))  # one spot: any range shows it


def test_classes_take_strong_colours_and_unknown_labels_are_grey_rings():
    """QA sweep 11: an "unlabeled" map was drawn as a pattern class, in one of the theme's pale colours."""
    xy = np.array([[0, 0], [1, 0], [0, 1], [1, 1], [2, 2.0]])
    lmap = LatentMap(xy, np.arange(5), ["none", "Loc", "unlabeled", "Center", "Loc"], [f"m{i}" for i in range(5)],
                     np.zeros(1), np.zeros((1, 2)), (0.6, 0.4), 5)
    fig = latent_figure(lmap)
    by_name = {t["name"]: t["marker"] for t in fig["data"]}
    assert list(by_name) == ["none (1)", "unlabeled (1, unknown label)", "Center (1)", "Loc (2)"]
    assert by_name["unlabeled (1, unknown label)"] == {"size": 6, "opacity": 0.8, "color": NORMAL_COLOUR,
                                                      "symbol": "circle-open"}
    assert [by_name["Center (1)"]["color"], by_name["Loc (2)"]["color"]] == list(CLASS_COLOURS[:2])
    assert fig["layout"]["xaxis"]["range"][1] > 2 and fig["layout"]["yaxis"]["range"][1] > 2
