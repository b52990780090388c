"""The beat's part of ``antiphon bench``: what the tracker costs, and how steady a DAW's MIDI
clock is by the time Antiphon hears it.

1. Tracker cost: :meth:`~antiphon.daemon.musician.hearing.beat.BeatTracker.onset` (with its estimate
   of the beat, which it makes at every onset) timed over a played melody of ``ONSETS``
   onsets, p50 and p99 in µs of the thread's CPU time (on a shared machine, wall-clock time
   would measure the other programs); and the estimate of the beat the performer asks for once
   a call (here every ``ESTIMATE_EVERY`` onsets). Target: at most ``TRACKER_TARGET_US`` per
   onset at p99.
2. Clock jitter, on the bench's JACK server: a client sends MIDI clock at ``CLOCK_BPM`` (24
   ticks a beat, each at its exact time from a sleeping thread) to an input made as the
   daemon makes its own (:class:`~antiphon.daemon.midi.ports.MidiInput`), which stamps each
   tick as the daemon does. Figures: the RMS and the largest distance of the arrivals from
   the tempo line (:meth:`~antiphon.daemon.musician.clocks.midi_clock.ClockFollower.jitter_ms`, over
   the last ``TEMPO_TICKS`` ticks), the tempo that line gives, and where the beat it puts
   lies against the beats as sent (the clock's grid error).
"""

from __future__ import annotations

import time
from typing import Any

import mido
import numpy as np
from antiphon.daemon.musician.clocks.midi_clock import TICK, ClockFollower, ClockInbox
from antiphon.daemon.musician.hearing.beat import BeatTracker

ONSETS = 4000
ESTIMATE_EVERY = 8  # a call's worth of onsets: the performer asks for the beat once a call
TRACKER_TARGET_US = 50.0
CLOCK_BPM = 120.0
CLOCK_BEATS = 16


def _percentiles(values: list[float]) -> dict[str, float]:
    return {
        "p50": float(np.percentile(values, 50)),
        "p99": float(np.percentile(values, 99)),
        "max": float(np.max(values)),
    }


def measure_tracker(seed: int = 1) -> dict[str, Any]:
    """The tracker's cost per onset over a played melody (eighths at 120 bpm, some left out,
    12 ms of timing jitter), in µs."""
    rng = np.random.default_rng(seed)
    grid = np.arange(ONSETS * 2) * 0.25
    played = grid[rng.random(len(grid)) < 0.6][:ONSETS]
    onsets = (played + rng.normal(0.0, 0.012, len(played))).tolist()
    tracker = BeatTracker()
    costs_us: list[float] = []
    estimates_us: list[float] = []
    clock = time.thread_time_ns  # CPU time: what it costs, not what else the machine runs
    for k, onset_s in enumerate(onsets):
        start_ns = clock()
        tracker.onset(onset_s)
        costs_us.append((clock() - start_ns) / 1000.0)
        if k % ESTIMATE_EVERY == ESTIMATE_EVERY - 1:
            start_ns = clock()
            tracker.grid()
            estimates_us.append((clock() - start_ns) / 1000.0)
    return {
        "onsets": len(onsets),
        "per_onset_us": _percentiles(costs_us),
        "estimate_us": _percentiles(estimates_us[1:]),
        "target_us": TRACKER_TARGET_US,
        "met": float(np.percentile(costs_us, 99)) <= TRACKER_TARGET_US,
    }


