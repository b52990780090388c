"""How late a thread's timed wait ends on this machine: the floor under the daemon's timing.

The performer sends each reply message by blocking on its input queue until the message is
due (:meth:`antiphon.daemon.musician.playing.performer.Performer.run`); it cannot send earlier than
the kernel wakes it. Here a bare thread does the same wait, a queue ``get`` with a timeout of
2 to 5 ms and the timer slack the performer sets, ``waits`` times, and the lateness of each
wake-up is kept. Under ``SCHED_FIFO`` (``fifo_priority``, when allowed) it shows what
realtime scheduling buys on a busy machine.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import queue
import sys
import threading
import time

PR_SET_TIMERSLACK = 29


def measure_wakeups(waits: int = 2000, fifo_priority: int = 0) -> list[float]:
    """Milliseconds each timed wait ended after it was due."""
    late_ms: list[float] = []

    def body() -> None:
        if fifo_priority > 0 and hasattr(os, "sched_setscheduler"):
            try:
                os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(fifo_priority))
            except OSError:
                return  # not allowed here: no figures rather than wrong ones
        if sys.platform.startswith("linux"):
            ctypes.CDLL(None).prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0)
        never: queue.SimpleQueue[None] = queue.SimpleQueue()
        for i in range(waits):
            wait_s = 0.002 + (i % 7) * 0.0005
            due_s = time.monotonic() + wait_s
            with contextlib.suppress(queue.Empty):
                never.get(timeout=wait_s)
            late_ms.append(1000.0 * (time.monotonic() - due_s))

    thread = threading.Thread(target=body, name="wakeups")
    thread.start()
    thread.join()
    return late_ms
