"""Atomic file writes: write a hidden temp file beside the target, then rename it over the target.

A rename within one folder is atomic on POSIX and Windows, so a reader (or a crash) sees either
the old file or the new one, never half a file. Every file udd writes for a user goes through here.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Union

PathLike = Union[str, Path]


def write_atomic(target: PathLike, write: Callable[[Path], None], durable: bool = False) -> None:
    """Call ``write(tmp)`` to fill a temp file beside ``target``, then rename it to ``target``.

    ``durable`` fsyncs the temp file before the rename, so the new content survives a power cut
    (run status and settings: small files whose loss would orphan a run). On any error the temp
    file is removed and ``target`` is left as it was; the error propagates.
    """
    target = Path(target)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")  # per process: two writers never share it
    try:
        write(tmp)
        if durable:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, target)
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass


def write_bytes_atomic(target: PathLike, data: bytes, durable: bool = False) -> None:
    """Atomically replace ``target`` with ``data``."""
    write_atomic(target, lambda tmp: tmp.write_bytes(data), durable)


def write_text_atomic(target: PathLike, text: str, durable: bool = False) -> None:
    """Atomically replace ``target`` with UTF-8 ``text``."""
    write_bytes_atomic(target, text.encode("utf-8"), durable)
