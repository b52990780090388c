"""The performer thread's realtime priority: taken when allowed, refused in one line."""

from __future__ import annotations

import logging
import os
import threading

import pytest
from antiphon.daemon.stage.scheduling import use_realtime_priority


def _in_a_thread(priority: int) -> tuple[bool, int]:
    """Ask in a fresh thread (the policy is per thread); (granted, the thread's policy)."""
    result: list[tuple[bool, int]] = []

    def body() -> None:
        granted = use_realtime_priority(priority)
        result.append((granted, os.sched_getscheduler(0)))

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    return result[0]


def test_zero_leaves_normal_scheduling() -> None:
    assert _in_a_thread(0) == (False, os.SCHED_OTHER)


def test_a_priority_is_taken_or_refused_in_one_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    granted, policy = _in_a_thread(5)
    assert policy == (os.SCHED_FIFO if granted else os.SCHED_OTHER)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and "\n" not in messages[0]
    assert ("SCHED_FIFO" in messages[0]) if granted else ("refused" in messages[0])
    assert os.sched_getscheduler(0) == os.SCHED_OTHER  # the asking thread only
