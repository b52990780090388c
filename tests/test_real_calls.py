"""Calls cut from real playing for the bench: each phrase end a call, played as it was."""

from __future__ import annotations

from pathlib import Path

import mido
import pytest
from antiphon.daemon.tools.probe import SUSTAIN_CC, Timed
from antiphon.daemon.tools.real_calls import KeyMessage, calls_from, cut_call, phrases
from antiphon.daemon.tools.turns_eval import sounding_notes
from antiphon.daemon.tools.turns_replay import note_messages
from hypothesis import given, settings
from hypothesis import strategies as st


def on(time_s: float, note: int) -> Timed:
    return Timed(time_s, mido.Message("note_on", note=note, velocity=70))


def off(time_s: float, note: int) -> Timed:
    return Timed(time_s, mido.Message("note_off", note=note))


def pedal(time_s: float, value: int) -> Timed:
    return Timed(time_s, mido.Message("control_change", control=SUSTAIN_CC, value=value))


def line(start_s: float, notes: list[int], ioi_s: float = 0.25) -> list[Timed]:
    out = []
    for i, note in enumerate(notes):
        out += [on(start_s + i * ioi_s, note), off(start_s + (i + 0.8) * ioi_s, note)]
    return out


def played(events: list[Timed]) -> list[KeyMessage]:
    """The key messages the bench plays for ``events`` (as calls_from reads a file)."""
    ordered = sorted(events, key=lambda e: e.time_s)
    return note_messages(sounding_notes([(e.time_s, e.message) for e in ordered]))


def test_a_phrase_ends_at_a_silence_of_a_second_and_at_the_end() -> None:
    playing = line(0.0, [60, 62, 64, 65]) + line(1.6, [67, 65]) + line(4.0, [64, 62, 60])
    # Silences: 0.05 s between notes, 0.65 s after the first line, 1.95 s after the second.
    assert [t for phrase in phrases(played(playing)) for t in phrase] == pytest.approx(
        [0.0, 2.05, 4.0, 4.7]
    )


def test_playing_with_no_notes_has_no_phrases() -> None:
    assert phrases([]) == []
    assert phrases(played([pedal(0.0, 127), pedal(1.0, 0)])) == []


def test_the_pedal_holds_a_silence_off_until_it_lifts() -> None:
    playing = [pedal(0.0, 127), *line(0.0, [60, 62]), pedal(2.0, 0), *line(3.5, [64])]
    assert [t for phrase in phrases(played(playing)) for t in phrase] == pytest.approx(
        [0.0, 2.0, 3.5, 3.7]
    )


def test_a_call_is_the_phrases_last_seconds_from_a_note_on_without_what_began_before() -> None:
    playing = [on(0.0, 48), pedal(0.1, 127), *line(0.2, [60, 62, 64, 65, 67]), off(1.6, 48)]
    playing.append(pedal(1.7, 0))
    call = cut_call(played(playing), (0.0, 1.7), max_s=1.0)
    assert call[0].time_s == 0.0 and call[0].message.type == "note_on"
    assert call[0].message.note == 64  # the first onset in the last second (0.7 s)
    notes = {e.message.note for e in call if e.message.type.startswith("note")}
    assert 48 not in notes  # held from before the call
    assert not any(e.message.type == "control_change" for e in call)  # the pedal is applied
    assert cut_call(played(playing), (0.0, 1.7), max_s=0.01) == []


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(40, 90), min_size=1, max_size=12),
    st.floats(0.1, 0.5),
    st.floats(0.5, 8.0),
)
def test_every_note_of_a_cut_call_starts_and_ends_inside_it(
    notes: list[int], ioi_s: float, max_s: float
) -> None:
    playing = line(0.0, notes, ioi_s)
    messages = played(playing)
    (phrase,) = phrases(messages)
    call = cut_call(messages, phrase, max_s)
    assert call and call[0].time_s == 0.0
    held: set[int] = set()
    for event in call:
        if event.message.type == "note_on":
            held.add(event.message.note)
        else:
            assert event.message.note in held
            held.discard(event.message.note)
    assert held == set()
    assert call[-1].time_s <= max_s + 1e-9


def test_calls_come_from_every_file_and_repeat_with_the_seed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for k, start in enumerate((60, 48)):
        midi = mido.MidiFile()
        track = mido.MidiTrack()
        midi.tracks.append(track)
        last_tick = 0
        for event in line(0.0, [start, start + 2, start + 4]) + line(3.0, [start + 5] * 4):
            tick = round(mido.second2tick(event.time_s, midi.ticks_per_beat, 500_000))
            track.append(event.message.copy(time=tick - last_tick))
            last_tick = tick
        midi.save(tmp_path / f"take{k}.mid")
    (tmp_path / "broken.mid").write_bytes(b"MThd garbage")
    calls = calls_from(tmp_path, 40, seed=3)
    skipped = capsys.readouterr().err.strip().splitlines()
    assert len(skipped) == 1 and skipped[0].startswith("antiphon bench: skipped")
    assert "broken.mid" in skipped[0]
    assert len(calls) == 40
    firsts = {call[0].message.note for call in calls}
    assert firsts == {60, 65, 48, 53}
    assert calls_from(tmp_path, 40, seed=3) == calls
    with pytest.raises(ValueError, match="no MIDI files"):
        calls_from(tmp_path / "nowhere", 1, seed=0)
