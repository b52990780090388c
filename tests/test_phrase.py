"""When a call ends (keys, pedal, gap, foot switch) and how long a reply may be."""

from __future__ import annotations

from dataclasses import dataclass

from antiphon.daemon.musician.hearing.phrase import (
    MIN_REPLY_WINDOW_S,
    REPLY_TIME_FACTOR,
    PhraseDetector,
    reply_length_bounds,
)
from antiphon.daemon.settings import Settings
from hypothesis import given
from hypothesis import strategies as st

GAP = 0.35
A, B = (0, 60), (0, 64)


def test_call_ends_after_the_gap_with_no_key_held() -> None:
    phrase = PhraseDetector(GAP)
    assert phrase.deadline() is None
    phrase.note_on(A, 1.0)
    phrase.note_on(B, 1.2)
    phrase.note_off(A, 1.4)
    assert phrase.deadline() is None  # B still held
    phrase.note_off(B, 1.5)
    assert phrase.deadline() == 1.5 + GAP
    assert phrase.poll(1.5 + GAP - 0.001) is None
    call = phrase.poll(1.5 + GAP)
    assert call is not None
    assert (call.start_s, call.last_sound_s, call.ended_s, call.notes) == (1.0, 1.5, 1.5 + GAP, 2)
    assert call.seconds == 0.5
    assert phrase.deadline() is None and not phrase.in_call


def test_the_pending_call_is_the_call_the_deadline_brings() -> None:
    phrase = PhraseDetector(GAP)
    phrase.note_on(A, 1.0)
    assert phrase.pending_call() is None  # a key held: no deadline yet
    phrase.note_off(A, 1.3)
    pending = phrase.pending_call()
    assert pending is not None and pending.ended_s == phrase.deadline() == 1.3 + GAP
    assert phrase.in_call  # looking ahead does not end the call
    assert phrase.poll(1.3 + GAP) == pending
    assert phrase.pending_call() is None


def test_a_held_key_keeps_the_call_going_for_ever() -> None:
    phrase = PhraseDetector(GAP)
    phrase.note_on(A, 0.0)
    assert phrase.poll(1000.0) is None


def test_a_key_released_under_the_pedal_counts_as_held_until_the_pedal_lifts() -> None:
    phrase = PhraseDetector(GAP)
    phrase.note_on(A, 0.0)
    phrase.sustain(True, 0.1)
    phrase.note_off(A, 0.2)
    assert phrase.deadline() is None
    assert phrase.poll(5.0) is None
    phrase.sustain(False, 5.0)
    assert phrase.deadline() == 5.0 + GAP


def test_restriking_a_sustained_key_and_releasing_it_keeps_it_sustained() -> None:
    phrase = PhraseDetector(GAP)
    phrase.sustain(True, 0.0)
    phrase.note_on(A, 0.1)
    phrase.note_off(A, 0.2)
    phrase.note_on(A, 0.3)
    phrase.note_off(A, 0.4)
    assert phrase.sounding
    phrase.sustain(False, 0.6)
    assert not phrase.sounding


def test_a_pedal_pressed_after_the_keys_were_released_does_not_hold_the_call() -> None:
    phrase = PhraseDetector(GAP)
    phrase.note_on(A, 0.0)
    phrase.note_off(A, 0.2)
    phrase.sustain(True, 0.3)  # nothing left to sustain; the pedal move is still activity
    assert phrase.deadline() == 0.3 + GAP


def test_keys_held_with_no_input_for_the_timeout_count_as_released() -> None:
    phrase = PhraseDetector(GAP, held_timeout_s=8.0)
    phrase.note_on(A, 1.0)
    phrase.note_on(B, 1.2)
    phrase.note_off(A, 1.5)  # B's note-off never comes
    assert phrase.stale_due_s() == 9.5 and phrase.deadline() is None
    assert phrase.release_stale(9.49) == [] and phrase.sounding
    assert phrase.release_stale(9.5) == [B]
    assert not phrase.sounding and phrase.stale_due_s() is None
    assert phrase.deadline() == 9.5 + GAP  # released at the timeout; then the gap
    call = phrase.poll(9.5 + GAP)
    assert call is not None and (call.notes, call.last_sound_s) == (2, 9.5)


