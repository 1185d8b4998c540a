"""Tensor files: the round trip, atomic writes, and the one-line error for a damaged or foreign file."""
import pytest
import torch

from udd_core.model import ModelFileError as ReExported
from udd_core.tensor_files import ModelFileError, read_tensors, write_tensors


def test_round_trip_keeps_tensors_and_metadata(tmp_path):
    bank = torch.randn(5, 3).t()  # not contiguous: written anyway
    write_tensors(tmp_path / "b.safetensors", {"bank": bank, "c": torch.arange(4)}, {"format": "x-1"})
    state, meta = read_tensors(tmp_path / "b.safetensors")
    assert torch.equal(state["bank"], bank) and torch.equal(state["c"], torch.arange(4))
    assert meta == {"format": "x-1"} and [p.name for p in tmp_path.iterdir()] == ["b.safetensors"]  # no temp left


@pytest.mark.parametrize("content", [b"", b"not a tensor file", b"\xff" * 64])
def test_a_damaged_file_is_one_line_naming_it(tmp_path, content):
    path = tmp_path / "weights.safetensors"
    path.write_bytes(content)
    with pytest.raises(ModelFileError) as e:
        read_tensors(path)
    assert str(e.value).startswith(f"{path}: not a readable safetensors file") and "\n" not in str(e.value)
    assert isinstance(e.value, ValueError) and ReExported is ModelFileError  # callers catch ValueError


def test_a_failed_write_leaves_the_old_file(tmp_path):
    path = tmp_path / "b.safetensors"
    write_tensors(path, {"a": torch.ones(2)})
    with pytest.raises(Exception):
        write_tensors(path, {"a": "not a tensor"})  # type: ignore[dict-item]
    assert torch.equal(read_tensors(path)[0]["a"], torch.ones(2)) and len(list(tmp_path.iterdir())) == 1
    with pytest.raises(ModelFileError, match="missing.safetensors"):
        read_tensors(tmp_path / "missing.safetensors")


def test_a_file_holding_nan_or_infinite_values_is_damaged_and_named(tmp_path):
    """QA sweep 21: NaN weights scored as "scores contains NaN or inf values" and generated black images, the
    file unnamed. Training never saves them, so such a file was damaged after it was written."""
    path = tmp_path / "model.safetensors"
    good = {"a.weight": torch.ones(3), "b.weight": torch.zeros(2), "steps": torch.tensor([3])}
    write_tensors(path, good)
    assert read_tensors(path)[0].keys() == good.keys()
    write_tensors(path, {**good, "a.weight": torch.tensor([1.0, float("nan"), 2.0]),
                         "b.weight": torch.tensor([float("inf"), 0.0])})
    with pytest.raises(ModelFileError, match=r"model\.safetensors: holds NaN or infinite values \(in a\.weight and "
                                             r"1 more\): the file is damaged$"):
        read_tensors(path)
