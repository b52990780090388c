"""The event codec: round trips, live/offline agreement, robustness to any token stream."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import mido
import numpy as np
import pytest
from antiphon.daemon.codec import (
    PEDAL,
    CodecConfig,
    CodecError,
    KeyEvent,
    Note,
    StreamEncoder,
    TokenKind,
    TokenReader,
    Vocabulary,
    decode_tokens,
    encode_notes,
    key_events_to_notes,
    notes_to_events,
)
from hypothesis import example, given, settings
from hypothesis import strategies as st

VOCAB = Vocabulary(CodecConfig())
VELOCITY_TOLERANCE = 127 / CodecConfig().velocity_bins / 2 + 1


def monophonic_per_pitch(notes: list[Note]) -> list[Note]:
    """Drop notes that overlap an earlier note of the same pitch, or start with it (the codec's
    one-voice-per-key rule is tested separately)."""
    kept: list[Note] = []
    last: dict[int, Note] = {}
    for n in sorted(notes, key=lambda n: (n.onset_s, n.pitch)):
        previous = last.get(n.pitch)
        if previous is None or (n.onset_s >= previous.offset_s and n.onset_s > previous.onset_s):
            kept.append(n)
            last[n.pitch] = n
    return kept


note_lists = st.lists(
    st.builds(
        lambda pitch, onset, duration, velocity: Note(pitch, onset, onset + duration, velocity),
        st.integers(0, 127),
        st.floats(0, 30, allow_nan=False),
        st.floats(0, 6, allow_nan=False),
        st.integers(1, 127),
    ),
    max_size=60,
).map(monophonic_per_pitch)


def event_tolerances(notes: list[Note]) -> dict[tuple[float, int, int], float]:
    """Allowed decoding error of each note start/end: the grid step at the time left to cover,
    which is the gap to the previous event give or take that event's own error.

    Events closer than the finest time step share one decoded time, so they may carry the
    previous event's error.
    """
    tolerances: dict[tuple[float, int, int], float] = {}
    previous, previous_tolerance = 0.0, 0.0
    for event in notes_to_events(notes):
        key = (event.time_s, event.pitch, event.velocity > 0)
        gap = event.time_s - previous
        low, high = max(gap - previous_tolerance, 0.0), gap + previous_tolerance
        gap_tolerance = max(VOCAB.time_tolerance_s(low), VOCAB.time_tolerance_s(high))
        if low < VOCAB.time_shifts_s[0]:
            gap_tolerance = max(gap_tolerance, previous_tolerance)
        previous_tolerance = gap_tolerance
        # Identical events (a pitch struck twice at one instant) share a key: allow the larger.
        tolerances[key] = max(tolerances.get(key, 0.0), gap_tolerance)
        previous = event.time_s
    return tolerances


def assert_round_trip(notes: list[Note], decoded: list[Note]) -> None:
    assert len(decoded) == len(notes)
    tolerances = event_tolerances(notes)
    by_pitch: dict[int, list[Note]] = defaultdict(list)
    for n in decoded:
        by_pitch[n.pitch].append(n)
    for pitch, originals in _group(notes).items():
        for original, back in zip(originals, by_pitch[pitch], strict=True):
            onset_tol = tolerances[(original.onset_s, pitch, True)]
            offset_tol = tolerances.get((original.offset_s, pitch, False), onset_tol)
            assert abs(back.onset_s - original.onset_s) <= onset_tol + 1e-9
            assert abs(back.offset_s - original.offset_s) <= offset_tol + 1e-9
            assert abs(back.velocity - original.velocity) <= VELOCITY_TOLERANCE


def _group(notes: list[Note]) -> dict[int, list[Note]]:
    grouped: dict[int, list[Note]] = defaultdict(list)
    for n in sorted(notes, key=lambda n: n.onset_s):
        grouped[n.pitch].append(n)
    return grouped


@settings(max_examples=300, deadline=None)
@given(note_lists)
def test_round_trip_keeps_pitch_onset_offset_and_velocity(notes: list[Note]) -> None:
    assert_round_trip(notes, decode_tokens(encode_notes(notes, VOCAB), VOCAB))


@settings(max_examples=100, deadline=None)
@given(st.floats(0, 3600, allow_nan=False))
@example(3.91015625)  # 4.01 s from the note-off: one longest shift and a rest of 10 ms
def test_long_silences_do_not_accumulate_error(gap_s: float) -> None:
    notes = [Note(60, 0.0, 0.1, 80), Note(62, gap_s + 0.2, gap_s + 0.3, 80)]
    decoded = decode_tokens(encode_notes(notes, VOCAB), VOCAB)
    assert abs(decoded[1].onset_s - notes[1].onset_s) <= VOCAB.time_tolerance_s(gap_s + 0.1)


def test_restrike_of_a_sounding_pitch_ends_the_old_note() -> None:
    notes = [Note(60, 0.0, 2.0, 80), Note(60, 1.0, 1.5, 90)]
    decoded = decode_tokens(encode_notes(notes, VOCAB), VOCAB)
    times = [t for n in decoded for t in (n.onset_s, n.offset_s)]
    assert times == pytest.approx([0.0, 1.0, 1.0, 1.5], abs=0.05)


key_streams = st.lists(
    st.tuples(
        st.floats(0.001, 2.0, allow_nan=False),  # time since the previous action
        st.integers(-1, 127),  # pitch, or -1 for the pedal
        st.integers(0, 127),  # velocity (0 = key up) or CC64 value
    ),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(key_streams)
def test_live_encoding_matches_file_encoding(actions: list[tuple[float, int, int]]) -> None:
    """The daemon's per-message tokens equal training's whole-file tokens for the same playing."""
    events, time_s = [], 0.0
    for delta, pitch, value in actions:
        time_s += delta
        events.append(KeyEvent(time_s, pitch, value))
    # The player lets go of every key, then of the pedal, so the piece ends in silence.
    for pitch in sorted({p for _, p, _ in actions if p != PEDAL}):
        time_s += 0.01
        events.append(KeyEvent(time_s, pitch, 0))
    events.append(KeyEvent(time_s + 0.01, PEDAL, 0))
    live = StreamEncoder(VOCAB)
    tokens: list[int] = []
    for e in events:
        if e.pitch == PEDAL:
            tokens += live.sustain(e.velocity, e.time_s)
        elif e.velocity > 0:
            tokens += live.note_on(e.pitch, e.velocity, e.time_s)
        else:
            tokens += live.note_off(e.pitch, e.time_s)
    assert live.all_notes_off(time_s + 1.0) == []
    offline = encode_notes(key_events_to_notes(events), VOCAB)
    assert tokens == offline.tolist()


def test_sustain_pedal_holds_released_keys_until_it_lifts() -> None:
    events = [
        KeyEvent(0.0, PEDAL, 127),
        KeyEvent(0.1, 60, 70),
        KeyEvent(0.2, 60, 0),  # released under the pedal: keeps sounding
        KeyEvent(0.3, 64, 70),
        KeyEvent(1.0, PEDAL, 0),  # 60 ends here; 64 is still held
        KeyEvent(1.5, 64, 0),
    ]
    notes = key_events_to_notes(events)
    assert [(n.pitch, n.onset_s, n.offset_s) for n in notes] == [(60, 0.1, 1.0), (64, 0.3, 1.5)]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, VOCAB.size - 1), max_size=300))
def test_any_token_stream_decodes_to_balanced_notes(tokens: list[int]) -> None:
    """Whatever a sampling model emits, every note that starts also ends, in time order."""
    reader = TokenReader(VOCAB)
    sounding: set[int] = set()
    last_time = 0.0
    events = [e for t in tokens for e in reader.read(t)] + reader.release_all()
    for e in events:
        assert e.time_s >= last_time
        last_time = e.time_s
        if e.velocity > 0:
            assert e.pitch not in sounding
            sounding.add(e.pitch)
        else:
            assert e.pitch in sounding
            sounding.remove(e.pitch)
    assert not sounding


def test_vocabulary_layout_is_contiguous_and_invertible() -> None:
    kinds = [VOCAB.kind(t) for t in range(VOCAB.size)]
    assert kinds.count(TokenKind.NOTE_ON) == 128
    assert kinds.count(TokenKind.NOTE_OFF) == 128
    assert kinds.count(TokenKind.TIME_SHIFT) == CodecConfig().time_shift_bins
    assert kinds.count(TokenKind.VELOCITY) == CodecConfig().velocity_bins
    assert VOCAB.value(VOCAB.time_shift(5)) == 5
    assert VOCAB.time_shifts_s[0] == pytest.approx(0.01)
    assert VOCAB.time_shifts_s[-1] == pytest.approx(4.0)
    with pytest.raises(CodecError):
        VOCAB.kind(VOCAB.size)


@given(st.integers(1, 127))
def test_velocity_bins_keep_velocity_within_half_a_bin(velocity: int) -> None:
    back = VOCAB.velocity_of_bin(VOCAB.velocity_bin(velocity))
    assert abs(back - velocity) <= VELOCITY_TOLERANCE


def test_codec_settings_travel_as_json() -> None:
    config = CodecConfig(time_shift_bins=64, velocity_bins=16, time_shift_max_s=3.0)
    assert CodecConfig.from_json(config.to_json()) == config
    assert Vocabulary(config).size == 256 + 64 + 16
    with pytest.raises(CodecError):
        CodecConfig.from_json('{"time_shift_bins": 1}')
    with pytest.raises(CodecError):
        CodecConfig.from_json("not json")


def write_performance_file(path: Path, seed: int) -> list[KeyEvent]:
    """A human-like performance as a real MIDI file: chords, a melody, pedal, loose timing."""
    rng = np.random.default_rng(seed)
    events: list[KeyEvent] = []
    t = 0.0
    for _bar in range(12):
        events.append(KeyEvent(t, PEDAL, 127))
        root = int(rng.integers(48, 60))
        for offset in (0, 4, 7):
            start = t + float(rng.normal(0.0, 0.01)) + 0.02
            events.append(KeyEvent(max(start, 0.0), root + offset, int(rng.integers(40, 90))))
            events.append(KeyEvent(start + 0.3, root + offset, 0))
        for step in range(4):
            start = t + 0.05 + step * 0.25 + float(rng.normal(0, 0.015))
            pitch = root + 12 + int(rng.choice([0, 2, 4, 5, 7, 9, 11]))
            events.append(KeyEvent(start, pitch, int(rng.integers(50, 110))))
            events.append(KeyEvent(start + float(rng.uniform(0.1, 0.4)), pitch, 0))
        t += 1.1 + float(rng.normal(0, 0.05))
        events.append(KeyEvent(t - 0.05, PEDAL, 0))
    events.sort(key=lambda e: e.time_s)
    track = mido.MidiTrack()
    tempo = 500_000
    track.append(mido.MetaMessage("set_tempo", tempo=tempo))
    previous_tick = 0
    for e in events:
        tick = round(mido.second2tick(e.time_s, 480, tempo))
        delta, previous_tick = tick - previous_tick, tick
        if e.pitch == PEDAL:
            track.append(mido.Message("control_change", control=64, value=e.velocity, time=delta))
        else:
            kind = "note_on" if e.velocity else "note_off"
            track.append(mido.Message(kind, note=e.pitch, velocity=e.velocity, time=delta))
    mido.MidiFile(ticks_per_beat=480, tracks=[track]).save(path)
    return events


def test_round_trip_over_real_midi_files(tmp_path: Path) -> None:
    from antiphon.training.corpus import Source, parse_source

    for seed in range(5):
        path = tmp_path / f"performance{seed}.mid"
        write_performance_file(path, seed)
        performance = parse_source(Source(path.stem, path.stem, "folder", str(path)))
        notes = [Note(int(p), float(a), float(b), int(v)) for p, a, b, v in performance.notes]
        assert len(notes) > 50
        assert_round_trip(notes, decode_tokens(encode_notes(notes, VOCAB), VOCAB))
