"""``antiphon bench``: how fast Antiphon answers, measured on this machine.

Four parts, each printed as a table row and kept in the JSON:

1. The engine alone, single thread: one inference step (``Engine.feed``) and one draw
   (``Engine.sample``), p50/p99 over ``--steps`` steps of a generated continuation; the
   compute time of a 32-event reply (32 tokens drawn and fed, as a reply does); and the cost
   of the naive approach (run a 30-event sliding window from a zero state for every event)
   against the incremental one, as a ratio.
2. The daemon as a process on real JACK ports (its own ``jackd -d dummy`` when none runs):
   time from launch to the "ready" line, and peak RSS after the calls.
3. Reaction latency, ``--calls`` times: a probe client plays a phrase into the daemon's input
   and stamps the first reply note arriving at its own input; reaction = that arrival -
   (the moment the probe sent the phrase's last message + the phrase gap). The daemon's own
   figure (first note sent - the phrase end it declared) comes from its "reply" log lines.
4. Timing. Exact: for every reply message, its arrival at the probe's input minus the time
   the daemon planned it for. The daemon and the probe run on the same machine, where
   ``time.monotonic()`` (CLOCK_MONOTONIC) is one clock for every process; the planned times
   come from the daemon's debug log, one line per reply written after its last message
   (:func:`daemon.reply.format_planned`), and are paired with the arrivals in order.
   Beside it, its two parts measured apart: the daemon's schedule error (message sent -
   planned time, its own measurement, the worst per reply) and the JACK delivery time from
   one client's send to another's callback, measured with the probe on the same server;
   their p99s add up to a bound on the exact figure's p99.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from daemon.settings import DEFAULT_MODEL

if TYPE_CHECKING:
    from daemon.engine import Engine
    from daemon.jack_server import JackServer
    from daemon.probe import MidiProbe, Timed
    from daemon.reply import PlannedNote

WINDOW_EVENTS = 30  # the naive approach's sliding window
REPLY_EVENTS = 32
NAIVE_EVENTS = 200
PHRASE_GAP_S = 0.35
REPLY_MAX_S = 1.0  # keeps each call short: the bench measures the answer, not the music
TRANSPORT_MESSAGES = 300
TARGETS = {  # name: (limit, "in JACK periods added to the limit")
    "step_p99_ms": (0.3, 0),
    "reaction_p99_ms": (3.0, 1),
    "timing_error_p99_ms": (1.0, 1),
    "peak_rss_mb": (250.0, 0),
    "ready_s": (2.0, 0),
}
REPLY_LINE = re.compile(r"daemon\.live: reply (.*)$")
PLANNED_LINE = re.compile(r"daemon\.performer: reply messages .*\bplanned=(\S*)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        type=Path,
        default=DEFAULT_MODEL,
        help="the ONNX model (default: the shipped one)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures here as JSON")
    parser.add_argument(
        "--calls", type=int, default=50, help="calls played to the daemon (default: 50)"
    )
    parser.add_argument(
        "--steps", type=int, default=5000, help="inference steps timed (default: 5000)"
    )
    parser.add_argument(
        "--period",
        type=int,
        default=128,
        help="frames per JACK period of the bench's own jackd (default: 128)",
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the model and the phrases")


def percentiles(values_ms: list[float]) -> dict[str, float]:
    import numpy as np

    data = np.asarray(values_ms, dtype=np.float64)
    return {
        "p50": float(np.percentile(data, 50)),
        "p99": float(np.percentile(data, 99)),
        "max": float(data.max()),
        "n": int(data.size),
    }


# 1. The engine alone ------------------------------------------------------------------------


def _primed(engine: Engine, seed: int) -> None:
    """Feed the engine a played phrase, as the daemon would have heard it."""
    from daemon.codec import StreamEncoder
    from daemon.probe import human_phrase

    encoder = StreamEncoder(engine.vocabulary)
    for timed in human_phrase(random.Random(seed), notes=16):
        m = timed.message
        if m.type == "note_on" and m.velocity > 0:
            tokens = encoder.note_on(m.note, m.velocity, timed.time_s)
        elif m.type in ("note_on", "note_off"):
            tokens = encoder.note_off(m.note, timed.time_s)
        else:
            tokens = encoder.sustain(m.value, timed.time_s)
        for token in tokens:
            engine.feed(token)


def _elapsed_ms(start_ns: int) -> float:
    return (time.perf_counter_ns() - start_ns) / 1e6


def measure_engine(model: Path, steps: int, seed: int) -> dict[str, Any]:
    from daemon.engine import Engine

    engine = Engine(model, seed=seed)
    _primed(engine, seed)
    step_ms, sample_ms = [], []
    for _ in range(steps):
        start = time.perf_counter_ns()
        token = engine.sample()
        sample_ms.append(_elapsed_ms(start))
        start = time.perf_counter_ns()
        engine.feed(token)
        step_ms.append(_elapsed_ms(start))
    engine.reset()
    _primed(engine, seed)
    after_call = engine.get_state()
    reply_ms = []
    for _ in range(max(20, steps // 50)):
        engine.set_state(after_call)
        start = time.perf_counter_ns()
        for _ in range(REPLY_EVENTS):
            engine.feed(engine.sample())
        reply_ms.append(_elapsed_ms(start))
    return {
        "step_ms": percentiles(step_ms),
        "sample_ms": percentiles(sample_ms),
        "reply32_ms": percentiles(reply_ms),
        "naive": measure_naive(engine, after_call),
        "layers": engine.info.layers,
        "hidden": engine.info.hidden,
    }


def measure_naive(engine: Engine, after_call: Any) -> dict[str, Any]:
    """Per generated event: the window from a zero state, against one incremental step."""
    import numpy as np

    engine.set_state(after_call)
    window = [engine.sample() for _ in range(WINDOW_EVENTS)]
    naive_ms, incremental_ms = [], []
    for _ in range(NAIVE_EVENTS):
        start = time.perf_counter_ns()
        engine.reset()
        for token in window:
            engine.feed(token)
        token = engine.sample()
        naive_ms.append(_elapsed_ms(start))
        window = [*window[1:], token]
    engine.set_state(after_call)
    for _ in range(NAIVE_EVENTS):
        start = time.perf_counter_ns()
        engine.feed(engine.sample())
        incremental_ms.append(_elapsed_ms(start))
    naive, incremental = float(np.median(naive_ms)), float(np.median(incremental_ms))
    return {
        "window_events": WINDOW_EVENTS,
        "naive_per_event_ms": naive,
        "incremental_per_event_ms": incremental,
        "ratio": naive / incremental,
    }


# 2-4. The daemon on JACK ---------------------------------------------------------------------


@dataclass
class Call:
    """One call of the bench: when its last message left, when the reply's first note came."""

    last_sent_s: float
    first_note_s: float | None

    @property
    def reply_s(self) -> float:
        assert self.first_note_s is not None, "an unanswered call"
        return self.first_note_s


