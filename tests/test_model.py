"""The model equals defect_detection.AE_cls for the same config and weights; checkpoints round-trip."""
import pickle

import pytest
import torch

from udd_core import build_model, load_model, parse_config, save_model
from udd_core.model import ModelFileError
from udd_core.presets import model_presets

dd = pytest.importorskip("defect_detection", reason="the reference package is a test dependency")

UNEVEN = {  # odd sizes, pair paddings, an even kernel and dropout: the awkward corners
    "block_ker": [5, 4, 3], "drop": [0.1, 0.2, 0.0],
    "block_size_in": [[3, 6, 5], [5, 7, 4], [4, 3, 6]], "block_size_out": [[5, 4, 6], [6, 3, 2], [2, 5, 3]],
    "latent_size": 2, "latent_ker": 3, "latent_opad": [1, 0], "out_pad": [[0, 1], 1, [1, 0]],
}


def reference_model(cfg: dict):
    # The reference's default loss has a typo (torch.nn.MSEloss) and crashes: pass one explicitly.
    return dd.AE_cls(cfg, apply_only=True, loss_fn=torch.nn.MSELoss()).eval()


@pytest.mark.parametrize("cfg, shape", [
    (model_presets()["reference-example"].config.to_dict(), (3, 64, 64)),
    (model_presets()["wafer-26"].config.to_dict(), (3, 26, 26)),
    (UNEVEN, (3, 37, 29)),
])
def test_same_weights_same_output_as_reference(cfg, shape):
    ref = reference_model(parse_config(cfg).to_dict())
    ours = build_model(cfg).eval()
    assert list(ours.state_dict()) == list(ref.state_dict())  # identical module tree
    ours.load_state_dict(ref.state_dict())  # weights copied across
    x = torch.rand(2, *shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=0)
    # and the other way round, from our random init
    ours2 = build_model(cfg).eval()
    ref.load_state_dict(ours2.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(ours2(x), ref(x), rtol=0, atol=0)


def test_train_mode_dropout_matches_reference_with_same_rng():
    cfg = UNEVEN
    ref = reference_model(cfg).train()
    ours = build_model(cfg).train()
    ours.load_state_dict(ref.state_dict())
    x = torch.rand(1, 3, 37, 29)
    torch.manual_seed(3)
    a = ours(x)
    torch.manual_seed(3)
    b = ref(x)
    torch.testing.assert_close(a, b)


def test_save_load_round_trip(tmp_path, tiny_config):
    m = build_model(tiny_config, (1, 32, 32)).eval()
    save_model(m, tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors"]
    back = load_model(tmp_path / "m")
    assert back.input_shape == (1, 32, 32)
    assert back.config == m.config
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(back(x), m(x), rtol=0, atol=0)
    assert not back.training


def test_loads_a_reference_model_folder(tmp_path):
    cfg = model_presets()["reference-example"].config.to_dict()
    ref = reference_model(cfg)
    ref.save_model(str(tmp_path) + "/")  # writes AE_config.txt (a printed dict) + AE_state.save (torch.save)
    ours = load_model(tmp_path)
    assert ours.input_shape is None
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=0)


class _Evil:
    def __reduce__(self):
        import os
        return (os.system, ("touch /tmp/udd_evil_ran",))


def test_malicious_pickle_is_refused(tmp_path, tiny_config):
    import os
    (tmp_path / "AE_config.txt").write_text(str(tiny_config))
    with open(tmp_path / "AE_state.save", "wb") as f:
        pickle.dump({"x": _Evil()}, f)
    with pytest.raises(ModelFileError, match="AE_state.save") as err:
        load_model(tmp_path)
    assert not os.path.exists("/tmp/udd_evil_ran")
    assert "would run code" in str(err.value) and "weights_only" not in str(err.value)  # no unsafe advice


def test_bad_model_folders_name_the_file(tmp_path, tiny_config):
    with pytest.raises(ModelFileError, match="not a model folder"):
        load_model(tmp_path)
    m = build_model(tiny_config)
    save_model(m, tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ModelFileError, match="model.safetensors"):
        load_model(tmp_path / "m")
    save_model(m, tmp_path / "m2")
    other = dict(tiny_config, latent_size=5)
    (tmp_path / "m2" / "config.json").write_text(str(parse_config(other).to_json()))
    with pytest.raises(ModelFileError, match=r"do not fit the config \(shape in file vs config: encoder\.\d\.weight"):
        load_model(tmp_path / "m2")
    from safetensors.torch import save_file
    state = dict(m.state_dict())
    state["extra.bias"] = state.pop(next(iter(state)))
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "m3.safetensors"))
    save_model(m, tmp_path / "m3")
    (tmp_path / "m3.safetensors").replace(tmp_path / "m3" / "model.safetensors")
    with pytest.raises(ModelFileError, match=r"missing encoder\.0\.0\.weight; unexpected extra\.bias"):
        load_model(tmp_path / "m3")


def test_build_model_refuses_non_mirroring_shapes(tiny_config):
    tiny_config["out_pad"] = [0, 0]
    with pytest.raises(ValueError, match="out_pad"):
        build_model(tiny_config, (1, 32, 32))
