"""``antiphon eval-clock``: the outgoing clock led by players time-stretched to speed up, on a
folder of small MIDI files made here (a steady player, and one with no beat at all)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from antiphon.daemon.cli import main
from antiphon.daemon.settings import Settings
from antiphon.training.eval_clock import (
    ACCEL_BEATS,
    ACCEL_RISE,
    LEAD_IN_BEATS,
    LEAD_OUT_BEATS,
    delay_behind_stretch,
    lead,
    measure,
    measure_excerpts,
    stretch,
    within_2_beats_interval,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.midi_files import write_midi


def steady_eighths(
    seed: int, bpm: float = 100.0, beats: int = 80
) -> list[tuple[int, float, float]]:
    rng = random.Random(seed)
    half_s = 30.0 / bpm
    onsets = [k * half_s + rng.gauss(0.0, 0.008) for k in range(2 * beats)]
    return [(60 + k % 8, max(0.0, t), max(0.0, t) + 0.8 * half_s) for k, t in enumerate(onsets)]


def no_beat(seed: int) -> list[tuple[int, float, float]]:
    rng = random.Random(seed)
    onsets = sorted(rng.uniform(0.0, 40.0) for _ in range(120))
    return [(60 + k % 12, t, t + 0.05) for k, t in enumerate(onsets)]


def two_players(tmp_path: Path, seed: int) -> Path:
    """A folder with a steady player and one with no beat."""
    folder = tmp_path / "players"
    folder.mkdir()
    write_midi(folder / "steady.mid", steady_eighths(seed))
    write_midi(folder / "free.mid", no_beat(seed + 1))
    return folder


def test_a_steady_player_stretched_is_followed_and_one_with_no_beat_starts_no_clock(
    tmp_path: Path,
) -> None:
    folder = two_players(tmp_path, 1)
    out = tmp_path / "clock.json"
    assert main(["eval-clock", str(folder), "--json", str(out)]) == 0
    report = json.loads(out.read_text())["players"]
    rows = {Path(row["name"]).name: row for row in report["rows"]}
    steady, free = rows["steady.mid"], rows["free.mid"]
    assert steady["heard"] and steady["beat_offered"] > 0.8
    assert abs(steady["delay_beats"]) <= 2.0
    assert 97.0 <= steady["bpm"] <= 103.0
    assert not free["heard"]
    assert report["takes"] == 2 and report["clock_started"] == 1
    assert report["delay_within_2_beats"] == 1.0
    assert report["delay_within_2_beats_of_all_takes"] == 0.5  # the free one: not followed
    most, fewer = report["beat_heard_at_most_onsets"], report["beat_heard_at_fewer_onsets"]
    assert most["takes"] == 1 and most["delay_within_2_beats"] == 1.0
    assert most["delay_beats_median"] == steady["delay_beats"]
    assert fewer == {"takes": 0, "delay_beats_median": None, "delay_within_2_beats": None}
    # Its answer to the stretch, beat by beat: none before the ramp, the whole 10 % after it.
    answer = steady["ratio_by_beat"]
    assert len(answer) == LEAD_IN_BEATS + ACCEL_BEATS + LEAD_OUT_BEATS
    assert all(r is None or r == pytest.approx(1.0, abs=0.01) for r in answer[:LEAD_IN_BEATS])
    assert all(r == pytest.approx(1.0 + ACCEL_RISE, abs=0.01) for r in answer[-8:])


def test_the_plot_draws_each_takes_answer(tmp_path: Path) -> None:
    folder = two_players(tmp_path, 3)
    plot = tmp_path / "clock.png"
    assert main(["eval-clock", str(folder), "--plot", str(plot)]) == 0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot.stat().st_size > 10_000


def test_excerpts_follow_one_another_through_a_performance(tmp_path: Path) -> None:
    """A steady player long enough for two takes and a few bars more: two excerpts of 64
    beats, one after the other, each followed; the 12 beats left are too short to be a take."""
    notes = steady_eighths(5, beats=140)
    onsets = np.array([on for _, on, _ in notes])
    rows = measure_excerpts("steady", onsets, 0.5, 5)
    assert [row["excerpt"] for row in rows] == [0, 1]
    first, second = rows
    assert first == {**measure("steady", onsets, 0.5), "excerpt": 0}
    assert first["heard"] and second["heard"]
    assert abs(first["delay_beats"]) <= 2.0 and abs(second["delay_beats"]) <= 2.0
    # The first is 64 beats at 100 bpm; the second starts after it.
    assert first["span_s"] == pytest.approx(64 * 0.6, rel=0.03)
    assert second["ratio_by_beat"] != first["ratio_by_beat"]
    assert len(measure_excerpts("steady", onsets, 0.5, 1)) == 1
    folder = tmp_path / "long"
    folder.mkdir()
    write_midi(folder / "steady.mid", notes)
    out = tmp_path / "clock.json"
    assert main(["eval-clock", str(folder), "--excerpts", "3", "--json", str(out)]) == 0
    report = json.loads(out.read_text())["long"]
    assert report["takes"] == 2 and report["clock_started"] == 2
    assert report["delay_within_2_beats_interval"] == [1.0, 1.0]


def test_the_interval_of_the_share_within_two_beats_draws_performances_whole() -> None:
    def row(name: str, delay: float) -> dict[str, object]:
        return {"name": name, "delay_beats": delay}

    assert within_2_beats_interval([]) is None
    assert within_2_beats_interval([row("a", 0.5), row("b", -1.0)]) == [1.0, 1.0]
    assert within_2_beats_interval([row("a", 3.0), row("b", 16.0)]) == [0.0, 0.0]
    # One performance whose excerpts are all followed, among many that are not: the interval
    # holds the share and is wide, as one performance (not its four takes) was drawn.
    rows = [row("a", 0.0)] * 4 + [row(f"p{k}", 9.0) for k in range(12)]
    low, high = within_2_beats_interval(rows) or (None, None)
    assert low is not None and high is not None
    assert low == 0.0 and 4 / 16 < high <= 1.0


def test_a_follow_rate_out_of_range_is_one_line_and_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["eval-clock", str(tmp_path), "--follow", "2"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert main(["eval-clock", str(tmp_path), "--excerpts", "0"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


@settings(max_examples=60, deadline=None)
@given(
    delay_beats=st.floats(0.0, 12.0),
    depth=st.floats(0.0, 0.08),
    period_beats=st.floats(3.0, 24.0),
    phase=st.floats(0.0, 6.3),
)
def test_the_delay_is_the_clocks_answer_to_the_stretch_whatever_the_players_rubato(
    delay_beats: float, depth: float, period_beats: float, phase: float
) -> None:
    """A clock whose tempo is the player's own (rubato and all) times the stretch, that many
    beats late: the delay is found and the rubato, common to both takes, divides out."""
    beat_s = 0.5
    played, rise, stretched_at = stretch(beat_s)

    def rubato(at_s: np.ndarray) -> np.ndarray:
        return 100.0 * (1.0 + depth * np.sin(2.0 * np.pi * at_s / beat_s / period_beats + phase))

    def stretched(at_s: np.ndarray) -> np.ndarray:
        then_s = np.interp(at_s, stretched_at, played)
        late = np.interp(then_s - delay_beats * beat_s, played, rise)
        return rubato(then_s) * (1.0 + late)

    fitted = delay_behind_stretch(rubato, stretched, played, stretched_at, rise, beat_s)
    assert fitted is not None
    delay, misfit = fitted
    assert delay == pytest.approx(delay_beats, abs=0.06)
    assert misfit < 1e-3


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_player_with_rubato_who_speeds_up_is_followed_within_two_beats(seed: int) -> None:
    """Eighths at 100 bpm whose tempo sways 2 % either way over 4 bars (the tracker is
    unsure of such a beat much of the time), with 8 ms of jitter: the running clock follows
    the player through the sway, so their speeding up is followed within 2 beats (at the
    default follow rate)."""
    rng = np.random.default_rng(seed)
    sway = 1.0 + 0.02 * np.sin(2.0 * np.pi * np.arange(400) / 32.0 + rng.uniform(0.0, 6.3))
    onsets = np.cumsum(0.3 / sway) + rng.normal(0.0, 0.008, 400)
    row = measure("swaying", onsets, follow=Settings().clock_out_follow)
    assert row["heard"]
    assert abs(row["delay_beats"]) <= 2.0
    assert row["largest_step_percent"] <= 2.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_player_who_plays_out_of_time_moves_the_clock_little(seed: int) -> None:
    """Steady eighths at 100 bpm start the clock; then a minute of onsets at random: the
    tracker hears next to no beat, and the clock follows only what it does hear (following
    every guess, it drifts 15 % at the median)."""
    rng = np.random.default_rng(seed)
    steady = np.arange(64) * 0.3 + rng.normal(0.0, 0.008, 64)
    free = np.sort(rng.uniform(steady[-1] + 0.3, steady[-1] + 60.3, 240))
    tempos, _ = lead(np.concatenate([steady, free]), follow=Settings().clock_out_follow)
    out_of_time = [bpm for at_s, bpm in tempos if at_s > steady[-1]]
    assert tempos and tempos[0][1] == pytest.approx(100.0, rel=0.02)
    assert max(abs(bpm / 100.0 - 1.0) for bpm in out_of_time) <= 0.08
