"""``antiphon eval-turns CORPUS_DIR_OR_MIDI_FOLDER``: how well calls are found to be over.

Each performance is played, causally and as if live, into the real
:class:`~antiphon.daemon.musician.performer.Performer` on a
:class:`~antiphon.daemon.musician.performer.ManualClock` (the code the daemon runs, in
``listen`` mode so that no reply changes what the model hears). The notes go in as the
sounding notes (the pedal applied), so a silence is a stretch where no key is held and no
key is sustained by the pedal. For each silence the performer either declared the call
over (how long after the silence began) or heard the player go on first.

By default the judge (``turns auto``) is measured with the longest wait it was tuned with
(``AUTO_PHRASE_GAP_S``). The figures, per minute of playing: false answers (a call declared
over within a silence shorter than ``FALSE_BELOW_S``: the player was only breathing), real
ends (silences of ``REAL_END_S`` or more), the median and 90th percentile delay on real
ends, and ends missed (never declared). Beside them, the fixed gaps ``FIXED_GAPS_S`` on the
same silences.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mido
import numpy as np
from antiphon.daemon.codec import KeyEvent, Note, key_events_to_notes, notes_to_events
from antiphon.daemon.musician.turns import AUTO_PHRASE_GAP_S
from antiphon.daemon.settings import DEFAULT_MODEL, SETTINGS_FIELDS, Settings, SettingsError

if TYPE_CHECKING:
    from antiphon.daemon.musician.engine import Engine

FALSE_BELOW_S = 0.6  # a call declared over in a silence shorter than this was a breath
REAL_END_S = 1.0  # a silence this long is the end of a phrase
FIXED_GAPS_S = (0.15, 0.25, 0.35, 0.5)
TURN_SETTINGS: dict[str, type] = {"turns": str, "eagerness": float, "phrase_gap_s": float}


class TurnsEvalError(ValueError):
    """A source that cannot be read (one line for the user)."""


@dataclass(frozen=True)
class Silence:
    """One silence of a performance and when the call was declared over in it (or None)."""

    file: str
    start_s: float
    silence_s: float
    declared_after_s: float | None


# Performances -----------------------------------------------------------------------------


def corpus_performances(
    corpus_dir: Path, split: str, limit: int | None
) -> Iterator[tuple[str, list[Note]]]:
    from antiphon.daemon.codec import notes_from_array
    from antiphon.training.corpus import load_split

    for name, array in load_split(corpus_dir, split)[:limit]:
        yield name, list(notes_from_array(array))


def midi_performances(folder: Path, limit: int | None) -> Iterator[tuple[str, list[Note]]]:
    """The sounding notes (pedal applied) of every MIDI file under ``folder`` (or the file)."""
    from antiphon.daemon.respond import CallFileError, read_call

    paths = (
        [folder]
        if folder.is_file()
        else sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".mid", ".midi"))
    )
    for path in paths[:limit]:
        try:
            messages = read_call(path)
        except CallFileError as err:
            print(f"antiphon eval-turns: skipped {err}", file=sys.stderr)
            continue
        yield str(path), key_events_to_notes(_key_events(messages))


def _key_events(messages: list[tuple[float, mido.Message]]) -> Iterator[KeyEvent]:
    for time_s, message in messages:
        if message.type == "note_on":
            yield KeyEvent(time_s, message.note, message.velocity)
        elif message.type == "note_off":
            yield KeyEvent(time_s, message.note, 0)
        elif message.type == "control_change" and message.control == 64:
            yield KeyEvent(time_s, -1, message.value)


def note_messages(notes: Sequence[Note]) -> list[tuple[float, mido.Message]]:
    """Notes as the key messages a player sends: a pitch struck again while it sounds ends
    first, and only the first end that follows counts (as the codec reads them)."""
    messages = []
    sounding: set[int] = set()
    for event in notes_to_events(notes):
        if event.velocity > 0:
            if event.pitch in sounding:
                messages.append((event.time_s, mido.Message("note_off", note=event.pitch)))
            sounding.add(event.pitch)
            messages.append(
                (event.time_s, mido.Message("note_on", note=event.pitch, velocity=event.velocity))
            )
        elif event.pitch in sounding:
            sounding.discard(event.pitch)
            messages.append((event.time_s, mido.Message("note_off", note=event.pitch)))
    return messages


def silences_of(messages: Sequence[tuple[float, mido.Message]]) -> list[tuple[float, float]]:
    """(start, end) of each stretch with nothing sounding between two notes (none of no
    length, where a sounding pitch is struck again)."""
    found = []
    sounding = 0
    silence_start_s: float | None = None
    for time_s, message in messages:
        if message.type == "note_on":
            if silence_start_s is not None and sounding == 0 and time_s > silence_start_s:
                found.append((silence_start_s, time_s))  # (a pitch struck again: none)
            sounding += 1
            silence_start_s = None
        else:
            sounding -= 1
            if sounding == 0:
                silence_start_s = time_s
    return found


# Judging ----------------------------------------------------------------------------------


class _Silent:
    def send(self, message: mido.Message) -> None:
        pass


def judge_performance(
    name: str, notes: Sequence[Note], settings: Settings, engine: Engine
) -> list[Silence]:
    """Play ``notes`` into a listening performer; each silence with when its call ended."""
    from antiphon.daemon.musician.performer import ManualClock, Performer

    messages = note_messages(notes)
    engine.reset()
    clock = ManualClock()
    performer = Performer(settings, engine, _Silent(), clock=clock)
    ends: list[float] = []
    last_call = None
    for time_s, message in messages:
        performer.process_until(time_s)
        if performer.last_call is not last_call:
            last_call = performer.last_call
            assert last_call is not None
            ends.append(last_call.ended_s)
        performer.submit(message, time_s)
    performer.close()
    found = []
    ends_at = np.asarray(ends)
    for start_s, end_s in silences_of(messages):
        inside = ends_at[(ends_at >= start_s) & (ends_at <= end_s)]
        declared = float(inside[0] - start_s) if len(inside) else None
        found.append(Silence(name, start_s, end_s - start_s, declared))
    return found


def playing_minutes(notes: Sequence[Note]) -> float:
    if not notes:
        return 0.0
    return (max(n.offset_s for n in notes) - min(n.onset_s for n in notes)) / 60.0


# Figures ----------------------------------------------------------------------------------


def figures(
    declared_after: Sequence[float | None], silences_s: Sequence[float], minutes: float
) -> dict[str, Any]:
    """False answers and real ends per minute, delays on real ends, ends missed."""
    false = sum(
        1
        for d, s in zip(declared_after, silences_s, strict=True)
        if d is not None and s < FALSE_BELOW_S
    )
    delays = [
        d
        for d, s in zip(declared_after, silences_s, strict=True)
        if s >= REAL_END_S and d is not None
    ]
    real = sum(1 for s in silences_s if s >= REAL_END_S)
    per_minute = 1.0 / minutes if minutes > 0 else math.nan
    return {
        "false_per_min": false * per_minute,
        "real_ends_per_min": real * per_minute,
        "median_delay_s": float(np.median(delays)) if delays else None,
        "p90_delay_s": float(np.percentile(delays, 90)) if delays else None,
        "missed": real - len(delays),
        "false": false,
        "real_ends": real,
    }


def summary(silences: Sequence[Silence], minutes: float) -> dict[str, Any]:
    """The detector's figures and those of each fixed gap on the same silences."""
    lengths = [s.silence_s for s in silences]
    rows = {"detector": figures([s.declared_after_s for s in silences], lengths, minutes)}
    for gap_s in FIXED_GAPS_S:
        after = [gap_s if length >= gap_s else None for length in lengths]
        rows[f"gap {gap_s:g}"] = figures(after, lengths, minutes)
    return {"minutes": minutes, "silences": len(silences), "rows": rows}


