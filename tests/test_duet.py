"""The duet (``mode duet`` and ``both``): the pure pushes (register, density, loudness, the
part's end), and the real performer on the shipped model playing a part while a player plays:
below the split, on its own channel, stopped at once by all-notes-off and panic with nothing
left sounding, ended at the bar when the player stops; call mode untouched."""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path
from typing import Any

import mido
import numpy as np
import pytest
from antiphon.daemon.codec import PITCHES, CodecConfig, Vocabulary
from antiphon.daemon.musician.hearing.beat import BeatGrid
from antiphon.daemon.musician.hearing.phrase_shape import ONSET_GROUP_S
from antiphon.daemon.musician.model.engine import Engine
from antiphon.daemon.musician.playing import duet
from antiphon.daemon.musician.playing.performer import Performer
from antiphon.daemon.settings import REGISTERS
from antiphon.daemon.surface.parameters import ParameterError
from antiphon.daemon.tools.bench_duet import PART_LINE
from antiphon.training import duet_measures
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.test_performer import (
    MODEL,
    ListSink,
    SlowEngine,
    assert_same_snapshot,
    call_messages,
    finish,
    make,
    play,
    snapshot,
)

VOCABULARY = Vocabulary(CodecConfig())
DUET_CHANNEL = 1  # the default duet_output_channel 2, counted from 0

# A player's line above middle C: 48 eighth notes at 120 bpm (12 s), then silence.
LINE = [(72 + (3 * i) % 9, 0.25 * i, 0.25 * i + 0.2) for i in range(48)]


# The pure pushes ------------------------------------------------------------------------------


@given(split=st.integers(1, 127), register=st.sampled_from(REGISTERS))
def test_the_register_mask_keeps_one_side_of_the_split(split: int, register: str) -> None:
    mask = duet.register_mask(split, register)
    assert mask.shape == (PITCHES,)
    below = np.arange(PITCHES) < split
    assert np.array_equal(mask, below if register == "below" else ~below)


@given(density=st.floats(0.25, 8.0), split=st.integers(1, 127))
def test_density_pushes_only_the_part_s_own_note_ons(density: float, split: int) -> None:
    register = duet.register_mask(split, "below")
    bias = duet.density_bias(VOCABULARY, register, density)
    assert bias.shape == (VOCABULARY.size,)
    assert np.allclose(bias[:PITCHES][register], math.log(density))
    assert np.allclose(bias[:PITCHES][~register], -math.log(density))
    assert not bias[PITCHES:].any()


@given(model=st.integers(1, 127), player=st.floats(1.0, 127.0), ratio=st.floats(0.1, 2.0))
def test_duet_loudness_stays_a_midi_velocity_and_grows_with_the_ratio(
    model: int, player: float, ratio: float
) -> None:
    velocity = duet.duet_loudness(model, player, ratio)
    assert 1 <= velocity <= 127
    assert duet.duet_loudness(model, player, min(2.0, ratio + 0.2)) >= velocity


def test_at_ratio_1_a_note_as_loud_as_the_player_stays_as_loud() -> None:
    assert duet.duet_loudness(80, 80.0, 1.0) == 80
    assert duet.duet_loudness(80, 80.0, 0.5) == 40


@settings(max_examples=200)
@given(
    beat_s=st.floats(0.25, 1.5),
    anchor_s=st.floats(0.0, 10.0),
    stopped_after_s=st.floats(0.0, 20.0),
    late_s=st.floats(0.0, 3.0),
    carry_bars=st.integers(0, 64),
)
def test_the_part_ends_on_a_downbeat_after_the_player_stops(
    beat_s: float, anchor_s: float, stopped_after_s: float, late_s: float, carry_bars: int
) -> None:
    grid = BeatGrid(beat_s, anchor_s, bar_anchor_s=anchor_s)
    stopped_s = anchor_s + stopped_after_s
    now_s = stopped_s + late_s
    end_s = duet.duet_end_s(stopped_s, now_s, grid, carry_bars)
    bar_s = 4 * beat_s
    assert end_s >= now_s
    if end_s > now_s:  # not cut short because the end of the bar had passed already
        bars = (end_s - anchor_s) / bar_s
        assert abs(bars - round(bars)) < 1e-6
        # (A stop within the grid's rounding after a downbeat is on it: 1e-9 of a bar.)
        assert end_s - stopped_s <= (carry_bars + 1) * bar_s + 1e-6
        assert end_s - stopped_s >= carry_bars * bar_s - 1e-6