def _jack_tool_number(tool: str, env: dict[str, str]) -> int | None:
    if shutil.which(tool) is None:
        return None
    out = subprocess.run([tool], capture_output=True, text=True, check=False, env=env).stdout
    found = re.search(r"(\d+)", out)
    return int(found.group(1)) if found else None


def measure_live(model: Path, calls: int, period: int, seed: int) -> dict[str, Any]:
    from daemon.jack_server import SERVER_ENV, JackServer, server_running

    own: JackServer | None = None
    if not server_running(os.environ.get(SERVER_ENV)):
        own = JackServer(period_frames=period).start()
        os.environ[SERVER_ENV] = own.name
    try:
        env = dict(os.environ)
        frames = own.period_frames if own else _jack_tool_number("jack_bufsize", env)
        rate = own.sample_rate if own else _jack_tool_number("jack_samplerate", env)
        jack = {
            "server": os.environ.get(SERVER_ENV, "default"),
            "started_by_bench": own is not None,
            "period_frames": frames,
            "sample_rate": rate,
            "period_ms": 1000.0 * frames / rate if frames and rate else None,
        }
        figures = _run_daemon(model, calls, seed, env)
        jack["xruns"] = own.xruns() if own else None
        return {"jack": jack, **figures}
    finally:
        if own is not None:
            own.stop()
            os.environ.pop(SERVER_ENV, None)


