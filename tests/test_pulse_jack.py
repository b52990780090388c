"""The beat through real JACK ports: a DAW's MIDI clock leads the replies, and the player's
beat takes over when the clock stops.

A test client plays the DAW: it sends MIDI clock (Start, then 24 ticks a beat) and plays
calls on the beat, from one thread, keeping when it sent each tick. The replies it receives
are compared with the beats as it sent them: the first note of a reply on a beat, and with
groove 1 every note on a sixteenth. "On" means within a quarter of a sixteenth (31 ms at 120
bpm), a musical bound, not a timing figure: a reply in free time lies anywhere up to half a
sixteenth off the grid, so it fails, while a loaded machine that delays a message by a few
ms passes. How late the notes land against their planned times on the grid (a JACK period
and a few ms at most) is the benchmark's figure (``antiphon bench``: the timing error at the
client, BENCHMARKS.md), not the suite's.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator

import mido
import pytest
from antiphon.daemon.settings import PIANO_MODEL
from antiphon.daemon.tools.jack_server import JackServer
from antiphon.daemon.tools.probe import DaemonProcess, MidiProbe, Timed, note_ons, sounding_notes

from tests.jack_server import steady_eighths
from tests.test_osc import OscListener

pytestmark = [pytest.mark.jack, pytest.mark.system]

PHRASE_GAP_S = 0.35
REPLY_MAX_S = 2.0
TICKS_PER_BEAT = 24
ANSWER_TIMEOUT_S = 10.0
ON_GRID = 0.25  # of a sixteenth: see the module docstring


class ClockedPlayer:
    """The DAW: MIDI clock from its own thread, with calls played in between ticks."""

    def __init__(self, probe: MidiProbe, bpm: float) -> None:
        self.probe = probe
        self.tick_s = 60.0 / bpm / TICKS_PER_BEAT
        self.beats: list[float] = []  # when each beat's tick was sent
        self._notes: list[tuple[float, mido.Message]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="clock")

    def start(self) -> None:
        self.probe.send(mido.Message("start"))
        self._thread.start()

    def set_bpm(self, bpm: float) -> None:
        with self._lock:
            self.tick_s = 60.0 / bpm / TICKS_PER_BEAT

    def play_on_beats(self, first_beat: int, notes: list[tuple[float, int]]) -> float:
        """Schedule (beats after ``first_beat``, pitch) eighths; when the call ends (its last
        note-off is sent). Waits until it is over."""
        while len(self.beats) <= first_beat:
            time.sleep(0.01)
        with self._lock:
            beat_s = self.tick_s * TICKS_PER_BEAT
            start_s = self.beats[first_beat]
            for offset, pitch in notes:
                on_s = start_s + offset * beat_s
                self._notes.append((on_s, mido.Message("note_on", note=pitch, velocity=80)))
                self._notes.append((on_s + 0.4 * beat_s, mido.Message("note_off", note=pitch)))
            self._notes.sort(key=lambda item: item[0])
            end_s = self._notes[-1][0]
        time.sleep(max(0.0, end_s - time.monotonic()) + 0.05)
        return end_s

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.probe.send(mido.Message("stop"))

    def _run(self) -> None:
        tick = 0
        next_s = time.monotonic() + 0.05
        while not self._stop.is_set():
            with self._lock:
                due = [m for t, m in self._notes if t <= next_s]
                self._notes = [(t, m) for t, m in self._notes if t > next_s]
                tick_s = self.tick_s
            for message in due:
                self.probe.send(message)
            delay_s = next_s - time.monotonic()
            if delay_s > 0:
                time.sleep(delay_s)
            sent_s = self.probe.send(mido.Message("clock"))
            if tick % TICKS_PER_BEAT == 0:
                self.beats.append(sent_s)
            tick += 1
            next_s += tick_s


def distance_to_grid(time_s: float, beats: list[float], parts: int) -> float:
    """How far ``time_s`` is from the nearest of the ``parts`` divisions of the beats sent."""
    best = float("inf")
    for a, b in itertools.pairwise(beats):
        for k in range(parts + 1):
            best = min(best, abs(time_s - (a + (b - a) * k / parts)))
    return best


@pytest.fixture
def port_name() -> str:
    return f"Pulse{int(time.monotonic() * 1000) % 10**6}"


@pytest.fixture
def daemon(jack_server: JackServer, port_name: str, osc_port: int) -> Iterator[DaemonProcess]:
    args = [
        *("--midi-api", "jack", "--seed", "3", "--osc-port", str(osc_port)),
        *("--port-name", port_name, "--model", str(PIANO_MODEL)),
        *("--phrase-gap", str(PHRASE_GAP_S), "--reply-max-s", str(REPLY_MAX_S)),
        *("--turns", "gap"),
        *("--clock", "midi", "--reply-start", "beat", "--groove", "1"),
    ]
    process = DaemonProcess(args).start()
    try:
        yield process
    finally:
        process.stop()


EIGHTHS = [(0.5 * k, 60 + (2 * k) % 12) for k in range(8)]


def beats_past(player: ClockedPlayer, notes: list[Timed]) -> list[float]:
    """The beats sent so far, once the clock has sent a beat after the last of ``notes`` (a
    note's nearest grid point may be the beat after it)."""
    deadline = time.monotonic() + 2.0
    while player.beats[-1] <= notes[-1].time_s and time.monotonic() < deadline:
        time.sleep(0.01)
    return list(player.beats)


def reply_after(probe: MidiProbe, ended_s: float, daemon: DaemonProcess) -> list[Timed]:
    assert probe.wait_until(
        lambda got: (
            bool(note_ons([t for t in got if t.time_s > ended_s])) and not sounding_notes(got)
        ),
        ANSWER_TIMEOUT_S,
    ), daemon.log()
    return note_ons(probe.received(since_s=ended_s))


def test_replies_lock_to_midi_clock_follow_its_tempo_and_fall_back_to_the_player(
    jack_server: JackServer,
    daemon: DaemonProcess,
    probe: MidiProbe,
    listener: OscListener,
    osc_port: int,
) -> None:
    bound_s = ON_GRID * 60.0 / 120 / 4
    player = ClockedPlayer(probe, bpm=120)
    player.start()
    try:
        ended_s = player.play_on_beats(4, EIGHTHS)
        reply = reply_after(probe, ended_s, daemon)
        first = reply[0].time_s
        assert first - ended_s <= 0.5 + PHRASE_GAP_S + bound_s  # within a beat of its end
        beats = beats_past(player, reply)
        assert distance_to_grid(first, beats, 1) <= bound_s, daemon.log()
        off = [round(1000 * distance_to_grid(t.time_s, beats, 4), 1) for t in reply]
        assert max(off) <= bound_s * 1000, (off, daemon.log())

        player.set_bpm(96)
        time.sleep(REPLY_MAX_S)
        probe.clear()
        beat = len(player.beats) + 3
        ended_s = player.play_on_beats(beat, EIGHTHS)
        reply = reply_after(probe, ended_s, daemon)
        new_beats = beats_past(player, reply)[beat - 2 :]
        bound_s = ON_GRID * 60.0 / 96 / 4
        assert distance_to_grid(reply[0].time_s, new_beats, 1) <= bound_s, daemon.log()
        assert max(distance_to_grid(t.time_s, new_beats, 4) for t in reply) <= bound_s
        status = listener.status(osc_port)
        assert status["/antiphon/status/beat_source"] == "midi"
        assert status["/antiphon/status/tempo_bpm"] == pytest.approx(96, abs=1.0)
    finally:
        player.stop()
    time.sleep(REPLY_MAX_S)
    probe.clear()
    # After Stop, the player's own beat: steady eighths at 100 bpm.
    ended_s = probe.play(steady_eighths(12))
    reply_after(probe, ended_s, daemon)
    status = listener.status(osc_port)
    assert status["/antiphon/status/beat_source"] == "player"
    assert status["/antiphon/status/tempo_bpm"] == pytest.approx(100, rel=0.05)


def test_the_bench_measures_the_tracker_and_the_clock_as_heard(jack_server: JackServer) -> None:
    from antiphon.daemon.tools.bench_pulse import measure_pulse, pulse_rows

    figures = measure_pulse(seed=1, period_frames=jack_server.period_frames, jack=True)
    tracker = figures["tracker"]
    assert tracker["onsets"] > 1000
    assert tracker["per_onset_us"]["p50"] > 0.0
    clock = figures["clock"]
    assert clock["ticks_heard"] > 0.9 * clock["ticks_sent"]
    assert clock["bpm_heard"] == pytest.approx(120.0, rel=0.02)
    assert len(clock["beat_error_ms"]) == 4
    assert any(row.startswith("MIDI clock as heard") for row in pulse_rows(figures))
