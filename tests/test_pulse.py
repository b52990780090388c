"""The beat: the tracker on generated onsets, the MIDI clock follower, the grid, and replies
that keep the beat (on the shipped model, a simulated clock, no ports)."""

from __future__ import annotations

import math
from pathlib import Path

import mido
import numpy as np
import pytest
from antiphon.daemon.musician.clocks.beat_keeper import BeatKeeper
from antiphon.daemon.musician.clocks.midi_clock import (
    CONTINUE,
    SONG_POSITION,
    START,
    STOP,
    TICK,
    ClockFollower,
    ClockInbox,
)
from antiphon.daemon.musician.hearing.beat import BeatGrid, BeatTracker, choose_subdivision
from antiphon.daemon.musician.model.engine import Engine
from antiphon.daemon.musician.playing.performer import ManualClock, Performer
from antiphon.daemon.settings import Settings
from hypothesis import given, settings
from hypothesis import strategies as st

MODEL = Path(__file__).resolve().parent.parent / "exported_models" / "antiphon-piano.onnx"


def tracked(onsets: np.ndarray) -> BeatTracker:
    tracker = BeatTracker()
    for onset_s in onsets:
        tracker.onset(float(onset_s))
    return tracker


def steady(bpm: float, seconds: float, seed: int, keep: float = 0.7) -> np.ndarray:
    """Eighths at ``bpm`` with some left out and 12 ms of timing jitter: a played melody."""
    rng = np.random.default_rng(seed)
    grid = np.arange(0.0, seconds, 30.0 / bpm)
    played = grid[rng.random(len(grid)) < keep]
    return np.sort(played + rng.normal(0.0, 0.012, len(played)))


@pytest.mark.parametrize("bpm", [72, 84, 108, 120])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_steady_melody_gets_its_tempo_with_confidence(bpm: float, seed: int) -> None:
    tracker = tracked(steady(bpm, 20.0, seed))
    grid = tracker.grid()
    assert grid is not None
    assert grid.tempo_bpm == pytest.approx(bpm, rel=0.02)
    assert tracker.confidence > 0.6


