"""The player's tempo, followed onset by onset at the level of the first sure beat: what the
outgoing clock follows (``clock_out``).

The :class:`~antiphon.daemon.musician.hearing.beat.BeatTracker` chooses its grid unit afresh at
every onset from the last few seconds, so a player who moves from eighths to triplets or
plays a run is heard at another level, and the same music played 10 % faster is heard
differently. A clock that follows it trails a player who speeds up, or holds. The
:class:`TempoFollower` starts from the tracker's first sure beat and keeps that beat's unit
(beat over subdivision). At each onset group (``ONSET_GROUP_S``):

1. It numbers the group: the interval from the last grid point, in whole units of the
   tracker's strongest unit within ``PEAK_SEARCH`` of its own. That unit comes from what was
   heard, so the count cannot run away to ever shorter units on the first sixteenths. A group
   a quarter of a unit or more from every grid point (``BETWEEN_UNITS``: a triplet on an
   eighths' grid, a sixteenth, an ornament) is a finer note, not counted.
2. It updates a Kalman filter on (the time of the last grid point, the unit, the unit's
   change a unit) with the group's time. An onset far off the grid (an ornament, a spread
   chord) counts less.
3. It offers the unit ``LEAD_UNITS`` ahead, so a player who speeds up is led, not trailed.

Its memory is counted in units, not seconds. A rest of more than ``REST_BEATS`` beats
anchors the grid again on the next onset, keeping the unit. So does a slip: groups between
grid points yet a whole number of units apart, ``LOST_ONSETS`` in a row while the tracker
hears a beat, are the player's grid, which the follower's has slipped off (a hiccup, a grid
point misplaced), not finer notes. Otherwise every later onset would lie between grid points
and none would be counted again. A sure beat of the tracker's at no metrical level of the
followed one (a new tune, a new tempo) starts it afresh.

Pure, plain floats; :class:`~antiphon.daemon.musician.clocks.beat_keeper.BeatKeeper` feeds it
the player's onsets and asks it for the beat the clock follows.
"""

from __future__ import annotations

import math
from dataclasses import replace

from antiphon.daemon.musician.hearing.beat import BeatGrid, BeatTracker
from antiphon.daemon.musician.hearing.phrase_shape import ONSET_GROUP_S

PEAK_SEARCH = 0.1  # the tracker's unit used for numbering: its peak within 10 % of ours
LEAD_UNITS = 3.0  # the unit offered is the one this many units ahead of the last onset
REST_BEATS = 4.0  # a longer silence anchors the grid again on the next onset
ONSET_NOISE_S = 0.008  # a player's timing spread about the grid, as the filter assumes
UNIT_WANDER = 1e-4  # how far the unit may move a unit, unexplained (share of the unit)
CHANGE_WANDER = 2e-4  # how far its change a unit may move a unit (share of the unit)
OFF_GRID_UNITS = 0.25  # an onset this far off the grid (in units) counts about half
BETWEEN_UNITS = 0.25  # an onset further than this from every grid point is not on the grid
# The grid slipped: this many groups in a row between grid points, a whole number of units
# apart (within BETWEEN_UNITS), while the tracker hears a beat at least SLIP_HEARD sure (as
# the clock needs to follow one; onsets out of time seldom are). Chosen on the validation
# pieces (BENCHMARKS.md, "Ableton Link and the outgoing clock", "Round 17").
LOST_ONSETS = 4
SLIP_HEARD = 0.15
# Other metrical levels of one tempo: a beat heard at one of them is the same tempo.
METRICAL_RATIOS = (1.0, 2.0, 0.5, 3.0, 1.0 / 3.0, 1.5, 2.0 / 3.0)
NEW_TEMPO = 0.08  # a sure beat this far from every level of the followed one: a new tempo


def nearest_level(reading_bpm: float, tempo_bpm: float) -> float:
    """The reading at the metrical level (``METRICAL_RATIOS``) nearest ``tempo_bpm``."""
    return min(
        (reading_bpm * ratio for ratio in METRICAL_RATIOS),
        key=lambda level: abs(math.log(level / tempo_bpm)),
    )


