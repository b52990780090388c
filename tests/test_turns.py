"""The turn judge: how long a silence must last to end the call (pure; fake distributions)."""

from __future__ import annotations

import numpy as np
import pytest
from antiphon.daemon.codec import CodecConfig, Vocabulary
from antiphon.daemon.musician.phrase import MIN_GAP_S, PhraseDetector
from antiphon.daemon.musician.turns import (
    BEAT_GRACE_S,
    BeatHint,
    PauseHistory,
    RecentNotes,
    TurnJudge,
    silence_survival,
    threshold_for,
)
from hypothesis import given, settings
from hypothesis import strategies as st

VOCABULARY = Vocabulary(CodecConfig())
LONGEST_S = 0.8


def expecting(silence_s: float, spread: float = 0.5, rest: float = -20.0) -> np.ndarray:
    """Logits of a model that expects the next note after about ``silence_s``."""
    v = VOCABULARY
    logits = np.full(v.size, rest, np.float32)
    centres = np.log(np.asarray(v.time_shifts_s))
    logits[v.time_shift_base : v.velocity_base] = -(((centres - np.log(silence_s)) / spread) ** 2)
    return logits


random_logits = st.lists(
    st.floats(-30, 30), min_size=VOCABULARY.size, max_size=VOCABULARY.size
).map(lambda values: np.asarray(values, np.float32))


@settings(max_examples=50, deadline=None)
@given(random_logits)
def test_survival_falls_from_one_to_zero_as_the_silence_goes_on(logits: np.ndarray) -> None:
    times_s = np.linspace(0.001, 10.0, 400)
    survival = silence_survival(logits, VOCABULARY, times_s)
    assert np.all((survival >= 0.0) & (survival <= 1.0))
    assert np.all(np.diff(survival) <= 1e-12)


def test_survival_follows_the_time_shift_the_model_expects() -> None:
    survival = silence_survival(expecting(0.3, spread=0.05), VOCABULARY, np.array([0.2, 0.5]))
    assert survival[0] > 0.99 and survival[1] < 0.01


def test_a_note_expected_at_once_leaves_no_silence() -> None:
    logits = np.full(VOCABULARY.size, -30.0, np.float32)
    logits[VOCABULARY.note_on(60)] = 10.0
    assert silence_survival(logits, VOCABULARY, np.array([0.05]))[0] < 1e-6


@settings(max_examples=50, deadline=None)
@given(
    random_logits,
    st.floats(0.0, 1.0),
    st.floats(0.05, 10.0),
    st.lists(st.floats(0.0, 20.0), max_size=40),
)
def test_the_wait_lies_between_the_minimum_gap_and_the_longest(
    logits: np.ndarray, eagerness: float, longest_s: float, pauses: list[float]
) -> None:
    judge = TurnJudge(VOCABULARY)
    for pause_s in pauses:
        judge.heard_pause(pause_s)
    wait_s = judge.wait_s(logits, eagerness, longest_s)
    assert min(MIN_GAP_S, longest_s) <= wait_s <= longest_s


@settings(max_examples=50, deadline=None)
@given(random_logits, st.floats(0.0, 1.0), st.floats(0.0, 1.0))
def test_more_eagerness_never_waits_longer(logits: np.ndarray, low: float, high: float) -> None:
    low, high = min(low, high), max(low, high)
    judge = TurnJudge(VOCABULARY)
    assert judge.wait_s(logits, high, LONGEST_S) <= judge.wait_s(logits, low, LONGEST_S)


def test_a_model_expecting_the_player_back_soon_waits_longer() -> None:
    judge = TurnJudge(VOCABULARY)
    breath = judge.wait_s(expecting(0.4), 0.5, LONGEST_S)
    end = judge.wait_s(expecting(4.0), 0.5, LONGEST_S)
    assert end == pytest.approx(MIN_GAP_S)
    assert breath > end + 0.1


