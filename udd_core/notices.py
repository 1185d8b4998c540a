"""Notices: what the engine says beside its results, routine ("12 images resized") or a caution that changes
how the numbers read ("the threshold rests on 4 images"). Both are plain strings, so every consumer joins,
prints and stores them alike; a caution is a `Caution`, which the pages show as a warning and the command
line prints as `warning:` (QA sweep 11: seven identical blue boxes hid the three that mattered)."""
from __future__ import annotations


class Caution(str):
    """A notice that changes how a result reads (a mixed bit depth, too few normal images, an inverted
    AUROC), shown apart from the routine ones."""

    __slots__ = ()


def is_caution(note: str) -> bool:
    """Whether `note` is a `Caution`."""
    return isinstance(note, Caution)


def notice_line(note: str) -> str:
    """`note` as the command line prints it: "warning: ..." for a caution, "note: ..." otherwise."""
    return f"{'warning' if is_caution(note) else 'note'}: {note}"


def as_sentence(note: str) -> str:
    """`note` as a page shows it: a capital first letter and a closing full stop, so that a page's notices
    read alike whoever wrote them (QA sweep 12: "ℹ️ these are ..." beside "ℹ️ Called defective ...")."""
    text = note.strip()
    if not text:
        return text
    first = text.split(maxsplit=1)[0]
    if not any(c in first for c in "./\\_"):  # a file name or path keeps its case ("labelled_first100.npz holds")
        text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def error_line(e: BaseException | str) -> str:
    """An error (or an error's message) as one line: a system error as "PATH: what happened" (QA sweep 15b:
    "[Errno 13] Permission denied: '…/method.json'"), any other as the first line it says, or its type's name
    when it says nothing."""
    if isinstance(e, OSError) and e.strerror and e.filename:
        return f"{e.filename}: {e.strerror[:1].lower()}{e.strerror[1:]}"
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
