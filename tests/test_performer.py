"""The performer on the shipped model, driven by a simulated clock (no ports, no sleeping).

The sink is a list: the performer's only output is the messages it sends, which is what these
tests check (a synthesiser's view of them: nothing may be left sounding).
"""

from __future__ import annotations

import functools
import itertools
import logging
import math
import os
import random
import shutil
import subprocess
import sys
import threading
import time
import weakref
from collections import Counter
from pathlib import Path
from typing import Any

import antiphon.daemon.musician.answering.reply
import mido
import numpy as np
import pytest
from antiphon.daemon.codec import decode_tokens
from antiphon.daemon.midi.intake import NOTE_OFF, NOTE_ON, InputGate
from antiphon.daemon.musician.answering.reply import Reply, Timed
from antiphon.daemon.musician.hearing.phrase import reply_length_bounds
from antiphon.daemon.musician.model.conversation import Conversation
from antiphon.daemon.musician.model.engine import Engine, EngineState
from antiphon.daemon.musician.model.model_file import ModelError
from antiphon.daemon.musician.playing.performer import ON_CPU_WAIT_S, ManualClock, Performer
from antiphon.daemon.settings import Settings
from antiphon.daemon.surface.parameters import ParameterError
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.jack_server import wait_for
from tests.test_notes import Synth

MODEL = Path(__file__).resolve().parent.parent / "exported_models" / "antiphon-piano.onnx"
GAP = 0.35


class TracingEngine(Engine):
    """The real engine, also keeping the tokens its state holds (test instrumentation)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.trace: list[int] = []
        self._marks: dict[int, int] = {}

    def feed(self, token: int, *, perturb: bool = False) -> None:
        super().feed(token, perturb=perturb)
        self.trace.append(token)

    def get_state(self, out: EngineState | None = None) -> EngineState:
        state = super().get_state(out)
        self._marks[id(state)] = len(self.trace)
        return state

    def set_state(self, state: EngineState) -> None:
        super().set_state(state)
        del self.trace[self._marks[id(state)] :]

    def reset(self) -> None:
        super().reset()
        self.trace.clear()


class SlowSession:
    """An onnxruntime session whose every run also moves ``engine.clock`` on by its step."""

    def __init__(self, session: Any, engine: SlowEngine) -> None:
        self._session, self._engine = session, engine

    def run_with_iobinding(self, binding: Any) -> None:
        self._session.run_with_iobinding(binding)
        self._engine.clock.now_s += self._engine.STEP_S

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


class SlowEngine(Engine):
    """The real engine, whose every run of the model (a step, or a heard event's tokens in
    one run) takes ``STEP_S`` of simulated time (test instrumentation): what is sent late
    because of computing shows on the ManualClock (``clock``, which a test may replace)."""

    STEP_S = 0.0003

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.clock = ManualClock()
        self.session = SlowSession(self.session, self)  # type: ignore[assignment]


@functools.cache
def shared_engine() -> Engine:
    return Engine(MODEL)


class ListSink:
    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.sent: list[tuple[float, mido.Message]] = []

    def send(self, message: mido.Message) -> None:
        self.sent.append((self.clock(), message))

    def note_ons(self, channel: int | None = None) -> list[tuple[float, int]]:
        return [
            (t, m.note)
            for t, m in self.sent
            if m.type == "note_on" and (channel is None or m.channel == channel)
        ]

    def sounding(self) -> set[tuple[int, int]]:
        synth = Synth()
        synth.play([m for _, m in self.sent])
        return synth.sounding


def make(
    engine: Engine | None = None, seed: int = 0, speculate_before_s: float = 0.02, **values: Any
) -> tuple[Performer, ManualClock, ListSink]:
    engine = engine or shared_engine()
    engine.reset()
    engine.reseed(seed)
    clock = ManualClock()
    if isinstance(engine, SlowEngine):
        engine.clock = clock
    sink = ListSink(clock)
    # These tests check the replies' own mechanics: without a beat unless a test asks for it
    # (the beat has its tests in test_pulse.py), after the fixed gap unless a test asks for
    # the judged wait (it has its tests in test_turns_performer.py).
    values.setdefault("clock", "off")
    values.setdefault("turns", "gap")
    values.setdefault("phrase_gap_s", 0.35)
    settings = Settings(model=str(MODEL), **values)
    performer = Performer(
        settings, engine, sink, clock=clock, speculate_before_s=speculate_before_s
    )
    return performer, clock, sink


def snapshot(engine: Engine) -> tuple[EngineState, object, object]:
    """The engine's state and both random streams, copied."""
    return (
        engine.get_state(),
        engine.rng.bit_generator.state,
        engine.noise_rng.bit_generator.state,
    )


def assert_same_snapshot(
    a: tuple[EngineState, object, object], b: tuple[EngineState, object, object]
) -> None:
    assert np.array_equal(a[0].h, b[0].h) and np.array_equal(a[0].c, b[0].c)
    assert np.array_equal(a[0].logits, b[0].logits) and a[0].fed == b[0].fed
    assert a[1:] == b[1:]


