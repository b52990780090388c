"""``antiphon bench --soak MINUTES``: a long night, played into the daemon without a break.

Phrases are played one after another into ``antiphon run`` on JACK (its own synchronous
``jackd -d dummy`` when none runs), with everything a long gig throws at it mixed in: OSC
parameter changes (temperature, noise, reply length), calls that interrupt the reply, state
saved and loaded, panic, and a model swap (the float32 model, then back to the shipped int8
one). Figures per window (5 minutes unless told): reaction p99 at the client, the exact
output timing error p99 (every planned reply message matched with its arrival), calls
unanswered, messages lost, resident memory and CPU. At the end: resident memory growth per
hour, two ways: a straight line fitted to the samples taken while the shipped model plays, the
first window left out as warm-up; and the growth while one model plays, the steps a model
swap leaves left out (:func:`growth_while_playing`); notes left sounding, and the exit status
after SIGTERM.

Done when: growth under 5 MB an hour, no window's reaction p99 above 1.5 times the first
window's, and nothing sounding at the end.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from antiphon.daemon.tools.bench_report import PHRASE_GAP_S, percentiles
from antiphon.daemon.tools.rig import LiveRig, reaction_run_args

WINDOW_S = 300.0
SAMPLE_EVERY_S = 5.0
REPLY_MAX_S = 1.5
ANSWER_TIMEOUT_S = PHRASE_GAP_S + 2.0
SWAP_EVERY_CALLS = 60  # to the float32 model, and back SWAP_BACK_AFTER calls later
SWAP_BACK_AFTER = 15
FP32_MODEL = "antiphon-piano-fp32"
INT8_MODEL = "antiphon-piano"
RSS_GROWTH_LIMIT_MB_PER_H = 5.0
REACTION_DRIFT_LIMIT = 1.5
CLOCK_TICKS_S = 100.0  # /proc/PID/stat counts CPU time in these (USER_HZ)


@dataclass
class ProcessSample:
    time_s: float
    rss_mb: float
    cpu_s: float
    shipped_model: bool  # the int8 model was playing (RSS is compared at the same model)


@dataclass
class SoakCall:
    last_sent_s: float
    reaction_ms: float | None  # None: unanswered
    interrupted: bool


@dataclass
class SoakLog:
    """What the soak did and saw, in order."""

    calls: list[SoakCall] = field(default_factory=list)
    samples: list[ProcessSample] = field(default_factory=list)
    actions: dict[str, int] = field(default_factory=dict)

    def did(self, action: str) -> None:
        self.actions[action] = self.actions.get(action, 0) + 1


def _process_sample(pid: int, shipped_model: bool) -> ProcessSample | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    rss_kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
    fields = stat.rsplit(")", 1)[1].split()
    cpu_s = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_S  # utime, stime
    return ProcessSample(time.monotonic(), rss_kb / 1024, cpu_s, shipped_model)


class Soak:
    """Plays the soak into a :class:`LiveRig` and keeps its :class:`SoakLog`."""

    def __init__(self, rig: LiveRig, seconds: float, seed: int) -> None:
        from pythonosc.udp_client import SimpleUDPClient

        assert rig.probe is not None and rig.daemon is not None
        self.rig = rig
        self.probe = rig.probe
        self.seconds = seconds
        self.rng = random.Random(seed)
        self.osc = SimpleUDPClient("127.0.0.1", rig.osc_port)
        self.log = SoakLog()
        self.shipped_model = True
        self._sampling = threading.Event()

    def _sample_loop(self) -> None:
        assert self.rig.daemon is not None
        while not self._sampling.wait(SAMPLE_EVERY_S):
            sample = _process_sample(self.rig.daemon.pid, self.shipped_model)
            if sample is not None:
                self.log.samples.append(sample)

    def run(self) -> SoakLog:
        from antiphon.daemon.tools.probe import human_phrase

        sampler = threading.Thread(target=self._sample_loop, name="soak-sampler", daemon=True)
        sampler.start()
        end_s = time.monotonic() + self.seconds
        swapped_at = None
        try:
            while time.monotonic() < end_s:
                number = len(self.log.calls)
                if number % SWAP_EVERY_CALLS == SWAP_EVERY_CALLS // 2:
                    self._command("/antiphon/model", FP32_MODEL, "model swap")
                    self.shipped_model, swapped_at = False, number
                elif swapped_at is not None and number - swapped_at == SWAP_BACK_AFTER:
                    self._command("/antiphon/model", INT8_MODEL, "model swap back")
                    swapped_at = None
                    time.sleep(REPLY_MAX_S)  # the swap waits for the reply playing to end
                    self.shipped_model = True
                self._mix_in()
                self.probe.clear()
                phrase = human_phrase(self.rng, notes=self.rng.randint(3, 7))
                self.log.calls.append(self._call(phrase))
        finally:
            self._sampling.set()
            sampler.join()
        return self.log

    def _command(self, address: str, value: Any, name: str) -> None:
        self.osc.send_message(address, value)
        self.log.did(name)

    def _mix_in(self) -> None:
        """Now and then, what a long gig does between phrases."""
        roll = self.rng.random()
        if roll < 0.25:
            name, value = self.rng.choice(
                [
                    ("/antiphon/temperature", round(self.rng.uniform(0.7, 1.3), 2)),
                    ("/antiphon/noise", round(self.rng.uniform(0.0, 0.2), 2)),
                    ("/antiphon/reply_ratio", round(self.rng.uniform(0.5, 2.0), 2)),
                ]
            )
            self._command(name, value, "parameter change")
        elif roll < 0.30:
            slot = self.rng.randint(1, 4)
            self._command("/antiphon/state/save", slot, "state save")
            self._command("/antiphon/state/load", slot, "state load")
        elif roll < 0.33:
            self._command("/antiphon/panic", [], "panic")
            time.sleep(0.05)

    def _call(self, phrase: list[Any]) -> SoakCall:
        from antiphon.daemon.tools.probe import sounding_notes

        probe = self.probe
        last_sent_s = probe.play(phrase)
        first_s = probe.first_note_after(last_sent_s, ANSWER_TIMEOUT_S)
        answered = first_s is not None
        reaction_ms = None
        if first_s is not None:
            reaction_ms = 1000.0 * (first_s - last_sent_s - PHRASE_GAP_S)
        interrupt = answered and self.rng.random() < 0.15
        if interrupt:
            self.log.did("interruption")  # the next call starts while this reply plays
            time.sleep(self.rng.uniform(0.05, 0.3))
        else:
            probe.wait_until(lambda got: not sounding_notes(got), REPLY_MAX_S + 2.0)
            time.sleep(0.1)
        return SoakCall(last_sent_s, reaction_ms, interrupt)


def take_out_beat_waits(calls: list[SoakCall], lines: list[str]) -> None:
    """The reaction is the daemon's: a reply's wait for the beat's grid (``beat_wait_ms`` in
    its log line, the line of the phrase end the call caused) comes out of it."""
    from antiphon.daemon.tools.bench_report import end_near, reply_ends, reply_lines

    ends = reply_ends(reply_lines(lines))
    for call in calls:
        found = end_near(call.last_sent_s + PHRASE_GAP_S, ends)
        if call.reaction_ms is not None and found is not None:
            call.reaction_ms -= 1000.0 * found[1]


def _windows(start_s: float, end_s: float, window_s: float) -> list[tuple[float, float]]:
    count = max(1, round((end_s - start_s) / window_s))
    width_s = (end_s - start_s) / count
    return [(start_s + i * width_s, start_s + (i + 1) * width_s) for i in range(count)]


def soak_figures(
    log: SoakLog,
    planned: list[tuple[float, bool, int]],
    heard: list[tuple[float, bool, int]],
    start_s: float,
    end_s: float,
    window_s: float,
) -> dict[str, Any]:
    """Per-window and whole-run figures from what the soak logged (pure)."""
    import numpy as np
    from antiphon.daemon.tools.message_match import match_messages

    match = match_messages(planned, heard)
    windows: list[dict[str, Any]] = []
    for low_s, high_s in _windows(start_s, end_s, window_s):
        calls = [c for c in log.calls if low_s <= c.last_sent_s < high_s]
        reactions = [c.reaction_ms for c in calls if c.reaction_ms is not None]
        errors = [
            1000.0 * (heard[h][0] - planned[p][0])
            for p, h in match.pairs
            if low_s <= planned[p][0] < high_s
        ]
        inside = [s for s in log.samples if low_s <= s.time_s < high_s]
        cpu_pct = (
            100.0 * (inside[-1].cpu_s - inside[0].cpu_s) / (inside[-1].time_s - inside[0].time_s)
            if len(inside) >= 2
            else None
        )
        windows.append(
            {
                "minutes": [round((low_s - start_s) / 60, 1), round((high_s - start_s) / 60, 1)],
                "calls": len(calls),
                "unanswered": len(calls) - len(reactions),
                "reaction_ms": percentiles(reactions) if reactions else None,
                "timing_error_ms": percentiles(errors) if errors else None,
                "rss_mb": inside[-1].rss_mb if inside else None,
                "cpu_percent": cpu_pct,
            }
        )
    steady = [s for s in log.samples if s.shipped_model and s.time_s >= start_s + window_s]
    if len(steady) < 3:  # a short soak: everything after its first fifth
        steady = [s for s in log.samples if s.shipped_model][len(log.samples) // 5 :]
    growth = None
    if len(steady) >= 3:
        hours = np.array([s.time_s for s in steady]) / 3600.0
        growth = float(np.polyfit(hours, [s.rss_mb for s in steady], 1)[0])
    playing_growth = growth_while_playing(steady)
    first = (windows[0]["reaction_ms"] or {}).get("p99")
    worst = max(((w["reaction_ms"] or {}).get("p99") or 0.0) for w in windows)
    return {
        "windows": windows,
        "calls": len(log.calls),
        "unanswered": sum(w["unanswered"] for w in windows),
        "messages_planned": len(planned),
        "messages_lost": match.lost,
        "messages_extra": match.extra,
        "actions": log.actions,
        "rss_growth_mb_per_hour": growth,
        "rss_growth_while_playing_mb_per_hour": playing_growth,
        "rss_samples": [  # minutes from the start, MB, whether the shipped model played
            [round((s.time_s - start_s) / 60.0, 3), round(s.rss_mb, 2), s.shipped_model]
            for s in log.samples
        ],
        "reaction_p99_worst_over_first": worst / first if first else None,
    }


def growth_while_playing(samples: list[ProcessSample]) -> float | None:
    """MB an hour that resident memory grows while one model plays, swaps left out.

    Loading a model (a swap and back) raises RSS in a step that the allocator keeps, which a
    straight line through every sample counts as growth. Here the samples are cut into runs
    between swaps (a gap of more than two sampling periods), and one slope is
    fitted to all runs together, each about its own mean (the pooled within-run slope).
    """
    runs: list[list[ProcessSample]] = []
    for sample in samples:
        if runs and sample.time_s - runs[-1][-1].time_s <= 2.5 * SAMPLE_EVERY_S:
            runs[-1].append(sample)
        else:
            runs.append([sample])
    covariance = variance = 0.0
    for run in runs:
        if len(run) < 3:
            continue
        hours = [s.time_s / 3600.0 for s in run]
        mean_h = sum(hours) / len(hours)
        mean_mb = sum(s.rss_mb for s in run) / len(run)
        pairs = zip(hours, run, strict=True)
        covariance += sum((h - mean_h) * (s.rss_mb - mean_mb) for h, s in pairs)
        variance += sum((h - mean_h) ** 2 for h in hours)
    return covariance / variance if variance else None


def judge_soak(figures: dict[str, Any]) -> dict[str, bool | None]:
    growth = figures["rss_growth_mb_per_hour"]
    playing = figures.get("rss_growth_while_playing_mb_per_hour")
    drift = figures["reaction_p99_worst_over_first"]
    return {
        "rss_growth_under_5_mb_per_hour": None if growth is None else growth < 5.0,
        "rss_growth_while_playing_under_5_mb_per_hour": None if playing is None else playing < 5.0,
        "reaction_p99_within_1.5x_first_window": None if drift is None else drift <= 1.5,
        "no_note_sounding": figures["notes_left_sounding"] == 0,
        "exit_0_after_sigterm": figures["exit_code_after_sigterm"] == 0,
    }


def run_soak(
    model: Path,
    minutes: float,
    period: int,
    seed: int,
    window_minutes: float = 5.0,
    realtime_priority: int = 0,
) -> dict[str, Any]:
    """Soak the daemon for ``minutes``; every figure, judged."""
    from antiphon.daemon.tools.bench_report import planned_notes
    from antiphon.daemon.tools.probe import sounding_notes

    run_args = reaction_run_args(model, seed, REPLY_MAX_S)
    with LiveRig(run_args, period, realtime_priority=realtime_priority) as rig:
        assert rig.probe is not None and rig.daemon is not None
        start_s = time.monotonic()
        log = Soak(rig, minutes * 60.0, seed).run()
        end_s = time.monotonic()
        time.sleep(REPLY_MAX_S + 0.3)
        exit_code = rig.terminate()
        time.sleep(0.3)  # the note-offs of its way out
        arrivals = rig.probe.all_received()
        lines = list(rig.daemon.lines)
        jack = rig.jack()
    heard = [
        (t.time_s, m.type == "note_on" and m.velocity > 0, m.note)
        for t in arrivals
        if (m := t.message).type in ("note_on", "note_off")
    ]
    take_out_beat_waits(log.calls, lines)
    figures = soak_figures(log, planned_notes(lines), heard, start_s, end_s, window_minutes * 60.0)
    figures |= {
        "daemon_log": _log_counts(lines),
        "minutes": minutes,
        "jack": jack,
        "notes_left_sounding": len(sounding_notes(arrivals)),
        "exit_code_after_sigterm": exit_code,
    }
    figures["targets"] = judge_soak(figures)
    return figures


def _log_counts(lines: list[str]) -> dict[str, int]:
    """What the daemon said: models it swapped in, warnings and errors."""
    return {
        "models_swapped_in": sum("now playing" in line for line in lines),
        "warnings": sum(" WARNING " in line for line in lines),
        "errors": sum(" ERROR " in line or "Traceback" in line for line in lines),
    }


def soak_table(figures: dict[str, Any]) -> str:
    def p99(value: dict[str, Any] | None) -> str:
        return "-" if not value else f"{value['p99']:.2f}"

    lines = [
        f"soak: {figures['minutes']:g} minutes, {figures['calls']} calls, "
        f"{figures['unanswered']} unanswered; actions {figures['actions']}",
        "window (min)   calls  unanswered  reaction p99 ms  timing error p99 ms  RSS MB  CPU %",
    ]
    for w in figures["windows"]:
        rss = "-" if w["rss_mb"] is None else f"{w['rss_mb']:.1f}"
        cpu = "-" if w["cpu_percent"] is None else f"{w['cpu_percent']:.1f}"
        lines.append(
            f"{w['minutes'][0]:5.1f}-{w['minutes'][1]:<6.1f} {w['calls']:6d} {w['unanswered']:11d}"
            f" {p99(w['reaction_ms']):>16} {p99(w['timing_error_ms']):>20} {rss:>7} {cpu:>6}"
        )
    growth = figures["rss_growth_mb_per_hour"]
    lines += [
        "RSS growth: "
        + ("-" if growth is None else f"{growth:.2f} MB/hour")
        + ", while one model plays: "
        + (
            "-"
            if figures["rss_growth_while_playing_mb_per_hour"] is None
            else f"{figures['rss_growth_while_playing_mb_per_hour']:.2f} MB/hour"
        ),
        f"messages planned {figures['messages_planned']}: {figures['messages_lost']} lost, "
        f"{figures['messages_extra']} extra",
        f"daemon log: {figures['daemon_log']}",
        f"notes left sounding: {figures['notes_left_sounding']}; exit status after SIGTERM: "
        f"{figures['exit_code_after_sigterm']}",
        "targets: " + ", ".join(f"{k} {v}" for k, v in figures["targets"].items()),
    ]
    return "\n".join(lines)
