"""``antiphon corpus``: build a training corpus (see :mod:`antiphon.training.corpus`)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "sources",
        nargs="*",
        type=Path,
        help=".mid/.midi files, ABC tunebooks (.abc; each tune is a piece) and recordings "
        "(.wav; .flac, .ogg, .mp3, .aiff with the 'audio' extra; transcribed once, cached in "
        "OUT/transcriptions), or folders of them",
    )
    parser.add_argument("--out", type=Path, required=True, help="folder to write the corpus to")
    parser.add_argument(
        "--music21",
        nargs="?",
        const="bach,essenFolksong,ryansMammoth,oneills1850",
        default="",
        metavar="COLLECTIONS",
        help="add music21's public corpus, rendered to MIDI (comma-separated collections; "
        "default: bach,essenFolksong,ryansMammoth,oneills1850)",
    )
    parser.add_argument(
        "--music21-limit",
        type=int,
        help="at most this many music21 works (per collection: write it NAME:COUNT)",
    )
    parser.add_argument(
        "--single-line",
        action="store_true",
        help="keep one melodic line of each work: a music21 score's top part (a chorale's "
        "soprano), then the highest note of each onset; recordings are transcribed one note "
        "at a time (a horn, a voice)",
    )
    parser.add_argument(
        "--expressive",
        action="store_true",
        help="play each work with expressive timing and loudness (tempo drift, breaths at "
        "phrase ends, onset jitter, articulation, dynamics; seeded by --seed): for rendered "
        "scores such as music21's",
    )
    parser.add_argument(
        "--abc-chords",
        action="store_true",
        help='play an ABC tune\'s chord symbols ("Am") as a second part below the melody '
        "(a bass note and the chord on the beats); without it they are left out",
    )
    parser.add_argument(
        "--piece-by",
        choices=["file", "folder", "prefix"],
        default="file",
        help="what one piece is: each file, each folder of files (several performances "
        "of one piece, as in asap-piano), or each file name's part before its first '_' "
        "(a soloist in jazz-solos-dev); each tune of a tunebook is always a piece; a "
        "piece never spans two splits (default: file)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the train/validation/test split"
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=os.cpu_count() or 1,
        help="parsing processes (default: all cores)",
    )


def run(args: argparse.Namespace) -> int:
    from antiphon.training.corpus import CorpusError, ParseResult, build_corpus
    from antiphon.training.expressive import Rendering
    from tqdm import tqdm

    def progress(results: Iterable[ParseResult], total: int) -> Iterable[ParseResult]:
        return tqdm(results, total=total, unit="file", desc="parsing", disable=None)

    collections = [c for c in args.music21.split(",") if c]
    if not args.sources and not collections:
        print(
            "antiphon corpus: give at least one MIDI file, ABC tunebook, recording or folder "
            "of them, or --music21",
            file=sys.stderr,
        )
        return 2
    try:
        summary = build_corpus(
            args.out,
            folders=args.sources,
            music21_collections=collections,
            music21_limit=args.music21_limit,
            piece_by=args.piece_by,
            seed=args.seed,
            jobs=args.jobs,
            progress=progress,
            rendering=Rendering(
                args.single_line, args.expressive, args.seed, abc_chords=args.abc_chords
            ),
        )
    except CorpusError as err:
        print(f"antiphon corpus: {err}", file=sys.stderr)
        return 2
    print(summary.line())
    return 0