@given(stopped_s=st.floats(0.0, 100.0), carry_bars=st.integers(0, 64))
def test_without_a_beat_the_part_carries_on_for_free_bars(
    stopped_s: float, carry_bars: int
) -> None:
    end_s = duet.duet_end_s(stopped_s, stopped_s, None, carry_bars)
    assert end_s == pytest.approx(stopped_s + carry_bars * duet.FREE_BAR_S)


def test_a_part_under_sixteenths_keeps_the_coarser_grid() -> None:
    grid = BeatGrid(0.5, 0.0)
    sixteenths = [0.125 * i for i in range(16)]
    placed = duet.part_grid(grid, sixteenths, 0.0)
    assert placed is not None
    assert placed.subdivision == duet.FINEST_SUBDIVISION
    assert placed.bar_anchor_s == 0.0
    assert duet.part_grid(None, sixteenths, 0.0) is None


@given(
    beat_s=st.floats(0.25, 1.5),
    anchor_s=st.floats(-10.0, 10.0),
    subdivision=st.sampled_from((1, 2, 3, 4)),
    onset_s=st.floats(0.0, 100.0),
)
def test_the_part_s_grid_takes_the_player_s_phase(
    beat_s: float, anchor_s: float, subdivision: int, onset_s: float
) -> None:
    grid = BeatGrid(beat_s, anchor_s, subdivision, bar_anchor_s=anchor_s - beat_s)
    phased = duet.player_phase(grid, onset_s)
    unit_s = grid.unit_s
    units = (onset_s - phased.anchor_s) / unit_s
    assert abs(units - round(units)) < 1e-6, "the player's onset is on the part's grid"
    shift_s = phased.anchor_s - anchor_s
    assert abs(shift_s) <= unit_s / 2 + 1e-9
    assert phased.bar_anchor_s == pytest.approx(grid.bar_anchor_s + shift_s)
    assert (phased.beat_s, phased.subdivision) == (beat_s, subdivision)
    daw = BeatGrid(beat_s, anchor_s, subdivision, source="midi")
    assert duet.player_phase(daw, onset_s) is daw, "a DAW's clock is not moved"


