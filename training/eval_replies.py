"""``antiphon eval-replies CORPUS_DIR``: how well Antiphon's replies answer real calls.

Real calls are cut from the held-out performances of a corpus (:mod:`antiphon.training.calls`:
phrases ended by a silence of 1 s with nothing sounding). Each call is answered the way
``antiphon respond`` answers a file (the real Performer on a simulated clock, from a fresh
state, the same settings; unless given, ``turns gap`` with the calls' silence, 1 s, as the
phrase gap, so the daemon hears the call that was cut), and the reply (what is played after
the call's end) is measured against the call with every entry of
:data:`~antiphon.training.reply_measures.MEASURES`, as are the player's own next phrase and a
shuffled control (another call's next phrase, from another performance where there is one).
Replies whose notes are left sounding at the end (a note-on without its note-off) are
counted as hanging.

The done-when checks of the reply against the next phrase are printed with the table: each
distance at most ``DISTANCE_SLACK`` times the next phrase's, in-key share at least the next
phrase's minus ``IN_KEY_SLACK``, chromatic share within ``IN_KEY_SLACK`` of the next phrase's
either way, overlap (on calls that play one line) no higher than the next phrase's, copy
share at most ``MAX_COPY_SHARE``, pulse and tempo at least the next phrase's minus
``PULSE_SLACK``, no hanging notes. With ``--model auto`` the table counts the voices that
answered.

``--beat steady`` or ``--beat rubato`` keeps only the calls of that kind, judged on the call
alone (:func:`~antiphon.training.pulse_measures.beat_kind`).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mido
import numpy as np
from antiphon.daemon.respond import RESPOND_SETTINGS, TimedMessage
from antiphon.daemon.settings import AUTO_MODEL, SETTINGS_FIELDS
from antiphon.training.calls import SILENCE_S

if TYPE_CHECKING:
    from antiphon.daemon.musician.model.engine import Engine
    from antiphon.daemon.musician.model.voices import Voices
    from antiphon.daemon.settings import Settings
    from antiphon.training.calls import CallPair

DISTANCE_SLACK = 1.1
IN_KEY_SLACK = 0.05
MAX_COPY_SHARE = 0.2
PULSE_SLACK = 0.05
DEFAULT_SEED = 0
CHOICE_SEED = 12345  # which calls are taken, and the shuffled control


@dataclass
class Answered:
    """One call answered: the reply's notes and whether any were left hanging."""

    pair: CallPair
    reply: np.ndarray
    hanging: int
    voice: str = ""  # with --model auto, the voice that answered


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("corpus", type=Path, help="a corpus folder (`antiphon corpus`)")
    parser.add_argument(
        "--model",
        default=AUTO_MODEL,
        help="the ONNX model to answer with, or auto (the single-line model for one line, "
        "the piano model for chords)",
    )
    parser.add_argument(
        "--split", default="test", choices=["train", "validation", "test"], help="(default: test)"
    )
    parser.add_argument("--calls", type=int, help="answer at most this many calls (evenly spread)")
    parser.add_argument("--json", type=Path, help="also write the figures (and each call's) here")
    parser.add_argument(
        "--silence-s",
        type=float,
        default=SILENCE_S,
        help=f"the silence that ends a call (default: {SILENCE_S} s; piano music leaves few "
        "such silences where its beat is steady)",
    )
    parser.add_argument(
        "--beat",
        choices=["all", "steady", "rubato"],
        default="all",
        help="only the calls with a steady beat, or only those without (judged on the call "
        "alone: its second half on the beat grid of its first half); default: all",
    )
    for name, kind in RESPOND_SETTINGS.items():
        flag = SETTINGS_FIELDS[name].metadata["flag"] or "--" + name.replace("_", "-")
        parser.add_argument(flag, dest=name, type=kind, help=SETTINGS_FIELDS[name].metadata["help"])


def notes_to_messages(notes: np.ndarray) -> list[TimedMessage]:
    """A notes array as timed note-on/note-off messages (offs first at equal times)."""
    events = []
    for pitch, onset_s, offset_s, velocity in notes.tolist():
        on = mido.Message("note_on", note=int(pitch), velocity=int(velocity))
        events.append((onset_s, 1, on))
        events.append((offset_s, 0, mido.Message("note_off", note=int(pitch))))
    events.sort(key=lambda e: (e[0], e[1]))
    return [(time_s, message) for time_s, _, message in events]


