"""The tempo the outgoing clock follows: TempoFollower over the beat tracker, on made-up
players (pure: no ports, no clock)."""

from __future__ import annotations

import itertools
import math
import random

import pytest
from antiphon.daemon.musician.hearing.beat import UNIT_MAX_S, UNIT_MIN_S, BeatGrid, BeatTracker
from antiphon.daemon.musician.hearing.tempo_follower import TempoFollower, nearest_level
from hypothesis import given, settings
from hypothesis import strategies as st


def follow(onsets: list[float], start: BeatGrid, start_after: int = 8) -> TempoFollower:
    """A follower that heard ``onsets`` and was told ``start`` after the first few."""
    tracker = BeatTracker()
    follower = TempoFollower(tracker)
    for k, time_s in enumerate(onsets):
        tracker.onset(time_s)
        follower.onset(time_s)
        if k + 1 == start_after:
            follower.hear_sure(start)
    return follower


def played(beats_s: list[float], parts: list[int], jitter_s: float, seed: int) -> list[float]:
    """Each beat split into the given number of even parts (1 to 4), with timing jitter."""
    rng = random.Random(seed)
    onsets = []
    for k, (a, b) in enumerate(itertools.pairwise(beats_s)):
        split = parts[k % len(parts)]
        onsets.extend(a + (b - a) * i / split + rng.gauss(0.0, jitter_s) for i in range(split))
    return sorted(onsets)


def beat_phase_error(grid: BeatGrid, beat_s: float) -> float:
    """How far the grid's beats are from the player's (beats at multiples of ``beat_s``), in
    beats."""
    offset = (grid.anchor_s / beat_s) % 1.0
    return min(offset, 1.0 - offset)


@settings(max_examples=40, deadline=None)
@given(
    bpm=st.floats(60.0, 180.0),
    parts=st.lists(st.sampled_from([1, 2, 3, 4]), min_size=1, max_size=6),
    seed=st.integers(0, 1000),
)
def test_a_steady_player_is_followed_at_the_level_it_started_on(
    bpm: float, parts: list[int], seed: int
) -> None:
    """Beats split into halves, triplets, sixteenths or left whole, in any order: the beat
    followed stays the one it started on, at the player's tempo and on the player's beats."""
    beat_s = 60.0 / bpm
    beats = [k * beat_s for k in range(64)]
    onsets = played(beats, [2] * 4 + parts, 0.004, seed)
    follower = follow(onsets, BeatGrid(beat_s=beat_s, anchor_s=0.0, subdivision=2))
    grid = follower.grid(0.7)
    assert grid is not None
    assert grid.confidence == 0.7 and grid.source == "player"
    assert grid.tempo_bpm == pytest.approx(bpm, rel=0.015)
    assert beat_phase_error(grid, beat_s) <= 0.05


def test_a_player_speeding_up_is_followed_and_led() -> None:
    """Eighths from 100 bpm to 10 % faster over 8 bars: at the ramp's end the follower is
    within 1 % of the player; the tracker's own reading is still further behind."""
    beats, tempo = [0.0], 100.0
    for k in range(16 + 32):
        tempo = 100.0 * (1.0 + 0.1 * min(1.0, max(0.0, (k - 16) / 32)))
        beats.append(beats[-1] + 60.0 / tempo)
    for seed in range(5):
        onsets = played(beats, [2], 0.008, seed)
        follower = follow(onsets, BeatGrid(beat_s=0.6, anchor_s=0.0, subdivision=2))
        grid = follower.grid(1.0)
        assert grid is not None
        assert grid.tempo_bpm == pytest.approx(110.0, rel=0.01)


