"""The event codec: MIDI performance <-> the model's event tokens.

The vocabulary is the Performance-RNN one (Oore et al. 2018) with log-spaced time shifts:

    NOTE_ON(pitch)    128 tokens
    NOTE_OFF(pitch)   128 tokens
    TIME_SHIFT(bin)   ``time_shift_bins`` tokens, geometric from ``time_shift_min_s`` to
                      ``time_shift_max_s`` (about 10 ms near zero, seconds at the top)
    VELOCITY(bin)     ``velocity_bins`` tokens, sent before a NOTE_ON when the level changes

The sustain pedal is baked into note lengths (the standard treatment of piano MIDI): a key
released while CC64 is down keeps sounding until the pedal lifts or the key is struck again.

Everything is streaming, because the daemon hears one message at a time and must update the
model's state per event. File encoding runs the same classes over a whole performance, so the
tokens a model was trained on are exactly the tokens the daemon feeds it live.

Time shifts are chosen with error feedback: each shift brings the *decoded* clock as close as
possible to the true time, so quantisation error never accumulates along a piece.
"""

from __future__ import annotations

import bisect
import json
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import NamedTuple

import numpy as np

PITCHES = 128
SUSTAIN_CC = 64


class CodecError(ValueError):
    """Codec settings that cannot describe a vocabulary."""


@dataclass(frozen=True)
class CodecConfig:
    """The codec's settings: saved with every model, so a daemon decodes what it was trained on."""

    time_shift_min_s: float = 0.01
    time_shift_max_s: float = 4.0
    time_shift_bins: int = 96
    velocity_bins: int = 32
    include_drums: bool = False
    version: int = 1

    def __post_init__(self) -> None:
        if not 0 < self.time_shift_min_s < self.time_shift_max_s:
            raise CodecError("time shifts need 0 < time_shift_min_s < time_shift_max_s")
        if self.time_shift_bins < 2:
            raise CodecError("time_shift_bins must be at least 2")
        if not 2 <= self.velocity_bins <= 127:
            raise CodecError("velocity_bins must be between 2 and 127")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> CodecConfig:
        try:
            data = json.loads(text)
            return cls(**data)
        except (TypeError, json.JSONDecodeError) as err:
            raise CodecError(f"unreadable codec settings: {err}") from err


class TokenKind:
    NOTE_ON = 0
    NOTE_OFF = 1
    TIME_SHIFT = 2
    VELOCITY = 3


