"""How a phrase moves (intervals, contour, sweep, articulation, overlap) and the reply
measures built on it, with hand-made notes."""

from __future__ import annotations

import numpy as np
import pytest
from antiphon.daemon.musician.hearing.motion import (
    articulation,
    direction_changes,
    interval_profile,
    melodic_line,
    overlap_share,
    plays_one_line,
    profile_distance,
    span_per_s,
)
from antiphon.training.calls import CallPair
from antiphon.training.eval_replies import Answered, evaluate
from antiphon.training.reply_measures import (
    articulation_distance,
    chromatic_share,
    contour_distance,
    interval_distance,
    line_overlap,
    span_rate_distance,
)
from hypothesis import given
from hypothesis import strategies as st


def notes(rows: list[tuple[float, float, float]]) -> np.ndarray:
    """Notes from (pitch, onset_s, offset_s) rows, velocity 80."""
    return np.asarray([(p, on, off, 80) for p, on, off in rows], np.float32).reshape(-1, 4)


def line(pitches: list[int], ioi_s: float = 0.25, legato: float = 0.9) -> np.ndarray:
    """One line: a pitch every ``ioi_s``, each lasting ``legato`` of the interval."""
    return notes([(p, i * ioi_s, (i + legato) * ioi_s) for i, p in enumerate(pitches)])


SCALE_UP = [60, 62, 64, 65, 67, 69, 71, 72]


def test_the_line_of_a_chordal_phrase_is_its_top_note_with_its_own_length() -> None:
    chords = notes([(48, 0.0, 2.0), (64, 0.01, 0.5), (60, 0.0, 0.5), (65, 0.5, 1.0)])
    line_notes = melodic_line(chords)
    assert line_notes[:, 0].tolist() == [64, 65]
    assert line_notes[0, 2] == pytest.approx(0.5)


def test_a_scale_is_all_steps_and_a_broken_chord_all_skips_and_leaps() -> None:
    assert interval_profile(line(SCALE_UP)) == pytest.approx([0, 1, 0, 0])
    assert interval_profile(line([60, 64, 67, 72, 72])) == pytest.approx([0.25, 0, 0.5, 0.25])
    assert interval_profile(line([60])) is None


def test_profile_distance_is_half_the_l1_distance() -> None:
    a, b = np.asarray([1.0, 0, 0, 0]), np.asarray([0, 0.5, 0, 0.5])
    assert profile_distance(a, b) == 1.0
    assert profile_distance(a, a) == 0.0


def test_an_arc_turns_once_and_a_zigzag_at_every_note() -> None:
    assert direction_changes(line([60, 62, 64, 62, 60])) == pytest.approx(1 / 3)
    assert direction_changes(line([60, 64, 62, 65, 63])) == 1.0
    # Repeats do not move, so they neither turn nor keep a direction.
    assert direction_changes(line([60, 62, 62, 64])) == 0.0
    assert direction_changes(line([60, 60, 62])) is None


def test_a_run_over_an_octave_covers_more_ground_per_second_than_a_wander() -> None:
    run = line(SCALE_UP)  # 13 semitones (12 + 1) over 1.975 s
    assert span_per_s(run) == pytest.approx(13 / 1.975)
    wander = line([60, 62, 61, 60], ioi_s=1.0)
    assert span_per_s(wander) == pytest.approx(3 / 3.9)


def test_articulation_is_length_over_the_time_to_the_next_onset() -> None:
    assert articulation(line(SCALE_UP, legato=0.5)) == pytest.approx(0.5)
    held = notes([(60, 0.0, 4.0), (62, 0.25, 0.45), (64, 0.5, 0.7), (65, 0.75, 0.95)])
    assert articulation(held) == pytest.approx(0.8)  # the median: one note held is one
    all_held = line(SCALE_UP, ioi_s=0.25, legato=8.0)
    assert articulation(all_held) == pytest.approx(8.0)


