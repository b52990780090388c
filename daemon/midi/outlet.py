"""Everything the performer sends, and the bookkeeping that lets it take every note back.

The thru notes (the player's notes echoed with ``thru``) and the channels replies have
sounded on are kept here, so that :meth:`Outlet.release_all` can end every note Antiphon
started, on every exit path. Each message sent is also told to the input gate, which drops
it when a device echoes it back (:mod:`antiphon.daemon.midi.intake`). Used on the performer's
thread only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import mido
from antiphon.daemon.midi.intake import InputGate
from antiphon.daemon.midi.notes import ALL_NOTES_OFF_CC, SoundingNotes
from antiphon.daemon.musician.answering.reply import Reply, Timed


class MidiSink(Protocol):
    """Where the performer's messages go (an output port; a list in tests and files).

    ``send`` must return quickly and must not raise for a lost device (log and drop).
    """

    def send(self, message: mido.Message) -> None: ...


class Outlet:
    """The performer's output: a sink, the thru notes and the channels replies used.

    Args:
        sink: where output messages go.
        clock: the performer's clock; a message's send time is read from it.
        gate: the input gate, told every message sent (the echo check).
        ahead_s: how long before its time a timed message is sent (``output_ahead_ms``): a
            reply records each send this much later, when the message is meant to sound.
    """

    def __init__(
        self, sink: MidiSink, clock: Callable[[], float], gate: InputGate, ahead_s: float = 0.0
    ) -> None:
        self._sink = sink
        self._clock = clock
        self._gate = gate
        self._ahead_s = ahead_s
        self.thru = SoundingNotes()
        self._reply_channels: set[int] = set()  # every channel a reply has sounded on

    def send(self, message: mido.Message) -> float:
        """Send one message; returns when it was sent."""
        self._sink.send(message)
        sent_s = self._clock()
        self._gate.sent(message, sent_s)
        return sent_s

    def send_all(self, messages: list[mido.Message]) -> None:
        for message in messages:
            self.send(message)

    def emit(self, timed: list[Timed], reply: Reply) -> int:
        """Send a reply's messages, recording each send in the reply; returns the notes started."""
        notes_started = 0
        for planned_s, message in timed:
            sent_s = self.send(message)
            reply.record_send(planned_s, sent_s + self._ahead_s, message)
            if message.type == "note_on":
                notes_started += 1
                self._reply_channels.add(message.channel)
        return notes_started

    def release_thru(self) -> None:
        """End every thru note still sounding."""
        for channel, pitch in self.thru:
            self.send_all(self.thru.stop(channel, pitch))

    def release_all(self) -> None:
        """End the thru notes with All Notes Off on their channels, and send All Notes Off on
        every other channel a reply has sounded on (the reply's own notes are ended first)."""
        self.send_all(self.thru.release_all())
        for channel in sorted(self._reply_channels - self.thru.channels_used):
            self.send(mido.Message("control_change", channel=channel, control=ALL_NOTES_OFF_CC))
