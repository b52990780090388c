"""The turn judge: how long a silence must last to end the call (pure; no clock, no ports)."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from antiphon.daemon.musician.hearing.phrase import MIN_GAP_S, PhraseDetector
from antiphon.daemon.musician.hearing.turns import (
    ADAPT_LIMIT,
    BEAT_GRACE_S,
    BUDGET_SPAN,
    CUES,
    LATE_LOG_ODDS,
    SHIPPED,
    BeatHint,
    Hazard,
    RecentNotes,
    TurnJudge,
    _median,
    first_waits_s,
    threshold_for,
)
from hypothesis import given, settings
from hypothesis import strategies as st

LONGEST_S = 0.8
# A hazard whose chance of going on falls with the silence alone (log-odds -2 - 3 log t):
# below 0.35 from about 0.63 s on, at eagerness 0.5.
PLAIN = Hazard(
    bias=-2.0,
    cues=(0.0,) * len(CUES),
    cue_slopes=(0.0,) * len(CUES),
    time=(-3.0, 0.0),
    threshold=0.35,
    earliest_s=0.2,
    calibration_prior=3.0,
)


def with_cue(name: str, weight: float) -> Hazard:
    cues = tuple(weight if cue == name else 0.0 for cue in CUES)
    return replace(PLAIN, cues=cues)


def play(judge: TurnJudge, onsets_s: list[float], length_s: float, velocity: int = 80) -> float:
    """Single notes at ``onsets_s``, each held ``length_s``; the silence start (last release)."""
    for onset_s in onsets_s:
        judge.key_down((0, 60), onset_s, velocity)
        judge.key_up((0, 60), onset_s + length_s)
    return onsets_s[-1] + length_s


hazards = st.builds(
    Hazard,
    bias=st.floats(-5, 5),
    cues=st.tuples(*[st.floats(-3, 3)] * len(CUES)),
    cue_slopes=st.tuples(*[st.floats(-3, 3)] * len(CUES)),
    time=st.tuples(st.floats(-5, 5), st.floats(-5, 5)),
    threshold=st.floats(0.01, 0.99),
    earliest_s=st.floats(0.0, 1.0),
    calibration_prior=st.one_of(st.floats(0.1, 100.0), st.just(math.inf)),
)


@settings(max_examples=60, deadline=None)
@given(
    hazards,
    st.floats(0.0, 1.0),
    st.floats(0.05, 10.0),
    st.lists(st.tuples(st.floats(0.01, 1.0), st.floats(0.0, 5.0)), max_size=30),
)
def test_the_wait_lies_between_the_minimum_gap_and_the_longest(
    hazard: Hazard, eagerness: float, longest_s: float, notes: list[tuple[float, float]]
) -> None:
    judge = TurnJudge(hazard=hazard)
    time_s = 0.0
    for length_s, pause_s in notes:  # notes and silences, each silence judged then heard
        judge.key_down((0, 60), time_s, 90)
        judge.key_up((0, 60), time_s + length_s)
        time_s += length_s
        wait_s = judge.wait_s(eagerness, longest_s, time_s)
        assert min(MIN_GAP_S, longest_s) <= wait_s <= longest_s
        judge.heard_pause(pause_s)
        time_s += pause_s
        assert abs(judge.player_bias) <= ADAPT_LIMIT


@settings(max_examples=60, deadline=None)
@given(hazards, st.floats(0.0, 1.0), st.floats(0.0, 1.0))
def test_more_eagerness_never_waits_longer(hazard: Hazard, low: float, high: float) -> None:
    low, high = min(low, high), max(low, high)
    judge = TurnJudge(hazard=hazard)
    start_s = play(judge, [0.0, 0.3, 0.6], 0.2)
    assert judge.wait_s(high, LONGEST_S, start_s) <= judge.wait_s(low, LONGEST_S, start_s)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(0.0, 1.0), min_size=3, max_size=30),
    st.lists(st.floats(0.0, 1.0), min_size=1, max_size=5),
    st.floats(0.0, 1.0),
)
def test_the_first_wait_is_the_first_moment_below_the_threshold_from_the_earliest_on(
    chance: list[float], thresholds: list[float], earliest_s: float
) -> None:
    times_s = np.linspace(0.1, 0.8, len(chance))
    waits_s = first_waits_s(times_s, np.asarray(chance), np.asarray(thresholds), earliest_s)
    for threshold, wait_s in zip(thresholds, waits_s, strict=True):
        ok = [t for t, c in zip(times_s, chance, strict=True) if c < threshold and t >= earliest_s]
        assert wait_s == (ok[0] if ok else times_s[-1])


def test_past_the_early_moment_the_wait_is_where_the_chance_falls_well_below_the_threshold() -> (
    None
):
    judge = TurnJudge(hazard=PLAIN)  # at 0.2 s a chance of going on of 0.94: not early
    longest_s = 1.5
    wait_s = judge.wait_s(0.5, longest_s, play(judge, [0.0, 0.25, 0.5], 0.2))
    late = np.log(0.35 / 0.65) - LATE_LOG_ODDS
    expected_s = np.exp((-2.0 - late) / 3.0)  # -2 - 3 log t = late
    assert wait_s == pytest.approx(expected_s, abs=0.011)
    assert judge.wait_s(1.0, longest_s, 0.7) < wait_s < judge.wait_s(0.0, longest_s, 0.7)


def test_no_call_ends_before_the_earliest_answer() -> None:
    eager = replace(PLAIN, bias=-20.0)  # the player never goes on, by this hazard
    assert TurnJudge(hazard=eager).wait_s(0.5, LONGEST_S) == pytest.approx(0.2)
    soonest = replace(eager, earliest_s=0.0)
    assert TurnJudge(hazard=soonest).wait_s(0.5, LONGEST_S) == pytest.approx(MIN_GAP_S)


def test_recent_notes_measure_how_the_playing_stopped_in_the_players_own_time() -> None:
    notes = RecentNotes()
    for k in range(8):
        notes.key_down((0, 72), 0.25 * k, 80)
        notes.key_up((0, 72), 0.25 * k + 0.1)
    notes.key_down((0, 48), 2.0, 40)  # a soft chord, struck over 20 ms, below the line
    notes.key_down((0, 55), 2.02, 40)
    notes.key_up((0, 55), 2.5)
    notes.key_up((0, 48), 3.02)
    cue = dict(zip(CUES, notes.cues(3.02), strict=True))
    assert cue["lengthening"] == pytest.approx(np.log(1.02 / 0.1))
    assert notes.interval_s() == pytest.approx(0.25)  # the chord's 20 ms is no interval
    assert cue["since"] == pytest.approx(np.log(1.02 / 0.25))
    assert cue["loudness"] == pytest.approx(-0.5)
    assert cue["last_interval"] == pytest.approx(np.log(0.25 / 0.25))
    assert cue["articulation"] == pytest.approx(np.log(1.02 / 0.25))
    assert cue["register"] == pytest.approx((55 - 72) / 12)
    assert cue["fall"] == pytest.approx((55 - 72) / 12)
    assert notes.since_s(3.02) == pytest.approx(1.02)
    few = RecentNotes()
    for onset_s in (0.0, 0.5, 1.0):  # before the ring of intervals is full
        few.key_down((0, 60), onset_s, 80)
        few.key_up((0, 60), onset_s + 0.2)
    assert few.interval_s() == pytest.approx(0.5)
    assert not RecentNotes().cues(1.0).any()  # nothing heard: no evidence either way


def test_a_note_held_past_the_pulse_ends_the_call_sooner_than_a_short_one_on_it() -> None:
    hazard = with_cue("lengthening", -2.0)  # a last note held long says "end"
    onsets_s = [0.3 * k for k in range(12)]
    held, short = TurnJudge(hazard=hazard), TurnJudge(hazard=hazard)
    play(held, onsets_s[:-1], 0.15)
    held_start_s = play(held, onsets_s[-1:], 0.9)
    short_start_s = play(short, onsets_s, 0.15)
    wait_held = held.wait_s(0.5, LONGEST_S, held_start_s)
    wait_short = short.wait_s(0.5, LONGEST_S, short_start_s)
    assert wait_held == pytest.approx(0.2)
    assert wait_short > wait_held + 0.2


def phrases(judge: TurnJudge, count: int, pause_s: float, start_s: float = 0.0) -> list[float]:
    """``count`` phrases of four notes, each followed by ``pause_s`` of silence; the judge's
    wait at the start of each silence."""
    waits_s = []
    time_s = start_s
    for _ in range(count):
        silence_start_s = play(judge, [time_s + 0.25 * k for k in range(4)], 0.2)
        waits_s.append(judge.wait_s(0.5, LONGEST_S, silence_start_s))
        judge.heard_pause(pause_s)
        time_s = silence_start_s + pause_s
    return waits_s


def test_a_player_who_only_breathes_gets_waits_past_the_breaths_after_some_silences() -> None:
    # Fitted elsewhere: a chance of going on of 27% whatever the silence, so it answers at
    # the earliest. A fixed 0.35 s gap would answer inside every one of these breaths, so
    # the budget alone would too; the player's intercept says they surely go on.
    hazard = replace(PLAIN, bias=-1.0, time=(0.0, 0.0))
    judge = TurnJudge(hazard=hazard)
    waits_s = phrases(judge, 60, pause_s=0.45)  # breaths of 0.45 s: they always go on
    assert waits_s[0] == pytest.approx(hazard.earliest_s)  # inside every breath at first
    assert judge.player_bias > 3.0
    assert min(waits_s[40:]) > 0.45  # then it waits them out


def loud_phrases(
    judge: TurnJudge, pauses_s: list[float], eagerness: float, rng: np.random.Generator
) -> list[float]:
    """Phrases of four notes at velocity 80 ending on a note of random loudness, each
    followed by one of ``pauses_s``; the judge's wait at the start of each silence."""
    waits_s, time_s = [], 0.0
    for pause_s in pauses_s:
        for k in range(4):
            velocity = 80 if k < 3 else int(rng.integers(20, 127))
            judge.key_down((0, 60), time_s + 0.25 * k, velocity)
            judge.key_up((0, 60), time_s + 0.25 * k + 0.2)
        silence_start_s = time_s + 0.95
        waits_s.append(judge.wait_s(eagerness, LONGEST_S, silence_start_s))
        judge.heard_pause(pause_s)
        time_s = silence_start_s + pause_s
    return waits_s


