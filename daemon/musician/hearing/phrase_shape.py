"""The shape of a phrase, as a listener hears it: register, density, texture and pace.

Pure functions of a notes array (float [N, 4]: pitch, onset_s, offset_s, velocity, any order).
Notes whose onsets lie within ``ONSET_GROUP_S`` of a group's first onset sound as one event (a
chord): an *onset group*.

- register: the median pitch;
- density: onset groups per second, over the phrase's span from its first onset to its last
  release (at least ``MIN_SPAN_S``);
- texture: mean notes per onset group (1 is a single line);
- pace: the median inter-onset interval between onset groups (None with fewer than 2 groups).

The reply logic follows a call's shape (:mod:`antiphon.daemon.musician.answering.follow`), and
``antiphon eval-replies`` measures a reply's distance to its call with the same functions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ONSET_GROUP_S = 0.035  # onsets closer than this are one onset group (a chord)
MIN_SPAN_S = 0.25


@dataclass(frozen=True)
class PhraseShape:
    """Register, density, texture and pace of a phrase (see the module docstring)."""

    median_pitch: float
    groups_per_s: float
    notes_per_group: float
    median_ioi_s: float | None
    notes: int


def group_onsets(onsets_s: np.ndarray, within_s: float = ONSET_GROUP_S) -> np.ndarray:
    """The first onset of each onset group, from onsets sorted ascending."""
    firsts: list[float] = []
    for onset_s in onsets_s:
        if not firsts or onset_s - firsts[-1] > within_s:
            firsts.append(float(onset_s))
    return np.asarray(firsts, np.float64)


def shape_of(notes: np.ndarray) -> PhraseShape | None:
    """The shape of a phrase; None for a phrase without notes."""
    if len(notes) == 0:
        return None
    onsets = np.sort(notes[:, 1].astype(np.float64))
    firsts = group_onsets(onsets)
    span_s = max(MIN_SPAN_S, float(notes[:, 2].max()) - float(onsets[0]))
    iois = np.diff(firsts)
    return PhraseShape(
        median_pitch=float(np.median(notes[:, 0])),
        groups_per_s=len(firsts) / span_s,
        notes_per_group=len(notes) / len(firsts),
        median_ioi_s=float(np.median(iois)) if len(iois) else None,
        notes=len(notes),
    )
