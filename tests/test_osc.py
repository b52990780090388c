"""The OSC control surface over real UDP, driven by liblo's ``oscsend`` (an independent client).

Two kinds of test:

- In this process: :class:`~antiphon.daemon.surface.osc.OscControl` on a real socket drives a real
  :class:`~antiphon.daemon.musician.playing.performer.Performer` and engine on a simulated clock,
  so what a
  parameter
  does to the music can be measured exactly (the same seed gives the same reply).
- Against ``antiphon run`` as a process on real JACK MIDI ports, played by a real rtmidi
  client: every address, the status reply, the feedback address, every kind of bad datagram,
  the allowlist, state slots and the model switch.

Status and feedback are received by a python-osc server, the controller's side.
"""

from __future__ import annotations

import math
import shutil
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import mido
import numpy as np
import pytest
from antiphon.daemon.midi.port_names import virtual_port_names
from antiphon.daemon.musician.model.engine import Engine
from antiphon.daemon.musician.playing.performer import ManualClock, Performer
from antiphon.daemon.settings import PIANO_MODEL, Settings
from antiphon.daemon.surface.mapping import CcControl, ControlMapping, parse_mapping
from antiphon.daemon.surface.osc import (
    OscControl,
    OscError,
    control_services,
    encode,
    parse_host_port,
)
from antiphon.daemon.surface.vocabulary import ControlError
from antiphon.daemon.tools.jack_server import JackServer
from antiphon.daemon.tools.probe import DaemonProcess, MidiProbe, Timed, note_ons, sounding_notes
from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.osc_server import BlockingOSCUDPServer

from tests.test_performer import SCALE, ListSink, call_messages, finish, play

pytestmark = [
    pytest.mark.osc,
    pytest.mark.skipif(shutil.which("oscsend") is None, reason="needs oscsend (liblo-tools)"),
]

WAIT_S = 5.0
PHRASE_GAP_S = 0.35
REPLY_MAX_S = 2.0


def free_udp_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def oscsend(port: int, address: str, types: str = "", *values: object) -> None:
    """Send one message with liblo's oscsend, as a controller on this machine would."""
    command = ["oscsend", "127.0.0.1", str(port), address]
    if types:
        command += [types, *(str(v) for v in values)]
    subprocess.run(command, check=True, timeout=WAIT_S, capture_output=True)


def message(address: str, *args: Any) -> bytes:
    builder = OscMessageBuilder(address)
    for arg in args:
        builder.add_arg(arg)
    return builder.build().dgram


class OscListener:
    """A python-osc server that keeps every message it gets, in order: the controller's ears.

    Bundles are opened by python-osc's dispatcher; each message lands in :attr:`heard`.
    """

    def __init__(self, host: str = "127.0.0.1") -> None:
        dispatcher = Dispatcher()
        dispatcher.set_default_handler(self._hear)
        self.host = host
        self.heard: list[tuple[str, tuple[Any, ...]]] = []
        self._changed = threading.Condition()
        self.server = BlockingOSCUDPServer((host, 0), dispatcher)
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,))
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def address(self) -> str:
        """HOST:PORT, as ``--osc-feedback`` takes it."""
        return f"{self.host}:{self.port}"

    def _hear(self, address: str, *args: Any) -> None:
        with self._changed:
            self.heard.append((address, args))
            self._changed.notify_all()

    def wait_for(
        self, address: str, check: Callable[[tuple[Any, ...]], bool] = lambda args: True
    ) -> tuple[Any, ...]:
        """The arguments of the first message heard at ``address`` that passes ``check``."""
        deadline = time.monotonic() + WAIT_S
        with self._changed:
            while True:
                for heard_address, args in self.heard:
                    if heard_address == address and check(args):
                        return args
                left_s = deadline - time.monotonic()
                if left_s <= 0:
                    raise AssertionError(f"nothing at {address} in {WAIT_S} s; heard {self.heard}")
                self._changed.wait(left_s)

    def clear(self) -> None:
        with self._changed:
            self.heard.clear()

    def send(self, port: int, data: bytes, host: str = "127.0.0.1") -> None:
        """Send from this server's own socket (so an answer to the sender comes back here)."""
        self.server.socket.sendto(data, (host, port))

    def status(self, port: int) -> dict[str, Any]:
        """Ask for the status with oscsend, the answer addressed to this listener's port."""
        self.clear()
        oscsend(port, "/antiphon/status", "i", self.port)
        self.wait_for("/antiphon/status/osc/dropped")  # the last message of the bundle
        with self._changed:
            return {address: args[0] if len(args) == 1 else args for address, args in self.heard}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join()


