"""``antiphon bench --link``: Ableton Link and the outgoing clock, measured with real peers.

Everything runs on this machine: the bench's own JACK server (``jackd -S -d dummy``), the
daemon as a process, a probe client on its ports (it plays and listens, stamping each arrival
with ``time.monotonic()``, one clock for every process here) and a Link peer in a process of
its own (:mod:`antiphon.daemon.tools.link_peer`), which says where its beats fall.

1. Lock to Link (``--clock link --reply-start beat --groove 1``), with the peer at
   ``LOCK_TEMPOS_BPM``: each reply's first note as it arrives at the probe, against the
   peer's nearest beat (signed: late is positive), and every reply note against the nearest
   sixteenth or triplet of the peer's beat.
2. Bridging Link to MIDI clock (``--clock link --clock-out midi``): the 0xF8 intervals at the
   probe (their distance from 60 / 24 / tempo: the jitter), the outgoing beats (every 24th
   tick from Start) against the peer's, and a change of the peer's tempo: how many beats of
   the new tempo until the outgoing beats have it (within ``TEMPO_MATCH``).
3. The player leads (``--clock player --clock-out both``): eighths played from
   ``ACCEL_FROM_BPM`` to 10 % faster over 8 bars (steady before and after, 8 ms of timing
   jitter), at each ``clock_out_follow`` in ``FOLLOW_RATES``: how many beats the outgoing
   tempo lags the player's, the largest change between consecutive outgoing beats, and the
   tempo the Link peer sees at the end against the outgoing one.
"""

from __future__ import annotations

import bisect
import itertools
import random
import statistics
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import mido
import numpy as np
from antiphon.daemon.midi.port_names import virtual_port_names
from antiphon.daemon.settings import PIANO_MODEL
from antiphon.daemon.tools.jack_server import REALTIME_PRIORITY, JackServer
from antiphon.daemon.tools.link_peer import LinkPeer, LinkPeerError, link_peer
from antiphon.daemon.tools.probe import (
    DaemonError,
    DaemonProcess,
    MidiProbe,
    Timed,
    human_phrase,
    note_ons,
)

PORT_NAME = "AntiphonLink"
TICKS_PER_BEAT = 24
LOCK_TEMPOS_BPM = (100.0, 133.0)
LOCK_CALLS = 8
REPLY_MAX_S = 2.0
PHRASE_GAP_S = 0.35
JITTER_SECONDS = 20.0
CHANGE_FROM_BPM, CHANGE_TO_BPM = 100.0, 133.0
TEMPO_MATCH = 0.01  # an outgoing beat this near the new tempo has it
ACCEL_FROM_BPM = 100.0
ACCEL_BEATS = 32  # 8 bars of 4
ACCEL_RISE = 0.10
LEAD_IN_BEATS, LEAD_OUT_BEATS = 16, 8
FOLLOW_RATES = (0.25, 0.5, 1.0)
FIND_TIMEOUT_S = 10.0


def measure_link(
    period_frames: int, seed: int, realtime_priority: int = 0, output_ahead_ms: float = 0.0
) -> dict[str, Any]:
    """Every figure of the module docstring, on a JACK server of the bench's own (realtime,
    and the daemon under ``chrt --fifo``, with ``realtime_priority``), the daemon sending
    ``output_ahead_ms`` ahead."""
    launcher = ["chrt", "--fifo", str(realtime_priority)] if realtime_priority > 0 else []
    started = Started(launcher, ("--output-ahead-ms", f"{output_ahead_ms:g}"))
    server = JackServer(period_frames=period_frames, realtime=realtime_priority > 0)
    with server, server.as_default():
        figures: dict[str, Any] = {
            "period_ms": 1000.0 * server.period_s,
            "daemon_fifo_priority": realtime_priority or None,
            "output_ahead_ms": output_ahead_ms,
            "lock": {
                f"{bpm:g}": _lock_to_link(bpm, LOCK_CALLS, seed, started) for bpm in LOCK_TEMPOS_BPM
            },
            "bridge": _bridge(started),
            "player_leads": {
                f"{rate:g}": _player_leads(rate, seed, started) for rate in FOLLOW_RATES
            },
        }
        figures["xruns"] = server.xruns()
        return figures


@dataclass(frozen=True)
class Started:
    """How the bench starts every daemon: under ``launcher`` (``chrt --fifo``: realtime), with
    ``flags`` besides each run's own."""

    launcher: Sequence[str]
    flags: Sequence[str]


