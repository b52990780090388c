"""The beat from a DAW: MIDI clock (24 ticks per quarter note), Start, Continue, Stop and Song
Position Pointer, followed into a :class:`~antiphon.daemon.musician.hearing.beat.BeatGrid`.

Two halves, for the two threads:

- :class:`ClockInbox`, the MIDI callback's side: each clock message is appended, stamped, to a
  bounded deque (one atomic append; no lock, no wake-up of the performer: 24 ticks a beat
  need no reaction, only what they add up to).
- :class:`ClockFollower`, the performer's side and pure: it takes what the inbox holds when
  the performer needs the beat (:meth:`ClockFollower.take`) and answers with the grid.

The tempo is the smoothed tick rate: a least-squares line through the last ``TEMPO_TICKS``
ticks' arrival times (four beats), so the jitter of a MIDI system's cycles averages out; when
the last beat's ticks alone say a tempo more than ``TEMPO_CHANGE`` away, the tempo changed,
and the line starts again from them (a change is followed within a beat). The line is then
moved onto the earliest arrivals: a tick is delayed on its way (up to a JACK period) but never
early, so the least delayed ones say best when the DAW sent its beats.

Beats fall on every 24th tick counted from Start (the tick after Start is the first beat) or
from the Song Position Pointer (in sixteenths, 6 ticks each, from the song's start: bars are
known then too, with ``beats_per_bar``). The clock runs from Start or Continue (or ticks
alone, from a DAW that never sends Start: beats then count from the first tick heard, bars
unknown) until Stop, or until no tick has come for ``TIMEOUT_BEATS`` beats (a DAW closed
without Stop).
"""

from __future__ import annotations

import math
from collections import deque

import mido
from antiphon.daemon.musician.hearing.beat import BeatGrid

TICKS_PER_BEAT = 24
TICKS_PER_SIXTEENTH = 6
TEMPO_TICKS = 96  # ticks the tempo line is fitted through: four beats
CHANGE_TICKS = 24  # the last beat's ticks: their own tempo tells a change of tempo
TEMPO_CHANGE = 0.03  # a last beat this much faster or slower is a new tempo
TIMEOUT_BEATS = 2.0  # no tick for this many beats: the clock is taken as stopped
MIN_TIMEOUT_S = 0.25
# Started, but no tick for this long: a DAW closed without Stop; its transport no longer
# counts (longer than the performer's turn, which takes the ticks at least twice a second).
TRANSPORT_TIMEOUT_S = 2.0
INBOX_SIZE = 1024  # the performer drains at least every half second: 10 s of ticks at 240 bpm

# Inbox items: (kind, time_s, value).
TICK, START, CONTINUE, STOP, SONG_POSITION = range(5)
ClockItem = tuple[int, float, int]
CLOCK_TYPES = {"clock": TICK, "start": START, "continue": CONTINUE, "stop": STOP}


class ClockInbox:
    """Clock messages from the MIDI callback, stamped, for the performer to take."""

    def __init__(self) -> None:
        self.items: deque[ClockItem] = deque(maxlen=INBOX_SIZE)

    def submit(self, message: mido.Message, time_s: float) -> bool:
        """Keep a clock message; False (and nothing kept) for any other message."""
        kind = message.type
        code = CLOCK_TYPES.get(kind)
        if code is not None:
            self.items.append((code, time_s, 0))
            return True
        if kind == "songpos":
            self.items.append((SONG_POSITION, time_s, message.pos))
            return True
        return False


