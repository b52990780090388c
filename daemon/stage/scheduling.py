"""How the performer's thread is scheduled: realtime priority, when asked for and allowed.

On a busy machine a normal thread wakes late and is preempted in the middle of its work; the
performer's timed waits (until the next reply event is due) and its draws ahead suffer both.
Measured on the 2-core bench machine at a load of 4 (BENCHMARKS.md): a bare Python thread's
timed wait ended p99 2.3 ms late with normal scheduling, 0.6 ms under ``SCHED_FIFO``. A
realtime thread in a Python process only helps while no other thread of the process runs
Python (it would wait for the GIL held by a thread of lower priority): the daemon's other
threads only hand things over, and the GIL switch interval is short (see ``live``).

Linux only; needs CAP_SYS_NICE or an ``rtprio`` limit (``/etc/security/limits.d``), the same
permission a realtime JACK server needs. Refused, the daemon says so in one line and plays on.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)


def use_realtime_priority(priority: int) -> bool:
    """Put the calling thread under ``SCHED_FIFO`` at ``priority`` (1-99); 0 does nothing.

    Returns whether the thread now runs at that priority.
    """
    if priority <= 0:
        return False
    if not hasattr(os, "sched_setscheduler"):
        log.warning("realtime priority %d asked for: not supported on this system", priority)
        return False
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except PermissionError:
        log.warning(
            "realtime priority %d refused (needs an rtprio limit or CAP_SYS_NICE); "
            "playing with normal scheduling",
            priority,
        )
        return False
    except OSError as err:
        log.warning(
            "realtime priority %d refused: %s; playing with normal scheduling", priority, err
        )
        return False
    log.info("the performer's thread runs at realtime priority %d (SCHED_FIFO)", priority)
    return True
