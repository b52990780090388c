"""``antiphon bench``: its pure parts, and one short real run on JACK (figures not judged)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mido
import pytest
from antiphon.daemon.musician.answering.reply import format_planned, parse_planned
from antiphon.daemon.settings import PIANO_MODEL
from antiphon.daemon.tools.bench_duet import PLANNED_LINE as DUET_PLANNED_LINE
from antiphon.daemon.tools.bench_report import (
    Call,
    _split_reaction,
    exact_timing,
    judge,
    live_figures,
    percentiles,
    planned_notes,
    reply_lines,
    timing_error_bound_ms,
)
from antiphon.daemon.tools.jack_server import JackServer
from antiphon.daemon.tools.message_match import match_messages
from antiphon.daemon.tools.probe import Timed
from hypothesis import given
from hypothesis import strategies as st


def test_percentiles_of_known_values() -> None:
    figures = percentiles([float(v) for v in range(1, 101)])
    assert figures["p50"] == pytest.approx(50.5)
    assert figures["p99"] == pytest.approx(99.01)
    assert (figures["max"], figures["n"]) == (100.0, 100)


def live_log_line(message: str) -> str:
    """A line of the daemon's log from its live module, as the bench reads it."""
    return f"2025-05-01 21:30:07.001 INFO antiphon.daemon.stage.live: {message}"


def test_reply_lines_are_read_back_as_their_facts() -> None:
    lines = [
        live_log_line("ready: JACK: input 'A-in:in' (virtual)"),
        live_log_line("reply phrase_end_s=12.500 reaction_ms=1.250 notes=5 interrupted=False"),
    ]
    assert reply_lines(lines) == [
        {"phrase_end_s": "12.500", "reaction_ms": "1.250", "notes": "5", "interrupted": "False"}
    ]


def test_calls_pair_with_the_reply_whose_phrase_end_they_caused() -> None:
    calls = [Call(10.0, 10.355), Call(20.0, 20.36)]
    replies = [{"phrase_end_s": "20.351"}, {"phrase_end_s": "10.352"}, {"phrase_end_s": "55.0"}]
    split = _split_reaction(calls, replies)
    assert split["call_heard_ms"]["p50"] == pytest.approx(1.5)
    assert split["declared_end_to_first_note_ms"]["max"] == pytest.approx(9.0)


def test_judged_turns_answer_from_the_last_message_and_react_from_the_declared_end() -> None:
    calls = [Call(10.0, 10.125), Call(20.0, 20.51), Call(30.0, None)]
    lines = [
        live_log_line("reply phrase_end_s=10.121 reaction_ms=0.2"),
        live_log_line("reply phrase_end_s=20.508 reaction_ms=0.3"),
    ]
    figures = live_figures(calls, [], [1.0], lines, gap_s=None)
    assert figures["answer_ms"]["p50"] == pytest.approx(317.5)
    assert figures["answer_ms"]["max"] == pytest.approx(510.0)
    assert figures["reaction_ms"]["max"] == pytest.approx(4.0)
    assert figures["declared_end_to_first_note_ms"]["n"] == 2
    assert "values" not in figures["declared_end_to_first_note_ms"]
    assert figures["unanswered_calls"] == 1


@pytest.mark.parametrize("gap_s", [0.35, None])
def test_the_beats_wait_is_in_the_answer_time_and_not_in_the_reaction(
    gap_s: float | None,
) -> None:
    """The reply to the second call waited 60 ms for the beat's grid, on purpose."""
    calls = [Call(10.0, 10.352), Call(20.0, 20.412)]
    lines = [
        live_log_line("reply phrase_end_s=10.351 reaction_ms=0.2 beat_wait_ms=None"),
        live_log_line("reply phrase_end_s=20.351 reaction_ms=0.3 beat_wait_ms=60.000"),
    ]
    figures = live_figures(calls, [], [1.0], lines, gap_s=gap_s)
    assert figures["answer_ms"]["max"] == pytest.approx(412.0)
    assert figures["declared_end_to_first_note_ms"]["max"] == pytest.approx(1.0)
    assert figures["reaction_ms"]["max"] == pytest.approx(2.0 if gap_s else 1.0)


