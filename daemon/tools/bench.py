"""``antiphon bench``: how fast Antiphon answers, measured on this machine.

Five parts, each printed as a table row and kept in the JSON:

1. The engine alone, single thread: one inference step (``Engine.feed``) and one draw
   (``Engine.sample``), p50/p99 over ``--steps`` steps of a generated continuation; the
   compute time of a 32-event reply (32 tokens drawn and fed, as a reply does), also with
   every reply shaping push on, and the player's memory's cost per note heard
   (:mod:`antiphon.daemon.tools.bench_shaping`); a player's note-on entering the state in
   one run, as the duet feeds it, back to back and after the engine sat idle for 100 ms (the
   duet's reaction between a player's notes: :func:`measure_heard_note`); and the cost
   of the naive approach (run a 30-event sliding window from a zero state for every event)
   against the incremental one, as a ratio.
2. The daemon as a process on real JACK ports (its own ``jackd -d dummy`` when none runs):
   time from launch to the "ready" line, and peak RSS after the calls.
3. Answer time and reaction latency, ``--calls`` times: a probe client plays a phrase (its
   last note held longer, as a player ends a phrase: :func:`ended_phrase`) into the
   daemon's input and stamps the first reply note arriving at its own input. The answer time
   (what a player hears) = that arrival - the moment the probe sent the phrase's last
   message. The reaction = that arrival - (that moment + the phrase gap) with ``--turns
   gap`` (the default); with ``--turns auto``, that arrival - the phrase end the daemon
   declared (its log; one clock for every process on this machine). The daemon's own
   figure (first note sent - the phrase end it declared) comes from its "reply" log lines.
4. Timing. Exact: for every reply message, its arrival at the probe's input minus the time
   the daemon planned it for. The daemon and the probe run on the same machine, where
   ``time.monotonic()`` (CLOCK_MONOTONIC) is one clock for every process; the planned times
   come from the daemon's debug log, one line per reply written after its last message
   (:func:`antiphon.daemon.musician.answering.reply.format_planned`), and are paired with the
   arrivals in
   order.
   Beside it, its two parts measured apart: the daemon's schedule error (message sent -
   planned time, its own measurement, the worst per reply) and the JACK delivery time from
   one client's send to another's callback, measured with the probe on the same server;
   their p99s add up to a bound on the exact figure's p99.

5. The beat (:mod:`antiphon.daemon.tools.bench_pulse`): the beat tracker's cost per onset, and
   the jitter of MIDI clock as the daemon's input hears it.

Every planned reply message is matched with its arrival
(:mod:`antiphon.daemon.tools.message_match`): lost, extra and reordered messages are counted,
and a lost message or an unanswered call fails its target. Beside them, how late a bare
thread's timed wait ends on this machine (:mod:`antiphon.daemon.tools.wakeups`), the floor
under the daemon's timing. ``--realtime-priority`` runs the bench's JACK server realtime and
the daemon under ``chrt --fifo``.

``--soak MINUTES`` (:mod:`antiphon.daemon.tools.soak`) and ``--fuzz SECONDS``
(:mod:`antiphon.daemon.tools.fuzz`) are long runs of their own instead, and so is ``--link``
(:mod:`antiphon.daemon.tools.bench_link`: Ableton Link and the outgoing clock, with a real
Link peer; needs the link extra).

This module measures; :mod:`antiphon.daemon.tools.bench_report` turns what it measured into the
figures, the verdicts against the targets and the table.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from antiphon.daemon.musician.hearing.turns import AUTO_PHRASE_GAP_S
from antiphon.daemon.settings import PIANO_MODEL
from antiphon.daemon.tools.bench_pulse import measure_pulse, pulse_rows
from antiphon.daemon.tools.bench_report import (
    PHRASE_GAP_S,
    REPLY_EVENTS,
    Call,
    judge,
    live_figures,
    machine,
    percentiles,
    table,
    timing_error_bound_ms,
)

if TYPE_CHECKING:
    from antiphon.daemon.musician.model.engine import Engine
    from antiphon.daemon.tools.jack_server import JackServer
    from antiphon.daemon.tools.probe import MidiProbe

WINDOW_EVENTS = 30  # the naive approach's sliding window
NAIVE_EVENTS = 200
REPLY_MAX_S = 1.0  # keeps each call short: the bench measures the answer, not the music
TRANSPORT_MESSAGES = 300
FINAL_LENGTHENING = 2.5  # a bench phrase's last note is held this many times as long
ANSWER_WAIT_S = 1.0  # a call is answered within this (the default longest wait is 0.8 s)
HEARD_IDLE_S = 0.1  # the engine idle between two of a player's notes (eighths at 150 bpm)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        type=Path,
        default=PIANO_MODEL,
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
    parser.add_argument(
        "--turns",
        choices=["gap", "auto"],
        default="gap",
        help=f"the daemon's turn-taking: gap (a fixed {PHRASE_GAP_S} s gap, the bench's default: "
        f"its reaction is timed from the gap) or auto (the daemon's default: the judged wait, "
        f"at most {AUTO_PHRASE_GAP_S} s)",
    )
    parser.add_argument(
        "--calls-from",
        type=Path,
        metavar="FOLDER",
        help="play calls cut from the real performances in this folder of MIDI files (each "
        "phrase's last seconds, up to a silence of 1 s: daemon/tools/real_calls.py) instead of "
        "the bench's made-up phrases",
    )
    parser.add_argument(
        "--soak",
        type=float,
        metavar="MINUTES",
        help="instead: a long night of calls, OSC changes, swaps and panics (daemon/tools/soak.py)",
    )
    parser.add_argument(
        "--window-minutes", type=float, default=5.0, help="the soak's report window (default: 5)"
    )
    parser.add_argument(
        "--fuzz",
        type=float,
        metavar="SECONDS",
        help="instead: random bytes on the input between real calls, with an OSC flood "
        "(daemon/tools/fuzz.py)",
    )
    parser.add_argument(
        "--osc-flood",
        type=float,
        default=2000.0,
        metavar="PER_S",
        help="OSC parameter changes a second sent alongside --fuzz (default: 2000, as fast "
        "as it goes)",
    )
    parser.add_argument(
        "--link",
        action="store_true",
        help="instead: Ableton Link and the outgoing clock, with a real Link peer "
        "(daemon/tools/bench_link.py; needs pip install 'antiphon[link]')",
    )
    parser.add_argument(
        "--plot",
        type=Path,
        metavar="PNG",
        help="with --link: draw the player speeding up and the outgoing clock following "
        "(needs matplotlib: the plot extra)",
    )
    parser.add_argument(
        "--output-ahead-ms",
        type=float,
        default=0.0,
        help="with --link: the daemon's output_ahead_ms (half the JACK period, 1.33 ms at "
        "128 frames, centres JACK's delivery on the plan; default: 0)",
    )
    parser.add_argument(
        "--realtime-priority",
        type=int,
        default=0,
        help="run the bench's own jackd realtime, and the daemon under chrt --fifo at this "
        "priority, as docs/service.md's realtime set-up does (default: 0, neither)",
    )


# 1. The engine alone ------------------------------------------------------------------------


def _primed(engine: Engine, seed: int) -> None:
    """Feed the engine a played phrase, as the daemon would have heard it."""
    from antiphon.daemon.codec import StreamEncoder
    from antiphon.daemon.tools.probe import human_phrase

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
    from antiphon.daemon.musician.model.engine import Engine
    from antiphon.daemon.tools.bench_shaping import measure_shaping

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
        **measure_heard_note(engine, after_call, max(20, steps // 50)),
        **measure_shaping(engine, after_call, seed),
        "naive": measure_naive(engine, after_call),
        "layers": engine.info.layers,
        "hidden": engine.info.hidden,
    }


def measure_heard_note(engine: Engine, after_call: Any, runs: int) -> dict[str, Any]:
    """A player's note-on entering the state as the duet feeds it (its time shift, velocity
    and pitch in one run), back to back and after the engine sat idle for ``HEARD_IDLE_S``
    (the time between a player's notes): what is left of the model in the caches then is
    the machine's, and the idle figure is the duet's reaction on it."""
    from antiphon.daemon.codec import StreamEncoder

    encoder = StreamEncoder(engine.vocabulary)
    encoder.note_on(60, 80, 0.0)
    tokens = encoder.note_on(64, 96, 0.3)
    figures = {}
    for name, idle_s in (("heard_note_ms", 0.0), ("heard_note_idle_ms", HEARD_IDLE_S)):
        times_ms = []
        for _ in range(runs):
            engine.set_state(after_call)
            engine.feed_run(tokens)  # the same run just before: warm, but for the idle
            engine.set_state(after_call)
            if idle_s:
                time.sleep(idle_s)
            start = time.perf_counter_ns()
            engine.feed_run(tokens)
            times_ms.append(_elapsed_ms(start))
        figures[name] = percentiles(times_ms)
    return figures


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


def _jack_tool_number(tool: str, env: dict[str, str]) -> int | None:
    if shutil.which(tool) is None:
        return None
    out = subprocess.run([tool], capture_output=True, text=True, check=False, env=env).stdout
    found = re.search(r"(\d+)", out)
    return int(found.group(1)) if found else None


def measure_live(
    model: Path,
    calls: int,
    period: int,
    seed: int,
    turns: str = "gap",
    realtime_priority: int = 0,
    phrases: list[list[Any]] | None = None,
) -> dict[str, Any]:
    from antiphon.daemon.tools.jack_server import SERVER_ENV, JackServer, server_running

    with ExitStack() as stack:
        own: JackServer | None = None
        if not server_running(os.environ.get(SERVER_ENV)):
            server = JackServer(period_frames=period, realtime=realtime_priority > 0)
            own = stack.enter_context(server)
            stack.enter_context(own.as_default())
        env = dict(os.environ)
        frames = own.period_frames if own else _jack_tool_number("jack_bufsize", env)
        rate = own.sample_rate if own else _jack_tool_number("jack_samplerate", env)
        jack = {
            "server": os.environ.get(SERVER_ENV, "default"),
            "started_by_bench": own is not None,
            "period_frames": frames,
            "sample_rate": rate,
            "period_ms": 1000.0 * frames / rate if frames and rate else None,
            "realtime": own.realtime if own else None,
        }
        figures = _run_daemon(model, calls, seed, env, turns, realtime_priority, phrases)
        jack["xruns"] = own.xruns() if own else None
        return {"jack": jack, **figures}


def _run_daemon(
    model: Path,
    calls: int,
    seed: int,
    env: dict[str, str],
    turns: str = "gap",
    realtime_priority: int = 0,
    phrases: list[list[Any]] | None = None,
) -> dict[str, Any]:
    from antiphon.daemon.midi.port_names import virtual_port_names
    from antiphon.daemon.tools.probe import DaemonProcess, MidiProbe
    from antiphon.daemon.tools.rig import reaction_run_args

    names = virtual_port_names("jack", "AntiphonBench")
    run_args = [
        *("--midi-api", "jack", "--port-name", "AntiphonBench", "--osc-port", "0"),
        *reaction_run_args(model, seed, REPLY_MAX_S, turns),
    ]
    launcher = ["chrt", "--fifo", str(realtime_priority)] if realtime_priority > 0 else []
    # At debug level the daemon logs the planned time of every reply message (once a reply
    # has ended, so the logging does not delay the music).
    daemon = DaemonProcess(run_args, env=env, log_level="debug", launcher=launcher).start()
    try:
        probe = MidiProbe("jack", names.input_listed, names.output_listed, name="BenchProbe")
        try:
            calls_played = _play_calls(probe, calls, seed, phrases)
            time.sleep(REPLY_MAX_S + 0.2)  # the last reply has ended: all of it arrived
            arrivals = probe.all_received()
        finally:
            probe.close()
        transport_ms = _measure_transport()
        peak_rss_mb = daemon.peak_rss_mb()
    finally:
        exit_code = daemon.terminate()
    return {
        "ready_s": daemon.ready_s,
        "peak_rss_mb": peak_rss_mb,
        "exit_code_after_sigterm": exit_code,
        "daemon_fifo_priority": realtime_priority or None,
        **live_figures(
            calls_played,
            arrivals,
            transport_ms,
            daemon.lines,
            PHRASE_GAP_S if turns == "gap" else None,
        ),
    }


def _play_calls(
    probe: MidiProbe, calls: int, seed: int, phrases: list[list[Any]] | None = None
) -> list[Call]:
    """Play ``calls`` calls (``phrases``, else the bench's made-up ones) and note when each
    ended and when its answer came."""
    from antiphon.daemon.tools.probe import sounding_notes

    rng = random.Random(seed)
    played = []
    for i in range(calls):
        probe.clear()
        last_sent_s = probe.play(phrases[i] if phrases else _short_phrase(rng))
        played.append(Call(last_sent_s, probe.first_note_after(last_sent_s, ANSWER_WAIT_S + 2.0)))
        # Let the reply finish (every note released) before the next call.
        probe.wait_until(lambda got: not sounding_notes(got), REPLY_MAX_S + 2.0)
        time.sleep(0.1)
    return played


def _short_phrase(rng: random.Random) -> list[Any]:
    from antiphon.daemon.tools.probe import human_phrase

    return ended_phrase(human_phrase(rng, notes=rng.randint(4, 7)))


def ended_phrase(events: list[Any], lengthening: float = FINAL_LENGTHENING) -> list[Any]:
    """The phrase with its last note held ``lengthening`` times as long, as a player ends a
    phrase: without it, a phrase has nothing that says it is over, and ``--turns auto``
    waits the longest wait out (its answer time is then the phrase gap's)."""
    from antiphon.daemon.tools.probe import Timed

    last_on = max(
        (i for i, e in enumerate(events) if e.message.type == "note_on" and e.message.velocity),
        key=lambda i: events[i].time_s,
    )
    on = events[last_on]
    off = next(
        i
        for i, e in enumerate(events)
        if e.message.type in ("note_off", "note_on")
        and e.message.note == on.message.note
        and e.time_s > on.time_s
        and not (e.message.type == "note_on" and e.message.velocity)
    )
    held_s = events[off].time_s - on.time_s
    ended = [*events[:off], *events[off + 1 :]]
    ended.append(Timed(on.time_s + lengthening * held_s, events[off].message))
    return sorted(ended, key=lambda e: e.time_s)


def _wakeups(fifo_priority: int) -> dict[str, Any] | None:
    from antiphon.daemon.tools.wakeups import measure_wakeups

    late_ms = measure_wakeups(fifo_priority=fifo_priority)
    return percentiles(late_ms) if late_ms else None


def _measure_transport() -> list[float]:
    from antiphon.daemon.tools.probe import measure_delivery

    return measure_delivery("jack", TRANSPORT_MESSAGES)


def _run_link(args: argparse.Namespace) -> int:
    """``--link``: Ableton Link and the outgoing clock (a run of its own)."""
    from antiphon.daemon.midi.port_names import PortError
    from antiphon.daemon.musician.clocks.link_clock import INSTALL_HINT, link_installed
    from antiphon.daemon.tools.bench_link import link_rows, measure_link
    from antiphon.daemon.tools.jack_server import JackServerError, jackd_available
    from antiphon.daemon.tools.link_peer import LinkPeerError
    from antiphon.daemon.tools.probe import DaemonError

    if not link_installed():
        print(f"antiphon bench: --link needs the Link binding: {INSTALL_HINT}", file=sys.stderr)
        return 2
    if args.plot:
        import matplotlib  # noqa: F401  (the plot extra: said before the run, not after it)
    if not jackd_available():
        print("antiphon bench: --link needs jackd (Debian: jackd2)", file=sys.stderr)
        return 2
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
    }
    try:
        results["link"] = measure_link(
            args.period, args.seed, args.realtime_priority, args.output_ahead_ms
        )
    except (PortError, JackServerError, DaemonError, LinkPeerError) as err:
        print(f"antiphon bench: {err}", file=sys.stderr)
        return 2
    print("\n".join(link_rows(results["link"])))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    if args.plot:
        from antiphon.daemon.tools.link_plot import plot_player_leads

        plot_player_leads(results["link"]["player_leads"], args.plot)
    return 0


def _run_long(args: argparse.Namespace) -> int:
    """``--soak`` or ``--fuzz``: a long run of its own, its figures judged in its table."""
    from antiphon.daemon.midi.port_names import PortError
    from antiphon.daemon.tools.fuzz import fuzz_table, run_fuzz_bench
    from antiphon.daemon.tools.jack_server import JackServerError
    from antiphon.daemon.tools.probe import DaemonError
    from antiphon.daemon.tools.soak import run_soak, soak_table

    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "model": str(args.model),
    }
    try:
        if args.soak is not None:
            results["soak"] = run_soak(
                args.model,
                args.soak,
                args.period,
                args.seed,
                args.window_minutes,
                args.realtime_priority,
            )
            print(soak_table(results["soak"]))
        else:
            results["fuzz"] = run_fuzz_bench(
                args.model,
                args.fuzz,
                args.period,
                args.seed,
                args.realtime_priority,
                args.osc_flood,
            )
            print(fuzz_table(results["fuzz"]))
    except (PortError, JackServerError, DaemonError) as err:
        print(f"antiphon bench: {err}", file=sys.stderr)
        return 2
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def run(args: argparse.Namespace) -> int:
    from antiphon.daemon.midi.port_names import PortError
    from antiphon.daemon.musician.model.model_file import ModelError
    from antiphon.daemon.tools.jack_server import JackServerError, jackd_available
    from antiphon.daemon.tools.probe import DaemonError

    if args.soak is not None or args.fuzz is not None:
        return _run_long(args)
    if args.link:
        return _run_link(args)
    if args.calls < 1 or args.steps < 100:
        print("antiphon bench: needs --calls >= 1 and --steps >= 100", file=sys.stderr)
        return 2
    phrases = None
    if args.calls_from is not None:
        from antiphon.daemon.tools.real_calls import calls_from

        try:
            phrases = calls_from(args.calls_from, args.calls, args.seed)
        except ValueError as err:
            print(f"antiphon bench: {err}", file=sys.stderr)
            return 2
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "model": str(args.model),
        "calls": args.calls,
        "turns": args.turns,
        "calls_from": None if args.calls_from is None else str(args.calls_from),
    }
    try:
        results |= measure_engine(args.model, args.steps, args.seed)
        results["wakeup_late_ms"] = _wakeups(args.realtime_priority)
        if jackd_available():
            results |= measure_live(
                args.model,
                args.calls,
                args.period,
                args.seed,
                args.turns,
                args.realtime_priority,
                phrases,
            )
        else:
            print("antiphon bench: jackd is not installed: no latency figures", file=sys.stderr)
    except (ModelError, PortError, JackServerError, DaemonError) as err:
        print(f"antiphon bench: {err}", file=sys.stderr)
        return 2
    try:
        results["pulse"] = measure_pulse(args.seed, args.period, jackd_available())
    except (PortError, JackServerError) as err:
        print(f"antiphon bench: {err}", file=sys.stderr)
        return 2
    results["timing_error_bound_p99_ms"] = timing_error_bound_ms(results)
    results["targets"] = judge(results)
    print(table(results))
    print("\n".join(pulse_rows(results["pulse"])))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0
