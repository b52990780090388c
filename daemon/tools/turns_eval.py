"""``antiphon eval-turns CORPUS_DIR_OR_MIDI_FOLDER``: how well calls are found to be over.

Each performance is played, causally and as if live, into the real
:class:`~antiphon.daemon.musician.playing.performer.Performer` on a
:class:`~antiphon.daemon.musician.playing.performer.ManualClock` (the code the daemon runs, in
``listen`` mode so that no reply changes what the model hears). The notes go in as the
sounding notes (the pedal applied), so a silence is a stretch where no key is held and no
key is sustained by the pedal. For each silence the performer either declared the call
over (how long after the silence began) or heard the player go on first.

By default the judge (``turns auto``) is measured with the longest wait it was tuned with
(``AUTO_PHRASE_GAP_S``). The figures, per minute of playing
(:func:`~antiphon.daemon.tools.turns_replay.figures`): false answers, real ends, the median
and 90th percentile delay on real ends, and ends missed. Beside them, the whole trade-off on
the same silences: the judge at each eagerness of ``EAGERNESSES`` (replayed as the performer
drives it, :func:`~antiphon.daemon.tools.turns_replay.replay`; the replay at the settings'
eagerness is checked against the performer's own answers on every run) and the fixed gaps
``FIXED_GAPS_S``; as a table, ``--json`` and ``--plot``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mido
import numpy as np
from antiphon.daemon.codec import KeyEvent, Note, key_events_to_notes
from antiphon.daemon.musician.hearing.turns import AUTO_PHRASE_GAP_S
from antiphon.daemon.settings import PIANO_MODEL, SETTINGS_FIELDS, Settings, SettingsError
from antiphon.daemon.tools.turns_replay import (
    EAGERNESSES,
    FIXED_GAPS_S,
    Judged,
    figures,
    format_rows,
    note_messages,
    replay,
    trade_off,
)

if TYPE_CHECKING:
    from antiphon.daemon.musician.model.engine import Engine

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


def midi_performances(
    folder: Path, limit: int | None, command: str = "eval-turns"
) -> Iterator[tuple[str, list[Note]]]:
    """The sounding notes (pedal applied) of every MIDI file under ``folder`` (or the file);
    a file that cannot be read is skipped with a line naming the ``command`` reading it."""
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
            print(f"antiphon {command}: skipped {err}", file=sys.stderr)
            continue
        yield str(path), sounding_notes(messages)


def sounding_notes(messages: list[tuple[float, mido.Message]]) -> list[Note]:
    """The notes as they sound (the sustain pedal applied) of a file's key and pedal
    messages, in time order."""
    return key_events_to_notes(_key_events(messages))


def _key_events(messages: list[tuple[float, mido.Message]]) -> Iterator[KeyEvent]:
    for time_s, message in messages:
        if message.type == "note_on":
            yield KeyEvent(time_s, message.note, message.velocity)
        elif message.type == "note_off":
            yield KeyEvent(time_s, message.note, 0)
        elif message.type == "control_change" and message.control == 64:
            yield KeyEvent(time_s, -1, message.value)


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
    from antiphon.daemon.musician.playing.performer import ManualClock, Performer

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


def replayed(notes: Sequence[Note], eagernesses: Sequence[float]) -> dict[float, list[Judged]]:
    """The judge's waits on ``notes`` at each of ``eagernesses``, replayed as the performer
    drives it (at the longest wait it was tuned with)."""
    messages = note_messages(notes)
    return {e: replay(messages, e, AUTO_PHRASE_GAP_S) for e in eagernesses}


def agreeing(silences: Sequence[Silence], judged: Sequence[Judged]) -> int:
    """How many silences the performer and the replay declared over at the same moment, or
    both not at all."""
    count = 0
    for silence, j in zip(silences, judged, strict=True):
        wait_s = j.wait_s
        replay_after = wait_s if j.silence_s >= wait_s else None
        performer_after = silence.declared_after_s
        if replay_after is None or performer_after is None:
            count += replay_after is None and performer_after is None
        else:
            count += abs(replay_after - performer_after) < 1e-6
    return count


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
    parser.add_argument("--model", default=str(PIANO_MODEL), help="the ONNX model to listen with")
    parser.add_argument(
        "--split", default="test", choices=["test", "validation", "train"],
        help="the corpus split (default: test)",
    )  # fmt: skip
    parser.add_argument("--limit", type=int, default=None, help="only the first N performances")
    parser.add_argument("--json", type=Path, default=None, metavar="OUT", help="the summary")
    parser.add_argument(
        "--plot", type=Path, default=None, metavar="OUT.png",
        help="draw the trade-off (needs matplotlib: the plot or train extra)",
    )  # fmt: skip
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


def replay_settings(model: str, mode: str, **chosen: Any) -> Settings:
    """The settings for playing a recorded performance into the performer: nothing loops
    back to echo, a note held long in a file is not a lost note-off, seed 0; ``chosen``
    settings on top."""
    return Settings(
        model=model,
        mode=mode,
        echo_window_ms=0.0,
        held_key_timeout_s=600.0,
        seed=0,
        **chosen,
    )


def run(args: argparse.Namespace) -> int:
    from antiphon.daemon.musician.model.engine import Engine
    from antiphon.daemon.musician.model.model_file import ModelError
    from antiphon.training.corpus import CorpusError

    chosen = {
        name: getattr(args, name) for name in TURN_SETTINGS if getattr(args, name) is not None
    }
    try:
        settings = replay_settings(args.model, "listen", **chosen)
        engine = Engine(settings.model, seed=0)
        if (args.source / "corpus.json").is_file():
            performances = corpus_performances(args.source, args.split, args.limit)
        elif args.source.exists():
            performances = midi_performances(args.source, args.limit)
        else:
            raise TurnsEvalError(f"{args.source}: no such corpus, folder or file")
        # The replay at the settings' eagerness is checked against the performer, when the
        # performer judged with the longest wait the replay uses.
        checked = settings.turns == "auto" and settings.phrase_gap_s == AUTO_PHRASE_GAP_S
        eagernesses = sorted({*EAGERNESSES, settings.eagerness})
        silences: list[Silence] = []
        judged: dict[float, list[Judged]] = {e: [] for e in eagernesses}
        agreed = 0
        minutes = 0.0
        events = args.events.open("w", encoding="utf-8") if args.events else None
        try:
            for name, notes in performances:
                found = judge_performance(name, notes, settings, engine)
                judged_here = replayed(notes, eagernesses)
                agreed += agreeing(found, judged_here[settings.eagerness])
                silences.extend(found)
                for eagerness, these in judged_here.items():
                    judged[eagerness].extend(these)
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
    report["trade_off"] = trade_off(judged, minutes)
    report["replay_agrees"] = f"{agreed} of {len(silences)}" if checked else None
    report["settings"] = {
        "turns": settings.turns,
        "eagerness": settings.eagerness,
        "phrase_gap_s": settings.phrase_gap_s,
        "model": str(settings.model),
        "source": str(args.source),
        "split": args.split if (args.source / "corpus.json").is_file() else None,
    }
    print(format_summary(report))
    print("\nThe trade-off (the judge replayed at each eagerness; the fixed gaps):")
    print(format_rows(report["trade_off"]))
    if checked:
        print(f"the replay agrees with the performer on {report['replay_agrees']} silences")
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if args.plot is not None:
        from antiphon.daemon.tools.turns_plot import plot_trade_off

        title = f"{args.source.name} ({report['settings']['split'] or 'files'})"
        marked = f"auto {settings.eagerness:g}"
        plot_trade_off({title: report["trade_off"]}, marked, args.plot, why="as set")
    return 0
