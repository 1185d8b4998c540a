"""Shape propagation against real forward passes, the mismatch solver, and the totals."""
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from udd_core import build_model, parse_config, propagate
from udd_core.presets import model_presets
from udd_core.image_shapes import ae_input_shape, checked_image_shape
from udd_core.shapes import ShapeError, nearest_inputs


@st.composite
def configs(draw):
    n = draw(st.integers(1, 3))
    ch = draw(st.sampled_from([1, 3]))
    feats = [ch] + [draw(st.integers(1, 4)) for _ in range(2 * n)]
    bin_ = [[feats[2 * i], feats[2 * i + 1], feats[2 * i + 2]] for i in range(n)]
    outs = [draw(st.integers(1, 4)) for _ in range(2 * n)] + [ch]
    bout = [[outs[2 * i], outs[2 * i + 1], outs[2 * i + 2]] for i in range(n)]
    pad = st.one_of(st.integers(0, 1), st.tuples(st.integers(0, 1), st.integers(0, 1)))
    return {
        "block_ker": [draw(st.integers(1, 6)) for _ in range(n)],  # odd and even kernels
        "drop": [0.0] * n,
        "block_size_in": bin_,
        "block_size_out": bout,
        "latent_size": draw(st.integers(1, 4)),
        "latent_ker": draw(st.integers(1, 5)),
        "latent_opad": draw(pad),
        "out_pad": [draw(pad) for _ in range(n)],
    }, (ch, draw(st.integers(1, 70)), draw(st.integers(1, 70)))


def forward_shapes(model, x):
    """Output shape of every leaf module, by its module path, from a real forward pass."""
    seen = {}
    hooks = [m.register_forward_hook(lambda m, i, o, n=name: seen.__setitem__(n, tuple(o.shape[1:])))
             for name, m in model.named_modules() if not list(m.children())]
    try:
        with torch.no_grad():
            y = model(x)
    finally:
        for h in hooks:
            h.remove()
    return seen, tuple(y.shape[1:])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs())
def test_propagate_matches_pytorch_for_any_config_and_size(case):
    cfg, shape = case
    model = build_model(cfg).eval()
    try:
        report = propagate(cfg, shape)
    except ShapeError:
        # propagate says it cannot run: PyTorch must refuse too (or produce an empty tensor).
        try:
            _, out = forward_shapes(model, torch.zeros(1, *shape))
        except RuntimeError:
            return
        assert min(out[1:]) < 1
        return
    seen, out = forward_shapes(model, torch.zeros(1, *shape))
    assert {l.name: l.out_shape for l in report.layers} == seen
    assert report.output == out
    assert report.params == sum(p.numel() for p in model.parameters())
    params = dict(model.named_modules())
    for l in report.layers:
        assert l.params == sum(p.numel() for p in params[l.name].parameters())
    assert report.ok == (out == shape and all(s.ok for s in report.stages))
    if report.suggested is not None:
        fixed = propagate(report.suggested, shape)
        assert fixed.ok
        _, out2 = forward_shapes(build_model(report.suggested), torch.zeros(1, *shape))
        assert out2 == shape


@settings(max_examples=60, deadline=None)
@given(configs())
def test_nearest_inputs_really_work(case):
    cfg, shape = case
    for near in nearest_inputs(parse_config(cfg), shape):
        try:
            r = propagate(cfg, near)
        except ShapeError as e:  # runs only with other paddings: the error carries them
            assert e.suggested is not None and propagate(e.suggested, near).ok
        else:
            assert r.ok or r.suggested is not None


def test_stage_names_and_latent(tiny_config):
    r = propagate(tiny_config, (1, 32, 32))
    assert [s.name for s in r.stages] == ["enc1", "enc2", "latent", "latent_up", "dec1", "dec2"]
    assert r.ok and r.output == (1, 32, 32)
    assert r.latent == (4, 4, 4)
    assert r.compression == pytest.approx(64 / 1024)
    # two 3x3 convs per block (strides 1, 2) then a 3x3 stride-2 latent conv
    assert r.receptive_field == 1 + 2 + 2 + 4 + 4 + 8


def test_mismatch_names_stage_field_and_fix(tiny_config):
    tiny_config["out_pad"] = [0, 1]  # dec1 comes out one pixel short
    r = propagate(tiny_config, (1, 32, 32))
    assert not r.ok
    assert r.problems[0].stage == "dec1" and r.problems[0].field == "out_pad[0]"
    assert "set out_pad[0] = [1, 1]" in r.problems[0].message
    assert r.suggested is not None and r.suggested.out_pad == (1, 1)


def test_odd_non_square_input_gets_pair_paddings(tiny_config):
    r = propagate(tiny_config, (1, 31, 40))
    assert not r.ok
    assert propagate(r.suggested, (1, 31, 40)).ok
    assert isinstance(r.suggested.out_pad[1], tuple)


