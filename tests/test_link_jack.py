"""Antiphon as the tempo source, through real parts: the daemon as a process, a JACK MIDI
listener on its output, and a real Ableton Link peer in a process of its own.

Behaviour only (timing figures are ``antiphon bench link``'s): the daemon joins the peer's
session and passes its tempo on as MIDI clock, about 24 ticks a beat after a Start; it leads
with the player's tempo, which a Link peer then sees; switched off, it sends Stop.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator

import pytest
from antiphon.daemon.midi.port_names import virtual_port_names
from antiphon.daemon.midi.ports import MidiInput
from antiphon.daemon.musician.clocks.link_clock import link_installed
from antiphon.daemon.settings import PIANO_MODEL
from antiphon.daemon.tools.jack_server import JackServer
from antiphon.daemon.tools.link_peer import LinkPeer, link_peer
from antiphon.daemon.tools.probe import DaemonProcess, MidiProbe, Timed

from tests.jack_server import steady_eighths, wait_for
from tests.test_osc import OscListener, oscsend

pytestmark = [pytest.mark.jack, pytest.mark.system]
needs_link = pytest.mark.skipif(not link_installed(), reason="the link extra is not installed")

TICKS_PER_BEAT = 24
FIND_TIMEOUT_S = 10.0
HEAR_TIMEOUT_S = 10.0


def daemon_args(port_name: str, osc_port: int, *extra: str) -> list[str]:
    return [
        *("--midi-api", "jack", "--seed", "3", "--osc-port", str(osc_port)),
        *("--port-name", port_name, "--model", str(PIANO_MODEL), "--mode", "listen"),
        *extra,
    ]


@pytest.fixture
def port_name() -> str:
    return f"Lead{int(time.monotonic() * 1000) % 10**6}"


@pytest.fixture
def peer() -> Iterator[LinkPeer]:
    with link_peer(100.0) as running:
        yield running


def clock_messages(probe: MidiProbe, kind: str) -> list[Timed]:
    return [t for t in probe.all_received() if t.message.type == kind]


def ticks_per_beat(probe: MidiProbe, beat_s: float, over_s: float) -> float:
    """How many ticks of the last ``over_s`` seconds a beat of ``beat_s`` holds: ``beat_s``
    over the median time 24 ticks took (a median: on a loaded machine a late tick and the
    burst after it change a few spans, not the figure)."""
    time.sleep(over_s)
    now_s = time.monotonic()
    ticks = [t.time_s for t in clock_messages(probe, "clock") if t.time_s > now_s - over_s]
    spans = [b - a for a, b in zip(ticks, ticks[TICKS_PER_BEAT:], strict=False)]
    assert spans, "no ticks heard"
    return TICKS_PER_BEAT * beat_s / statistics.median(spans)


@needs_link
def test_the_daemon_joins_the_link_session_and_bridges_it_to_midi_clock(
    jack_server: JackServer,
    port_name: str,
    osc_port: int,
    listener: OscListener,
    peer: LinkPeer,
) -> None:
    daemon = DaemonProcess(
        daemon_args(port_name, osc_port, "--clock", "link", "--clock-out", "midi")
    ).start()
    try:
        names = virtual_port_names("jack", port_name)
        probe = MidiProbe("jack", names.input_listed, names.output_listed, name=port_name + "P")
        try:
            assert peer.wait_for_peers(FIND_TIMEOUT_S), daemon.log()
            peer.ask("tempo 100")
            assert wait_for(lambda: bool(clock_messages(probe, "start")), HEAR_TIMEOUT_S)
            start = clock_messages(probe, "start")[0]
            assert clock_messages(probe, "songpos")[0].message.pos == 0
            # Start lands on one of the peer's beats (an eighth of a beat allowed for the
            # JACK period and the machine's load: this is about the beat, not the timing).
            state = peer.ask("state")
            beat = state["beat"] + (start.time_s - state["time_s"]) / 0.6
            assert abs(beat - round(beat)) < 0.125
            assert ticks_per_beat(probe, 0.6, 3.0) == pytest.approx(TICKS_PER_BEAT, abs=1.5)
            status = listener.status(osc_port)
            assert status["/antiphon/status/link_peers"] >= 1
            assert status["/antiphon/status/clock_out_bpm"] == pytest.approx(100.0, abs=0.01)

            peer.ask("tempo 133")
            time.sleep(1.0)  # the performer passes a new tempo on within half a second
            assert ticks_per_beat(probe, 60 / 133, 3.0) == pytest.approx(TICKS_PER_BEAT, abs=1.5)

            oscsend(osc_port, "/antiphon/clock_out", "s", "off")
            assert wait_for(lambda: bool(clock_messages(probe, "stop")), HEAR_TIMEOUT_S)
            stop_s = clock_messages(probe, "stop")[0].time_s
            time.sleep(0.5)
            assert not [t for t in clock_messages(probe, "clock") if t.time_s > stop_s]
        finally:
            probe.close()
    finally:
        daemon.stop()


@needs_link
def test_the_player_leads_the_midi_clock_and_the_link_session(
    jack_server: JackServer,
    port_name: str,
    osc_port: int,
    listener: OscListener,
    peer: LinkPeer,
) -> None:
    """Steady eighths at 100 bpm (0.3 s apart): the outgoing clock runs at 100 bpm, and the
    Link peer, which started the session at 120, sees 100 too."""
    peer.ask("tempo 120")
    args = ("--clock", "player", "--clock-out", "both", "--clock-out-follow", "1")
    daemon = DaemonProcess(daemon_args(port_name, osc_port, *args)).start()
    names = virtual_port_names("jack", port_name)
    probe = MidiProbe("jack", names.input_listed, names.output_listed, name=port_name + "P")
    try:
        assert peer.wait_for_peers(FIND_TIMEOUT_S), daemon.log()
        probe.play(steady_eighths(40))
        assert clock_messages(probe, "start"), daemon.log()
        assert ticks_per_beat(probe, 0.6, 3.0) == pytest.approx(TICKS_PER_BEAT, rel=0.05)
        status = listener.status(osc_port)
        assert status["/antiphon/status/clock_out_bpm"] == pytest.approx(100.0, rel=0.03)
        assert peer.ask("state")["tempo_bpm"] == pytest.approx(
            status["/antiphon/status/clock_out_bpm"], abs=0.01
        )
        # The player stops: the clock holds its tempo and goes on.
        held = ticks_per_beat(probe, 0.6, 2.0)
        assert held == pytest.approx(TICKS_PER_BEAT, rel=0.05)
    finally:
        probe.close()
        daemon.stop()


def test_midi_clock_goes_out_on_a_port_of_its_own_and_stops_with_the_daemon(
    jack_server: JackServer, port_name: str, osc_port: int
) -> None:
    """``--clock-out-port``: the clock on its own port (connected to a listener), none on the
    replies' output; the daemon's exit sends Stop."""
    heard: list[Timed] = []
    names = virtual_port_names("jack", port_name + "L")
    ears = MidiInput("jack", names, lambda m, t: heard.append(Timed(t, m)))
    ears.open()
    try:
        args = ("--clock-out", "midi", "--clock-out-port", names.input_listed)
        daemon = DaemonProcess(daemon_args(port_name, osc_port, *args)).start()
        own = virtual_port_names("jack", port_name)
        probe = MidiProbe("jack", own.input_listed, own.output_listed, name=port_name + "P")
        try:
            probe.play(steady_eighths(24))
            assert wait_for(lambda: any(t.message.type == "start" for t in heard), 5.0)
            assert wait_for(lambda: sum(t.message.type == "clock" for t in heard) > 48, 5.0)
            assert not clock_messages(probe, "clock")
            assert not clock_messages(probe, "start")
        finally:
            probe.close()
            daemon.stop()
        assert heard[-1].message.type == "stop", daemon.log()
    finally:
        ears.close()