def close_to(expected: float) -> Callable[[tuple[Any, ...]], bool]:
    return lambda args: len(args) == 1 and math.isclose(args[0], expected, rel_tol=1e-6)


# In this process: a real performer on a simulated clock --------------------------------------


class Rig:
    """OscControl on a free port, a Performer and engine on a manual clock, a list as output."""

    def __init__(self, listener: OscListener, seed: int, mapping: ControlMapping, **values: Any):
        self.engine = Engine(PIANO_MODEL, seed=seed)
        self.clock = ManualClock()
        self.sink = ListSink(self.clock)
        self.settings = Settings(
            model=str(PIANO_MODEL),
            osc_port=free_udp_port(),
            osc_feedback=listener.address,
            **values,
        )
        self.performer = Performer(self.settings, self.engine, self.sink, clock=self.clock)
        self.control = OscControl(self.settings, self.performer, mapping)
        self.control.start()
        self.port = self.control.address[1]

    def close(self) -> None:
        self.control.stop()
        self.performer.close()


@pytest.fixture
def rigs(listener: OscListener) -> Iterator[Callable[..., Rig]]:
    made: list[Rig] = []

    def make(seed: int = 0, mapping: ControlMapping | None = None, **values: Any) -> Rig:
        made.append(Rig(listener, seed, mapping or ControlMapping(), **values))
        return made[-1]

    try:
        yield make
    finally:
        for rig in made:
            rig.close()


def entropy(probabilities: np.ndarray) -> float:
    p = probabilities[probabilities > 0]
    return float(-(p * np.log(p)).sum())


def test_temperature_from_oscsend_reaches_the_engine_and_sharpens_its_choices(
    rigs: Callable[..., Rig], listener: OscListener
) -> None:
    rig = rigs(mode="listen")
    play(rig.performer, call_messages(SCALE))
    finish(rig.performer)
    entropies = []
    for temperature in (3.0, 1.0, 0.05):
        oscsend(rig.port, "/antiphon/temperature", "f", temperature)
        listener.wait_for("/antiphon/temperature", close_to(temperature))
        rig.performer.process_until(rig.clock.now_s + 0.01)  # the next event applies it
        assert rig.engine.temperature == pytest.approx(temperature)
        entropies.append(entropy(rig.engine.probabilities()))
    assert entropies[0] > entropies[1] > entropies[2]


def reply_messages(rig: Rig) -> list[str]:
    play(rig.performer, call_messages(SCALE))
    finish(rig.performer)
    return [str(m) for _, m in rig.sink.sent]


def test_noise_from_oscsend_moves_the_reply_away_from_the_noise_free_one(
    rigs: Callable[..., Rig], listener: OscListener
) -> None:
    reference = reply_messages(rigs(seed=3))
    replies = {}
    for noise in (0.0, 1.0):
        rig = rigs(seed=3)
        listener.clear()
        oscsend(rig.port, "/antiphon/noise", "f", noise)
        listener.wait_for("/antiphon/noise", close_to(noise))
        replies[noise] = reply_messages(rig)
    assert replies[0.0] == reference
    differing = sum(a != b for a, b in zip(replies[1.0], reference, strict=False))
    assert differing > len(reference) // 4


def test_a_change_during_a_reply_applies_at_the_next_event_and_strands_no_note(
    rigs: Callable[..., Rig], listener: OscListener
) -> None:
    rig = rigs(reply_min_notes=12, reply_max_s=300.0)
    performer, sink = rig.performer, rig.sink
    play(performer, call_messages(SCALE))
    while len(sink.note_ons()) < 3:
        performer.process_until(performer.next_due_s() or rig.clock.now_s)
    assert performer.replying
    oscsend(rig.port, "/antiphon/temperature", "f", 0.2)
    oscsend(rig.port, "/antiphon/output_channel", "i", 7)
    listener.wait_for("/antiphon/output_channel", lambda args: args == (7,))
    performer.process_until(performer.next_due_s() or rig.clock.now_s)
    assert rig.engine.temperature == pytest.approx(0.2)
    finish(performer)
    # The reply that was playing kept its channel to the end; nothing is left sounding.
    assert {m.channel for _, m in sink.sent if m.type == "note_on"} == {0}
    assert sink.sounding() == set()
    sink.sent.clear()
    play(performer, call_messages([(p, t + 60, u + 60) for p, t, u in SCALE]))
    finish(performer)
    assert {m.channel for _, m in sink.sent if m.type == "note_on"} == {6}


