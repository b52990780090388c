"""Small MIDI files the tests write themselves."""

from __future__ import annotations

from pathlib import Path

import mido


def write_midi(path: Path, notes: list[tuple[int, float, float]], bpm: float | None = None) -> None:
    """Notes (pitch, onset_s, offset_s), velocity 80, as a one-track file at 120 bpm (with no
    tempo meta event), or at ``bpm`` (said by one); a note that ends where another starts is
    let go first."""
    midi = mido.MidiFile(ticks_per_beat=480)  # 120 bpm: 960 ticks a second
    track = mido.MidiTrack()
    ticks_per_s = 960.0
    if bpm is not None:
        track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm), time=0))
        ticks_per_s = 480.0 * bpm / 60.0
    events = [(on, "note_on", p) for p, on, _ in notes] + [
        (off, "note_off", p) for p, _, off in notes
    ]
    last_tick = 0
    for time_s, kind, pitch in sorted(events, key=lambda e: (e[0], e[1] == "note_on")):
        tick = round(time_s * ticks_per_s)
        track.append(mido.Message(kind, note=pitch, velocity=80, time=tick - last_tick))
        last_tick = tick
    midi.tracks.append(track)
    midi.save(path)


def write_eighths(path: Path, pitches: list[int]) -> None:
    """A call of eighth notes at 120 bpm, each held to the next."""
    write_midi(path, [(p, 0.25 * i, 0.25 * (i + 1)) for i, p in enumerate(pitches)])
