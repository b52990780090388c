"""Driving a running daemon from outside, as a performer and a listener would.

The benchmark and the system tests share this: start ``antiphon run`` as a process and wait
for it to say it is ready, play a phrase into its input port with the phrase's own timing,
and record every message that comes out of its output port with the time it arrived.
Ports are opened through :mod:`antiphon.daemon.midi.ports`, so this module never touches rtmidi
itself.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import mido
from antiphon.daemon.midi.port_names import PortError, virtual_port_names
from antiphon.daemon.midi.ports import MidiInput, MidiOutput

READY_MARK = "ready:"  # what antiphon.daemon.stage.live logs once its ports are open and it listens
SUSTAIN_CC = 64
ALL_NOTES_OFF_CC = 123
ALL_SOUND_OFF_CC = 120
# Music is over once nothing sounds and nothing has come for this long: a reply or a duet
# part resting between two of its notes sounds nothing too (the fuzz runs replies of at most
# 1 s).
QUIET_S = 1.0
QUIET_POLL_S = 0.02


class DaemonError(RuntimeError):
    """The daemon process did not start or did not get ready."""


@dataclass(frozen=True)
class Timed:
    """A MIDI message and a ``time.monotonic()`` (received) or an offset (in a phrase)."""

    time_s: float
    message: mido.Message


def load_phrase(path: Path) -> list[Timed]:
    """Notes and controllers of a MIDI file, with their times in seconds from its start."""
    timed = []
    now_s = 0.0
    for message in mido.MidiFile(path):
        now_s += message.time
        if message.type in ("note_on", "note_off", "control_change"):
            timed.append(Timed(now_s, message.copy(time=0)))
    return timed


def human_phrase(rng: random.Random, notes: int = 10) -> list[Timed]:
    """A short, plausible played phrase: a melody over a held bass note, with the pedal.

    Onsets wander around a pulse, velocities around a level, and each note overlaps the next a
    little (legato), as a hand plays; the bench varies it with ``rng`` from call to call.
    """
    scale = (0, 2, 3, 5, 7, 8, 10, 12, 14, 15)
    root = rng.choice((55, 57, 60, 62))
    pulse_s = rng.uniform(0.18, 0.32)
    level = rng.randint(55, 85)
    events = [
        Timed(0.0, mido.Message("note_on", note=root - 12, velocity=level - 10)),
        Timed(0.03, mido.Message("control_change", control=SUSTAIN_CC, value=127)),
    ]
    onset_s = 0.01
    degree = rng.randrange(len(scale))
    for _ in range(notes):
        degree = min(max(degree + rng.choice((-2, -1, -1, 1, 1, 2)), 0), len(scale) - 1)
        pitch = root + scale[degree]
        velocity = min(max(level + rng.randint(-12, 12), 1), 127)
        length_s = pulse_s * rng.uniform(0.9, 1.15)
        events.append(Timed(onset_s, mido.Message("note_on", note=pitch, velocity=velocity)))
        events.append(Timed(onset_s + length_s, mido.Message("note_off", note=pitch)))
        onset_s += pulse_s * rng.uniform(0.85, 1.15)
    events.append(Timed(onset_s, mido.Message("note_off", note=root - 12)))
    events.append(Timed(onset_s + 0.05, mido.Message("control_change", control=SUSTAIN_CC)))
    events.sort(key=lambda e: e.time_s)
    return events


def sounding_notes(messages: Sequence[Timed]) -> set[tuple[int, int]]:
    """(channel, pitch) of notes left sounding at the end of ``messages``."""
    sounding: set[tuple[int, int]] = set()
    for timed in messages:
        m = timed.message
        if m.type == "note_on" and m.velocity > 0:
            sounding.add((m.channel, m.note))
        elif m.type in ("note_on", "note_off"):
            sounding.discard((m.channel, m.note))
        elif m.type == "control_change" and m.control in (ALL_NOTES_OFF_CC, ALL_SOUND_OFF_CC):
            sounding = {(c, p) for c, p in sounding if c != m.channel}
    return sounding


def wait_for_quiet(probe: MidiProbe, timeout_s: float) -> bool:
    """Until nothing sounds at the probe and nothing has reached it for ``QUIET_S`` (a reply
    between two of its notes is not over: the next note-on may be on its way); False if
    ``timeout_s`` passes first."""
    deadline_s = time.monotonic() + timeout_s
    while time.monotonic() < deadline_s:
        got = probe.all_received()
        quiet = not got or time.monotonic() - got[-1].time_s >= QUIET_S
        if quiet and not sounding_notes(got):
            return True
        time.sleep(QUIET_POLL_S)
    return False


def note_ons(messages: Sequence[Timed]) -> list[Timed]:
    return [t for t in messages if t.message.type == "note_on" and t.message.velocity > 0]


class MidiProbe:
    """A performer and a listener on the daemon's ports, under the client name ``name``.

    Its output connects to the daemon's input and its input to the daemon's output; every
    message received is kept with its arrival time (``time.monotonic()``): :meth:`received`
    since the last :meth:`clear`, :meth:`all_received` since the probe opened.
    """

    def __init__(self, api: str, daemon_input: str, daemon_output: str, name: str = "Probe"):
        names = virtual_port_names(api, name)
        self._all: list[Timed] = []
        self._cleared = 0  # how many of them clear() put aside
        self._changed = threading.Condition()
        self._output = MidiOutput(api, names, pattern=daemon_input)
        self._input = MidiInput(api, names, self._record, pattern=daemon_output)
        self._output.open()
        try:
            self._input.open()
        except PortError:
            self._output.close()
            raise

    def _record(self, message: mido.Message, received_s: float) -> None:
        with self._changed:
            self._all.append(Timed(received_s, message))
            self._changed.notify_all()

    def received(self, since_s: float = 0.0) -> list[Timed]:
        with self._changed:
            return [t for t in self._all[self._cleared :] if t.time_s >= since_s]

    def all_received(self) -> list[Timed]:
        with self._changed:
            return list(self._all)

    def clear(self) -> None:
        with self._changed:
            self._cleared = len(self._all)

    def send(self, message: mido.Message) -> float:
        """Send one message now; the ``time.monotonic()`` right after it left."""
        self._output.send(message)
        return time.monotonic()

    def send_raw(self, data: Sequence[int]) -> None:
        """Send bytes as one event now, message or not."""
        self._output.send_raw(data)

    def play(self, phrase: Sequence[Timed]) -> float:
        """Play a phrase with its timing; the time its last message was sent."""
        start_s = time.monotonic()
        sent_s = start_s
        for timed in phrase:
            delay_s = start_s + timed.time_s - time.monotonic()
            if delay_s > 0:
                time.sleep(delay_s)
            sent_s = self.send(timed.message)
        return sent_s

    def wait_until(self, condition: Callable[[list[Timed]], bool], timeout_s: float) -> bool:
        """Block until ``condition(received)`` holds (checked on each arrival) or time is up."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while not condition(self._all[self._cleared :]):
                left_s = deadline - time.monotonic()
                if left_s <= 0:
                    return False
                self._changed.wait(left_s)
            return True

    def first_note_after(self, sent_s: float, timeout_s: float) -> float | None:
        """When the first note-on received after ``sent_s`` arrived (a call's answer, when
        ``sent_s`` is its last message); None if none came within ``timeout_s``. A note of an
        earlier reply still arriving while the call was played is not its answer."""

        def after(received: list[Timed]) -> list[Timed]:
            return [t for t in note_ons(received) if t.time_s > sent_s]

        if not self.wait_until(lambda got: bool(after(got)), timeout_s):
            return None
        return after(self.received())[0].time_s

    def close(self) -> None:
        self._input.close()
        self._output.close()


