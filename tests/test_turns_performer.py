"""Turn-taking in the performer, on the shipped model and a simulated clock: ``turns gap`` is
the fixed gap of before, ``turns auto`` answers at the judged deadline with a reply made
ahead of it."""

from __future__ import annotations

import math
import tomllib
from typing import Any

import numpy as np
import pytest
from antiphon.daemon.musician.hearing.turns import BeatHint, TurnJudge
from antiphon.daemon.settings import Settings
from antiphon.daemon.surface.datagrams import ControlSurface
from antiphon.daemon.surface.mapping import ControlMapping, parse_mapping
from antiphon.daemon.surface.vocabulary import PARAMETERS, ControlError, SetParameter

from tests.test_control import message
from tests.test_performer import (
    SCALE,
    call_messages,
    finish,
    make,
    play,
    shared_engine,
    snapshot,
)

SILENCE_START_S = 1.95  # SCALE's last release


def performance(**values: Any) -> list[Any]:
    performer, _, sink = make(shared_engine(), seed=5, **values)
    play(performer, call_messages(SCALE))
    finish(performer)
    return [(t, str(m)) for t, m in sink.sent]


def test_turns_gap_answers_after_the_fixed_gap_and_never_asks_the_judge(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = performance(turns="gap", phrase_gap_s=0.35)
    assert before[0][0] == pytest.approx(SILENCE_START_S + 0.35)

    def refuse(*args: object, **kwargs: object) -> float:
        raise AssertionError("turns gap asked the turn judge")

    monkeypatch.setattr(TurnJudge, "wait_s", refuse)
    for eagerness in (0.0, 1.0):
        assert performance(turns="gap", phrase_gap_s=0.35, eagerness=eagerness) == before


def test_turns_auto_answers_at_the_judged_wait_with_the_reply_made_ahead(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[tuple[float, float, float]] = []

    def judged(
        self: TurnJudge,
        eagerness: float,
        longest_s: float,
        silence_start_s: float = 0.0,
        beat: BeatHint | None = None,
    ) -> float:
        asked.append((eagerness, longest_s, silence_start_s))
        return 0.123

    monkeypatch.setattr(TurnJudge, "wait_s", judged)
    performer, _, sink = make(shared_engine(), seed=5, turns="auto", phrase_gap_s=0.8)
    play(performer, call_messages(SCALE))
    engine = performer._conversation.engine
    performer.process_until(SILENCE_START_S + 0.01)
    before = engine.get_state()
    performer.process_until(SILENCE_START_S + 0.123 - 0.005)
    assert not np.array_equal(engine.get_state().h, before.h)  # the reply is made ahead
    finish(performer)
    # Asked once per silence, when it began: the 50 ms between the scale's notes, the end.
    eagerness = Settings().eagerness  # the default
    assert asked == [(eagerness, 0.8, 0.25 * i + 0.2) for i in range(8)]
    assert sink.note_ons()[0][0] == pytest.approx(SILENCE_START_S + 0.123)
    assert performer.last_call is not None
    assert performer.last_call.ended_s == pytest.approx(SILENCE_START_S + 0.123)
    assert performer.reply_reports()[-1].reaction_ms == pytest.approx(0.0)


def test_a_reply_made_ahead_of_a_judged_deadline_is_the_one_made_at_it() -> None:
    def reply(speculate_before_s: float) -> tuple[list[tuple[float, str]], Any]:
        engine = shared_engine()
        performer, _, sink = make(
            engine, seed=3, turns="auto", phrase_gap_s=0.8, speculate_before_s=speculate_before_s
        )
        play(performer, call_messages(SCALE))
        finish(performer)
        return [(t, str(m)) for t, m in sink.sent], snapshot(engine)

    at_deadline, state = reply(0.0)
    ahead, state_ahead = reply(0.02)
    assert at_deadline and ahead == at_deadline
    assert np.array_equal(state[0].h, state_ahead[0].h)


def test_the_player_going_on_within_the_judged_wait_is_not_answered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(TurnJudge, "wait_s", lambda self, *args, **kwargs: 0.5)
    performer, _, sink = make(shared_engine(), seed=5, turns="auto", phrase_gap_s=0.8)
    going_on = [(72, SILENCE_START_S + 0.4, SILENCE_START_S + 0.6)]
    play(performer, call_messages(SCALE) + call_messages(going_on))
    finish(performer)
    assert sink.note_ons()[0][0] == pytest.approx(SILENCE_START_S + 0.6 + 0.5)


def heard_by_the_judge(
    monkeypatch: pytest.MonkeyPatch, going_on_s: float, **values: Any
) -> list[float]:
    """The silences the judge learns, the player going on ``going_on_s`` after the scale's
    last release (its answer at the fixed 0.35 s gap, when there is one)."""
    heard: list[float] = []
    original = TurnJudge.heard_pause

    def recorded(self: TurnJudge, silence_s: float) -> None:
        heard.append(silence_s)
        original(self, silence_s)

    monkeypatch.setattr(TurnJudge, "heard_pause", recorded)
    performer, _, _ = make(shared_engine(), seed=5, turns="gap", phrase_gap_s=0.35, **values)
    play(performer, call_messages(SCALE))
    performer.process_until(SILENCE_START_S + going_on_s)
    again = SILENCE_START_S + going_on_s
    play(performer, call_messages([(50, again, again + 0.2)]))
    finish(performer)
    return heard


def test_a_silence_whose_answer_played_out_is_learnt_as_the_end_of_the_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The player comes in right after the answer: 0.45 s of scale breaths, then the end.
    after_answer = heard_by_the_judge(monkeypatch, going_on_s=20.0)
    assert after_answer[:-1] == pytest.approx([0.05] * 7) and after_answer[-1] == math.inf
    # Over the answer's first note: the player was going on; the breath is learnt as it was.
    over_answer = heard_by_the_judge(monkeypatch, going_on_s=0.36)
    assert over_answer[-1] == pytest.approx(0.36)
    # No answer (listen): the silence is learnt as it was, however long.
    unanswered = heard_by_the_judge(monkeypatch, going_on_s=20.0, mode="listen")
    assert unanswered[-1] == pytest.approx(20.0)


def test_turns_and_eagerness_are_live_parameters_in_the_status() -> None:
    performer, _, _ = make(shared_engine())
    performer.set_parameter("turns", "auto")
    performer.set_parameter("eagerness", 0.9)
    status = performer.status()
    assert status["turns"] == "auto" and status["eagerness"] == 0.9


# The knobs on the control surface --------------------------------------------------------------


def test_turns_and_eagerness_arrive_by_osc_as_any_other_parameter() -> None:
    surface = ControlSurface(ControlMapping(), [])
    current = {p.name: getattr(Settings(), p.name) for p in PARAMETERS}

    def decoded(address: str, value: object) -> tuple[list[object], list[str]]:
        result = surface.decode(message(address, value), current)
        return list(result.commands), list(result.notes)

    assert decoded("/antiphon/turns", "auto")[0] == [SetParameter("turns", "auto")]
    with pytest.raises(ControlError, match="'sometimes' is not one of gap, auto"):
        decoded("/antiphon/turns", "sometimes")
    assert decoded("/antiphon/eagerness", 0.75)[0] == [SetParameter("eagerness", 0.75)]
    assert decoded("/antiphon/eagerness", 3)[0] == [SetParameter("eagerness", 1.0)]


def test_a_mapped_switch_chooses_between_the_turns() -> None:
    mapping = parse_mapping(
        tomllib.loads('[osc."/1/push"]\nparameter = "turns"\nvalues = ["gap", "auto"]\n')
    )
    surface = ControlSurface(mapping, [])
    current = {p.name: getattr(Settings(), p.name) for p in PARAMETERS}
    assert list(surface.decode(message("/1/push", 1.0), current).commands) == [
        SetParameter("turns", "auto")
    ]


def test_judging_a_silence_leaves_the_model_state_as_it_was() -> None:
    def heard(turns: str) -> Any:
        engine = shared_engine()
        performer, _, _ = make(engine, seed=5, mode="listen", turns=turns, phrase_gap_s=0.8)
        breaths = [
            (p, on + 0.4 * (i // 4), off + 0.4 * (i // 4)) for i, (p, on, off) in enumerate(SCALE)
        ]
        play(performer, call_messages(breaths))
        finish(performer)
        return snapshot(engine)

    judged, fixed = heard("auto"), heard("gap")
    assert np.array_equal(judged[0].h, fixed[0].h) and np.array_equal(judged[0].c, fixed[0].c)
    assert judged[1:] == fixed[1:]


def test_the_judge_works_after_the_event_and_in_order_when_events_come_together(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The turn judge is not on the player's event's path: a silence is judged once the
    event that began it is handled, before anything can be due; and when the next event is
    taken before that (a backlog), the silence is still judged before that event tells the
    judge how long it was."""
    asked: list[str] = []
    original_pause = TurnJudge.heard_pause

    def judged(self: TurnJudge, *args: object, **kwargs: object) -> float:
        asked.append("judged")
        return 0.5

    def told(self: TurnJudge, silence_s: float) -> None:
        asked.append(f"told {silence_s:.2f}")
        original_pause(self, silence_s)

    monkeypatch.setattr(TurnJudge, "wait_s", judged)
    monkeypatch.setattr(TurnJudge, "heard_pause", told)
    for mode in ("call_response", "duet"):
        asked.clear()
        performer, _, _ = make(shared_engine(), seed=5, turns="auto", phrase_gap_s=0.8, mode=mode)
        first, second = call_messages([(60, 0.0, 0.2)]), call_messages([(62, 0.3, 0.5)])
        play(performer, first)
        performer.submit(*reversed(second[0]))  # ends the silence before anything ran
        assert asked == []  # the silence that began at 0.2 s waits: nothing is due yet
        performer.process_until(0.3)  # the backlog: the note-off, then the note-on
        assert asked == ["judged", "told 0.10"], mode
        play(performer, second[1:])
        performer.process_until(0.5)
        assert asked == ["judged", "told 0.10", "judged"], mode
        assert performer._phrase.deadline() == pytest.approx(1.0)
        finish(performer)
