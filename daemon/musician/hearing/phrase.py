"""When the player's call ends, and how long the reply may be.

Pure logic driven by the player's events and times: :class:`PhraseDetector` never reads a
clock; it says when to look again (:meth:`PhraseDetector.deadline`) and answers whether the
call is over at a given moment (:meth:`PhraseDetector.poll`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

Key = tuple[int, int]  # (channel, pitch)

MIN_REPLY_WINDOW_S = 2.0  # even a one-note call gets this long to answer in
REPLY_TIME_FACTOR = 2.0  # a reply may last this many times the call (times reply_ratio)
MIN_GAP_S = 0.1  # with a judged wait, no call ends sooner after the player's last event


@dataclass(frozen=True)
class Call:
    """A finished call: its first note-on, its last sound, when it was over, its note count."""

    start_s: float
    last_sound_s: float
    ended_s: float  # last sound + the phrase gap, or the foot switch
    notes: int

    @property
    def seconds(self) -> float:
        return max(0.0, self.last_sound_s - self.start_s)


class PhraseDetector:
    """Finds the end of the player's call.

    A call starts with a note-on. It ends when nothing sounds (no key held, and no key
    released while the sustain pedal is down: such a key counts as held until the pedal
    lifts) and ``gap_s`` has passed since the last key, pedal or note event; or at once by
    :meth:`end_now` (a foot switch). ``gap_s`` may be changed at any time.

    With ``turns`` ``auto`` the performer sets :attr:`wait_s` when a silence begins (see
    :class:`~antiphon.daemon.musician.hearing.turns.TurnJudge`): the call then ends that long after
    the
    silence began (at most ``gap_s``, the longest wait), and never sooner than
    ``MIN_GAP_S`` after the last event. Without it (``turns`` ``gap``), ``gap_s`` alone.

    A key still sounding after ``held_timeout_s`` with no event at all (None: never) most
    likely lost its note-off on the way: :meth:`release_stale` then takes every sounding key,
    and the pedal, as released at that moment, and the call can end.
    """

    def __init__(self, gap_s: float, held_timeout_s: float | None = None) -> None:
        self.gap_s = gap_s
        self.held_timeout_s = held_timeout_s
        self._held: set[Key] = set()
        self._sustained: set[Key] = set()  # released while the pedal was down
        self._pedal_down = False
        self._last_event_s = 0.0
        self._call_start_s: float | None = None
        self._call_notes = 0
        self._silence_start_s: float | None = None  # when nothing sounded any more
        self.wait_s: float | None = None  # this silence's judged wait; None: gap_s

    @property
    def in_call(self) -> bool:
        """Whether a call has started and not ended."""
        return self._call_start_s is not None

    @property
    def sounding(self) -> bool:
        """Whether any key is held or sustained by the pedal."""
        return bool(self._held or self._sustained)

    @property
    def silence_start_s(self) -> float | None:
        """When the silence going on began (the last sound ended); None while a key sounds
        or before the first note."""
        return self._silence_start_s

    def _after_release(self, was_sounding: bool, time_s: float) -> None:
        if was_sounding and not self.sounding:
            self._silence_start_s = time_s
            self.wait_s = None

    def note_on(self, key: Key, time_s: float) -> None:
        self._silence_start_s = None
        self.wait_s = None
        self._held.add(key)
        self._sustained.discard(key)
        self._last_event_s = time_s
        if self._call_start_s is None:
            self._call_start_s = time_s
            self._call_notes = 0
        self._call_notes += 1

    def note_off(self, key: Key, time_s: float) -> None:
        was_sounding = self.sounding
        if key in self._held:
            self._held.discard(key)
            if self._pedal_down:
                self._sustained.add(key)
        self._last_event_s = time_s
        self._after_release(was_sounding, time_s)

    def sustain(self, down: bool, time_s: float) -> None:
        was_sounding = self.sounding
        self._pedal_down = down
        if not down:
            self._sustained.clear()
        self._last_event_s = time_s
        self._after_release(was_sounding, time_s)

    def all_notes_off(self, time_s: float) -> None:
        """The player's All Notes Off / All Sound Off: nothing is held any more."""
        was_sounding = self.sounding
        self._held.clear()
        self._sustained.clear()
        self._last_event_s = time_s
        self._after_release(was_sounding, time_s)

    def stale_due_s(self) -> float | None:
        """When the keys sounding now count as released if nothing happens before; None when
        nothing sounds (or there is no timeout)."""
        if self.held_timeout_s is None or not self.sounding:
            return None
        return self._last_event_s + self.held_timeout_s

    def release_stale(self, now_s: float) -> list[Key]:
        """The keys taken as released, if :meth:`stale_due_s` has come by ``now_s``: nothing
        is held or sustained any more, the pedal counts as up, and the release is the last
        event (at the due time), from which the gap runs. Otherwise nothing changes: []."""
        due_s = self.stale_due_s()
        if due_s is None or now_s < due_s:
            return []
        released = sorted(self._held | self._sustained)
        self._held.clear()
        self._sustained.clear()
        self._pedal_down = False
        self._last_event_s = due_s
        self._after_release(True, due_s)
        return released

    def deadline(self) -> float | None:
        """When the call will be over if nothing else happens; None: no call, or a key held."""
        if self._call_start_s is None or self.sounding:
            return None
        if self.wait_s is not None and self._silence_start_s is not None:
            judged_s = self._silence_start_s + min(self.wait_s, self.gap_s)
            return max(judged_s, self._last_event_s + min(MIN_GAP_S, self.gap_s))
        return self._last_event_s + self.gap_s

    def poll(self, now_s: float) -> Call | None:
        """The call, if it is over at ``now_s`` (then the detector waits for the next one)."""
        due = self.deadline()
        if due is None or now_s < due:
            return None
        return self._finish(self._last_event_s, due)

    def pending_call(self) -> Call | None:
        """The call :meth:`poll` will return at :meth:`deadline` if nothing happens before;
        None when there is no deadline. The detector does not change."""
        due = self.deadline()
        if due is None or self._call_start_s is None:
            return None
        return Call(self._call_start_s, self._last_event_s, due, self._call_notes)

    def end_now(self, time_s: float) -> Call | None:
        """End the call at once (foot switch); None when no call is going on."""
        if self._call_start_s is None:
            return None
        self._last_event_s = time_s
        return self._finish(time_s, time_s)

    def _finish(self, last_sound_s: float, ended_s: float) -> Call:
        assert self._call_start_s is not None
        call = Call(self._call_start_s, last_sound_s, ended_s, self._call_notes)
        self._call_start_s = None
        self._call_notes = 0
        return call


class ReplyLimits(Protocol):
    """The settings that bound a reply (:class:`~antiphon.daemon.settings.Settings` has them)."""

    @property
    def reply_ratio(self) -> float: ...
    @property
    def reply_min_notes(self) -> int: ...
    @property
    def reply_max_notes(self) -> int: ...
    @property
    def reply_max_s(self) -> float: ...


def reply_length_bounds(call_notes: int, call_s: float, limits: ReplyLimits) -> tuple[int, float]:
    """How many notes the reply plays, and the most seconds it may take.

    notes = ``round(call_notes * reply_ratio)`` clamped to
    [``reply_min_notes``, ``reply_max_notes``];
    seconds = ``REPLY_TIME_FACTOR * reply_ratio * call_s``, at least ``MIN_REPLY_WINDOW_S``,
    at most ``reply_max_s``. The reply stops starting notes at the note count and is cut off
    (every note released) at the time bound, whichever comes first.
    """
    notes = round(call_notes * limits.reply_ratio)
    notes = max(limits.reply_min_notes, min(limits.reply_max_notes, notes))
    seconds = max(MIN_REPLY_WINDOW_S, REPLY_TIME_FACTOR * limits.reply_ratio * call_s)
    return notes, min(limits.reply_max_s, seconds)