def test_unreachable_size_names_nearest_inputs():
    # An even kernel's stride-1 transposed conv loses a pixel, so some sizes cannot be mirrored
    cfg = {"block_ker": [4], "drop": [0.0], "block_size_in": [[1, 2, 2]], "block_size_out": [[2, 2, 1]],
           "latent_size": 2, "latent_ker": 3, "latent_opad": 0, "out_pad": [0]}
    r = propagate(cfg, (1, 9, 10))
    assert r.suggested is None and r.nearest_inputs
    assert "nearest input sizes that work" in r.problems[0].message
    assert (1, 8, 8) in r.nearest_inputs and (1, 11, 11) in r.nearest_inputs
    for near in r.nearest_inputs:
        rr = propagate(cfg, near)
        assert rr.ok or rr.suggested is not None


def test_too_small_input_raises_with_nearest_sizes():
    # Odd kernels with k//2 padding never shrink a map to nothing; an even kernel's transposed
    # stride-1 conv loses a pixel, so a 1-pixel decoder map vanishes.
    cfg = {"block_ker": [2], "drop": [0.0], "block_size_in": [[1, 2, 2]], "block_size_out": [[2, 2, 1]],
           "latent_size": 2, "latent_ker": 3, "latent_opad": 0, "out_pad": [0]}
    with pytest.raises(ShapeError, match="too small.*nearest input sizes that work: 1x3x3") as e:
        propagate(cfg, (1, 2, 2))
    assert e.value.suggested is None


def test_wrong_channels_and_bad_shape(tiny_config):
    with pytest.raises(ShapeError, match="block_size_in"):
        propagate(tiny_config, (3, 32, 32))
    with pytest.raises(ShapeError, match="input shape"):
        propagate(tiny_config, (1, 0, 32))


def test_macs_match_a_hand_count(tiny_config):
    r = propagate(tiny_config, (1, 32, 32))
    first = r.layers[0]  # 3x3 conv, 1 -> 4 channels, stride 1 at 32x32
    assert first.macs == 1 * 4 * 9 * 32 * 32
    up = next(l for l in r.layers if l.name == "decoder.0")  # transposed: 4 -> 8 from a 4x4 latent
    assert up.macs == 4 * 8 * 9 * 4 * 4
    assert r.macs == sum(l.macs for l in r.layers)


@pytest.mark.parametrize("name", list(model_presets()))
def test_presets_mirror_and_match_forward(name):
    p = model_presets()[name]
    inp = ae_input_shape(p.config, p.input_shape)  # the feature tensor for a feature-AE preset
    r = propagate(p.config, inp)
    assert r.ok
    small = (inp[0], min(inp[1], 64), min(inp[2], 64))
    rs = propagate(p.config, small)
    seen, _ = forward_shapes(build_model(p.config).eval(), torch.zeros(1, *small))
    assert {l.name: l.out_shape for l in rs.layers} == seen


def test_to_dict_has_the_cli_fields(tiny_config):
    d = propagate(tiny_config, (1, 32, 32)).to_dict()
    for key in ("input", "output", "ok", "stages", "layers", "problems", "suggested_config", "params",
                "latent", "compression", "receptive_field"):
        assert key in d
    assert set(d["layers"][0]) >= {"name", "kind", "in", "out", "params"}


def test_checked_image_shape_gives_the_images_channels_or_the_first_shape_problem():
    cfg = model_presets()["gray-tile-128"].config
    assert checked_image_shape(cfg, "autoencoder", (128, 128), 3) == (1, 128, 128)  # a pixel AE: its own channels
    with pytest.raises(ValueError, match=r"^latent_up outputs 48x14x14 but must mirror 48x13x13: set latent_opad"):
        checked_image_shape(cfg, "autoencoder", (100, 100))
    feat = model_presets()["feature-ae"].config
    assert checked_image_shape(feat, "feature-ae", (256, 256), 1) == (1, 256, 256)  # the backbone takes gray
    assert checked_image_shape(feat, "feature-ae", (256, 256), 2)[0] == 3  # ...or RGB
    assert checked_image_shape(None, "memory-bank", (100, 60)) == (3, 100, 60)  # no config: RGB, nothing to check


def test_the_receptive_field_says_its_unit():
    from types import SimpleNamespace

    from udd_core.shapes import receptive_field_text

    pixels = SimpleNamespace(receptive_field=21, input=(3, 26, 26))
    assert receptive_field_text(pixels) == receptive_field_text(pixels, (26, 26)) == "21 px"
    features = SimpleNamespace(receptive_field=9, input=(512, 8, 8))  # a feature AE's input on 256x256 images
    assert receptive_field_text(features, (256, 256)) == "9 feature cells (stride 32: about 288 px)"
    assert receptive_field_text(features, (256, 256), short=True) == "≈ 288 px"  # the Design page's metric
