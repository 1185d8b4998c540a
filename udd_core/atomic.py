"""Atomic file writes: write a hidden temp file beside the target, then rename it over the target.

A rename within one folder is atomic on POSIX and Windows, so a reader (or a crash) sees either
the old file or the new one, never half a file. Every file udd writes for a user goes through here.
"""
from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import tempfile
import uuid
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence, Union

PathLike = Union[str, Path]
TEMP_NAME = re.compile(r"\..+\.tmp-(\d+)")  # `write_atomic`'s temp file: ".NAME.tmp-PID"
OLD_NAME = re.compile(r"\.(.+)\.(\d+)-[0-9a-f]{8}\.old")  # `write_files`' kept old content: ".NAME.PID-HEX.old"


def write_atomic(target: PathLike, write: Callable[[Path], None], durable: bool = False,
                 replace: bool = True) -> None:
    """Call ``write(tmp)`` to fill a temp file beside ``target``, then rename it to ``target``.

    ``durable`` fsyncs the temp file before the rename, so the new content survives a power cut
    (run status and settings: small files whose loss would orphan a run). ``replace`` False publishes the
    file only where no file of that name has appeared meanwhile (another writer of the same new output: QA
    sweep 21, both said "wrote"). On any error the temp file is removed and ``target`` is left as it was;
    the error propagates, an OSError naming ``target``.
    """
    target = Path(target)
    if target.is_symlink():  # written through, as the shell's `>` does (QA sweep 21: the link itself was replaced)
        target = Path(os.path.realpath(target))
    tmp = _temp_path(target)
    try:
        try:
            write(tmp)
        except Exception as e:  # noqa: BLE001 - what a full disk raises depends on the writer
            raise _named(e, tmp, target) from None
        # Some writers (safetensors) create their file 0600: a run's weights would be unreadable to a colleague
        # who can read its config. A replaced file keeps its mode; a new one gets what the umask gives any file.
        os.chmod(tmp, target.stat().st_mode & 0o777 if target.exists() else 0o666 & ~_umask())
        if durable:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        if replace:
            os.replace(tmp, target)
        else:
            _publish_new(tmp, target)
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass


def _named(e: Exception, tmp: Path, target: Path) -> Exception:
    """A writer's error as an OSError naming `target`, not the hidden temp file or no file at all (QA sweep 21: a
    full disk gave "[Errno 28] No space left on device", safetensors' "I/O error", or torch's "unexpected pos");
    any other error as it is."""
    if isinstance(e, OSError):
        return e if e.filename and Path(e.filename) != tmp else OSError(e.errno, e.strerror or str(e), str(target))
    try:
        full = "no space left" in str(e).lower() or shutil.disk_usage(target.parent).free < 64 * 2**20
    except OSError:
        full = False
    return OSError(errno.ENOSPC, "no space left on the disk to write it", str(target)) if full else e


def _temp_path(target: Path) -> Path:
    """The temp file beside `target`, per process (two writers never share it): ".NAME.tmp-PID", or, where that
    would pass the 255 bytes a file name may have, a digest of NAME in its place (QA sweep 21)."""
    suffix = f".tmp-{os.getpid()}"
    name = target.name if len(f".{target.name}{suffix}".encode()) <= 255 else \
        hashlib.sha256(target.name.encode()).hexdigest()[:32]
    return target.with_name(f".{name}{suffix}")


def _publish_new(tmp: Path, target: Path) -> None:
    """Give `tmp` the name `target` unless a file has it: a hard link fails on an existing name, atomically."""
    taken = FileExistsError(errno.EEXIST, "appeared while this command ran (another writer?); nothing written "
                            "there, pass --force to overwrite it", str(target))
    try:
        os.link(tmp, target)
    except FileExistsError:
        raise taken from None
    except OSError:  # no hard links here (some network and FAT file systems): the check just before is all
        if target.exists():
            raise taken from None
        os.replace(tmp, target)


def leftover_temps(folder: PathLike) -> list[Path]:
    """`write_atomic`'s temp files in `folder` whose writer is gone (killed mid-write: kill -9, a power cut): half
    written, never renamed over their target, and left by the only process that would remove them (QA sweep 21)."""
    found = []
    for path in Path(folder).iterdir():
        if (m := TEMP_NAME.fullmatch(path.name)) and path.is_file() and not pid_alive(int(m[1])):
            found.append(path)
    return found


def remove_leftover_temps(folder: PathLike) -> list[Path]:
    """Remove `leftover_temps(folder)`; the files removed."""
    found = leftover_temps(folder)
    _remove_quietly(found, [])
    return found