def measure_clock_jitter(api: str = "jack", name: str = "BenchClock") -> dict[str, Any]:
    """MIDI clock from one client to an input made as the daemon makes its own (see the
    module docstring); needs a running MIDI system of ``api``."""
    from antiphon.daemon.midi.port_names import virtual_port_names
    from antiphon.daemon.midi.ports import MidiInput, MidiOutput

    inbox = ClockInbox()

    def hear(message: mido.Message, received_s: float) -> None:
        inbox.submit(message, received_s)

    ears_names = virtual_port_names(api, f"{name}Ears")
    ears = MidiInput(api, ears_names, hear)
    ears.open()
    mouth = MidiOutput(api, virtual_port_names(api, f"{name}Mouth"), ears_names.input_listed)
    tick_s = 60.0 / CLOCK_BPM / 24
    beats_sent: list[float] = []
    try:
        mouth.open()
        time.sleep(0.2)  # the connection is made
        mouth.send(mido.Message("start"))
        next_s = time.monotonic() + 0.02
        for k in range(24 * CLOCK_BEATS):
            time.sleep(max(0.0, next_s - time.monotonic()))
            mouth.send(mido.Message("clock"))
            if k % 24 == 0:
                beats_sent.append(time.monotonic())
            next_s += tick_s
        time.sleep(0.1)
    finally:
        mouth.close()
        ears.close()
    follower = ClockFollower()
    ticks = [item for item in inbox.items if item[0] == TICK]
    follower.take(inbox)
    last_s = ticks[-1][1] if ticks else 0.0
    grid = follower.grid(last_s)
    result: dict[str, Any] = {
        "bpm_sent": CLOCK_BPM,
        "ticks_sent": 24 * CLOCK_BEATS,
        "ticks_heard": len(ticks),
        "jitter_rms_ms": follower.jitter_ms(),
    }
    if grid is not None and len(ticks) > 2:
        intervals_ms = np.diff([t for _, t, _ in ticks]) * 1000.0
        result["tick_interval_ms"] = _percentiles(intervals_ms.tolist())
        result["tick_interval_sent_ms"] = 1000.0 * tick_s
        result["bpm_heard"] = grid.tempo_bpm
        errors_ms = [1000.0 * (grid.next_beat_s(b - grid.beat_s / 2) - b) for b in beats_sent[-4:]]
        result["beat_error_ms"] = errors_ms  # the clock's beats against the beats as sent
    return result


def measure_pulse(seed: int, period_frames: int, jack: bool) -> dict[str, Any]:
    """Both figures; the clock's on the running JACK server, or on the bench's own
    ``jackd -d dummy`` at ``period_frames`` (None without jackd: ``jack`` false)."""
    import os

    from antiphon.daemon.tools.jack_server import SERVER_ENV, JackServer, server_running

    pulse: dict[str, Any] = {"tracker": measure_tracker(seed)}
    if not jack:
        return pulse
    own: JackServer | None = None
    if not server_running(os.environ.get(SERVER_ENV)):
        own = JackServer(period_frames=period_frames).start()
        os.environ[SERVER_ENV] = own.name
    try:
        pulse["clock"] = measure_clock_jitter()
        if own is not None:
            pulse["clock"]["period_ms"] = 1000.0 * own.period_s
    finally:
        if own is not None:
            own.stop()
            os.environ.pop(SERVER_ENV, None)
    return pulse


def pulse_rows(pulse: dict[str, Any]) -> list[str]:
    """The bench table's rows for the beat."""
    tracker = pulse["tracker"]
    cost = tracker["per_onset_us"]
    estimate = tracker["estimate_us"]
    lines = [
        f"{'beat tracker, per onset (CPU)':<48} p50 {cost['p50']:.1f} us, p99 {cost['p99']:.1f} us "
        f"(target {tracker['target_us']:.0f} us: {'met' if tracker['met'] else 'MISSED'})",
        f"{'  its estimate of the beat, once a call (CPU)':<48} p50 {estimate['p50']:.1f} us, "
        f"p99 {estimate['p99']:.1f} us",
    ]
    clock = pulse.get("clock")
    if clock:
        lines.append(
            f"{'MIDI clock as heard, jitter (RMS)':<48} {clock['jitter_rms_ms']:.2f} ms, "
            f"{clock['ticks_heard']} of {clock['ticks_sent']} ticks"
        )
        if "bpm_heard" in clock:
            errors = ", ".join(f"{e:+.2f}" for e in clock["beat_error_ms"])
            lines.append(
                f"{'  tempo heard; its beats - beats sent':<48} {clock['bpm_heard']:.2f} bpm; "
                f"{errors} ms"
            )
    return lines
