"""The pure parts of the soak and the fuzz run: the figures per window, and what the fuzz
sends (no ports here; tests/test_midi_garbage.py sends it through JACK)."""

from __future__ import annotations

import random

import pytest
from antiphon.daemon.tools.fuzz import garbage_burst
from antiphon.daemon.tools.soak import (
    ProcessSample,
    SoakCall,
    SoakLog,
    growth_while_playing,
    judge_soak,
    soak_figures,
    take_out_beat_waits,
)
from hypothesis import given
from hypothesis import strategies as st

from tests.test_bench import live_log_line


@given(st.integers(0, 2**32 - 1))
def test_every_fuzz_event_is_one_python_rtmidi_can_send(seed: int) -> None:
    for event in garbage_burst(random.Random(seed), events=200):
        assert all(0 <= byte <= 255 for byte in event)
        assert 1 <= len(event) <= 3 or event[0] == 0xF0


def test_the_fuzz_mixes_every_kind_of_garbage_with_valid_messages() -> None:
    events = garbage_burst(random.Random(1), events=3000)
    firsts = {event[0] for event in events}
    assert {0xF4, 0xF5} & firsts  # undefined status bytes
    assert any(event[0] < 0x80 for event in events)  # data with no status
    assert any(event[0] == 0xF0 and 0xF7 not in event for event in events)  # sysex, no end
    assert any(len(event) == 3 and event[1] >= 0xF8 for event in events)  # real-time inside
    assert any(len(event) == 3 and event[0] & 0xF0 == 0x90 and event[2] < 0x80 for event in events)


def _log(rss_per_hour_mb: float, reactions_ms: list[float]) -> SoakLog:
    log = SoakLog()
    for i, reaction_ms in enumerate(reactions_ms):
        log.calls.append(SoakCall(last_sent_s=10.0 * i, reaction_ms=reaction_ms, interrupted=False))
    for second in range(0, 10 * len(reactions_ms), 5):
        rss_mb = 180.0 + rss_per_hour_mb * second / 3600.0
        log.samples.append(ProcessSample(float(second), rss_mb, second * 0.02, True))
    return log


def test_soak_windows_growth_and_drift_come_from_what_was_logged() -> None:
    # 60 calls, 10 s apart: two 5-minute windows; memory growing 3.6 MB an hour.
    reactions = [2.0] * 30 + [2.0] * 29 + [4.0]
    planned = [(10.0 * i + 0.5, True, 60) for i in range(60)]
    heard = [(t + 0.002, on, p) for t, on, p in planned[:-1]]  # the last one lost
    figures = soak_figures(_log(3.6, reactions), planned, heard, 0.0, 600.0, 300.0)
    first, second = figures["windows"]
    assert (first["calls"], second["calls"]) == (30, 30)
    assert first["timing_error_ms"]["p99"] == pytest.approx(2.0)
    assert first["cpu_percent"] == pytest.approx(2.0)
    assert figures["rss_growth_mb_per_hour"] == pytest.approx(3.6)
    assert figures["messages_lost"] == 1
    assert figures["reaction_p99_worst_over_first"] > 1.5  # the 4 ms call in the second window
    figures |= {"notes_left_sounding": 0, "exit_code_after_sigterm": 0}
    verdicts = judge_soak(figures)
    assert verdicts["rss_growth_under_5_mb_per_hour"]
    assert not verdicts["reaction_p99_within_1.5x_first_window"]


def test_the_soaks_reaction_leaves_out_the_replys_wait_for_the_beat() -> None:
    calls = [SoakCall(10.0, 2.5, False), SoakCall(20.0, 62.0, False), SoakCall(30.0, None, False)]
    lines = [
        live_log_line("reply phrase_end_s=10.351 reaction_ms=0.2 beat_wait_ms=None"),
        live_log_line("reply phrase_end_s=20.351 reaction_ms=0.3 beat_wait_ms=60.000"),
    ]
    take_out_beat_waits(calls, lines)
    assert [c.reaction_ms for c in calls] == [2.5, pytest.approx(2.0), None]


def test_memory_steps_at_model_swaps_are_not_growth_while_playing() -> None:
    # Flat at 180 MB, a swap away (no samples), flat again 9 MB higher, and so on.
    samples = [
        ProcessSample(float(t), 180.0 + 9.0 * (t // 100), 0.0, True)
        for t in range(0, 400, 5)
        if t % 100 < 70
    ]
    assert growth_while_playing(samples) == pytest.approx(0.0, abs=1e-9)
    leaking = [ProcessSample(s.time_s, s.rss_mb + s.time_s / 360.0, 0.0, True) for s in samples]
    assert growth_while_playing(leaking) == pytest.approx(10.0)  # MB an hour
