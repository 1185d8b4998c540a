"""The `udd` command line: a thin layer over udd_core.

Exit codes: 0 success (for `shapes`: the decoder mirrors), 1 the shapes do not mirror,
2 bad input (one line on stderr, never a traceback), 130 interrupted.
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Callable, Optional, Sequence

from .config import ConfigError, load_config
from .shapes import ShapeError, ShapeReport, propagate


class UsageError(ValueError):
    """Bad command-line input; reported as one line with exit code 2."""


def parse_ints(text: str, n: int, what: str) -> tuple[int, ...]:
    """'3,256,256' -> (3, 256, 256), with an error that names the option."""
    parts = [p.strip() for p in text.replace("x", ",").split(",") if p.strip()]
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        raise UsageError(f"{what}: expected {n} integers separated by commas, got {text!r}") from None
    if len(values) != n or any(v < 1 for v in values):
        raise UsageError(f"{what}: expected {n} positive integers separated by commas, got {text!r}")
    return values


def write_text_atomic(path: Path, text: str, overwrite: bool = False) -> None:
    """Write a text file via a temp file and a rename, refusing to clobber unless asked."""
    if path.exists() and not overwrite:
        raise UsageError(f"{path}: already exists (pass --force to overwrite)")
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text)
        tmp.replace(path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise UsageError(f"{path}: cannot write ({e.strerror or e})") from None


# --- udd shapes ------------------------------------------------------------------------------

def format_report(r: ShapeReport) -> str:
    """The human-readable layer table, stage check and totals."""
    def shp(s: Sequence[int]) -> str:
        return "x".join(map(str, s))

    rows = [("layer", "stage", "kind", "in", "out", "k/s/p/op", "params")]
    for l in r.layers:
        ksp = "" if l.kernel is None else f"{l.kernel}/{l.stride}/{l.padding}" + (
            f"/{l.output_padding[0]},{l.output_padding[1]}" if l.output_padding else "")
        rows.append((l.name, l.stage, l.kind, shp(l.in_shape), shp(l.out_shape), ksp, f"{l.params:,}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in rows]
    lines.append("")
    for s in r.stages:
        mark = "" if s.target is None else ("  ok" if s.ok else f"  MISMATCH (must be {shp(s.target)})")
        lines.append(f"{s.name:<10} {shp(s.out)}{mark}")
    lines.append("")
    lines.append(f"params {r.params:,}   MACs {r.macs:,}   latent {shp(r.latent)}   "
                 f"compression {r.compression:.4f}   receptive field {r.receptive_field} px")
    for p in r.problems:
        lines.append(f"problem: {p.message}")
    if r.suggested is not None:
        lines.append("suggested config (apply with --fix OUT):")
        lines.append(r.suggested.to_json())
    return "\n".join(lines)


def cmd_shapes(args: argparse.Namespace) -> int:
    """Propagate shapes; exit 0 if the decoder mirrors, 1 if not."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        config = load_config(args.config)
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    report = propagate(config, parse_ints(args.input, 3, "--input"))
    print(json.dumps(report.to_dict(), indent=2) if args.json else format_report(report))
    if args.fix:
        if report.suggested is None:
            raise UsageError("--fix: nothing to write: " + (
                "the shapes already mirror" if report.ok else "output padding cannot fix this input size"))
        write_text_atomic(Path(args.fix), report.suggested.to_json() + "\n", overwrite=args.force)
        print(f"wrote {args.fix}", file=sys.stderr)
    return 0 if report.ok else 1


# --- entry point -----------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    """The argparse tree of every subcommand."""
    parser = argparse.ArgumentParser(prog="udd", description="Unsupervised defect detection with convolutional autoencoders.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("shapes", help="propagate shapes through a config and check the decoder mirrors the encoder")
    p.add_argument("config", help="config file: JSON or the reference package's AE_config.txt")
    p.add_argument("--input", required=True, metavar="C,H,W", help="input shape, e.g. 3,256,256")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("--fix", metavar="OUT", help="write the config with the suggested output paddings to OUT")
    p.add_argument("--force", action="store_true", help="let --fix overwrite an existing file")
    p.set_defaults(func=cmd_shapes)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except (UsageError, ConfigError, ShapeError, ValueError, OSError) as e:
        print(f"udd {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"udd {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