# The louder the last note, the likelier an end, by this hazard; but never so likely that
# the fitted threshold (at eagerness 0.25 or less) answers early, and the player's intercept
# stays put (a prior of 1e9 moments), so that only the player's budget moves the judge.
LOUD_ENDS = replace(with_cue("loudness", -2.0), bias=0.0, time=(0.0, 0.0), calibration_prior=1e9)


def early_share(waits_s: list[float]) -> float:
    return sum(w == pytest.approx(LOUD_ENDS.earliest_s) for w in waits_s) / len(waits_s)


def test_the_early_answers_spend_the_players_budget_on_the_silences_most_like_ends() -> None:
    # At eagerness 0.25 the budget is half the fixed 0.35 s gap's false answers. These
    # breaths all outlast that gap, so once the player has played a while the judge answers
    # inside about half of them: the most end-like half.
    rng = np.random.default_rng(3)
    judge = TurnJudge(hazard=LOUD_ENDS)
    waits_s = loud_phrases(judge, [0.5] * 200, 0.25, rng)
    assert waits_s[0] == LONGEST_S  # the fitted threshold: no early answer
    assert early_share(waits_s[100:]) == pytest.approx(BUDGET_SPAN * 0.25, abs=0.12)
    threshold = judge.early_threshold(0.25)
    loud_phrases(judge, [3.0] * 20, 0.25, rng)  # phrase ends: no false answer to count
    assert judge.early_threshold(0.25) == pytest.approx(threshold, abs=1e-6)


