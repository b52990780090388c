"""Shared fixtures. JACK ones come from tests/jack_server.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from antiphon.daemon.tools.jack_server import JackServer
from antiphon.daemon.tools.probe import Timed

from tests.jack_server import recorded_call, session_jack_server


@pytest.fixture(scope="session")
def jack_server() -> Iterator[JackServer]:
    """A private ``jackd -d dummy`` for the whole session (skips the test without jackd)."""
    yield from session_jack_server()


@pytest.fixture
def call_phrase() -> list[Timed]:
    """A short phrase recorded by hand: 14 notes, sustain pedal, human timing."""
    return recorded_call()
