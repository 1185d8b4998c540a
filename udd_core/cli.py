"""The `udd` command line: a thin layer over udd_core.

Exit codes: 0 success (for `shapes`: the decoder mirrors), 1 the shapes do not mirror (`shapes`) or
the exported model failed its parity check (`export`), 2 bad input (one line on stderr, never a traceback), 130 interrupted.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import re
import signal
import sys
import threading
import warnings
from pathlib import Path
from typing import Callable, Optional, Sequence

from .cli_numbers import check_numbers
from .cli_parser import build_parser
from .config import AEConfig, ConfigError, load_config
from .image_shapes import MAX_SIDE
from .notices import error_line
from .runs import runs_root
from .shapes import ShapeError


class UsageError(ValueError):
    """Bad command-line input; reported as one line with exit code 2."""


class ParityFailed(Exception):
    """The exported graph did not give udd's scores: one line, exit 1 (the input itself was fine)."""


def parse_ints(text: str, n: int, what: str, hi: int = MAX_SIDE) -> tuple[int, ...]:
    """'3,256,256' -> (3, 256, 256), each in [1, hi], with an error that names the option."""
    parts = [p.strip() for p in text.replace("x", ",").split(",") if p.strip()]
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        raise UsageError(f"{what}: expected {n} integers separated by commas, got {text!r}") from None
    if len(values) != n or any(not 1 <= v <= hi for v in values):
        raise UsageError(f"{what}: expected {n} integers in [1, {hi}] separated by commas, got {text!r}")
    return values


# --- arguments: CONFIG (a file or a model preset), RUN (a folder or a run's name) -----------------

def read_config(path) -> AEConfig:
    """A config file; its warnings (unknown keys kept) become `warning:` lines on stderr (`main`)."""
    return load_config(path)


def _one_line_warnings(shown: set) -> Callable:
    """A `warnings.showwarning` that prints each message once, as "warning: ..." on stderr: a config's unknown keys
    were printed raw, with udd's source line, at every later read of the run's config (QA sweep 19a)."""
    def show(message, category, filename, lineno, file=None, line=None) -> None:
        if (text := str(message)) not in shown:
            shown.add(text)
            print(f"warning: {text}", file=sys.stderr)
    return show


def config_or_preset(spec: str) -> tuple[AEConfig, Optional[tuple[int, int, int]]]:
    """CONFIG of `udd shapes` and `udd train`: a config file, or a model preset name.

    Returns the config and the preset's input (C, H, W), or None for a file.
    """
    if Path(spec).is_file():
        return read_config(spec), None
    from .presets import model_presets

    presets = model_presets()
    if spec in presets:
        return presets[spec].config, presets[spec].input_shape
    raise UsageError(f"{spec}: neither a config file nor a model preset ({', '.join(presets)})")


def run_dir_arg(spec: str) -> Path:
    """RUN of `udd score`, `generate` and `export`: a run or model folder, or the name of a run under
    $UDD_RUNS_DIR (default runs/)."""
    p = Path(spec)
    if p.is_dir():
        return p
    named = runs_root() / spec
    if named.is_dir():
        return named
    if p.is_file():  # QA sweep 11: a config file given as RUN was said not to exist
        raise UsageError(f"{spec}: a file, not a run or model folder (a run is the folder `udd train --out` made)")
    raise UsageError(f"{spec}: no such run or model folder")


# --- subcommands: each in its own module, imported when it runs ---------------------------------

@contextlib.contextmanager
def interrupts_held():
    """Hold Ctrl-C while a command's modules import, torch among them, and raise it once they have: a
    KeyboardInterrupt raised inside torch's import unwinds through its C++ and aborts the process (SIGABRT,
    exit 134, QA sweep 12) instead of exiting 130 with one line."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):  # ignored, or a caller's own
        yield
        return
    held: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, frame: held.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if held:
        raise KeyboardInterrupt


def _command(module: str, name: str) -> Callable[[argparse.Namespace], int]:
    """A subcommand's function from its own module, imported when the command runs (torch loads only then)."""
    with interrupts_held():
        return getattr(importlib.import_module(f"{__package__}.{module}"), name)


