"""The bench's figures from its raw measurements, the verdicts and the report; no measuring.

Raw in (timings in ms, the calls' send and arrival times, the probe's arrivals, the daemon's
log lines), figures out: percentiles; the daemon's "reply" lines and planned message times
read back from its log; calls paired with the replies they caused; the exact timing error
(arrival - planned, paired message by message); the verdicts against the targets; the table
:mod:`antiphon.daemon.tools.bench` prints. Pure except :func:`machine`, which reads what the
machine is.
"""

from __future__ import annotations

import os
import platform
import re
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from antiphon.daemon.musician.answering.reply import PlannedNote
    from antiphon.daemon.tools.probe import Timed

# The bench's set-up, which its figures are read against.
REPLY_EVENTS = 32  # the reply whose compute time is timed
PHRASE_GAP_S = 0.35  # the daemon's phrase gap: the reaction counts from the call's end + gap
TARGETS = {  # name: (limit, "in JACK periods added to the limit")
    "step_p99_ms": (0.3, 0),
    "reaction_p99_ms": (3.0, 1),
    "timing_error_p99_ms": (1.0, 1),
    "peak_rss_mb": (250.0, 0),
    "ready_s": (2.0, 0),
    "shaped_reply32_p99_ms": (5.0, 0),
    "memory_note_p99_us": (50.0, 0),
    "messages_lost": (0, 0),  # every message the daemon planned reached the probe
    "unanswered_calls": (0, 0),
}
REPLY_LINE = re.compile(r"daemon\.stage\.live: reply (.*)$")
PLANNED_LINE = re.compile(r"daemon\.musician\.playing\.performer: reply messages .*\bplanned=(\S*)")


def percentiles(values_ms: list[float]) -> dict[str, float]:
    import numpy as np

    data = np.asarray(values_ms, dtype=np.float64)
    return {
        "p50": float(np.percentile(data, 50)),
        "p90": float(np.percentile(data, 90)),
        "p99": float(np.percentile(data, 99)),
        "max": float(data.max()),
        "n": int(data.size),
    }


@dataclass
class Call:
    """One call of the bench: when its last message left, when the reply's first note came."""

    last_sent_s: float
    first_note_s: float | None

    @property
    def reply_s(self) -> float:
        assert self.first_note_s is not None, "an unanswered call"
        return self.first_note_s


# The daemon on JACK --------------------------------------------------------------------------


def live_figures(
    calls_played: list[Call],
    arrivals: list[Timed],
    transport_ms: list[float],
    lines: list[str],
    gap_s: float | None = PHRASE_GAP_S,
) -> dict[str, Any]:
    """The figures of the calls played to the daemon: the answer time a player hears, the
    reaction and its two parts, the daemon's own figures from its log, the JACK delivery
    time, the exact timing error. ``gap_s``: the daemon's fixed phrase gap; None with
    ``turns auto``, where the reaction counts from the phrase end the daemon declared.

    The answer time is all a player waits, the beat's wait included (a reply that starts
    on the beat's grid, see its "reply" line's ``beat_wait_ms``); the reactions are not:
    that wait is musical, not latency."""
    replies = reply_lines(lines)
    answered = [c for c in calls_played if c.first_note_s is not None]
    answer = [1000.0 * (c.reply_s - c.last_sent_s) for c in answered]
    split = _split_reaction(answered, replies, gap_s)
    return {
        "answer_ms": percentiles(answer) if answer else None,
        "reaction_ms": split.pop("reaction_ms"),
        "unanswered_calls": len(calls_played) - len(answered),
        **split,
        **_internal_figures(replies),
        "transport_ms": percentiles(transport_ms),
        **exact_timing(planned_notes(lines), arrivals),
    }


def _split_reaction(
    answered: list[Call], replies: list[dict[str, str]], gap_s: float | None = PHRASE_GAP_S
) -> dict[str, Any]:
    """The reaction, the beat's wait taken out: with a fixed ``gap_s``, from the call's last
    message + the gap, and in two parts (the call's last message reaching the daemon, then
    the phrase end it declared to the first note arriving); with ``turns auto`` (``gap_s``
    None), from the declared end (how long the daemon waited is the answer time less this)."""
    ends = reply_ends(replies)
    reaction_ms, heard_ms, answer_ms = [], [], []
    for call in answered:
        found = _declared_end(call, ends, gap_s)
        beat_wait_s = 0.0 if found is None else found[1]
        if gap_s is not None:
            expected_s = call.last_sent_s + gap_s
            reaction_ms.append(1000.0 * (call.reply_s - expected_s - beat_wait_s))
            if found is not None:
                heard_ms.append(1000.0 * (found[0] - expected_s))
        if found is not None:
            answer_ms.append(1000.0 * (call.reply_s - found[0] - beat_wait_s))
    if gap_s is None:
        reaction_ms = answer_ms
    return {
        "reaction_ms": percentiles(reaction_ms) if reaction_ms else None,
        "call_heard_ms": percentiles(heard_ms) if heard_ms else None,
        "declared_end_to_first_note_ms": percentiles(answer_ms) if answer_ms else None,
    }


