"""Scores played like a person: one line kept, expressive timing and loudness, seeded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from antiphon.training.corpus import build_corpus, iter_manifest, load_split
from antiphon.training.expressive import (
    ONSET_JITTER_MAX_S,
    Rendering,
    onset_groups,
    perform,
    top_line,
)
from hypothesis import given, settings
from hypothesis import strategies as st


def deadpan_tune(bars: int = 8) -> np.ndarray:
    """Quarter notes at 120 bpm with a half note and a rest ending every 2 bars, velocity 90."""
    rows, time_s = [], 0.0
    for bar in range(bars):
        for beat in range(4):
            if bar % 2 == 1 and beat == 2:
                rows.append((60 + beat, time_s, time_s + 1.0, 90))
                time_s += 1.0
                break
            rows.append((60 + (bar + beat) % 7, time_s, time_s + 0.5, 90))
            time_s += 0.5
        if bar % 2 == 1:
            time_s += 0.0  # the half note fills the bar
    return np.asarray(rows, np.float32)


def test_top_line_keeps_the_highest_note_of_each_chord_cut_at_the_next() -> None:
    notes = np.asarray(
        [[48, 0.0, 2.0, 60], [64, 0.01, 0.6, 60], [60, 0.0, 0.6, 60], [62, 0.5, 1.0, 60]],
        np.float32,
    )
    line = top_line(notes)
    assert line[:, 0].tolist() == [64, 62]
    assert line[0, 2] <= line[1, 1]


def test_a_performance_repeats_exactly_from_its_seed_and_differs_by_source() -> None:
    tune = deadpan_tune()
    rendering = Rendering(single_line=True, expressive=True, seed=3)
    first = perform(tune, rendering.rng_for("a"))
    again = perform(tune, rendering.rng_for("a"))
    other = perform(tune, rendering.rng_for("b"))
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31))
def test_a_performance_keeps_the_notes_and_their_order_and_varies_the_loudness(seed: int) -> None:
    tune = deadpan_tune()
    played = perform(tune, np.random.default_rng(seed))
    assert sorted(played[:, 0].tolist()) == sorted(tune[:, 0].tolist())
    assert np.all(played[:, 2] > played[:, 1])
    assert played[:, 1].min() == 0.0
    assert played[:, 3].min() >= 1 and played[:, 3].max() <= 127
    assert played[:, 3].std() > 1.0  # no longer one velocity
    # One line in, one line out: onsets keep the score's order, a breath never reorders.
    assert np.all(np.diff(played[:, 1]) > -2 * ONSET_JITTER_MAX_S)


def test_onsets_within_the_window_are_one_group() -> None:
    groups = onset_groups(np.asarray([0.0, 0.01, 0.02, 0.5, 0.52, 1.0]))
    assert groups.tolist() == [0, 0, 0, 1, 1, 2]


def test_single_line_expressive_chorales_are_soprano_lines_with_breaths(tmp_path: Path) -> None:
    rendering = Rendering(single_line=True, expressive=True, seed=0)
    build_corpus(tmp_path / "melody", music21_collections=["bach:2"], rendering=rendering, seed=0)
    rows = list(iter_manifest(tmp_path / "melody"))
    assert len(rows) == 2
    for split in ("train", "validation", "test"):
        for _, notes in load_split(tmp_path / "melody", split):
            groups = onset_groups(notes[:, 1].astype(np.float64))
            assert len(np.unique(groups)) == len(notes)  # one note at a time
            assert len(np.unique(notes[:, 3])) > 3
