"""``antiphon eval-turns``: silences found, figures counted, and a run over a MIDI folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from antiphon.daemon.cli import main
from antiphon.daemon.codec import Note
from antiphon.daemon.settings import Settings
from antiphon.daemon.tools.turns_eval import (
    Silence,
    agreeing,
    judge_performance,
    replayed,
    silences_of,
    summary,
)
from antiphon.daemon.tools.turns_replay import (
    EAGERNESSES,
    FIXED_GAPS_S,
    dominated_by,
    figures,
    note_messages,
    trade_off,
)

from tests.midi_files import write_midi
from tests.test_performer import shared_engine


def test_silences_are_the_stretches_with_nothing_sounding_between_notes() -> None:
    notes = [Note(60, 0.0, 1.0, 80), Note(64, 0.5, 1.2, 80), Note(67, 1.5, 2.0, 80)]
    notes += [Note(67, 1.9, 2.5, 80)]  # struck again while sounding: the old note ends first
    messages = note_messages(notes)
    assert silences_of(messages) == [(1.2, 1.5)]
    ons = [m for _, m in messages if m.type == "note_on"]
    assert len(ons) == 4 and sum(1 for _, m in messages if m.type == "note_off") == 4


def test_false_answers_real_ends_and_delays_are_counted_per_minute() -> None:
    silences_s = [0.2, 0.5, 0.7, 1.0, 3.0, 2.0]
    declared = [None, 0.3, 0.4, 0.1, 0.2, None]
    row = figures(declared, silences_s, minutes=2.0)
    assert row["false"] == 1 and row["false_per_min"] == 0.5
    assert row["real_ends"] == 3 and row["missed"] == 1
    assert row["median_delay_s"] == pytest.approx(0.15)


def test_fixed_gaps_are_figured_on_the_same_silences() -> None:
    silences = [Silence("a", 0.0, s, None) for s in (0.2, 0.4, 0.55, 1.5)]
    rows = summary(silences, minutes=1.0)["rows"]
    assert rows["gap 0.15"]["false"] == 3 and rows["gap 0.35"]["false"] == 2
    assert rows["gap 0.5"]["false"] == 1 and rows["gap 0.5"]["median_delay_s"] == 0.5
    assert rows["detector"]["missed"] == 1


def test_a_midi_folder_gets_one_line_per_silence_and_a_summary(tmp_path: Path) -> None:
    phrase = [(60 + i, 0.3 * i, 0.3 * i + 0.25) for i in range(6)]  # 50 ms between notes
    later = [(p, on + 4.0, off + 4.0) for p, on, off in phrase]
    write_midi(tmp_path / "call.mid", phrase + later)
    (tmp_path / "broken.mid").write_bytes(b"not midi")
    events, report = tmp_path / "silences.jsonl", tmp_path / "report.json"
    args = ["eval-turns", str(tmp_path), "--events", str(events), "--json", str(report)]
    assert main(args) == 0
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    assert len(lines) == 11  # 5 within each phrase, 1 between them
    assert set(lines[0]) == {"file", "start_s", "silence_s", "declared_after_s"}
    long_one = max(lines, key=lambda line: line["silence_s"])
    assert long_one["silence_s"] == pytest.approx(4.0 - 1.75, abs=0.01)
    assert long_one["declared_after_s"] is not None and long_one["declared_after_s"] <= 0.8
    for line in lines:
        if line["silence_s"] < 0.1:
            assert line["declared_after_s"] is None
    summary_json = json.loads(report.read_text())
    assert summary_json["rows"]["detector"]["missed"] == 0
    assert summary_json["settings"]["turns"] == "auto"


def test_a_missing_source_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval-turns", str(tmp_path / "nothing")]) == 2
    assert capsys.readouterr().err.strip().startswith("antiphon eval-turns:")


def phrased_notes() -> list[Note]:
    """Phrases of eighth notes with breaths inside them and ends between them."""
    notes = []
    time_s = 0.0
    for phrase in range(6):
        for k in range(10):
            length_s = 0.6 if k == 9 else 0.18
            notes.append(Note(60 + (k * 5 + phrase) % 12, time_s, time_s + length_s, 70 + k))
            time_s += 0.25 + (0.3 if k == 4 else 0.0)  # a breath mid-phrase
        time_s += 1.5 if phrase % 2 else 0.4
    return notes


def test_the_replayed_judge_answers_as_the_performer_does() -> None:
    notes = phrased_notes()
    for eagerness in (0.0, 0.5, 1.0):
        settings = Settings(mode="listen", echo_window_ms=0.0, seed=0, eagerness=eagerness)
        found = judge_performance("phrases", notes, settings, shared_engine())
        judged = replayed(notes, (eagerness,))[eagerness]
        assert [round(j.silence_s, 9) for j in judged] == [round(s.silence_s, 9) for s in found]
        assert agreeing(found, judged) == len(found)
        assert any(s.declared_after_s is not None for s in found)


def test_the_trade_off_has_every_eagerness_and_gap_and_finds_domination() -> None:
    judged = replayed(phrased_notes(), EAGERNESSES)
    rows = trade_off(judged, minutes=1.0)
    assert set(rows) == {f"auto {e:g}" for e in EAGERNESSES} | {f"gap {g:g}" for g in FIXED_GAPS_S}
    assert rows["gap 0.15"]["false"] >= rows["gap 0.8"]["false"] == 0
    slow = {"false_per_min": 5.0, "median_delay_s": 0.7}
    assert dominated_by({**rows, "slow": slow}, "slow")  # a fixed gap beats it
    quick = {"false_per_min": 0.0, "median_delay_s": 0.1}
    assert dominated_by({**rows, "quick": quick}, "quick") == []


def test_the_trade_off_is_drawn_and_written(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    phrase = [(60 + i, 0.3 * i, 0.3 * i + 0.25) for i in range(6)]
    write_midi(tmp_path / "call.mid", phrase + [(p, on + 4.0, off + 4.0) for p, on, off in phrase])
    plot, report = tmp_path / "trade-off.png", tmp_path / "report.json"
    assert main(["eval-turns", str(tmp_path), "--plot", str(plot), "--json", str(report)]) == 0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary_json = json.loads(report.read_text())
    assert set(summary_json["trade_off"]) >= {"auto 0.5", "gap 0.35"}
    assert summary_json["replay_agrees"] == "11 of 11"