def test_targets_allow_one_jack_period_where_the_brief_says_so() -> None:
    results = {
        "jack": {"period_ms": 2.0},
        "step_ms": {"p99": 0.31},
        "reaction_ms": {"p99": 4.9},
        "schedule_error_worst_per_reply_ms": {"p99": 1.0},
        "transport_ms": {"p99": 1.5},
        "timing_error_ms": {"p99": 2.25},
        "peak_rss_mb": 180.0,
        "ready_s": None,
    }
    verdicts = judge(results)
    assert verdicts["step_p99_ms"]["met"] is False
    assert verdicts["reaction_p99_ms"] == {"target": 5.0, "measured": 4.9, "met": True}
    assert verdicts["timing_error_p99_ms"]["measured"] == 2.25  # the exact figure is judged
    assert timing_error_bound_ms(results) == pytest.approx(2.5)  # and the bound kept beside it
    assert verdicts["ready_s"]["met"] is None


def note(on: bool, pitch: int) -> mido.Message:
    return mido.Message("note_on" if on else "note_off", note=pitch, velocity=64 if on else 0)


@given(
    st.lists(
        st.tuples(st.floats(0, 1e6, allow_nan=False), st.booleans(), st.integers(0, 127)),
        max_size=40,
    )
)
def test_planned_notes_read_back_as_they_were_written(notes: list[tuple[float, bool, int]]) -> None:
    text = format_planned([(time_s, note(on, pitch)) for time_s, on, pitch in notes])
    back = parse_planned(text)
    assert [(on, pitch) for _, on, pitch in back] == [(on, pitch) for _, on, pitch in notes]
    assert all(abs(a[0] - b[0]) <= 1e-6 for a, b in zip(back, notes, strict=True))


def test_the_planned_times_come_from_the_daemons_debug_lines() -> None:
    lines = [
        "2025-05-01 21:30:07.001 DEBUG antiphon.daemon.musician.playing.performer: "
        "reply messages phrase_end_s=12.500000 planned=+60@12.500000,-60@12.750000",
        "2025-05-01 21:30:07.001 INFO antiphon.daemon.stage.live: "
        "reply phrase_end_s=12.500 notes=1",
        "2025-05-01 21:30:09.001 DEBUG antiphon.daemon.musician.playing.performer: "
        "reply messages phrase_end_s=14.0 planned=+62@14.000000",
        "2025-05-01 21:30:11.001 DEBUG antiphon.daemon.musician.playing.performer: "
        "duet messages planned=+48@15.000000,-48@15.250000",
    ]
    assert planned_notes(lines) == [(12.5, True, 60), (12.75, False, 60), (14.0, True, 62)]
    assert planned_notes(lines, DUET_PLANNED_LINE) == [(15.0, True, 48), (15.25, False, 48)]


def test_exact_timing_pairs_each_arrival_with_its_planned_message() -> None:
    planned = parse_planned("+60@10.0,+64@10.0,-60@10.25,-64@10.5,+67@11.0")
    arrivals = [
        Timed(10.0012, note(True, 60)),
        Timed(10.0013, note(True, 64)),
        Timed(10.2520, note(False, 60)),
        # -64 was lost on the way
        Timed(10.9, mido.Message("control_change", control=64, value=0)),  # not a note
        Timed(11.0030, note(True, 67)),
        Timed(12.0, note(False, 67)),  # not a reply's: nothing planned for it
    ]
    figures = exact_timing(planned, arrivals)
    errors = figures["timing_error_ms"]
    assert errors["n"] == 4
    assert errors["max"] == pytest.approx(3.0)  # +67 paired with its own arrival
    assert errors["p50"] == pytest.approx(1.65)  # median of 1.2, 1.3, 2.0, 3.0
    assert (figures["messages_lost"], figures["messages_extra"]) == (1, 1)
    assert figures["messages_reordered"] == 0
    assert exact_timing([], [])["timing_error_ms"] is None


def test_lost_duplicated_and_reordered_messages_are_counted() -> None:
    planned = [(1.0, True, 60), (1.1, True, 62), (1.2, False, 60), (1.3, False, 62)]
    heard = [
        (1.001, True, 60),
        (1.001, True, 60),  # twice
        (1.205, False, 60),  # before +62: out of order
        (1.206, True, 62),
        # -62 never came
    ]
    match = match_messages(planned, heard)
    assert (match.lost, match.extra, match.reordered) == (1, 1, 1)
    assert sorted(match.pairs) == [(0, 0), (1, 3), (2, 2)]


@given(
    st.lists(st.tuples(st.floats(0.0, 100.0), st.booleans(), st.integers(0, 127)), max_size=40),
    st.sets(st.integers(0, 39)),
    st.floats(0.0, 0.5),
)
def test_every_message_heard_on_time_is_matched_and_only_the_dropped_are_lost(
    planned: list[tuple[float, bool, int]], dropped: set[int], delay_s: float
) -> None:
    planned = sorted(planned)
    heard = [(t + delay_s, on, p) for i, (t, on, p) in enumerate(planned) if i not in dropped]
    match = match_messages(planned, heard)
    assert match.extra == 0
    assert match.lost == len(planned) - len(heard)
    assert len(match.pairs) == len(heard)


