"""Real calls cut from performances, and the measures of a phrase against its call."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from antiphon.daemon.cli import main
from antiphon.daemon.codec import CodecConfig
from antiphon.daemon.musician.hearing.key import key_of
from antiphon.daemon.musician.hearing.phrase_shape import shape_of
from antiphon.training.calls import SILENCE_S, call_pairs, cut_phrases
from antiphon.training.corpus import Performance, Source, write_corpus
from antiphon.training.eval_replies import messages_to_notes, notes_to_messages
from antiphon.training.reply_measures import (
    MEASURES,
    copy_share,
    density_distance,
    in_key_share,
    pace_distance,
    register_distance,
    texture_distance,
)
from hypothesis import given
from hypothesis import strategies as st


def line(
    pitches: list[int], start_s: float = 0.0, ioi_s: float = 0.25, chord: int = 1
) -> np.ndarray:
    """A phrase: each pitch (with ``chord - 1`` notes a third below it) every ``ioi_s``."""
    rows = []
    for i, pitch in enumerate(pitches):
        for k in range(chord):
            rows.append((pitch - 4 * k, start_s + i * ioi_s, start_s + (i + 0.9) * ioi_s, 70))
    return np.asarray(rows, np.float32)


C_MAJOR_RUN = [60, 62, 64, 65, 67, 69, 71, 72]


def test_a_phrase_ends_at_a_silence_of_a_second_not_at_a_shorter_one() -> None:
    first = line(C_MAJOR_RUN)  # ends at 1.975 s
    second = line(C_MAJOR_RUN, start_s=1.975 + 0.9)  # 0.9 s later: the same phrase
    third = line(C_MAJOR_RUN, start_s=float(second[:, 2].max()) + SILENCE_S)
    phrases = cut_phrases(np.concatenate([first, second, third]))
    assert [len(p) for p in phrases] == [16, 8]


def test_a_note_held_over_the_pause_keeps_the_phrase_going() -> None:
    first = line(C_MAJOR_RUN)
    held = np.asarray([[48, 0.0, 4.0, 60]], np.float32)  # a pedalled bass note
    second = line(C_MAJOR_RUN, start_s=3.5)
    assert len(cut_phrases(np.concatenate([first, held, second]))) == 1


def test_a_call_pair_is_the_call_and_the_next_phrase_from_the_call_start() -> None:
    first = line(C_MAJOR_RUN, start_s=10.0)
    second = line(C_MAJOR_RUN[::-1], start_s=float(first[:, 2].max()) + 1.5)
    (pair,) = call_pairs("p", np.concatenate([first, second]))
    assert pair.call[0, 1] == 0.0
    assert pair.gap_s == pytest.approx(1.5)
    assert pair.next_phrase[:, 0].tolist() == C_MAJOR_RUN[::-1]


def test_the_shape_counts_chords_as_one_onset_group() -> None:
    shape = shape_of(line(C_MAJOR_RUN, chord=3))
    assert shape is not None
    assert shape.notes_per_group == 3
    assert shape.median_ioi_s == pytest.approx(0.25)


def test_each_distance_measures_what_it_names() -> None:
    call = line(C_MAJOR_RUN)
    assert register_distance(call, line([p + 7 for p in C_MAJOR_RUN])) == 7
    assert texture_distance(call, line(C_MAJOR_RUN, chord=3)) == 2
    assert pace_distance(call, line(C_MAJOR_RUN, ioi_s=0.5)) == pytest.approx(1.0)
    slower = line(C_MAJOR_RUN, ioi_s=0.5)
    assert density_distance(call, slower) == pytest.approx(1.0, abs=0.05)


@given(st.lists(st.integers(40, 90), min_size=2, max_size=20), st.integers(-12, 12))
def test_distances_are_never_negative_and_zero_for_the_call_itself(
    pitches: list[int], shift: int
) -> None:
    call = line(pitches)
    other = line([p + shift for p in pitches[::-1]], ioi_s=0.2)
    for measure in MEASURES:
        if measure.distance:
            itself = measure.function(call, call)
            # None where a measure does not apply (a contour needs two moving intervals).
            assert itself is None or itself == pytest.approx(0.0)
            value = measure.function(call, other)
            assert value is None or value >= 0.0


def test_the_key_of_a_scale_and_the_share_of_notes_in_it() -> None:
    call = line([*C_MAJOR_RUN, 67, 64, 60])
    assert key_of(call) == (0, False)
    assert in_key_share(call, line([60, 64, 67, 61])) == 0.75


def test_copy_share_finds_four_note_sequences_of_the_call() -> None:
    call = line(C_MAJOR_RUN)
    assert copy_share(call, call) == 1.0
    assert copy_share(call, line([60, 62, 64, 65, 50])) == 0.5
    assert copy_share(call, line([62, 64, 65])) is None


def test_messages_and_notes_round_trip_and_a_hanging_note_is_counted() -> None:
    notes = line(C_MAJOR_RUN, chord=2)
    messages = notes_to_messages(notes)
    back, hanging = messages_to_notes(messages)
    assert hanging == 0
    assert sorted(map(tuple, back.tolist())) == sorted(map(tuple, notes.tolist()))
    _, hanging = messages_to_notes(messages[:-1])
    assert hanging == 1


def test_eval_replies_answers_calls_and_writes_the_table_as_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    items = []
    for i in range(6):
        phrases = [line([p + i for p in C_MAJOR_RUN], start_s=3.0 * k) for k in range(4)]
        source = Source(f"t/{i}", f"t/{i}", "folder", f"t/{i}.mid")
        items.append(Performance(source, np.concatenate(phrases)))
    write_corpus(tmp_path / "corpus", items, CodecConfig(), seed=0)
    out = tmp_path / "figures.json"
    code = main(
        [
            "eval-replies",
            str(tmp_path / "corpus"),
            "--split",
            "train",
            "--calls",
            "4",
            "--json",
            str(out),
        ]
    )
    assert code == 0
    result = json.loads(out.read_text())
    assert result["calls"] == 4
    assert set(result["measures"]) == {m.name for m in MEASURES}
    assert result["hanging_notes"] == 0
    assert result["measures"]["register"]["next"] == pytest.approx(0.0)
    # The call cut is the daemon's call: not ended early by the turn judge at a breath.
    assert (result["settings"]["turns"], result["settings"]["phrase_gap_s"]) == ("gap", 1.0)
    assert "register" in capsys.readouterr().out
