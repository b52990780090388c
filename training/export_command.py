"""``antiphon export CHECKPOINT -o exported_models/NAME.onnx``: the daemon's model file;
``antiphon export --upgrade OLD.onnx -o NEW.onnx``: a format-1 file rewritten as format 2."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "checkpoint",
        type=Path,
        metavar="CHECKPOINT",
        help="a RUN_DIR/*.pt file (with --upgrade: a format-1 ONNX model file)",
    )
    parser.add_argument(
        "-o", "--out", type=Path, required=True, help="where to write the ONNX model"
    )
    parser.add_argument(
        "--quantize-int8",
        action="store_true",
        help="quantize the weights to int8 (onnxruntime dynamic quantization)",
    )
    parser.add_argument(
        "--upgrade",
        action="store_true",
        help="rewrite a format-1 model file (one token a run) as format 2 (a sequence of "
        "tokens a run), weights and metadata kept",
    )
    parser.add_argument(
        "--facts",
        type=Path,
        default=None,
        metavar="JSON_FILE",
        help="a JSON object of training facts to add to the model's metadata "
        "(license, data, held-out scores)",
    )


def run(args: argparse.Namespace) -> int:
    from antiphon.training.checkpoint import TrainingError
    from antiphon.training.export import ExportError, export_checkpoint, upgrade_file

    if args.upgrade:
        if args.quantize_int8 or args.facts is not None:
            print("antiphon export: --upgrade keeps the file's weights and facts", file=sys.stderr)
            return 1
        try:
            path = upgrade_file(args.checkpoint, args.out)
        except ExportError as err:
            print(f"antiphon export: {err}", file=sys.stderr)
            return 1
        print(f"wrote {path} (format 2)")
        return 0
    extra = None
    if args.facts is not None:
        try:
            extra = json.loads(args.facts.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            print(f"antiphon export: {args.facts}: unreadable facts ({err})", file=sys.stderr)
            return 1
        if not isinstance(extra, dict):
            print(f"antiphon export: {args.facts}: facts must be a JSON object", file=sys.stderr)
            return 1
    try:
        path = export_checkpoint(args.checkpoint, args.out, args.quantize_int8, extra)
    except (TrainingError, ExportError) as err:
        print(f"antiphon export: {err}", file=sys.stderr)
        return 1
    size_mb = path.stat().st_size / 1e6
    print(f"wrote {path} ({size_mb:.1f} MB)")
    return 0