def _run_daemon(model: Path, calls: int, seed: int, env: dict[str, str]) -> dict[str, Any]:
    from daemon.port_names import virtual_port_names
    from daemon.probe import DaemonProcess, MidiProbe

    names = virtual_port_names("jack", "AntiphonBench")
    run_args = [
        *("--midi-api", "jack", "--port-name", "AntiphonBench", "--model", str(model)),
        *("--seed", str(seed), "--osc-port", "0", "--phrase-gap", str(PHRASE_GAP_S)),
        *("--reply-max-s", str(REPLY_MAX_S)),
    ]
    # At debug level the daemon logs the planned time of every reply message (once a reply
    # has ended, so the logging does not delay the music).
    daemon = DaemonProcess(run_args, env=env, log_level="debug").start()
    try:
        probe = MidiProbe("jack", names.input_listed, names.output_listed, name="BenchProbe")
        try:
            calls_played = _play_calls(probe, calls, seed)
            time.sleep(REPLY_MAX_S + 0.2)  # the last reply has ended: all of it arrived
            arrivals = probe.all_received()
        finally:
            probe.close()
        transport = _measure_transport()
        peak_rss_mb = daemon.peak_rss_mb()
    finally:
        exit_code = daemon.terminate()
    replies = _reply_lines(daemon.lines)
    answered = [c for c in calls_played if c.first_note_s is not None]
    reaction = [1000.0 * (c.reply_s - c.last_sent_s - PHRASE_GAP_S) for c in answered]
    return {
        "ready_s": daemon.ready_s,
        "peak_rss_mb": peak_rss_mb,
        "exit_code_after_sigterm": exit_code,
        "reaction_ms": percentiles(reaction) if reaction else None,
        "unanswered_calls": len(calls_played) - len(answered),
        **_split_reaction(answered, replies),
        **_internal_figures(replies),
        "transport_ms": percentiles(transport),
        **exact_timing(_planned_notes(daemon.lines), arrivals),
    }


def _play_calls(probe: MidiProbe, calls: int, seed: int) -> list[Call]:
    from daemon.probe import note_ons, sounding_notes

    rng = random.Random(seed)
    played = []
    for _ in range(calls):
        probe.clear()
        last_sent_s = probe.play(_short_phrase(rng))
        if probe.wait_until(lambda got: bool(note_ons(got)), PHRASE_GAP_S + 2.0):
            played.append(Call(last_sent_s, note_ons(probe.received())[0].time_s))
        else:
            played.append(Call(last_sent_s, None))
        # Let the reply finish (every note released) before the next call.
        probe.wait_until(lambda got: not sounding_notes(got), REPLY_MAX_S + 2.0)
        time.sleep(0.1)
    return played


def _split_reaction(answered: list[Call], replies: list[dict[str, str]]) -> dict[str, Any]:
    """The reaction in two: the call's last message reaching the daemon (the phrase end it
    declares, less the gap), and the daemon's declared phrase end to the first note arriving.
    Calls and reply lines are paired by that phrase end (within 50 ms)."""
    ends_s = [float(r["phrase_end_s"]) for r in replies if "phrase_end_s" in r]
    heard_ms, answer_ms = [], []
    for call in answered:
        expected_s = call.last_sent_s + PHRASE_GAP_S
        declared_s = min(ends_s, key=lambda end_s: abs(end_s - expected_s), default=None)
        if declared_s is None or abs(declared_s - expected_s) > 0.05:
            continue
        heard_ms.append(1000.0 * (declared_s - expected_s))
        answer_ms.append(1000.0 * (call.reply_s - declared_s))
    return {
        "call_heard_ms": percentiles(heard_ms) if heard_ms else None,
        "declared_end_to_first_note_ms": percentiles(answer_ms) if answer_ms else None,
    }