@contextmanager
def _rig(
    peer_bpm: float, flags: Sequence[str], started: Started
) -> Iterator[tuple[MidiProbe, LinkPeer]]:
    """A Link peer at ``peer_bpm``, the daemon with ``flags`` (started as ``started`` says)
    and a probe on its ports, all stopped after the block, whatever happens."""
    args = [
        *("--midi-api", "jack", "--port-name", PORT_NAME, "--osc-port", "0"),
        *("--model", str(PIANO_MODEL), "--seed", "1"),
        *started.flags,
        *flags,
    ]
    with link_peer(peer_bpm) as peer:
        daemon = DaemonProcess(args, launcher=started.launcher).start()
        try:
            names = virtual_port_names("jack", PORT_NAME)
            probe = MidiProbe("jack", names.input_listed, names.output_listed, "LinkProbe")
            try:
                if not peer.wait_for_peers(FIND_TIMEOUT_S):
                    raise LinkPeerError("the Link peer found no one:\n" + daemon.log())
                peer.ask(f"tempo {peer_bpm}")
                yield probe, peer
                if not daemon.running():
                    raise DaemonError("the daemon stopped during the run:\n" + daemon.log())
            finally:
                probe.close()
        finally:
            daemon.stop()


def _peer_beats(peer: LinkPeer, bpm: float) -> Callable[[float], float]:
    """The peer's beat number at a time, at its present (steady) tempo."""
    state = peer.ask("state")
    beat0, time0_s, beat_s = state["beat"], state["time_s"], 60.0 / bpm
    return lambda time_s: beat0 + (time_s - time0_s) / beat_s


def _summary_ms(offsets_s: list[float]) -> dict[str, float]:
    values = np.array(offsets_s) * 1000.0
    magnitudes = np.abs(values)
    return {
        "count": len(values),
        "median_ms": float(np.median(values)),
        "median_abs_ms": float(np.median(magnitudes)),
        "p90_abs_ms": float(np.percentile(magnitudes, 90)),
        "p99_abs_ms": float(np.percentile(magnitudes, 99)),
        "max_abs_ms": float(np.max(magnitudes)),
    }


def _lock_to_link(bpm: float, calls: int, seed: int, started: Started) -> dict[str, Any]:
    flags = (
        *("--clock", "link", "--reply-start", "beat", "--groove", "1"),
        *("--turns", "gap", "--phrase-gap", str(PHRASE_GAP_S)),
        *("--reply-max-s", str(REPLY_MAX_S)),
    )
    rng = random.Random(seed)
    beat_s = 60.0 / bpm
    first_s: list[float] = []
    every_s: list[float] = []
    with _rig(bpm, flags, started) as (probe, peer):
        beat_at = _peer_beats(peer, bpm)
        for _ in range(calls):
            probe.clear()
            ended_s = probe.play(human_phrase(rng))
            time.sleep(PHRASE_GAP_S + beat_s + REPLY_MAX_S + 0.5)
            reply = [t.time_s for t in note_ons(probe.received(since_s=ended_s))]
            if not reply:
                continue
            beat = beat_at(reply[0])
            first_s.append((beat - round(beat)) * beat_s)
            for onset_s in reply:
                beat = beat_at(onset_s)
                every_s.append(
                    min(abs(beat * parts - round(beat * parts)) / parts for parts in (3, 4))
                    * beat_s
                )
    return {
        "replies": len(first_s),
        "first_note_vs_beat": _summary_ms(first_s) if first_s else None,
        "every_note_vs_grid": _summary_ms(every_s) if every_s else None,
    }


def _beats_from_ticks(received: list[Timed]) -> list[float]:
    """When each outgoing beat arrived: every 24th tick from the last Start."""
    starts = [k for k, t in enumerate(received) if t.message.type == "start"]
    if not starts:
        return []
    ticks = [t.time_s for t in received[starts[-1] :] if t.message.type == "clock"]
    return ticks[::TICKS_PER_BEAT]


def _bridge(started: Started) -> dict[str, Any]:
    """Link passed on as MIDI clock: tick jitter, beats against the peer's, a tempo change."""
    flags = ("--clock", "link", "--clock-out", "midi", "--mode", "listen")
    with _rig(CHANGE_FROM_BPM, flags, started) as (probe, peer):
        time.sleep(2.0)  # the daemon sees the peer's tempo and starts its clock
        beat_at = _peer_beats(peer, CHANGE_FROM_BPM)
        probe_start_s = time.monotonic()
        time.sleep(JITTER_SECONDS)
        steady = [t for t in probe.all_received() if t.time_s >= probe_start_s]
        change_s = float(peer.ask(f"tempo {CHANGE_TO_BPM}")["time_s"])
        time.sleep(6.0)
        new_beat_at = _peer_beats(peer, CHANGE_TO_BPM)
        received = probe.all_received()
    tick_s = 60.0 / CHANGE_FROM_BPM / TICKS_PER_BEAT
    ticks = [t.time_s for t in steady if t.message.type == "clock"]
    deviations = [abs((b - a) - tick_s) for a, b in itertools.pairwise(ticks)]
    beats = _beats_from_ticks(received)
    before = [b for b in beats if probe_start_s <= b < change_s]
    beat_offsets = [(beat_at(b) - round(beat_at(b))) * 60.0 / CHANGE_FROM_BPM for b in before]
    new_beat_s = 60.0 / CHANGE_TO_BPM
    followed_beats = None
    for a, b in itertools.pairwise(beats):
        if a >= change_s and abs((b - a) / new_beat_s - 1.0) <= TEMPO_MATCH:
            followed_beats = (a - change_s) / new_beat_s
            break
    after = [b for b in beats if b >= change_s + 3.0]
    new_offsets = [(new_beat_at(b) - round(new_beat_at(b))) * new_beat_s for b in after]
    return {
        "ticks": len(ticks),
        "tick_interval_error_ms": {
            "p50": 1000.0 * float(np.percentile(deviations, 50)),
            "p99": 1000.0 * float(np.percentile(deviations, 99)),
            "max": 1000.0 * float(np.max(deviations)),
        },
        "beats_vs_peer": _summary_ms(beat_offsets) if beat_offsets else None,
        "tempo_change_followed_after_beats": followed_beats,
        "beats_vs_peer_after_change": _summary_ms(new_offsets) if new_offsets else None,
    }


