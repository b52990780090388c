"""The memory of the player: what it learns, how it forgets, how it is blended in."""

from __future__ import annotations

import mido
import numpy as np
import pytest
from antiphon.daemon.musician.answering.memory import (
    FORGET_PER_NOTE,
    INTERVALS,
    MAX_INTERVAL,
    NO_MELODY,
    MemoryBlend,
    PlayerMemory,
    advance,
    interval_of,
)
from antiphon.daemon.musician.model.engine import Engine
from antiphon.daemon.musician.playing.performer import ManualClock, Performer
from antiphon.daemon.settings import PIANO_MODEL, Settings
from hypothesis import given
from hypothesis import strategies as st

from tests.test_performer import SCALE, ListSink, call_messages, finish, play

MOTIF = [0, 4, 7, 12, 7, 4]  # an arpeggio up and down


def hear(memory: PlayerMemory, pitches: list[int], start_s: float, ioi_s: float) -> None:
    for i, pitch in enumerate(pitches):
        memory.note_on(pitch, start_s + i * ioi_s)


def test_a_motif_carries_to_another_key_and_tempo() -> None:
    memory = PlayerMemory()
    hear(memory, [60 + p for p in MOTIF], 0.0, 0.25)
    # The same motif a fifth higher and twice as slow, after its first three notes:
    state = NO_MELODY
    for i, p in enumerate(MOTIF[:3]):
        state, _ = advance(state, 67 + p, 10.0 + 0.5 * i)
    followers = memory.followers(state.context)
    assert followers is not None
    assert {interval_of(s) for s in followers} == {5}  # 7 -> 12 in the motif


def test_chord_notes_and_phrase_breaks_make_no_interval() -> None:
    memory = PlayerMemory()
    memory.note_on(60, 0.0)
    memory.note_on(64, 0.01)  # the same onset group
    memory.note_on(67, 0.5)
    memory.note_on(72, 10.0)  # after a phrase break
    assert memory.notes == 1


@given(st.lists(st.integers(30, 90), min_size=1, max_size=300))
def test_the_memory_holds_at_most_its_capacity_and_forgets_the_oldest(pitches: list[int]) -> None:
    memory = PlayerMemory(capacity_notes=16)
    hear(memory, pitches, 0.0, 0.2)
    assert memory.notes <= 16 and memory.phrases <= 1
    total = sum(sum(f.values()) for key, f in memory._counts.items() if key == ())
    assert total == memory.notes  # order 0 counts every note held, no more


def test_forgetting_removes_what_only_old_phrases_taught() -> None:
    memory = PlayerMemory(capacity_notes=8)
    hear(memory, [60, 72, 60, 72, 60], 0.0, 0.2)  # octave leaps
    hear(memory, [60 + i for i in range(20)], 5.0, 0.2)  # then only steps
    followers = memory.followers(())
    assert followers is not None
    assert {interval_of(s) for s in followers} == {1}


def test_the_memory_keeps_the_last_phrases_and_forgets_the_oldest_over_the_next_notes() -> None:
    memory = PlayerMemory(capacity_phrases=3)
    for phrase in range(3):  # steps of a semitone
        hear(memory, [60 + i for i in range(8)], 10.0 * phrase, 0.2)
    assert (memory.phrases, memory.notes) == (3, 21)
    for phrase in range(3, 6):  # then leaps of a fourth
        before = memory.notes
        memory.note_on(60, 10.0 * phrase)  # a phrase starts: nothing forgotten yet
        assert memory.notes == before
        for i in range(1, 8):
            before = memory.notes
            memory.note_on(60 + 5 * i, 10.0 * phrase + 0.2 * i)
            assert memory.notes >= before + 1 - FORGET_PER_NOTE  # a little at a time
    assert (memory.phrases, memory.notes) == (3, 21)
    followers = memory.followers(())
    assert followers is not None and {interval_of(s) for s in followers} == {5}


def test_clear_and_snapshot() -> None:
    memory = PlayerMemory()
    hear(memory, [60 + p for p in MOTIF], 0.0, 0.25)
    saved = memory.snapshot()
    memory.clear()
    assert memory.notes == 0 and memory.followers(()) is None
    memory.restore(saved)
    assert memory.notes == saved.notes == len(MOTIF) - 1
    saved.clear()
    assert memory.notes == len(MOTIF) - 1  # the copy is independent


