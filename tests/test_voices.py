"""``--model auto``: the single-line model answers one line, the piano model chords, chosen at
each call's end with hysteresis; with the piano model forced, chords are answered exactly as
before (both computed in this run). Real shipped models, simulated clock."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from antiphon.daemon.musician.answering.follow import (
    KEY_WEIGHT,
    REGISTER_WEIGHT,
    KeyBias,
    RegisterBias,
    model_articulation_weight,
    model_contour_weight,
    model_key_weight,
    model_register_weight,
)
from antiphon.daemon.musician.hearing.motion import overlap_share
from antiphon.daemon.musician.hearing.phrase_shape import shape_of
from antiphon.daemon.musician.model.engine import Engine
from antiphon.daemon.musician.model.voices import VoiceChooser, Voices, open_engine, replay
from antiphon.daemon.musician.playing.performer import ManualClock, Performer
from antiphon.daemon.respond import TimedMessage, respond
from antiphon.daemon.settings import AUTO_MODEL, LINE_MODEL, PIANO_MODEL, Settings
from antiphon.daemon.surface.datagrams import ControlSurface
from antiphon.daemon.surface.mapping import parse_mapping
from antiphon.daemon.surface.vocabulary import Action
from antiphon.training.eval_replies import messages_to_notes, notes_to_messages

from tests.test_control import decode, message
from tests.test_motion import notes
from tests.test_performer import ListSink


def line_call(start_s: float = 0.0) -> np.ndarray:
    """An eighth-note scale up an octave and back, legato."""
    pitches = [60, 62, 64, 65, 67, 69, 71, 72, 71, 69, 67, 65, 64, 62, 60]
    return notes([(p, start_s + i * 0.2, start_s + i * 0.2 + 0.19) for i, p in enumerate(pitches)])


def chord_call(start_s: float = 0.0) -> np.ndarray:
    """Four triads with a bass note, held."""
    rows = []
    for i, root in enumerate((48, 53, 55, 48)):
        for step in (0, 12, 16, 19):
            rows.append((root + step, start_s + i * 0.6, start_s + i * 0.6 + 0.55))
    return notes(rows)


def test_one_line_goes_to_the_line_voice_chords_to_the_piano_and_in_between_stays() -> None:
    chooser = VoiceChooser()
    assert chooser.hear(line_call()) == "line"
    half_legato = notes([(60, 0.0, 1.0), (62, 0.8, 2.0), (64, 1.8, 3.0)])  # 0.4 s of 3 s
    assert chooser.hear(half_legato) == "line"  # overlap 0.13: between, so it stays
    assert chooser.hear(chord_call()) == "piano"
    assert chooser.hear(half_legato) == "piano"
    assert chooser.hear(notes([(60, 0.0, 0.2), (62, 0.2, 0.4)])) == "piano"  # too short
    assert chooser.hear(line_call()) == "line"


def _settings(model: str) -> Settings:
    return Settings(model=model, seed=3, echo_window_ms=0.0, turns="gap", phrase_gap_s=1.0)


def _answer(call: np.ndarray, model: str) -> tuple[list[TimedMessage], Voices | None]:
    settings = _settings(model)
    engine, voices = open_engine(settings)
    return respond(notes_to_messages(call), settings, engine, voices), voices


def _same(a: list[TimedMessage], b: list[TimedMessage]) -> bool:
    return [(t, m.bytes()) for t, m in a] == [(t, m.bytes()) for t, m in b]


@pytest.mark.skipif(not LINE_MODEL.exists(), reason="the line model is not exported")
def test_chords_are_answered_bit_for_bit_as_with_the_piano_model_forced() -> None:
    forced, _ = _answer(chord_call(), str(PIANO_MODEL))
    auto, voices = _answer(chord_call(), AUTO_MODEL)
    assert voices is not None and voices.voice == "piano" and voices.switches == 0
    assert forced and _same(forced, auto)


@pytest.mark.skipif(not LINE_MODEL.exists(), reason="the line model is not exported")
def test_a_line_is_answered_by_the_line_model_and_chords_after_it_by_the_piano() -> None:
    piano, _ = _answer(line_call(), str(PIANO_MODEL))
    auto, voices = _answer(line_call(), AUTO_MODEL)
    assert voices is not None and voices.voice == "line" and voices.switches == 1
    assert auto and not _same(piano, auto)
    # A line, then chords after the reply: two switches, each between replies, nothing left
    # sounding.
    both = np.concatenate([line_call(), chord_call(start_s=30.0)])
    settings = _settings(AUTO_MODEL)
    engine, voices = open_engine(settings)
    output = respond(notes_to_messages(both), settings, engine, voices)
    assert voices is not None and voices.voice == "piano" and voices.switches == 2
    reply_notes, hanging = messages_to_notes(output)
    assert hanging == 0
    assert (reply_notes[:, 1] > 3.0).any() and (reply_notes[:, 1] > 32.4).any()


def test_a_replayed_call_is_heard_from_its_first_onset() -> None:
    replayed = Engine(PIANO_MODEL, seed=0)
    replay(replayed, chord_call(start_s=2.0))
    again = Engine(PIANO_MODEL, seed=0)
    replay(again, chord_call())
    assert np.array_equal(replayed.logits, again.logits)  # from the call's first onset
    assert replayed.ready


def test_osc_can_ask_for_auto(tmp_path: Path) -> None:
    surface = ControlSurface(parse_mapping({}), [tmp_path])
    assert decode(surface, message("/antiphon/model", "auto")) == [Action("model", Path("auto"))]


def test_a_model_file_may_ask_for_a_softer_push_into_the_key() -> None:
    assert model_key_weight({}) == KEY_WEIGHT
    assert model_key_weight({"follow": {"key_weight": 0.5}}) == 0.5
    for bad in ({"follow": 3}, {"follow": {"key_weight": -1}}, {"follow": {"key_weight": "x"}}):
        assert model_key_weight(bad) == KEY_WEIGHT
    call = line_call()
    assert KeyBias(call, 1.0).bias.min() == -KEY_WEIGHT
    assert KeyBias(call, 1.0, 0.5).bias.min() == -0.5
    assert KeyBias(call, 1.0, 0.0).bias.max() == 0.0
    piano = Engine(PIANO_MODEL)
    assert model_key_weight(piano.info.training) == KEY_WEIGHT  # the piano model: as before


def test_a_model_file_may_ask_for_a_softer_register_and_an_articulation_push() -> None:
    assert model_register_weight({}) == REGISTER_WEIGHT
    assert model_articulation_weight({}) == 0.0  # no push unless the file asks for one
    asked = {"follow": {"register_weight": 0.25, "articulation_weight": 16}}
    assert model_register_weight(asked) == 0.25
    assert model_articulation_weight(asked) == 16.0
    for bad in ({"follow": {"register_weight": -1, "articulation_weight": "x"}}, {"follow": 1}):
        assert model_register_weight(bad) == REGISTER_WEIGHT
        assert model_articulation_weight(bad) == 0.0
    call = line_call()
    shape = shape_of(call)
    assert shape is not None
    full, soft = RegisterBias(call, shape, 1.0), RegisterBias(call, shape, 1.0, 0.25)
    near = full.bias > -2.0  # (far off, both are cut at REGISTER_MAX)
    assert near.sum() > 6 and np.allclose(soft.bias[near], 0.25 * full.bias[near])
    piano = Engine(PIANO_MODEL).info.training  # the piano model: as before
    assert model_register_weight(piano) == REGISTER_WEIGHT
    assert model_articulation_weight(piano) == 0.0
    assert model_contour_weight(piano) == 0.0
    assert model_contour_weight({"follow": {"contour_weight": 1}}) == 1.0


@pytest.mark.skipif(not LINE_MODEL.exists(), reason="the line model is not exported")
def test_the_line_model_asks_for_the_pushes_tuned_on_its_validation_soloists() -> None:
    line = Engine(LINE_MODEL).info.training
    assert model_key_weight(line) < KEY_WEIGHT
    assert model_register_weight(line) < REGISTER_WEIGHT
    assert model_articulation_weight(line) > 0
    assert model_contour_weight(line) > 0


def test_a_reply_to_one_line_plays_one_line_and_one_to_chords_may_not() -> None:
    for seed in range(3):
        settings = Settings(
            model=str(PIANO_MODEL), seed=seed, echo_window_ms=0.0, turns="gap", phrase_gap_s=1.0
        )
        output = respond(notes_to_messages(line_call()), settings, Engine(PIANO_MODEL, seed=seed))
        reply, hanging = messages_to_notes(output, from_s=float(line_call()[:, 2].max()))
        assert hanging == 0 and len(reply) > 3
        assert overlap_share(reply) == 0.0
    output = respond(notes_to_messages(chord_call()), settings, Engine(PIANO_MODEL, seed=1))
    reply, _ = messages_to_notes(output, from_s=float(chord_call()[:, 2].max()))
    assert (overlap_share(reply) or 0.0) > 0.0


@pytest.mark.skipif(not LINE_MODEL.exists(), reason="the line model is not exported")
def test_auto_asked_for_by_osc_chooses_from_the_next_call_and_a_path_ends_it() -> None:
    clock = ManualClock()
    settings = _settings(str(PIANO_MODEL))
    performer = Performer(settings, Engine(PIANO_MODEL, seed=1), ListSink(clock), clock=clock)
    heard: list[tuple[str, object]] = []
    performer.add_listener(lambda topic, value: heard.append((topic, value)))
    assert performer.status()["model_auto"] is False
    performer.switch_model(AUTO_MODEL)
    performer.process_until(0.0)
    assert performer.status()["model_auto"] is True
    assert ("model", AUTO_MODEL) in heard
    for time_s, msg in notes_to_messages(line_call(start_s=1.0)):
        performer.process_until(time_s)
        performer.submit(msg, time_s)
    performer.process_until(30.0)
    assert performer.status()["model"] == str(LINE_MODEL)
    assert ("model", str(LINE_MODEL)) in heard
    performer.switch_model(PIANO_MODEL)
    performer.process_until(31.0)
    assert performer.status()["model_auto"] is False
    assert performer.status()["model"] == str(PIANO_MODEL)
    performer.close()
