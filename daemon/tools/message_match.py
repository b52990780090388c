"""Every message the daemon planned, matched with what a listener received: the bench's proof
that nothing was lost on the way.

The daemon logs each reply message's planned time (``CLOCK_MONOTONIC``, one clock for every
process on the machine); the probe stamps each arrival on the same clock. A planned message is
matched with the earliest arrival of the same kind (note-on or note-off) and pitch, not yet
matched, that came no earlier than ``EARLY_S`` before it and no later than ``LATE_S`` after
it. What is left over is counted: planned messages never heard are **lost**, arrivals no plan
explains are **extra** (duplicated, or not the daemon's), and matched arrivals that came in
another order than planned are **reordered** (those outside the longest run in planned order).

Pure: lists in, counts and pairs out.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field

EARLY_S = 0.002  # a send is never before its plan; the margin is for the stamps' own jitter
LATE_S = 1.0  # later than this is not the same message any more (a stuck cycle is seconds)

Key = tuple[bool, int]  # (note-on?, pitch)
Planned = tuple[float, bool, int]  # (planned time, note-on?, pitch)
Heard = tuple[float, bool, int]  # (arrival time, note-on?, pitch)


@dataclass
class MessageMatch:
    """Planned messages paired with arrivals, and what could not be paired."""

    pairs: list[tuple[int, int]] = field(default_factory=list)  # (planned index, heard index)
    lost: int = 0
    extra: int = 0
    reordered: int = 0

    def errors_s(self, planned: Sequence[Planned], heard: Sequence[Heard]) -> list[float]:
        """Arrival - planned time of each pair."""
        return [heard[h][0] - planned[p][0] for p, h in self.pairs]


def match_messages(planned: Sequence[Planned], heard: Sequence[Heard]) -> MessageMatch:
    """Pair each planned message with its arrival (see the module docstring)."""
    by_key: dict[Key, list[tuple[float, int]]] = {}
    for index, (time_s, on, pitch) in enumerate(heard):
        by_key.setdefault((on, pitch), []).append((time_s, index))
    for arrivals in by_key.values():
        arrivals.sort()
    taken: set[int] = set()
    result = MessageMatch()
    for p_index in sorted(range(len(planned)), key=lambda i: planned[i][0]):
        planned_s, on, pitch = planned[p_index]
        arrivals = by_key.get((on, pitch), [])
        start = bisect.bisect_left(arrivals, (planned_s - EARLY_S, -1))
        found = next(
            (h for time_s, h in arrivals[start:] if h not in taken),
            None,
        )
        if found is None or heard[found][0] > planned_s + LATE_S:
            result.lost += 1
            continue
        taken.add(found)
        result.pairs.append((p_index, found))
    result.extra = len(heard) - len(taken)
    result.reordered = len(result.pairs) - _longest_increasing([h for _, h in sorted(result.pairs)])
    return result


def _longest_increasing(values: list[int]) -> int:
    """Length of the longest strictly increasing subsequence (patience sorting)."""
    tails: list[int] = []
    for value in values:
        at = bisect.bisect_left(tails, value)
        if at == len(tails):
            tails.append(value)
        else:
            tails[at] = value
    return len(tails)
