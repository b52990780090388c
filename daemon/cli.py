"""The ``antiphon`` command: one entry point, a subcommand per job.

Each subcommand lives in its own module, which exposes ``add_arguments(parser)`` and
``run(args) -> int``. Those modules import without the training extra installed; anything
heavy (torch, symusic, music21, matplotlib) is imported inside ``run``, so ``antiphon --help``
and the daemon stay light, and a missing extra is reported in one line.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from antiphon.daemon.stage.logs import configure_logging

from antiphon import __version__

COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("run", "antiphon.daemon.stage.live", "run the co-improviser on live MIDI ports"),
    ("ports", "antiphon.daemon.midi.ports", "list the MIDI ports this machine has"),
    (
        "doctor",
        "antiphon.daemon.stage.doctor",
        "check what antiphon run needs on this machine; say what to fix",
    ),
    ("respond", "antiphon.daemon.respond", "answer a call given as a MIDI file, into a MIDI file"),
    ("bench", "antiphon.daemon.tools.bench", "measure inference, reaction latency and timing"),
    ("corpus", "antiphon.training.corpus_command", "build a training corpus from MIDI files"),
    (
        "transcribe",
        "antiphon.training.transcribe_command",
        "transcribe recordings (a horn, a voice, a piano) into MIDI files",
    ),
    ("train", "antiphon.training.train_command", "train the note LSTM on a corpus"),
    (
        "export",
        "antiphon.training.export_command",
        "export a checkpoint to a self-describing ONNX model",
    ),
    (
        "eval",
        "antiphon.training.eval_command",
        "score a model against a Markov baseline on held-out data",
    ),
    (
        "eval-replies",
        "antiphon.training.eval_replies",
        "measure how well replies answer real calls cut from a corpus",
    ),
    (
        "eval-turns",
        "antiphon.daemon.tools.turns_eval",
        "measure how soon and how wrongly calls are found over, beside fixed gaps",
    ),
    (
        "fit-turns",
        "antiphon.training.turns_fit",
        "fit the turn judge across corpora; measure it on each corpus left out",
    ),
    (
        "eval-duet",
        "antiphon.training.eval_duet",
        "measure the duet part against real accompanying parts and a deaf control",
    ),
    (
        "eval-clock",
        "antiphon.training.eval_clock",
        "measure how the outgoing clock follows real players time-stretched to speed up",
    ),
    (
        "eval-beat",
        "antiphon.training.eval_beat",
        "measure how the beat tracker hears players whose tempo a file's tempo event says",
    ),
    ("plot", "antiphon.daemon.tools.plot", "draw a recorded session as a piano roll (PNG)"),
)

# Modules that only the optional extras provide, and the extra that brings each one.
EXTRA_OF_MODULE = {
    "torch": "train",
    "onnx": "train",
    "symusic": "train",
    "music21": "train",
    "tqdm": "train",
    "matplotlib": "plot",  # also in 'train'; 'plot' is the small one
    "soundfile": "audio",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="antiphon",
        description="Antiphon: a real-time MIDI co-improviser. Play a phrase; it answers.",
    )
    parser.add_argument("--version", action="version", version=f"antiphon {__version__}")
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="how much to log (default: info)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name, help_text in COMMANDS:
        module = importlib.import_module(module_name)
        command = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(command)
        command.set_defaults(module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level)
    try:
        return int(args.module.run(args) or 0)
    except ModuleNotFoundError as err:
        extra = EXTRA_OF_MODULE.get((err.name or "").split(".")[0])
        if extra is None:
            raise
        print(
            f"antiphon {args.command}: needs the '{extra}' extra ({err.name} is not installed); "
            f"install it with: pip install 'antiphon[{extra}]'",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