def test_a_player_who_breathes_a_lot_is_waited_for() -> None:
    logits = expecting(2.0, spread=1.0)
    judge = TurnJudge(VOCABULARY)
    before = judge.wait_s(logits, 0.5, LONGEST_S)
    for _ in range(60):
        judge.heard_pause(0.35)
    assert judge.wait_s(logits, 0.5, LONGEST_S) > before + 0.1


def test_pause_history_counts_the_pauses_that_went_on_within_the_horizon() -> None:
    history = PauseHistory(kept=4)
    for pause_s in (9.0, 0.2, 0.3, 0.6, 2.0):  # the first one is pushed out
        history.add(pause_s)
    assert len(history) == 4
    longer, went_on = history.going_on(np.array([0.25]), 0.5)
    assert longer[0] == 3 and went_on[0] == 2  # 0.3 and 0.6 went on; 2.0 did not


def play(judge: TurnJudge, onsets_s: list[float], length_s: float, velocity: int = 80) -> float:
    """Single notes at ``onsets_s``, each held ``length_s``; the silence start (last release)."""
    for onset_s in onsets_s:
        judge.key_down((0, 60), onset_s, velocity)
        judge.key_up((0, 60), onset_s + length_s)
    return onsets_s[-1] + length_s


def test_recent_notes_measure_how_the_playing_stopped() -> None:
    notes = RecentNotes()
    for k in range(8):
        notes.key_down((0, 60), 0.25 * k, 80)
        notes.key_up((0, 60), 0.25 * k + 0.1)
    notes.key_down((0, 48), 2.0, 40)  # a soft chord, struck over 20 ms
    notes.key_down((0, 55), 2.02, 40)
    notes.key_up((0, 55), 2.5)
    notes.key_up((0, 48), 3.02)
    length, interval, loudness, since = notes.ending(3.02)
    assert length == pytest.approx(np.log(1.02))
    assert interval == pytest.approx(np.log(0.25))  # the chord's 20 ms is no interval
    assert loudness == pytest.approx(0.5)
    assert since == pytest.approx(np.log(1.02 / 0.25))
    few = RecentNotes()
    for onset_s in (0.0, 0.5, 1.0):  # before the ring of intervals is full
        few.key_down((0, 60), onset_s, 80)
        few.key_up((0, 60), onset_s + 0.2)
    assert few.ending(1.2)[1] == pytest.approx(np.log(0.5))


def test_a_note_held_past_the_pulse_ends_the_call_sooner_than_a_short_one_on_it() -> None:
    logits = expecting(0.6, spread=1.0)
    onsets_s = [0.3 * k for k in range(12)]
    held, short = TurnJudge(VOCABULARY), TurnJudge(VOCABULARY)
    held_start_s = play(held, onsets_s[:-1], 0.15)
    held.key_down((0, 60), onsets_s[-1], 80)
    held.key_up((0, 60), onsets_s[-1] + 0.9)
    held_start_s = onsets_s[-1] + 0.9
    short_start_s = play(short, onsets_s, 0.15)
    wait_held = held.wait_s(logits, 0.5, LONGEST_S, held_start_s)
    wait_short = short.wait_s(logits, 0.5, LONGEST_S, short_start_s)
    assert wait_held == pytest.approx(MIN_GAP_S)
    assert wait_short > wait_held + 0.1


@pytest.mark.parametrize(("confidence", "follows"), [(0.9, True), (0.2, False)])
def test_a_rest_to_the_next_beat_is_waited_out_when_the_beat_is_known(
    confidence: float, follows: bool
) -> None:
    judge = TurnJudge(VOCABULARY)
    logits = expecting(4.0)
    beat = BeatHint(next_beat_s=10.5, confidence=confidence)
    wait_s = judge.wait_s(logits, 0.5, LONGEST_S, silence_start_s=10.0, beat=beat)
    expected = 0.5 + BEAT_GRACE_S if follows else MIN_GAP_S
    assert wait_s == pytest.approx(expected)


def test_eagerness_sets_a_threshold_that_rises_with_it() -> None:
    assert threshold_for(0.0) < threshold_for(0.5) < threshold_for(1.0)
    assert threshold_for(-1.0) == threshold_for(0.0) and threshold_for(2.0) == threshold_for(1.0)


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
