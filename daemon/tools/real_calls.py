"""Calls cut from real playing, for ``antiphon bench --calls-from FOLDER``.

A phrase of a performance ends where the playing stops for ``REAL_END_S`` or more (no key
held and none sustained by the pedal: the silences ``antiphon eval-turns`` calls real ends).
Each such end gives one call: the phrase's last ``max_s`` seconds, from the first note-on in
them, with every note and the pedal that sound into the window from before it left out, so
the call is played as the player played it and ends as they ended it. Pure: messages in,
calls out; the MIDI files are read by :func:`~antiphon.daemon.tools.probe.load_phrase`.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

from antiphon.daemon.tools.probe import SUSTAIN_CC, Timed, load_phrase

REAL_END_S = 1.0  # as eval-turns: a silence this long ends a phrase
PEDAL_DOWN = 64  # a CC64 value from here up holds the notes


def sounding_spans(events: Sequence[Timed]) -> list[tuple[float, float]]:
    """The stretches (start, end) in which a key is held or sustained by the pedal."""
    held: set[tuple[int, int]] = set()
    sustained: set[tuple[int, int]] = set()
    pedal = False
    spans: list[tuple[float, float]] = []
    start_s: float | None = None
    for event in sorted(events, key=lambda e: e.time_s):
        message = event.message
        key = (getattr(message, "channel", 0), getattr(message, "note", -1))
        if message.type == "note_on" and message.velocity > 0:
            held.add(key)
            sustained.discard(key)
        elif message.type in ("note_on", "note_off"):
            if key in held:
                held.discard(key)
                if pedal:
                    sustained.add(key)
        elif message.type == "control_change" and message.control == SUSTAIN_CC:
            pedal = message.value >= PEDAL_DOWN
            if not pedal:
                sustained.clear()
        else:
            continue
        sounding = bool(held or sustained)
        if sounding and start_s is None:
            start_s = event.time_s
        elif not sounding and start_s is not None:
            spans.append((start_s, event.time_s))
            start_s = None
    return spans


def phrases(events: Sequence[Timed], real_end_s: float = REAL_END_S) -> list[tuple[float, float]]:
    """The phrases (start, end): the stretches of playing between silences of ``real_end_s``
    or more (the performance's last sound ends one too)."""
    found: list[tuple[float, float]] = []
    start_s: float | None = None
    spans = sounding_spans(events)
    for (span_start_s, end_s), following in zip(spans, [*spans[1:], None], strict=False):
        start_s = span_start_s if start_s is None else start_s
        if following is None or following[0] - end_s >= real_end_s:
            found.append((start_s, end_s))
            start_s = None
    return found


def cut_call(events: Sequence[Timed], phrase: tuple[float, float], max_s: float) -> list[Timed]:
    """The call of ``phrase`` (start, end): from its first note-on in its last ``max_s``
    seconds, times from 0; notes begun before it and the pedal pressed before it left out;
    empty when no note starts there."""
    ordered = sorted(events, key=lambda e: e.time_s)
    phrase_start_s, end_s = phrase
    start_s = next(
        (
            e.time_s
            for e in ordered
            if max(phrase_start_s, end_s - max_s) <= e.time_s <= end_s
            and e.message.type == "note_on"
            and e.message.velocity > 0
        ),
        None,
    )
    if start_s is None:
        return []
    call: list[Timed] = []
    started: set[tuple[int, int]] = set()
    pedal_seen = False
    for event in ordered:
        if not start_s <= event.time_s <= end_s:
            continue
        message = event.message
        key = (getattr(message, "channel", 0), getattr(message, "note", -1))
        if message.type == "note_on" and message.velocity > 0:
            started.add(key)
        elif message.type in ("note_on", "note_off"):
            if key not in started:
                continue  # a note begun before the call
            started.discard(key)
        elif message.type == "control_change" and message.control == SUSTAIN_CC:
            if message.value < PEDAL_DOWN and not pedal_seen:
                continue  # the lifting of a pedal pressed before the call
            pedal_seen = True
        else:
            continue
        call.append(Timed(event.time_s - start_s, message))
    return call


def calls_from(
    folder: Path, count: int, seed: int, max_s: float = 6.0, min_notes: int = 3
) -> list[list[Timed]]:
    """``count`` calls cut from the MIDI files under ``folder`` (each phrase end of each file a
    candidate with at least ``min_notes`` notes), drawn at random with ``seed``.

    Raises:
        ValueError: no MIDI file under the folder, or no phrase end in them.
    """
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".mid", ".midi"))
    if not paths:
        raise ValueError(f"{folder}: no MIDI files")
    candidates: list[list[Timed]] = []
    for path in paths:
        try:
            events = load_phrase(path)
        except (OSError, EOFError, ValueError, KeyError, TypeError):
            continue  # an unreadable file gives no calls; the others do
        for phrase in phrases(events):
            call = cut_call(events, phrase, max_s)
            notes = sum(1 for e in call if e.message.type == "note_on" and e.message.velocity)
            if notes >= min_notes:
                candidates.append(call)
    if not candidates:
        raise ValueError(f"{folder}: no phrase ends in its MIDI files")
    rng = random.Random(seed)
    return [rng.choice(candidates) for _ in range(count)]
