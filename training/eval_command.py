"""``antiphon eval MODEL CORPUS_DIR``: held-out scores of a model beside the Markov baseline."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, metavar="MODEL", help="an exported .onnx model")
    parser.add_argument(
        "corpus", type=Path, metavar="CORPUS_DIR", help="a corpus built by `antiphon corpus`"
    )
    parser.add_argument(
        "--split",
        default="test",
        choices=["test", "validation"],
        help="held-out split to score (default: test)",
    )
    parser.add_argument(
        "--json", type=Path, default=None, metavar="OUT.json", help="also write the report here"
    )
    parser.add_argument(
        "--window",
        type=int,
        default=128,
        help="tokens per window for the windowed score, each from a zero state (default: 128)",
    )
    parser.add_argument(
        "--max-order",
        type=int,
        default=6,
        help="longest context of the Markov baseline, in tokens (default: 6)",
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=32,
        help="performances the model steps through at once (default: 32)",
    )
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime threads (default: 2)")
    parser.add_argument(
        "--long",
        action="store_true",
        help="instead: the whole split as one stream, never reset (a long gig), against "
        "each performance from a zero state; drift beyond 3%% fails (exit status 3)",
    )


def run(args: argparse.Namespace) -> int:
    from antiphon.daemon.codec import CodecError
    from antiphon.training.corpus import CorpusError
    from antiphon.training.evaluate import EvalError, evaluate
    from antiphon.training.markov import MarkovError

    if args.long:
        return _run_long(args)
    try:
        report = evaluate(
            args.model,
            args.corpus,
            split=args.split,
            window=args.window,
            max_order=args.max_order,
            batch=args.batch,
            threads=args.threads,
        )
    except (EvalError, CorpusError, CodecError, MarkovError, OSError) as err:
        print(f"antiphon eval: {err}", file=sys.stderr)
        return 1
    print(report.table())
    if args.json is not None:
        try:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(report.to_json(), indent=2) + "\n", encoding="utf-8")
        except OSError as err:
            print(f"antiphon eval: cannot write {args.json}: {err}", file=sys.stderr)
            return 1
        print(f"wrote {args.json}")
    return 0


def _run_long(args: argparse.Namespace) -> int:
    from antiphon.daemon.codec import CodecError
    from antiphon.training.corpus import CorpusError
    from antiphon.training.evaluate import EvalError
    from antiphon.training.long_stream import evaluate_long

    try:
        report = evaluate_long(
            args.model, args.corpus, split=args.split, batch=args.batch, threads=args.threads
        )
    except (EvalError, CorpusError, CodecError, OSError) as err:
        print(f"antiphon eval: {err}", file=sys.stderr)
        return 1
    print(report.table())
    if args.json is not None:
        try:
            args.json.write_text(json.dumps(report.to_json(), indent=2) + "\n", encoding="utf-8")
        except OSError as err:
            print(f"antiphon eval: cannot write {args.json}: {err}", file=sys.stderr)
            return 1
    return 0 if report.no_drift else 3