def test_an_accelerating_player_is_followed() -> None:
    beats = [0.0]
    while beats[-1] < 40.0:  # 100 to 130 bpm over 40 s
        beats.append(beats[-1] + 60.0 / (100.0 + 30.0 * beats[-1] / 40.0))
    times = np.array(beats)
    eighths = np.sort(np.concatenate([times, (times[:-1] + times[1:]) / 2]))
    rng = np.random.default_rng(4)
    tracker = BeatTracker()
    for k, onset_s in enumerate(eighths + rng.normal(0.0, 0.008, len(eighths))):
        tracker.onset(float(onset_s))
        if k > 40 and k % 10 == 0:
            grid = tracker.grid()
            assert grid is not None
            true_bpm = 60.0 / (times[k // 2 + 1] - times[k // 2])
            assert grid.tempo_bpm == pytest.approx(true_bpm, rel=0.04)


def test_swung_eighths_are_heard_as_triplets_of_the_beat() -> None:
    beats = np.arange(0.0, 20.0, 0.5)
    swung = np.sort(np.concatenate([beats, beats + 1.0 / 3.0]))
    rng = np.random.default_rng(5)
    tracker = tracked(swung + rng.normal(0.0, 0.008, len(swung)))
    grid = tracker.grid()
    assert grid is not None
    assert grid.tempo_bpm == pytest.approx(120, rel=0.02)
    assert grid.subdivision == 3


@pytest.mark.parametrize("seed", range(6))
def test_rubato_is_no_beat(seed: int) -> None:
    rng = np.random.default_rng(seed)
    free = np.cumsum(rng.lognormal(math.log(0.3), 0.5, 60))
    tracker = tracked(free)
    assert tracker.confidence < 0.3
    assert tracker.grid() is None


def test_a_chord_is_one_onset_and_a_reset_forgets() -> None:
    melody = steady(120, 10.0, 6)
    chords = np.repeat(melody, 3) + np.tile([0.0, 0.01, 0.02], len(melody))
    tracker = tracked(chords)
    assert tracker.grid() is not None
    assert tracker.groups == len(melody)
    tracker.reset()
    assert tracker.grid() is None and tracker.groups == 0


@given(
    beat_s=st.floats(0.25, 1.5),
    anchor_s=st.floats(-100, 100),
    time_s=st.floats(-100, 100),
    subdivision=st.sampled_from([2, 3, 4]),
    groove=st.floats(0.0, 1.0),
)
@settings(max_examples=200, deadline=None)
def test_the_grid_pulls_onsets_toward_its_points_and_never_back_in_time(
    beat_s: float, anchor_s: float, time_s: float, subdivision: int, groove: float
) -> None:
    grid = BeatGrid(beat_s=beat_s, anchor_s=anchor_s, subdivision=subdivision)
    target_s = grid.nearest_unit_s(time_s)
    assert abs(target_s - time_s) <= grid.unit_s / 2 + 1e-9
    pulled_s = grid.pull(time_s, groove)
    assert abs(pulled_s - target_s) <= abs(time_s - target_s) + 1e-9
    assert grid.pull(time_s, 0.0) == time_s
    on_grid_s = grid.pull(time_s, 1.0, not_before_s=time_s)
    assert on_grid_s >= time_s - 1e-9
    assert on_grid_s - time_s <= grid.unit_s + 1e-9
    beat = grid.next_beat_s(time_s)
    assert time_s - 1e-6 <= beat <= time_s + beat_s + 1e-6


def test_the_subdivision_is_the_coarsest_the_call_uses() -> None:
    assert choose_subdivision([0.0, 0.25, 0.5, 1.0], 0.5, 0.0) == 2
    assert choose_subdivision([0.0, 1 / 6, 1 / 3, 0.5, 2 / 3], 0.5, 0.0) == 3
    assert choose_subdivision([0.0, 0.125, 0.25, 0.375, 0.5], 0.5, 0.0) == 4
    assert choose_subdivision([], 0.5, 0.0) == 2


# MIDI clock ------------------------------------------------------------------------------


def clocked(bpm: float, beats: int, start_s: float = 0.0, jitter_s: float = 0.0) -> ClockFollower:
    follower = ClockFollower(beats_per_bar=4)
    follower.hear(START, start_s)
    rng = np.random.default_rng(7)
    tick_s = 60.0 / bpm / 24
    for k in range(24 * beats):
        follower.hear(TICK, start_s + 0.01 + k * tick_s + rng.uniform(0.0, jitter_s))
    return follower


def test_the_clock_gives_the_tempo_beats_and_bars_as_sent() -> None:
    follower = clocked(120, 9, jitter_s=0.005)
    now_s = 0.01 + 9 * 0.5 - 0.02
    grid = follower.grid(now_s)
    assert grid is not None and grid.source == "midi"
    assert grid.tempo_bpm == pytest.approx(120, rel=0.01)
    assert grid.next_beat_s(now_s) == pytest.approx(0.01 + 9 * 0.5, abs=0.003)
    assert grid.next_bar_s(now_s) == pytest.approx(0.01 + 12 * 0.5, abs=0.005)


def test_the_clock_follows_a_new_tempo_within_two_beats() -> None:
    follower = clocked(120, 8)
    tick_s = 60.0 / 96 / 24
    last_s = 0.01 + 8 * 0.5
    for k in range(48):
        follower.hear(TICK, last_s + k * tick_s)
    grid = follower.grid(last_s + 47 * tick_s)
    assert grid is not None
    assert grid.tempo_bpm == pytest.approx(96, rel=0.005)


def test_the_clock_stops_on_stop_and_when_ticks_cease_and_runs_again_on_continue() -> None:
    follower = clocked(120, 4)
    end_s = 0.01 + 4 * 0.5
    assert follower.running(end_s)
    assert not follower.running(end_s + 2.0)  # no ticks for four beats
    follower.hear(STOP, end_s)
    assert follower.grid(end_s) is None
    follower.hear(CONTINUE, end_s + 0.1)
    for k in range(4):
        follower.hear(TICK, end_s + 0.1 + k / 48)
    assert follower.running(end_s + 0.2)


def test_song_position_sets_where_the_bars_are() -> None:
    follower = ClockFollower(beats_per_bar=4)
    follower.hear(SONG_POSITION, 0.0, 4)  # one beat into the song (4 sixteenths)
    follower.hear(CONTINUE, 0.0)
    for k in range(48):
        follower.hear(TICK, 1.0 + k * 0.5 / 24)
    grid = follower.grid(1.0 + 47 * 0.5 / 24)
    assert grid is not None
    # Tick 0 heard was beat 2 of bar 1: the next bar starts 3 beats after it.
    assert grid.next_bar_s(1.9) == pytest.approx(1.0 + 3 * 0.5, abs=1e-6)


def test_the_inbox_keeps_only_clock_messages() -> None:
    inbox = ClockInbox()
    assert inbox.submit(mido.Message("clock"), 1.0)
    assert inbox.submit(mido.Message("songpos", pos=8), 1.1)
    assert not inbox.submit(mido.Message("note_on", note=60), 1.2)
    assert [code for code, _, _ in inbox.items] == [TICK, SONG_POSITION]


def test_the_clock_wins_while_it_runs_then_the_player_beat_is_back() -> None:
    keeper = BeatKeeper()
    for onset_s in steady(100, 10.0, 8):
        keeper.hear_player(float(onset_s))
    for k in range(24 * 4):
        keeper.submit_clock(mido.Message("clock"), 10.0 + k * 0.5 / 24)
    now_s = 10.0 + 4 * 0.5
    midi = keeper.grid(now_s, "midi")
    assert midi is not None and midi.source == "midi"
    assert midi.tempo_bpm == pytest.approx(120, rel=0.01)
    player = keeper.grid(now_s, "player")
    assert player is not None and player.tempo_bpm == pytest.approx(100, rel=0.02)
    assert keeper.grid(now_s, "off") is None
    keeper.submit_clock(mido.Message("stop"), now_s)
    after = keeper.grid(now_s + 0.1, "midi")
    assert after is not None and after.source == "player"


def test_a_reply_starts_on_the_next_beat_and_never_more_than_a_beat_late() -> None:
    keeper = BeatKeeper()
    onsets = steady(120, 8.0, 9, keep=1.0)
    for onset_s in onsets:
        keeper.hear_player(float(onset_s))
    end_s = float(onsets[-1]) + 0.35
    for start in ("now", "beat", "bar"):
        plan = keeper.plan(0.0, float(onsets[-1]), end_s, end_s, "player", start, 1.0)
        assert plan.grid is not None
        assert end_s <= plan.start_s <= end_s + plan.grid.beat_s + 1e-9
        if start != "now":
            beats = (plan.start_s - plan.grid.anchor_s) / plan.grid.beat_s
            assert beats == pytest.approx(round(beats), abs=1e-6)


# Replies --------------------------------------------------------------------------------


def perform(
    call_onsets: np.ndarray, seed: int = 0, **values: object
) -> tuple[Performer, list[tuple[float, mido.Message]]]:
    """A performer that heard a call of eighth notes at the given onsets and answered it;
    the messages it sent, with their times."""
    engine = Engine(MODEL, seed=seed)
    clock = ManualClock()
    sent: list[tuple[float, mido.Message]] = []

    class Sink:
        def send(self, message: mido.Message) -> None:
            sent.append((clock.now_s, message))

    performer = Performer(Settings(model=str(MODEL), **values), engine, Sink(), clock=clock)  # type: ignore[arg-type]
    pitches = [60, 62, 64, 65, 67, 69, 71, 72]
    for k, onset_s in enumerate(call_onsets):
        pitch = pitches[k % len(pitches)]
        performer.process_until(float(onset_s))
        performer.submit(mido.Message("note_on", note=pitch, velocity=80), float(onset_s))
        performer.process_until(float(onset_s) + 0.2)
        performer.submit(mido.Message("note_off", note=pitch), float(onset_s) + 0.2)
    performer.process_until(float(call_onsets[-1]) + 8.0)
    performer.close()
    return performer, sent


def reply_to(call_onsets: np.ndarray, seed: int = 0, **values: object) -> list[float]:
    """The reply's note-on times to a call of eighth notes at the given onsets."""
    _, sent = perform(call_onsets, seed, **values)
    return [t for t, m in sent if m.type == "note_on" and m.velocity > 0]


CALL = steady(120, 6.0, 10, keep=0.8)


@pytest.mark.parametrize("seed", [0, 1])
def test_at_groove_zero_and_start_now_the_reply_is_the_free_one_bit_for_bit(seed: int) -> None:
    free = reply_to(CALL, seed, clock="off")
    assert reply_to(CALL, seed, clock="player", groove=0.0, reply_start="now") == free
    assert reply_to(CALL, seed, clock="midi", groove=0.0, reply_start="now") == free


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_at_groove_one_every_reply_onset_is_on_the_calls_grid(seed: int) -> None:
    onsets = reply_to(CALL, seed, groove=1.0, reply_start="beat")
    free = reply_to(CALL, seed, clock="off")
    assert onsets != free
    tracker = tracked(CALL)
    grid = tracker.grid()
    assert grid is not None
    # The tracker's grid moves a little as the reply goes on: within 20 ms of the call's.
    offsets = [(t - grid.anchor_s) / grid.unit_s for t in onsets]
    assert max(abs(o - round(o)) * grid.unit_s for o in offsets) < 0.02
    beats = (onsets[0] - grid.anchor_s) / grid.beat_s
    assert abs(beats - round(beats)) * grid.beat_s < 0.02


@pytest.mark.parametrize(("reply_start", "groove"), [("beat", 1.0), ("now", 1.0), ("now", 0.5)])
def test_the_wait_for_the_beat_is_reported_apart_from_the_reaction(
    reply_start: str, groove: float
) -> None:
    """A reply the beat starts later is on time: its report counts the wait as the beat's
    (from the phrase end to the first note), and the daemon's reaction (0 on this clock)
    without it."""
    performer, sent = perform(
        CALL, 0, groove=groove, reply_start=reply_start, turns="gap", phrase_gap_s=0.35
    )
    report = performer.reply_reports()[-1]  # those before: the call went on
    first_s = next(
        t for t, m in sent if m.type == "note_on" and m.velocity > 0 and t >= report.phrase_end_s
    )
    assert report.beat_wait_ms is not None and report.beat_wait_ms > 1.0
    assert report.beat_wait_ms == pytest.approx(1000.0 * (first_s - report.phrase_end_s))
    assert report.reaction_ms == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("clock", ["player", "midi"])
def test_with_no_groove_and_start_now_replies_are_those_of_free_timing_bit_for_bit(
    clock: str,
) -> None:
    """With the tracker hearing the calls, groove 0 and reply_start now change nothing: the
    replies equal those with no clock at all (as before the beat existed), both computed here
    on this machine (a reference recorded elsewhere could differ in a sampled token)."""
    from tests.test_follow import CALLS, KNOB_OFF_CASES, answer, flat

    for call, seed, noise in KNOB_OFF_CASES:
        knobs = {"noise": noise, "follow": 0.0, "mirror": 0.0}
        free = answer(CALLS[call], seed, clock="off", **knobs)
        kept = answer(CALLS[call], seed, clock=clock, groove=0.0, reply_start="now", **knobs)
        assert len(free) > 0
        assert flat(kept) == flat(free), (call, seed, noise)