def test_range_and_dynamics_from_oscsend_shape_the_next_reply(
    rigs: Callable[..., Rig], listener: OscListener
) -> None:
    plain = rigs(seed=5, follow=0.0, range_low=66, range_high=71)
    play(plain.performer, call_messages(SCALE))
    finish(plain.performer)
    rig = rigs(seed=5, follow=0.0)
    oscsend(rig.port, "/antiphon/range_low", "i", 66)
    oscsend(rig.port, "/antiphon/range_high", "i", 71)
    oscsend(rig.port, "/antiphon/dynamics", "i", 30)
    listener.wait_for("/antiphon/dynamics", lambda args: args == (30,))
    play(rig.performer, call_messages(SCALE))
    finish(rig.performer)
    ons = [m for _, m in rig.sink.sent if m.type == "note_on" and m.velocity > 0]
    assert ons and all(66 <= m.note <= 71 for m in ons)
    # The same notes as a reply started with that range, each 30 velocity levels louder.
    plain_ons = [m for _, m in plain.sink.sent if m.type == "note_on" and m.velocity > 0]
    assert [m.note for m in ons] == [m.note for m in plain_ons]
    assert [m.velocity for m in ons] == [min(127, m.velocity + 30) for m in plain_ons]
    assert rig.sink.sounding() == set()


def test_memory_clear_from_oscsend_empties_the_memory_of_the_player(
    rigs: Callable[..., Rig], listener: OscListener
) -> None:
    rig = rigs(mirror=0.5)
    play(rig.performer, call_messages(SCALE))
    finish(rig.performer)
    assert rig.performer.status()["memory_notes"] > 0
    oscsend(rig.port, "/antiphon/memory/clear")
    deadline_s = time.monotonic() + WAIT_S
    while rig.performer.status()["memory_notes"] and time.monotonic() < deadline_s:
        rig.performer.process_until(rig.clock.now_s + 0.01)  # the command runs at the next turn
        time.sleep(0.01)
    listener.wait_for("/antiphon/event", lambda args: args == ("memory cleared",))
    assert rig.performer.status()["memory_notes"] == 0


MAPPING = parse_mapping(
    {
        "osc": {"/1/fader1": {"parameter": "temperature", "range": [0.1, 2.1]}},
        "cc": {"74": {"parameter": "noise"}},
    }
)


def test_mapped_fader_and_cc_change_parameters_and_the_feedback_follows(
    rigs: Callable[..., Rig], listener: OscListener
) -> None:
    rig = rigs(mapping=MAPPING, temperature=0.7)
    # Start-up: the values from the command line go out at once.
    listener.wait_for("/antiphon/temperature", close_to(0.7))
    listener.clear()
    oscsend(rig.port, "/1/fader1", "f", 0.25)
    listener.wait_for("/antiphon/temperature", close_to(0.6))
    listener.wait_for("/1/fader1", close_to(0.25))
    assert rig.performer.parameters.temperature == pytest.approx(0.6)
    CcControl(MAPPING, rig.performer)(mido.Message("control_change", control=74, value=127), 0.0)
    listener.wait_for("/antiphon/noise", close_to(1.0))
    assert rig.performer.parameters.noise == 1.0


def test_the_server_stops_cleanly_and_its_port_is_free_again(
    rigs: Callable[..., Rig], listener: OscListener
) -> None:
    rig = rigs()
    rig.control.stop()
    rig.control.stop()  # twice is fine
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as again:
        again.bind(("127.0.0.1", rig.port))
    assert not any(t.name.startswith("osc-") for t in threading.enumerate())


def test_a_port_in_use_is_a_one_line_error(rigs: Callable[..., Rig]) -> None:
    rig = rigs()
    second = OscControl(rig.settings, rig.performer, ControlMapping())
    with pytest.raises(OscError, match=f"cannot listen for OSC on 127.0.0.1:{rig.port}: "):
        second.start()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("9001", "expected HOST:PORT"),
        ("localhost:0", "expected HOST:PORT"),
        ("localhost:http", "expected HOST:PORT"),
        ("no-such-host.invalid:9001", "cannot resolve 'no-such-host.invalid'"),
    ],
)
def test_a_bad_feedback_address_is_a_one_line_error(text: str, problem: str) -> None:
    with pytest.raises(OscError, match=problem):
        parse_host_port(text)
    assert parse_host_port("[::1]:9001") == ("::1", 9001)