def format_summary(report: dict[str, Any]) -> str:
    lines = [
        f"{report['silences']} silences in {report['minutes']:.1f} min of playing",
        f"{'':16} {'false/min':>9} {'ends/min':>9} {'median s':>9} {'p90 s':>7} {'missed':>6}",
    ]
    for name, row in report["rows"].items():
        median = "-" if row["median_delay_s"] is None else f"{row['median_delay_s']:.3f}"
        p90 = "-" if row["p90_delay_s"] is None else f"{row['p90_delay_s']:.3f}"
        lines.append(
            f"{name:16} {row['false_per_min']:9.2f} {row['real_ends_per_min']:9.2f} "
            f"{median:>9} {p90:>7} {row['missed']:6d}"
        )
    return "\n".join(lines)


# Command ----------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", type=Path, metavar="CORPUS_DIR_OR_MIDI_FOLDER")
    parser.add_argument("--model", default=str(DEFAULT_MODEL), help="the ONNX model to listen with")
    parser.add_argument(
        "--split", default="test", choices=["test", "validation", "train"],
        help="the corpus split (default: test)",
    )  # fmt: skip
    parser.add_argument("--limit", type=int, default=None, help="only the first N performances")
    parser.add_argument("--json", type=Path, default=None, metavar="OUT", help="the summary")
    parser.add_argument(
        "--events", type=Path, default=None, metavar="OUT.jsonl", help="one line per silence"
    )
    for name, kind in TURN_SETTINGS.items():
        flag = SETTINGS_FIELDS[name].metadata["flag"] or "--" + name.replace("_", "-")
        parser.add_argument(flag, dest=name, type=kind, help=SETTINGS_FIELDS[name].metadata["help"])
    parser.epilog = (
        f"Measured at the settings' defaults (--turns auto --phrase-gap {AUTO_PHRASE_GAP_S:g}); "
        "the fixed gaps are figured beside it."
    )