def test_at_eagerness_0_the_budget_is_empty() -> None:
    judge = TurnJudge(hazard=LOUD_ENDS)
    waits_s = loud_phrases(judge, [0.5] * 200, 0.0, np.random.default_rng(4))
    assert early_share(waits_s) < 0.05


def test_a_player_who_ends_phrases_quickly_gets_quicker_answers() -> None:
    judge = TurnJudge(hazard=PLAIN)  # answers at 0.63 s at first
    waits_s = phrases(judge, 20, pause_s=3.0)  # every silence is a phrase's end
    assert judge.player_bias < -0.5
    assert waits_s == sorted(waits_s, reverse=True)
    assert waits_s[0] > 0.6 and waits_s[-1] == pytest.approx(PLAIN.earliest_s)


def test_without_adaptation_the_player_changes_nothing() -> None:
    judge = TurnJudge(hazard=replace(PLAIN, calibration_prior=math.inf))
    waits_s = phrases(judge, 10, pause_s=3.0)
    assert judge.player_bias == 0.0 and len(set(waits_s)) == 1


def test_a_silence_never_judged_teaches_nothing() -> None:
    judge = TurnJudge(hazard=PLAIN)
    play(judge, [0.0, 0.25], 0.2)
    judge.heard_pause(3.0)  # with turns gap the judge is never asked
    assert judge.player_bias == 0.0