def test_mapped_ccs_work_with_osc_off_and_may_not_take_the_end_phrase_cc(
    rigs: Callable[..., Rig], tmp_path: Path
) -> None:
    rig = rigs()
    mapping = tmp_path / "knobs.toml"
    mapping.write_text('[cc.74]\nparameter = "noise"\n')
    taps: list[Callable[[Any, float], None]] = []
    settings = Settings(model=str(PIANO_MODEL), osc_port=0, mapping=str(mapping))
    assert control_services(settings, rig.performer, taps) == []
    [tap] = taps
    tap(mido.Message("control_change", channel=9, control=74, value=127), 0.0)
    assert rig.performer.parameters.noise == 1.0
    clash = Settings(model=str(PIANO_MODEL), mapping=str(mapping), end_phrase_cc=74)
    with pytest.raises(ControlError, match=r"cc\.74 is the end_phrase_cc"):
        control_services(clash, rig.performer, [])


# Against a running daemon on JACK ---------------------------------------------------------------


class Daemon:
    """``antiphon run`` with OSC on a free port and feedback to ``listener``."""

    def __init__(self, name: str, models: Path, listener: OscListener, *extra: str) -> None:
        self.name = name
        self.port = free_udp_port()
        self.models = models
        self.process = DaemonProcess(
            [
                *("--midi-api", "jack", "--port-name", name, "--seed", "1"),
                *("--model", str(models / "a.onnx"), "--models-dir", str(models)),
                *("--phrase-gap", str(PHRASE_GAP_S), "--reply-max-s", str(REPLY_MAX_S)),
                *("--turns", "gap"),
                *("--osc-port", str(self.port), "--osc-feedback", listener.address),
                *extra,
            ]
        ).start()

    def stop(self) -> None:
        self.process.stop()


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("osc")
    (root / "models").mkdir()
    for name in ("models/a.onnx", "models/b.onnx", "outside.onnx"):
        shutil.copyfile(PIANO_MODEL, root / name)
    return root / "models"


@pytest.fixture(scope="module")
def feedback() -> Iterator[OscListener]:
    ears = OscListener()
    try:
        yield ears
    finally:
        ears.close()


@pytest.fixture(scope="module")
def asker() -> Iterator[OscListener]:
    """Asks for the status and hears the answers (and nothing else, unlike ``feedback``)."""
    ears = OscListener()
    try:
        yield ears
    finally:
        ears.close()


@pytest.fixture(scope="module")
def daemon(jack_server: JackServer, models: Path, feedback: OscListener) -> Iterator[Daemon]:
    running = Daemon("OscT", models, feedback)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def probe(daemon: Daemon) -> Iterator[MidiProbe]:
    names = virtual_port_names("jack", daemon.name)
    client = MidiProbe("jack", names.input_listed, names.output_listed, name="OscProbe")
    try:
        yield client
    finally:
        client.close()


BASELINE: dict[str, float | int | str] = {
    "/antiphon/temperature": 1.0,
    "/antiphon/noise": 0.0,
    "/antiphon/follow": Settings().follow,
    "/antiphon/mirror": Settings().mirror,
    "/antiphon/range_low": 0,
    "/antiphon/range_high": 127,
    "/antiphon/density": 1.0,
    "/antiphon/dynamics": 0,
    "/antiphon/mode": "call_response",
    "/antiphon/phrase_gap": PHRASE_GAP_S,
    "/antiphon/reply_ratio": 1.0,
    "/antiphon/reply_min_notes": 4,
    "/antiphon/reply_max_notes": 64,
    "/antiphon/reply_max_s": REPLY_MAX_S,
    "/antiphon/output_channel": 1,
    "/antiphon/thru": False,
    "/antiphon/overlap": False,
    "/antiphon/max_note_s": 5.0,
    # These tests are about control, not the beat: replies start when the call ends.
    "/antiphon/clock": "off",
    "/antiphon/groove": 1.0,
    "/antiphon/reply_start": "beat",
}


