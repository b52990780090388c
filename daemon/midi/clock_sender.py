"""The thread that sends the outgoing MIDI clock: it sleeps until each tick and sends it.

What to send and when is decided elsewhere, by a :class:`TickSchedule` (the daemon's is
:class:`~antiphon.daemon.musician.clocks.clock_out.ClockLeader`, pure); this thread only waits and
sends, so no inference and no lock of the performer's ever delays a tick. It shares the
output port with the replies (:class:`~antiphon.daemon.midi.ports.MidiOutput` sends under a
short lock) or has a port of its own (``clock_out_port``).

How it waits: a timed wait until the tick, with the timer slack Linux grants the thread set
to 1 µs (50 µs by default). No wait on the CPU: at a listener on JACK the ticks' intervals
are whole periods anyway, and ``antiphon bench --link`` measured their error at p99 within
one period of the exact interval with timed waits alone (BENCHMARKS.md).
"""

from __future__ import annotations

import ctypes
import logging
import sys
import threading
import time
from collections.abc import Sequence
from typing import Protocol

log = logging.getLogger(__name__)

IDLE_WAIT_S = 0.05  # how often an idle clock looks whether there is a tempo to send
STOP_WAIT_S = 1.0
PR_SET_TIMERSLACK = 29


class TickSchedule(Protocol):
    """When the next clock message is due and what it is."""

    def next_due_s(self, now_s: float) -> float | None: ...
    def tick(self) -> Sequence[Sequence[int]]: ...
    def stop(self) -> Sequence[Sequence[int]]: ...


class RawOutput(Protocol):
    def send_raw(self, data: Sequence[int]) -> None: ...


class ClockSender:
    """Sends ``schedule``'s messages on ``output`` at their times (``ahead_s`` before them:
    ``output_ahead_ms``), from a thread of its own."""

    def __init__(self, schedule: TickSchedule, output: RawOutput, ahead_s: float = 0.0) -> None:
        self._schedule = schedule
        self._output = output
        self._ahead_s = ahead_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="midi-clock-out", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread; the schedule's last words (Stop) are sent."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(STOP_WAIT_S)
        for data in self._schedule.stop():
            self._output.send_raw(data)

    def _run(self) -> None:
        _tighten_timer_slack()
        schedule, stop, output = self._schedule, self._stop, self._output
        while not stop.is_set():
            now_s = time.monotonic()
            due_s = schedule.next_due_s(now_s)
            if due_s is None:
                stop.wait(IDLE_WAIT_S)
                continue
            send_s = due_s - self._ahead_s
            if send_s > now_s and stop.wait(send_s - now_s):
                break
            for data in schedule.tick():
                output.send_raw(data)  # never raises: a port gone drops it


def _tighten_timer_slack() -> None:
    """Let this thread's timed waits end on time (Linux defers them by its timer slack, 50 us
    by default); as the performer's thread does."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0)
        except (OSError, AttributeError) as err:  # no libc to ask: the default slack stays
            log.debug("timer slack unchanged: %s", err)
