"""A tunebook the tests write themselves, with what each tune holds worked out here, from the
tune's own building blocks (never from a reader's output): the notes as played (repeats and
first/second endings followed, ties joined), their pitches under the key signature and their
times under the meter, unit length and tempo."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

LETTER_SEMITONES = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
# Each key's signature: the letters it raises (+1) or lowers (-1).
KEY_SIGNATURES = {
    "C": {},
    "G": {"F": 1},
    "D": {"F": 1, "C": 1},
    "A": {"F": 1, "C": 1, "G": 1},
    "F": {"B": -1},
    "Bb": {"B": -1, "E": -1},
    "Am": {},
    "Em": {"F": 1},
}
METER_QUARTERS = {"4/4": 4.0, "3/4": 3.0, "6/8": 3.0, "2/4": 2.0}
UNIT_QUARTERS = {"1/8": 0.5, "1/16": 0.25, "1/4": 1.0}
CHORDS = {"C": {0, 4, 7}, "G": {7, 11, 2}, "D": {2, 6, 9}, "Am": {9, 0, 4}, "Em": {4, 7, 11}}
DEFAULT_QUARTERS_PER_MINUTE = 120.0  # abc2midi's tempo when a tune has no Q: field
HEADER_UNIT = "1/8"  # the tunebook's shared L: field, for tunes without their own


@dataclass
class TinyTune:
    """One written tune and what it holds: ``notes`` (pitch, onset_s) as played, the chord
    symbols as played, (onset_s, name), and when its last note ends."""

    text: str
    notes: list[tuple[int, float]] = field(default_factory=list)
    chords: list[tuple[float, str]] = field(default_factory=list)
    last_end_s: float = 0.0


@dataclass
class _Bar:
    text: str
    # pitch, onset in units, length in units, tied into (not a new note)
    notes: list[tuple[int, int, int, bool]]
    chord: str | None
    units: int


def _bar(rng: np.random.Generator, units: int, key: str, chords: bool) -> _Bar:
    """A bar filled exactly: notes of one or two units, a rest now and then, a tie now
    and then (two one-unit notes of one pitch joined, so one sounding note)."""
    text, notes, at = "", [], 0
    chord = str(rng.choice(list(CHORDS))) if chords else None
    if chord:
        text += f'"{chord}"'
    while at < units:
        letter = str(rng.choice(list(LETTER_SEMITONES)))
        high = bool(rng.integers(2))
        name = letter.lower() if high else letter
        pitch = 60 + 12 * high + LETTER_SEMITONES[letter] + KEY_SIGNATURES[key].get(letter, 0)
        roll = rng.random()
        if roll < 0.1:
            text += "z"
            at += 1
        elif roll < 0.25 and units - at >= 2:
            text += f"{name}-{name}"
            notes += [(pitch, at, 1, False), (pitch, at + 1, 1, True)]
            at += 2
        elif roll < 0.55 and units - at >= 2:
            text += f"{name}2"
            notes.append((pitch, at, 2, False))
            at += 2
        else:
            text += name
            notes.append((pitch, at, 1, False))
            at += 1
        text += " " if rng.random() < 0.3 else ""
    return _Bar(text, notes, chord, units)


def tiny_tune(number: int, seed: int, chords: bool = False) -> TinyTune:
    """A tune with an A part repeated and a B part with first and second endings (or, one
    time in four, plain bars); its key, meter, unit length and tempo drawn by ``seed``."""
    rng = np.random.default_rng(seed)
    key = str(rng.choice(list(KEY_SIGNATURES)))
    meter = str(rng.choice(list(METER_QUARTERS)))
    own_unit = bool(rng.integers(2))
    unit = str(rng.choice(list(UNIT_QUARTERS))) if own_unit else HEADER_UNIT
    tempo = int(rng.integers(60, 200)) if rng.random() < 0.8 else None
    units = round(METER_QUARTERS[meter] / UNIT_QUARTERS[unit])

    def bars(count: int) -> list[_Bar]:
        return [_bar(rng, units, key, chords) for _ in range(count)]

    def line(items: list[_Bar]) -> str:
        return "|".join(b.text for b in items)

    a, b, first, second = bars(2), bars(1), bars(1), bars(1)
    form = int(rng.integers(4))
    if form == 0:  # no repeats at all
        body, played = f"{line(a + b)}|]", a + b
    elif form == 1:  # an A part repeated from the start, without an opening bar line
        body, played = f"{line(a)}:|{line(b)}|]", a + a + b
    else:  # |: A :| |: B |1 first :|2 second |]
        body = f"|:{line(a)}:||:{line(b)}|1 {line(first)}:|2 {line(second)}|]"
        played = a + a + b + first + b + second
    lines = [f"X:{number}", f"T:Tune {number}", f"M:{meter}"]
    lines += [f"L:{unit}"] if own_unit else []
    lines += [f"Q:1/4={tempo}"] if tempo else []
    lines += [f"K:{key}", body]
    unit_s = UNIT_QUARTERS[unit] * 60.0 / (tempo or DEFAULT_QUARTERS_PER_MINUTE)
    tune = TinyTune("\n".join(lines) + "\n")
    for index, played_bar in enumerate(played):
        start = index * units
        if played_bar.chord:
            tune.chords.append((start * unit_s, played_bar.chord))
        for pitch, at, length, tied in played_bar.notes:
            if not tied:
                tune.notes.append((pitch, (start + at) * unit_s))
            tune.last_end_s = (start + at + length) * unit_s
    return tune


BROKEN_TUNE = "X:{number}\nT:Broken\nK:Zq\n|:ABc:|\n"
EMPTY_TUNE = "X:{number}\nT:Rests only\nM:4/4\nK:C\nz4|z4|]\n"


def write_tunebook(
    path: str, tunes: int, chords: bool = False, broken_at: tuple[int, ...] = ()
) -> list[TinyTune | None]:
    """Write a tunebook of ``tunes`` tunes (a file header with free text, comments and a
    shared L: field; free text between some tunes); the tunes numbered in ``broken_at``
    cannot be read (None in the returned list)."""
    parts = [
        "%abc-2.1",
        "% A tunebook written by the tests",
        "This tunebook's prose, which no tune should pick up.",
        f"L:{HEADER_UNIT}",
        "",
    ]
    written: list[TinyTune | None] = []
    for number in range(1, tunes + 1):
        if number in broken_at:
            parts.append(BROKEN_TUNE.format(number=number))
            written.append(None)
        else:
            tune = tiny_tune(number, seed=number, chords=chords and number % 2 == 0)
            parts.append(tune.text)
            written.append(tune)
        if number % 7 == 0:
            parts.append("Some words between tunes.\n")
    with open(path, "w", encoding="utf-8") as out:
        out.write("\n".join(parts))
    return written