@pytest.fixture
def baseline(daemon: Daemon, feedback: OscListener, asker: OscListener) -> Daemon:
    """The daemon with every parameter back at its start value (one bundle; the beat off),
    no reply left playing from the test before (panic), feedback cleared."""
    asker.send(daemon.port, message("/antiphon/panic"))
    asker.send(daemon.port, encode([(a, [v]) for a, v in BASELINE.items()]))
    status = asker.status(daemon.port)
    assert {a: status[a] for a in BASELINE} == pytest.approx(BASELINE)
    feedback.clear()
    return daemon


# (address, oscsend types, value, what status says afterwards)
EVERY_PARAMETER = [
    ("/antiphon/temperature", "f", 0.5, 0.5),
    ("/antiphon/noise", "f", 0.25, 0.25),
    ("/antiphon/follow", "f", 0.8, 0.8),
    ("/antiphon/mirror", "f", 0.5, 0.5),
    ("/antiphon/range_low", "i", 40, 40),
    ("/antiphon/range_high", "i", 90, 90),
    ("/antiphon/density", "f", 2.0, 2.0),
    ("/antiphon/dynamics", "i", -10, -10),
    ("/antiphon/mode", "s", "listen", "listen"),
    ("/antiphon/phrase_gap", "f", 0.5, 0.5),
    ("/antiphon/reply_ratio", "f", 2.0, 2.0),
    ("/antiphon/reply_min_notes", "i", 2, 2),
    ("/antiphon/reply_max_notes", "i", 20, 20),
    ("/antiphon/reply_max_s", "f", 3.0, 3.0),
    ("/antiphon/output_channel", "i", 4, 4),
    ("/antiphon/thru", "T", None, True),
    ("/antiphon/overlap", "T", None, True),
    ("/antiphon/max_note_s", "f", 2.0, 2.0),
    ("/antiphon/clock", "s", "midi", "midi"),
    ("/antiphon/groove", "f", 0.5, 0.5),
    ("/antiphon/reply_start", "s", "bar", "bar"),
]


@pytest.mark.jack
@pytest.mark.system
@pytest.mark.parametrize(("address", "types", "value", "expected"), EVERY_PARAMETER)
def test_every_parameter_address_sets_its_value_as_status_and_feedback_show(
    baseline: Daemon,
    feedback: OscListener,
    asker: OscListener,
    address: str,
    types: str,
    value: object,
    expected: object,
) -> None:
    oscsend(baseline.port, address, types, *([] if value is None else [value]))
    feedback.wait_for(address, lambda args: args[0] == pytest.approx(expected))
    status = asker.status(baseline.port)
    assert status[address] == pytest.approx(expected)
    others = {a: v for a, v in BASELINE.items() if a != address}
    assert {a: status[a] for a in others} == pytest.approx(others)


@pytest.mark.jack
@pytest.mark.system
def test_status_answers_the_senders_own_port(baseline: Daemon, asker: OscListener) -> None:
    asker.clear()
    asker.send(baseline.port, message("/antiphon/status"))
    assert asker.wait_for("/antiphon/status/state") == ("listening",)
    assert asker.wait_for("/antiphon/temperature") == (1.0,)
    model = asker.wait_for("/antiphon/status/model")[0]
    assert model.endswith("a.onnx")


SHORT_CALL = [
    Timed(time_s, mido.Message(kind, note=60 + 2 * i, velocity=70))
    for i in range(5)
    for kind, time_s in (("note_on", 0.15 * i), ("note_off", 0.15 * i + 0.12))
]  # five notes, no pedal, 0.72 s


def play_short_call(probe: MidiProbe) -> float:
    """Play :data:`SHORT_CALL`; when its last message left."""
    return probe.play(SHORT_CALL)


@pytest.mark.jack
@pytest.mark.system
def test_listen_mode_from_oscsend_keeps_antiphon_quiet(baseline: Daemon, probe: MidiProbe) -> None:
    oscsend(baseline.port, "/antiphon/mode", "s", "listen")
    ended_s = play_short_call(probe)
    time.sleep(PHRASE_GAP_S + 1.0)
    assert note_ons(probe.received(since_s=ended_s)) == []
    oscsend(baseline.port, "/antiphon/mode", "s", "call_response")
    probe.clear()
    play_short_call(probe)
    # The reply plays to its end, so that none of it reaches the next test's probe.
    assert probe.wait_until(
        lambda got: bool(note_ons(got)) and not sounding_notes(got),
        PHRASE_GAP_S + REPLY_MAX_S + 3.0,
    )
    time.sleep(0.3)


