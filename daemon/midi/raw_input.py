"""What the MIDI backend delivers, as bytes, turned into the messages a player meant.

python-rtmidi's JACK backend hands the input callback one JACK event's bytes at a time, except
after an event that starts a system exclusive message (``F0``) without ending it (``F7``):
from then on it appends every later event to that sysex and delivers nothing until an event
ends in ``F7``. One unterminated fragment on the input (a glitching cable, a device switched
on mid-dump) would leave the daemon deaf. The MIDI port module ends such a sysex itself
(:class:`antiphon.daemon.midi.ports.SysexGuard` sends a lone ``F7`` to the daemon's own input
a few times a second), and what arrives then, the fragment with every message it swallowed,
is split back into those messages here.

Pure: bytes in, :class:`mido.Message` objects and counts out; no ports, no clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import mido

SYSEX_START = 0xF0
SYSEX_END = 0xF7
REALTIME_FIRST = 0xF8  # F8-FF: one byte, allowed anywhere, even inside another message
# The real-time messages the beat is taken from: clock, start, continue, stop. Heard when they
# come as events of their own, as MIDI clock does; one inside another event is left out.
CLOCK_BYTES = frozenset((0xF8, 0xFA, 0xFB, 0xFC))
# Bytes a message has, by status (channel messages by their high nibble).
CHANNEL_LENGTH = {0x80: 3, 0x90: 3, 0xA0: 3, 0xB0: 3, 0xC0: 2, 0xD0: 2, 0xE0: 3}
COMMON_LENGTH = {0xF1: 2, 0xF2: 3, 0xF3: 2, 0xF6: 1}  # F4, F5: undefined


def message_length(status: int) -> int | None:
    """Bytes in a message that starts with ``status`` (None: undefined or not a status)."""
    if 0x80 <= status < 0xF0:
        return CHANNEL_LENGTH[status & 0xF0]
    return COMMON_LENGTH.get(status)


def is_whole_message(data: Sequence[int]) -> bool:
    """Whether ``data`` is exactly one non-sysex message: a defined status byte, then as many
    data bytes as it takes. (mido raises IndexError, not ValueError, on some that are not.)"""
    length = message_length(data[0]) if data else None
    return length == len(data) and all(byte < 0x80 for byte in data[1:])


def split_stream(data: Sequence[int]) -> tuple[list[list[int]], int]:
    """The complete non-sysex messages in a byte stream, and how many broken pieces it held.

    Follows the MIDI wire rules: a status byte starts a message and cuts short any unfinished
    one (a broken piece); real-time bytes (``F8``-``FF``) stand alone wherever they are and are
    left out; data bytes with no status before them, undefined status bytes and sysex
    contents are broken pieces, or skipped. No running status: JACK events are whole messages.
    """
    messages: list[list[int]] = []  # each one passes is_whole_message
    broken = 0
    current: list[int] = []
    wanted = 0  # bytes the current message still needs; 0: none open
    in_sysex = False
    for byte in data:
        if byte >= REALTIME_FIRST:
            continue
        if byte < 0x80:
            if wanted:
                current.append(byte)
                wanted -= 1
                if not wanted:
                    messages.append(current)
                    current = []
            elif not in_sysex:
                broken += 1  # a stray data byte
            continue
        if wanted or (in_sysex and byte != SYSEX_END):
            broken += 1  # a message (or a sysex) cut short by this status byte
        current, wanted, in_sysex = [], 0, False
        if byte == SYSEX_START:
            in_sysex = True
        elif byte == SYSEX_END:
            continue
        elif (length := message_length(byte)) is None:
            broken += 1
        elif length == 1:
            messages.append([byte])
        else:
            current, wanted = [byte], length - 1
    if wanted or in_sysex:
        broken += 1
    return messages, broken


@dataclass
class RawInputCounts:
    """What the input made of the bytes it got, since it opened."""

    malformed: int = 0  # events that were no MIDI message, dropped
    sysex: int = 0  # whole sysex messages, not heard
    swallowed_sysex: int = 0  # sysex fragments that had swallowed later messages
    recovered: int = 0  # messages taken back out of those fragments, heard late


class RawInput:
    """One input's bytes to messages: :meth:`read` per event the backend delivers.

    Used on the MIDI thread only; :attr:`counts` may be read from any thread.
    """

    def __init__(self) -> None:
        self.counts = RawInputCounts()

    def read(self, data: Sequence[int]) -> list[mido.Message]:
        """The messages in one delivered event (usually one; none for the guard's ``F7``)."""
        if not data:
            self.counts.malformed += 1
            return []
        if data[0] == SYSEX_START:
            return self._sysex(data)
        if len(data) == 1 and data[0] == SYSEX_END:
            return []  # the guard's lone F7, with no sysex open: nothing happened
        if len(data) == 1 and data[0] in CLOCK_BYTES:
            return [mido.Message.from_bytes(data)]
        if is_whole_message(data):
            return [mido.Message.from_bytes(data)]
        # Not one message: whatever whole messages it holds (a real-time byte inside one,
        # two glued together by a careless client) are kept, the rest counted.
        pieces, broken = split_stream(data)
        self.counts.malformed += broken
        return [mido.Message.from_bytes(piece) for piece in pieces]

    def _sysex(self, data: Sequence[int]) -> list[mido.Message]:
        if all(byte < 0x80 or byte >= REALTIME_FIRST for byte in data[1:-1]):
            self.counts.sysex += 1  # a sysex with nothing inside it: the daemon ignores sysex
            return []
        self.counts.swallowed_sysex += 1
        pieces, broken = split_stream(data)
        self.counts.malformed += broken
        messages = [mido.Message.from_bytes(piece) for piece in pieces]
        self.counts.recovered += len(messages)
        return messages