def test_any_input_restarts_the_held_key_timeout() -> None:
    phrase = PhraseDetector(GAP, held_timeout_s=3.0)
    phrase.note_on(A, 0.0)
    phrase.sustain(True, 2.0)
    phrase.sustain(False, 4.0)
    phrase.note_off(B, 6.5)  # a stray note-off is input too
    assert phrase.release_stale(9.4) == []
    assert phrase.release_stale(9.5) == [A]


def test_a_stale_release_lifts_the_pedal_and_its_sustained_keys() -> None:
    phrase = PhraseDetector(GAP, held_timeout_s=8.0)
    phrase.sustain(True, 0.0)  # its release will be lost
    phrase.note_on(A, 0.1)
    phrase.note_off(A, 0.2)
    assert phrase.release_stale(8.2) == [A]
    phrase.note_on(B, 9.0)
    phrase.note_off(B, 9.1)
    assert phrase.deadline() == 9.1 + GAP  # B is not taken as sustained by a pedal now up


def test_without_a_timeout_a_held_key_is_never_released() -> None:
    phrase = PhraseDetector(GAP)
    phrase.note_on(A, 0.0)
    assert phrase.stale_due_s() is None and phrase.release_stale(1e9) == []


def test_foot_switch_ends_the_call_at_once_even_with_keys_held() -> None:
    phrase = PhraseDetector(GAP)
    assert phrase.end_now(0.5) is None  # no call yet
    phrase.note_on(A, 1.0)
    call = phrase.end_now(1.25)
    assert call is not None and call.ended_s == 1.25 and call.notes == 1
    assert phrase.deadline() is None  # A is still held, and no new call has started
    phrase.note_off(A, 2.0)
    assert phrase.deadline() is None  # a key-up alone does not start a call


def test_all_notes_off_frees_stuck_keys() -> None:
    phrase = PhraseDetector(GAP)
    phrase.note_on(A, 0.0)
    phrase.sustain(True, 0.0)
    phrase.note_on(B, 0.1)
    phrase.note_off(B, 0.2)
    phrase.all_notes_off(3.0)
    assert phrase.deadline() == 3.0 + GAP


def test_gap_can_change_during_a_call() -> None:
    phrase = PhraseDetector(GAP)
    phrase.note_on(A, 0.0)
    phrase.note_off(A, 0.1)
    phrase.gap_s = 2.0
    assert phrase.deadline() == 2.1


def test_each_call_counts_its_own_notes() -> None:
    phrase = PhraseDetector(GAP)
    for t in (0.0, 0.1, 0.2):
        phrase.note_on(A, t)
        phrase.note_off(A, t + 0.05)
    first = phrase.poll(10.0)
    phrase.note_on(B, 11.0)
    phrase.note_off(B, 11.5)
    second = phrase.poll(12.0)
    assert first is not None and first.notes == 3
    assert second is not None and second.notes == 1 and second.start_s == 11.0


@dataclass(frozen=True)
class Limits:
    reply_ratio: float = 1.0
    reply_min_notes: int = 4
    reply_max_notes: int = 64
    reply_max_s: float = 20.0


def test_reply_length_follows_the_call() -> None:
    assert reply_length_bounds(10, 3.0, Limits()) == (10, 6.0)
    assert reply_length_bounds(10, 3.0, Limits(reply_ratio=0.5)) == (5, 3.0)
    assert reply_length_bounds(1, 0.0, Limits()) == (4, MIN_REPLY_WINDOW_S)
    assert reply_length_bounds(500, 100.0, Limits()) == (64, 20.0)


def test_the_settings_carry_the_reply_limits() -> None:
    assert reply_length_bounds(8, 2.0, Settings()) == (8, 4.0)


@given(
    st.integers(1, 400),
    st.floats(0, 120),
    st.floats(0.1, 8),
    st.integers(1, 512),
    st.integers(1, 512),
    st.floats(0.5, 300),
)
def test_reply_bounds_stay_inside_the_settings(
    notes: int, seconds: float, ratio: float, low: int, high: int, max_s: float
) -> None:
    low, high = min(low, high), max(low, high)
    limits = Limits(ratio, low, high, max_s)
    count, window_s = reply_length_bounds(notes, seconds, limits)
    assert low <= count <= high
    assert window_s <= max_s
    assert window_s >= min(max_s, MIN_REPLY_WINDOW_S)
    assert window_s <= max(MIN_REPLY_WINDOW_S, REPLY_TIME_FACTOR * ratio * seconds) + 1e-9
