"""A real JACK server for the tests: one per session, private to it, always stopped.

The server itself (``jackd -S --no-realtime -d dummy``, a unique name) is
:class:`antiphon.daemon.tools.jack_server.JackServer`, shared with ``antiphon bench``. Here it
becomes a
session fixture: skipped with the reason when jackd is not installed, and this process's
``JACK_DEFAULT_SERVER`` pointed at it while it runs, so the tests' own rtmidi clients and the
daemons they start all meet on it and on nothing else.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import mido
import pytest
from antiphon.daemon.tools.jack_server import JackServer, jackd_available
from antiphon.daemon.tools.probe import Timed, load_phrase

DATA = Path(__file__).parent / "data"
# Tests check behaviour, not timing. In synchronous mode a late client delays the cycle
# instead of losing its MIDI, so the tests can run at the bench's period.
TEST_PERIOD_FRAMES = 128
CALL_MIDI = DATA / "call.mid"  # 14 notes played by hand, with pedal, 2.7 s


def session_jack_server() -> Iterator[JackServer]:
    """Start the server, point this process at it, and stop it afterwards whatever happens."""
    if not jackd_available():
        pytest.skip("jackd is not installed (Debian: apt-get install jackd2); JACK tests need it")
    server = JackServer(period_frames=TEST_PERIOD_FRAMES).start()
    try:
        with server.as_default():
            yield server
    finally:
        server.stop()


def steady_eighths(count: int) -> list[Timed]:
    """``count`` notes 0.3 s apart (eighths at 100 bpm), each held 0.2 s: a player's steady
    beat for the tracker to hear."""
    phrase = [
        Timed(0.3 * k, mido.Message("note_on", note=62 + k % 5, velocity=80)) for k in range(count)
    ]
    phrase += [Timed(t.time_s + 0.2, mido.Message("note_off", note=t.message.note)) for t in phrase]
    return sorted(phrase, key=lambda t: t.time_s)


def recorded_call() -> list[Timed]:
    return load_phrase(CALL_MIDI)


def wait_for(condition: Callable[[], bool], timeout_s: float) -> bool:
    """Whether ``condition`` came true within ``timeout_s`` (a passing test waits only as long
    as it takes)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True
