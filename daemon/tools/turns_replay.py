"""The turn judge replayed on a performance's notes, as the performer drives it, without the
performer: for fitting the judge (``antiphon fit-turns``) and for sweeping eagerness in
``antiphon eval-turns`` at the cost of the judge alone (the judge adapts to the player from
its own answers, so each eagerness is a replay of its own).

The performer (:meth:`~antiphon.daemon.musician.playing.performer.Performer._take`) tells its
:class:`~antiphon.daemon.musician.hearing.turns.TurnJudge` every key pressed and let go, the length
of each silence when the player goes on, and asks it for a wait when a silence begins (every
silence begins inside a call: a note starts one). :func:`replay` does the same in the same
order on the sounding notes, so its waits are the performer's (``antiphon eval-turns``
checks this on every run, a test on a small performance).

:func:`figures` counts what a player feels, per minute of playing: false answers (a call
declared over within a silence shorter than ``FALSE_BELOW_S``: the player was only
breathing), real ends (silences of ``REAL_END_S`` or more), the median and 90th percentile
delay on real ends, the share of them declared within ``QUICK_S`` (the goal: over half, a
median of ``QUICK_S`` or less; the share says how far from that edge), and real ends missed
(never declared).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import mido
import numpy as np
from antiphon.daemon.codec import Note, notes_to_events
from antiphon.daemon.musician.hearing.turns import (
    FALSE_BELOW_S,
    QUICK_S,
    REAL_END_S,
    SHIPPED,
    Hazard,
    TurnJudge,
)

FIXED_GAPS_S = (0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6, 0.7, 0.8)
EAGERNESSES = (0.0, 0.25, 0.5, 0.75, 1.0)


@dataclass(frozen=True)
class Judged:
    """One silence of a replayed performance: its start and length, what the judge heard at
    its start (``RecentNotes.cues``, the time since the last onset group's start, the median
    interval between onsets), and the judge's wait."""

    start_s: float
    silence_s: float
    cues: np.ndarray
    since_s: float
    interval_s: float
    wait_s: float


def note_messages(notes: Sequence[Note]) -> list[tuple[float, mido.Message]]:
    """Notes as the key messages a player sends: a pitch struck again while it sounds ends
    first, and only the first end that follows counts (as the codec reads them)."""
    messages = []
    sounding: set[int] = set()
    for event in notes_to_events(notes):
        if event.velocity > 0:
            if event.pitch in sounding:
                messages.append((event.time_s, mido.Message("note_off", note=event.pitch)))
            sounding.add(event.pitch)
            messages.append(
                (event.time_s, mido.Message("note_on", note=event.pitch, velocity=event.velocity))
            )
        elif event.pitch in sounding:
            sounding.discard(event.pitch)
            messages.append((event.time_s, mido.Message("note_off", note=event.pitch)))
    return messages


def replay(
    messages: Sequence[tuple[float, mido.Message]],
    eagerness: float,
    longest_s: float,
    hazard: Hazard = SHIPPED,
) -> list[Judged]:
    """Every silence (of some length) of ``messages``, judged as the performer judges it."""
    judge = TurnJudge(hazard=hazard)
    found = []
    sounding = 0
    start_s: float | None = None
    heard: tuple[np.ndarray, float, float, float] | None = None
    for time_s, message in messages:
        key = (0, message.note)
        if message.type == "note_on":
            if start_s is not None:
                judge.heard_pause(time_s - start_s)
                if heard is not None and time_s > start_s:
                    found.append(Judged(start_s, time_s - start_s, *heard))
            start_s, heard = None, None
            sounding += 1
            judge.key_down(key, time_s, message.velocity)
            continue
        sounding -= 1
        judge.key_up(key, time_s)
        if sounding == 0:
            start_s = time_s
            wait_s = judge.wait_s(eagerness, longest_s, time_s)
            notes = judge.notes
            heard = (notes.cues(time_s), notes.since_s(time_s), notes.interval_s(), wait_s)
    return found


def figures(
    declared_after: Sequence[float | None], silences_s: Sequence[float], minutes: float
) -> dict[str, Any]:
    """False answers and real ends per minute, delays on real ends, ends missed."""
    false = sum(
        1
        for d, s in zip(declared_after, silences_s, strict=True)
        if d is not None and s < FALSE_BELOW_S
    )
    delays = [
        d
        for d, s in zip(declared_after, silences_s, strict=True)
        if s >= REAL_END_S and d is not None
    ]
    real = sum(1 for s in silences_s if s >= REAL_END_S)
    per_minute = 1.0 / minutes if minutes > 0 else math.nan
    return {
        "false_per_min": false * per_minute,
        "real_ends_per_min": real * per_minute,
        "median_delay_s": float(np.median(delays)) if delays else None,
        "p90_delay_s": float(np.percentile(delays, 90)) if delays else None,
        "quick_share": float(np.mean(np.asarray(delays) <= QUICK_S)) if delays else None,
        "missed": real - len(delays),
        "false": false,
        "real_ends": real,
    }


def declared(waits_s: Sequence[float], silences_s: Sequence[float]) -> list[float | None]:
    """When each silence was declared over, given the wait for it (None: it was not)."""
    return [w if s >= w else None for w, s in zip(waits_s, silences_s, strict=True)]


def trade_off(
    judged: Mapping[float, Sequence[Judged]], minutes: float
) -> dict[str, dict[str, Any]]:
    """The rows of the trade-off: the judge at each eagerness (its replay's silences) and
    each fixed gap, on the same silences."""
    rows = {}
    lengths: list[float] = []
    for eagerness, silences in judged.items():
        lengths = [j.silence_s for j in silences]
        after = declared([j.wait_s for j in silences], lengths)
        rows[f"auto {eagerness:g}"] = figures(after, lengths, minutes)
    for gap_s in FIXED_GAPS_S:
        after = declared([gap_s] * len(lengths), lengths)
        rows[f"gap {gap_s:g}"] = figures(after, lengths, minutes)
    return rows


def dominated_by(rows: dict[str, dict[str, Any]], name: str) -> list[str]:
    """The fixed gaps with both fewer false answers and a shorter median delay than ``name``."""
    row = rows[name]
    median_s = row["median_delay_s"] if row["median_delay_s"] is not None else math.inf
    return [
        other
        for other, r in rows.items()
        if other.startswith("gap ")
        and r["false_per_min"] < row["false_per_min"]
        and r["median_delay_s"] is not None
        and r["median_delay_s"] < median_s
    ]


def format_rows(rows: dict[str, dict[str, Any]]) -> str:
    """The trade-off's rows as a table ("quick": the share of real ends declared within
    ``QUICK_S``)."""
    lines = [f"{'':10} {'false/min':>9} {'median s':>9} {'p90 s':>7} {'quick':>6} {'missed':>6}"]
    for name, row in rows.items():
        median = "-" if row["median_delay_s"] is None else f"{row['median_delay_s']:.3f}"
        p90 = "-" if row["p90_delay_s"] is None else f"{row['p90_delay_s']:.3f}"
        quick = "-" if row["quick_share"] is None else f"{row['quick_share']:.0%}"
        lines.append(
            f"{name:10} {row['false_per_min']:9.2f} {median:>9} {p90:>7} {quick:>6} "
            f"{row['missed']:6d}"
        )
    return "\n".join(lines)
