"""The backbone: parity with an independent EfficientNet-Lite implementation on the same weights,
strict loading, feature shapes without running the net, and its frozen behaviour."""
import pytest
import torch

from udd_core import backbone as bb


@pytest.fixture(scope="module")
def net():
    return bb.pretrained_lite0()


@pytest.fixture(scope="module")
def state():
    return torch.load(bb.weights_path(), map_location="cpu", weights_only=True)


def test_weights_are_the_packaged_lite0(state):
    assert len(state) == 296
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_fc.weight"].shape == (1000, 1280)


@pytest.mark.parametrize("size", [(64, 64), (70, 53)])  # odd sides exercise TF "SAME" padding
def test_stage_maps_equal_the_independent_implementation(net, state, size):
    ref_pkg = pytest.importorskip("efficientnet_lite_pytorch", reason="the parity reference is a test dependency")
    ref = ref_pkg.EfficientNet.from_name("efficientnet-lite0", image_size=list(size))
    ref.load_state_dict(state, strict=True)
    ref.eval()
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        ours = net.stages(x, 6)
        y = ref._swish(ref._bn0(ref._conv_stem(x)))
        theirs = []
        for i, block in enumerate(ref._blocks):
            y = block(y)
            if i + 1 in net.stage_ends:
                theirs.append(y)
        full = ref._swish(ref._bn1(ref._conv_head(y)))
    assert len(ours) == len(theirs) == 7
    for a, b in zip(ours, theirs):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    # and the head reached through our weights gives the same classifier input
    with torch.inference_mode():
        head = torch.nn.functional.relu6(net._bn1(net._conv_head(ours[-1])))
    torch.testing.assert_close(head, full, rtol=1e-5, atol=1e-5)


def test_strict_load_refuses_a_missing_key(state):
    bad = dict(state)
    del bad["_blocks.3._depthwise_conv.weight"]
    with pytest.raises(ValueError, match=r"missing key _blocks\.3\._depthwise_conv\.weight"):
        bb.load_state_strict(bb.EfficientNetLite0(), bad)


def test_strict_load_refuses_a_misshaped_key(state):
    bad = dict(state)
    bad["_blocks.5._bn1.running_var"] = torch.ones(7)
    with pytest.raises(ValueError, match=r"_blocks\.5\._bn1\.running_var has shape \(7,\), expected \(240,\)"):
        bb.load_state_strict(bb.EfficientNetLite0(), bad)


def test_strict_load_refuses_an_unexpected_key(state):
    bad = dict(state)
    bad["_blocks.0._se_reduce.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"unexpected key _blocks\.0\._se_reduce\.weight"):
        bb.load_state_strict(bb.EfficientNetLite0(), bad)


def test_strict_load_errors_are_one_line(state):
    bad = {k: v for k, v in state.items() if not k.startswith("_blocks.7.")}
    with pytest.raises(ValueError) as e:
        bb.load_state_strict(bb.EfficientNetLite0(), bad, source="w.pth")
    assert "\n" not in str(e.value) and str(e.value).startswith("w.pth: missing key _blocks.7.")


@pytest.mark.parametrize("layers", [("s8", "s16"), ("s4",), ("stage4", "s32"), ("s8",)])
@pytest.mark.parametrize("shape", [(1, 64, 64), (3, 70, 53), (1, 33, 97)])
def test_feature_shape_predicts_the_output(net, layers, shape):
    fe = bb.FeatureExtractor(layers, pool=3, net=net)
    with torch.inference_mode():
        f = fe(torch.rand(1, *shape))
    assert tuple(f.shape[1:]) == bb.feature_shape(shape, layers)
    assert bb.feature_bytes_per_image(shape, layers) == 4 * f[0].numel()


def test_default_features_are_stride8_with_152_channels():
    assert bb.feature_shape((1, 256, 256)) == (40 + 112, 32, 32)


def test_gray_equals_the_replicated_rgb_image(net):
    fe = bb.FeatureExtractor(net=net)
    g = torch.rand(2, 1, 48, 40)
    with torch.inference_mode():
        torch.testing.assert_close(fe(g), fe(g.expand(-1, 3, -1, -1).clone()))


def test_pooling_is_a_neighbourhood_average(net):
    raw = bb.FeatureExtractor(("s8",), pool=1, net=net)
    pooled = bb.FeatureExtractor(("s8",), pool=3, net=net)
    x = torch.rand(1, 3, 64, 64)
    with torch.inference_mode():
        r, p = raw(x), pooled(x)
    torch.testing.assert_close(p[0, :, 3, 4], r[0, :, 2:5, 3:6].mean(dim=(1, 2)))


def test_extractor_is_frozen_and_stays_in_eval_mode(net):
    fe = bb.FeatureExtractor(net=net)
    fe.train()
    assert not fe.training and not any(m.training for m in fe.modules())
    assert not any(p.requires_grad for p in fe.parameters())


@pytest.mark.parametrize("kwargs, option", [
    ({"layers": ("s8", "s9")}, "layers"), ({"layers": ()}, "layers"), ({"layers": ("s8", "stage3")}, "layers"),
    ({"pool": 2}, "pool"), ({"pool": 0}, "pool"), ({"backbone": "resnet"}, "backbone"),
])
def test_bad_options_are_refused_naming_them(net, kwargs, option):
    with pytest.raises(ValueError, match=rf"^{option}: "):
        bb.FeatureExtractor(net=net, **kwargs)


def test_extractor_equals_the_unfused_net(net):
    # The extractor folds BatchNorm into the convs and runs NHWC: same features as the plain stages.
    fe = bb.FeatureExtractor(("s8", "s16"), pool=1, net=net)
    x = torch.rand(2, 3, 64, 48)
    with torch.inference_mode():
        f = fe(x)
        outs = net.stages((x - fe.mean) / fe.std, 4)
    up = torch.nn.functional.interpolate(outs[4], size=outs[2].shape[-2:], mode="bilinear", align_corners=False)
    torch.testing.assert_close(f, torch.cat([outs[2], up], dim=1), rtol=1e-4, atol=1e-4)