def _short_phrase(rng: random.Random) -> list[Any]:
    from daemon.probe import human_phrase

    return human_phrase(rng, notes=rng.randint(4, 7))


def _measure_transport() -> list[float]:
    from daemon.probe import measure_delivery

    return measure_delivery("jack", TRANSPORT_MESSAGES)


def _reply_lines(lines: list[str]) -> list[dict[str, str]]:
    replies = []
    for line in lines:
        found = REPLY_LINE.search(line)
        if found:
            replies.append(dict(pair.split("=", 1) for pair in found.group(1).split()))
    return replies


def _planned_notes(lines: list[str]) -> list[PlannedNote]:
    from daemon.reply import parse_planned

    planned = []
    for line in lines:
        found = PLANNED_LINE.search(line)
        if found:
            planned.extend(parse_planned(found.group(1)))
    return planned


def exact_timing(planned: list[PlannedNote], arrivals: list[Timed]) -> dict[str, Any]:
    """Arrival at the probe - planned time, per reply message, in ms.

    The daemon's messages reach the probe in the order they were sent; the two sequences of
    (note-on?, pitch) are aligned (:class:`difflib.SequenceMatcher`), so a message lost on
    the way, or one that was not a reply's, leaves the others paired right. Those left
    unpaired are counted.
    """
    notes = [t for t in arrivals if t.message.type in ("note_on", "note_off")]
    heard = [(m.type == "note_on" and m.velocity > 0, m.note) for m in (t.message for t in notes)]
    sent = [(on, pitch) for _, on, pitch in planned]
    matcher = difflib.SequenceMatcher(None, sent, heard, autojunk=False)
    errors_ms = [
        1000.0 * (notes[block.b + i].time_s - planned[block.a + i][0])
        for block in matcher.get_matching_blocks()
        for i in range(block.size)
    ]
    return {
        "timing_error_ms": percentiles(errors_ms) if errors_ms else None,
        "timing_error_unpaired": len(sent) + len(heard) - 2 * len(errors_ms),
    }


def _internal_figures(replies: list[dict[str, str]]) -> dict[str, Any]:
    reaction = [float(r["reaction_ms"]) for r in replies if r.get("reaction_ms") != "None"]
    errors = [float(r["schedule_error_max_ms"]) for r in replies if "schedule_error_max_ms" in r]
    return {
        "replies_logged": len(replies),
        "reaction_internal_ms": percentiles(reaction) if reaction else None,
        "schedule_error_worst_per_reply_ms": percentiles(errors) if errors else None,
    }


# The report ----------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu = platform.processor() or "unknown"
    versions: dict[str, str | None] = {}
    for package in ("onnxruntime", "python-rtmidi", "mido", "numpy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load_average_1min": os.getloadavg()[0],
        "os": platform.platform(),
        "python": platform.python_version(),
        **versions,
    }


def timing_error_bound_ms(results: dict[str, Any]) -> float | None:
    """A bound on the exact timing error's p99: schedule error p99 + JACK delivery p99."""
    schedule = results.get("schedule_error_worst_per_reply_ms")
    transport = results.get("transport_ms")
    return schedule["p99"] + transport["p99"] if schedule and transport else None