def test_the_blend_keeps_the_note_on_share_and_moves_it_to_the_memory_s_pitches() -> None:
    memory = PlayerMemory()
    hear(memory, [60, 62, 64, 66, 68, 70], 0.0, 0.25)  # whole tones only
    state = NO_MELODY
    for i, p in enumerate([50, 52, 54]):
        state, _ = advance(state, p, 20.0 + 0.25 * i)
    weights = np.ones(400)
    weights[:128] = 0.5
    weights[10] = 0.0  # masked
    before = weights.copy()
    MemoryBlend(memory, 1.0).at(state)(weights)
    assert weights[:128].sum() == pytest.approx(before[:128].sum())
    assert np.array_equal(weights[128:], before[128:])
    assert int(np.argmax(weights[:128])) == 56 and weights[10] == 0.0
    MemoryBlend(memory, 0.5).at(state)(half := before.copy())
    assert half[56] == pytest.approx(0.5 * 0.5 + 0.5 * before[:128].sum())
    # The memory chooses among what the model finds plausible: a pitch it weighs 0 stays 0.
    weights = before.copy()
    weights[56] = 0.0
    MemoryBlend(memory, 1.0).at(state)(weights)
    assert weights[56] == 0.0


def test_the_blend_is_bit_for_bit_the_plain_formula() -> None:
    """The blend (both rows in one numpy call) gives exactly what the formula written plainly
    gives: (1 - mirror) * the model's + mirror * the memory's times the model's, renormalised
    to the model's note-on mass."""
    memory = PlayerMemory()
    hear(memory, [60, 62, 64, 65, 67, 64, 62, 60, 59, 60, 64, 67, 72], 0.0, 0.25)
    shapes = np.random.default_rng(3)
    for trial in range(300):
        state = NO_MELODY
        for i, p in enumerate(shapes.integers(40, 90, 3)):
            state, _ = advance(state, int(p), 30.0 * trial + 0.25 * i)
        mirror = float(shapes.random())
        weights = np.exp(shapes.normal(-8.0, 4.0, 400)) * (shapes.random(400) < 0.8)
        expected = weights.copy()
        counts = np.zeros(INTERVALS)
        if state.pitch >= 0 and memory.interval_weights(state.context, counts):
            pitches = np.zeros(128)
            for interval in range(-MAX_INTERVAL, MAX_INTERVAL + 1):
                if 0 <= state.pitch + interval < 128:
                    pitches[state.pitch + interval] = counts[interval + MAX_INTERVAL]
            model = expected[:128]
            mass, total = float(model.sum()), float((pitches * model).sum())
            if mass > 0.0 and total > 0.0:
                scaled = pitches * model
                model *= 1.0 - mirror
                scaled *= mirror * mass / total
                model += scaled
        MemoryBlend(memory, mirror).at(state)(weights)
        assert np.array_equal(weights, expected)


def test_an_empty_memory_leaves_the_weights_alone() -> None:
    weights = np.linspace(0.1, 1.0, 400)
    before = weights.copy()
    MemoryBlend(PlayerMemory(), 1.0).at(advance(NO_MELODY, 60, 0.0)[0])(weights)
    assert np.array_equal(weights, before)
    assert MAX_INTERVAL == 24


def test_reset_clears_the_memory_and_slots_keep_it() -> None:
    clock = ManualClock()
    settings = Settings(model=str(PIANO_MODEL), seed=1, mirror=0.5)
    performer = Performer(settings, Engine(PIANO_MODEL, seed=1), ListSink(clock), clock=clock)
    play(performer, call_messages(SCALE))
    finish(performer)
    heard = performer.memory.notes
    assert heard == len(SCALE) - 1
    performer.save_state(3)
    performer.clear_memory()
    performer.process_until(clock.now_s + 0.01)
    assert performer.memory.notes == 0
    performer.load_state(3)
    performer.process_until(clock.now_s + 0.01)
    assert performer.memory.notes == heard
    performer.reset()
    performer.process_until(clock.now_s + 0.01)
    assert performer.memory.notes == 0
    performer.close()


def test_a_command_right_after_a_note_finds_the_note_heard() -> None:
    """The player's memory hears a note once the part's due notes are out (the performer's
    aftermath of the event), but before any command that came with it: a state saved at once
    holds the note."""
    clock = ManualClock()
    settings = Settings(model=str(PIANO_MODEL), seed=1, mirror=0.5)
    performer = Performer(settings, Engine(PIANO_MODEL, seed=1), ListSink(clock), clock=clock)
    play(performer, call_messages(SCALE[:3]))
    performer.process_until(clock.now_s)
    heard = performer.memory.notes
    performer.submit(mido.Message("note_on", note=72, velocity=80), clock.now_s)
    performer.save_state(1)  # queued with the note: run in the service after it is taken
    performer.process_until(clock.now_s)
    performer.clear_memory()
    performer.process_until(clock.now_s + 0.01)
    performer.load_state(1)
    performer.process_until(clock.now_s + 0.01)
    assert performer.memory.notes == heard + 1
    performer.close()