@dataclass(frozen=True)
class Vocabulary:
    """Token numbering and the time and velocity grids for one :class:`CodecConfig`."""

    config: CodecConfig
    time_shifts_s: tuple[float, ...] = field(init=False)

    def __post_init__(self) -> None:
        c = self.config
        ratio = c.time_shift_max_s / c.time_shift_min_s
        shifts = tuple(
            c.time_shift_min_s * ratio ** (k / (c.time_shift_bins - 1))
            for k in range(c.time_shift_bins)
        )
        object.__setattr__(self, "time_shifts_s", shifts)

    @property
    def note_on_base(self) -> int:
        return 0

    @property
    def note_off_base(self) -> int:
        return PITCHES

    @property
    def time_shift_base(self) -> int:
        return 2 * PITCHES

    @property
    def velocity_base(self) -> int:
        return 2 * PITCHES + self.config.time_shift_bins

    @property
    def size(self) -> int:
        return self.velocity_base + self.config.velocity_bins

    def note_on(self, pitch: int) -> int:
        return self.note_on_base + pitch

    def note_off(self, pitch: int) -> int:
        return self.note_off_base + pitch

    def time_shift(self, bin_index: int) -> int:
        return self.time_shift_base + bin_index

    def velocity(self, bin_index: int) -> int:
        return self.velocity_base + bin_index

    def kind(self, token: int) -> int:
        """The :class:`TokenKind` of a token."""
        if not 0 <= token < self.size:
            raise CodecError(f"token {token} outside a vocabulary of {self.size}")
        if token < self.note_off_base:
            return TokenKind.NOTE_ON
        if token < self.time_shift_base:
            return TokenKind.NOTE_OFF
        if token < self.velocity_base:
            return TokenKind.TIME_SHIFT
        return TokenKind.VELOCITY

    def value(self, token: int) -> int:
        """The pitch or bin index a token carries."""
        kind = self.kind(token)
        base = (self.note_on_base, self.note_off_base, self.time_shift_base, self.velocity_base)
        return token - base[kind]

    def velocity_bin(self, velocity: int) -> int:
        """Bin of a MIDI velocity 1..127."""
        v = min(max(int(velocity), 1), 127)
        return (v - 1) * self.config.velocity_bins // 127

    def velocity_of_bin(self, bin_index: int) -> int:
        """The MIDI velocity at the middle of a bin."""
        bins = self.config.velocity_bins
        low = math.ceil(bin_index * 127 / bins) + 1
        high = math.ceil((bin_index + 1) * 127 / bins)
        return max(1, min(127, (low + high) // 2))

    def nearest_shift_bin(self, gap_s: float) -> int | None:
        """The shift bin whose length is nearest ``gap_s``; None when no shift is nearer."""
        shifts = self.time_shifts_s
        if gap_s < shifts[0] / 2:
            return None
        i = bisect.bisect_left(shifts, gap_s)
        if i == 0:
            return 0
        if i == len(shifts):
            return len(shifts) - 1
        return i if shifts[i] - gap_s < gap_s - shifts[i - 1] else i - 1

    def time_tolerance_s(self, gap_s: float) -> float:
        """Largest decoding error of an event that follows the previous one by about ``gap_s``.

        Half the grid step around ``gap_s``, and never under half the smallest shift: no shift
        is shorter than that, so a rest just past a whole number of the largest shifts (4.01 s)
        is written as no shift or the smallest one. Gaps longer than the largest shift are
        written as several shifts, the last one nearest the rest.
        """
        shifts = self.time_shifts_s
        rest = gap_s
        if rest > shifts[-1]:
            rest = math.fmod(rest, shifts[-1]) or shifts[-1]
        i = bisect.bisect_left(shifts, rest)
        if i == 0:
            return shifts[0] / 2
        if i >= len(shifts) - 1:
            return (shifts[-1] - shifts[-2]) / 2 + shifts[0] / 2
        return max((shifts[i + 1] - shifts[i - 1]) / 2, shifts[0] / 2)


class NoteEvent(NamedTuple):
    """A note starting or ending at ``time_s``: what the model's tokens describe."""

    time_s: float
    pitch: int
    velocity: int  # 0 for a note-off


class Note(NamedTuple):
    pitch: int
    onset_s: float
    offset_s: float
    velocity: int


class SustainPedal:
    """Turns key and pedal actions into sounding-note starts and ends (pedal baked in).

    A key released while the pedal is down keeps sounding until the pedal lifts; striking a
    sounding pitch again ends the old note first. Each method returns the note events that
    result, in order, as ``NoteEvent`` (velocity 0 = end).
    """

    def __init__(self) -> None:
        self._sounding: dict[int, bool] = {}  # pitch -> key still physically held
        self._pedal_down = False

    @property
    def sounding(self) -> frozenset[int]:
        return frozenset(self._sounding)

    def key_down(self, pitch: int, velocity: int, time_s: float) -> list[NoteEvent]:
        if velocity <= 0:
            return self.key_up(pitch, time_s)
        events = []
        if pitch in self._sounding:
            events.append(NoteEvent(time_s, pitch, 0))
        self._sounding[pitch] = True
        events.append(NoteEvent(time_s, pitch, min(int(velocity), 127)))
        return events

    def key_up(self, pitch: int, time_s: float) -> list[NoteEvent]:
        if not self._sounding.get(pitch, False):
            return []  # a stray note-off, or a key already lifted under the pedal
        if self._pedal_down:
            self._sounding[pitch] = False
            return []
        del self._sounding[pitch]
        return [NoteEvent(time_s, pitch, 0)]

    def pedal(self, down: bool, time_s: float) -> list[NoteEvent]:
        was_down, self._pedal_down = self._pedal_down, down
        if down or not was_down:
            return []
        released = sorted(p for p, held in self._sounding.items() if not held)
        for p in released:
            del self._sounding[p]
        return [NoteEvent(time_s, p, 0) for p in released]

    def release_all(self, time_s: float) -> list[NoteEvent]:
        """End every sounding note (All Notes Off, end of a file)."""
        ended = sorted(self._sounding)
        self._sounding.clear()
        self._pedal_down = False
        return [NoteEvent(time_s, p, 0) for p in ended]


class TokenWriter:
    """Writes note events as tokens, keeping the decoded clock in step with true time."""

    def __init__(self, vocabulary: Vocabulary, start_s: float = 0.0) -> None:
        self.vocabulary = vocabulary
        self.clock_s = start_s  # the time the tokens written so far decode to
        self._velocity_bin: int | None = None

    def advance_to(self, time_s: float) -> list[int]:
        """Time-shift tokens that bring the decoded clock nearest ``time_s``."""
        v = self.vocabulary
        longest = v.time_shifts_s[-1]
        tokens = []
        while time_s - self.clock_s > longest + v.time_shifts_s[0] / 2:
            tokens.append(v.time_shift(len(v.time_shifts_s) - 1))
            self.clock_s += longest
        bin_index = v.nearest_shift_bin(time_s - self.clock_s)
        if bin_index is not None:
            tokens.append(v.time_shift(bin_index))
            self.clock_s += v.time_shifts_s[bin_index]
        return tokens

    def write(self, event: NoteEvent) -> list[int]:
        v = self.vocabulary
        tokens = self.advance_to(event.time_s)
        if event.velocity == 0:
            tokens.append(v.note_off(event.pitch))
            return tokens
        bin_index = v.velocity_bin(event.velocity)
        if bin_index != self._velocity_bin:
            tokens.append(v.velocity(bin_index))
            self._velocity_bin = bin_index
        tokens.append(v.note_on(event.pitch))
        return tokens

    def follow(self, token: int) -> None:
        """Account for a token someone else wrote into the same stream (the model's reply)."""
        v = self.vocabulary
        kind = v.kind(token)
        if kind == TokenKind.TIME_SHIFT:
            self.clock_s += v.time_shifts_s[v.value(token)]
        elif kind == TokenKind.VELOCITY:
            self._velocity_bin = v.value(token)


class TokenReader:
    """Reads tokens back into note events; tolerant of what a sampling model may emit."""

    def __init__(self, vocabulary: Vocabulary, start_s: float = 0.0) -> None:
        self.vocabulary = vocabulary
        self.clock_s = start_s
        self.velocity = 64
        self.sounding: set[int] = set()

    def read(self, token: int) -> list[NoteEvent]:
        """The note events one token produces (none for shifts, velocities, stray note-offs)."""
        v = self.vocabulary
        kind = v.kind(token)
        value = v.value(token)
        if kind == TokenKind.TIME_SHIFT:
            self.clock_s += v.time_shifts_s[value]
            return []
        if kind == TokenKind.VELOCITY:
            self.velocity = v.velocity_of_bin(value)
            return []
        if kind == TokenKind.NOTE_OFF:
            if value not in self.sounding:
                return []
            self.sounding.discard(value)
            return [NoteEvent(self.clock_s, value, 0)]
        events = []
        if value in self.sounding:
            events.append(NoteEvent(self.clock_s, value, 0))
        self.sounding.add(value)
        events.append(NoteEvent(self.clock_s, value, self.velocity))
        return events

    def release_all(self) -> list[NoteEvent]:
        ended = sorted(self.sounding)
        self.sounding.clear()
        return [NoteEvent(self.clock_s, p, 0) for p in ended]


class StreamEncoder:
    """Live encoding of one player's MIDI, one message at a time (pedal, note-offs, timing)."""

    def __init__(self, vocabulary: Vocabulary, start_s: float = 0.0) -> None:
        self.pedal = SustainPedal()
        self.writer = TokenWriter(vocabulary, start_s)

    def _write(self, events: Iterable[NoteEvent]) -> list[int]:
        tokens: list[int] = []
        for event in events:
            tokens.extend(self.writer.write(event))
        return tokens

    def note_on(self, pitch: int, velocity: int, time_s: float) -> list[int]:
        return self._write(self.pedal.key_down(pitch, velocity, time_s))

    def note_off(self, pitch: int, time_s: float) -> list[int]:
        return self._write(self.pedal.key_up(pitch, time_s))

    def sustain(self, value: int, time_s: float) -> list[int]:
        return self._write(self.pedal.pedal(value >= 64, time_s))

    def all_notes_off(self, time_s: float) -> list[int]:
        return self._write(self.pedal.release_all(time_s))


# Whole performances ---------------------------------------------------------------------


class KeyEvent(NamedTuple):
    """A raw keyboard action: note-on, note-off (velocity 0) or sustain pedal (pitch -1)."""

    time_s: float
    pitch: int
    velocity: int  # for the pedal: the CC64 value


PEDAL = -1


def key_events_to_notes(events: Iterable[KeyEvent]) -> list[Note]:
    """Sounding notes of a performance, sustain pedal applied; events in time order."""
    pedal = SustainPedal()
    started: dict[int, tuple[float, int]] = {}
    notes: list[Note] = []
    last_s = 0.0

    def collect(note_events: list[NoteEvent]) -> None:
        for e in note_events:
            if e.velocity > 0:
                started[e.pitch] = (e.time_s, e.velocity)
            elif e.pitch in started:
                onset, velocity = started.pop(e.pitch)
                notes.append(Note(e.pitch, onset, e.time_s, velocity))

    for e in events:
        last_s = max(last_s, e.time_s)
        if e.pitch == PEDAL:
            collect(pedal.pedal(e.velocity >= 64, e.time_s))
        elif e.velocity > 0:
            collect(pedal.key_down(e.pitch, e.velocity, e.time_s))
        else:
            collect(pedal.key_up(e.pitch, e.time_s))
    collect(pedal.release_all(last_s))
    notes.sort(key=lambda n: (n.onset_s, n.pitch))
    return notes


def notes_to_events(notes: Iterable[Note]) -> list[NoteEvent]:
    """Starts and ends of notes in time order.

    At equal times ends come before starts, except the end of a zero-length note, which
    follows its own start.
    """
    keyed = []
    for n in notes:
        offset = max(n.offset_s, n.onset_s)
        keyed.append(((n.onset_s, 1, n.pitch), NoteEvent(n.onset_s, n.pitch, max(1, n.velocity))))
        end_order = 2 if offset == n.onset_s else 0
        keyed.append(((offset, end_order, n.pitch), NoteEvent(offset, n.pitch, 0)))
    keyed.sort(key=lambda pair: pair[0])
    return [event for _, event in keyed]


def encode_notes(notes: Iterable[Note], vocabulary: Vocabulary) -> np.ndarray:
    """Tokens of a performance given as sounding notes (pedal already applied).

    Overlapping notes of one pitch follow :class:`SustainPedal`: a new strike ends the
    sounding note, and the first end that follows ends the new one.
    """
    writer = TokenWriter(vocabulary)
    sounding: set[int] = set()
    tokens: list[int] = []
    for event in notes_to_events(notes):
        if event.velocity > 0:
            if event.pitch in sounding:
                tokens.extend(writer.write(NoteEvent(event.time_s, event.pitch, 0)))
            sounding.add(event.pitch)
            tokens.extend(writer.write(event))
        elif event.pitch in sounding:
            sounding.discard(event.pitch)
            tokens.extend(writer.write(event))
    return np.asarray(tokens, dtype=np.int16)


def decode_tokens(tokens: Iterable[int], vocabulary: Vocabulary) -> list[Note]:
    """Notes a token sequence describes; notes left sounding end at the last time shift."""
    reader = TokenReader(vocabulary)
    started: dict[int, tuple[float, int]] = {}
    notes: list[Note] = []

    def collect(events: list[NoteEvent]) -> None:
        for e in events:
            if e.velocity > 0:
                started[e.pitch] = (e.time_s, e.velocity)
            else:
                onset, velocity = started.pop(e.pitch)
                notes.append(Note(e.pitch, onset, e.time_s, velocity))

    for token in tokens:
        collect(reader.read(int(token)))
    collect(reader.release_all())
    notes.sort(key=lambda n: (n.onset_s, n.pitch))
    return notes


def notes_array(notes: Sequence[Note]) -> np.ndarray:
    """Notes as a float64 array of rows (pitch, onset_s, offset_s, velocity), for storage."""
    return np.asarray(notes, dtype=np.float64).reshape(-1, 4)


def notes_from_array(array: np.ndarray) -> Iterator[Note]:
    for pitch, onset, offset, velocity in array:
        yield Note(int(pitch), float(onset), float(offset), int(velocity))