@pytest.mark.jack
@pytest.mark.system
@pytest.mark.slow
def test_a_short_bench_run_reports_every_figure(jack_server: JackServer, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "antiphon.daemon.cli", "bench", "--model", str(PIANO_MODEL),
         "--calls", "2", "--steps", "200", "--json", str(out)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    figures = json.loads(out.read_text())
    assert figures["jack"]["server"] == jack_server.name  # it used the running server
    assert figures["reaction_ms"]["n"] == 2
    assert figures["step_ms"]["n"] == 200
    assert figures["exit_code_after_sigterm"] == 0
    assert set(figures["targets"]) == {
        "step_p99_ms", "reaction_p99_ms", "timing_error_p99_ms", "peak_rss_mb", "ready_s",
        "shaped_reply32_p99_ms", "memory_note_p99_us", "messages_lost", "unanswered_calls",
    }  # fmt: skip
    assert figures["memory_note_us"]["n"] > 0 and figures["shaped_reply32_ms"]["n"] > 0
    assert figures["heard_note_ms"]["n"] == figures["heard_note_idle_ms"]["n"] == 20
    assert "the same after 100 ms idle (the duet's reaction)" in result.stdout
    assert figures["messages_lost"] == 0
    assert "reaction: first note at client" in result.stdout
    # The exact output timing error: every reply message paired with its arrival.
    assert figures["timing_error_ms"]["n"] >= 2 * figures["reaction_ms"]["n"]
    assert (
        figures["targets"]["timing_error_p99_ms"]["measured"] == figures["timing_error_ms"]["p99"]
    )
    assert figures["timing_error_bound_p99_ms"] is not None
    assert "output timing error, exact: arrival - planned" in result.stdout


def test_a_heard_note_is_timed_as_the_duet_feeds_it_and_leaves_its_state() -> None:
    import numpy as np
    from antiphon.daemon.codec import StreamEncoder
    from antiphon.daemon.musician.model.engine import Engine
    from antiphon.daemon.tools import bench

    engine = Engine(PIANO_MODEL, seed=0)
    engine.feed(5)
    after_call = engine.get_state()
    figures = bench.measure_heard_note(engine, after_call, runs=3)
    assert figures["heard_note_ms"]["n"] == figures["heard_note_idle_ms"]["n"] == 3
    assert 0 < figures["heard_note_ms"]["p50"] <= figures["heard_note_ms"]["p99"]
    encoder = StreamEncoder(engine.vocabulary)
    encoder.note_on(60, 80, 0.0)
    tokens = encoder.note_on(64, 96, 0.3)
    assert len(tokens) == 3  # a time shift, a velocity, the pitch: one run of three
    timed = engine.get_state()
    engine.set_state(after_call)
    engine.feed_run(tokens)
    assert np.array_equal(engine.get_state().h, timed.h)


def test_a_bench_phrase_ends_with_its_last_note_held_longer() -> None:
    import random

    from antiphon.daemon.tools.bench import ended_phrase
    from antiphon.daemon.tools.probe import human_phrase

    plain = human_phrase(random.Random(3), notes=5)
    ended = ended_phrase(plain, lengthening=2.5)
    assert [e.time_s for e in ended] == sorted(e.time_s for e in ended)
    assert sorted(str(e.message) for e in ended) == sorted(str(e.message) for e in plain)
    last = ended[-1]
    assert last.message.type == "note_off"
    onset = max(e.time_s for e in plain if e.message.type == "note_on")
    held = (
        next(
            e.time_s
            for e in plain
            if e.message.type == "note_off"
            and e.message.note == last.message.note
            and e.time_s > onset
        )
        - onset
    )
    assert last.time_s == pytest.approx(onset + 2.5 * held)


def test_every_timed_wait_is_measured_and_none_ends_before_it_is_due() -> None:
    from antiphon.daemon.tools.wakeups import measure_wakeups

    late_ms = measure_wakeups(waits=50)
    assert len(late_ms) == 50
    assert min(late_ms) > -0.1  # a queue wait with a timeout never ends early


def test_calls_from_a_folder_with_no_midi_is_one_line_and_status_2(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "antiphon.daemon.cli", "bench", "--calls-from", str(tmp_path),
         "--calls", "1"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip() == f"antiphon bench: {tmp_path}: no MIDI files"