# --- entry point -----------------------------------------------------------------------------



PIPE_CLOSED = 141  # the exit code of a process ended by SIGPIPE (128 + 13), as shells report it


def silence_output() -> None:
    """Point stdout and stderr at /dev/null once their reader has gone (`udd ... | head`): every later
    write, and Python's own flush at exit, would fail with BrokenPipeError again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        try:
            os.dup2(devnull, stream.fileno())
        except (OSError, ValueError):  # not a file descriptor (a test's captured stream): nothing to point
            pass


POSITIONALS = ("command", "handler", "config", "run")  # argparse names that are no --option
SHORT_FLAGS = {"n": "-n", "cls": "--class"}  # argparse names whose option is not "--" + the name


def as_option_error(message: str, args: argparse.Namespace) -> str:
    """An engine error in the command line's words: a leading field name that is one of this command's
    options ("border: must be ...", "size 4x4: ...") becomes that option ("--border: ...")."""
    m = re.match(r"([a-z][a-z_]*)([ :])", message)
    if m and m.group(1) not in POSITIONALS and hasattr(args, m.group(1)):
        flag = SHORT_FLAGS.get(m.group(1), "--" + m.group(1).replace("_", "-"))
        return flag + message[len(m.group(1)):]
    return message


# Options that name a file or folder: a leading "~" is the home folder there too (QA sweep 15: only --data
# expanded it, and `--out "~/x"` made a folder named "~" in the working folder).
PATH_OPTIONS = ("run", "out", "data", "csv", "heatmaps", "report", "npz", "latent_map", "onnx", "fix", "patch_dir")


def expand_home(args: argparse.Namespace) -> argparse.Namespace:
    """`args` with "~" expanded at the start of every `PATH_OPTIONS` value (the shell leaves a quoted one)."""
    for name in PATH_OPTIONS:
        value = getattr(args, name, None)
        if isinstance(value, str) and value.startswith("~"):
            setattr(args, name, os.path.expanduser(value))
    return args


def joined_negative_numbers(argv: Sequence[str]) -> list[str]:
    """`--threshold -1e9` as `--threshold=-1e9`: argparse reads a word that starts with '-' as an option unless
    it is a plain negative decimal ('-0.5'), so '-1e9' (the README's own bound), '-inf' or '-nan' was refused as
    "expected one argument" instead of being range-checked like any other value (QA sweep 12)."""
    out: list[str] = []
    for word in argv:
        if out and out[-1].startswith("--") and "=" not in out[-1] and word.startswith("-") and _is_number(word):
            out[-1] = f"{out[-1]}={word}"
        else:
            out.append(word)
    return out


def _is_number(word: str) -> bool:
    try:
        float(word)
    except ValueError:
        return False
    return True


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit code."""
    args = expand_home(build_parser().parse_args(joined_negative_numbers(sys.argv[1:] if argv is None else argv)))
    try:
        if refusal := check_numbers(args):  # NaN, infinities, huge numbers: before any work starts
            raise UsageError(refusal)
        with warnings.catch_warnings():  # restored on return: main is called again in tests and scripts
            warnings.showwarning = _one_line_warnings(set())
            return _command(*args.handler)(args)
    except BrokenPipeError:  # before OSError: there is nobody left to read an error message
        silence_output()
        return PIPE_CLOSED
    except UsageError as e:
        print(f"udd {args.command}: error: {e}", file=sys.stderr)
        return 2
    except (ConfigError, ShapeError, ValueError, OSError) as e:
        print(f"udd {args.command}: error: {as_option_error(error_line(e), args)}", file=sys.stderr)
        return 2
    except ParityFailed as e:
        print(f"udd {args.command}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"udd {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    # `python -m udd_core.cli`: the package's own module, whose error classes the subcommands raise (this
    # file run as __main__ has copies of them that nothing raises)
    from udd_core.cli import main as package_main

    sys.exit(package_main())
