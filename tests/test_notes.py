"""Note bookkeeping: every note started is ended, by stop, by max length or by release_all."""

from __future__ import annotations

import mido
from antiphon.daemon.midi.notes import ALL_NOTES_OFF_CC, NotesOnTheWire, SoundingNotes
from hypothesis import given
from hypothesis import strategies as st


class Synth:
    """What a synthesiser would have sounding after the messages; complains about nonsense."""

    def __init__(self) -> None:
        self.sounding: set[tuple[int, int]] = set()

    def play(self, messages: list[mido.Message]) -> None:
        for m in messages:
            key = (m.channel, getattr(m, "note", -1))
            if m.type == "note_on":
                assert key not in self.sounding, f"{key} struck while sounding"
                self.sounding.add(key)
            elif m.type == "note_off":
                assert key in self.sounding, f"note-off for silent {key}"
                self.sounding.discard(key)
            elif m.type == "control_change" and m.control == ALL_NOTES_OFF_CC:
                self.sounding = {k for k in self.sounding if k[0] != m.channel}


def test_start_and_stop_pair_up() -> None:
    notes = SoundingNotes()
    assert [m.type for m in notes.start(0, 60, 90, 1.0)] == ["note_on"]
    assert (0, 60) in notes and len(notes) == 1
    assert [(m.type, m.note) for m in notes.stop(0, 60)] == [("note_off", 60)]
    assert notes.stop(0, 60) == []
    assert len(notes) == 0


def test_striking_a_sounding_note_ends_it_first() -> None:
    notes = SoundingNotes()
    notes.start(2, 64, 80, 0.0)
    assert [m.type for m in notes.start(2, 64, 100, 0.5)] == ["note_off", "note_on"]
    assert notes.oldest_start_s() == 0.5


def test_velocity_is_kept_in_midi_range() -> None:
    notes = SoundingNotes()
    assert notes.start(0, 60, 0, 0.0)[-1].velocity == 1
    assert notes.start(0, 61, 300, 0.0)[-1].velocity == 127


def test_notes_older_than_the_limit_are_expired() -> None:
    notes = SoundingNotes()
    notes.start(0, 60, 80, 0.0)
    notes.start(0, 62, 80, 1.0)
    notes.start(1, 60, 80, 2.0)
    assert notes.expired(3.0, 2.0) == [(0, 60), (0, 62)]
    assert notes.expired(2.9, 2.0) == [(0, 60)]
    assert notes.oldest_start_s() == 0.0


def test_release_all_ends_every_note_and_sends_all_notes_off_per_channel() -> None:
    notes = SoundingNotes()
    notes.start(0, 60, 80, 0.0)
    notes.start(3, 48, 80, 0.0)
    notes.start(5, 70, 80, 0.0)
    notes.stop(5, 70)
    messages = notes.release_all()
    offs = {(m.channel, m.note) for m in messages if m.type == "note_off"}
    ccs = [(m.channel, m.control) for m in messages if m.type == "control_change"]
    assert offs == {(0, 60), (3, 48)}
    assert ccs == [(0, ALL_NOTES_OFF_CC), (3, ALL_NOTES_OFF_CC), (5, ALL_NOTES_OFF_CC)]
    assert messages[-1].type == "control_change"  # note-offs first, for synths without CC123
    assert len(notes) == 0
    assert all(m.type == "control_change" for m in notes.release_all())


operations = st.lists(
    st.tuples(
        st.sampled_from(["start", "stop", "expire"]),
        st.integers(0, 3),
        st.integers(58, 62),
        st.floats(0, 1),
    ),
    max_size=60,
)


@given(operations)
def test_any_sequence_leaves_nothing_sounding_after_release_all(ops: list) -> None:
    notes, synth, now = SoundingNotes(), Synth(), 0.0
    for op, channel, pitch, step in ops:
        now += step
        if op == "start":
            synth.play(notes.start(channel, pitch, 64, now))
        elif op == "stop":
            synth.play(notes.stop(channel, pitch))
        else:
            for key in notes.expired(now, 0.5):
                synth.play(notes.stop(*key))
        assert synth.sounding == set(notes)
    synth.play(notes.release_all())
    assert synth.sounding == set()


def test_notes_on_the_wire_are_what_a_returning_device_must_end() -> None:
    wire = NotesOnTheWire()
    for data in ([0x90, 60, 90], [0x91, 62, 90], [0x90, 64, 90], [0x80, 64, 0], [0x90, 65, 0]):
        wire.sent(data)
    wire.sent([0x92, 70, 90])
    wire.sent([0xB2, 123, 0])  # All Notes Off on channel 3 ended its note
    assert [m.bytes() for m in wire.release()] == [
        [0x80, 60, 0],
        [0x81, 62, 0],
        [0xB0, 123, 0],
        [0xB1, 123, 0],
    ]
    assert wire.release() == []  # ended once
