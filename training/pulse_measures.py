"""Does a phrase keep the call's beat? Two measures on onsets, pure functions of the call and
the phrase (notes arrays float [N, 4]: pitch, onset_s, offset_s, velocity; one time frame).

The call's grid: over the call's onset groups (onsets within ``GROUP_S`` are one), the beat
period ``T`` (``BEAT_MIN_S`` to ``BEAT_MAX_S``, in steps of ``PERIOD_STEP``) and the phase that
put the most onsets within ``TOLERANCE`` (±12 %) of a half beat of a half-beat grid; among
equally good periods the longest (the strictest grid), in the middle of its run of equally good
neighbours (the period the onsets fit with the least drift). The grid goes on past the call's end.

- pulse: the share of the phrase's onset groups on that grid, minus the share uniformly random
  onsets over the same span get (``2 * TOLERANCE`` when the span is a whole number of half
  beats);
- tempo: the same with the grid's phase refitted to the phrase (the call's period kept, at
  any phase), minus the share random onsets get with their phase refitted the same way
  (estimated over ``CHANCE_DRAWS`` draws with a fixed seed, so the figure repeats).

Both are None for a phrase of fewer than ``MIN_GROUPS`` onset groups or a call whose grid
cannot be fitted (fewer than ``MIN_GROUPS`` onset groups).

:func:`call_steadiness` sorts calls into steady-beat and rubato ones by the call alone: the
grid fitted on its first half, carried over its second half (the pulse of the second half).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

GROUP_S = 0.035
BEAT_MIN_S, BEAT_MAX_S = 0.25, 1.5
PERIOD_STEP = 1.004  # ratio between neighbouring candidate periods
TOLERANCE = 0.12  # of a half beat, either side of a grid point
PHASE_BINS = 400  # phase resolution of the search (the best phase is then recounted exactly)
MIN_GROUPS = 3
CHANCE_DRAWS = 64
CHANCE_SEED = 20261203
SPAN_SAMPLES = 4000  # points the chance share of a span is integrated over

PERIODS_S = BEAT_MIN_S * PERIOD_STEP ** np.arange(
    int(np.log(BEAT_MAX_S / BEAT_MIN_S) / np.log(PERIOD_STEP)) + 1
)


@dataclass(frozen=True)
class HalfBeatGrid:
    """A beat period and a time on its half-beat grid."""

    beat_s: float
    anchor_s: float

    @property
    def half_s(self) -> float:
        return self.beat_s / 2.0

    def on_grid(self, times_s: np.ndarray) -> np.ndarray:
        """Which of ``times_s`` lie within the tolerance of a grid point."""
        position = (times_s - self.anchor_s) / self.half_s
        return np.abs(position - np.rint(position)) <= TOLERANCE


def onset_groups(notes: np.ndarray) -> np.ndarray:
    """The onsets of ``notes``, those within ``GROUP_S`` of their group's first taken as one."""
    if len(notes) == 0:
        return np.zeros(0)
    onsets = np.sort(np.asarray(notes, np.float64)[:, 1])
    groups = [onsets[0]]
    for onset_s in onsets[1:]:
        if onset_s - groups[-1] >= GROUP_S:
            groups.append(onset_s)
    return np.asarray(groups)