def test_overlap_is_the_share_of_sounding_time_with_two_notes() -> None:
    assert overlap_share(line(SCALE_UP, legato=1.0)) == 0.0  # ends exactly as the next starts
    assert overlap_share(line(SCALE_UP, legato=0.5)) == 0.0
    under = notes([(48, 0.0, 4.0), (60, 1.0, 2.0), (62, 2.0, 3.0)])
    assert overlap_share(under) == pytest.approx(0.5)
    assert overlap_share(notes([])) is None
    assert plays_one_line(line(SCALE_UP, legato=1.1))
    assert plays_one_line(under) is False


@given(
    st.lists(
        st.tuples(
            st.integers(21, 108),
            st.floats(0, 20, allow_nan=False),
            st.floats(0.01, 5, allow_nan=False),
        ),
        min_size=1,
        max_size=40,
    )
)
def test_shares_and_profiles_stay_in_their_ranges(rows: list[tuple[int, float, float]]) -> None:
    phrase = notes([(p, on, on + length) for p, on, length in rows])
    profile = interval_profile(phrase)
    if profile is not None:
        assert profile.sum() == pytest.approx(1.0)
        assert ((profile >= 0) & (profile <= 1)).all()
        assert 0.0 <= profile_distance(profile, interval_profile(line(SCALE_UP))) <= 1.0
    for share in (direction_changes(phrase), overlap_share(phrase)):
        assert share is None or 0.0 <= share <= 1.0 + 1e-9
    rate = span_per_s(phrase)
    assert rate is not None and rate > 0
    ratio = articulation(phrase)
    assert ratio is None or ratio > 0


def test_a_wandering_held_reply_is_far_from_a_scalar_call_and_a_scale_is_near() -> None:
    call = line(SCALE_UP, ioi_s=0.25)
    answer_in_kind = line([72, 71, 69, 67, 65, 64, 62, 60], ioi_s=0.25)
    wander = notes([(60, 0.0, 4.0), (61, 0.5, 4.5), (61, 1.0, 3.0), (60, 3.2, 5.0)])
    for distance in (interval_distance, span_rate_distance, articulation_distance):
        near, far = distance(call, answer_in_kind), distance(call, wander)
        assert near is not None and far is not None and near < far
    assert contour_distance(call, answer_in_kind) == 0.0
    # Two or more notes sound from 0.5 s to 4.5 s of the 5 s anything sounds.
    assert line_overlap(call, wander) == pytest.approx(0.8)
    assert line_overlap(call, answer_in_kind) == 0.0


def test_overlap_is_measured_only_where_the_call_plays_one_line() -> None:
    chords = notes([(48, 0.0, 2.0), (52, 0.0, 2.0), (55, 0.0, 2.0)])
    assert line_overlap(chords, chords) is None
    assert line_overlap(line(SCALE_UP), chords) == 1.0


def test_chromatic_share_is_the_share_outside_the_calls_key() -> None:
    call = line([*SCALE_UP, 67, 64, 60])
    assert chromatic_share(call, line([60, 64, 67, 61])) == 0.25


def _answered(call: np.ndarray, reply: np.ndarray, following: np.ndarray) -> Answered:
    return Answered(CallPair("p", 0, call, following, 1.0), reply, 0)


def test_eval_replies_checks_overlap_against_the_player_and_chromatic_both_ways() -> None:
    call = line(SCALE_UP)
    following = line([72, 71, 69, 67, 66, 64, 62, 60], ioi_s=0.25)  # one note out of key
    held_diatonic = notes([(60, 0.0, 4.0), (62, 0.5, 4.5), (64, 1.0, 3.0), (65, 3.2, 5.0)])
    result = evaluate([_answered(call, held_diatonic, following)])
    assert result["measures"]["overlap"]["ok"] is False
    assert result["measures"]["chromatic"]["reply"] == 0.0
    assert result["measures"]["chromatic"]["next"] == 0.125
    assert result["measures"]["chromatic"]["ok"] is False
    result = evaluate([_answered(call, following, following)])
    assert result["measures"]["overlap"]["ok"] is True
    assert result["measures"]["chromatic"]["ok"] is True
