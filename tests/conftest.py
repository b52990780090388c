"""Shared fixtures. JACK ones come from tests/jack_server.py.

Every process the suite starts (JACK servers, daemons, training runs) inherits
``RUN_MARK`` in its environment; when the session ends, any such process still running is a
test that did not clean up after itself: the session fails, naming it, and it is stopped.
"""

from __future__ import annotations

import contextlib
import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from antiphon.daemon.midi.port_names import virtual_port_names
from antiphon.daemon.tools.jack_server import JackServer
from antiphon.daemon.tools.probe import DaemonProcess, MidiProbe, Timed

from tests.jack_server import recorded_call, session_jack_server
from tests.other_rounding import round_like_another_processor
from tests.test_osc import OscListener, free_udp_port

RUN_MARK = "ANTIPHON_TEST_RUN"
os.environ[RUN_MARK] = uuid.uuid4().hex
if os.environ.get("ANTIPHON_TEST_ROUNDING") == "other":
    round_like_another_processor()


def processes_left_running(mark: str) -> dict[int, str]:
    """The processes (pid: command line) other than this one whose environment holds
    ``RUN_MARK=mark``: those this run started, or their children."""
    wanted = f"{RUN_MARK}={mark}".encode()
    left = {}
    for entry in Path("/proc").glob("[0-9]*"):
        pid = int(entry.name)
        if pid == os.getpid():
            continue
        try:
            if wanted not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if command:  # a zombie has none: it is not running
            left[pid] = command.strip()
    return left


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not Path("/proc/self/environ").exists():  # not Linux: nothing to look at
        return
    left = processes_left_running(os.environ[RUN_MARK])
    for pid in left:
        with contextlib.suppress(OSError):  # it ended meanwhile
            os.kill(pid, signal.SIGKILL)
    if left:
        listing = "; ".join(f"{pid}: {command[:120]}" for pid, command in sorted(left.items()))
        print(f"\ntests left processes running (now stopped): {listing}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def jack_server() -> Iterator[JackServer]:
    """A private ``jackd -d dummy`` for the whole session (skips the test without jackd)."""
    yield from session_jack_server()


@pytest.fixture
def call_phrase() -> list[Timed]:
    """A short phrase recorded by hand: 14 notes, sustain pedal, human timing."""
    return recorded_call()


@pytest.fixture
def probe(daemon: DaemonProcess, port_name: str) -> Iterator[MidiProbe]:
    """A client wired to the module's ``daemon`` (named by its ``port_name`` fixture): it plays
    into the daemon's input and hears its output."""
    names = virtual_port_names("jack", port_name)
    client = MidiProbe("jack", names.input_listed, names.output_listed, name=port_name + "P")
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def osc_port() -> int:
    """A UDP port free on this machine now, for a daemon's OSC server."""
    return free_udp_port()


@pytest.fixture
def listener() -> Iterator[OscListener]:
    """An OSC client that hears a daemon's status and feedback, closed afterwards."""
    ears = OscListener()
    try:
        yield ears
    finally:
        ears.close()
