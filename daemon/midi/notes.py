"""Bookkeeping of the notes Antiphon has sounding, so that none is ever left hanging.

Pure: methods take times and return the MIDI messages to send; nothing here talks to a port.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import mido

ALL_NOTES_OFF_CC = 123
ALL_SOUND_OFF_CC = 120


class SoundingNotes:
    """Notes sounding on an output, per (channel, pitch), with the time each started.

    Channels are 0-15 (mido's numbering). Every channel that ever sounded a note is
    remembered, so :meth:`release_all` can also send All Notes Off there.
    """

    def __init__(self) -> None:
        self._started_s: dict[tuple[int, int], float] = {}
        self._channels_used: set[int] = set()

    def __len__(self) -> int:
        return len(self._started_s)

    def __contains__(self, key: object) -> bool:
        return key in self._started_s

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(list(self._started_s))

    @property
    def channels_used(self) -> frozenset[int]:
        return frozenset(self._channels_used)

    def pitches(self, channel: int) -> list[int]:
        """The pitches sounding on ``channel``, lowest first."""
        return sorted(p for c, p in self._started_s if c == channel)

    def start(self, channel: int, pitch: int, velocity: int, time_s: float) -> list[mido.Message]:
        """Messages that start a note; a note already sounding there is ended first."""
        note_on = mido.Message(
            "note_on", channel=channel, note=pitch, velocity=max(1, min(127, velocity))
        )
        return self.start_message(note_on, time_s)

    def start_message(self, note_on: mido.Message, time_s: float) -> list[mido.Message]:
        """:meth:`start` with the note-on made beforehand (velocity 1-127): making a message
        takes tens of microseconds, which a reply spends before the note is due."""
        channel, pitch = note_on.channel, note_on.note
        messages = self.stop(channel, pitch)
        self._started_s[(channel, pitch)] = time_s
        self._channels_used.add(channel)
        messages.append(note_on)
        return messages

    def stop(self, channel: int, pitch: int) -> list[mido.Message]:
        """The note-off for a sounding note; nothing for a note that is not sounding."""
        if self._started_s.pop((channel, pitch), None) is None:
            return []
        return [mido.Message("note_off", channel=channel, note=pitch, velocity=0)]

    def stop_message(self, note_off: mido.Message) -> list[mido.Message]:
        """:meth:`stop` with the note-off made beforehand."""
        if self._started_s.pop((note_off.channel, note_off.note), None) is None:
            return []
        return [note_off]

    def oldest_start_s(self) -> float | None:
        """When the longest-sounding note started (None when silent)."""
        return min(self._started_s.values(), default=None)

    def expired(self, now_s: float, max_note_s: float) -> list[tuple[int, int]]:
        """The (channel, pitch) of notes that have sounded ``max_note_s`` or longer.

        Computed as ``start + max_note_s <= now_s``, the same sum a caller uses to schedule
        the release (``oldest_start_s() + max_note_s``), so a note is due exactly then.
        """
        return [key for key, start in self._started_s.items() if start + max_note_s <= now_s]

    def release_all(self) -> list[mido.Message]:
        """Note-offs for every sounding note, then All Notes Off on every channel used."""
        messages = [
            mido.Message("note_off", channel=c, note=p, velocity=0)
            for c, p in sorted(self._started_s)
        ]
        self._started_s.clear()
        messages.extend(
            mido.Message("control_change", channel=c, control=ALL_NOTES_OFF_CC, value=0)
            for c in sorted(self._channels_used)
        )
        return messages


class NotesOnTheWire:
    """The notes an output device was told to play and not yet told to end, from the bytes
    sent to it.

    A device that vanishes in the middle of a reply (a cable pulled, a synth rebooting) may
    keep sounding what it was playing when it comes back; the note-offs sent meanwhile never
    reached it. :meth:`release` gives what ends those notes, to send when it returns.
    """

    def __init__(self) -> None:
        self._sounding: set[tuple[int, int]] = set()

    def __len__(self) -> int:
        return len(self._sounding)

    def sent(self, data: Sequence[int]) -> None:
        """Account for one message that reached the device (its bytes)."""
        if len(data) != 3:
            return
        kind, channel = data[0] & 0xF0, data[0] & 0x0F
        if kind == 0x90 and data[2] > 0:
            self._sounding.add((channel, data[1]))
        elif kind in (0x80, 0x90):
            self._sounding.discard((channel, data[1]))
        elif kind == 0xB0 and data[1] in (ALL_NOTES_OFF_CC, ALL_SOUND_OFF_CC):
            self._sounding = {(c, p) for c, p in self._sounding if c != channel}

    def release(self) -> list[mido.Message]:
        """Note-offs for every note left sounding, then All Notes Off on their channels."""
        keys = sorted(self._sounding)
        self._sounding.clear()
        messages = [mido.Message("note_off", channel=c, note=p, velocity=0) for c, p in keys]
        messages.extend(
            mido.Message("control_change", channel=c, control=ALL_NOTES_OFF_CC, value=0)
            for c in sorted({c for c, _ in keys})
        )
        return messages