def _best_phases(times_s: np.ndarray, periods_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each period, the most onsets a half-beat grid of it holds at its best phase, and
    that phase (in half beats)."""
    return _best_windows(np.mod(times_s[None, :] / (periods_s[:, None] / 2.0), 1.0))


def _best_windows(phases: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each row of ``phases`` (in cycles, 0 to 1), the most of them a window of the
    tolerance's width holds, and the window's centre; by phase bins."""
    count = phases.shape[0]
    bins = np.minimum((phases * PHASE_BINS).astype(np.int64), PHASE_BINS - 1)
    histogram = np.zeros((count, PHASE_BINS), np.int64)
    np.add.at(histogram, (np.arange(count)[:, None], bins), 1)
    width = round(2 * TOLERANCE * PHASE_BINS)
    wrapped = np.concatenate([histogram, histogram[:, :width]], axis=1)
    cumulative = np.concatenate(
        [np.zeros((count, 1), np.int64), np.cumsum(wrapped, axis=1)], axis=1
    )
    windows = cumulative[:, width : width + PHASE_BINS] - cumulative[:, :PHASE_BINS]
    start = windows.argmax(axis=1)
    return windows.max(axis=1), np.mod((start + width / 2.0) / PHASE_BINS, 1.0)


def fit_grid(call: np.ndarray) -> HalfBeatGrid | None:
    """The call's half-beat grid (see the module docstring); None for too few onsets."""
    times_s = onset_groups(call)
    if len(times_s) < MIN_GROUPS:
        return None
    counts, centres = _best_phases(times_s, PERIODS_S)
    # The best periods come in runs of neighbours; the middle of the longest periods' run.
    best_periods = np.flatnonzero(counts == counts.max())
    run_start = len(best_periods) - 1
    while run_start > 0 and best_periods[run_start - 1] == best_periods[run_start] - 1:
        run_start -= 1
    best = best_periods[(run_start + len(best_periods) - 1) // 2]
    beat_s = float(PERIODS_S[best])
    grid = HalfBeatGrid(beat_s, float(centres[best]) * beat_s / 2.0)
    return _refined(grid, times_s)


def _refined(grid: HalfBeatGrid, times_s: np.ndarray) -> HalfBeatGrid:
    """The grid through its onsets by least squares (time against half-beat number), when
    that holds as many of them: the search's steps leave a small error in the period that
    grows as the grid is carried past the call."""
    on = grid.on_grid(times_s)
    numbers = np.rint((times_s[on] - grid.anchor_s) / grid.half_s)
    if len(np.unique(numbers)) < 2:
        return grid
    half_s, anchor_s = np.polyfit(numbers, times_s[on], 1)
    refined = HalfBeatGrid(2.0 * float(half_s), float(anchor_s))
    if not BEAT_MIN_S <= refined.beat_s <= BEAT_MAX_S:
        return grid
    return refined if refined.on_grid(times_s).sum() >= on.sum() else grid


def _chance_share(grid: HalfBeatGrid, first_s: float, last_s: float) -> float:
    """The share of uniformly random onsets over [first_s, last_s] that fall on ``grid``."""
    if last_s <= first_s:
        return float(grid.on_grid(np.asarray([first_s]))[0])
    return float(grid.on_grid(np.linspace(first_s, last_s, SPAN_SAMPLES)).mean())


def pulse_share(call: np.ndarray, phrase: np.ndarray) -> float | None:
    """The share of the phrase's onset groups on the call's grid, minus chance."""
    grid = fit_grid(call)
    times_s = onset_groups(phrase)
    if grid is None or len(times_s) < MIN_GROUPS:
        return None
    share = float(grid.on_grid(times_s).mean())
    return share - _chance_share(grid, float(times_s[0]), float(times_s[-1]))


def _refitted_share(times_s: np.ndarray, beat_s: float) -> float:
    counts, _ = _best_phases(times_s, np.asarray([beat_s]))
    return float(counts[0]) / len(times_s)


def tempo_share(call: np.ndarray, phrase: np.ndarray) -> float | None:
    """The share of the phrase's onset groups on a grid of the call's period at the phrase's
    own best phase, minus what random onsets get the same way."""
    grid = fit_grid(call)
    times_s = onset_groups(phrase)
    if grid is None or len(times_s) < MIN_GROUPS:
        return None
    share = _refitted_share(times_s, grid.beat_s)
    rng = np.random.default_rng(CHANCE_SEED)
    first_s, last_s = float(times_s[0]), float(times_s[-1])
    draws = rng.uniform(first_s, max(last_s, first_s + 1e-6), (CHANCE_DRAWS, len(times_s)))
    counts, _ = _best_windows(np.mod(draws / (grid.beat_s / 2.0), 1.0))
    return share - float(counts.mean()) / len(times_s)


STEADY_FROM = 0.3  # call steadiness from which a call has a steady beat
RUBATO_BELOW = 0.1  # and below which it has none


def call_steadiness(call: np.ndarray) -> float | None:
    """How well the call keeps its own beat: the pulse of its second half on the grid of its
    first half (see the module docstring); None for a call too short to halve."""
    times_s = onset_groups(call)
    if len(times_s) < 2 * MIN_GROUPS + 2:
        return None
    middle_s = float(times_s[len(times_s) // 2])
    call = np.asarray(call, np.float64)
    first, second = call[call[:, 1] < middle_s], call[call[:, 1] >= middle_s]
    return pulse_share(first, second)


def beat_kind(call: np.ndarray) -> str:
    """ "steady", "rubato", or "between" (see :func:`call_steadiness`)."""
    steadiness = call_steadiness(call)
    if steadiness is None:
        return "between"
    if steadiness >= STEADY_FROM:
        return "steady"
    return "rubato" if steadiness < RUBATO_BELOW else "between"
