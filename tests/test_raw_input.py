"""Bytes from the MIDI backend to messages: garbage dropped and counted, swallowed messages
taken back out of a sysex that had no end. Pure: no ports."""

from __future__ import annotations

import mido
from antiphon.daemon.midi.raw_input import RawInput, split_stream
from hypothesis import given
from hypothesis import strategies as st

NOTE_ON = [0x90, 60, 64]
NOTE_OFF = [0x80, 60, 0]

valid_messages = st.one_of(
    st.builds(
        lambda status, channel, a, b: [status | channel, a, b],
        st.sampled_from([0x80, 0x90, 0xA0, 0xB0, 0xE0]),
        st.integers(0, 15),
        st.integers(0, 127),
        st.integers(0, 127),
    ),
    st.builds(
        lambda status, channel, a: [status | channel, a],
        st.sampled_from([0xC0, 0xD0]),
        st.integers(0, 15),
        st.integers(0, 127),
    ),
)


def test_a_whole_message_is_read_as_itself() -> None:
    assert RawInput().read(NOTE_ON) == [mido.Message("note_on", note=60, velocity=64)]


def test_the_guards_lone_sysex_end_is_nothing_and_counts_nothing() -> None:
    raw = RawInput()
    assert raw.read([0xF7]) == []
    assert raw.counts.malformed == 0


def test_a_whole_sysex_is_not_heard_and_not_malformed() -> None:
    raw = RawInput()
    assert raw.read([0xF0, 0x7E, 0x01, 0xF8, 0x02, 0xF7]) == []
    assert (raw.counts.sysex, raw.counts.malformed, raw.counts.swallowed_sysex) == (1, 0, 0)


def test_messages_swallowed_by_an_unended_sysex_come_back_in_order() -> None:
    # What rtmidi's JACK backend delivers once an F7 ends a fragment: the fragment, then
    # every event that came after it, glued together.
    glued = [0xF0, 0x01, 0x02, *NOTE_ON, 0xF8, 0x3C, 0x40, *NOTE_OFF, 0xF7]
    raw = RawInput()
    assert [m.bytes() for m in raw.read(glued)] == [NOTE_ON, NOTE_OFF]
    assert raw.counts.swallowed_sysex == 1
    assert raw.counts.recovered == 2
    assert raw.counts.malformed == 3  # the fragment itself, and each stray data byte (3C, 40)


def test_midi_clock_and_transport_on_their_own_are_heard_for_the_beat() -> None:
    raw = RawInput()
    heard = [m.type for data in ([0xF8], [0xFA], [0xFB], [0xFC], [0xFE]) for m in raw.read(data)]
    assert heard == ["clock", "start", "continue", "stop"]  # active sensing is not
    assert [m.bytes() for m in raw.read([0xF2, 0x10, 0x02])] == [[0xF2, 0x10, 0x02]]  # song pos
    assert raw.counts.malformed == 0  # active sensing is no error, only not heard


def test_real_time_bytes_inside_a_message_do_not_break_it() -> None:
    assert split_stream([0x90, 0xF8, 60, 0xFE, 64]) == ([NOTE_ON], 0)
    raw = RawInput()
    assert [m.bytes() for m in raw.read([0x90, 60, 0xF8, 64])] == [NOTE_ON]
    assert raw.counts.malformed == 0


def test_an_event_cut_short_is_counted_and_dropped() -> None:
    raw = RawInput()
    assert raw.read([0xE0]) == []  # mido itself raises IndexError on this one
    assert raw.read([0x90, 60]) == []
    assert raw.read([60, 64]) == []
    assert raw.counts.malformed == 4  # the two stray data bytes count one each


def test_a_status_byte_cuts_short_the_message_before_it() -> None:
    assert split_stream([0x90, 60, *NOTE_OFF]) == ([NOTE_OFF], 1)


def test_undefined_status_bytes_and_stray_data_are_broken_pieces() -> None:
    assert split_stream([0xF4, 0x10, 0xF5]) == ([], 3)


@given(st.lists(st.integers(0, 255), max_size=64))
def test_any_bytes_give_messages_or_counts_never_an_error(data: list[int]) -> None:
    raw = RawInput()
    for message in raw.read(data):
        assert message.type != "sysex"


@given(
    st.lists(valid_messages, max_size=20),
    st.lists(st.lists(st.integers(0xF8, 0xFF), max_size=4), max_size=20),
)
def test_every_whole_message_a_fragment_swallowed_comes_back(
    messages: list[list[int]], garbage: list[list[int]]
) -> None:
    stream = [0xF0, 0x01]
    for message in messages:
        stream += message
        if garbage:
            stream += garbage.pop()  # real-time bytes: allowed anywhere
    stream.append(0xF7)
    raw = RawInput()
    heard = [m.bytes() for m in raw.read(stream)]
    if messages:
        assert heard == [mido.Message.from_bytes(m).bytes() for m in messages]
        assert raw.counts.recovered == len(messages)
