"""Tensor files of a run (safetensors): written atomically, read back with one line naming the file.

Every tensor file udd writes (weights, memory banks, Deep SVDD's centre, feature statistics, latent
codes) goes through here, so a reader never sees half a file, and a damaged or foreign one is reported
the same way everywhere: `ModelFileError` (a ValueError), never a traceback. safetensors stores plain
tensors and a str -> str metadata table; nothing is unpickled.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Union

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .atomic import write_atomic


class ModelFileError(ValueError):
    """A model or run file that cannot be loaded; the message names the file."""


def write_tensors(path: Union[str, Path], tensors: Mapping[str, torch.Tensor],
                  metadata: Optional[Mapping[str, str]] = None) -> None:
    """Write `tensors` (moved to the CPU, contiguous) and `metadata` to `path` atomically."""
    state = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    meta = dict(metadata) if metadata else None
    write_atomic(path, lambda tmp: save_file(state, str(tmp), metadata=meta))


def read_tensors(path: Union[str, Path]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors (on the CPU) and the metadata of the safetensors file `path`; `ModelFileError`
    naming the file when it is missing, truncated or not safetensors, or holds NaN or infinite values."""
    state, meta = _opened(path, lambda f: ({k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})))
    # QA sweep 21: NaN weights scored as "scores contains NaN or inf values" and generated black images, unnamed.
    # Training never saves them (a non-finite loss stops it first): such a file was damaged after it was written.
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
        raise ModelFileError(f"{path}: holds NaN or infinite values (in {bad[0]}{more}): the file is damaged")
    return state, meta


def read_metadata(path: Union[str, Path]) -> dict[str, str]:
    """The metadata of the safetensors file `path`, from its header alone (no tensor is read); `ModelFileError`
    as `read_tensors` gives it."""
    return _opened(path, lambda f: dict(f.metadata() or {}))


def check_tensor_file(path: Union[str, Path]) -> None:
    """`ModelFileError` naming the file when it is not a whole safetensors file (truncated, foreign); reads its
    header only, so a page can check a run's files on every rerun."""
    read_metadata(path)


def _opened(path: Union[str, Path], use: Callable[[Any], Any]) -> Any:
    """`use(f)` on the safetensors file `path` opened on the CPU; any failure a `ModelFileError` naming it."""
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return use(f)
    except Exception as e:  # noqa: BLE001 - safetensors raises several types (SafetensorError, OSError, ...)
        why = (str(e).splitlines() or [type(e).__name__])[0][:200]
        raise ModelFileError(f"{path}: not a readable safetensors file ({why})") from None
