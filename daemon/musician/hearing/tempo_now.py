"""The player's tempo now, and how fast it is changing: what the outgoing clock follows.

The beat tracker's tempo is an average over its last few beats: steady, and 3 to 4 beats
behind a player who speeds up (BENCHMARKS.md, "Ableton Link and the outgoing clock"). The
outgoing clock wants the tempo the player has now, and where it is going, without wandering
while the player keeps a steady tempo. :class:`TempoNow` hears the player's onsets (a store
each) and, asked with the tracker's grid, places the last ``KEPT`` of them on it (each
interval rounded to whole units of the grid) and weighs three accounts of onset time
against place, each with a prior belief:

- a steady tempo: a straight line;
- a tempo that began to change evenly at one of the onsets and still does: the line bent by
  a parabola from there (every onset with ``BEFORE`` before it and ``AFTER`` after it a
  candidate, their prior ``CHANGING`` shared between them);
- a change that began at one onset and ended at a later one: bent, then straight again
  (prior ``CHANGED``).

Each account's curvature has a normal prior (``CHANGE_SD`` of the beat, a beat squared);
the accounts are weighed by their evidence (the marginal likelihood of the onsets, their
scatter taken from the account that fits best), and the tempo now is the weighted mean of
each account's slope at the last onset, its change a beat the weighted mean of theirs. A
bend some jitter suggests moves the tempo a little; one the onsets bear out moves it all
the way; a steady player's scatter leaves it where it is. The priors were set on simulated
takes of the benchmark's player (eighths, 8 ms of timing jitter, 10 % faster over 8 bars;
jitter seeds 10 to 39, never the benchmark's own), weighing how soon the clock follows
against how much it wanders at a steady tempo (BENCHMARKS.md).

Cost: the fits are made when asked, once per new onset: the parabolas from every onset, taken
apart from the line, and their products with each other (one 48 by 48 matrix product; every
pair of a start and an end is a difference of two of them), 0.4 ms at the median on this
project's 2-core test machine (``antiphon bench`` has the row), on the performer's thread
once the notes due are out, and only while a clock goes out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from antiphon.daemon.musician.hearing.beat import BeatGrid
from antiphon.daemon.musician.hearing.phrase_shape import ONSET_GROUP_S

KEPT = 48  # onsets weighed (24 beats of eighths)
MIN_ONSETS = 24  # fewer and there is no tempo to tell (the tracker's is followed till then)
CHANGING = 0.8  # prior: a change of tempo began at one of the onsets and goes on
CHANGED = 0.02  # prior: a change began at one onset and ended at a later one
CHANGE_SD = 0.0017  # the prior's spread of the curvature: of the beat, a beat squared
BEFORE = 3  # a bend needs this many onsets before it ...
AFTER = 4  # ... and this many after it (fewer, and its curvature is a guess)
AFTER_END = 3  # an end of the change needs this many onsets after it
LOST_S = 3.0  # a silence this long: the places start again
MIN_SCATTER = 1e-4  # the onsets' scatter is taken as at least this share of a beat
# The grid's unit only places the onsets (each interval rounded to whole units): a unit that
# moved less than this since the last estimate (the reply's own onsets move the tracker's a
# little) places them the same, so the estimate is not made again.
UNIT_MOVED = 0.05


@dataclass(frozen=True)
class Tempo:
    """The player's beat now and its change.

    Attributes:
        beat_s: the beat's period at the last onset, seconds.
        change_s: how much the period changes a beat, seconds (negative: speeding up).
    """

    beat_s: float
    change_s: float


class TempoNow:
    """The player's tempo now from their onsets (see the module docstring)."""

    def __init__(self, kept: int = KEPT) -> None:
        self._times = np.zeros(kept)
        self._count = 0
        self._asked: tuple[int, int] | None = None  # (count, subdivision) last estimated
        self._asked_unit_s = 1.0
        self._tempo: Tempo | None = None

    def reset(self) -> None:
        self._count = 0
        self._asked = None
        self._tempo = None

    def onset(self, time_s: float) -> None:
        """The player's onset at ``time_s``."""
        kept = self._times.shape[0]
        if self._count:
            gap_s = time_s - self._times[(self._count - 1) % kept]
            if gap_s > LOST_S or gap_s < -ONSET_GROUP_S:
                self.reset()
            elif gap_s < ONSET_GROUP_S:
                return
        self._times[self._count % kept] = time_s
        self._count += 1

    def tempo(self, grid: BeatGrid) -> Tempo | None:
        """The tempo now, the onsets placed on ``grid``'s units (the tracker's); None until
        enough onsets have been heard."""
        if self._count < MIN_ONSETS:
            return None
        key = (self._count, grid.subdivision)
        if self._asked != key or abs(grid.unit_s / self._asked_unit_s - 1.0) > UNIT_MOVED:
            self._asked, self._asked_unit_s = key, grid.unit_s
            self._tempo = self._estimate(grid)
        return self._tempo

    def _estimate(self, grid: BeatGrid) -> Tempo | None:
        kept = self._times.shape[0]
        count = min(self._count, kept)
        order = (self._count - count + np.arange(count)) % kept
        times = self._times[order] - self._times[order[-1]]  # the last onset at 0
        units = np.maximum(1.0, np.round(np.diff(times) / grid.unit_s))
        places = np.concatenate(((0.0,), np.cumsum(units) / grid.subdivision))
        places -= places[-1]  # in beats, the last at 0
        return weigh_accounts(places, times)