def measure_delivery(api: str, messages: int, name: str = "Delivery") -> list[float]:
    """Milliseconds from one client's send to another client's input callback, per message.

    What any message the daemon sends takes to reach a listener on the same MIDI system.
    Sends are spread at random over a few milliseconds, so they land anywhere in a period.
    """
    mouth_names = virtual_port_names(api, f"{name}Mouth")
    ears_names = virtual_port_names(api, f"{name}Ears")
    arrived: list[float] = []
    heard = threading.Event()

    def hear(message: mido.Message, received_s: float) -> None:
        arrived.append(received_s)
        heard.set()

    ears = MidiInput(api, ears_names, hear)
    ears.open()
    mouth = MidiOutput(api, mouth_names, pattern=ears_names.input_listed)
    delays_ms = []
    rng = random.Random(0)
    try:
        mouth.open()
        for i in range(messages):
            heard.clear()
            arrived.clear()
            mouth.send(mido.Message("note_on", note=60 + i % 12, velocity=64))
            sent_s = time.monotonic()
            if heard.wait(0.5):
                delays_ms.append(1000.0 * (arrived[0] - sent_s))
            time.sleep(rng.uniform(0.002, 0.006))
    finally:
        mouth.close()
        ears.close()
    return delays_ms


class DaemonProcess:
    """``antiphon run`` as a separate process, its log collected line by line."""

    def __init__(
        self,
        run_args: Sequence[str],
        env: dict[str, str] | None = None,
        log_level: str = "info",
        launcher: Sequence[str] = (),
    ) -> None:
        """``launcher`` goes before the command (``chrt --fifo 20``: realtime scheduling)."""
        self.command = [
            *launcher,
            sys.executable, "-m", "antiphon.daemon.cli", "--log-level", log_level, "run", *run_args,
        ]  # fmt: skip
        self.env = env
        self.lines: list[str] = []
        self.ready_s: float | None = None  # seconds from launch to the ready line
        self._ready = threading.Event()
        self._process: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def start(self, ready_timeout_s: float = 20.0) -> DaemonProcess:
        """Launch it and wait for the ready line; RuntimeError with its log if it never comes."""
        launched_s = time.monotonic()
        self._process = subprocess.Popen(
            self.command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=self.env,
        )
        self._reader = threading.Thread(target=self._read, args=(launched_s,), daemon=True)
        self._reader.start()
        if not self._ready.wait(ready_timeout_s):
            self.stop()
            raise DaemonError("antiphon run did not get ready:\n" + self.log())
        return self

    def _read(self, launched_s: float) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            if self.ready_s is None and READY_MARK in line:
                self.ready_s = time.monotonic() - launched_s
                self._ready.set()
            self.lines.append(line.rstrip("\n"))
        self._ready.set()  # it ended: nobody should wait for it any longer

    def log(self) -> str:
        return "\n".join(self.lines)

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def peak_rss_mb(self) -> float:
        """Peak resident memory so far (VmHWM), while it still runs."""
        status = Path(f"/proc/{self.pid}/status").read_text()
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmHWM in /proc status")

    def terminate(self, timeout_s: float = 10.0) -> int:
        """SIGTERM, then its exit status (after ``timeout_s``, a kill and -9)."""
        assert self._process is not None
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
        try:
            code = self._process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
            code = -9
        if self._reader is not None:
            self._reader.join(timeout=2.0)
        return code

    def kill(self) -> int:
        """SIGKILL: no clean-up of any kind, as a crash or the OOM killer; its exit status."""
        assert self._process is not None
        self._process.kill()
        code = self._process.wait()
        if self._reader is not None:
            self._reader.join(timeout=2.0)
        return code

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self.terminate(timeout_s=5.0)
