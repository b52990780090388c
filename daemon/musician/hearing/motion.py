"""How a phrase moves: its line's intervals, contour, sweep and articulation, and its overlap.

Pure functions of a notes array (float [N, 4]: pitch, onset_s, offset_s, velocity, any order).
The *line* of a phrase is its highest note of each onset group (notes starting within
``ONSET_GROUP_S`` of the group's first onset, as in :mod:`~.phrase_shape`), in onset order,
each with its own length: a single-line phrase is its own line, a chord is heard as its top.

- interval profile: the shares of the line's intervals that are repeats (0 semitones), steps
  (1-2), skips (3-4) and leaps (5 or more);
- contour: the share of the line's direction changes among its moving intervals;
- span per second: the phrase's pitch span (highest minus lowest, plus one) over its duration
  (first onset to last release), how fast it covers ground;
- articulation: the median of each line note's length over the time to the next line onset
  (below 1 detached, about 1 legato, far above 1 held under what follows);
- overlap: the share of the time anything sounds that two or more notes sound.

A phrase *plays one line* when its overlap share is at most ``ONE_LINE_OVERLAP``: legato
players overlap a neighbour's note by some tens of milliseconds, chords overlap for their
whole length. ``antiphon eval-replies`` measures replies with these functions, and
``--model auto`` picks the model for a call by :func:`plays_one_line`.
"""

from __future__ import annotations

import numpy as np
from antiphon.daemon.musician.hearing.phrase_shape import MIN_SPAN_S, ONSET_GROUP_S

INTERVAL_CLASSES = ("repeat", "step", "skip", "leap")
# Upper bounds (inclusive, semitones) of the interval classes but the last.
INTERVAL_BOUNDS = (0, 2, 4)
ONE_LINE_OVERLAP = 0.2


def melodic_line(notes: np.ndarray) -> np.ndarray:
    """The highest note of each onset group, in onset order, lengths kept (float64 [M, 4])."""
    if len(notes) == 0:
        return np.zeros((0, 4))
    notes = np.asarray(notes, np.float64)
    notes = notes[np.lexsort((-notes[:, 0], notes[:, 1]))]
    line = []
    group_start_s = -np.inf
    for row in notes:
        if row[1] - group_start_s > ONSET_GROUP_S:
            group_start_s = row[1]
            line.append(row)
        elif row[0] > line[-1][0]:
            line[-1] = row
    return np.asarray(line)


def interval_profile(notes: np.ndarray) -> np.ndarray | None:
    """Shares of the line's repeats, steps, skips and leaps (sums to 1); None without an
    interval."""
    line = melodic_line(notes)
    if len(line) < 2:
        return None
    sizes = np.abs(np.diff(line[:, 0]))
    classes = np.searchsorted(INTERVAL_BOUNDS, sizes, side="left")
    counts = np.bincount(classes, minlength=len(INTERVAL_CLASSES)).astype(np.float64)
    return counts / counts.sum()


def profile_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Total variation distance between two distributions: 0 the same, 1 disjoint."""
    return float(0.5 * np.abs(a - b).sum())


def direction_changes(notes: np.ndarray) -> float | None:
    """The share of the line's moving intervals that turn against the one before; None with
    fewer than two moving intervals."""
    line = melodic_line(notes)
    signs = np.sign(np.diff(line[:, 0])) if len(line) > 1 else np.zeros(0)
    signs = signs[signs != 0]
    if len(signs) < 2:
        return None
    return float(np.mean(signs[1:] != signs[:-1]))


def span_per_s(notes: np.ndarray) -> float | None:
    """(Highest - lowest pitch + 1) semitones per second of the phrase; None without notes."""
    if len(notes) == 0:
        return None
    duration_s = max(MIN_SPAN_S, float(notes[:, 2].max() - notes[:, 1].min()))
    return float(notes[:, 0].max() - notes[:, 0].min() + 1) / duration_s


def articulation(notes: np.ndarray) -> float | None:
    """Median of each line note's length over the time to the next line onset; None with
    fewer than two line notes."""
    line = melodic_line(notes)
    if len(line) < 2:
        return None
    iois = np.diff(line[:, 1])
    lengths = line[:-1, 2] - line[:-1, 1]
    return float(np.median(lengths / np.maximum(iois, 1e-3)))


def overlap_share(notes: np.ndarray) -> float | None:
    """The share of the time anything sounds that two or more notes sound; None without a
    sounding note."""
    if len(notes) == 0:
        return None
    times = np.concatenate([notes[:, 1], notes[:, 2]]).astype(np.float64)
    steps = np.concatenate([np.ones(len(notes)), -np.ones(len(notes))])
    # Releases before onsets at equal times: a note that ends as the next starts is legato,
    # not an overlap.
    order = np.lexsort((steps, times))
    times, sounding = times[order], np.cumsum(steps[order])
    spans = np.diff(times)
    sounding = sounding[:-1]
    total_s = float(spans[sounding >= 1].sum())
    if total_s <= 0:
        return None
    return float(spans[sounding >= 2].sum()) / total_s


def plays_one_line(notes: np.ndarray) -> bool | None:
    """Whether a phrase is one line (overlap share at most ``ONE_LINE_OVERLAP``); None when
    nothing sounds."""
    share = overlap_share(notes)
    return None if share is None else share <= ONE_LINE_OVERLAP