def _declared_end(
    call: Call, ends: list[tuple[float, float]], gap_s: float | None
) -> tuple[float, float] | None:
    """The (phrase end, beat wait) the daemon logged for ``call``: with a fixed ``gap_s``,
    the end within 50 ms of its last message + the gap; with ``turns auto``, the first end
    after its last message left, if the reply's first note came after it."""
    if gap_s is None:
        found = next((end for end in ends if end[0] >= call.last_sent_s), None)
        return found if found is not None and found[0] <= call.reply_s else None
    return end_near(call.last_sent_s + gap_s, ends)


def reply_ends(replies: list[dict[str, str]]) -> list[tuple[float, float]]:
    """Each reply line's (phrase end, wait for the beat's grid; 0: none, or not logged)."""
    return sorted(
        (float(r["phrase_end_s"]), _beat_wait_s(r)) for r in replies if "phrase_end_s" in r
    )


def end_near(expected_s: float, ends: list[tuple[float, float]]) -> tuple[float, float] | None:
    """The (phrase end, beat wait) of :func:`reply_ends` within 50 ms of ``expected_s``."""
    found = min(ends, key=lambda end: abs(end[0] - expected_s), default=None)
    return found if found is not None and abs(found[0] - expected_s) <= 0.05 else None


def _beat_wait_s(reply: dict[str, str]) -> float:
    wait_ms = reply.get("beat_wait_ms", "None")
    return 0.0 if wait_ms == "None" else float(wait_ms) / 1000.0


def reply_lines(lines: list[str]) -> list[dict[str, str]]:
    replies = []
    for line in lines:
        found = REPLY_LINE.search(line)
        if found:
            replies.append(dict(pair.split("=", 1) for pair in found.group(1).split()))
    return replies


def planned_notes(lines: list[str], pattern: re.Pattern[str] = PLANNED_LINE) -> list[PlannedNote]:
    """The planned messages the daemon's debug log gives (replies' by default)."""
    from antiphon.daemon.musician.answering.reply import parse_planned

    planned = []
    for line in lines:
        found = pattern.search(line)
        if found:
            planned.extend(parse_planned(found.group(1)))
    return planned


def exact_timing(planned: list[PlannedNote], arrivals: list[Timed]) -> dict[str, Any]:
    """Arrival at the probe - planned time, per reply message, in ms, and what was lost.

    Each planned message is matched with its arrival (:mod:`antiphon.daemon.tools.message_match`):
    planned and never heard is lost, heard and never planned is extra (duplicated, or not a
    reply's), heard out of the planned order is reordered.
    """
    from antiphon.daemon.tools.message_match import match_messages

    heard = [
        (t.time_s, m.type == "note_on" and m.velocity > 0, m.note)
        for t in arrivals
        if (m := t.message).type in ("note_on", "note_off")
    ]
    match = match_messages(planned, heard)
    errors_ms = [1000.0 * error_s for error_s in match.errors_s(planned, heard)]
    return {
        "timing_error_ms": percentiles(errors_ms) if errors_ms else None,
        "messages_planned": len(planned),
        "messages_heard": len(heard),
        "messages_lost": match.lost,
        "messages_extra": match.extra,
        "messages_reordered": match.reordered,
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
        "shaped_reply32_p99_ms": (results.get("shaped_reply32_ms") or {}).get("p99"),
        "memory_note_p99_us": (results.get("memory_note_us") or {}).get("p99"),
        "messages_lost": results.get("messages_lost"),
        "unanswered_calls": results.get("unanswered_calls"),
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
        _row("a heard note-on, one run (duet), back to back", results.get("heard_note_ms")),
        _row("the same after 100 ms idle (the duet's reaction)", results.get("heard_note_idle_ms")),
        _row("a bare thread's timed wait, late by", results.get("wakeup_late_ms")),
        _row(f"{REPLY_EVENTS}-event reply compute", results["reply32_ms"]),
        _row("draw with follow, range, dynamics, mirror on", results.get("shaped_sample_ms")),
        _row(f"{REPLY_EVENTS}-event reply compute, all of it on", results.get("shaped_reply32_ms")),
        _row(f"{REPLY_EVENTS}-event reply compute, follow 1", results.get("default_reply32_ms")),
        _row("memory: learning one heard note", results.get("memory_note_us"), unit="us"),
        f"{'naive 30-event window per event':<48} {naive['naive_per_event_ms']:.3f} ms vs "
        f"{naive['incremental_per_event_ms']:.3f} ms incremental: {naive['ratio']:.1f}x",
    ]
    if jack:
        lines += [
            f"JACK period {jack['period_frames']} frames at {jack['sample_rate']} Hz = "
            f"{jack['period_ms']:.2f} ms "
            + ("(own jackd -d dummy" if jack["started_by_bench"] else "(the running server")
            + (f", {jack['xruns']} overruns)" if jack["xruns"] is not None else ")"),
            _row("answer: first note at client - last sent", results.get("answer_ms")),
            _row(
                "reaction: first note at client - (last sent + gap)"
                if results.get("turns", "gap") == "gap"
                else "reaction: first note at client - declared end",
                results["reaction_ms"],
            ),
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
            _row("output timing error, exact: arrival - planned", results["timing_error_ms"]),
            f"{'reply messages planned / heard':<48} {results['messages_planned']} / "
            f"{results['messages_heard']}: {results['messages_lost']} lost, "
            f"{results['messages_extra']} extra, {results['messages_reordered']} reordered",
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