def call_messages(
    notes: list[tuple[int, float, float]], channel: int = 0, velocity: int = 80
) -> list[tuple[float, mido.Message]]:
    messages = []
    for pitch, on_s, off_s in notes:
        messages.append(
            (on_s, mido.Message("note_on", channel=channel, note=pitch, velocity=velocity))
        )
        messages.append((off_s, mido.Message("note_off", channel=channel, note=pitch)))
    return sorted(messages, key=lambda pair: pair[0])


SCALE = [(60 + 2 * i, 0.25 * i, 0.25 * i + 0.2) for i in range(8)]  # ends at 1.95 s


def play(performer: Performer, messages: list[tuple[float, mido.Message]]) -> None:
    for time_s, message in messages:
        performer.process_until(time_s)
        performer.submit(message, time_s)


def finish(performer: Performer, limit: int = 100_000) -> None:
    """Run the simulated clock until nothing more is due."""
    for _ in range(limit):
        due_s = performer.next_due_s()
        if due_s is None:
            return
        performer.process_until(due_s)
    raise AssertionError("the performer never went quiet")


def run_until_notes(performer: Performer, sink: ListSink, count: int) -> None:
    while len(sink.note_ons()) < count:
        due_s = performer.next_due_s()
        assert due_s is not None, "the reply ended early"
        performer.process_until(due_s)


# Replies ---------------------------------------------------------------------------------------


def test_first_reply_note_sounds_at_the_end_of_the_call() -> None:
    performer, _, sink = make(output_channel=3)
    play(performer, call_messages(SCALE))
    finish(performer)
    first_s, _ = sink.note_ons()[0]
    assert first_s == pytest.approx(1.95 + GAP)
    assert {m.channel for _, m in sink.sent if m.type.startswith("note")} == {2}
    report = performer.reply_reports()[-1]
    assert report.reaction_ms == pytest.approx(0.0)
    assert not report.interrupted


def test_reply_length_follows_the_call() -> None:
    call = [(60 + i, 1.0 * i, 1.0 * i + 0.5) for i in range(5)]  # 5 notes over 4.5 s
    performer, _, sink = make(
        reply_ratio=2.0, reply_min_notes=1, reply_max_s=300.0, phrase_gap_s=1.0
    )
    play(performer, call_messages(call))
    finish(performer)
    assert len(sink.note_ons()) == 10
    assert performer.reply_reports()[-1].notes == 10
    assert sink.sounding() == set()


@settings(max_examples=12, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    temperature=st.floats(0.3, 2.5),
    noise=st.floats(0.0, 1.0),
    ratio=st.floats(0.5, 3.0),
    max_note_s=st.floats(0.2, 5.0),
)
def test_every_reply_note_is_released(
    seed: int, temperature: float, noise: float, ratio: float, max_note_s: float
) -> None:
    performer, _, sink = make(
        seed=seed,
        temperature=temperature,
        noise=noise,
        reply_ratio=ratio,
        max_note_s=max_note_s,
    )
    play(performer, call_messages(SCALE))
    finish(performer)
    notes, max_s = reply_length_bounds(8, 1.95, performer.parameters)
    start_s = 1.95 + GAP
    assert sink.sounding() == set()  # without close(): the reply itself released everything
    assert 1 <= len(sink.note_ons()) <= notes
    started: dict[int, float] = {}
    for time_s, message in sink.sent:
        assert start_s - 1e-9 <= time_s <= start_s + max_s + 1e-9
        if message.type == "note_on":
            started[message.note] = time_s
        elif message.type == "note_off":
            assert time_s - started.pop(message.note) <= max_note_s + 1e-9


def test_max_note_length_releases_long_notes() -> None:
    for seed in range(4):
        performer, _, sink = make(seed=seed, max_note_s=0.1, temperature=0.5)
        play(performer, call_messages(SCALE))
        finish(performer)
        started: dict[int, float] = {}
        for time_s, message in sink.sent:
            if message.type == "note_on":
                started[message.note] = time_s
            elif message.type == "note_off":
                assert time_s - started.pop(message.note) <= 0.1 + 1e-9
        assert sink.sounding() == set()


def test_same_seed_same_reply_and_noise_zero_changes_nothing() -> None:
    def reply(seed: int, noise: float) -> list[tuple[float, str]]:
        performer, _, sink = make(seed=seed, noise=noise)
        play(performer, call_messages(SCALE))
        finish(performer)
        return [(t, str(m)) for t, m in sink.sent]

    assert reply(5, 0.0) == reply(5, 0.0)
    assert reply(5, 0.0) != reply(6, 0.0)


def test_listen_mode_hears_but_never_answers() -> None:
    engine = shared_engine()
    performer, _, sink = make(mode="listen")
    play(performer, call_messages(SCALE))
    finish(performer)
    assert sink.sent == []
    assert engine.ready and performer.notes_in == 8
    performer.set_parameter("mode", "call_response")
    play(performer, call_messages([(p, t + 10, u + 10) for p, t, u in SCALE]))
    finish(performer)
    assert sink.note_ons()


