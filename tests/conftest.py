"""Shared fixtures. JACK ones come from tests/jack_server.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from antiphon.daemon.midi.port_names import virtual_port_names
from antiphon.daemon.tools.jack_server import JackServer
from antiphon.daemon.tools.probe import DaemonProcess, MidiProbe, Timed

from tests.jack_server import recorded_call, session_jack_server


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