def pid_alive(pid: Any) -> bool:
    """Whether a process with this id may exist on this machine: it does, or it cannot be told (not POSIX:
    Windows' os.kill would end the process, not probe it). What a dead writer left is removed only when False."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    if os.name != "posix":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def _umask() -> int:
    """The process's umask, read without changing it (os.umask can only be read by setting it, which would
    race with other threads creating files); 0o022 where /proc does not say."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def can_write_into(folder: PathLike) -> bool:
    """Whether new files and folders can be made in ``folder``. os.access alone is not enough: root passes it
    for /proc and for other users' folders, so a throwaway folder is made there and removed again."""
    folder = Path(folder)
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        return False
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".udd-probe-", dir=folder))
    except OSError:
        return False
    return True


def _nearest_existing(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists (what a mkdir with parents would create in)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_new_file(target: PathLike, what: str, force: bool = False, new_folder: Optional[PathLike] = None) -> Path:
    """Refuse, before any work, a file that could not be written: a name ending in a slash (a folder's name,
    which Path would silently drop), an existing file (unless ``force``) or folder, a missing folder (a typo
    in it must not leave new folders behind) or one that cannot be written to. ``new_folder``: the output
    folder the caller creates before writing this file, which may be its missing folder. ``what`` names the
    file in the one-line ValueError ("--fix out.json")."""
    if str(target).endswith(("/", os.sep)):
        raise ValueError(f"{what}: names a folder (it ends in {str(target)[-1]}); give a file name")
    target = Path(target)
    if target.is_dir():
        raise ValueError(f"{what}: is a folder, not a file")
    if target.exists() and not force:
        raise ValueError(f"{what}: already exists (pass --force to overwrite)")
    parent = target.parent
    if not parent.exists():
        if new_folder is None or parent.resolve() != Path(new_folder).resolve():
            raise ValueError(f"{what}: {parent}: no such folder")
        parent = _nearest_existing(parent)  # the folder the output folder will be created in
    if not can_write_into(parent):
        raise ValueError(f"{what}: cannot write into {parent}")
    check_outside_runs(target.parent, what)
    return target


# The files that together mark a run (train.json, status.json), a model (config.json, model.safetensors) or a
# reference-package model folder: named here, as runs and model import this module. Pairs, so that a stray
# weights file or a project's own train.json in a parent folder marks nothing.
RUN_FOLDER_MARKS = (("train.json", "status.json"), ("config.json", "model.safetensors"),
                    ("AE_config.txt", "AE_state.save"))


def check_outside_runs(folder: PathLike, what: str) -> None:
    """Refuse an output in a run or model folder, or below one (QA sweep 15: `udd score r --heatmaps r` wrote
    PNGs among the run's files, `udd export r --onnx r/model.onnx` beside its weights, `udd generate` into
    another run): they would mix with what the run is made of, and a name could replace one of its files."""
    here = Path(folder).resolve()
    for place in (here, *here.parents):
        if any(all((place / name).is_file() for name in pair) for pair in RUN_FOLDER_MARKS):
            raise ValueError(f"{what}: lies in the run or model folder {place}; choose a place outside it")


def folder_to_make(path: PathLike) -> Path:
    """A folder path to create, as the shell would find it: "a/../b" is b (QA sweep 15b: made as written, with
    parents, it left an empty folder a beside b); a path without ".." as given."""
    return Path(os.path.realpath(path)) if ".." in Path(path).parts else Path(path)


def check_new_folder(target: PathLike, what: str) -> Path:
    """Refuse, before any work, an output folder that could not be made or written into: a file in its
    place, or a nearest existing folder (itself, or the one it would be created in) that cannot be written
    to. Nothing is created. ``what`` names the folder in the one-line ValueError ("--out runs/x")."""
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise ValueError(f"{what}: exists and is not a folder")
    where = _nearest_existing(target)
    if not can_write_into(where):
        raise ValueError(f"{what}: cannot write into {where}")
    check_outside_runs(target, what)
    return target


def write_bytes_atomic(target: PathLike, data: bytes, durable: bool = False, replace: bool = True) -> None:
    """Atomically replace ``target`` with ``data`` (``replace`` False: only where no file has that name)."""
    write_atomic(target, lambda tmp: tmp.write_bytes(data), durable, replace)


def write_text_atomic(target: PathLike, text: str, durable: bool = False, replace: bool = True) -> None:
    """Atomically replace ``target`` with UTF-8 ``text`` (``replace`` False: only where no file has that name)."""
    write_bytes_atomic(target, text.encode("utf-8"), durable, replace)


def check_names_free(out_dir: PathLike, names: Sequence[str], force: bool = False) -> list[Path]:
    """The paths ``out_dir/name``; a ValueError naming the first one that exists (unless ``force``), or a
    file in the folder's place. `write_files` checks this itself; a command calls it first too, so that a
    taken name is refused before its work (QA sweep 12: `udd generate` encoded the data first)."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: exists and is not a folder")
    targets = [out / name for name in names]
    if not force:
        taken = [t for t in targets if t.exists()]
        if taken:
            more = f", and so do {len(taken) - 1} more of the files to write" if len(taken) > 1 else ""
            raise ValueError(f"{taken[0]}: already exists{more} (pass --force to overwrite)")
    return targets


def write_files(out_dir: PathLike, names: Sequence[str], payloads: Iterable[bytes], force: bool = False) -> list[Path]:
    """Write each payload as ``out_dir/name`` (the folder is created), each atomically.

    Without ``force`` nothing is written when any of the names exists already: a user's earlier
    images are never overwritten by surprise. ``payloads`` may be a generator (made one at a time).
    All or nothing: when the writing stops part way (Ctrl-C, an error in a payload, a page rerun), the
    files this call created are removed again, and the folder if this call made it (QA sweep 15b: an
    interrupted `udd generate -n 3000` left 56 PNGs, and its rerun was refused until --force), and the files
    it replaced under ``force`` get their old content back, kept meanwhile as a hard link (or a copy) beside
    them: an export cut short is the old one, not half of each.
    """
    out = folder_to_make(out_dir)
    if out.is_dir() and (restored := restore_killed_writes(out)):
        warnings.warn(f"{out}: an earlier write here was killed part way (kill -9, a power cut); the {restored} "
                      "files it had replaced got their old content back")
    targets = check_names_free(out, names, force)
    made_folders = [p for p in (out, *out.parents) if not p.exists()]  # deepest first: removed in this order
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OSError(f"{out}: cannot create the folder ({e.strerror or e})") from None
    created: list[Path] = []
    kept: list[tuple[Path, Path]] = []  # (replaced file, its old content)
    try:
        for target, data in zip(targets, payloads):
            if target.exists():
                old = target.with_name(f".{target.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.old")
                kept.append((target, old))  # before the link: a Ctrl-C just after it must not leave it (QA 21)
                _keep_old(target, old)
            else:
                created.append(target)  # before the write: a Ctrl-C just after its rename must not miss it
            write_bytes_atomic(target, data, replace=force)
    except BaseException:
        _remove_quietly(created, made_folders)
        for target, old in kept:
            if old.exists():
                _put_back(old, target)
        raise
    _remove_quietly([old for _, old in kept], [])
    return targets


def _keep_old(target: Path, old: Path) -> None:
    """Keep ``target``'s content as ``old``, a hidden name beside it, until a replacement of it has landed."""
    try:
        os.link(target, old)  # no copy: the atomic write replaces the name, and this link keeps the old file
    except OSError:
        shutil.copy2(target, old)


def _put_back(old: Path, target: Path) -> bool:
    """Give `target` the content kept as `old` (`_keep_old`), and remove `old`; whether `target` changed. Where
    `target` was not replaced yet both names are links to one file, and a rename of one onto the other does
    nothing: `old` goes alone."""
    if target.exists() and os.path.samefile(old, target):
        old.unlink()
        return False
    os.replace(old, target)
    return True


def restore_killed_writes(folder: PathLike) -> int:
    """Undo what a `write_files` killed part way (kill -9, a power cut: no handler ran) left in `folder`: the
    files it had replaced get their kept old content back, and its temp files go; how many were restored.
    QA sweep 21: such a folder looked complete, its README.txt from the new export over PNGs of both."""
    restored = 0
    for path in Path(folder).iterdir():
        if (m := OLD_NAME.fullmatch(path.name)) and path.is_file() and not pid_alive(int(m[2])):
            restored += _put_back(path, path.with_name(m[1]))
    remove_leftover_temps(folder)
    return restored


def _remove_quietly(files: Sequence[Path], folders: Sequence[Path]) -> None:
    """Remove ``files``, then each of ``folders`` that is empty, ignoring what cannot be removed."""
    for path in files:
        try:
            path.unlink(missing_ok=True)
        except OSError:
            pass
    for folder in folders:
        try:
            folder.rmdir()  # only when empty: a file someone else put there keeps its folder
        except OSError:
            pass
