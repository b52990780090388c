"""``antiphon eval-clock``: how the outgoing clock follows real players who speed up.

The benchmark (``antiphon bench --link``) leads the clock with made-up eighths. Here the
players are real: each performance's first bars, as played, and the same bars time-stretched
to speed up 10 % over 8 bars after 4 (steady before and after), both heard by the performer's
beat (:class:`~antiphon.daemon.musician.clocks.beat_keeper.BeatKeeper`) and led by the
outgoing clock (:class:`~antiphon.daemon.musician.clocks.clock_out.ClockLeader`) in simulated
time, as ``clock_out`` does live (no ports).

A real player's own tempo moves (rubato, drift), so the player's tempo is not known; what is
known is the stretch. So, at each place in the music, the clock's tempo on the stretched take is
divided by the clock's tempo on the plain take there: the player's own rubato, common to both,
divides out, and what is left is the clock's answer to the stretch. The *delay* is how many
beats (of the music: the same count in both takes) that ratio trails the stretch, the shift of
the stretch that fits it best (least squares), from 4 beats into the acceleration to the end of
the take (so the end of the ramp counts: a clock that overshoots it is late there). The
*misfit* is what the shifted stretch leaves unexplained (root mean square, % of tempo): a clock
that reads the two takes differently (a beat heard in one and not the other, eighths taken for
beats in one) shows it there, and its delay means little. A clock that followed the stretch at
once shows 0; on the benchmark's steady eighths (8 ms of jitter) the tracker's own reading
trails by about 2.8 beats, and the clock, which follows a tempo that leads by its own trend,
is 0.2 to 0.5 beats ahead.

(An earlier version aligned the stretched take's tempo with the plain take's times the stretch
in time. On real playing that alignment is pulled to 0 by the player's rubato, common to both:
it gave the tracker's own reading 0 beats in 79 % of the asap-piano validation takes, though
the tracker trails a steady ramp by 2.8.)

A take is a performance's first 64 beats; ``--excerpts N`` takes up to N from each, one after
another (each starts where the last one's 64 beats end). A few dozen takes are a small
sample, so the summary gives a 95 % interval for the share of takes within 2 beats: a
bootstrap over performances, whose excerpts are drawn together.

Where a performance has the beats a musician annotated on it beside it (ASAP's
``X_annotations.txt`` beside ``X.mid``), each take is also measured as played against the
player's own tempo (:mod:`~antiphon.training.eval_clock_beats`).

Per take it also says how often the beat tracker heard a beat the running clock follows
(``FOLLOW_CONFIDENT``; the clock holds when it does not). Takes in which the clock never
started (no sure beat heard) are counted apart.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from antiphon.daemon.musician.clocks.beat_keeper import BeatKeeper
from antiphon.daemon.musician.clocks.clock_out import FOLLOW_CONFIDENT, ClockLeader
from antiphon.daemon.settings import Settings
from antiphon.training.eval_clock_beats import (
    AnnotationError,
    against_beats,
    annotations_beside,
    read_beats,
)
from antiphon.training.eval_clock_beats import format_summary as format_against_beats
from antiphon.training.eval_clock_beats import summarise as summarise_against_beats
from antiphon.training.eval_duet import DuetEvalError, add_source_arguments, performances

LEAD_IN_BEATS, ACCEL_BEATS, LEAD_OUT_BEATS = 16, 32, 16
ACCEL_RISE = 0.10
WINDOW_FROM_BEATS = 4  # the delay is measured from this far into the acceleration
READ_EVERY_S = 0.05
DELAYS_BEATS = np.linspace(-4.0, 16.0, 401)  # the shifts tried: 16 is '16 or more'
MIN_ONSETS = 32  # an excerpt with fewer is not a take
UNHEARD_SPAN_S = 38.4  # where no beat was heard, the next excerpt starts this much later
BOOTSTRAP_DRAWS = 2000  # for the interval of the share within 2 beats
HEARD_MOST = 0.5  # started takes are also summarised apart by whether the clock heard a beat
# it follows after at least this share of the onsets (see summarise)


Tempos = list[tuple[float, float]]  # (time, bpm) at each change of the outgoing tempo


def lead(onsets: np.ndarray, follow: float) -> tuple[Tempos, float]:
    """The outgoing tempo's changes while a player plays ``onsets`` (seconds, sorted), and the
    share of the onsets after which the beat offered was one a running clock follows."""
    tempos: Tempos = []
    leader = ClockLeader(follow, on_tempo=lambda bpm, at_s: tempos.append((at_s, bpm)))
    leader.active = True
    keeper = BeatKeeper()
    now_s, k, offered = 0.0, 0, 0
    while k < len(onsets):
        due_s = leader.next_due_s(now_s)
        if due_s is None or onsets[k] < due_s:
            now_s = float(onsets[k])
            keeper.hear_player(now_s)
            grid = keeper.lead_grid(now_s, "player")
            offered += grid is not None and grid.confidence >= FOLLOW_CONFIDENT
            leader.offer(grid)
            k += 1
        else:
            now_s = due_s
            leader.tick()
    return tempos, offered / max(len(onsets), 1)


def tempo_reader(tempos: Tempos) -> Callable[[np.ndarray], np.ndarray]:
    """The outgoing tempo at given times (NaN before the clock started)."""
    times = np.array([t for t, _ in tempos])
    bpms = np.array([b for _, b in tempos])

    def read(at_s: np.ndarray) -> np.ndarray:
        index = np.searchsorted(times, at_s, side="right") - 1
        return np.where(index >= 0, bpms[np.maximum(index, 0)], np.nan)

    return read


def measure(
    name: str, onsets: np.ndarray, follow: float, beats: np.ndarray | None = None
) -> dict[str, Any]:
    """One take (see the module docstring); with the player's annotated ``beats`` (same
    times as ``onsets``), also against them (:mod:`~antiphon.training.eval_clock_beats`)."""
    origin_s = float(np.min(onsets))
    onsets = np.sort(onsets) - origin_s
    # The whole take, as played: its tempo sets the beats, and up to the end of the window
    # it is what the excerpt alone would give (the clock hears the same onsets in order).
    plain, _ = lead(onsets, follow)
    row: dict[str, Any] = {"name": name}
    if not plain:
        return {**row, "heard": False}
    beat_s = 60.0 / float(np.median([bpm for _, bpm in plain]))
    played, rise, stretched_at = stretch(beat_s)
    read_plain = tempo_reader(plain)
    if beats is not None:
        beats = beats - origin_s
        taken = beats[(beats >= 0.0) & (beats <= played[-1])]
        row["against_beats"] = against_beats(read_plain, taken)
    onsets = onsets[onsets <= played[-1]]
    if len(onsets) < MIN_ONSETS:
        return {**row, "heard": False}
    stretched, offered = lead(np.interp(onsets, played, stretched_at), follow)
    if not stretched:
        return {**row, "heard": False, "beat_offered": offered}
    read_stretched = tempo_reader(stretched)
    fitted = delay_behind_stretch(read_plain, read_stretched, played, stretched_at, rise, beat_s)
    if fitted is None:  # the clock never ran in the window of one of the takes
        return {**row, "heard": False, "beat_offered": offered}
    delay_beats, misfit = fitted
    beats_s = np.arange(LEAD_IN_BEATS + ACCEL_BEATS + LEAD_OUT_BEATS) * beat_s
    by_beat = answer_to_stretch(read_plain, read_stretched, played, stretched_at, beats_s)
    return {
        **row,
        "heard": True,
        "bpm": 60.0 / beat_s,
        "span_s": float(played[-1]),
        "beat_offered": offered,
        "delay_beats": delay_beats,
        "misfit_percent": 100.0 * misfit,
        "largest_step_percent": largest_step_percent(stretched),
        # the stretched take's outgoing tempo over the plain take's, at each beat of the music
        "ratio_by_beat": [None if np.isnan(r) else round(float(r), 5) for r in by_beat],
    }


def measure_excerpts(
    name: str, onsets: np.ndarray, follow: float, count: int, beats: np.ndarray | None = None
) -> list[dict[str, Any]]:
    """Up to ``count`` takes of one performance, one after another: each starts at the first
    onset after the one before ends (its 64 beats, or ``UNHEARD_SPAN_S`` where no beat was
    heard); "excerpt" numbers them. ``beats``: the player's annotated beats, if any."""
    onsets = np.sort(onsets)
    rows: list[dict[str, Any]] = []
    start_s = float(onsets[0]) if len(onsets) else 0.0
    for excerpt in range(count):
        part = onsets[onsets >= start_s]
        if len(part) < MIN_ONSETS:
            break
        row = measure(name, part, follow, beats)
        rows.append({**row, "excerpt": excerpt})
        start_s = float(part[0]) + row.get("span_s", UNHEARD_SPAN_S) + 1e-9
    return rows


