"""`udd export`: a run as one ONNX graph (anomaly map and image score), checked in onnxruntime first."""
from __future__ import annotations

import argparse
import sys

from .cli import ParityFailed, run_dir_arg
from .export import ParityError, check_target, export_run, write_export
from .run_notes import ending_note, unfinished_note


def run_export(args: argparse.Namespace) -> int:
    """Export a run to ONNX (maps and scores in one graph) after a parity check in onnxruntime."""
    run_dir = run_dir_arg(args.run)
    check_target(args.onnx, force=args.force)  # a bad or taken OUT fails before the minute of work
    if said := unfinished_note(run_dir) or ending_note(run_dir):  # as udd score says it (QA sweep 14)
        print(f"note: {said}", file=sys.stderr)
    try:
        result = export_run(run_dir, opset=args.opset, data=args.data)
    except ParityError as e:
        raise ParityFailed(str(e)) from None
    onnx_path, side = write_export(result, args.onnx, force=args.force)
    par = result.info["parity"]
    print(f"udd export: wrote {onnx_path} ({len(result.onnx) / 1e6:.1f} MB) and {side}; parity on "
          f"{par['images']} {par['source']} image{'s' * (par['images'] != 1)}: largest relative score difference "
          f"{par['max_rel_score_diff']:.2g}", file=sys.stderr)
    return 0