def test_a_long_silence_is_fed_capped() -> None:
    engine = TracingEngine(MODEL, seed=0)
    conversation = Conversation(engine, max_silence_s=8.0)
    conversation.note_on(60, 80, 0.0)
    conversation.note_off(60, 0.5)
    before = len(engine.trace)
    conversation.note_on(62, 80, 1000.0)
    shifts = [t for t in engine.trace[before:] if engine.vocabulary.kind(t) == 2]
    decoded_s = sum(engine.vocabulary.time_shifts_s[engine.vocabulary.value(t)] for t in shifts)
    assert decoded_s == pytest.approx(8.0, abs=0.2)
    assert conversation.clock_s == pytest.approx(1000.0, abs=0.1)


# Answering on time ------------------------------------------------------------------------------

CALL_END_S = 1.95 + GAP  # the deadline of SCALE


@pytest.mark.parametrize("seed", [2, 9])
def test_a_reply_made_ahead_is_the_reply_made_at_the_deadline(seed: int) -> None:
    def reply(speculate_before_s: float, nudge: bool) -> tuple[list[tuple[float, str]], Any]:
        engine = shared_engine()
        performer, _, sink = make(
            engine, seed=seed, noise=0.6, speculate_before_s=speculate_before_s
        )
        play(performer, call_messages(SCALE))
        performer.process_until(1.96)  # the call's last note-off is fed
        before = engine.get_state()
        performer.process_until(CALL_END_S - 0.01)
        made_ahead = not np.array_equal(engine.get_state().h, before.h)
        assert made_ahead == (speculate_before_s > 0)
        if nudge:  # a parameter set (to its own value) withdraws it; it is made again
            performer.set_parameter("temperature", 1.0)
            performer.process_until(CALL_END_S - 0.005)
        finish(performer)
        return [(t, str(m)) for t, m in sink.sent], snapshot(engine)

    at_deadline, state_at_deadline = reply(0.0, nudge=False)
    assert len(at_deadline) >= 2
    for speculate_before_s, nudge in ((0.02, False), (0.02, True), (0.3, False)):
        ahead, state_ahead = reply(speculate_before_s, nudge)
        assert ahead == at_deadline
        assert_same_snapshot(state_ahead, state_at_deadline)


@pytest.mark.parametrize(("name", "value"), [("temperature", 0.7), ("noise", 0.1), ("follow", 0.3)])
def test_a_knob_turned_just_before_the_deadline_reaches_the_reply_made_ahead(
    name: str, value: float
) -> None:
    def reply(speculate_before_s: float) -> tuple[list[tuple[float, str]], Any, Any]:
        engine = shared_engine()
        performer, _, sink = make(engine, seed=2, noise=0.6, speculate_before_s=speculate_before_s)
        play(performer, call_messages(SCALE))
        performer.process_until(CALL_END_S - 0.01)  # made ahead by now, when speculating
        performer.set_parameter(name, value)
        performer.process_until(CALL_END_S - 0.005)
        kept = performer._speculator._ahead  # the reply made ahead, if any
        drawn = None if kept is None else kept.reply.drawn_ahead
        finish(performer)
        return [(t, str(m)) for t, m in sink.sent], snapshot(engine), drawn

    at_deadline, state_at_deadline, _ = reply(0.0)
    ahead, state_ahead, drawn = reply(0.02)
    assert drawn is not None, "the change withdrew the reply made ahead"
    assert drawn == 1  # its first event drawn again, with the new value
    assert ahead == at_deadline and len(ahead) >= 2
    assert_same_snapshot(state_ahead, state_at_deadline)


def test_playing_on_before_the_deadline_leaves_no_trace_of_the_reply_made_ahead() -> None:
    player_s = CALL_END_S - 0.005
    going_on = [(55, player_s, player_s + 0.3), (57, player_s + 0.4, player_s + 0.6)]

    def performance(speculate_before_s: float) -> tuple[Any, Any, list[tuple[float, str]]]:
        engine = shared_engine()
        performer, _, sink = make(engine, seed=4, noise=0.3, speculate_before_s=speculate_before_s)
        play(performer, call_messages(SCALE))
        performer.process_until(1.96)  # the call's last note-off is fed
        before = engine.get_state()
        performer.process_until(player_s)
        made_ahead = not np.array_equal(engine.get_state().h, before.h)
        assert made_ahead == (speculate_before_s > 0)
        assert not performer.replying and sink.sent == []
        messages = call_messages(going_on)
        play(performer, messages[:1])
        performer.process_until(player_s)
        after_note = snapshot(engine)
        play(performer, messages[1:])
        finish(performer)
        return after_note, snapshot(engine), [(t, str(m)) for t, m in sink.sent]

    plain = performance(0.0)
    ahead = performance(0.02)
    assert_same_snapshot(ahead[0], plain[0])  # right after the player's note
    assert_same_snapshot(ahead[1], plain[1])  # after the reply to the longer call
    assert ahead[2] == plain[2] and plain[2]