def test_the_shipped_hazard_has_a_weight_for_every_cue() -> None:
    assert len(SHIPPED.cues) == len(SHIPPED.cue_slopes) == len(CUES)
    assert 0.0 < SHIPPED.threshold < 1.0 and MIN_GAP_S <= SHIPPED.earliest_s <= LONGEST_S


@pytest.mark.parametrize(("confidence", "follows"), [(0.9, True), (0.2, False)])
def test_a_rest_to_the_next_beat_is_waited_out_when_the_beat_is_known(
    confidence: float, follows: bool
) -> None:
    judge = TurnJudge(hazard=replace(PLAIN, bias=-20.0))  # would answer at the earliest
    beat = BeatHint(next_beat_s=10.5, confidence=confidence)
    wait_s = judge.wait_s(0.5, LONGEST_S, silence_start_s=10.0, beat=beat)
    expected = 0.5 + BEAT_GRACE_S if follows else 0.2
    assert wait_s == pytest.approx(expected)


def test_eagerness_sets_a_threshold_that_rises_with_it() -> None:
    assert threshold_for(0.0) < threshold_for(0.5) < threshold_for(1.0)
    assert threshold_for(-1.0) == threshold_for(0.0) and threshold_for(2.0) == threshold_for(1.0)
    assert threshold_for(0.5, 0.2) == pytest.approx(0.2)


# The phrase detector with a judged wait --------------------------------------------------------


def test_without_a_judged_wait_the_deadline_is_the_fixed_gap() -> None:
    phrase = PhraseDetector(0.35)
    phrase.note_on((0, 60), 1.0)
    phrase.note_off((0, 60), 1.5)
    assert phrase.silence_start_s == 1.5 and phrase.wait_s is None
    assert phrase.deadline() == pytest.approx(1.85)


def test_a_judged_wait_runs_from_the_silence_start_and_never_past_the_gap() -> None:
    phrase = PhraseDetector(0.8)
    phrase.note_on((0, 60), 1.0)
    phrase.sustain(True, 1.1)
    phrase.note_off((0, 60), 1.5)
    assert phrase.silence_start_s is None  # the pedal keeps the note sounding
    phrase.sustain(False, 2.0)
    assert phrase.silence_start_s == 2.0
    phrase.wait_s = 0.2
    assert phrase.deadline() == pytest.approx(2.2)
    phrase.wait_s = 5.0
    assert phrase.deadline() == pytest.approx(2.8)
    phrase.wait_s = 0.2
    phrase.sustain(True, 2.15)  # a pedal touch in the silence: at least MIN_GAP_S after it
    assert phrase.deadline() == pytest.approx(2.15 + MIN_GAP_S)
    phrase.note_on((0, 62), 2.3)
    assert phrase.silence_start_s is None and phrase.wait_s is None


@given(st.lists(st.floats(0.0, 100.0), min_size=1, max_size=16))
def test_the_judges_median_is_numpys(values: list[float]) -> None:
    assert _median(np.asarray(values)) == pytest.approx(float(np.median(values)), rel=1e-12)
