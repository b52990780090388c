"""A memory of the player: an online variable-order model of the player's own phrases, blended
into the model's choice of pitch (the ``mirror`` knob).

What it learns, from each note the player starts (the first note of each onset group, as
the melody a listener follows): a symbol made of the interval from the previous note
(semitones, clipped to +-``MAX_INTERVAL``) and the class of the inter-onset interval against
the previous one (the log2 ratio in half octaves, clipped to +-``MAX_RATIO_CLASS``). Intervals
and ratios, not pitches and seconds, so a motif carries to another key and tempo. Symbols
chain within a phrase (a note more than ``PHRASE_BREAK_S`` after the previous starts a new
one). Every context of order 0 to ``MAX_ORDER`` symbols counts what followed it, as in the
Continuator.

Bounded and constant work per note: the memory holds the player's last
``CAPACITY_PHRASES`` phrases, and at most ``CAPACITY_NOTES`` notes (a phrase that never
ends). Each note heard updates ``MAX_ORDER + 1`` counts; while the memory holds more than
that, each note heard also forgets the oldest notes' counts, ``FORGET_PER_NOTE`` at most
(the same number of decrements each), so the phrase a new one pushes out is forgotten over
the next notes, never all at once. The counts live in plain dicts.

Blending (:class:`MemoryBlend`): at each draw, the note-on tokens' share of the model's
distribution stays the model's (whether to play a note is its call); within it, the pitches
are ``(1 - mirror) * the model's + mirror * the memory's``, where the memory's is its
prediction times the model's, renormalised (the memory chooses among the pitches the model,
with the reply's pushes and masks, finds plausible; a forbidden pitch stays forbidden). The
memory predicts the next interval from the reply's own melody so far (at the reply's start,
the call's last notes), using the longest context it has seen; the pitch is the reply's last
pitch plus that interval.
"""

from __future__ import annotations

import math
from collections import deque
from typing import NamedTuple

import numpy as np
from antiphon.daemon.codec import PITCHES
from antiphon.daemon.musician.hearing.phrase_shape import ONSET_GROUP_S

MAX_INTERVAL = 24
MAX_RATIO_CLASS = 4
MAX_ORDER = 4
CAPACITY_PHRASES = 64
CAPACITY_NOTES = 1024
FORGET_PER_NOTE = 2
PHRASE_BREAK_S = 2.0
INTERVALS = 2 * MAX_INTERVAL + 1
RATIO_CLASSES = 2 * MAX_RATIO_CLASS + 1

Context = tuple[int, ...]


class MelodyState(NamedTuple):
    """Where a melody stands: its last pitch and onset, the inter-onset interval before it,
    and the last symbols (at most ``MAX_ORDER``)."""

    pitch: int
    onset_s: float
    ioi_s: float
    context: Context


NO_MELODY = MelodyState(-1, -math.inf, 0.0, ())


def symbol_of(interval: int, ratio_class: int) -> int:
    interval = max(-MAX_INTERVAL, min(MAX_INTERVAL, interval))
    ratio_class = max(-MAX_RATIO_CLASS, min(MAX_RATIO_CLASS, ratio_class))
    return (interval + MAX_INTERVAL) * RATIO_CLASSES + ratio_class + MAX_RATIO_CLASS


def interval_of(symbol: int) -> int:
    return symbol // RATIO_CLASSES - MAX_INTERVAL


def advance(state: MelodyState, pitch: int, time_s: float) -> tuple[MelodyState, int | None]:
    """The melody after a note-on, and the symbol it made (None: a chord note, the phrase's
    first note, or a note after a phrase break)."""
    elapsed_s = time_s - state.onset_s
    if state.pitch >= 0 and elapsed_s <= ONSET_GROUP_S:
        return state, None  # a note of the same onset group: the melody stays
    if state.pitch < 0 or elapsed_s > PHRASE_BREAK_S:
        return MelodyState(pitch, time_s, 0.0, ()), None
    ratio_class = 0
    if state.ioi_s > 0.0:
        ratio_class = round(2.0 * math.log2(elapsed_s / state.ioi_s))
    symbol = symbol_of(pitch - state.pitch, ratio_class)
    context = (*state.context, symbol)[-MAX_ORDER:]
    return MelodyState(pitch, time_s, elapsed_s, context), symbol


