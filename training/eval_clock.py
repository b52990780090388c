"""``antiphon eval-clock``: how the outgoing clock follows real players who speed up.

The benchmark (``antiphon bench --link``) leads the clock with made-up eighths. Here the
players are real: each performance's first bars, as played, and the same bars time-stretched
to speed up 10 % over 8 bars after 4 (steady before and after), both heard by the performer's
beat (:class:`~antiphon.daemon.musician.clocks.beat_keeper.BeatKeeper`) and led by the
outgoing clock (:class:`~antiphon.daemon.musician.clocks.clock_out.ClockLeader`) in simulated
time, as ``clock_out`` does live (no ports).

A real player's own tempo moves (rubato, drift), so the player's tempo is not known; what is
known is the stretch. So the clock's tempo on the stretched take is set against the clock's
tempo on the plain take at the same place in the music, times the stretch: the *delay* is how
much later (in the clock's beats) the stretched take's tempo follows that curve, the shift
that best aligns the two (least squares) from 4 beats into the acceleration to its end. A
clock that followed the stretch at once would show 0; on the benchmark's steady eighths
(8 ms of jitter) the present clock shows about half a beat (0.35 to 0.6).

Per take it also says how often the beat tracker offered a beat (the clock holds when it
does not). Takes in which the clock never started (no beat heard) are counted apart.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from antiphon.daemon.musician.clocks.beat_keeper import BeatKeeper
from antiphon.daemon.musician.clocks.clock_out import ClockLeader
from antiphon.daemon.settings import Settings
from antiphon.training.eval_duet import DuetEvalError, add_source_arguments, performances

LEAD_IN_BEATS, ACCEL_BEATS, LEAD_OUT_BEATS = 16, 32, 16
ACCEL_RISE = 0.10
WINDOW_FROM_BEATS = 4  # the delay is measured from this far into the acceleration
READ_EVERY_S = 0.05
DELAYS_S = np.arange(-3.0, 12.0, 0.05)  # the shifts tried
MIN_ONSETS = 32  # an excerpt with fewer is not a take


Tempos = list[tuple[float, float]]  # (time, bpm) at each change of the outgoing tempo


def lead(onsets: np.ndarray, follow: float) -> tuple[Tempos, float]:
    """The outgoing tempo's changes while a player plays ``onsets`` (seconds, sorted), and the
    share of the onsets after which a beat was offered."""
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
            offered += grid is not None
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


def measure(name: str, onsets: np.ndarray, follow: float) -> dict[str, Any]:
    """One take (see the module docstring)."""
    onsets = np.sort(onsets) - float(np.min(onsets))
    # The whole take, as played: its tempo sets the beats, and up to the end of the window
    # it is what the excerpt alone would give (the clock hears the same onsets in order).
    plain, _ = lead(onsets, follow)
    row: dict[str, Any] = {"name": name}
    if not plain:
        return {**row, "heard": False}
    beat_s = 60.0 / float(np.median([bpm for _, bpm in plain]))
    span_s = (LEAD_IN_BEATS + ACCEL_BEATS + LEAD_OUT_BEATS) * beat_s
    onsets = onsets[onsets <= span_s]
    if len(onsets) < MIN_ONSETS:
        return {**row, "heard": False}
    played = np.linspace(0.0, span_s, 4000)  # the plain take's time ...
    rise = ACCEL_RISE * np.clip((played / beat_s - LEAD_IN_BEATS) / ACCEL_BEATS, 0.0, 1.0)
    stretched_at = np.concatenate(((0.0,), np.cumsum(np.diff(played) / (1.0 + rise[1:]))))
    stretched, offered = lead(np.interp(onsets, played, stretched_at), follow)
    if not stretched:
        return {**row, "heard": False, "beat_offered": offered}
    start_s, end_s = np.interp(
        np.array([LEAD_IN_BEATS + WINDOW_FROM_BEATS, LEAD_IN_BEATS + ACCEL_BEATS]) * beat_s,
        played,
        stretched_at,
    )
    reads_s = np.arange(start_s, end_s, READ_EVERY_S)
    outgoing = tempo_reader(stretched)(reads_s)
    plain_tempo = tempo_reader(plain)

    def expected(at_s: np.ndarray) -> np.ndarray:  # the plain take's tempo times the stretch
        then_s = np.interp(at_s, stretched_at, played)
        return plain_tempo(then_s) * (1.0 + np.interp(then_s, played, rise))

    if np.isnan(outgoing).all():  # the stretched take's clock never ran in the window
        return {**row, "heard": False, "beat_offered": offered}
    misses = [(outgoing - expected(reads_s - d)) ** 2 for d in DELAYS_S]
    errors = [np.nanmean(m) if not np.isnan(m).all() else np.inf for m in misses]
    best = int(np.argmin(errors))
    if not np.isfinite(errors[best]):
        return {**row, "heard": False, "beat_offered": offered}
    clock_beat_s = 60.0 / float(np.nanmean(outgoing))
    return {
        **row,
        "heard": True,
        "bpm": 60.0 / beat_s,
        "beat_offered": offered,
        "delay_beats": float(DELAYS_S[best] / clock_beat_s),
        "rms_bpm_at_delay": float(np.sqrt(errors[best])),
    }


def summarise(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    heard = [r for r in rows if r["heard"]]
    delays = np.array([r["delay_beats"] for r in heard])
    offered = np.array([r.get("beat_offered", 0.0) for r in rows])
    return {
        "takes": len(rows),
        "clock_started": len(heard),
        "delay_beats_median": float(np.median(delays)) if len(delays) else None,
        "delay_within_2_beats": float(np.mean(np.abs(delays) <= 2.0)) if len(delays) else None,
        "beat_offered_median": float(np.median(offered)) if len(offered) else None,
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_source_arguments(parser)
    parser.add_argument(
        "--follow", type=float, default=None,
        help="clock_out_follow (default: the daemon's)",
    )  # fmt: skip
    parser.add_argument("--json", type=Path, default=None, metavar="OUT", help="every take")


def run(args: argparse.Namespace) -> int:
    from antiphon.training.corpus import CorpusError

    follow = Settings().clock_out_follow if args.follow is None else args.follow
    if not 0.0 <= follow <= 1.0:
        print(f"antiphon eval-clock: --follow: 0 to 1, got {follow}", file=sys.stderr)
        return 2
    report: dict[str, Any] = {"follow": follow}
    try:
        for source in args.sources:
            rows = []
            for name, notes in performances(source, args):
                if len(notes) < MIN_ONSETS:
                    continue
                row = measure(name, notes[:, 1], follow)
                rows.append(row)
                shown = f"delay {row['delay_beats']:.1f} beats" if row["heard"] else "no beat heard"
                print(
                    f"  {Path(name).name}: {shown}, beat offered at "
                    f"{100 * row.get('beat_offered', 0.0):.0f} % of its onsets",
                    file=sys.stderr,
                )
            summary = summarise(rows)
            print(format_summary(source.name, summary))
            report[source.name] = {**summary, "rows": rows}
    except (CorpusError, DuetEvalError) as err:
        print(f"antiphon eval-clock: {err}", file=sys.stderr)
        return 2
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


def format_summary(name: str, summary: dict[str, Any]) -> str:
    if not summary["clock_started"]:
        return f"{name}: {summary['takes']} takes, the clock never started (no beat heard)"
    return (
        f"{name}: {summary['takes']} takes, the clock started in {summary['clock_started']}; "
        f"delay behind the stretch median {summary['delay_beats_median']:.1f} beats, within 2 "
        f"beats in {100 * summary['delay_within_2_beats']:.0f} % of them; a beat offered at a "
        f"median {100 * summary['beat_offered_median']:.0f} % of the onsets"
    )
