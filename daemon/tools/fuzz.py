"""Garbage on the MIDI input: random bytes and random messages, fast, between real calls.

A burst (:func:`garbage_burst`) mixes what a broken cable, a device switched on mid-message or
a confused program can put on an input: undefined status bytes, data bytes with no status,
running status, messages cut short, sysex fragments with no end, real-time bytes inside
messages, and valid messages of every kind on every channel. :func:`fuzz_calls` sends bursts
at thousands of events per second into a running daemon through a real port, each followed by
the player lifting everything (pedal up, All Notes Off) and a real call; it counts the calls
answered and the notes left sounding. The test suite runs a short version; ``antiphon bench
--fuzz SECONDS`` a long one.

Each event is what one JACK event can carry from python-rtmidi: one to three bytes of
anything, or longer when it starts with ``F0``.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import mido
from antiphon.daemon.tools.probe import MidiProbe, human_phrase, sounding_notes, wait_for_quiet

BURST_EVENTS = 1500
EVENTS_PER_PAUSE = 8  # a short sleep after this many: about 3,000 to 5,000 events a second
PAUSE_S = 0.002
CHANNELS = 16
SUSTAIN_CC = 64
ALL_NOTES_OFF_CC = 123
UNDEFINED_STATUS = (0xF4, 0xF5, 0xF9, 0xFD)
REAL_TIME = (0xF8, 0xFA, 0xFB, 0xFC, 0xFE, 0xFF)
DROP_LINE = "malformed events and"  # the daemon's last word on its input (stage.live)


def _data(rng: random.Random) -> int:
    return rng.randrange(128)


def _status(rng: random.Random) -> int:
    return rng.choice((0x80, 0x90, 0xA0, 0xB0, 0xC0, 0xD0, 0xE0)) | rng.randrange(CHANNELS)


def _valid(rng: random.Random) -> list[int]:
    status = _status(rng)
    length = 2 if status & 0xF0 in (0xC0, 0xD0) else 3
    return [status, *(_data(rng) for _ in range(length - 1))]


def garbage_event(rng: random.Random) -> list[int]:
    """One random event: garbage of some kind, or a valid message (a third of them)."""
    kind = rng.randrange(9)
    if kind == 0:
        return [rng.choice(UNDEFINED_STATUS)]
    if kind == 1:  # data bytes with no status, or running status after a message
        return [_data(rng) for _ in range(rng.randint(1, 3))]
    if kind == 2:  # a three-byte message cut short
        status = rng.choice((0x80, 0x90, 0xA0, 0xB0, 0xE0)) | rng.randrange(CHANNELS)
        return [status, _data(rng)][: rng.randint(1, 2)]
    if kind == 3:  # a sysex fragment with no end
        return [0xF0, *(_data(rng) for _ in range(rng.randint(0, 12)))]
    if kind == 4:  # a real-time byte inside a message
        message = _valid(rng)
        message.insert(rng.randint(1, len(message) - 1), rng.choice(REAL_TIME))
        return message[:3]
    if kind == 5:  # an end of sysex with no start, or a lone status byte
        return [rng.choice((0xF7, _status(rng)))]
    return _valid(rng)


def garbage_burst(rng: random.Random, events: int = BURST_EVENTS) -> list[list[int]]:
    return [garbage_event(rng) for _ in range(events)]


def lift_everything(probe: MidiProbe) -> None:
    """What a player does after a mess: pedal up and All Notes Off on every channel."""
    for channel in range(CHANNELS):
        probe.send(mido.Message("control_change", channel=channel, control=SUSTAIN_CC, value=0))
        probe.send(mido.Message("control_change", channel=channel, control=ALL_NOTES_OFF_CC))


@dataclass
class FuzzReport:
    """What a fuzz run sent and what came of it."""

    bursts: int = 0
    events_sent: int = 0
    calls: int = 0
    calls_answered: int = 0
    # First reply note - (the call's last message + phrase gap), per answered call.
    answer_delays_ms: list[float] = field(default_factory=list)
    notes_left_sounding: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def fuzz_calls(
    probe: MidiProbe,
    seconds: float,
    rng: random.Random,
    phrase_gap_s: float,
    answer_timeout_s: float = 3.0,
    settle_timeout_s: float = 5.0,
    burst_events: int = BURST_EVENTS,
) -> FuzzReport:
    """Bursts of garbage, each followed by a real call, for ``seconds`` (at least one)."""
    report = FuzzReport()
    end_s = time.monotonic() + seconds
    while report.bursts == 0 or time.monotonic() < end_s:
        for i, event in enumerate(garbage_burst(rng, burst_events)):
            probe.send_raw(event)
            if i % EVENTS_PER_PAUSE == EVENTS_PER_PAUSE - 1:
                time.sleep(PAUSE_S)
        report.bursts += 1
        report.events_sent += burst_events
        lift_everything(probe)
        # Whatever the garbage started, let it end (a reply to the valid notes in it).
        wait_for_quiet(probe, settle_timeout_s)
        time.sleep(phrase_gap_s + 0.3)
        probe.clear()
        last_sent_s = probe.play(human_phrase(rng, notes=rng.randint(3, 6)))
        report.calls += 1
        first_s = probe.first_note_after(last_sent_s, answer_timeout_s)
        if first_s is not None:
            report.calls_answered += 1
            report.answer_delays_ms.append(1000.0 * (first_s - last_sent_s - phrase_gap_s))
        wait_for_quiet(probe, settle_timeout_s)
    report.notes_left_sounding = len(sounding_notes(probe.all_received()))
    return report


class OscFlood:
    """A thread sending OSC parameter changes as fast as it can (or ``per_s`` a second)."""

    def __init__(self, port: int, per_s: float = 2000.0) -> None:
        from pythonosc.udp_client import SimpleUDPClient

        self._client = SimpleUDPClient("127.0.0.1", port)
        self._interval_s = 1.0 / per_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="osc-flood", daemon=True)
        self.sent = 0

    def _run(self) -> None:
        rng = random.Random(3)
        while not self._stop.wait(self._interval_s):
            self._client.send_message("/antiphon/temperature", round(rng.uniform(0.8, 1.2), 3))
            self.sent += 1

    def __enter__(self) -> OscFlood:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_fuzz_bench(
    model: Path,
    seconds: float,
    period: int,
    seed: int,
    realtime_priority: int = 0,
    osc_flood_per_s: float = 2000.0,
) -> dict[str, Any]:
    """``antiphon bench --fuzz SECONDS``: the fuzz run, an OSC flood going on all along."""
    from antiphon.daemon.tools.bench_report import PHRASE_GAP_S, percentiles
    from antiphon.daemon.tools.rig import LiveRig, reaction_run_args

    run_args = reaction_run_args(model, seed, reply_max_s=1.0)
    with LiveRig(run_args, period, "info", realtime_priority) as rig:
        assert rig.probe is not None and rig.daemon is not None
        with OscFlood(rig.osc_port, osc_flood_per_s) as flood:
            report = fuzz_calls(rig.probe, seconds, random.Random(seed), PHRASE_GAP_S)
        running = rig.daemon.running()
        exit_code = rig.terminate()
        time.sleep(0.3)
        report.notes_left_sounding = len(sounding_notes(rig.probe.all_received()))
        counts = next(
            (line.split("MIDI input: ", 1)[1] for line in rig.daemon.lines if DROP_LINE in line),
            None,
        )
        jack = rig.jack()
    figures = report.to_dict()
    delays = figures.pop("answer_delays_ms")
    return {
        **figures,
        "answer_delay_ms": percentiles(delays) if delays else None,
        "osc_messages_sent": flood.sent,
        "daemon_ran_throughout": running,
        "daemon_input_counts": counts,
        "exit_code_after_sigterm": exit_code,
        "jack": jack,
    }


def fuzz_table(figures: dict[str, Any]) -> str:
    delay = figures["answer_delay_ms"]
    shown = "-" if not delay else f"p50 {delay['p50']:.2f} ms, p99 {delay['p99']:.2f} ms"
    return "\n".join(
        [
            f"fuzz: {figures['bursts']} bursts, {figures['events_sent']} random events, "
            f"{figures['osc_messages_sent']} OSC messages alongside",
            f"calls answered: {figures['calls_answered']} of {figures['calls']}; "
            f"answer (first note - (last sent + gap)): {shown}",
            f"daemon: ran throughout {figures['daemon_ran_throughout']}, "
            f"exit status after SIGTERM {figures['exit_code_after_sigterm']}; "
            f"input: {figures['daemon_input_counts']}",
            f"notes left sounding: {figures['notes_left_sounding']}",
        ]
    )
