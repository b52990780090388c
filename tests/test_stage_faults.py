"""Faults on stage, each with real parts: ``antiphon run`` as a process on a real JACK server.

The output device vanishing in the middle of a reply, the input device vanishing with keys
held, the daemon killed (SIGKILL) while recording. (The OSC flood at the same time as a MIDI
flood is in ``antiphon bench --fuzz``, which reports the reaction under it.)
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import mido
import pytest
from antiphon.daemon.midi.port_names import virtual_port_names
from antiphon.daemon.midi.ports import MidiInput, MidiOutput
from antiphon.daemon.settings import PIANO_MODEL
from antiphon.daemon.tools.jack_server import JackServer
from antiphon.daemon.tools.probe import (
    DaemonProcess,
    MidiProbe,
    Timed,
    human_phrase,
    note_ons,
    sounding_notes,
)

from tests.jack_server import wait_for

pytestmark = [pytest.mark.jack, pytest.mark.system]

PHRASE_GAP_S = 0.35
WAIT_S = 10.0  # generous: a loaded 2-core machine; a passing test waits only as long as needed


def daemon_args(port_name: str, *extra: str) -> list[str]:
    return [
        *("--midi-api", "jack", "--seed", "1", "--osc-port", "0", "--port-name", port_name),
        *("--model", str(PIANO_MODEL), "--phrase-gap", str(PHRASE_GAP_S), *extra),
        *("--turns", "gap"),
    ]


def _play_on(output: MidiOutput, phrase: list[Timed]) -> None:
    start_s = time.monotonic()
    for timed in phrase:
        time.sleep(max(0.0, start_s + timed.time_s - time.monotonic()))
        output.send(timed.message)


class Synth:
    """A sound module on JACK: a MIDI input that keeps what it hears, unplugged and back."""

    def __init__(self, name: str) -> None:
        self.names = virtual_port_names("jack", name)
        self.heard: list[Timed] = []
        self._port: MidiInput | None = None

    def plug_in(self) -> None:
        self._port = MidiInput("jack", self.names, self._hear)
        self._port.open()

    def unplug(self) -> None:
        if self._port is not None:
            self._port.close()
            self._port = None

    def _hear(self, message: mido.Message, time_s: float) -> None:
        self.heard.append(Timed(time_s, message))


def test_an_output_device_back_after_vanishing_mid_reply_has_its_notes_ended(
    jack_server: JackServer,
) -> None:
    synth = Synth("FaultSynth")
    synth.plug_in()
    daemon = DaemonProcess(
        daemon_args("FaultOut", "--output-port", "FaultSynth", "--reply-max-s", "1.5")
    ).start()
    keys = MidiOutput("jack", virtual_port_names("jack", "FaultKeys"), pattern="FaultOut-in:in")
    try:
        keys.open()
        _play_on(keys, human_phrase(random.Random(4), notes=12))
        # Pulled out while the reply has notes sounding on it.
        assert wait_for(lambda: bool(sounding_notes(synth.heard)), WAIT_S), daemon.log()
        synth.unplug()
        left_sounding = sounding_notes(synth.heard)
        assert left_sounding
        assert wait_for(lambda: "is gone" in daemon.log(), WAIT_S), daemon.log()
        # The reply ends while the device is away: its note-offs go nowhere.
        assert wait_for(lambda: "stage.live: reply " in daemon.log(), WAIT_S), daemon.log()
        synth.plug_in()
        assert wait_for(lambda: "is back" in daemon.log(), WAIT_S), daemon.log()
        assert wait_for(lambda: not sounding_notes(synth.heard), WAIT_S), (
            left_sounding,
            daemon.log(),
        )
        assert daemon.running()
    finally:
        keys.close()
        daemon.stop()
        synth.unplug()


def test_keys_held_on_an_input_device_that_vanishes_end_the_call(
    jack_server: JackServer,
) -> None:
    keyboard = MidiOutput("jack", virtual_port_names("jack", "HeldKeys"))
    keyboard.open()
    # A held key's own timeout must not be what ends the call here.
    daemon = DaemonProcess(
        daemon_args("HeldIn", "--input-port", "HeldKeys", "--held-key-timeout-s", "60")
    ).start()
    names = virtual_port_names("jack", "HeldIn")
    listener = MidiProbe("jack", names.input_listed, names.output_listed, name="HeldEar")
    try:
        for pitch in (60, 64, 67):
            keyboard.send(mido.Message("note_on", note=pitch, velocity=80))
            time.sleep(0.05)
        time.sleep(PHRASE_GAP_S + 0.3)
        assert not note_ons(listener.received())  # keys still held: no answer yet
        keyboard.close()  # unplugged with three keys down
        assert listener.wait_until(lambda got: bool(note_ons(got)), WAIT_S), daemon.log()
        assert listener.wait_until(lambda got: not sounding_notes(got), WAIT_S), daemon.log()
        assert daemon.running()
    finally:
        listener.close()
        daemon.stop()
        keyboard.close()


def test_a_recording_killed_mid_session_opens_and_holds_what_came_before(
    jack_server: JackServer, tmp_path: Path
) -> None:
    daemon = DaemonProcess(
        daemon_args("Killed", "--record", str(tmp_path), "--reply-max-s", "1.5")
    ).start()
    names = virtual_port_names("jack", "Killed")
    probe = MidiProbe("jack", names.input_listed, names.output_listed, name="KilledProbe")
    try:
        call = human_phrase(random.Random(2), notes=5)
        probe.play(call)
        assert probe.wait_until(lambda got: bool(note_ons(got)), WAIT_S), daemon.log()
        assert probe.wait_until(lambda got: not sounding_notes(got), WAIT_S), daemon.log()
        replied = len(note_ons(probe.received()))
        time.sleep(2.0 + 1.0)  # a rewrite of the file (every 2 s) after the reply
        probe.play(human_phrase(random.Random(3), notes=5))  # in the middle of this: killed
        assert daemon.kill() == -9
    finally:
        probe.close()
        daemon.stop()
    files = sorted(tmp_path.glob("*.mid"))
    assert len(files) == 1, list(tmp_path.iterdir())
    recording = mido.MidiFile(files[0])
    player, antiphon = (
        [m for m in track if m.type == "note_on" and m.velocity > 0] for track in recording.tracks
    )
    call_notes = [t.message.note for t in call if t.message.type == "note_on"]
    assert [m.note for m in player][: len(call_notes)] == call_notes
    assert len(antiphon) >= replied
