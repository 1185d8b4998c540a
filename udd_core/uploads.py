"""Uploads: write user-supplied files to disk, unpacking zip archives defensively.

A zip from a browser upload is hostile until proven otherwise: member names may escape the
destination (``../``, absolute paths, drive letters, symlinks) and declared sizes may lie (zip
bombs). Everything is checked before a byte is written, sizes are counted again while
extracting, and a failed call leaves the destination exactly as it found it.
"""
from __future__ import annotations

import io
import os
import re
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from .atomic import write_bytes_atomic

_CHUNK = 1 << 20  # bytes read per step while extracting, so a bomb is caught early
_DRIVE = re.compile(r"^[A-Za-z]:")


class DataError(ValueError):
    """Bad input data; the one-line message names the file, member or field at fault.

    Defined here, the lowest data module, so ``udd_core.data`` re-exports it without an import cycle.
    """


def _member_path(info: zipfile.ZipInfo) -> PurePosixPath | None:
    """The safe relative path of one zip member, None to skip it, DataError if it is hostile."""
    name = info.filename.replace("\\", "/")  # zips written on Windows may use backslashes
    if not name or "\x00" in name:
        raise DataError(f"zip member {info.filename!r}: empty or invalid name")
    if name.startswith("/") or _DRIVE.match(name):
        raise DataError(f"zip member {info.filename!r}: absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise DataError(f"zip member {info.filename!r}: '..' path component")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise DataError(f"zip member {info.filename!r}: symbolic link")
    if info.is_dir() or not parts or parts[0] == "__MACOSX":
        return None
    return PurePosixPath(*parts)


def extract_zip(src, dest, max_files: int = 10_000, max_total_bytes: int = 500 * 2**20) -> list[Path]:
    """Safely unpack the zip `src` (path, bytes or binary file) into folder `dest`.

    Returns the extracted file paths in archive order. Raises DataError naming the member (or the
    archive) for hostile names, too many files or too many bytes; on any error nothing this call
    wrote remains and `dest` is as it was.
    """
    if isinstance(src, (bytes, bytearray, memoryview)):
        src = io.BytesIO(bytes(src))
    label = str(getattr(src, "name", None) or (src if isinstance(src, (str, os.PathLike)) else "zip"))
    try:
        zf = zipfile.ZipFile(src)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise DataError(f"{label}: not a readable zip archive ({exc})") from None
    dest = Path(dest)
    with zf:
        # Check every member before writing anything: a bad one fails the whole archive.
        # A name listed twice keeps its last copy, as unzip tools do.
        try:
            members = list({rel: (info, rel) for info in zf.infolist()
                            if (rel := _member_path(info)) is not None}.values())
        except DataError as e:  # a hostile member name: say which archive holds it
            raise DataError(f"{label}: {e}") from None
        if len(members) > max_files:
            raise DataError(f"{label}: {len(members)} files exceed the limit of {max_files}")
        declared = sum(info.file_size for info, _ in members)
        if declared > max_total_bytes:
            raise DataError(f"{label}: {declared} bytes uncompressed exceed the limit of {max_total_bytes}")

        created_dest = not dest.exists()
        dest.mkdir(parents=True, exist_ok=True)
        # Extract into a private folder next to the final place, then move files in: a failure
        # halfway only ever has to delete that folder.
        staging = Path(tempfile.mkdtemp(prefix=".udd-unzip-", dir=dest))
        try:
            total = 0
            for info, rel in members:
                target = staging.joinpath(*rel.parts)
                try:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(info) as fin, open(target, "wb") as fout:
                        while chunk := fin.read(_CHUNK):
                            total += len(chunk)
                            if total > max_total_bytes:  # declared sizes can lie
                                raise DataError(f"{label}: zip member {info.filename!r}: archive inflates past "
                                                f"{max_total_bytes} bytes")
                            fout.write(chunk)
                except (zipfile.BadZipFile, RuntimeError, OSError, EOFError, NotImplementedError) as exc:
                    raise DataError(f"{label}: zip member {info.filename!r}: cannot extract ({exc})") from None
            _move_in(staging, dest, [rel for _, rel in members])
            return [dest.joinpath(*rel.parts) for _, rel in members]
        except BaseException:
            if created_dest:
                shutil.rmtree(dest, ignore_errors=True)
            raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def _move_in(staging: Path, dest: Path, rels: list[PurePosixPath]) -> None:
    """Move extracted files from staging into dest; on failure put dest back as it was.

    Files that already exist are replaced, but kept aside in staging until every move succeeded.
    """
    moved: list[Path] = []
    kept: list[tuple[Path, Path]] = []  # (original place, backup in staging)
    new_dirs: list[Path] = []  # folders this call creates in dest, deepest last
    root = dest.resolve()
    try:
        for i, rel in enumerate(rels):
            final = dest.joinpath(*rel.parts)
            new_dirs += reversed([d for d in final.parents if not d.exists()])
            final.parent.mkdir(parents=True, exist_ok=True)
            if not final.parent.resolve().is_relative_to(root):  # a symlinked folder already in dest
                raise DataError(f"zip member {str(rel)!r}: would land outside {dest}")
            if final.is_dir() and not final.is_symlink():
                raise DataError(f"zip member {str(rel)!r}: a folder of that name exists in {dest}")
            if final.exists() or final.is_symlink():
                backup = staging / f".kept-{i}"
                os.replace(final, backup)
                kept.append((final, backup))
            os.replace(staging.joinpath(*rel.parts), final)
            moved.append(final)
    except BaseException as exc:
        for p in moved:
            p.unlink(missing_ok=True)
        for final, backup in kept:
            os.replace(backup, final)
        for d in reversed(new_dirs):
            shutil.rmtree(d, ignore_errors=True)
        if isinstance(exc, OSError):
            raise DataError(f"zip member {str(rels[len(moved)])!r}: cannot place it in {dest} ({exc})") from None
        raise


def _upload_name(name: str) -> str:
    """Reduce a client-supplied file name to a bare, harmless base name."""
    base = str(name).replace("\\", "/").rsplit("/", 1)[-1].strip()
    if base in ("", ".", "..") or "\x00" in base or _DRIVE.match(base):
        raise DataError(f"upload name {name!r}: not a usable file name")
    return base


def save_uploads(
    files: Iterable[tuple[str, bytes]],
    dest,
    max_files: int = 10_000,
    max_total_bytes: int = 500 * 2**20,
) -> list[Path]:
    """Write uploaded `(name, bytes)` pairs into `dest`, unpacking `.zip` files with extract_zip.

    Names are reduced to their base name (a browser may send a client path). Limits apply to each
    zip and to the plain files together. On error, files this call wrote are removed again.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    origin: dict[Path, str] = {}  # each file written: the upload it came from
    plain_bytes = 0

    def claim(path: Path, source: str) -> None:
        # Two uploads of one name (two zips of good/000.png, a.png twice) would keep only the last, silently.
        if path in origin and origin[path] == source:  # QA sweep 12: "empty.npz comes twice (empty.npz and empty.npz)"
            raise DataError(f"upload: {source} was added twice (two files of that name); remove or rename one")
        if path in origin:
            raise DataError(f"upload: {path.relative_to(dest).as_posix()} comes twice ({origin[path]} and "
                            f"{source}); rename one, or every file of that name but the last would be lost")
        origin[path] = source

    try:
        for name, data in files:
            base = _upload_name(name)
            if base.lower().endswith(".zip"):
                buf = io.BytesIO(data)
                buf.name = base  # so errors about the archive name the upload
                unpacked = extract_zip(buf, dest, max_files, max_total_bytes)
                written += unpacked
                for p in unpacked:
                    claim(p, base)
                continue
            plain_bytes += len(data)
            if plain_bytes > max_total_bytes:
                raise DataError(f"upload {base!r}: uploads exceed {max_total_bytes} bytes")
            target = dest / base
            if target.is_dir():
                raise DataError(f"upload {base!r}: a folder of that name exists in {dest}")
            claim(target, base)
            write_bytes_atomic(target, data)  # a reader never sees half a file
            written.append(target)
        if len(written) > max_files:
            raise DataError(f"uploads: {len(written)} files exceed the limit of {max_files}")
        return written
    except BaseException:
        for p in written:
            p.unlink(missing_ok=True)
        raise