class TempoFollower:
    """Follows the player's tempo from the first sure beat (see the module docstring)."""

    def __init__(self, tracker: BeatTracker) -> None:
        self._tracker = tracker
        self.reset()

    def reset(self) -> None:
        """Forget the beat followed."""
        self._last_s = -math.inf
        self._subdivision = 0  # units a beat; 0 until started
        self._units_since_beat = 0
        self._off_grid_s = -math.inf  # the last group off the grid
        self._off_grid_run = 0  # groups off the grid in a row, a whole number of units apart
        self._state = [0.0, 0.0, 0.0]  # time of the last grid point, unit, change a unit
        self._covariance = [0.0] * 6  # P's entries 00, 01, 02, 11, 12, 22
        self._grid: BeatGrid | None = None

    @property
    def started(self) -> bool:
        return self._subdivision > 0

    def hear_sure(self, grid: BeatGrid) -> None:
        """A beat the tracker is sure of: the one followed from now if none is, or if it is
        at no metrical level of it."""
        if self.started:
            beat_s = self._state[1] * self._subdivision
            tempo_bpm = 60.0 / beat_s
            if abs(nearest_level(grid.tempo_bpm, tempo_bpm) / tempo_bpm - 1.0) <= NEW_TEMPO:
                return
        self._start(grid)

    def _start(self, grid: BeatGrid) -> None:
        unit_s = grid.unit_s
        self._subdivision = grid.subdivision
        self._state = [self._last_s, unit_s, 0.0]
        self._covariance = [0.01**2, 0.0, 0.0, (0.05 * unit_s) ** 2, 0.0, (0.005 * unit_s) ** 2]
        self._units_since_beat = round((self._last_s - grid.anchor_s) / unit_s) % grid.subdivision
        self._grid = None

    def onset(self, time_s: float) -> None:
        """The player's note-on at ``time_s`` (in order; after the tracker heard it)."""
        if time_s - self._last_s < ONSET_GROUP_S:
            return
        self._last_s = time_s
        if not self.started:
            return
        grid_s, unit_s = self._state[0], self._state[1]
        counted_s = self._tracker.peak_unit_near(unit_s, PEAK_SEARCH)
        position = (time_s - grid_s) / counted_s
        units = round(position)
        if position <= BETWEEN_UNITS:
            return  # the same grid point (a spread chord, an ornament)
        if abs(position - units) > BETWEEN_UNITS:
            self._off_grid(time_s, position, counted_s)
            return  # between two grid points: a finer note, not a grid point
        self._off_grid_run = 0
        if units > REST_BEATS * self._subdivision:
            self._state = [time_s, unit_s, 0.0]
            self._units_since_beat = 0
            return
        self._units_since_beat += units
        self._update(time_s, units)
        unit_s = self._state[1]
        aimed_s = unit_s + LEAD_UNITS * self._state[2]
        beats_since = self._units_since_beat % self._subdivision
        self._grid = BeatGrid(
            beat_s=aimed_s * self._subdivision,
            anchor_s=self._state[0] - beats_since * unit_s,
            subdivision=self._subdivision,
        )

    def _off_grid(self, time_s: float, position: float, counted_s: float) -> None:
        """A group between grid points. Finer notes (triplets, sixteenths) lie apart by parts
        of a unit; groups a whole number of units apart, ``LOST_ONSETS`` in a row while the
        tracker hears a beat, are the player's grid, which the follower's has slipped off: the
        grid moves to the onset."""
        apart = (time_s - self._off_grid_s) / counted_s
        regular = (
            1.0 - BETWEEN_UNITS <= apart < math.inf and abs(apart - round(apart)) <= BETWEEN_UNITS
        )
        self._off_grid_run = self._off_grid_run + 1 if regular else 1
        self._off_grid_s = time_s
        if self._off_grid_run < LOST_ONSETS or self._tracker.confidence < SLIP_HEARD:
            return
        self._off_grid_run = 0
        self._units_since_beat += round(position)
        _, unit_s, change = self._state
        _, _, _, p11, p12, p22 = self._covariance
        self._state = [time_s, unit_s, change]
        self._covariance = [ONSET_NOISE_S**2, 0.0, 0.0, p11, p12, p22]

    def _update(self, time_s: float, units: int) -> None:
        """The Kalman filter's step over ``units`` units to an onset at ``time_s``: predict
        with x' = F x, P' = F P F^T + Q (F = [[1, n, n^2/2], [0, 1, n], [0, 0, 1]]), then
        correct with the onset's time. P is symmetric: its six entries, written out."""
        n = float(units)
        h = 0.5 * n * n
        grid_s, unit_s, change = self._state
        p00, p01, p02, p11, p12, p22 = self._covariance
        a0, a1, a2 = p00 + n * p01 + h * p02, p01 + n * p11 + h * p12, p02 + n * p12 + h * p22
        b1, b2 = p11 + n * p12, p12 + n * p22
        q00, q01, q02 = a0 + n * a1 + h * a2, a1 + n * a2, a2
        q11 = b1 + n * b2 + (UNIT_WANDER * unit_s) ** 2 * n
        q12, q22 = b2, p22 + (CHANGE_WANDER * unit_s) ** 2 * n
        predicted_s = grid_s + n * unit_s + h * change
        predicted_unit_s = unit_s + n * change
        residual = time_s - predicted_s
        spread = q00 + ONSET_NOISE_S**2
        if residual * residual > 4.0 * spread:  # far off the grid: it counts less
            spread *= 1.0 + (residual / (OFF_GRID_UNITS * predicted_unit_s)) ** 2
        k0, k1, k2 = q00 / spread, q01 / spread, q02 / spread
        new_unit_s = predicted_unit_s + k1 * residual
        if not 0.6 * unit_s < new_unit_s < 1.6 * unit_s:
            new_unit_s = unit_s  # a count gone wrong: the unit stays
        self._state = [predicted_s + k0 * residual, new_unit_s, change + k2 * residual]
        self._covariance = [
            q00 - k0 * q00,
            q01 - k0 * q01,
            q02 - k0 * q02,
            q11 - k1 * q01,
            q12 - k1 * q02,
            q22 - k2 * q02,
        ]

    def grid(self, confidence: float) -> BeatGrid | None:
        """The beat followed, with the tracker's ``confidence`` (None before it has one)."""
        grid = self._grid
        return None if grid is None else replace(grid, confidence=confidence)
