"""Property-based: any JSON value or Python literal either builds a model whose forward shapes
equal `propagate()`, or is refused with a one-line error naming what is wrong."""
import json
import warnings

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from udd_core import build_model, parse_config, propagate
from udd_core.config import FIELDS, ConfigError
from udd_core.shapes import ShapeError

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 8) | st.floats(allow_nan=False, allow_infinity=False, width=32)
    | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
small = st.integers(-1, 5)
pad = st.one_of(st.integers(-1, 2), st.lists(st.integers(-1, 2), min_size=1, max_size=3))


@st.composite
def near_valid(draw):
    """Dicts with every field present and mostly-plausible values, so many are valid."""
    n = draw(st.integers(0, 3))
    triple = st.lists(small, min_size=2, max_size=4)
    d = {
        "block_ker": draw(st.lists(small, min_size=n, max_size=n + 1)),
        "drop": draw(st.lists(st.floats(-0.5, 1.5, allow_nan=False) | st.just(0.0), min_size=n, max_size=n + 1)),
        "block_size_in": draw(st.lists(triple, min_size=n, max_size=n + 1)),
        "block_size_out": draw(st.lists(triple, min_size=n, max_size=n + 1)),
        "latent_size": draw(small | json_values),
        "latent_ker": draw(small),
        draw(st.sampled_from(["latent_opad", "laten_opad"])): draw(pad),
        "out_pad": draw(st.lists(pad, min_size=n, max_size=n + 1)),
    }
    if draw(st.booleans()):
        del d[draw(st.sampled_from(sorted(d)))]
    return d


@st.composite
def chained(draw):
    """Valid-by-construction feature chains with random kernels, paddings and input sizes."""
    n = draw(st.integers(1, 3))
    c = draw(st.sampled_from([1, 3]))
    f = [c] + [draw(st.integers(1, 3)) for _ in range(2 * n)]
    g = [draw(st.integers(1, 3)) for _ in range(2 * n)] + [c]
    return {
        "block_ker": [draw(st.integers(1, 6)) for _ in range(n)], "drop": [0.0] * n,
        "block_size_in": [f[2 * i:2 * i + 3] for i in range(n)], "block_size_out": [g[2 * i:2 * i + 3] for i in range(n)],
        "latent_size": draw(st.integers(1, 3)), "latent_ker": draw(st.integers(1, 5)),
        "latent_opad": draw(st.integers(0, 1)), "out_pad": [draw(st.integers(0, 1)) for _ in range(n)],
    }, (c, draw(st.integers(1, 40)), draw(st.integers(1, 40)))


def check(source, shape=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            cfg = parse_config(source)
        except ConfigError as e:
            assert "\n" not in str(e) and str(e).split(":")[0]
            return
    shape = shape or (cfg.in_channels, 16, 16)
    try:
        report = propagate(cfg, shape)
    except ShapeError as e:
        assert "\n" not in str(e)
        return
    model = build_model(cfg).eval()
    with torch.no_grad():
        out = model(torch.zeros(1, *shape))
    assert tuple(out.shape[1:]) == report.output


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_any_json_value(value):
    check(json.dumps(value))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(near_valid())
def test_any_near_valid_dict_as_json_and_as_python_literal(d):
    check(json.dumps(d))
    check(repr(d))  # the reference's printed-dict format
    check(repr({k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}))  # tuples too


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chained())
def test_valid_chains_build_and_match_propagate(case):
    d, shape = case
    check(d, shape)


@given(st.text(max_size=200))
@settings(max_examples=300, deadline=None)
def test_any_text(text):
    check(text)


def test_every_field_is_required():
    base = {"block_ker": [3], "drop": [0.0], "block_size_in": [[1, 2, 2]], "block_size_out": [[2, 2, 1]],
            "latent_size": 2, "latent_ker": 3, "latent_opad": 1, "out_pad": [1]}
    parse_config(base)
    for f in FIELDS:
        d = {k: v for k, v in base.items() if k != f}
        try:
            parse_config(d)
        except ConfigError as e:
            assert e.field == f
        else:
            raise AssertionError(f"missing {f} was accepted")
