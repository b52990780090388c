"""``antiphon respond``: a call as a MIDI file in, the reply as a MIDI file out."""

from __future__ import annotations

import argparse
from pathlib import Path

import mido
import pytest
from antiphon.daemon import respond

from tests.test_notes import Synth

MODEL = Path(__file__).resolve().parent.parent / "exported_models" / "antiphon-piano.onnx"


def write_call(path: Path, pitches: list[int], beat_ticks: int = 240) -> Path:
    """A phrase at 120 bpm: each note a quarter of a second (240 ticks), legato."""
    midi = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack()
    track.append(mido.Message("control_change", control=64, value=127, time=0))
    for pitch in pitches:
        track.append(mido.Message("note_on", note=pitch, velocity=72, time=0))
        track.append(mido.Message("note_off", note=pitch, time=beat_ticks))
    track.append(mido.Message("control_change", control=64, value=0, time=0))
    midi.tracks.append(track)
    midi.save(path)
    return path


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    respond.add_arguments(parser)
    return respond.run(parser.parse_args(argv))


def notes_of(track: mido.MidiTrack) -> list[tuple[int, mido.Message]]:
    """(absolute tick, message) of a track's note messages."""
    tick, out = 0, []
    for message in track:
        tick += message.time
        if message.type in ("note_on", "note_off"):
            out.append((tick, message))
    return out


def test_reply_is_written_and_every_note_ends(tmp_path: Path) -> None:
    call = write_call(tmp_path / "call.mid", [60, 64, 67, 72, 67, 64])
    out = tmp_path / "reply.mid"
    assert run([str(call), "-o", str(out), "--model", str(MODEL), "--seed", "3"]) == 0
    midi = mido.MidiFile(out)
    assert len(midi.tracks) == 1
    notes = notes_of(midi.tracks[0])
    assert notes[0][0] == 0 and notes[0][1].type == "note_on"  # starts at the first note
    synth = Synth()
    synth.play([m for _, m in notes])
    assert synth.sounding == set()
    assert 1 <= sum(1 for _, m in notes if m.type == "note_on") <= 6  # ratio 1: at most 6


def test_with_call_keeps_call_and_reply_at_their_times(tmp_path: Path) -> None:
    call = write_call(tmp_path / "call.mid", [60, 62, 64, 65])
    out = tmp_path / "both.mid"
    args = [str(call), "-o", str(out), "--model", str(MODEL), "--with-call"]
    assert run([*args, "--turns", "gap", "--phrase-gap", "0.5"]) == 0
    midi = mido.MidiFile(out)
    assert len(midi.tracks) == 2
    call_notes, reply_notes = notes_of(midi.tracks[0]), notes_of(midi.tracks[1])
    assert len(call_notes) == 8
    # The call ends at 1.0 s; with a 0.5 s gap the reply starts at 1.5 s (960 ticks a second).
    assert reply_notes[0][0] == round(1.5 * 960)


def test_same_seed_same_file_other_seed_other_file(tmp_path: Path) -> None:
    call = write_call(tmp_path / "call.mid", [60, 64, 67, 72, 76, 79, 84, 88])
    outputs = []
    for index, seed in enumerate(["11", "11", "12"]):
        out = tmp_path / f"reply{index}.mid"
        assert run([str(call), "-o", str(out), "--model", str(MODEL), "--seed", seed]) == 0
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]
    assert outputs[0] != outputs[2]


@pytest.mark.parametrize(
    "content", [b"", b"MThd", b"not a midi file at all", b"MThd\x00\x00\x00\x06\x00\x01\x00\x05"]
)
def test_corrupt_call_file_is_one_line_and_exit_2(
    tmp_path: Path, content: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    call = tmp_path / "broken.mid"
    call.write_bytes(content)
    assert run([str(call), "-o", str(tmp_path / "r.mid"), "--model", str(MODEL)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("antiphon respond:") and error.count("\n") == 1
    assert not (tmp_path / "r.mid").exists()


def test_call_without_notes_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    midi = mido.MidiFile()
    midi.tracks.append(mido.MidiTrack([mido.Message("control_change", control=64, value=127)]))
    midi.save(tmp_path / "silent.mid")
    args = [str(tmp_path / "silent.mid"), "-o", str(tmp_path / "r.mid"), "--model", str(MODEL)]
    assert run(args) == 2
    assert "no notes" in capsys.readouterr().err


def test_missing_model_and_bad_settings_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    call = str(write_call(tmp_path / "call.mid", [60, 62]))
    assert run([call, "-o", str(tmp_path / "r.mid"), "--model", str(tmp_path / "none.onnx")]) == 2
    assert "not found" in capsys.readouterr().err
    assert run([call, "-o", str(tmp_path / "r.mid"), "--temperature", "50"]) == 2
    assert "temperature" in capsys.readouterr().err