def stretch(beat_s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The time-stretch of a take whose beat is ``beat_s``: (times in the plain take, over the
    whole excerpt; how much faster the stretched take is there, 0 to ``ACCEL_RISE``; the same
    moments' times in the stretched take)."""
    span_s = (LEAD_IN_BEATS + ACCEL_BEATS + LEAD_OUT_BEATS) * beat_s
    played = np.linspace(0.0, span_s, 4000)
    rise = ACCEL_RISE * np.clip((played / beat_s - LEAD_IN_BEATS) / ACCEL_BEATS, 0.0, 1.0)
    stretched_at = np.concatenate(((0.0,), np.cumsum(np.diff(played) / (1.0 + rise[1:]))))
    return played, rise, stretched_at


def answer_to_stretch(
    plain: Callable[[np.ndarray], np.ndarray],
    stretched: Callable[[np.ndarray], np.ndarray],
    played: np.ndarray,
    stretched_at: np.ndarray,
    at_s: np.ndarray,
) -> np.ndarray:
    """The stretched take's outgoing tempo over the plain take's at the places in the music
    where the plain take is at ``at_s`` (NaN where either clock had not started)."""
    return stretched(np.interp(at_s, played, stretched_at)) / plain(at_s)


def delay_behind_stretch(
    plain: Callable[[np.ndarray], np.ndarray],
    stretched: Callable[[np.ndarray], np.ndarray],
    played: np.ndarray,
    stretched_at: np.ndarray,
    rise: np.ndarray,
    beat_s: float,
) -> tuple[float, float] | None:
    """(delay in beats, misfit as a share of tempo) of the clock's answer to the stretch (see
    the module docstring): ``plain`` and ``stretched`` read each take's outgoing tempo at given
    times (NaN before it ran); the stretched take's time at each ``played`` time is
    ``stretched_at``, where the tempo is ``1 + rise`` times the plain take's. None when the two
    clocks never ran together in the window."""
    at_s = np.arange((LEAD_IN_BEATS + WINDOW_FROM_BEATS) * beat_s, played[-1], READ_EVERY_S)
    ratio = answer_to_stretch(plain, stretched, played, stretched_at, at_s)
    both = np.isfinite(ratio)
    if not both.any():
        return None
    at_s, ratio = at_s[both], ratio[both]
    errors = [
        float(np.mean((ratio - 1.0 - np.interp(at_s - delay * beat_s, played, rise)) ** 2))
        for delay in DELAYS_BEATS
    ]
    best = int(np.argmin(errors))
    return float(DELAYS_BEATS[best]), math.sqrt(errors[best])


def largest_step_percent(tempos: Tempos) -> float:
    """The largest change of the outgoing tempo from one beat to the next (%)."""
    bpms = np.array([bpm for _, bpm in tempos])
    if len(bpms) < 2:
        return 0.0
    return float(100.0 * np.max(np.abs(bpms[1:] / bpms[:-1] - 1.0)))


def summarise(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The takes' figures. Beside the share of started takes within 2 beats: the share of
    all takes (a take whose clock never started was not followed either), and the started
    takes apart by how often a beat the clock follows was heard (``HEARD_MOST``): where the
    player's beat is seldom heard the clock holds, and that says nothing of how it follows
    one it hears."""
    heard = [r for r in rows if r["heard"]]
    delays = np.array([r["delay_beats"] for r in heard])
    offered = np.array([r.get("beat_offered", 0.0) for r in rows])
    started = _delays(heard)
    return {
        "takes": len(rows),
        "clock_started": started["takes"],
        "delay_beats_median": started["delay_beats_median"],
        "delay_within_2_beats": started["delay_within_2_beats"],
        "delay_within_2_beats_interval": within_2_beats_interval(heard),
        "delay_within_2_beats_of_all_takes": (
            float(np.sum(np.abs(delays) <= 2.0)) / len(rows) if rows else None
        ),
        "beat_heard_at_most_onsets": _delays([r for r in heard if r["beat_offered"] >= HEARD_MOST]),
        "beat_heard_at_fewer_onsets": _delays([r for r in heard if r["beat_offered"] < HEARD_MOST]),
        "misfit_percent_median": (
            float(np.median([r["misfit_percent"] for r in heard])) if heard else None
        ),
        "largest_step_percent": (
            float(max(r["largest_step_percent"] for r in heard)) if heard else None
        ),
        "beat_offered_median": float(np.median(offered)) if len(offered) else None,
    }


def _delays(heard: Sequence[dict[str, Any]]) -> dict[str, Any]:
    delays = np.array([r["delay_beats"] for r in heard])
    return {
        "takes": len(heard),
        "delay_beats_median": float(np.median(delays)) if len(delays) else None,
        "delay_within_2_beats": float(np.mean(np.abs(delays) <= 2.0)) if len(delays) else None,
    }


def within_2_beats_interval(heard: Sequence[dict[str, Any]]) -> list[float] | None:
    """A 95 % interval of the share of takes within 2 beats: a bootstrap over the
    performances (a performance's excerpts are drawn together, as they are alike)."""
    by_performance: dict[str, list[bool]] = {}
    for row in heard:
        by_performance.setdefault(row["name"], []).append(abs(row["delay_beats"]) <= 2.0)
    if not by_performance:
        return None
    within = np.array([sum(v) for v in by_performance.values()], np.float64)
    takes = np.array([len(v) for v in by_performance.values()], np.float64)
    draws = np.random.default_rng(0).integers(0, len(takes), (BOOTSTRAP_DRAWS, len(takes)))
    shares = within[draws].sum(axis=1) / takes[draws].sum(axis=1)
    low, high = np.percentile(shares, [2.5, 97.5])
    return [float(low), float(high)]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_source_arguments(parser)
    parser.add_argument(
        "--follow", type=float, default=None,
        help="clock_out_follow (default: the daemon's)",
    )  # fmt: skip
    parser.add_argument(
        "--excerpts", type=int, default=1, metavar="N",
        help="takes from each performance, one after another (default 1: its first bars)",
    )  # fmt: skip
    parser.add_argument("--json", type=Path, default=None, metavar="OUT", help="every take")
    parser.add_argument(
        "--plot", type=Path, default=None, metavar="PNG",
        help="draw each take's answer to the stretch against the stretch (the plot extra)",
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from antiphon.training.corpus import CorpusError

    follow = Settings().clock_out_follow if args.follow is None else args.follow
    if not 0.0 <= follow <= 1.0:
        print(f"antiphon eval-clock: --follow: 0 to 1, got {follow}", file=sys.stderr)
        return 2
    if args.excerpts < 1:
        print(f"antiphon eval-clock: --excerpts: 1 or more, got {args.excerpts}", file=sys.stderr)
        return 2
    report: dict[str, Any] = {"follow": follow}
    try:
        for source in args.sources:
            rows = []
            for name, notes in performances(source, args, "eval-clock"):
                if len(notes) < MIN_ONSETS:
                    continue
                beats = _annotated_beats(Path(name))
                for row in measure_excerpts(name, notes[:, 1], follow, args.excerpts, beats):
                    rows.append(row)
                    shown = (
                        f"delay {_beats(row['delay_beats'])} (misfit {row['misfit_percent']:.1f} %)"
                        if row["heard"]
                        else "no beat heard"
                    )
                    print(
                        f"  {Path(name).name} #{row['excerpt'] + 1}: {shown}, a beat the "
                        f"clock follows heard at {100 * row.get('beat_offered', 0.0):.0f} % of "
                        "its onsets",
                        file=sys.stderr,
                    )
            summary = summarise(rows)
            print(format_summary(source.name, summary))
            if (by_beats := summarise_against_beats(rows)) is not None:
                summary["against_beats"] = by_beats
                print(format_against_beats(by_beats))
            report[source.name] = {**summary, "rows": rows}
    except (CorpusError, DuetEvalError) as err:
        print(f"antiphon eval-clock: {err}", file=sys.stderr)
        return 2
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if args.plot is not None:
        from antiphon.training.eval_clock_plot import plot_answers

        plot_answers(report, args.plot)
    return 0


def _annotated_beats(performance: Path) -> np.ndarray | None:
    """The player's beats annotated beside a performance (ASAP's layout), if any; a file
    that cannot be read is said in a line and the take goes on without it."""
    path = annotations_beside(performance)
    if path is None:
        return None
    try:
        return read_beats(path)
    except AnnotationError as err:
        print(f"  skipped the beats: {err}", file=sys.stderr)
        return None


def format_summary(name: str, summary: dict[str, Any]) -> str:
    if not summary["clock_started"]:
        return f"{name}: {summary['takes']} takes, the clock never started (no beat heard)"
    low, high = summary["delay_within_2_beats_interval"]
    by_heard = "; ".join(
        f"{summary[key]['takes']} with {label}"
        + (
            f" (within 2 beats {100 * summary[key]['delay_within_2_beats']:.0f} %, median "
            f"{_short_beats(summary[key]['delay_beats_median'])})"
            if summary[key]["takes"]
            else ""
        )
        for key, label in (
            (
                "beat_heard_at_most_onsets",
                f"a beat heard at {100 * HEARD_MOST:.0f} % of the onsets or more",
            ),
            ("beat_heard_at_fewer_onsets", "fewer"),
        )
    )
    return (
        f"{name}: {summary['takes']} takes, the clock started in {summary['clock_started']}; "
        f"delay behind the stretch median {_beats(summary['delay_beats_median'])}, within 2 "
        f"beats in {100 * summary['delay_within_2_beats']:.0f} % of them "
        f"(95 % interval {100 * low:.0f} to {100 * high:.0f} %; of all takes "
        f"{100 * summary['delay_within_2_beats_of_all_takes']:.0f} %; misfit median "
        f"{summary['misfit_percent_median']:.1f} %); of the started, {by_heard}; largest step "
        f"between beats {summary['largest_step_percent']:.2f} %; a beat the clock follows heard "
        f"at a median {100 * summary['beat_offered_median']:.0f} % of the onsets"
    )


def _short_beats(delay: float) -> str:
    return f"{DELAYS_BEATS[-1]:.0f}+ beats" if delay >= DELAYS_BEATS[-1] else f"{delay:.1f} beats"


def _beats(delay: float) -> str:
    if delay >= DELAYS_BEATS[-1]:
        return f"{DELAYS_BEATS[-1]:.0f} beats or more (not followed within the take)"
    return f"{delay:.1f} beats"
