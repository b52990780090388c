"""Garbage on a real JACK input: the input is never left deaf, the daemon never falls over.

A sysex fragment with no end makes python-rtmidi's JACK backend hold back everything after
it; the input's guard ends it and the held-back messages are heard (late). The fuzz run puts
thousands of random events a second on the daemon's input between real calls
(:mod:`antiphon.daemon.tools.fuzz`); ``antiphon bench --fuzz`` runs it for longer.
"""

from __future__ import annotations

import random

import mido
import pytest
from antiphon.daemon.midi.port_names import virtual_port_names
from antiphon.daemon.midi.ports import MidiInput, MidiOutput
from antiphon.daemon.settings import PIANO_MODEL
from antiphon.daemon.tools.fuzz import fuzz_calls
from antiphon.daemon.tools.jack_server import JackServer
from antiphon.daemon.tools.probe import DaemonProcess, MidiProbe

from tests.jack_server import wait_for

pytestmark = [pytest.mark.jack]

PHRASE_GAP_S = 0.35


def test_notes_after_a_sysex_fragment_with_no_end_are_heard(jack_server: JackServer) -> None:
    heard: list[mido.Message] = []
    listener = MidiInput("jack", virtual_port_names("jack", "Deaf"), lambda m, t: heard.append(m))
    listener.open()
    cable = MidiOutput("jack", virtual_port_names("jack", "Cable"), pattern="Deaf-in:in")
    try:
        cable.open()
        cable.send_raw([0xF0, 0x01, 0x02])  # no F7 ever comes from the cable
        notes = [mido.Message("note_on", note=60 + i, velocity=80) for i in range(4)]
        for note in notes:
            cable.send(note)
        assert wait_for(lambda: len(heard) == len(notes), 5.0), heard
        assert heard == notes
        assert listener.counts.swallowed_sysex == 1
        assert listener.counts.recovered == len(notes)
        # Once ended, the input hears at once again.
        cable.send(mido.Message("note_off", note=60))
        assert wait_for(lambda: len(heard) == len(notes) + 1, 5.0)
    finally:
        cable.close()
        listener.close()


@pytest.mark.system
def test_the_daemon_answers_every_call_between_bursts_of_garbage(
    jack_server: JackServer,
) -> None:
    port_name = "Fuzzed"
    daemon = DaemonProcess(
        [
            *("--midi-api", "jack", "--seed", "1", "--osc-port", "0", "--port-name", port_name),
            *("--model", str(PIANO_MODEL), "--phrase-gap", str(PHRASE_GAP_S)),
            *("--turns", "gap"),
            *("--reply-max-s", "1.0"),
        ]
    ).start()
    names = virtual_port_names("jack", port_name)
    probe = MidiProbe("jack", names.input_listed, names.output_listed, name="FuzzProbe")
    try:
        report = fuzz_calls(
            probe,
            seconds=6.0,
            rng=random.Random(5),
            phrase_gap_s=PHRASE_GAP_S,
            answer_timeout_s=8.0,
            settle_timeout_s=8.0,
            burst_events=800,
        )
        assert report.bursts >= 2
        assert report.calls_answered == report.calls, daemon.log()
        # Each answer came after its call (not a note of the garbage's reply still arriving).
        assert all(ms > -1000.0 * PHRASE_GAP_S for ms in report.answer_delays_ms)
        assert report.notes_left_sounding == 0
        assert daemon.running(), daemon.log()
        assert wait_for(lambda: "malformed events dropped" in daemon.log(), 2.0), daemon.log()
        assert "a sysex without its end" in daemon.log()
    finally:
        probe.close()
        exit_code = daemon.terminate()
    assert exit_code == 0, daemon.log()
