"""`udd shapes CONFIG --input C,H,W [--method M] [--json] [--fix OUT]`: the shape table of a design.

No torch unless --method names a method (its registry loads the methods): a design is checked in a
fraction of a second.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional, Sequence

from .atomic import check_new_file, write_text_atomic
from .cli import UsageError, config_or_preset, parse_ints
from .image_shapes import input_spec, propagate_image
from .shapes import ShapeReport, receptive_field_text


def format_report(r: ShapeReport, image_hw: Optional[tuple[int, int]] = None) -> str:
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
    from .architecture import design_warnings, summary_metrics  # plotly comes along: only for the text table

    compression = next(v for label, v, _ in summary_metrics(r, image_hw) if label == "Compression")  # as Design
    lines.append(f"params {r.params:,}   MACs {r.macs:,}   latent {shp(r.latent)}   "
                 f"compression {compression}   receptive field {receptive_field_text(r, image_hw)}")
    for p in r.problems:
        lines.append(f"problem: {p.message}")
    lines += [f"warning: {w}" for w in design_warnings(r)]  # the Design page's, word for word (QA sweep 8)
    if r.suggested is not None:
        lines.append("suggested config (apply with --fix OUT):")
        lines.append(r.suggested.to_json())
    return "\n".join(lines)


def write_new_text(path: Path, text: str, overwrite: bool = False) -> None:
    """Write a text file atomically, refusing to clobber an existing one unless asked."""
    if path.exists() and not overwrite:
        raise UsageError(f"{path}: already exists (pass --force to overwrite)")
    try:
        write_text_atomic(path, text, replace=overwrite)
    except OSError as e:
        raise UsageError(f"{path}: cannot write ({e.strerror or e})") from None


def check_fix_target(target: str) -> None:
    """A config to write must be a .json or .txt file (QA sweep 15: --fix ... --force wrote JSON over a run's
    model.safetensors; `atomic.check_new_file` refuses any output inside a run folder)."""
    if Path(target).suffix.lower() not in (".json", ".txt"):
        raise UsageError(f"--fix {target}: the file name must end in .json (or .txt, as AE_config.txt)")


def run_shapes(args: argparse.Namespace) -> int:
    """`udd shapes`: propagate shapes; exit 0 if the decoder mirrors, 1 if not."""
    if args.fix:  # refused before the report is printed: one line, not a table and then an error
        check_new_file(args.fix, f"--fix {args.fix}", args.force)
        check_fix_target(args.fix)
    config, preset_shape = config_or_preset(args.config)
    if args.input is None and preset_shape is None:
        raise UsageError(f"--input: required for a config file ({args.config}); e.g. --input 3,256,256")
    image = parse_ints(args.input, 3, "--input") if args.input is not None else preset_shape
    if args.method is not None:
        from .methods import METHODS  # only now: the registry pulls in torch

        if args.method not in METHODS:
            raise UsageError(f"--method: must be one of {', '.join(METHODS)}, got {args.method!r}")
        from .methods import detector_class

        if not detector_class(args.method).uses_config:  # the memory bank: no autoencoder to propagate
            raise UsageError(f"--method {args.method}: takes no autoencoder config, so it has no shapes to "
                             "propagate; use an autoencoder method (autoencoder, feature-ae, dsvdd, latent-knn)")
    report = propagate_image(config, image, args.method)  # from the feature tensor for feature inputs
    if args.json:
        out = report.to_dict()  # "input" is what the AE takes: the feature tensor for a feature AE
        spec = input_spec(config, args.method)
        out["image_input"] = list(image)
        out["input_kind"] = "pixels" if spec is None else spec.to_dict()
        from .architecture import design_warnings

        out["warnings"] = design_warnings(report)
        print(json.dumps(out, indent=2))
    else:
        from .feature_input import describe_input

        print(f"input: {describe_input(input_spec(config, args.method), image)}")
        print(format_report(report, tuple(image[1:])))
    if args.fix:
        # A config that already fits is written as it is: OUT always holds a config for this input.
        fixed = config if report.ok else report.suggested
        if fixed is None:
            raise UsageError("--fix: nothing to write: output padding cannot fix this input size")
        write_new_text(Path(args.fix), fixed.to_json() + "\n", overwrite=args.force)
        print(f"wrote {args.fix}" + (" (unchanged: the shapes already mirror)" if report.ok else ""), file=sys.stderr)
    return 0 if report.ok else 1