def messages_to_notes(
    messages: list[TimedMessage], from_s: float = -math.inf
) -> tuple[np.ndarray, int]:
    """The notes of timed messages whose note-on is at or after ``from_s``, and how many
    note-ons (of all) never got their note-off."""
    sounding: dict[int, tuple[float, int]] = {}
    rows = []
    for time_s, message in messages:
        if message.type == "note_on" and message.velocity > 0:
            sounding[message.note] = (time_s, message.velocity)
        elif message.type in ("note_on", "note_off") and message.note in sounding:
            onset_s, velocity = sounding.pop(message.note)
            if onset_s >= from_s:
                rows.append((message.note, onset_s, time_s, velocity))
    rows.sort(key=lambda row: row[1])
    return np.asarray(rows, np.float32).reshape(-1, 4), len(sounding)


def answer(
    pair: CallPair, settings: Settings, engine: Engine, seed: int, voices: Voices | None = None
) -> Answered:
    """Answer one call as ``antiphon respond`` would, from a fresh state (with ``voices``,
    ``--model auto``'s, starting from the piano voice)."""
    from antiphon.daemon.respond import respond

    if voices is not None:
        voices.chooser.voice = "piano"
        engine = voices.engines["piano"]
        voices.engines["line"].reset()
    engine.reset()
    engine.reseed(seed)
    output = respond(notes_to_messages(pair.call), settings, engine, voices)
    call_end_s = float(pair.call[:, 2].max())
    reply, hanging = messages_to_notes(output, from_s=call_end_s)
    return Answered(pair, reply, hanging, voices.voice if voices is not None else "")


def choose(pairs: list[CallPair], count: int | None) -> list[CallPair]:
    """At most ``count`` pairs, spread evenly over the list (so over the performances)."""
    if count is None or count >= len(pairs):
        return pairs
    picks = np.linspace(0, len(pairs) - 1, count).round().astype(int)
    return [pairs[i] for i in picks]


def control_order(pairs: list[CallPair]) -> list[int]:
    """For each call, another call whose next phrase is its control: from another
    performance where there is one, never itself."""
    rng = np.random.default_rng(CHOICE_SEED)
    order = []
    for i, pair in enumerate(pairs):
        others = [j for j, p in enumerate(pairs) if p.performance != pair.performance]
        others = others or [j for j in range(len(pairs)) if j != i] or [i]
        order.append(int(rng.choice(others)))
    return order


def _mean(values: list[float | None]) -> tuple[float | None, int]:
    known = [v for v in values if v is not None]
    return (float(np.mean(known)) if known else None), len(known)


def evaluate(answered: list[Answered]) -> dict[str, Any]:
    """Every measure's mean for the replies, the next phrases and the controls, the done-when
    checks, and each call's figures."""
    from antiphon.training.reply_measures import MEASURES

    controls = control_order([a.pair for a in answered])
    figures: dict[str, Any] = {}
    per_call: list[dict[str, Any]] = [
        {
            "performance": a.pair.performance,
            "phrase": a.pair.index,
            "call_notes": len(a.pair.call),
            "reply_notes": len(a.reply),
            "hanging": a.hanging,
            "voice": a.voice,
        }
        for a in answered
    ]
    for measure in MEASURES:
        columns: dict[str, list[float | None]] = {"reply": [], "next": [], "control": []}
        for i, a in enumerate(answered):
            call = a.pair.call
            found = {
                "reply": measure.function(call, a.reply),
                "next": measure.function(call, a.pair.next_phrase),
                "control": measure.function(call, answered[controls[i]].pair.next_phrase),
            }
            for column, value in found.items():
                columns[column].append(value)
            per_call[i][measure.name] = found
        row: dict[str, Any] = {"unit": measure.unit, "distance": measure.distance}
        for column, values in columns.items():
            row[column], row[f"{column}_count"] = _mean(values)
        row["ok"] = _check(measure.name, measure.distance, row["reply"], row["next"])
        figures[measure.name] = row
    hanging = sum(a.hanging for a in answered)
    return {
        "calls": len(answered),
        "reply_notes_mean": float(np.mean([len(a.reply) for a in answered])) if answered else 0,
        "silent_replies": sum(1 for a in answered if len(a.reply) == 0),
        "voices": dict(Counter(a.voice for a in answered if a.voice)),
        "hanging_notes": hanging,
        "measures": figures,
        "ok": hanging == 0 and all(row["ok"] is not False for row in figures.values()),
        "per_call": per_call,
    }