@pytest.mark.jack
@pytest.mark.system
def test_channel_length_and_thru_from_oscsend_shape_the_reply(
    baseline: Daemon, probe: MidiProbe
) -> None:
    oscsend(baseline.port, "/antiphon/output_channel", "i", 5)
    oscsend(baseline.port, "/antiphon/reply_min_notes", "i", 1)
    oscsend(baseline.port, "/antiphon/reply_max_notes", "i", 3)
    oscsend(baseline.port, "/antiphon/thru", "T")
    ended_s = play_short_call(probe)
    assert probe.wait_until(
        lambda got: any(t.message.channel == 4 for t in note_ons(got)) and not sounding_notes(got),
        PHRASE_GAP_S + REPLY_MAX_S + 3.0,
    )
    time.sleep(0.3)
    echoed = [t for t in note_ons(probe.received()) if t.time_s <= ended_s + 0.05]
    reply = [t for t in note_ons(probe.received()) if t.message.channel == 4]
    assert [t.message.note for t in echoed] == [t.message.note for t in note_ons(SHORT_CALL)]
    assert {t.message.channel for t in echoed} == {0}
    assert 1 <= len(reply) <= 3


@pytest.mark.jack
@pytest.mark.system
def test_panic_from_oscsend_silences_a_reply_at_once(
    baseline: Daemon, probe: MidiProbe, feedback: OscListener
) -> None:
    oscsend(baseline.port, "/antiphon/max_note_s", "f", 60.0)
    play_short_call(probe)
    assert probe.wait_until(lambda got: bool(sounding_notes(got)), PHRASE_GAP_S + 3.0)
    oscsend(baseline.port, "/antiphon/panic")
    assert probe.wait_until(
        lambda got: not sounding_notes(got) and any(is_all_notes_off(t.message) for t in got),
        1.0,
    )
    assert feedback.wait_for("/antiphon/event") == ("panic",)


def is_all_notes_off(message: mido.Message) -> bool:
    return message.type == "control_change" and message.control == 123


@pytest.mark.jack
@pytest.mark.system
def test_state_slots_reset_and_an_empty_slot(baseline: Daemon, feedback: OscListener) -> None:
    oscsend(baseline.port, "/antiphon/state/save", "i", 2)
    feedback.wait_for("/antiphon/event", lambda args: args == ("saved 2",))
    oscsend(baseline.port, "/antiphon/reset")
    feedback.wait_for("/antiphon/event", lambda args: args == ("reset",))
    oscsend(baseline.port, "/antiphon/state/load", "i", 2)
    feedback.wait_for("/antiphon/event", lambda args: args == ("loaded 2",))
    oscsend(baseline.port, "/antiphon/state/load", "i", 9)
    error = feedback.wait_for("/antiphon/error")[0]
    assert "slot 9 is empty" in error
    assert baseline.process.running()


@pytest.mark.jack
@pytest.mark.system
def test_model_switch_waits_for_the_reply_and_stays_in_the_models_folder(
    baseline: Daemon, probe: MidiProbe, feedback: OscListener, asker: OscListener
) -> None:
    oscsend(baseline.port, "/antiphon/model", "s", "../outside.onnx")
    feedback.wait_for("/antiphon/error", lambda args: "outside the models folder" in args[0])
    assert asker.status(baseline.port)["/antiphon/status/model"].endswith("a.onnx")
    feedback.clear()
    play_short_call(probe)
    assert probe.wait_until(lambda got: bool(sounding_notes(got)), PHRASE_GAP_S + 3.0)
    oscsend(baseline.port, "/antiphon/model", "s", "b.onnx")
    model = feedback.wait_for("/antiphon/status/model")[0]
    assert model.endswith("b.onnx")
    # The swap came after the reply ended, and the reply left nothing sounding.
    order = list(feedback.heard)
    listening = order.index(("/antiphon/status/state", ("listening",)))
    assert listening < next(i for i, (a, _) in enumerate(order) if a == "/antiphon/status/model")
    released = probe.wait_until(lambda got: not sounding_notes(got), REPLY_MAX_S + 1.0)
    assert released, f"stuck: {probe.received()}; feedback: {feedback.heard}"
    oscsend(baseline.port, "/antiphon/model", "s", "a")
    feedback.wait_for("/antiphon/status/model", lambda args: args[0].endswith("a.onnx"))