def run(args: argparse.Namespace) -> int:
    from antiphon.daemon.musician.engine import Engine
    from antiphon.daemon.musician.model_file import ModelError
    from antiphon.training.corpus import CorpusError

    chosen = {
        name: getattr(args, name) for name in TURN_SETTINGS if getattr(args, name) is not None
    }
    try:
        settings = Settings(
            model=args.model,
            mode="listen",
            echo_window_ms=0.0,
            held_key_timeout_s=600.0,  # a note held long is not a lost note-off here
            seed=0,
            **chosen,
        )
        engine = Engine(settings.model, seed=0)
        if (args.source / "corpus.json").is_file():
            performances = corpus_performances(args.source, args.split, args.limit)
        elif args.source.exists():
            performances = midi_performances(args.source, args.limit)
        else:
            raise TurnsEvalError(f"{args.source}: no such corpus, folder or file")
        silences: list[Silence] = []
        minutes = 0.0
        events = args.events.open("w", encoding="utf-8") if args.events else None
        try:
            for name, notes in performances:
                found = judge_performance(name, notes, settings, engine)
                silences.extend(found)
                minutes += playing_minutes(notes)
                if events is not None:
                    events.writelines(json.dumps(asdict(s)) + "\n" for s in found)
        finally:
            if events is not None:
                events.close()
    except (SettingsError, ModelError, CorpusError, TurnsEvalError) as err:
        print(f"antiphon eval-turns: {err}", file=sys.stderr)
        return 2
    report = summary(silences, minutes)
    report["settings"] = {
        "turns": settings.turns,
        "eagerness": settings.eagerness,
        "phrase_gap_s": settings.phrase_gap_s,
        "model": str(settings.model),
        "source": str(args.source),
        "split": args.split if (args.source / "corpus.json").is_file() else None,
    }
    print(format_summary(report))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0