def weigh_accounts(places: np.ndarray, times: np.ndarray) -> Tempo | None:
    """The tempo at place 0 from onsets at ``times`` (seconds) and ``places`` (beats),
    weighing the three accounts of the module docstring; None when the places do not spread."""
    count = len(places)
    centred = places - places.mean()
    spread = float(centred @ centred)
    if spread <= 0.0:
        return None
    slope = float(centred @ times) / spread
    if slope <= 0.0:
        return None
    residuals = times - times.mean() - slope * centred
    # The parabola from each onset on, apart from what the line explains: what is left of it,
    # and how much it would move the line's slope. A change that ended is the difference of
    # two of them (from its start, less from its end), so every figure of the pairs comes
    # from these and their products with each other.
    ramps = np.maximum(0.0, places[None, :] - places[:, None]) ** 2
    ramps -= ramps.mean(1, keepdims=True)
    along_each = (ramps @ centred) / spread
    ramps -= along_each[:, None] * centred[None, :]
    products = ramps @ ramps.T
    shares_each = ramps @ residuals
    bends = np.arange(BEFORE, count - AFTER)
    first, last = np.meshgrid(bends, np.arange(count), indexing="ij")
    pairs = (last >= first + 2) & (last <= count - 1 - AFTER_END)
    first, last = first[pairs], last[pairs]
    lengths_each = np.diagonal(products)
    along = np.concatenate((along_each[bends], along_each[first] - along_each[last]))
    shares = np.concatenate((shares_each[bends], shares_each[first] - shares_each[last]))
    lengths = np.concatenate(
        (
            lengths_each[bends],
            lengths_each[first] + lengths_each[last] - 2.0 * products[first, last],
        )
    )
    usable = lengths > 1e-12 * spread
    if not usable.any():
        return Tempo(slope, 0.0)
    lengths = np.where(usable, lengths, 1.0)
    best_gain = float(np.max(np.where(usable, shares * shares / lengths, 0.0)))
    line_rss = float(residuals @ residuals)
    scatter = max((line_rss - best_gain) / max(count - 3, 1), (MIN_SCATTER * slope) ** 2)
    prior_var = (CHANGE_SD * slope) ** 2
    precision = lengths / scatter + 1.0 / prior_var
    curvature = np.where(usable, shares / scatter / precision, 0.0)
    evidence = np.where(
        usable,
        -0.5 * np.log(prior_var * precision) + 0.5 * (shares / scatter) ** 2 / precision,
        -np.inf,
    )
    ones, twos = len(bends), len(first)
    prior = np.concatenate(
        (np.full(ones, CHANGING / max(ones, 1)), np.full(twos, CHANGED / max(twos, 1)))
    )
    log_weights = np.concatenate(((np.log(1.0 - CHANGING - CHANGED),), np.log(prior) + evidence))
    weights = np.exp(log_weights - log_weights.max())
    weights /= weights.sum()
    line_slopes = slope - curvature * along
    # Each account's slope at place 0: a change that goes on bends it by 2 c (0 - start); one
    # that ended, by 2 c (end - start).
    slopes = np.concatenate(
        (
            (slope,),
            line_slopes[:ones] - 2.0 * curvature[:ones] * places[bends],
            line_slopes[ones:] + 2.0 * curvature[ones:] * (places[last] - places[first]),
        )
    )
    changes = np.concatenate(((0.0,), 2.0 * curvature[:ones], np.zeros(twos)))
    beat_s = float(weights @ slopes)
    if not beat_s > 0.0:
        return Tempo(slope, 0.0)
    return Tempo(beat_s, float(weights @ changes))
