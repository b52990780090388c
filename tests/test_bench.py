"""``antiphon bench``: its pure parts, and one short real run on JACK (figures not judged)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from daemon.bench import Call, _reply_lines, _split_reaction, judge, percentiles
from daemon.jack_server import JackServer
from daemon.settings import DEFAULT_MODEL


def test_percentiles_of_known_values() -> None:
    figures = percentiles([float(v) for v in range(1, 101)])
    assert figures["p50"] == pytest.approx(50.5)
    assert figures["p99"] == pytest.approx(99.01)
    assert (figures["max"], figures["n"]) == (100.0, 100)


def test_reply_lines_are_read_back_as_their_facts() -> None:
    lines = [
        "2025-05-01 21:30:05.123 INFO daemon.live: ready: JACK: input 'A-in:in' (virtual)",
        "2025-05-01 21:30:07.001 INFO daemon.live: reply phrase_end_s=12.500 reaction_ms=1.250 "
        "notes=5 interrupted=False",
    ]
    assert _reply_lines(lines) == [
        {"phrase_end_s": "12.500", "reaction_ms": "1.250", "notes": "5", "interrupted": "False"}
    ]


def test_calls_pair_with_the_reply_whose_phrase_end_they_caused() -> None:
    calls = [Call(10.0, 10.355), Call(20.0, 20.36)]
    replies = [{"phrase_end_s": "20.351"}, {"phrase_end_s": "10.352"}, {"phrase_end_s": "55.0"}]
    split = _split_reaction(calls, replies)
    assert split["call_heard_ms"]["p50"] == pytest.approx(1.5)
    assert split["declared_end_to_first_note_ms"]["max"] == pytest.approx(9.0)


def test_targets_allow_one_jack_period_where_the_brief_says_so() -> None:
    results = {
        "jack": {"period_ms": 2.0},
        "step_ms": {"p99": 0.31},
        "reaction_ms": {"p99": 4.9},
        "schedule_error_worst_per_reply_ms": {"p99": 1.0},
        "transport_ms": {"p99": 1.5},
        "peak_rss_mb": 180.0,
        "ready_s": None,
    }
    verdicts = judge(results)
    assert verdicts["step_p99_ms"]["met"] is False
    assert verdicts["reaction_p99_ms"] == {"target": 5.0, "measured": 4.9, "met": True}
    assert verdicts["timing_error_p99_ms"]["measured"] == pytest.approx(2.5)
    assert verdicts["ready_s"]["met"] is None


@pytest.mark.jack
@pytest.mark.system
@pytest.mark.slow
def test_a_short_bench_run_reports_every_figure(jack_server: JackServer, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "daemon.cli", "bench", "--model", str(DEFAULT_MODEL),
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
    }  # fmt: skip
    assert "reaction: first note at client" in result.stdout
