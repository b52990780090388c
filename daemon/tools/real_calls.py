"""Calls cut from real playing, for ``antiphon bench --calls-from FOLDER``.

Each MIDI file is read as ``antiphon eval-turns`` reads it (its sounding notes, the pedal
applied: :func:`~antiphon.daemon.tools.turns_eval.midi_performances`), and played as the key
messages of those notes (:func:`~antiphon.daemon.tools.turns_replay.note_messages`). A phrase
ends where the playing stops for ``REAL_END_S`` or more (the silences eval-turns calls real
ends). Each phrase gives one call: its last ``max_s`` seconds, from the first note-on in
them, with the notes begun before that left out, so the call ends as the player ended it.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

import mido
from antiphon.daemon.tools.probe import Timed
from antiphon.daemon.tools.turns_eval import midi_performances, silences_of
from antiphon.daemon.tools.turns_replay import note_messages

REAL_END_S = 1.0  # as eval-turns: a silence this long ends a phrase
KeyMessage = tuple[float, mido.Message]


def phrases(
    messages: Sequence[KeyMessage], real_end_s: float = REAL_END_S
) -> list[tuple[float, float]]:
    """The phrases (start, end) of a performance's key messages, in time order: the
    stretches of playing between silences of ``real_end_s`` or more."""
    if not messages:
        return []
    ends = [
        (start_s, end_s)
        for start_s, end_s in silences_of(messages)
        if end_s - start_s >= real_end_s
    ]
    starts_s = [messages[0][0], *(end_s for _, end_s in ends)]
    ends_s = [*(start_s for start_s, _ in ends), messages[-1][0]]
    return list(zip(starts_s, ends_s, strict=True))


def cut_call(
    messages: Sequence[KeyMessage], phrase: tuple[float, float], max_s: float
) -> list[Timed]:
    """The call of ``phrase`` (start, end): from its first note-on in its last ``max_s``
    seconds, times from 0; notes begun before it left out; empty when no note starts there."""
    phrase_start_s, end_s = phrase
    from_s = max(phrase_start_s, end_s - max_s)
    start_s = next(
        (
            time_s
            for time_s, message in messages
            if from_s <= time_s <= end_s and message.type == "note_on" and message.velocity > 0
        ),
        None,
    )
    if start_s is None:
        return []
    call: list[Timed] = []
    started: set[int] = set()
    for time_s, message in messages:
        if not start_s <= time_s <= end_s:
            continue
        if message.type == "note_on" and message.velocity > 0:
            started.add(message.note)
        elif message.note in started:
            started.discard(message.note)
        else:
            continue  # the end of a note begun before the call
        call.append(Timed(time_s - start_s, message))
    return call


def calls_from(
    folder: Path, count: int, seed: int, max_s: float = 6.0, min_notes: int = 3
) -> list[list[Timed]]:
    """``count`` calls cut from the MIDI files under ``folder`` (each phrase of each file a
    candidate with at least ``min_notes`` notes), drawn at random with ``seed``.

    Raises:
        ValueError: no readable MIDI file under the folder, or no phrase in them.
    """
    candidates: list[list[Timed]] = []
    performances = 0
    for _, notes in midi_performances(folder, None, "bench"):
        performances += 1
        messages = note_messages(notes)
        for phrase in phrases(messages):
            call = cut_call(messages, phrase, max_s)
            if sum(1 for e in call if e.message.type == "note_on") >= min_notes:
                candidates.append(call)
    if not performances:
        raise ValueError(f"{folder}: no MIDI files")
    if not candidates:
        raise ValueError(f"{folder}: no phrases of {min_notes} notes or more in its MIDI files")
    rng = random.Random(seed)
    return [rng.choice(candidates) for _ in range(count)]
