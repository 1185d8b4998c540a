"""Zip archives built in memory for the upload tests (data, sources and the Train page).

Imported as a plain module (pytest puts tests/ on sys.path): `from archives import zip_bytes`.
"""
from __future__ import annotations

import io
import zipfile


def zip_bytes(members: dict[str, bytes], symlinks: tuple[str, ...] = ()) -> bytes:
    """A deflated zip of `members` (name -> payload); the names in `symlinks` are stored as symbolic links."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            info = zipfile.ZipInfo(name)
            if name in symlinks:
                info.external_attr = 0o120777 << 16  # S_IFLNK in the Unix mode bits
            zf.writestr(info, data)
    return buf.getvalue()