@pytest.mark.parametrize(
    "gap_eighths",
    [
        # A rest of several beats; the player comes back a third of a beat off the old grid.
        20.0 + 2.0 / 3.0,
        # A hiccup shorter than a rest puts the player 0.4 of an eighth off the grid: every
        # later onset lies between its grid points, yet they go on a whole number of units
        # apart while the tracker hears their beat, so it is the grid that slipped.
        1.4,
    ],
)
def test_the_beat_is_found_where_the_player_comes_back(gap_eighths: float) -> None:
    """The player goes on at the same tempo off the old grid: the grid anchors on the new
    onsets (without the slip rule, a hiccup would leave every later onset uncounted)."""
    beat_s = 0.5
    before = [k * beat_s / 2 for k in range(48)]
    back_s = before[-1] + gap_eighths * beat_s / 2
    after = [back_s + k * beat_s / 2 for k in range(24)]
    follower = follow(before + after, BeatGrid(beat_s=beat_s, anchor_s=0.0, subdivision=2))
    grid = follower.grid(1.0)
    assert grid is not None
    assert grid.tempo_bpm == pytest.approx(120.0, rel=0.01)
    assert beat_phase_error(BeatGrid(beat_s, grid.anchor_s - back_s), beat_s) <= 0.05


def test_a_sure_beat_at_a_new_tempo_starts_it_afresh_one_at_another_level_does_not() -> None:
    tracker = BeatTracker()
    follower = TempoFollower(tracker)
    onsets = [k * 0.3 for k in range(40)]
    for time_s in onsets[:8]:
        tracker.onset(time_s)
        follower.onset(time_s)
    follower.hear_sure(BeatGrid(beat_s=0.6, anchor_s=0.0, subdivision=2))
    for time_s in onsets[8:]:
        tracker.onset(time_s)
        follower.onset(time_s)
    follower.hear_sure(BeatGrid(beat_s=0.3, anchor_s=0.0, subdivision=2))  # double: the same
    follower.onset(onsets[-1] + 0.3)
    grid = follower.grid(1.0)
    assert grid is not None and grid.tempo_bpm == pytest.approx(100.0, rel=0.01)
    follower.hear_sure(BeatGrid(beat_s=0.45, anchor_s=0.0, subdivision=2))  # 133 bpm: new
    assert follower.grid(1.0) is None  # started afresh: no beat until it hears one
    assert follower.started


def test_before_a_sure_beat_and_after_reset_it_offers_none() -> None:
    tracker = BeatTracker()
    follower = TempoFollower(tracker)
    for k in range(20):
        tracker.onset(k * 0.3)
        follower.onset(k * 0.3)
    assert not follower.started and follower.grid(1.0) is None
    follower.hear_sure(BeatGrid(beat_s=0.6, anchor_s=0.0, subdivision=2))
    follower.onset(6.0)
    assert follower.grid(1.0) is not None
    follower.reset()
    assert not follower.started and follower.grid(1.0) is None


@settings(max_examples=60, deadline=None)
@given(
    reading=st.floats(20.0, 400.0),
    tempo=st.floats(20.0, 400.0),
)
def test_the_nearest_level_is_a_metrical_level_of_the_reading_no_further_than_it(
    reading: float, tempo: float
) -> None:
    level = nearest_level(reading, tempo)
    assert any(level == pytest.approx(reading * r) for r in (1, 2, 0.5, 3, 1 / 3, 1.5, 2 / 3))
    assert abs(math.log(level / tempo)) <= abs(math.log(reading / tempo)) + 1e-12


@settings(max_examples=60, deadline=None)
@given(
    unit_s=st.floats(0.02, 2.0),
    within=st.floats(0.0, 0.3),
    onsets=st.lists(st.floats(0.0, 10.0), min_size=0, max_size=30),
)
def test_the_peak_near_a_unit_is_a_candidate_within_reach_or_the_unit(
    unit_s: float, within: float, onsets: list[float]
) -> None:
    tracker = BeatTracker()
    for time_s in sorted(onsets):
        tracker.onset(time_s)
    peak = tracker.peak_unit_near(unit_s, within)
    if peak != unit_s:
        assert UNIT_MIN_S <= peak <= UNIT_MAX_S * 1.001
        assert unit_s / (1 + within) < peak < unit_s * (1 + within)
