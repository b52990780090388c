"""The beat: where the pulse of the playing is, how sure Antiphon is of it, and the grid replies
are pulled onto.

:class:`BeatTracker` is causal: it hears onsets one at a time (the player's, and the reply's
own, which must keep the beat) and after each says what the beat is now
(:meth:`BeatTracker.grid`), or that there is none. Pure: no clock, no ports; the performer
feeds it.

How it hears the beat, at each onset group (onsets within ``ONSET_GROUP_S`` are one, a
chord or a spread chord):

1. The grid unit. For every candidate unit ``u`` (``UNIT_MIN_S`` to ``UNIT_MAX_S``, steps of
   0.6 %) it keeps a running resultant of the onsets' phases on that unit,
   ``S_u = sum_k w_k exp(2 pi i t_k / u)``, its weights decaying with a time constant of
   ``MEMORY_S``: only the last few seconds count, so a change of tempo is followed. ``|S_u|``
   over the sum of weights is 1 when every recent onset sits on a grid of ``u`` and near 0
   for onsets that ignore it. The unit is the one with the highest resultant (a slight
   preference for the longer unit breaks the tie between a grid and its halves).
2. The period, refined: the recent onsets are numbered on that unit (each inter-onset
   interval rounded to whole units, so a gradual change of tempo does not slip a unit) and a
   weighted least-squares line through (number, time) gives the unit's length now and where
   the grid lies.
3. The beat: one, two, three or four units (eighths, triplets, sixteenths), the one with
   onsets most on its beats and a tempo a musician would tap (a broad preference around
   ``PREFERRED_BEAT_S``); the beat's phase is where its onsets gather.
4. How sure: the unit's resultant above what random onsets would reach, scaled to 0-1.
   Playing with no steady beat (rubato, free time) keeps it low: :meth:`BeatTracker.grid`
   then says None and replies keep the model's own free timing.

Cost: each onset updates the running resultants (one complex exponential over the ~290
candidate units); the estimate (the unit's choice, the line through at most ``RING`` onsets,
the beat) is made when asked for, once a call (``antiphon bench`` measures both).

:class:`BeatGrid` is what the rest of the daemon uses: a snapshot of the beat (period, a beat
time, the subdivision, bars when known, the confidence) with the questions a reply asks: the
next beat or bar (:meth:`BeatGrid.next_beat_s`, :meth:`BeatGrid.next_bar_s`) and where an
onset goes with a given groove (:meth:`BeatGrid.pull`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from antiphon.daemon.musician.hearing.phrase_shape import ONSET_GROUP_S

UNIT_MIN_S = 0.08  # shortest grid unit considered (a sixteenth at 188 bpm)
UNIT_MAX_S = 0.8  # longest (a beat at 75 bpm, or an eighth at 38)
UNIT_STEP = 1.008  # ratio between neighbouring candidate units
MEMORY_S = 4.0  # time constant of the tracker's memory: onsets older than this count less
RING = 12  # recent onset groups kept for refining the period and the beat
MIN_GROUPS = 5  # fewer onset groups than this: no beat yet
BEAT_MIN_S, BEAT_MAX_S = 0.25, 1.5  # beat periods the tracker reports (40 to 240 bpm)
PREFERRED_BEAT_S = 0.6  # the tempo a listener taps by default (100 bpm)
PREFERENCE_OCTAVES = 0.6  # how broad that preference is (in octaves of tempo)
LONGER_UNIT_BIAS = 0.03  # resultant credit per octave of unit length: a grid over its halves
CONFIDENT = 0.5  # confidence from which there is a beat to follow
SUBDIVISIONS = (1, 2, 3, 4)  # units per beat considered
# How readily a beat of that many units is taken, evidence alike (eighths the commonest).
SUBDIVISION_PRIOR = {1: 0.6, 2: 1.0, 3: 0.75, 4: 0.7}
# Chance level of the unit's resultant: the best of many candidate units for random onsets
# reaches about this many times the resultant's standard error.
CHANCE_FACTOR = 2.2


@dataclass(frozen=True)
class BeatGrid:
    """A snapshot of the beat: what replies are placed on.

    Attributes:
        beat_s: the beat's period in seconds.
        anchor_s: a time that is on a beat (the most recent one heard, usually).
        subdivision: units per beat the replies are pulled onto: 2 eighths, 3 triplets,
            4 sixteenths.
        confidence: 0 (no beat) to 1 (a steady beat).
        source: "player" (the tracker) or "midi" (a DAW's clock).
        beats_per_bar: the meter.
        bar_anchor_s: a time on a downbeat, when bars are known (MIDI clock's song
            position); None: a bar starts on any beat.
    """

    beat_s: float
    anchor_s: float
    subdivision: int = 2
    confidence: float = 1.0
    source: str = "player"
    beats_per_bar: int = 4
    bar_anchor_s: float | None = None

    @property
    def tempo_bpm(self) -> float:
        return 60.0 / self.beat_s

    @property
    def unit_s(self) -> float:
        """The subdivision's length: what reply onsets are pulled onto."""
        return self.beat_s / self.subdivision

    def next_beat_s(self, after_s: float) -> float:
        """The first beat at or after ``after_s``."""
        beats = math.ceil((after_s - self.anchor_s) / self.beat_s - 1e-9)
        return self.anchor_s + beats * self.beat_s

    def next_bar_s(self, after_s: float) -> float:
        """The first downbeat at or after ``after_s``; without known bars, the next beat."""
        if self.bar_anchor_s is None:
            return self.next_beat_s(after_s)
        bar_s = self.beat_s * self.beats_per_bar
        bars = math.ceil((after_s - self.bar_anchor_s) / bar_s - 1e-9)
        return self.bar_anchor_s + bars * bar_s

    def nearest_unit_s(self, time_s: float) -> float:
        """The subdivision point nearest ``time_s``."""
        unit_s = self.unit_s
        return self.anchor_s + round((time_s - self.anchor_s) / unit_s) * unit_s

    def pull(self, time_s: float, groove: float, not_before_s: float = -math.inf) -> float:
        """Where an onset the model placed at ``time_s`` is played with ``groove`` (0: where
        it is; 1: on the nearest subdivision point), never before ``not_before_s``."""
        if groove <= 0.0:
            return time_s
        target_s = self.nearest_unit_s(time_s)
        if target_s < not_before_s:
            target_s += self.unit_s * math.ceil((not_before_s - target_s) / self.unit_s - 1e-9)
        return time_s + groove * (target_s - time_s)


class BeatTracker:
    """A causal beat tracker over onsets (see the module docstring).

    Feed :meth:`onset` with every note-on's time, in order (the player's and the reply's);
    :meth:`grid` is the beat as heard so far, None while there is no steady one (it uses
    nothing heard after the last onset).
    """

    def __init__(self, beats_per_bar: int = 4) -> None:
        self.beats_per_bar = beats_per_bar
        count = int(math.log(UNIT_MAX_S / UNIT_MIN_S) / math.log(UNIT_STEP)) + 1
        self._units_s = UNIT_MIN_S * UNIT_STEP ** np.arange(count)
        self._cycles_per_s = 2.0 * np.pi / self._units_s
        self._bias = LONGER_UNIT_BIAS * np.log2(self._units_s / UNIT_MIN_S)
        self._sums = np.zeros(count, np.complex128)
        self._phasor = np.zeros(count, np.complex128)
        self._magnitude = np.zeros(count, np.float64)
        self._times = np.zeros(RING, np.float64)  # recent onset groups, a ring
        self.reset()

    def reset(self) -> None:
        """Forget everything heard."""
        self._sums.fill(0.0)
        self._weight = 0.0
        self._weight_sq = 0.0
        self._origin_s: float | None = None
        self._last_s = -math.inf
        self._groups = 0
        self._grid: BeatGrid | None = None
        self._confidence = 0.0
        self._subdivision = 0  # the beat's units, kept while it stays plausible
        self._stale = False  # onsets heard since the last estimate

    @property
    def confidence(self) -> float:
        """How sure the tracker is of the beat now: 0 none to 1 steady."""
        self._refresh()
        return self._confidence

    @property
    def groups(self) -> int:
        """Onset groups heard since the last reset."""
        return self._groups

    def grid(self) -> BeatGrid | None:
        """The beat as heard so far; None when there is no steady beat."""
        self._refresh()
        grid = self._grid
        if grid is None or grid.confidence < CONFIDENT:
            return None
        return grid

    def estimate(self) -> BeatGrid | None:
        """The best guess of the beat, however unsure (None before enough onsets)."""
        self._refresh()
        return self._grid

    def peak_unit_near(self, unit_s: float, within: float) -> float:
        """The candidate grid unit whose resultant is strongest within a factor ``1 +
        within`` of ``unit_s`` (``unit_s`` itself where no candidate is)."""
        units = self._units_s
        low = int(np.searchsorted(units, unit_s / (1.0 + within), side="right"))
        high = int(np.searchsorted(units, unit_s * (1.0 + within), side="left"))
        if low >= high:
            return unit_s
        return float(units[low + int(np.argmax(np.abs(self._sums[low:high])))])

    def onset(self, time_s: float) -> None:
        """Hear an onset at ``time_s`` (in order; onsets within ``ONSET_GROUP_S`` of the
        group's first are the same group)."""
        if time_s - self._last_s < ONSET_GROUP_S:
            return
        if self._origin_s is None:
            self._origin_s = time_s
        decay = math.exp(-(time_s - self._last_s) / MEMORY_S) if self._groups else 0.0
        self._last_s = time_s
        self._times[self._groups % RING] = time_s
        self._groups += 1
        relative_s = time_s - self._origin_s
        phasor = self._phasor
        np.multiply(self._cycles_per_s, 1j * relative_s, out=phasor)
        np.exp(phasor, out=phasor)
        self._sums *= decay
        self._sums += phasor
        self._weight = self._weight * decay + 1.0
        self._weight_sq = self._weight_sq * decay * decay + 1.0
        self._stale = True

    def _refresh(self) -> None:
        """Estimate the beat from what was heard, if anything was heard since the last time
        (asked for, not made at every onset: the performer asks once a call)."""
        if not self._stale:
            return
        self._stale = False
        if self._groups < MIN_GROUPS:
            self._grid, self._confidence = None, 0.0
            return
        now_s = self._last_s
        magnitude = self._magnitude
        np.abs(self._sums, out=magnitude)
        magnitude *= 1.0 / self._weight
        resultant_best = float(magnitude.max())
        magnitude += self._bias
        unit_s = float(self._units_s[int(magnitude.argmax())])
        chance = min(0.95, CHANCE_FACTOR * math.sqrt(self._weight_sq) / self._weight)
        self._confidence = max(0.0, min(1.0, (resultant_best - chance) / (1.0 - chance)))
        kept = min(self._groups, RING)
        ring = self._times.tolist()
        first = self._groups - kept
        times = [ring[(first + k) % RING] for k in range(kept)]
        fitted = _fit_unit(times, unit_s, now_s)
        if fitted is None:
            self._grid = None
            return
        unit_s, on_unit_s, numbers, weights = fitted
        beat_s, subdivision, anchor_s = self._choose_beat(numbers, weights, unit_s, on_unit_s)
        self._grid = BeatGrid(
            beat_s=beat_s,
            anchor_s=anchor_s,
            subdivision=max(2, subdivision),
            confidence=self._confidence,
            source="player",
            beats_per_bar=self.beats_per_bar,
        )

    def _choose_beat(
        self, numbers: list[int], weights: list[float], unit_s: float, on_unit_s: float
    ) -> tuple[float, int, float]:
        """(beat period, units per beat, a beat time) for a grid of ``unit_s`` whose unit
        number 0 is at ``on_unit_s`` (onsets numbered ``numbers``): the subdivision whose
        beats gather the onsets, at a tappable tempo."""
        best: tuple[float, int, float] | None = None
        best_score = -math.inf
        kept_score = -math.inf
        kept: tuple[float, int, float] | None = None
        total = sum(weights)
        # The weight on each unit of a 12-unit cycle: every subdivision's beats are sums of it.
        cycle = [0.0] * 12
        for number, weight in zip(numbers, weights, strict=True):
            cycle[number % 12] += weight
        for subdivision in SUBDIVISIONS:
            beat_s = unit_s * subdivision
            if not BEAT_MIN_S <= beat_s <= BEAT_MAX_S:
                continue
            # Which unit of the beat is its downbeat: the one most weight falls on.
            mass = [sum(cycle[position::subdivision]) for position in range(subdivision)]
            heaviest = max(mass)
            phase = mass.index(heaviest)
            # How much more often than by chance the onsets fall on this beat's beats.
            evidence = subdivision * heaviest / total
            octaves = math.log2(beat_s / PREFERRED_BEAT_S) / PREFERENCE_OCTAVES
            score = math.exp(-0.5 * octaves * octaves) * evidence * SUBDIVISION_PRIOR[subdivision]
            choice = (beat_s, subdivision, on_unit_s + phase * unit_s)
            if score > best_score:
                best, best_score = choice, score
            if subdivision == self._subdivision:
                kept, kept_score = choice, score
        if best is None:  # the unit is outside every subdivision's tempo range
            return min(BEAT_MAX_S, max(BEAT_MIN_S, unit_s)), 1, on_unit_s
        if kept is not None and kept_score >= 0.8 * best_score:
            best = kept  # hysteresis: the beat does not flip between near-equal readings
        self._subdivision = best[1]
        return best


def _fit_unit(
    times: list[float], unit_s: float, now_s: float
) -> tuple[float, float, list[int], list[float]] | None:
    """Refine a grid unit over recent onset times (oldest first): (unit length, the time of
    unit number 0, each onset's unit number, each onset's weight).

    Each interval is rounded to whole units (so a gradual change of tempo does not slip a
    unit) and a recency-weighted line is fitted through (unit number, time); onsets far off
    that line (grace notes, a swung note) are weighted down and it is fitted again. Unit 0 is
    the latest onset's. None when the onsets span fewer than two units. Plain Python: on two
    dozen numbers it is faster than numpy's calls.
    """
    count = len(times)
    numbers = [0] * count
    for k in range(count - 2, -1, -1):
        numbers[k] = numbers[k + 1] - round((times[k + 1] - times[k]) / unit_s)
    if -numbers[0] < 2:
        return None
    times = [t - now_s for t in times]  # near 0: the sums keep their precision
    recency = [math.exp(t / MEMORY_S) for t in times]
    weights = recency
    slope, intercept = _weighted_line(numbers, times, weights)
    if not 0.5 * unit_s < slope < 2.0 * unit_s:
        return None
    scale = 1.0 / (0.15 * slope)
    weights = [
        r / (1.0 + ((t - intercept - slope * n) * scale) ** 2)
        for r, t, n in zip(recency, times, numbers, strict=True)
    ]
    slope, intercept = _weighted_line(numbers, times, weights)
    if not 0.5 * unit_s < slope < 2.0 * unit_s:
        return None
    return slope, now_s + intercept, numbers, weights


def _weighted_line(
    numbers: list[int], times: list[float], weights: list[float]
) -> tuple[float, float]:
    """(slope, intercept) of the weighted least-squares line time = intercept + slope * number;
    slope 0 when the numbers do not spread."""
    total = sum_n = sum_t = sum_nn = sum_nt = 0.0
    for w, n, t in zip(weights, numbers, times, strict=True):
        total += w
        sum_n += w * n
        sum_t += w * t
        sum_nn += w * n * n
        sum_nt += w * n * t
    spread = total * sum_nn - sum_n * sum_n
    if spread <= 0.0:
        return 0.0, 0.0
    slope = (total * sum_nt - sum_n * sum_t) / spread
    return slope, (sum_t - slope * sum_n) / total


SUBDIVISION_TOLERANCE = 0.12  # of a unit: an onset this near a subdivision point is on it
SUBDIVISION_SHARE = 0.8  # the coarsest subdivision holding this share of the onsets is chosen


def choose_subdivision(onsets_s: list[float], beat_s: float, anchor_s: float) -> int:
    """The subdivision of a beat (``beat_s``, through ``anchor_s``) that a phrase's onsets use:
    2 (eighths), 3 (triplets) or 4 (sixteenths); the coarsest that holds
    ``SUBDIVISION_SHARE`` of them, else the one that holds the most. 2 without onsets."""
    if not onsets_s:
        return 2
    shares = []
    for subdivision in (2, 3, 4):
        unit_s = beat_s / subdivision
        on = 0
        for onset_s in onsets_s:
            offset = (onset_s - anchor_s) / unit_s
            if abs(offset - round(offset)) <= SUBDIVISION_TOLERANCE:
                on += 1
        share = on / len(onsets_s)
        if share >= SUBDIVISION_SHARE:
            return subdivision
        shares.append((share, -subdivision))
    return -max(shares)[1]
