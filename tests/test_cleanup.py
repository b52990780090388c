"""The guard at the end of the session (tests/conftest.py) finds a process the run left
running, and only those of this run."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from tests.conftest import RUN_MARK, processes_left_running

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def test_a_process_started_by_this_run_is_found_until_it_ends() -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert sleeper.pid in processes_left_running(os.environ[RUN_MARK])
        assert sleeper.pid not in processes_left_running(uuid.uuid4().hex)  # another run's
    finally:
        sleeper.kill()
        sleeper.wait()
    assert sleeper.pid not in processes_left_running(os.environ[RUN_MARK])
