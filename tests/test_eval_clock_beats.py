"""``antiphon eval-clock`` against a player's annotated beats (ASAP's ``X_annotations.txt``
beside ``X.mid``), on small MIDI and annotation files made here."""

from __future__ import annotations

import itertools
import json
import math
import random
import tempfile
from pathlib import Path

import numpy as np
import pytest
from antiphon.daemon.cli import main
from antiphon.daemon.musician.clocks.clock_out import MAX_TEMPO_STEP
from antiphon.training.eval_clock_beats import (
    AnnotationError,
    bounded_clock,
    read_beats,
    shift_behind,
    tempo_change_a_beat,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.midi_files import write_midi


def write_annotations(path: Path, beats: list[float]) -> None:
    """ASAP's layout: the time, the time again, a label (a downbeat every 4)."""
    lines = [f"{t!r}\t{t!r}\t{'db,4/4,0' if k % 4 == 0 else 'b'}" for k, t in enumerate(beats)]
    path.write_text("\n".join(lines) + "\n")


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(0.05, 3.0), min_size=1, max_size=60), st.floats(0.0, 100.0))
def test_the_beats_read_back_as_written(gaps: list[float], start: float) -> None:
    beats = [float(t) for t in start + np.cumsum(gaps)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "take_annotations.txt"
        write_annotations(path, beats)
        assert read_beats(path).tolist() == beats


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("0.5\t0.5\tdb\nnot a time\tx\tb\n", "line 2 is not a beat time"),
        ("0.5\t0.5\tdb\n0.4\t0.4\tb\n", "line 2: the beats do not rise"),
        ("0.5\t0.5\tdb\nnan\tnan\tb\n", "line 2: the beats do not rise"),
        ("\xff\xfe\x00", "not readable"),
    ],
)
def test_a_broken_annotation_file_is_one_line(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "take_annotations.txt"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(AnnotationError) as err:
        read_beats(path)
    assert says in str(err.value) and "\n" not in str(err.value)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(40.0, 240.0), min_size=2, max_size=80))
def test_the_bounded_clock_never_steps_more_than_the_bound(tempos: list[float]) -> None:
    clock = bounded_clock(np.array(tempos))
    assert clock[0] == tempos[0]
    assert np.all(np.abs(np.diff(clock)) <= MAX_TEMPO_STEP * clock[:-1] + 1e-9)
    # Where the tempo moves less than the bound, the clock is the tempo.
    steady = np.full(20, tempos[0]) * (1.0 + 0.5 * MAX_TEMPO_STEP) ** np.arange(20)
    assert bounded_clock(steady) == pytest.approx(steady)


@pytest.mark.parametrize("delay", [0.0, 1.5, 3.0, 6.0])
@pytest.mark.parametrize("level", [1.0, 2.0, 0.5])
def test_the_shift_is_how_far_the_clock_trails_at_any_level(delay: float, level: float) -> None:
    beats = np.arange(120, dtype=np.float64)
    tempo = 100.0 * (1.0 + 0.06 * np.sin(2.0 * np.pi * beats / 24.0))
    clock = level * np.interp(beats - delay, beats, tempo)
    clock[:10] = np.nan  # not yet running
    shift, misfit = shift_behind(clock, tempo)
    assert shift == pytest.approx(delay, abs=0.25)
    assert misfit < 0.002


def test_the_tempo_change_is_bar_to_bar_a_beat() -> None:
    # Bars of 4 beats at 100, then 104, then 104 bpm: 4 % in a bar, 1 % a beat, then 0.
    beats = np.concatenate(
        [
            np.arange(5) * 0.6,
            2.4 + np.arange(1, 5) * 0.6 / 1.04,
            2.4 + 2.4 / 1.04 + np.arange(1, 5) * 0.6 / 1.04,
        ]
    )
    assert tempo_change_a_beat(beats) == pytest.approx([0.01, 0.0], abs=1e-9)


def played_eighths(beats: list[float], seed: int) -> list[tuple[int, float, float]]:
    rng = random.Random(seed)
    onsets = [t for a, b in itertools.pairwise(beats) for t in (a, 0.5 * (a + b))]
    notes = [max(0.0, t + rng.gauss(0.0, 0.008)) for t in onsets]
    return [(60 + k % 8, t, t + 0.2) for k, t in enumerate(notes)]


def test_a_player_with_annotated_beats_is_measured_against_them(tmp_path: Path) -> None:
    """A steady player who sways slowly (3 % over 32 beats, a tempo the bound lets a clock
    follow) and one who lurches (8 % between bars): the clock follows the first within 2 beats,
    and the bounded clock told the tempo shows why the second cannot be."""
    folder = tmp_path / "annotated"
    folder.mkdir()
    for name, sway, period in (("sways", 0.03, 32), ("lurches", 0.08, 8)):
        lengths = [0.6 / (1.0 + sway * math.sin(2.0 * math.pi * k / period)) for k in range(100)]
        beats = [0.3 + float(t) for t in np.concatenate(([0.0], np.cumsum(lengths)))]
        write_midi(folder / f"{name}.mid", played_eighths(beats, 2))
        write_annotations(folder / f"{name}_annotations.txt", beats)
    write_midi(folder / "broken.mid", played_eighths([0.6 * k for k in range(100)], 3))
    (folder / "broken_annotations.txt").write_text("0.5\t0.5\tdb\nhalf past\t\tb\n")
    out = tmp_path / "clock.json"
    assert main(["eval-clock", str(folder), "--json", str(out)]) == 0
    report = json.loads(out.read_text())["annotated"]
    rows = {Path(row["name"]).name: row for row in report["rows"]}
    assert rows["broken.mid"]["heard"] and "against_beats" not in rows["broken.mid"]
    sways, lurches = rows["sways.mid"]["against_beats"], rows["lurches.mid"]["against_beats"]
    assert abs(sways["shift_beats"]) <= 2.0 and sways["misfit_percent"] < 2.0
    assert abs(sways["told_ahead_shift_beats"]) <= 0.5 and sways["bars_beyond_the_bound"] == 0.0
    assert abs(sways["told_live_shift_beats"]) <= 2.0
    assert lurches["bars_beyond_the_bound"] > 0.5
    assert lurches["tempo_change_a_beat_percent"] > 100.0 * MAX_TEMPO_STEP
    # Even told the tempo, a bounded clock trails the lurches and misses them; so does the clock.
    assert lurches["told_ahead_shift_beats"] >= 1.0 and lurches["told_ahead_misfit_percent"] > 1.5
    assert lurches["told_live_misfit_percent"] > lurches["told_ahead_misfit_percent"]
    assert lurches["misfit_percent"] > 2.0 * sways["misfit_percent"]
    summary = report["against_beats"]
    assert summary["takes"] == 2
    assert summary["told_ahead_within_2_beats"] >= 0.5


def test_a_broken_annotation_file_is_said_and_the_take_goes_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "one"
    folder.mkdir()
    write_midi(folder / "take.mid", played_eighths([0.6 * k for k in range(100)], 4))
    (folder / "take_annotations.txt").write_text("1.0\t1.0\tdb\n0.5\t0.5\tb\n")
    assert main(["eval-clock", str(folder)]) == 0
    captured = capsys.readouterr()
    assert "skipped the beats:" in captured.err and "the beats do not rise" in captured.err
    assert "against the player's annotated beats" not in captured.out