def test_an_unsure_beat_is_kept_only_from_the_duet_s_confidence(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert duet.duet_grid_guess(None) is None
    guess = BeatGrid(0.5, 0.0, confidence=0.0)
    assert duet.duet_grid_guess(guess) is (guess if duet.DUET_CONFIDENT == 0.0 else None)
    monkeypatch.setattr(duet, "DUET_CONFIDENT", 0.5)
    unsure = BeatGrid(0.5, 0.0, confidence=0.25)
    sure = BeatGrid(0.5, 0.0, confidence=0.5)
    assert duet.duet_grid_guess(unsure) is None
    assert duet.duet_grid_guess(sure) is sure


def test_the_player_s_harmony_pushes_down_the_pitch_classes_outside_it() -> None:
    harmony = duet.PlayerHarmony()
    for i, pitch in enumerate([60, 62, 64, 65, 67, 69, 71, 72] * 2):  # C major, up and again
        harmony.note_on(pitch, 0.25 * i)
    bias = harmony.bias()
    assert bias[48] == 0.0 and bias[55] == 0.0  # C and G
    assert bias[49] == -duet.HARMONY_PUSH and bias[54] == -duet.HARMONY_PUSH  # C# and F#


# The measures ---------------------------------------------------------------------------------


def test_the_measures_split_the_hands_and_score_a_part_in_the_player_s_harmony() -> None:
    notes = np.asarray([(72, 0.0, 0.5, 80), (48, 0.0, 1.0, 60), (76, 0.5, 1.0, 80)], float)
    player, below = duet_measures.split_hands(notes, 60)
    assert player[:, 0].tolist() == [72, 76] and below[:, 0].tolist() == [48]
    assert duet_measures.consonance(player, below) == 1.0
    off = np.asarray([(49, 0.1, 0.4, 60)], float)  # C# under C and E
    assert duet_measures.consonance(player, off) == 0.0
    assert duet_measures.overlap(player, below) == 0.0
    assert duet_measures.overlap(player, np.asarray([(74, 0.1, 0.2, 60)], float)) == 1.0
    assert duet_measures.density_ratio(below, notes) == pytest.approx(1 / 3)


# The performer --------------------------------------------------------------------------------


def duet_performer(**values: Any) -> tuple[Performer, Any, ListSink]:
    values.setdefault("mode", "duet")
    return make(**values)


def duet_notes(sink: ListSink) -> list[tuple[float, int]]:
    return sink.note_ons(channel=DUET_CHANNEL)


def test_the_duet_part_plays_below_the_split_while_the_player_plays() -> None:
    performer, _, sink = duet_performer(duet_split=60)
    play(performer, call_messages(LINE))
    last_player_s = LINE[-1][2]
    finish(performer)
    notes = duet_notes(sink)
    assert len(notes) >= 8
    assert all(pitch < 60 for _, pitch in notes)
    during = [t for t, _ in notes if t < last_player_s]
    assert len(during) >= 0.8 * len(notes), "most of the part sounds while the player plays"
    assert not sink.note_ons(channel=0), "no phrase answer in duet mode"
    assert sink.sounding() == set()
    assert performer.status()["duet_parts"] == 1


def test_each_of_the_player_s_events_enters_the_state_in_one_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The duet's reaction: a note-on's tokens (time shift, velocity, note) in one run of the
    model, not one run a token."""
    runs: list[list[int]] = []
    feed_run = Engine.feed_run

    def counted(self: Engine, tokens: list[int]) -> None:
        runs.append(list(tokens))
        feed_run(self, tokens)

    monkeypatch.setattr(Engine, "feed_run", counted)
    performer, _, sink = duet_performer(duet_split=60)
    vocabulary = performer._conversation.vocabulary
    play(performer, call_messages(LINE))
    finish(performer)
    note_ons = [
        r for r in runs if r and vocabulary.note_on_base <= r[-1] < vocabulary.note_off_base
    ]
    assert len(note_ons) >= len(LINE)  # every note-on heard came in a run (the part's too)
    assert sum(len(run) > 1 for run in note_ons) >= len(LINE) // 2
    assert duet_notes(sink), "the part still plays"


def part_schedule_errors_ms(caplog: pytest.LogCaptureFixture) -> list[float]:
    """The largest schedule error (sent - planned) of each duet part, from its log line."""
    return [
        float(found.group(1))
        for record in caplog.records
        if (found := re.search(r"schedule_error_max_ms=([\d.]+)", record.getMessage()))
    ]


def test_a_part_s_note_is_planned_no_earlier_than_it_was_drawn(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The player's events reach the performer 5 ms after they were stamped (the MIDI
    thread's hand-over, live): a note the part draws with one of them is planned for when
    it is drawn, so the part's own schedule error stays that of its sends (here none)."""
    performer, _, sink = duet_performer(duet_split=60)
    with caplog.at_level(logging.INFO, logger="antiphon.daemon.musician.playing.performer"):
        for time_s, message in call_messages(LINE):
            performer.process_until(time_s + 0.005)
            performer.submit(message, time_s)
        finish(performer)
    assert len(duet_notes(sink)) >= 8
    errors = part_schedule_errors_ms(caplog)
    assert errors and max(errors) < 0.5


def test_a_part_s_report_times_each_of_the_player_s_note_ons_entering_the_state(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The duet's reaction, as the live daemon logs it at each part's end and ``bench_duet``
    reads it: every note-on of the player's is timed."""
    performer, _, _ = duet_performer(duet_split=60)
    with caplog.at_level(logging.INFO, logger="antiphon.daemon.musician.playing.performer"):
        play(performer, call_messages(LINE))
        finish(performer)
    found = [m for r in caplog.records if (m := PART_LINE.search(r.getMessage()))]
    assert len(found) == 1
    heard, p50, p99, largest = map(float, found[0].groups()[2:])
    assert heard == len(LINE)
    assert 0.0 < p50 <= p99 <= largest < 1000.0


def test_a_part_s_decisions_are_planned_once_made_when_the_model_takes_time(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every model step takes 0.3 ms of the performer's clock (a slow machine, live): a note
    the part draws, and a note it cuts short at a player's onset, are planned for when they
    were decided, and nothing that was planned waits for a drawing ahead. (Before, a note
    drawn with the player's was planned for when its drawing began: 0.9 ms late here.)"""
    performer, _, sink = duet_performer(engine=SlowEngine(MODEL), duet_split=60)
    with caplog.at_level(logging.INFO, logger="antiphon.daemon.musician.playing.performer"):
        play(performer, call_messages(LINE))
        finish(performer)
    errors = part_schedule_errors_ms(caplog)
    assert len(duet_notes(sink)) >= 8
    # At most one step: a release due when nothing is drawn waits for the draw before it.
    assert errors and max(errors) < 0.5


def test_what_is_due_is_sent_without_drawing_before_the_player_s_event_is_taken() -> None:
    """``advance(draw=False)``, what the live loop sends before it takes a player's event:
    drawn events due are played; with nothing drawn, nothing is drawn (the state, random
    streams included, stays as it was), and nothing is played."""
    performer, clock, _ = duet_performer(duet_split=60)
    play(performer, call_messages(LINE[:8]))
    part = performer._duet.part
    assert part is not None
    engine = performer._conversation.engine
    part.rewind()
    before = snapshot(engine)
    assert part.advance(clock(), draw=False) == []
    assert_same_snapshot(before, snapshot(engine))
    part.draw_ahead()
    assert part.drawn_ahead >= 1
    due_s = part.next_due_s()
    assert due_s is not None
    assert part.advance(due_s, draw=False), "what is due then is played"


def test_a_part_s_note_put_with_the_player_s_next_is_struck_when_the_player_comes_sooner() -> None:
    """The part's next drawn event is a note-on; the player's note-on comes 10 ms before it
    was due: the part's note is struck with the player's (now), not rolled back."""
    performer, _, sink = duet_performer(duet_split=60)
    play(performer, call_messages(LINE[:8]))
    part = performer._duet.part
    assert part is not None
    for _ in range(200):  # on to a moment where the next event drawn is a note-on
        part.draw_ahead()
        first = part._drawn[0] if part._drawn else None
        if first is not None and first.message is not None and first.message.type == "note_on":
            break
        due_s = part.next_due_s()
        assert due_s is not None
        performer.process_until(due_s)
    else:
        pytest.fail("the part drew no note-on")
    player_s = first.due_s - 0.01
    performer.process_until(player_s)
    performer.submit(mido.Message("note_on", note=74, velocity=80), player_s)
    performer.process_until(player_s)
    struck = [
        (t, m.note) for t, m in sink.sent if m.type == "note_on" and m.channel == DUET_CHANNEL
    ]
    assert struck[-1] == (player_s, first.message.note)


def part_notes(sink: ListSink) -> list[tuple[int, float, float]]:
    """The duet part's notes (pitch, onset, offset) as the sink heard them."""
    started: dict[int, float] = {}
    notes = []
    for time_s, message in sink.sent:
        if getattr(message, "channel", None) != DUET_CHANNEL:
            continue
        if message.type in ("note_on", "note_off") and message.note in started:
            notes.append((message.note, started.pop(message.note), time_s))
        if message.type == "note_on" and message.velocity > 0:
            started[message.note] = time_s
    return notes


def test_a_part_s_note_ends_by_the_part_s_second_onset_group_after_it() -> None:
    performer, _, sink = duet_performer()
    play(performer, call_messages(LINE))
    finish(performer)
    notes = part_notes(sink)
    assert len(notes) >= 8
    groups: list[float] = []
    for _, on_s, _ in sorted(notes, key=lambda n: n[1]):
        if not groups or on_s - groups[-1] >= ONSET_GROUP_S:
            groups.append(on_s)
    for _, on_s, off_s in notes:
        later = [g for g in groups if g > on_s]
        if len(later) >= duet.HELD_ONSETS:
            assert off_s <= later[duet.HELD_ONSETS - 1] + 1e-9


def test_a_part_s_notes_sound_at_most_its_note_beats() -> None:
    """On the player's beat (the tracker's, from the steady line), no note of the part
    outlasts ``NOTE_BEATS`` beats of its grid."""
    performer, _, sink = duet_performer(clock="player")
    play(performer, call_messages(LINE))
    grid = performer._duet.grid
    finish(performer)
    assert grid is not None
    notes = [n for n in part_notes(sink) if n[1] >= 4.0]  # the beat is known by then
    assert notes
    assert max(off_s - on_s for _, on_s, off_s in notes) <= duet.NOTE_BEATS * grid.beat_s + 1e-6


def test_the_part_s_notes_fall_on_its_grid_counted_from_the_player_s_last_note() -> None:
    """A player a little off the tracker's grid (eighths pushed and pulled by up to 20 ms):
    every note the part strikes, once it has a beat, is a whole number of its grid's units
    after the player's latest note."""
    jitter_s = (0.0, 0.02, -0.015, 0.01, -0.02, 0.005)
    line = [(p, on_s + jitter_s[i % 6], off_s) for i, (p, on_s, off_s) in enumerate(LINE)]
    performer, _, sink = duet_performer(clock="player")
    heard: list[tuple[float, BeatGrid | None]] = []  # each of the player's onsets, the grid
    for time_s, message in call_messages(line):
        performer.process_until(time_s)
        performer.submit(message, time_s)
        if message.type == "note_on":
            performer.process_until(time_s)
            heard.append((time_s, performer._duet.grid))
    finish(performer)
    checked = 0
    for on_s, _ in duet_notes(sink):
        before = [(t, grid) for t, grid in heard if t <= on_s]
        if not before or before[-1][1] is None or on_s > line[-1][2]:
            continue
        onset_s, grid = before[-1]
        units = (on_s - onset_s) / grid.unit_s
        assert abs(units - round(units)) < 1e-6
        checked += 1
    assert checked >= 6


def test_the_duet_part_plays_above_the_split_when_asked() -> None:
    low_line = [(pitch - 36, on_s, off_s) for pitch, on_s, off_s in LINE]
    performer, _, sink = duet_performer(duet_split=55, duet_register="above")
    play(performer, call_messages(low_line))
    finish(performer)
    notes = duet_notes(sink)
    assert notes and all(pitch >= 55 for _, pitch in notes)
    assert sink.sounding() == set()


def test_the_part_ends_by_the_end_of_its_bar_after_the_player_stops() -> None:
    """Without a beat (clock off) a bar is ``FREE_BAR_S``; the call is found over after the
    gap, and the part is released by then."""
    for carry_bars in (0, 2):
        performer, _, sink = duet_performer(carry_bars=carry_bars, clock="off")
        play(performer, call_messages(LINE))
        finish(performer)
        last_sound_s = LINE[-1][2]
        found_s = last_sound_s + 0.35  # the fixed gap the test performer uses
        latest_s = max(found_s, last_sound_s + carry_bars * duet.FREE_BAR_S)
        duet_times = [t for t, m in sink.sent if getattr(m, "channel", None) == DUET_CHANNEL]
        assert duet_times and max(duet_times) <= latest_s + 1e-6
        assert sink.sounding() == set()


@pytest.mark.parametrize("stop", ["all_notes_off", "all_sound_off", "panic"])
def test_the_player_s_stop_silences_the_part_at_once(stop: str) -> None:
    performer, _, sink = duet_performer()
    messages = call_messages(LINE[:24])
    play(performer, messages)
    stop_s = 6.05
    performer.process_until(stop_s)
    assert duet_notes(sink), "the part played before the stop"
    if stop == "panic":
        performer.panic()
    else:
        control = 123 if stop == "all_notes_off" else 120
        performer.submit(mido.Message("control_change", control=control, value=0), stop_s)
    performer.process_until(stop_s)
    assert sink.sounding() == set()
    assert performer.status()["state"] != "duet"
    performer.process_until(stop_s + 3.0)
    assert [t for t, _ in duet_notes(sink) if t > stop_s] == [], "nothing after the stop"


def test_the_part_s_notes_looped_back_are_echoes_not_the_player() -> None:
    """A MIDI loop: every note of the part comes back 2 ms later; none is heard as the
    player's (the daemon's echo suppression of replies covers the part)."""
    performer, _, sink = duet_performer(echo_window_ms=40)

    def echo_new_output(since: int) -> None:
        while since < len(sink.sent):  # what it sends meanwhile comes back too
            time_s, message = sink.sent[since]
            since += 1
            performer.process_until(time_s + 0.002)
            performer.submit(message, time_s + 0.002)

    for time_s, message in call_messages(LINE[:16]):
        seen = len(sink.sent)
        performer.process_until(time_s)
        performer.submit(message, time_s)
        echo_new_output(seen)
    while (due_s := performer.next_due_s()) is not None:
        seen = len(sink.sent)
        performer.process_until(due_s)
        echo_new_output(seen)
    assert duet_notes(sink)
    assert performer.notes_in == 16
    assert performer.echoes == len(sink.sent)
    assert sink.sounding() == set()


def test_mode_both_answers_the_phrase_after_the_duet_part() -> None:
    performer, _, sink = duet_performer(mode="both")
    play(performer, call_messages(LINE[:16]))
    finish(performer)
    assert duet_notes(sink), "the duet part played"
    answer = sink.note_ons(channel=0)
    assert answer, "the phrase answer took the gap"
    assert min(t for t, _ in answer) >= LINE[15][2]
    assert sink.sounding() == set()


def test_the_duet_knobs_are_checked_and_change_the_part_at_its_next_event() -> None:
    performer, clock, sink = duet_performer()
    for name, value in (("duet_density", "busy"), ("duet_register", "sideways"), ("mode", "trio")):
        with pytest.raises(ParameterError):
            performer.set_parameter(name, value)
    play(performer, call_messages(LINE[:16]))
    performer.process_until(4.0)
    performer.set_parameter("duet_split", 52)
    performer.process_until(4.0)
    switched_s = clock()
    play(performer, call_messages([(p, s + 4.0, e + 4.0) for p, s, e in LINE[:16]]))
    finish(performer)
    earlier = [pitch for t, pitch in duet_notes(sink) if t <= switched_s]
    later = [pitch for t, pitch in duet_notes(sink) if t > switched_s]
    assert any(pitch >= 52 for pitch in earlier), "the split at 60 let it play up to 59"
    assert later and all(pitch < 52 for pitch in later)
    assert performer.status()["duet_split"] == 52


def call_answer(**values: Any) -> tuple[list[tuple[float, str]], Any]:
    performer, _, sink = make(seed=3, **values)
    play(performer, call_messages([(60 + 2 * i, 0.25 * i, 0.25 * i + 0.2) for i in range(8)]))
    finish(performer)
    engine = performer._conversation.engine
    return [(t, str(m)) for t, m in sink.sent], engine.get_state()


def test_call_mode_is_untouched_by_the_duet_bit_for_bit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both answers computed here: call mode with the duet's knobs far from their defaults,
    and call mode with the duet's code made to fail if it were ever reached."""
    knobs = {"duet_split": 30, "duet_density": 8.0, "duet_velocity": 2.0, "carry_bars": 9,
             "duet_output_channel": 9, "duet_register": "above"}  # fmt: skip
    with_knobs, state_knobs = call_answer(**knobs)

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("the duet was reached in call mode")

    monkeypatch.setattr(Performer, "_duet_hears", never)
    monkeypatch.setattr(Performer, "_play_duet", never)
    monkeypatch.setattr(duet.DuetPlayer, "start", never)
    monkeypatch.setattr(Engine, "feed_run", never)  # heard one token a run, as before
    plain, state_plain = call_answer()
    assert len(plain) > 8
    assert with_knobs == plain
    assert np.array_equal(state_knobs.h, state_plain.h)
    assert np.array_equal(state_knobs.logits, state_plain.logits)


def test_switching_back_to_call_mode_stops_the_part_with_nothing_left_sounding() -> None:
    performer, _, sink = duet_performer()
    play(performer, call_messages(LINE[:16]))
    performer.process_until(3.9)
    performer.set_parameter("mode", "call_response")
    performer.process_until(3.9)
    assert sink.sounding() == set()
    assert performer.status()["state"] != "duet"


def test_eval_duet_measures_a_folder_and_writes_the_json(tmp_path: Path) -> None:
    """``antiphon eval-duet`` on a plain folder of two tiny two-hand pieces (made here)."""
    from antiphon.daemon.cli import main

    folder = tmp_path / "pieces"
    folder.mkdir()
    for index in range(2):
        midi = mido.MidiFile()
        track = mido.MidiTrack()
        midi.tracks.append(track)
        events = []
        for i in range(32):  # right hand eighths, left hand quarters, 120 bpm
            events.append((i * 240, "note_on", 72 + (i * (2 + index)) % 7, 80))
            events.append((i * 240 + 200, "note_off", 72 + (i * (2 + index)) % 7, 0))
            if i % 2 == 0:
                events.append((i * 240, "note_on", 48 + (i % 3), 60))
                events.append((i * 240 + 400, "note_off", 48 + (i % 3), 0))
        now = 0
        for tick, kind, pitch, velocity in sorted(events, key=lambda e: (e[0], e[1] == "note_on")):
            track.append(mido.Message(kind, note=pitch, velocity=velocity, time=tick - now))
            now = tick
        midi.save(folder / f"piece{index}.mid")
    out = tmp_path / "duet.json"
    plot = tmp_path / "duet.png"
    assert main(["eval-duet", str(folder), "--json", str(out), "--plot", str(plot)]) == 0
    import json

    report = json.loads(out.read_text())
    summary = report["pieces"]
    for key in ("density_ratio", "pulse_share", "pulse_share_human", "pulse_share_deaf",
                "consonance", "consonance_human", "consonance_deaf", "hanging"):  # fmt: skip
        assert key in summary
    assert summary["performances"] == 2
    assert summary["hanging"] == 0
    assert summary["density_ratio"] > 0
    assert plot.stat().st_size > 1000


def test_the_piano_roll_shows_the_duet_part_apart_from_the_replies(tmp_path: Path) -> None:
    """A recording's Antiphon track holds replies (channel 1) and the duet part (channel 2)."""
    from antiphon.daemon.tools.plot import read_session
    from antiphon.daemon.tools.plot import run as plot_run

    midi = mido.MidiFile()
    player, antiphon = mido.MidiTrack(), mido.MidiTrack()
    player.name, antiphon.name = "Player", "Antiphon"
    midi.tracks.extend([player, antiphon])
    player.extend(
        [mido.Message("note_on", note=72, velocity=80), mido.Message("note_off", note=72, time=480)]
    )
    antiphon.extend(
        [
            mido.Message("note_on", channel=1, note=48, velocity=60),
            mido.Message("note_off", channel=1, note=48, time=480),
            mido.Message("note_on", channel=0, note=74, velocity=70, time=480),
            mido.Message("note_off", channel=0, note=74, time=480),
        ]
    )
    path = tmp_path / "session.mid"
    midi.save(path)
    session = read_session(path, duet_channel=2)
    assert [n.pitch for n in session.duet] == [48]
    assert [n.pitch for n in session.antiphon] == [74]
    assert [n.pitch for n in read_session(path).antiphon] == [48, 74]
    import argparse

    output = tmp_path / "session.png"
    args = argparse.Namespace(session=path, output=output, start=None, end=None, duet_channel=2)
    assert plot_run(args) == 0 and output.stat().st_size > 1000
