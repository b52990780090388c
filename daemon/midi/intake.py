"""The MIDI callback's side of the performer: input hygiene, echo suppression, the flood policy.

:meth:`InputGate.submit` runs on the MIDI input callback thread. It never blocks and never
runs inference: it turns a message into a small queue item or drops it, and puts the item on
a queue that the performer's thread blocks on.

Hygiene: a note-on with velocity 0 is a note-off; clock, active sensing, sysex, pitch bend,
aftertouch and controllers other than the sustain pedal (CC64), All Notes Off / All Sound Off
(CC123 / CC120) and the optional end-of-phrase foot switch are not heard; with a listen
channel, other channels are not heard.

Echo suppression: a message equal to one Antiphon sent within ``echo_window_ms`` is taken for
its own output coming back through a MIDI thru loop and dropped (counted in ``echoes``).
A note-off for a key the player holds is never taken for an echo: dropping it would leave the
key held and the call without an end.

Flood policy: the queue holds ``input_queue_size`` messages; beyond that, note-ons, pedal
downs and other droppable input are dropped and counted. Note-offs for keys whose note-on went
through, the pedal release after a pedal down that went through, and All Notes Off while
anything is held always go through (at most one per held key beyond the limit), so a flood
never leaves the call, the model or a thru note hanging. A note-off whose note-on was dropped
is dropped too. After ``held_key_timeout_s`` with nothing queued, the keys and the pedal that
went through count as released, as the performer takes them (a lost note-off).
"""

from __future__ import annotations

import math
import queue

import mido
from antiphon.daemon.midi.notes import ALL_NOTES_OFF_CC, ALL_SOUND_OFF_CC
from antiphon.daemon.settings import Settings

SUSTAIN_CC = 64

# Queue items: (code, time_s, channel, data1, data2); channels 0-15.
NOTE_ON, NOTE_OFF, SUSTAIN, ALL_OFF, END_PHRASE, WAKE = range(6)
Item = tuple[int, float, int, int, int]
WAKE_ITEM: Item = (WAKE, 0.0, 0, 0, 0)


def classify(message: mido.Message, time_s: float, end_phrase_cc: int | None) -> Item | None:
    """The queue item for a message the performer hears; None for everything else."""
    kind = message.type
    if kind == "note_on":
        code = NOTE_ON if message.velocity > 0 else NOTE_OFF
        return (code, time_s, message.channel, message.note, message.velocity)
    if kind == "note_off":
        return (NOTE_OFF, time_s, message.channel, message.note, 0)
    if kind == "control_change":
        control, value = message.control, message.value
        if control == SUSTAIN_CC:
            return (SUSTAIN, time_s, message.channel, control, value)
        if control in (ALL_NOTES_OFF_CC, ALL_SOUND_OFF_CC):
            return (ALL_OFF, time_s, message.channel, control, value)
        if control == end_phrase_cc and value >= 64:
            return (END_PHRASE, time_s, message.channel, control, value)
    return None


def _echo_key(item: Item) -> tuple[int, int, int, int]:
    code, _, channel, data1, data2 = item
    return (code, channel, data1, 0 if code == NOTE_OFF else data2)


class InputGate:
    """Input hygiene, echo suppression and the bounded queue in front of the performer.

    ``submit`` is for one producer thread (the MIDI callback); ``sent`` for the performer's
    thread; they share only single dictionary operations, which are atomic.
    """

    def __init__(self, settings: Settings) -> None:
        self.queue: queue.SimpleQueue[Item] = queue.SimpleQueue()
        self.limit = settings.input_queue_size
        listen = settings.listen_channel
        self.listen_channel = None if listen is None else listen - 1  # mido counts from 0
        self.end_phrase_cc = settings.end_phrase_cc
        self.echo_window_s = settings.echo_window_ms / 1000.0
        self.held_timeout_s = settings.held_key_timeout_s
        self.dropped = 0
        self.echoes = 0
        self.closed = False
        self._sent_at: dict[tuple[int, int, int, int], float] = {}
        self._keys_through: set[tuple[int, int]] = set()  # note-on queued, note-off not yet
        self._pedal_through = False
        self._last_queued_s = -math.inf

    def submit(self, message: mido.Message, time_s: float) -> None:
        """Queue a message the performer should hear, or drop it (see the module docstring)."""
        item = classify(message, time_s, self.end_phrase_cc)
        if item is None or self.closed:
            return
        code, _, channel, data1, data2 = item
        if self.listen_channel is not None and channel != self.listen_channel:
            return
        key = (channel, data1)
        if time_s - self._last_queued_s >= self.held_timeout_s:
            self._keys_through.clear()  # the performer has released them by now
            self._pedal_through = False
        if self.echo_window_s > 0.0 and not (code == NOTE_OFF and key in self._keys_through):
            sent_s = self._sent_at.pop(_echo_key(item), None)
            if sent_s is not None and time_s - sent_s <= self.echo_window_s:
                self.echoes += 1
                return
        if self._admit(code, key, data2, self.queue.qsize() >= self.limit):
            self.queue.put(item)
            self._last_queued_s = time_s
        else:
            self.dropped += 1

    def _admit(self, code: int, key: tuple[int, int], value: int, full: bool) -> bool:
        if code == NOTE_ON:
            if not full:
                self._keys_through.add(key)
            return not full
        if code == NOTE_OFF:
            if key in self._keys_through:
                self._keys_through.discard(key)
                return True
            return not full
        if code == SUSTAIN:
            down = value >= 64
            if full and (down or not self._pedal_through):
                return False
            self._pedal_through = down
            return True
        if code == ALL_OFF:
            if full and not (self._keys_through or self._pedal_through):
                return False
            self._keys_through.clear()
            return True
        return not full

    def sent(self, message: mido.Message, time_s: float) -> None:
        """Remember a message Antiphon sent, to recognise it if it comes back."""
        if self.echo_window_s > 0.0:
            item = classify(message, time_s, self.end_phrase_cc)
            if item is not None:
                self._sent_at[_echo_key(item)] = time_s

    def take(self, timeout_s: float) -> Item | None:
        """The next item, waiting up to ``timeout_s`` (not at all when <= 0); None if none."""
        try:
            if timeout_s > 0.0:
                return self.queue.get(timeout=timeout_s)
            return self.queue.get(False)
        except queue.Empty:
            return None

    @property
    def waiting(self) -> bool:
        """Whether items are queued."""
        return self.queue.qsize() > 0

    def wake(self) -> None:
        """Unblock the performer's thread (a command or a parameter is waiting)."""
        self.queue.put(WAKE_ITEM)