def test_first_note_and_chords_leave_on_time_although_drawing_takes_time() -> None:
    engine = SlowEngine(MODEL)
    chords = 0
    for seed in range(3, 30):  # until the replies held a few chords: how many depends on the model
        if chords >= 3:
            break
        # Not following the single-line call: that would keep the reply to a single line.
        performer, _, sink = make(engine, seed=seed, reply_min_notes=16, follow=0.0)
        play(performer, call_messages(SCALE))
        finish(performer)
        report = performer.reply_reports()[-1]
        assert report.reaction_ms == 0.0
        assert report.schedule_error_max_ms == 0.0
        times = [t for t, _ in sink.note_ons()]
        chords += sum(1 for a, b in itertools.pairwise(times) if a == b)
    assert chords >= 3
    # Drawn at the deadline instead, the first note leaves after the drawing.
    performer, _, sink = make(engine, seed=3, speculate_before_s=0.0)
    play(performer, call_messages(SCALE))
    finish(performer)
    reaction_ms = performer.reply_reports()[-1].reaction_ms
    assert reaction_ms is not None and reaction_ms >= 2000 * SlowEngine.STEP_S


def drive_reply(reply: Reply, stop_when: Any) -> tuple[list[Timed], float]:
    """Play a reply on simulated time, drawing ahead after each send, until
    ``stop_when(reply, now_s)`` after a moment's sends; the messages and that moment."""
    sent: list[Timed] = []
    while True:
        now_s = reply.next_due_s()
        assert now_s is not None, "the reply ended first"
        while timed := reply.advance(now_s):
            sent.extend(timed)
        reply.draw_ahead()
        if stop_when(reply, now_s):
            return sent, now_s


def reply_stopped(stop_when: Any) -> tuple[TracingEngine, int, Reply, list[Timed], float, int]:
    """A reply to SCALE on a traced engine, stopped when ``stop_when`` says: the engine, the
    number of the call's tokens, the reply, its messages, when it stopped, the events it had
    drawn ahead then."""
    engine = TracingEngine(MODEL, seed=3)
    conversation = Conversation(engine)
    for time_s, message in call_messages(SCALE):
        if message.type == "note_on":
            conversation.note_on(message.note, message.velocity, time_s)
        else:
            conversation.note_off(message.note, time_s)
    call_tokens = len(engine.trace)
    reply = Reply(
        conversation,
        start_s=CALL_END_S,
        phrase_end_s=CALL_END_S,
        notes=40,
        max_s=20.0,
        channel=0,
        max_note_s=5.0,
    )
    reply.draw_ahead()
    sent, now_s = drive_reply(reply, stop_when)
    drawn_ahead = reply.drawn_ahead
    sent += reply.stop(now_s)
    reply.settle()
    return engine, call_tokens, reply, sent, now_s, drawn_ahead


def test_stopping_rolls_back_every_event_drawn_ahead(monkeypatch: pytest.MonkeyPatch) -> None:
    engine, call_tokens, reply, sent, now_s, drawn_ahead = reply_stopped(
        lambda reply, _: reply.drawn_ahead >= 3
    )
    assert drawn_ahead >= 3 and reply.notes_played >= 1
    # The state is the conversation as played: rebuilt from the tokens it holds, it is the
    # same, and those tokens are exactly the call and the notes that were sent.
    fresh = Engine(MODEL)
    for token in engine.trace:
        fresh.feed(token)
    assert np.array_equal(fresh.get_state().h, engine.get_state().h)
    assert np.array_equal(fresh.logits, engine.logits)
    decoded = decode_tokens(engine.trace[call_tokens:], engine.vocabulary)
    sent_on = [(t, m.note) for t, m in sent if m.type == "note_on"]
    assert [n.pitch for n in decoded] == [pitch for _, pitch in sent_on]
    assert all(m.type != "note_on" for t, m in sent if t > now_s)
    # Drawn one event at a time, the same reply plays the same and leaves the same state:
    # the random streams were rolled back with the events.
    monkeypatch.setattr(antiphon.daemon.musician.answering.reply, "MAX_DRAWN_AHEAD", 1)
    single_engine, _, single, single_sent, _, single_drawn = reply_stopped(
        lambda _, time_s: time_s == now_s
    )
    assert single_drawn == 1 and single.notes_played == reply.notes_played
    assert [(t, str(m)) for t, m in single_sent] == [(t, str(m)) for t, m in sent]
    assert single_engine.trace == engine.trace
    assert_same_snapshot(snapshot(single_engine), snapshot(engine))


# The player interrupts -------------------------------------------------------------------------


def test_reply_stops_when_the_player_plays_again() -> None:
    engine = TracingEngine(MODEL, seed=1)
    performer, clock, sink = make(engine, seed=1, reply_min_notes=12)
    play(performer, call_messages(SCALE))
    run_until_notes(performer, sink, 3)
    played_before = len(sink.note_ons())
    cut_s = clock.now_s + 0.001
    performer.process_until(cut_s)
    performer.submit(mido.Message("note_on", note=50, velocity=90), cut_s)
    performer.process_until(cut_s)
    assert not performer.replying
    assert sink.sounding() == set()
    assert all(t <= cut_s for t, _ in sink.note_ons())
    report = performer.reply_reports()[-1]
    assert report.interrupted and report.notes == played_before
    # The state is the conversation as heard and played: the event that was sampled but
    # not played is gone, and the notes stopped early were fed as note-offs.
    fresh = Engine(MODEL)
    for token in engine.trace:
        fresh.feed(token)
    assert np.array_equal(fresh.logits, engine.logits)
    decoded = decode_tokens(engine.trace, engine.vocabulary)
    heard_after_call = Counter(n.pitch for n in decoded[len(SCALE) :])
    assert heard_after_call == Counter([p for _, p in sink.note_ons()] + [50])