def _check(name: str, distance: bool, reply: float | None, reference: float | None) -> bool | None:
    if reply is None or reference is None:
        return None
    if distance:
        return reply <= DISTANCE_SLACK * reference
    if name == "in_key":
        return reply >= reference - IN_KEY_SLACK
    if name == "chromatic":
        return abs(reply - reference) <= IN_KEY_SLACK
    if name == "overlap":
        return reply <= reference
    if name == "copy":
        return reply <= MAX_COPY_SHARE
    if name in ("pulse", "tempo"):
        return reply >= reference - PULSE_SLACK
    return None


def format_table(result: dict[str, Any], title: str) -> str:
    lines = [
        title,
        f"{'measure':<12} {'unit':<13} {'reply':>7} {'next':>7} {'control':>8}  done-when",
    ]
    for name, row in result["measures"].items():
        cells = ["-" if row[c] is None else f"{row[c]:.3f}" for c in ("reply", "next", "control")]
        ok = {True: "ok", False: "NOT MET", None: ""}[row["ok"]]
        lines.append(
            f"{name:<12} {row['unit']:<13} {cells[0]:>7} {cells[1]:>7} {cells[2]:>8}  {ok}"
        )
    lines.append(
        f"calls {result['calls']}, reply notes {result['reply_notes_mean']:.1f} on average, "
        f"{result['silent_replies']} silent, hanging notes {result['hanging_notes']}"
    )
    if result.get("voices"):
        lines.append("voices: " + ", ".join(f"{v} {n}" for v, n in result["voices"].items()))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from antiphon.daemon.musician.model.model_file import ModelError
    from antiphon.daemon.musician.model.voices import open_engine
    from antiphon.daemon.settings import Settings, SettingsError
    from antiphon.training.calls import SILENCE_S, call_pairs
    from antiphon.training.corpus import CorpusError, load_split

    values = {name: getattr(args, name) for name in RESPOND_SETTINGS}
    values["seed"] = DEFAULT_SEED if values["seed"] is None else values["seed"]
    # The daemon's call is the call cut here: it ends after the cut's silence, not when the
    # turn judge would end it (a breath inside it); eval-turns measures the judge.
    if values["turns"] is None:
        values["turns"] = "gap"
    if values["phrase_gap_s"] is None:
        values["phrase_gap_s"] = SILENCE_S
    try:
        settings = Settings(
            model=args.model,
            echo_window_ms=0.0,
            **{name: value for name, value in values.items() if value is not None},
        )
        performances = load_split(args.corpus, args.split)
        engine, voices = open_engine(settings)
    except (SettingsError, CorpusError, ModelError) as err:
        print(f"antiphon eval-replies: {err}", file=sys.stderr)
        return 2
    pairs = [
        pair
        for name, notes in performances
        for pair in call_pairs(name, notes, silence_s=args.silence_s)
    ]
    if args.beat != "all":
        from antiphon.training.pulse_measures import beat_kind

        pairs = [pair for pair in pairs if beat_kind(pair.call) == args.beat]
    pairs = choose(pairs, args.calls)
    if not pairs:
        print(f"antiphon eval-replies: no calls in {args.corpus} ({args.split})", file=sys.stderr)
        return 2
    seed = settings.seed or 0
    answered = [answer(pair, settings, engine, seed + i, voices) for i, pair in enumerate(pairs)]
    result = evaluate(answered)
    result.update(corpus=str(args.corpus), split=args.split, model=str(settings.model))
    result["settings"] = {name: getattr(settings, name) for name in RESPOND_SETTINGS}
    result["beat"] = args.beat
    result["silence_s"] = args.silence_s
    print(format_table(result, f"{args.corpus} ({args.split}), {settings.model}"))
    if args.json is not None:
        try:
            args.json.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
        except OSError as err:
            print(f"antiphon eval-replies: cannot write {args.json}: {err}", file=sys.stderr)
            return 2
    return 0
