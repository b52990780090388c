"""``antiphon train CORPUS_DIR --out RUN_DIR``: train the note LSTM (torch imported in run).

Multi-GPU or multi-node: start it under torchrun, e.g.
``torchrun --nproc-per-node 4 -m antiphon.daemon.cli train CORPUS --out RUN``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    p = parser.add_argument
    p("corpus_dir", type=Path, metavar="CORPUS_DIR", help="a corpus built by `antiphon corpus`")
    p("--out", type=Path, required=True, metavar="RUN_DIR", help="folder for checkpoints, plots")
    p("--epochs", type=int, default=30, help="passes over the training split (default: 30)")
    p("--batch-size", type=int, default=64, help="stream rows per process (default: 64)")
    p("--window", type=int, default=128, help="tokens per backprop window (default: 128)")
    p("--embedding", type=int, default=128, help="token embedding size (default: 128)")
    p("--hidden", type=int, default=256, help="LSTM hidden size (default: 256)")
    p("--layers", type=int, default=2, help="LSTM layers (default: 2)")
    p("--dropout", type=float, default=0.1, help="dropout (default: 0.1)")
    p("--lr", type=float, default=2e-3, help="peak learning rate, AdamW (default: 2e-3)")
    p("--weight-decay", type=float, default=0.01, help="AdamW weight decay (default: 0.01)")
    p("--warmup-steps", type=int, default=200, help="linear LR warmup steps (default: 200)")
    p("--clip-norm", type=float, default=1.0, help="gradient norm clip (default: 1.0)")
    p(
        "--reset-probability",
        type=float,
        default=0.01,
        help="chance a window restarts from zero state mid-performance (default: 0.01)",
    )
    p("--no-augment", action="store_true", help="train on the notes as they are")
    p(
        "--velocity-spread",
        type=float,
        default=0.2,
        help="augmentation: velocities scaled by 1 +- this per performance (default: 0.2; "
        "0 for data whose velocities lie near the top, as jazz-solos-dev's)",
    )
    p("--seed", type=int, default=0, help="random seed (default: 0)")
    p("--max-steps", type=int, default=None, help="stop after this many optimiser steps")
    p(
        "--max-minutes",
        type=float,
        default=None,
        help="wall-clock budget: the LR schedule is fitted to it and training stops in time "
        "for a final validation and checkpoint",
    )
    p("--patience", type=int, default=5, help="epochs without validation gain before stopping")
    p(
        "--init-from",
        type=Path,
        metavar="MODEL_ONNX",
        help="start from the weights of a float32 exported model of the same shape and codec "
        "(fine-tuning, e.g. exported_models/antiphon-piano-fp32.onnx) instead of at random",
    )
    p("--resume", action="store_true", help="continue RUN_DIR/last.pt exactly where it stopped")
    p("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    p("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    p(
        "--checkpoint-minutes",
        type=float,
        default=10.0,
        help="also save RUN_DIR/last.pt this often within an epoch (default: 10)",
    )


def run(args: argparse.Namespace) -> int:
    from antiphon.training.checkpoint import TrainingError
    from antiphon.training.corpus import CorpusError
    from antiphon.training.train import TrainConfig, train

    config = TrainConfig(
        corpus_dir=str(args.corpus_dir),
        out_dir=str(args.out),
        epochs=args.epochs,
        batch_size=args.batch_size,
        window=args.window,
        embedding=args.embedding,
        hidden=args.hidden,
        layers=args.layers,
        dropout=args.dropout,
        lr=args.lr,
        weight_decay=args.weight_decay,
        warmup_steps=args.warmup_steps,
        clip_norm=args.clip_norm,
        reset_probability=args.reset_probability,
        augment=not args.no_augment,
        velocity_spread=args.velocity_spread,
        seed=args.seed,
        max_steps=args.max_steps,
        max_minutes=args.max_minutes,
        patience=args.patience,
        device=args.device,
        threads=args.threads,
        checkpoint_minutes=args.checkpoint_minutes,
        init_from=None if args.init_from is None else str(args.init_from),
    )
    try:
        progress = train(config, resume=args.resume)
    except (TrainingError, CorpusError) as err:
        print(f"antiphon train: {err}", file=sys.stderr)
        return 1
    if os.environ.get("RANK", "0") != "0":
        return 0
    best = "none" if progress.best_epoch < 0 else f"{progress.best_bits:.4f}"
    print(
        f"trained {progress.step} steps, {progress.tokens} tokens; "
        f"best validation {best} bits/token; checkpoints in {args.out}"
    )
    return 0