class PlayerMemory:
    """The player's phrases in this performance (see the module docstring). Not thread-safe:
    the performer's thread owns it."""

    def __init__(
        self, capacity_notes: int = CAPACITY_NOTES, capacity_phrases: int = CAPACITY_PHRASES
    ) -> None:
        self.capacity_notes = capacity_notes
        self.capacity_phrases = capacity_phrases
        self.clear()

    def clear(self) -> None:
        """Forget everything heard."""
        self._counts: dict[Context, dict[int, int]] = {}
        self._totals: dict[Context, int] = {}
        # (context, symbol, phrase number) per note, oldest first
        self._learned: deque[tuple[Context, int, int]] = deque()
        self._phrase = 0  # the number of the phrase being heard
        self.state = NO_MELODY
        self.version = 0  # changes whenever the counts do

    @property
    def notes(self) -> int:
        """How many notes (symbols) the memory holds."""
        return len(self._learned)

    @property
    def phrases(self) -> int:
        """How many phrases the memory holds notes of (the oldest to the one being heard)."""
        return self._phrase - self._learned[0][2] + 1 if self._learned else 0

    def note_on(self, pitch: int, time_s: float) -> None:
        """A note the player started: learn what followed the context before it."""
        before = self.state
        self.state, symbol = advance(before, pitch, time_s)
        if symbol is None:
            if self.state is not before:  # not a chord note: a phrase starts
                self._phrase += 1
            return
        self._learned.append((before.context, symbol, self._phrase))
        self._count(before.context, symbol, +1)
        self._forget_beyond_capacity()
        self.version += 1

    def _forget_beyond_capacity(self) -> None:
        learned = self._learned
        for _ in range(FORGET_PER_NOTE):
            if len(learned) <= self.capacity_notes and self.phrases <= self.capacity_phrases:
                return
            context, symbol, _ = learned.popleft()
            self._count(context, symbol, -1)

    def _count(self, context: Context, symbol: int, step: int) -> None:
        counts, totals = self._counts, self._totals
        for order in range(len(context) + 1):
            key = context[len(context) - order :]
            followers = counts.get(key)
            if followers is None:
                followers = counts[key] = {}
            left = followers.get(symbol, 0) + step
            if left > 0:
                followers[symbol] = left
            else:
                followers.pop(symbol, None)
            total = totals.get(key, 0) + step
            if total > 0:
                totals[key] = total
            else:
                totals.pop(key, None)
                counts.pop(key, None)

    def followers(self, context: Context) -> dict[int, int] | None:
        """The counts after the longest suffix of ``context`` the memory has seen (None: the
        memory is empty)."""
        for order in range(min(len(context), MAX_ORDER), -1, -1):
            key = context[len(context) - order :]
            if self._totals.get(key, 0) > 0:
                return self._counts[key]
        return None

    def interval_weights(self, context: Context, out: np.ndarray) -> bool:
        """The memory's next-interval counts into ``out`` [INTERVALS] (index interval +
        ``MAX_INTERVAL``); False (``out`` untouched) when the memory is empty."""
        followers = self.followers(context)
        if not followers:
            return False
        out.fill(0.0)
        for symbol, count in followers.items():
            out[interval_of(symbol) + MAX_INTERVAL] += count
        return True

    def snapshot(self) -> PlayerMemory:
        """An independent copy (for the state slots)."""
        copy = PlayerMemory(self.capacity_notes, self.capacity_phrases)
        copy._counts = {key: dict(value) for key, value in self._counts.items()}
        copy._totals = dict(self._totals)
        copy._learned = deque(self._learned)
        copy._phrase = self._phrase
        copy.state = self.state
        copy.version = self.version + 1
        return copy

    def restore(self, other: PlayerMemory) -> None:
        """Become a copy of ``other`` (which stays the caller's)."""
        copy = other.snapshot()
        self.capacity_notes, self.capacity_phrases = copy.capacity_notes, copy.capacity_phrases
        self._counts, self._totals, self._learned = copy._counts, copy._totals, copy._learned
        self._phrase = copy._phrase
        self.state = copy.state
        self.version += 1


class MemoryBlend:
    """The blend of the memory into the engine's note-on choice, for one melody state at a
    time (:meth:`at`); the engine calls it with the unnormalised probabilities."""

    def __init__(self, memory: PlayerMemory, mirror: float) -> None:
        self.memory = memory
        self.mirror = mirror
        self._intervals = np.zeros(INTERVALS, np.float64)
        self._pitches = np.zeros(PITCHES, np.float64)
        self._scratch = np.zeros(PITCHES, np.float64)
        self._key: tuple[int, int, Context] | None = None  # (version, pitch, context) cached
        self._known = False
        self._state = NO_MELODY

    def at(self, state: MelodyState) -> MemoryBlend:
        self._state = state
        return self

    def _pitch_weights(self) -> bool:
        state = self._state
        key = (self.memory.version, state.pitch, state.context)
        if key == self._key:
            return self._known
        self._key = key
        self._known = state.pitch >= 0 and self.memory.interval_weights(
            state.context, self._intervals
        )
        if self._known:
            pitches = self._pitches
            pitches.fill(0.0)
            low = max(0, state.pitch - MAX_INTERVAL)
            high = min(PITCHES - 1, state.pitch + MAX_INTERVAL)
            first = low - (state.pitch - MAX_INTERVAL)
            pitches[low : high + 1] = self._intervals[first : first + high - low + 1]
        return self._known

    def __call__(self, weights: np.ndarray) -> None:
        if not self._pitch_weights():
            return
        model = weights[:PITCHES]
        mass = float(np.add.reduce(model))  # model.sum(), without its Python wrapper
        if mass <= 0.0:
            return
        # The memory's prediction weighed by the model's own (pushed, masked) choice: the memory
        # picks among the pitches the model finds plausible, and a forbidden one stays so.
        memory = np.multiply(self._pitches, model, out=self._scratch)
        total = float(np.add.reduce(memory))
        if total <= 0.0:
            return
        model *= 1.0 - self.mirror
        memory *= self.mirror * mass / total
        model += memory