def bad_datagrams() -> list[tuple[str, bytes | list[str]]]:
    """Every kind of bad input: (what it is, raw bytes or oscsend's arguments)."""
    good = message("/antiphon/temperature", 0.3)
    framed = struct.pack(">i", len(good)) + good
    bad_bundle = (
        b"#bundle\x00" + b"\x00" * 7 + b"\x01" + framed
        + struct.pack(">i", 12) + message("/antiphon/noise", "x")[:12]
    )  # fmt: skip
    return [
        ("wrong type", ["/antiphon/temperature", "s", "hot"]),
        ("missing argument", ["/antiphon/temperature"]),
        ("extra argument", ["/antiphon/noise", "ff", "0.1", "0.2"]),
        ("NaN", ["/antiphon/temperature", "f", "nan"]),
        ("infinity", ["/antiphon/noise", "d", "inf"]),
        ("refused range", ["/antiphon/output_channel", "i", "99"]),
        ("unknown mode", ["/antiphon/mode", "s", "solo"]),
        ("unknown address", ["/antiphon/volume", "f", "1"]),
        ("oversized", message("/antiphon/model", "x" * 5000)),
        ("garbage", b"\xde\xad\xbe\xef" * 7),
        ("empty", b""),
        ("truncated", good[:-4]),
        ("negative bundle element", b"#bundle\x00" + b"\x00" * 8 + struct.pack(">i", -4)),
        ("bundle with one bad message", bad_bundle),
    ]


@pytest.mark.jack
@pytest.mark.system
def test_bad_datagrams_leave_the_daemon_running_and_its_parameters_unchanged(
    baseline: Daemon, feedback: OscListener, asker: OscListener
) -> None:
    before = asker.status(baseline.port)
    bad = bad_datagrams()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
        for _, datagram in bad:
            if isinstance(datagram, bytes):
                raw.sendto(datagram, ("127.0.0.1", baseline.port))
            else:
                oscsend(baseline.port, datagram[0], *datagram[1:])
    feedback.wait_for("/antiphon/error", lambda args: "refused" in args[0])  # reported there
    after = asker.status(baseline.port)
    assert baseline.process.running()
    assert {a: after[a] for a in BASELINE} == {a: before[a] for a in BASELINE}
    refused = after["/antiphon/status/osc/refused"] - before["/antiphon/status/osc/refused"]
    assert refused == len(bad)
    logged = [line for line in baseline.process.lines if "refused" in line]
    assert 1 <= len(logged) < len(bad)  # logged, at most once a second
    # Out of range where the policy clamps: applied, clamped, and reported.
    feedback.clear()
    oscsend(baseline.port, "/antiphon/temperature", "f", 99)
    feedback.wait_for("/antiphon/error", lambda args: "99.0 clamped to 5" in args[0])
    assert asker.status(baseline.port)["/antiphon/temperature"] == 5.0


@pytest.mark.jack
@pytest.mark.system
def test_a_bundle_timed_for_the_future_applies_at_once_and_whole(
    baseline: Daemon, asker: OscListener
) -> None:
    elements = [message("/antiphon/noise", 0.5), message("/antiphon/thru", True)]
    framed = b"".join(struct.pack(">i", len(e)) + e for e in elements)
    future = b"#bundle\x00\xff\xff\xff\xff\x00\x00\x00\x00" + framed  # the year 2036
    asker.send(baseline.port, future)
    status = asker.status(baseline.port)
    assert (status["/antiphon/noise"], status["/antiphon/thru"]) == (0.5, True)


@pytest.mark.jack
@pytest.mark.system
def test_a_sender_not_in_the_allowlist_is_dropped_and_counted(
    jack_server: JackServer, models: Path
) -> None:
    allowed = OscListener(host="127.0.0.2")  # loopback, but another address than oscsend's
    daemon = Daemon("OscAllow", models, allowed, "--osc-allow", "127.0.0.2/32")
    try:
        oscsend(daemon.port, "/antiphon/temperature", "f", 0.3)  # from 127.0.0.1
        allowed.clear()
        allowed.send(daemon.port, message("/antiphon/status"))
        allowed.wait_for("/antiphon/status/osc/dropped", lambda args: args == (1,))
        assert allowed.wait_for("/antiphon/temperature") == (1.0,)
        allowed.send(daemon.port, message("/antiphon/temperature", 0.3))
        allowed.wait_for("/antiphon/temperature", close_to(0.3))
    finally:
        daemon.stop()
        allowed.close()