class ClockFollower:
    """Where a DAW's clock is: running or not, its tempo, its beats and bars."""

    def __init__(self, beats_per_bar: int = 4) -> None:
        self.beats_per_bar = beats_per_bar
        self._times: deque[float] = deque(maxlen=TEMPO_TICKS)
        self._numbers: deque[int] = deque(maxlen=TEMPO_TICKS)
        self._next_tick = 0  # the number the next tick gets (0: the song's or Start's first)
        self._bars_known = False
        self._stopped = False
        self._transport_seen = False  # a Start, Continue or Stop was heard: the DAW uses them
        self._started_s = -math.inf  # the last Start or Continue
        self._last_tick_s = -math.inf

    def take(self, inbox: ClockInbox) -> None:
        """Follow everything the inbox holds (on the performer's thread)."""
        items = inbox.items
        while items:
            code, time_s, value = items.popleft()
            self.hear(code, time_s, value)

    def hear(self, code: int, time_s: float, value: int = 0) -> None:
        """One clock message: ``TICK``, ``START``, ``CONTINUE``, ``STOP`` or
        ``SONG_POSITION`` (``value`` in sixteenths)."""
        if code == TICK:
            if self._times and self._next_tick != self._numbers[-1] + 1:
                self._restart_line()  # counting jumped (Start, a new position): new line
            self._times.append(time_s)
            self._numbers.append(self._next_tick)
            self._next_tick += 1
            self._last_tick_s = time_s
        elif code in (START, CONTINUE):
            if self._stopped:  # the ticks before the Stop are no line to go on from
                self._times.clear()
                self._numbers.clear()
            if code == START:
                self._next_tick = 0
                self._bars_known = True
            self._started_s = time_s  # before the flags: the clock sender reads them as it goes
            self._transport_seen = True
            self._stopped = False
        elif code == STOP:
            self._stopped = True
            self._transport_seen = True
        elif code == SONG_POSITION:
            self._next_tick = value * TICKS_PER_SIXTEENTH
            self._bars_known = True

    def _restart_line(self) -> None:
        """Keep the tempo across a jump of the count: renumber the kept ticks to end just
        before the new count."""
        shift = self._next_tick - 1 - self._numbers[-1]
        for k in range(len(self._numbers)):
            self._numbers[k] += shift

    def transport(self, now_s: float) -> bool | None:
        """Whether the DAW's transport runs at ``now_s`` (its last Start or Continue against
        Stop); None until it has sent one (a clock with no transport), or when its ticks
        stopped with no Stop (for ``TRANSPORT_TIMEOUT_S``). Any thread may ask (it reads no
        more than three plain values)."""
        if not self._transport_seen:
            return None
        if self._stopped:
            return False
        if now_s - max(self._started_s, self._last_tick_s) > TRANSPORT_TIMEOUT_S:
            return None
        return True

    def running(self, now_s: float) -> bool:
        """Whether the clock runs: ticks coming and no Stop since."""
        if self._stopped or len(self._times) < 2:
            return False
        period_s = (self._times[-1] - self._times[0]) / max(1, len(self._times) - 1)
        timeout_s = max(MIN_TIMEOUT_S, TIMEOUT_BEATS * TICKS_PER_BEAT * period_s)
        return now_s - self._last_tick_s <= timeout_s

    def grid(self, now_s: float) -> BeatGrid | None:
        """The clock's beat at ``now_s``; None while it does not run."""
        if not self.running(now_s):
            return None
        tick_s, first_tick_s = self._line()
        if tick_s <= 0.0:
            return None
        beat_s = TICKS_PER_BEAT * tick_s
        last = self._numbers[-1]
        beat_number = last - last % TICKS_PER_BEAT
        anchor_s = first_tick_s + beat_number * tick_s
        bar_anchor_s = None
        if self._bars_known:
            bar_ticks = TICKS_PER_BEAT * self.beats_per_bar
            bar_anchor_s = first_tick_s + (last - last % bar_ticks) * tick_s
        return BeatGrid(
            beat_s=beat_s,
            anchor_s=anchor_s,
            subdivision=4,
            confidence=1.0,
            source="midi",
            beats_per_bar=self.beats_per_bar,
            bar_anchor_s=bar_anchor_s,
        )

    def _line(self) -> tuple[float, float]:
        """(seconds per tick, the time of tick number 0) from the kept ticks; after a change
        of tempo, from the ticks since (the older ones are let go)."""
        times, numbers = self._times, self._numbers
        slope, intercept = _fit(numbers, times, len(times))
        if len(times) >= 2 * CHANGE_TICKS:
            recent, recent_start = _fit(numbers, times, CHANGE_TICKS)
            if abs(recent - slope) > TEMPO_CHANGE * slope:
                for _ in range(len(times) - CHANGE_TICKS):
                    times.popleft()
                    numbers.popleft()
                slope, intercept = recent, recent_start
        # The line runs through the ticks' mean delay on the way; the earliest arrivals were
        # delayed least, so the clock as the DAW sent it runs along them.
        earliest = min(t - intercept - slope * n for n, t in zip(numbers, times, strict=True))
        return slope, intercept + earliest

    def jitter_ms(self) -> float:
        """How irregularly the kept ticks arrived: the RMS of their distances from the
        tempo line, in ms (0 with fewer than three ticks)."""
        if len(self._times) < 3:
            return 0.0
        tick_s, first_tick_s = self._line()
        residuals = [
            t - first_tick_s - n * tick_s for n, t in zip(self._numbers, self._times, strict=True)
        ]
        mean = sum(residuals) / len(residuals)
        return 1000.0 * math.sqrt(sum((r - mean) ** 2 for r in residuals) / len(residuals))


def _fit(numbers: deque[int], times: deque[float], count: int) -> tuple[float, float]:
    """(slope, time of tick number 0) of the least-squares line through the last ``count``
    ticks; numbers and times are taken relative to the last tick, so the sums keep their
    precision. Slope 0 when the ticks do not spread."""
    last_n, last_s = numbers[-1], times[-1]
    sum_n = sum_t = sum_nn = sum_nt = 0.0
    for k in range(len(times) - count, len(times)):
        n, t = numbers[k] - last_n, times[k] - last_s
        sum_n += n
        sum_t += t
        sum_nn += n * n
        sum_nt += n * t
    spread = count * sum_nn - sum_n * sum_n
    if spread <= 0.0:
        return 0.0, last_s
    slope = (count * sum_nt - sum_n * sum_t) / spread
    return slope, last_s + (sum_t - slope * sum_n) / count - slope * last_n