def judge(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    period_ms = (results.get("jack") or {}).get("period_ms") or 0.0
    measured = {
        "step_p99_ms": results["step_ms"]["p99"],
        "reaction_p99_ms": (results.get("reaction_ms") or {}).get("p99"),
        "timing_error_p99_ms": (results.get("timing_error_ms") or {}).get("p99"),
        "peak_rss_mb": results.get("peak_rss_mb"),
        "ready_s": results.get("ready_s"),
    }
    verdicts = {}
    for name, (limit, periods) in TARGETS.items():
        target = limit + periods * period_ms
        value = measured[name]
        verdicts[name] = {
            "target": target,
            "measured": value,
            "met": None if value is None else bool(value <= target),
        }
    return verdicts


def _row(name: str, figures: dict[str, Any] | None, unit: str = "ms") -> str:
    if not figures:
        return f"{name:<48} (not measured)"
    return (
        f"{name:<48} p50 {figures['p50']:8.3f} {unit}   p99 {figures['p99']:8.3f} {unit}"
        f"   (n={figures['n']})"
    )


def _ms(value: float | None) -> str:
    return "(not measured)" if value is None else f"{value:.3f} ms"


def table(results: dict[str, Any]) -> str:
    jack = results.get("jack") or {}
    naive = results["naive"]
    host = results["machine"]
    lines = [
        f"Antiphon bench, {results['date']}, {host['cpu']}, {host['cores']} cores "
        f"(load {host['load_average_1min']:.1f}), onnxruntime {host['onnxruntime']}",
        f"model {results['model']} ({results['layers']} x {results['hidden']} LSTM)",
        _row("inference step (feed, 1 thread)", results["step_ms"]),
        _row("draw (sample)", results["sample_ms"]),
        _row(f"{REPLY_EVENTS}-event reply compute", results["reply32_ms"]),
        f"{'naive 30-event window per event':<48} {naive['naive_per_event_ms']:.3f} ms vs "
        f"{naive['incremental_per_event_ms']:.3f} ms incremental: {naive['ratio']:.1f}x",
    ]
    if jack:
        lines += [
            f"JACK period {jack['period_frames']} frames at {jack['sample_rate']} Hz = "
            f"{jack['period_ms']:.2f} ms "
            + ("(own jackd -d dummy" if jack["started_by_bench"] else "(the running server")
            + (f", {jack['xruns']} overruns)" if jack["xruns"] is not None else ")"),
            _row("reaction: first note at client - (last sent + gap)", results["reaction_ms"]),
            _row("  of which: last message reaches the daemon", results["call_heard_ms"]),
            _row(
                "  of which: declared phrase end -> first note",
                results["declared_end_to_first_note_ms"],
            ),
            _row("reaction inside the daemon (its log)", results["reaction_internal_ms"]),
            _row(
                "schedule error, worst per reply (daemon)",
                results["schedule_error_worst_per_reply_ms"],
            ),
            _row("JACK delivery client -> client", results["transport_ms"]),
            _row("output timing error, exact: arrival - planned", results["timing_error_ms"])
            + f"   {results['timing_error_unpaired']} unpaired",
            f"{'  bound: schedule error p99 + delivery p99':<48} "
            + _ms(timing_error_bound_ms(results)),
            f"{'start to ready':<48} {results['ready_s']:.2f} s",
            f"{'peak RSS (VmHWM)':<48} {results['peak_rss_mb']:.0f} MB",
            f"{'exit status after SIGTERM':<48} {results['exit_code_after_sigterm']}",
            f"{'calls unanswered':<48} {results['unanswered_calls']} of {results['calls']}",
        ]
    lines.append("targets:")
    for name, verdict in results["targets"].items():
        value = verdict["measured"]
        shown = "n/a" if value is None else f"{value:.3f}"
        state = {True: "met", False: "MISSED", None: "not measured"}[verdict["met"]]
        lines.append(f"  {name:<24} {shown:>10} <= {verdict['target']:.3f}  {state}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from daemon.jack_server import JackServerError, jackd_available
    from daemon.model_file import ModelError
    from daemon.port_names import PortError
    from daemon.probe import DaemonError

    if args.calls < 1 or args.steps < 100:
        print("antiphon bench: needs --calls >= 1 and --steps >= 100", file=sys.stderr)
        return 2
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "model": str(args.model),
        "calls": args.calls,
    }
    try:
        results |= measure_engine(args.model, args.steps, args.seed)
        if jackd_available():
            results |= measure_live(args.model, args.calls, args.period, args.seed)
        else:
            print("antiphon bench: jackd is not installed: no latency figures", file=sys.stderr)
    except (ModelError, PortError, JackServerError, DaemonError) as err:
        print(f"antiphon bench: {err}", file=sys.stderr)
        return 2
    results["timing_error_bound_p99_ms"] = timing_error_bound_ms(results)
    results["targets"] = judge(results)
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0