def _accelerating_beats() -> list[float]:
    """The player's beat times: steady, then 10 % faster over 8 bars, then steady."""
    beats = [0.0]
    for k in range(LEAD_IN_BEATS + ACCEL_BEATS + LEAD_OUT_BEATS):
        progress = min(1.0, max(0.0, (k - LEAD_IN_BEATS) / ACCEL_BEATS))
        beats.append(beats[-1] + 60.0 / (ACCEL_FROM_BPM * (1.0 + ACCEL_RISE * progress)))
    return beats


def _eighths(beats: list[float], seed: int) -> list[Timed]:
    rng = random.Random(seed)
    onsets = [t for a, b in itertools.pairwise(beats) for t in (a, (a + b) / 2)]
    phrase = []
    for k, onset_s in enumerate(onsets):
        played_s = 0.5 + onset_s + rng.gauss(0.0, 0.008)
        pitch = 60 + (0, 2, 4, 5, 7, 9, 7, 4)[k % 8]
        phrase.append(Timed(played_s, mido.Message("note_on", note=pitch, velocity=75)))
        phrase.append(Timed(played_s + 0.15, mido.Message("note_off", note=pitch)))
    phrase.sort(key=lambda t: t.time_s)
    return phrase


def _ramp_lag_beats(beats: list[float]) -> Callable[[float, float], float]:
    """How many of the player's beats a tempo heard at a time trails the player: from when
    the player played at that tempo (the ramp's start for a slower one, its end for a faster
    one) to that time. Negative: ahead."""
    ramp_start = LEAD_IN_BEATS

    def lag(time_s: float, bpm: float) -> float:
        share = min(1.0, max(0.0, (bpm / ACCEL_FROM_BPM - 1.0) / ACCEL_RISE))
        k = max(0, min(bisect.bisect_right(beats, time_s) - 1, len(beats) - 2))
        position = k + (time_s - beats[k]) / (beats[k + 1] - beats[k])
        return position - (ramp_start + share * ACCEL_BEATS)

    return lag


def _player_leads(follow: float, seed: int, started: Started) -> dict[str, Any]:
    flags = (
        *("--clock", "player", "--clock-out", "both", "--mode", "listen"),
        *("--clock-out-follow", str(follow)),
    )
    beats = _accelerating_beats()
    link_tempos: list[tuple[float, float]] = []
    with _rig(120.0, flags, started) as (probe, peer):
        probe.clear()
        started_s = time.monotonic() + 0.5
        stop = threading.Event()

        def watch() -> None:  # the tempo the Link peer sees, ten times a second
            while not stop.wait(0.1):
                state = peer.ask("state")
                link_tempos.append((state["time_s"], state["tempo_bpm"]))

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            probe.play(_eighths(beats, seed))
            time.sleep(1.0)
        finally:
            stop.set()
            watcher.join()
        received = probe.received()
    player_beats = [started_s + b for b in beats]
    lag = _ramp_lag_beats(player_beats)
    ramp_s = (player_beats[LEAD_IN_BEATS + 4], player_beats[LEAD_IN_BEATS + ACCEL_BEATS])
    out = _beats_from_ticks(received)
    intervals = [b - a for a, b in itertools.pairwise(out)]
    steps = [abs(b / a - 1.0) for a, b in itertools.pairwise(intervals)]
    # The MIDI clock's tempo over two beats (as a DAW smooths it), at the second beat's end.
    midi_bpm = [(out[k + 2], 120.0 / (out[k + 2] - out[k])) for k in range(len(out) - 2)]
    midi_lags = [lag(t, bpm) for t, bpm in midi_bpm if ramp_s[0] <= t <= ramp_s[1]]
    link_lags = [lag(t, bpm) for t, bpm in link_tempos if ramp_s[0] <= t <= ramp_s[1]]
    end_s = player_beats[-1]
    at_end = [bpm for t, bpm in link_tempos if t <= end_s]
    return {
        "outgoing_beats": len(out),
        "lag_beats_link": _lag_summary(link_lags),
        "lag_beats_midi": _lag_summary(midi_lags),
        "largest_step_between_beats_pct": 100.0 * max(steps) if steps else None,
        "link_peak_after_ramp_bpm": max(
            (bpm for t, bpm in link_tempos if t >= ramp_s[1]), default=None
        ),
        "link_bpm_at_end": at_end[-1] if at_end else None,
        "midi_bpm_at_end": midi_bpm[-1][1] if midi_bpm else None,
        # Seconds from the player's first beat: what antiphon bench --link --plot draws.
        "series": {
            "player_bpm": [
                [a - started_s, 60.0 / (b - a)] for a, b in itertools.pairwise(player_beats)
            ],
            "link_bpm": [[t - started_s, bpm] for t, bpm in link_tempos],
            "midi_bpm": [[t - started_s, bpm] for t, bpm in midi_bpm],
            "ramp_s": [ramp_s[0] - started_s, ramp_s[1] - started_s],
        },
    }


