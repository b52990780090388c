"""Recordings in: tiny audio the tests synthesize (harmonic tones, written with the standard
library's ``wave``), transcribed by the real model through ``antiphon transcribe`` and
``antiphon corpus``; bad files skipped in one line; finished files never transcribed twice."""

from __future__ import annotations

import argparse
import io
import logging
import subprocess
import sys
import tempfile
import wave
from dataclasses import replace
from pathlib import Path

import mido
import numpy as np
import pytest
from antiphon.training import transcribe_command
from antiphon.training.audio import AudioError, read_audio, resample
from antiphon.training.corpus import build_corpus, iter_manifest, load_split
from antiphon.training.line_loudness import line_releases, line_velocities, power_db
from antiphon.training.transcription import (
    KEYS,
    LOWEST_PITCH,
    Transcriber,
    TranscriptionError,
    choose_octaves,
    decode_notes,
    one_line,
    tuned_settings,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

RATE_HZ = 44100
TUNE = [(60, 0.0), (62, 0.5), (64, 1.0), (65, 1.5), (67, 2.0), (69, 2.5), (71, 3.0), (72, 3.5)]


def tones(
    notes: list[tuple[int | tuple[int, ...], float]],
    length_s: float = 0.4,
    decay_per_s: float = 3.0,
) -> np.ndarray:
    """Harmonic tones (four partials, a quick attack, a decay): each (pitch or chord, onset)."""
    total = int((max(onset for _, onset in notes) + length_s + 0.3) * RATE_HZ)
    signal = np.zeros(total)
    t = np.arange(int(length_s * RATE_HZ)) / RATE_HZ
    envelope = np.minimum(1.0, t / 0.01) * np.exp(-decay_per_s * t)
    for pitches, onset_s in notes:
        for pitch in (pitches,) if isinstance(pitches, int) else pitches:
            hz = 440.0 * 2 ** ((pitch - 69) / 12)
            tone = sum(np.sin(2 * np.pi * hz * k * t) / k for k in range(1, 5))
            start = int(onset_s * RATE_HZ)
            signal[start : start + len(t)] += 0.2 * envelope * tone
    return signal


def write_wav(path: Path, signal: np.ndarray, channels: int = 2, width: int = 2) -> Path:
    """``signal`` as PCM WAV (the same on every channel) of ``width`` bytes a sample."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scale = 2 ** (8 * width - 1) - 1
    ints = np.round(np.clip(signal, -1, 1) * scale).astype("<i4")
    frames = np.repeat(ints[:, None], channels, axis=1).ravel()
    if width == 2:
        data = frames.astype("<i2").tobytes()
    elif width == 3:
        data = frames.astype("<i4").view(np.uint8).reshape(-1, 4)[:, :3].tobytes()
    else:
        data = frames.astype("<i4").tobytes()
    with wave.open(str(path), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(width)
        out.setframerate(RATE_HZ)
        out.writeframes(data)
    return path


def test_a_line_of_tones_is_heard_as_its_notes_in_time() -> None:
    signal = resample(tones([(p, t) for p, t in TUNE]).astype(np.float32), RATE_HZ, 22050)
    notes = Transcriber(tuned_settings(single_line=True)).transcribe_signal(signal)
    assert notes[:, 0].tolist() == [p for p, _ in TUNE]
    np.testing.assert_allclose(notes[:, 1], [t for _, t in TUNE], atol=0.05)
    assert np.all(notes[:-1, 2] <= notes[1:, 1])  # one note at a time


def test_a_lines_louder_notes_get_higher_velocities_at_any_recording_gain() -> None:
    levels = [0.25, 0.5, 1.0, 2.0] * 2  # 6 dB apart
    signal = np.zeros(len(tones(TUNE)))
    for level, note in zip(levels, TUNE, strict=True):
        tone = tones([note])
        signal[: len(tone)] += level * tone
    transcriber = Transcriber(tuned_settings(single_line=True))
    heard = []
    for gain in (1.0, 0.1):
        quieter = resample((gain * signal).astype(np.float32), RATE_HZ, 22050)
        heard.append(transcriber.transcribe_signal(quieter))
    assert heard[0][:, 0].tolist() == [p for p, _ in TUNE]
    velocities = heard[0][:, 3]
    assert np.all(np.diff(velocities[:4]) > 0) and np.all(np.diff(velocities[4:]) > 0)
    assert velocities[0] < velocities[3] - 20
    np.testing.assert_allclose(heard[1][:, 3], velocities, atol=1)


def test_a_lines_notes_end_where_their_sound_fades_not_at_the_next_onset() -> None:
    # Each tone decays 6 / s (52 dB a second) but sounds on until the next starts: the
    # note activation holds it all, the loudness has fallen 9 dB after about 0.17 s.
    signal = resample(tones(TUNE, 0.45, decay_per_s=6.0).astype(np.float32), RATE_HZ, 22050)
    notes = Transcriber(tuned_settings(single_line=True)).transcribe_signal(signal)
    assert notes[:, 0].tolist() == [p for p, _ in TUNE]
    lengths_s = notes[:, 2] - notes[:, 1]
    assert np.all((lengths_s > 0.12) & (lengths_s < 0.3))


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(-3, 3), st.integers(1, 12))
def test_line_loudness_ignores_the_recording_gain(seed: int, doublings: int, count: int) -> None:
    rng = np.random.default_rng(seed)
    signal = rng.standard_normal(44100) * np.repeat(rng.random(45) ** 2, 980)  # 45 levels
    onsets_s = np.sort(rng.random(count) * 1.9)
    notes = np.stack([np.full(count, 60.0), onsets_s, np.append(onsets_s[1:], 2.0)], axis=1)
    heard = []
    for gain in (1.0, 2.0**doublings):
        power = power_db(gain * signal)
        velocities = line_velocities(power, 22050, onsets_s)
        assert np.all((velocities >= 1) & (velocities <= 127))
        ends_s = line_releases(power, 22050, notes)
        assert np.all((ends_s > onsets_s) & (ends_s <= notes[:, 2]))
        heard.append((velocities, ends_s))
    np.testing.assert_allclose(heard[0][0], heard[1][0], atol=1)
    np.testing.assert_allclose(heard[0][1], heard[1][1], atol=0.006)  # a frame at most


def test_chords_are_heard_whole_on_a_piano_setting() -> None:
    chords = [((60, 64, 67), 0.0), ((62, 65, 69), 0.6), ((64, 67, 71), 1.2)]
    signal = resample(tones(chords, 0.5).astype(np.float32), RATE_HZ, 22050)
    notes = Transcriber(tuned_settings(single_line=False)).transcribe_signal(signal)
    for pitches, onset_s in chords:
        heard = {int(n[0]) for n in notes if abs(n[1] - onset_s) < 0.05}
        assert set(pitches) <= heard


def transcribe(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    transcribe_command.add_arguments(parser)
    return transcribe_command.run(parser.parse_args(argv))


def midi_notes(path: Path) -> list[tuple[int, float]]:
    """(pitch, onset in seconds) of a MIDI file's notes."""
    out, now = [], 0.0
    for message in mido.MidiFile(path):
        now += message.time
        if message.type == "note_on" and message.velocity > 0:
            out.append((message.note, now))
    return out


def test_a_folder_becomes_midi_files_and_bad_files_are_one_line_each(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "takes"
    write_wav(folder / "scale.wav", tones([(p, t) for p, t in TUNE]))
    write_wav(folder / "day2" / "arpeggio.wav", tones([(60, 0), (64, 0.5), (67, 1.0)]), 1, 3)
    write_wav(folder / "silence.wav", np.zeros(RATE_HZ))
    (folder / "broken.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk")
    (folder / "empty.wav").write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="antiphon.training.transcribe_command"):
        status = transcribe([str(folder), "-o", str(tmp_path / "midi"), "--single-line"])
    assert status == 0
    scale = midi_notes(tmp_path / "midi" / "takes" / "scale.mid")
    assert [p for p, _ in scale] == [p for p, _ in TUNE]
    np.testing.assert_allclose([t for _, t in scale], [t for _, t in TUNE], atol=0.05)
    arpeggio = midi_notes(tmp_path / "midi" / "takes" / "day2" / "arpeggio.mid")
    assert [p for p, _ in arpeggio] == [60, 64, 67]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sorted(Path(w.split(":")[0].split()[-1]).name for w in warnings) == [
        "broken.wav",
        "empty.wav",
        "silence.wav",
    ]
    assert all("\n" not in w for w in warnings)
    assert "no notes heard" in next(w for w in warnings if "silence" in w)
    assert capsys.readouterr().out.startswith("transcribe: 2 files (0 from the cache)")


def test_a_run_again_transcribes_only_what_it_had_not_finished(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, out = tmp_path / "takes", tmp_path / "midi"
    for i in range(2):
        write_wav(folder / f"take{i}.wav", tones([(60 + i, 0.0), (64 + i, 0.5)]))
    assert transcribe([str(folder), "-o", str(out)]) == 0
    first = (out / "takes" / "take0.mid").read_bytes()
    capsys.readouterr()
    # As if the first run had been stopped after these two: two more files, then a rerun.
    for i in range(2, 4):
        write_wav(folder / f"take{i}.wav", tones([(60 + i, 0.0), (64 + i, 0.5)]))
    (out / "takes" / "take0.mid").unlink()  # its MIDI lost too: the cache still has it
    assert transcribe([str(folder), "-o", str(out), "--jobs", "2"]) == 0  # two processes
    assert capsys.readouterr().out.startswith("transcribe: 4 files (2 from the cache)")
    assert (out / "takes" / "take0.mid").read_bytes() == first
    assert len(list((out / ".transcriptions").glob("*.npy"))) == 4


def test_one_file_can_become_one_named_midi_file(tmp_path: Path) -> None:
    wav = write_wav(tmp_path / "take.wav", tones([(67, 0.0), (69, 0.5)]))
    assert transcribe([str(wav), "-o", str(tmp_path / "mine.mid"), "--single-line"]) == 0
    assert [p for p, _ in midi_notes(tmp_path / "mine.mid")] == [67, 69]


def test_corpus_takes_recordings_through_the_same_transcription(tmp_path: Path) -> None:
    folder = tmp_path / "takes"
    for i in range(4):
        melody = [(p + i, t) for p, t in TUNE[:6]]
        write_wav(folder / f"take{i}.wav", tones(melody))
    (folder / "broken.wav").write_bytes(b"not audio")
    summary = build_corpus(tmp_path / "corpus", folders=[folder], rendering=None)
    assert summary.performances == 4 and len(summary.skipped) == 1
    rows = {row["id"]: row for row in iter_manifest(tmp_path / "corpus")}
    assert {row["source"] for row in rows.values()} == {"audio"}
    stored = {
        pid: notes
        for split in ("train", "validation", "test")
        for pid, notes in load_split(tmp_path / "corpus", split)
    }
    for i in range(4):
        notes = stored[f"takes/take{i}"]
        assert notes[:, 0].tolist() == [p + i for p, _ in TUNE[:6]]
        assert notes[0, 1] == 0.0
    assert len(list((tmp_path / "corpus" / "transcriptions").glob("*.npy"))) == 4


def test_formats_beyond_wav_need_the_audio_extra_said_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "take.flac").write_bytes(b"fLaC")
    # soundfile may be installed here: the child process is made to lack it, as a user
    # without the extra would (None in sys.modules makes its import fail).
    code = (
        "import sys; sys.modules['soundfile'] = None; from antiphon.daemon.cli import main; "
        f"sys.exit(main(['transcribe', {str(tmp_path / 'take.flac')!r}, '-o', "
        f"{str(tmp_path / 'out')!r}]))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "pip install 'antiphon[audio]'" in done.stderr


def test_flac_is_read_when_the_audio_extra_is_installed(tmp_path: Path) -> None:
    soundfile = pytest.importorskip("soundfile", reason="the 'audio' extra is not installed")
    signal = tones([(p, t) for p, t in TUNE[:4]])
    soundfile.write(str(tmp_path / "take.flac"), signal, RATE_HZ)
    read = read_audio(tmp_path / "take.flac", RATE_HZ)
    np.testing.assert_allclose(read, signal, atol=1e-4)


def test_missing_and_unknown_inputs_are_one_line(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "antiphon.daemon.cli", "transcribe"]
    missing = subprocess.run(
        [*command, str(tmp_path / "nowhere.wav"), "-o", str(tmp_path / "out")],
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1
    assert "no such file or folder" in missing.stderr
    (tmp_path / "notes.txt").write_text("words")
    unknown = subprocess.run(
        [*command, str(tmp_path / "notes.txt"), "-o", str(tmp_path / "out")],
        capture_output=True,
        text=True,
    )
    assert unknown.returncode == 1
    assert "not an audio file of a known kind" in unknown.stderr
    assert "Traceback" not in unknown.stderr
    with pytest.raises(AudioError):
        read_audio(tmp_path / "notes.txt", 22050)


@settings(max_examples=25, deadline=None)
@given(
    arrays(np.float64, st.integers(1, 400), elements=st.floats(-1, 1)),
    st.sampled_from([1, 2, 3, 4]),
    st.integers(1, 3),
)
def test_wav_of_any_width_and_channels_reads_back_as_written(
    signal: np.ndarray, width: int, channels: int
) -> None:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(width)
        out.setframerate(22050)
        if width == 1:
            ints = np.round(signal * 127).astype(np.int16) + 128
            out.writeframes(np.repeat(ints, channels).astype(np.uint8).tobytes())
        else:
            scale = 2 ** (8 * width - 1) - 1
            ints = np.round(signal * scale).astype("<i8")
            raw = np.repeat(ints, channels).astype("<i4").view(np.uint8).reshape(-1, 4)
            out.writeframes(raw[:, :width].tobytes() if width < 4 else raw.tobytes())
    with tempfile.TemporaryDirectory() as folder:  # hypothesis runs outside tmp_path
        path = Path(folder) / "take.wav"
        path.write_bytes(buffer.getvalue())
        read = read_audio(path, 22050)
    # Within a step of the width, and of float32's own rounding (what read_audio returns: at
    # width 4 a step is finer than a float32 near 1).
    step = 1.5 / 2 ** (8 * width - 1)
    np.testing.assert_allclose(read, signal, atol=step + float(np.finfo(np.float32).eps))


@settings(max_examples=20, deadline=None)
@given(st.sampled_from([8000, 16000, 22050, 44100, 48000, 96000]), st.floats(0.01, 3.0))
def test_resampling_keeps_a_tone_and_the_length(from_hz: int, seconds: float) -> None:
    t = np.arange(int(seconds * from_hz)) / from_hz
    out = resample(np.sin(2 * np.pi * 330.0 * t).astype(np.float32), from_hz, 22050)
    assert len(out) == int(np.ceil(len(t) * 22050 / from_hz))
    inner = slice(len(out) // 10 + 100, len(out) - len(out) // 10 - 100)
    expected = np.sin(2 * np.pi * 330.0 * np.arange(len(out)) / 22050)
    if inner.start < inner.stop:
        np.testing.assert_allclose(out[inner], expected[inner], atol=0.02)


@settings(max_examples=30, deadline=None)
@given(
    st.integers(3, 200),
    st.integers(0, 2**31 - 1),
    st.booleans(),
)
def test_any_activations_decode_to_playable_notes(frames: int, seed: int, single: bool) -> None:
    rng = np.random.default_rng(seed)
    note = rng.random((frames, KEYS)) ** 3
    onset = rng.random((frames, KEYS)) ** 3
    times_s = np.arange(frames) * 256 / 22050
    chosen = tuned_settings(single)
    notes = decode_notes(note, onset, times_s, chosen)
    assert notes.dtype == np.float32 and notes.shape[1] == 4
    assert np.all((notes[:, 0] >= LOWEST_PITCH) & (notes[:, 0] < LOWEST_PITCH + KEYS))
    assert np.all(notes[:, 2] > notes[:, 1]) and np.all(notes[:, 1] >= 0)
    assert np.all(np.diff(notes[:, 1]) >= 0)
    assert np.all((notes[:, 3] >= 1) & (notes[:, 3] <= 127))
    if single:
        assert np.all(notes[:-1, 2] <= notes[1:, 1])
        every = decode_notes(note, onset, times_s, replace(chosen, single_line=False))
        heard = {(n[0], n[1]) for n in every}  # a line's note is one of them, or its octave
        assert all((n[0], n[1]) in heard or (n[0] - 12, n[1]) in heard for n in notes)
        assert len(one_line(every)) == len(notes)


def test_silence_is_no_notes_said_plainly() -> None:
    with pytest.raises(TranscriptionError, match="no notes heard"):
        Transcriber().transcribe_signal(np.zeros(22050, np.float32))


def test_a_line_takes_the_octave_that_fits_both_the_sound_and_its_neighbours() -> None:
    pitches = np.array([64.0, 65.0, 55.0, 69.0, 71.0])  # the 55 was heard an octave low
    onsets = np.arange(5) * 0.25
    offsets = onsets + 0.24
    ratios = np.array([0.1, 0.1, 0.45, 0.1, 0.1])  # the octave above is active over it
    assert choose_octaves(pitches, onsets, offsets, ratios).tolist() == [0, 0, 1, 0, 0]
    unsure = np.array([0.1, 0.1, 0.1, 0.1, 0.1])  # no sign of the octave above: a real leap
    assert choose_octaves(pitches, onsets, offsets, unsure).tolist() == [0, 0, 0, 0, 0]
    onsets_apart = np.array([0.0, 0.25, 1.5, 2.75, 3.0])  # breaths either side of it:
    offsets_apart = onsets_apart + 0.24  # a phrase of its own, so no leap to mend
    ratios_apart = np.array([0.1, 0.1, 0.4, 0.1, 0.1])
    assert choose_octaves(pitches, onsets_apart, offsets_apart, ratios_apart)[2] == 0


def test_corpus_skips_a_flac_without_the_audio_extra_and_keeps_the_wav(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As for a user without the extra: None in sys.modules makes soundfile's import fail.
    monkeypatch.setitem(sys.modules, "soundfile", None)
    write_wav(tmp_path / "takes" / "take.wav", tones([(60, 0.0), (64, 0.5)]))
    (tmp_path / "takes" / "take.flac").write_bytes(b"fLaC")
    summary = build_corpus(tmp_path / "corpus", folders=[tmp_path / "takes"])
    assert summary.performances == 1
    (skip,) = summary.skipped
    assert skip["path"].endswith("take.flac") and "pip install 'antiphon[audio]'" in skip["reason"]