def test_overlap_keeps_replying_while_the_player_plays() -> None:
    performer, clock, sink = make(overlap=True, reply_min_notes=12)
    play(performer, call_messages(SCALE))
    run_until_notes(performer, sink, 2)
    now = clock.now_s
    play(performer, [(now, mido.Message("note_on", note=40, velocity=70))])
    performer.process_until(now)
    assert performer.replying
    play(performer, [(now + 0.1, mido.Message("note_off", note=40))])
    finish(performer)
    assert sink.sounding() == set()


def test_player_all_notes_off_stops_the_reply() -> None:
    performer, clock, sink = make(reply_min_notes=12)
    play(performer, call_messages(SCALE))
    run_until_notes(performer, sink, 2)
    now = clock.now_s
    play(performer, [(now, mido.Message("control_change", control=123, value=0))])
    performer.process_until(now)
    assert not performer.replying
    assert sink.sounding() == set()


def test_foot_switch_ends_the_call_at_once() -> None:
    performer, _, sink = make(end_phrase_cc=67)
    messages = [
        (0.0, mido.Message("note_on", note=60, velocity=80)),
        (0.4, mido.Message("control_change", control=67, value=127)),
    ]
    play(performer, messages)
    performer.process_until(0.4)
    assert sink.note_ons()[0][0] == pytest.approx(0.4)
    play(performer, [(0.5, mido.Message("note_off", note=60))])
    finish(performer)
    assert sink.sounding() == set()


# Input hygiene ---------------------------------------------------------------------------------


def test_note_on_with_velocity_zero_ends_the_note() -> None:
    performer, _, sink = make()
    play(
        performer,
        [
            (0.0, mido.Message("note_on", note=60, velocity=80)),
            (0.3, mido.Message("note_on", note=60, velocity=0)),
        ],
    )
    finish(performer)
    assert sink.note_ons()[0][0] == pytest.approx(0.3 + GAP)