def _lag_summary(lags: list[float]) -> dict[str, float] | None:
    """Median and largest (signed: ahead is negative), and the 90th percentile of the lag's
    size: "within 2 beats" either way, so a clock that runs ahead of the player does not
    pass for one that follows it."""
    if not lags:
        return None
    return {
        "median": statistics.median(lags),
        "p90_abs": float(np.percentile(np.abs(lags), 90)),
        "max": max(lags),
    }


def link_rows(figures: dict[str, Any]) -> list[str]:
    """The figures as lines for the terminal and BENCHMARKS.md."""
    fifo = figures.get("daemon_fifo_priority")
    realtime = (
        f"JACK at SCHED_FIFO {REALTIME_PRIORITY}, the daemon at {fifo}" if fifo else "not realtime"
    )
    ahead = f", the daemon sending {figures.get('output_ahead_ms', 0.0):g} ms ahead"
    rows = [
        f"JACK period {figures['period_ms']:.2f} ms, xruns {figures['xruns']}, {realtime}{ahead}"
    ]
    for bpm, lock in figures["lock"].items():
        first, every = lock["first_note_vs_beat"], lock["every_note_vs_grid"]
        if first is None:
            rows.append(f"lock to Link at {bpm} bpm: no replies")
            continue
        rows.append(
            f"lock to Link at {bpm} bpm: {lock['replies']} replies, first note vs the peer's "
            f"beat median {first['median_ms']:+.2f} ms, |p90| {first['p90_abs_ms']:.2f} ms; "
            f"every note vs its grid median {every['median_abs_ms']:.2f} ms, "
            f"p90 {every['p90_abs_ms']:.2f} ms"
        )
    bridge = figures["bridge"]
    jitter = bridge["tick_interval_error_ms"]
    rows.append(
        f"Link -> MIDI clock: {bridge['ticks']} ticks, interval error p50 {jitter['p50']:.3f} "
        f"ms, p99 {jitter['p99']:.3f} ms, max {jitter['max']:.3f} ms"
    )
    if bridge["beats_vs_peer"] is not None:
        beats = bridge["beats_vs_peer"]
        rows.append(
            f"Link -> MIDI clock beats vs the peer's: median {beats['median_ms']:+.2f} ms, "
            f"|p90| {beats['p90_abs_ms']:.2f} ms"
        )
    rows.append(
        f"peer tempo {CHANGE_FROM_BPM:g} -> {CHANGE_TO_BPM:g}: outgoing beats at the new "
        f"tempo after {bridge['tempo_change_followed_after_beats']} beats"
    )
    for rate, lead in figures["player_leads"].items():
        link, midi = lead["lag_beats_link"], lead["lag_beats_midi"]
        rows.append(
            f"player +10 % over 8 bars, clock_out_follow {rate}: lag behind the player (beats) "
            f"Link median {link['median']:.2f} |p90| {link['p90_abs']:.2f} max "
            f"{link['max']:.2f}, MIDI clock median {midi['median']:.2f} |p90| "
            f"{midi['p90_abs']:.2f} max "
            f"{midi['max']:.2f}; largest step between beats "
            f"{lead['largest_step_between_beats_pct']:.2f} %; peak after the ramp "
            f"{lead['link_peak_after_ramp_bpm']:.2f} bpm; at the end Link "
            f"{lead['link_bpm_at_end']:.2f}, MIDI clock {lead['midi_bpm_at_end']:.2f} bpm"
        )
    return rows