def test_a_key_whose_note_off_was_lost_counts_as_released_after_the_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    engine = TracingEngine(MODEL, seed=3)
    performer, _, sink = make(engine, seed=3, thru=True, output_channel=2, held_key_timeout_s=3.0)
    lost_pitch, lost_on_s, _ = SCALE[-1]  # the last input: its note-on; its note-off is lost
    call = [(t, m) for t, m in call_messages(SCALE) if not (t > lost_on_s and m.note == lost_pitch)]
    with caplog.at_level(logging.WARNING, logger="antiphon.daemon.musician.playing.performer"):
        play(performer, call)
        finish(performer)
    released_s = lost_on_s + 3.0
    assert sink.note_ons(channel=1)[0][0] == pytest.approx(released_s + GAP)  # then answered
    assert (released_s, "note_off", lost_pitch) in [(t, m.type, m.note) for t, m in sink.sent]
    assert sink.sounding() == set()  # the thru copy of the lost key was ended too
    warnings = [r for r in caplog.records if "taken as released" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    # The model heard the key end when it was taken as released (a 3 s pause decodes to
    # within half a time-shift bin, about 0.1 s there).
    heard = decode_tokens(engine.trace, engine.vocabulary)
    lost = next(n for n in heard if n.pitch == lost_pitch and n.onset_s > lost_on_s - 0.05)
    assert lost.offset_s == pytest.approx(released_s, abs=0.15)


@pytest.mark.parametrize(("silence_s", "kept"), [(1.0, True), (5.0, False)])
def test_the_gate_forgets_keys_held_past_the_timeout(silence_s: float, kept: bool) -> None:
    gate = InputGate(Settings(model=str(MODEL), input_queue_size=16, held_key_timeout_s=2.0))
    gate.submit(mido.Message("note_on", note=60, velocity=80), 0.0)
    assert gate.take(0.0) is not None
    for pitch in range(40, 56):  # the queue fills up
        gate.submit(mido.Message("note_on", note=pitch, velocity=80), silence_s)
    gate.submit(mido.Message("note_off", note=60), silence_s + 0.01)
    # A held key's note-off always gets through a full queue; one that the performer has
    # already taken as released (no input for the timeout) is a stray note-off, dropped.
    assert gate.dropped == (0 if kept else 1)


def test_clock_sensing_and_sysex_take_no_room_in_the_queue() -> None:
    performer, _, sink = make(input_queue_size=16)
    noise = [
        mido.Message("clock"),
        mido.Message("active_sensing"),
        mido.Message("sysex", data=[1, 2, 3]),
        mido.Message("pitchwheel", pitch=100),
        mido.Message("control_change", control=1, value=5),
    ]
    for i in range(500):
        performer.submit(noise[i % len(noise)], 0.0)
    play(performer, call_messages(SCALE))
    finish(performer)
    assert performer.dropped == 0 and performer.notes_in == 8
    assert sink.note_ons()


def test_only_the_listen_channel_is_heard() -> None:
    performer, _, sink = make(listen_channel=2)
    play(performer, call_messages(SCALE, channel=0))
    finish(performer)
    assert sink.sent == [] and performer.notes_in == 0
    play(performer, call_messages([(p, t + 5, u + 5) for p, t, u in SCALE], channel=1))
    finish(performer)
    assert performer.notes_in == 8 and sink.note_ons()


def test_echoed_output_is_not_heard_as_the_player() -> None:
    performer, _, sink = make(thru=True, reply_min_notes=6, echo_window_ms=40)

    def echo_new_output(since: int) -> None:
        """A MIDI loop: everything the performer sent comes back 2 ms later."""
        for time_s, message in list(sink.sent[since:]):
            performer.process_until(time_s + 0.002)
            performer.submit(message, time_s + 0.002)

    for time_s, message in call_messages(SCALE):
        seen = len(sink.sent)
        performer.process_until(time_s)
        performer.submit(message, time_s)
        performer.process_until(time_s)  # the thru copy goes out now
        echo_new_output(seen)
    while (due_s := performer.next_due_s()) is not None:
        seen = len(sink.sent)
        performer.process_until(due_s)
        echo_new_output(seen)
    assert performer.notes_in == 8
    assert performer.echoes == len(sink.sent) > 16  # thru notes, then the reply's notes
    assert performer.replies == 1 and not performer.reply_reports()[-1].interrupted
    assert sink.sounding() == set()


def test_flood_drops_are_counted_and_leave_nothing_stuck() -> None:
    performer, _, sink = make(input_queue_size=16, thru=True)
    chooser = random.Random(7)
    held: set[int] = set()
    pedal = False
    time_s = 0.0
    messages = []
    for _ in range(4000):
        time_s += 0.0005
        roll = chooser.random()
        if roll < 0.05:
            pedal = not pedal
            messages.append(mido.Message("control_change", control=64, value=127 * pedal))
        elif roll < 0.55 or not held:
            pitch = chooser.randrange(36, 96)
            held.add(pitch)
            messages.append(mido.Message("note_on", note=pitch, velocity=chooser.randrange(1, 128)))
        else:
            pitch = chooser.choice(sorted(held))
            held.discard(pitch)
            messages.append(mido.Message("note_off", note=pitch))
    messages += [mido.Message("note_off", note=p) for p in sorted(held)]
    messages.append(mido.Message("control_change", control=64, value=0))
    for message in messages:  # the whole flood arrives before the performer gets a turn
        performer.submit(message, time_s)
    assert performer.dropped > len(messages) // 2
    finish(performer)
    assert performer.replies == 1  # the call ended: no key was left held
    assert sink.sounding() == set()  # neither a thru note nor a reply note hangs
    assert not performer.replying


def test_all_notes_off_gets_through_a_full_queue() -> None:
    performer, _, sink = make(input_queue_size=16, thru=True)
    for i in range(16):
        performer.submit(mido.Message("note_on", note=40 + i, velocity=80), 0.01 * i)
    performer.submit(mido.Message("note_on", note=90, velocity=80), 0.2)  # dropped
    performer.submit(mido.Message("control_change", control=123, value=0), 0.3)
    performer.submit(mido.Message("control_change", control=123, value=0), 0.3)  # nothing held
    assert performer.dropped == 2
    finish(performer)
    assert performer.replies == 1
    assert sink.sounding() == set()


# Control -----------------------------------------------------------------------------------------


def test_set_parameter_checks_names_types_and_ranges() -> None:
    performer, _, _ = make()
    bad: list[tuple[str, object]] = [
        ("bogus", 1),
        ("temperature", 99.0),
        ("temperature", float("nan")),
        ("temperature", True),
        ("noise", "loud"),
        ("mode", "dance"),
        ("output_channel", 17),
        ("output_channel", 2.5),
        ("reply_min_notes", 100),  # above reply_max_notes (64)
        ("thru", 3),
    ]
    for name, value in bad:
        with pytest.raises(ParameterError):
            performer.set_parameter(name, value)
    assert performer.parameters.temperature == 1.0


def test_parameters_apply_at_the_next_event_and_notify_listeners() -> None:
    performer, _, sink = make()
    heard: list[tuple[str, object]] = []
    performer.add_listener(lambda topic, value: heard.append((topic, value)))
    performer.set_parameter("temperature", 1)  # an int is fine for a float
    performer.set_parameter("thru", 1.0)
    performer.set_parameter("output_channel", 5.0)
    assert ("temperature", 1.0) in heard and ("thru", True) in heard
    play(performer, call_messages(SCALE))
    finish(performer)
    reply_channels = {m.channel for _, m in sink.sent[16:] if m.type == "note_on"}
    assert reply_channels == {4}
    assert ("replying", True) in heard and ("replying", False) in heard
    assert any(topic == "reply" for topic, _ in heard)
    status = performer.status()
    assert status["output_channel"] == 5 and status["thru"] is True
    assert status["state"] == "listening" and status["notes_in"] == 8
    assert status["last_reply"]["reaction_ms"] == pytest.approx(0.0)


def test_saved_state_comes_back() -> None:
    engine = shared_engine()
    performer, _, _ = make(mode="listen")
    heard: list[tuple[str, object]] = []
    performer.add_listener(lambda topic, value: heard.append((topic, value)))
    play(performer, call_messages(SCALE))
    finish(performer)
    performer.save_state(3)
    performer.process_until(5.0)
    saved = engine.logits.copy()
    play(performer, call_messages([(p, t + 6, u + 6) for p, t, u in SCALE]))
    finish(performer)
    assert not np.array_equal(engine.logits, saved)
    performer.load_state(3)
    performer.load_state(4)  # empty
    performer.process_until(20.0)
    assert np.array_equal(engine.logits, saved)
    assert ("error", "state slot 4 is empty") in heard
    with pytest.raises(ParameterError):
        performer.save_state(500)


def test_reset_forgets_and_the_next_call_is_answered() -> None:
    engine = shared_engine()
    performer, _, sink = make()
    play(performer, call_messages(SCALE))
    performer.process_until(1.0)
    performer.reset()
    performer.process_until(1.0)
    assert not engine.ready
    finish(performer)
    assert sink.note_ons()  # answered from a blank state and the pause


def test_panic_silences_everything_now() -> None:
    performer, clock, sink = make(reply_min_notes=12, thru=True)
    play(performer, call_messages(SCALE))
    run_until_notes(performer, sink, 8 + 3)  # the thru copies of the call, then the reply
    performer.panic()
    performer.process_until(clock.now_s)
    assert sink.sounding() == set()
    assert sink.sent[-1][1].is_cc(123)
    assert not performer.replying


def test_switch_model_waits_for_the_reply_to_end(tmp_path: Path) -> None:
    other = tmp_path / "other.onnx"
    shutil.copy(MODEL, other)
    performer, _, sink = make(reply_min_notes=12)
    play(performer, call_messages(SCALE))
    run_until_notes(performer, sink, 2)
    performer.switch_model(other)
    performer.process_until(performer.next_due_s() or 0.0)
    assert performer.status()["model"] == str(MODEL)
    finish(performer)
    assert performer.status()["model"] == str(other)
    assert sink.sounding() == set()
    with pytest.raises(ModelError):
        performer.switch_model(tmp_path / "missing.onnx")


def test_swapping_back_reuses_the_model_before_and_a_third_frees_it(tmp_path: Path) -> None:
    first = Engine(MODEL)
    gone = weakref.ref(first)
    performer, _, _ = make(first)
    other = tmp_path / "other.onnx"
    shutil.copy(MODEL, other)
    performer.switch_model(other)
    performer.process_until(1.0)
    assert performer.status()["model"] == str(other)
    performer.switch_model(MODEL)  # back: the model before, not loaded again
    performer.process_until(2.0)
    assert performer._conversation.engine is gone()
    assert not first.ready  # from a fresh state
    del first
    third = tmp_path / "third.onnx"
    shutil.copy(MODEL, third)
    performer.switch_model(other)  # kept since the swap back: no load either
    performer.process_until(3.0)
    performer.switch_model(third)  # a third model: the first one is let go
    performer.process_until(4.0)
    assert performer.status()["model"] == str(third)
    assert wait_for(lambda: gone() is None, 5.0), "something still holds the model let go"


def test_a_model_file_changed_since_it_was_played_is_loaded_anew(tmp_path: Path) -> None:
    performer, _, _ = make()
    before = performer._conversation.engine
    model = tmp_path / "model.onnx"
    shutil.copy(MODEL, model)
    performer.switch_model(model)
    performer.process_until(1.0)
    kept = performer._conversation.engine
    other = tmp_path / "other.onnx"
    shutil.copy(MODEL, other)
    performer.switch_model(other)
    performer.process_until(2.0)
    model.write_bytes(MODEL.read_bytes())  # exported again: a new modification time
    os.utime(model, ns=(kept.loaded_from[1] + 10**9, kept.loaded_from[1] + 10**9))
    performer.switch_model(model)
    performer.process_until(3.0)
    assert performer._conversation.engine is not kept
    assert performer._conversation.engine is not before


def test_close_releases_everything_and_is_idempotent() -> None:
    performer, _, sink = make(reply_min_notes=12)
    play(performer, call_messages(SCALE))
    run_until_notes(performer, sink, 3)
    performer.close()
    assert sink.sounding() == set()
    assert sink.sent[-1][1].is_cc(123)
    count = len(sink.sent)
    performer.close()
    performer.submit(mido.Message("note_on", note=60, velocity=80), 10.0)
    performer.process_until(20.0)
    assert len(sink.sent) == count
    assert performer.status()["state"] == "closed"


def test_run_thread_answers_and_close_from_another_thread_releases() -> None:
    engine = shared_engine()
    engine.reset()
    first_note = threading.Event()
    sent: list[mido.Message] = []

    class Sink:
        def send(self, message: mido.Message) -> None:
            sent.append(message)
            if message.type == "note_on":
                first_note.set()

    performer = Performer(
        Settings(model=str(MODEL), phrase_gap_s=0.05, reply_min_notes=30), engine, Sink()
    )
    stop = threading.Event()
    thread = threading.Thread(target=performer.run, args=(stop,))
    thread.start()
    try:
        now = time.monotonic()
        performer.submit(mido.Message("note_on", note=60, velocity=80), now)
        performer.submit(mido.Message("note_off", note=60), now)
        assert first_note.wait(10.0)
    finally:
        performer.close()
        thread.join(5.0)
    assert not thread.is_alive()
    synth = Synth()
    synth.play(sent)
    assert synth.sounding == set()
    assert sent[-1].is_cc(123)


class SteppingClock:
    """A clock that moves 0.1 ms each time it is read, and calls ``at`` once past ``at_s``."""

    def __init__(self, at_s: float = math.inf, at: Any = None) -> None:
        self.now_s, self.at_s, self.at = 100.0, at_s, at

    def __call__(self) -> float:
        self.now_s += 0.0001
        if self.now_s >= self.at_s:
            self.at_s = math.inf
            self.at()
        return self.now_s


def test_the_end_of_a_wait_for_a_due_moment_is_on_the_cpu_and_input_still_ends_it() -> None:
    """The last ``ON_CPU_WAIT_S`` before a due moment are not a timed wait (which a busy
    machine ends late): the thread reads the clock until the moment comes, and input that
    arrives meanwhile ends the wait at once."""
    clock = SteppingClock()
    performer = Performer(Settings(model=str(MODEL)), shared_engine(), ListSink(clock), clock=clock)  # type: ignore[arg-type]
    due_s = clock.now_s + ON_CPU_WAIT_S / 2
    assert performer._wait(due_s) is None
    assert due_s <= clock.now_s < due_s + 0.0005
    note = mido.Message("note_on", note=60, velocity=80)
    submitted_s: list[float] = []

    def play() -> None:
        submitted_s.append(clock.now_s)
        performer.submit(note, clock.now_s)

    clock.at_s, clock.at = clock.now_s + 0.0005, play
    item = performer._wait(clock.now_s + ON_CPU_WAIT_S / 2)
    assert item is not None and item[0] == NOTE_ON and item[3] == 60
    assert clock.now_s < submitted_s[0] + 0.0003  # taken at once, not at the due moment
    performer.close()


def test_a_realtime_thread_is_told_apart_from_a_normal_one() -> None:
    """Under ``chrt --fifo`` (the realtime set-up) the performer spends less of its waits on
    the CPU, where it would keep threads of a lower priority off the core (Performer._wait)."""
    code = "from antiphon.daemon.musician.playing.performer import _realtime; print(_realtime())"
    ask = [sys.executable, "-c", code]
    assert subprocess.run(ask, capture_output=True, text=True).stdout.strip() == "False"
    chrt = shutil.which("chrt")
    if chrt is None or subprocess.run([chrt, "--fifo", "1", "true"]).returncode != 0:
        pytest.skip("this user may not run a realtime thread (chrt --fifo)")
    realtime = subprocess.run([chrt, "--fifo", "1", *ask], capture_output=True, text=True)
    assert realtime.stdout.strip() == "True"


def test_a_held_key_release_is_never_taken_for_an_echo() -> None:
    gate = InputGate(Settings(model=str(MODEL), echo_window_ms=40))
    gate.submit(mido.Message("note_on", note=60, velocity=80), 0.0)  # the player holds C4
    gate.sent(mido.Message("note_off", note=60), 1.0)  # Antiphon ends its own C4
    gate.submit(mido.Message("note_off", note=60), 1.01)  # the player lets go
    gate.sent(mido.Message("note_on", note=62, velocity=50), 2.0)
    gate.submit(mido.Message("note_on", note=62, velocity=50), 2.01)  # a real echo
    gate.submit(mido.Message("note_on", note=62, velocity=50), 2.5)  # too late for an echo
    items = [gate.take(0.0) for _ in range(4)]
    assert [(i[0], i[3]) for i in items if i is not None] == [
        (NOTE_ON, 60),
        (NOTE_OFF, 60),
        (NOTE_ON, 62),
    ]
    assert gate.echoes == 1


def test_output_ahead_sends_each_timed_message_that_much_before_its_time() -> None:
    def performed(output_ahead_ms: float) -> tuple[list[tuple[float, str]], Any]:
        performer, _, sink = make(shared_engine(), seed=4, output_ahead_ms=output_ahead_ms)
        play(performer, call_messages(SCALE))
        finish(performer)
        return [(t, str(m)) for t, m in sink.sent], performer.reply_reports()[-1]

    on_time, on_time_report = performed(0.0)
    ahead, ahead_report = performed(2.0)
    assert [m for _, m in ahead] == [m for _, m in on_time]  # the same reply, note for note
    early_s = [t0 - t for (t0, _), (t, _) in zip(on_time, ahead, strict=True)]
    # The first note leaves when the call is found over (it cannot leave before); every
    # later message 2 ms before its time.
    assert early_s[0] == 0.0
    assert early_s[1:] == pytest.approx([0.002] * (len(early_s) - 1), abs=1e-9)
    # The reply's report counts a message sent ahead as on time, and the first note as the
    # 2 ms late it will sound.
    assert on_time_report.schedule_error_max_ms == pytest.approx(0.0, abs=1e-6)
    assert ahead_report.schedule_error_max_ms == pytest.approx(2.0, abs=1e-6)
    assert ahead_report.schedule_error_mean_ms == pytest.approx(2.0 / len(ahead), abs=1e-6)
