"""Scores played like a person: a single line taken from a score, and expressive timing and
loudness for a score rendered deadpan (music21's folk tunes and chorales).

A rendered score has a metronomic clock, every note at one velocity and every phrase run into
the next. Antiphon's measures (and its turn-taking) need performances, so
:func:`perform` plays one, seeded and reproducible:

- phrase ends: after a rest, or after a long note (at least ``LONG_NOTE_IOIS`` times the
  median inter-onset interval) at least ``MIN_PHRASE_NOTES`` onsets after the last end; the
  player breathes there, ``BREATH_S`` (uniform), so some phrase ends are silences of a second
  or more (real ends, for turn-taking) and some are not;
- tempo: an overall factor (``TEMPO_SPREAD``) and a smooth drift, a random walk of the log
  tempo with a knot every ``DRIFT_KNOT_S`` seconds of score time (``DRIFT_STEP`` per knot,
  held within ``DRIFT_LIMIT``);
- articulation: legato to staccato, a factor on each note's length drawn per phrase
  (``ARTICULATION``) with a little per-note spread;
- onset jitter: per onset group (Gaussian, ``ONSET_JITTER_S``, clipped at ``ONSET_JITTER_MAX_S``),
  and a few ms of spread between the notes of a chord;
- loudness: a base level per performance, a level per phrase, an arch over each phrase and
  per-note jitter (velocity levels).

:func:`top_line` makes any notes array one melodic line: the highest note of each onset
group, each cut at the next onset.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

ONSET_GROUP_S = 0.030  # deadpan onsets closer than this are one chord
LONG_NOTE_IOIS = 2.0
MIN_PHRASE_NOTES = 6
BREATH_S = (0.15, 2.0)
TEMPO_SPREAD = 0.15  # overall tempo factor in [1 - spread, 1 + spread]
DRIFT_KNOT_S = 2.0
DRIFT_STEP = 0.04  # std of the log-tempo step per knot
DRIFT_LIMIT = 0.2  # |log tempo drift| at most this
ARTICULATION = (0.5, 1.02)  # a phrase's note-length factor: staccato .. legato
ARTICULATION_NOTE_STD = 0.06
ONSET_JITTER_S = 0.012
ONSET_JITTER_MAX_S = 0.035
CHORD_SPREAD_S = 0.005
VELOCITY_BASE = (48, 88)
PHRASE_LEVEL_STD = 8.0
PHRASE_ARCH = 10.0  # velocity levels added at the middle of a phrase, 0 at its ends
VELOCITY_JITTER = 5.0
MIN_NOTE_S = 0.04
WARP_GRID_S = 0.01


@dataclass(frozen=True)
class Rendering:
    """How the corpus builder turns a source into a performance.

    Args:
        single_line: keep one melodic line (music21: the top part, a chorale's soprano; then
            :func:`top_line`).
        expressive: play it with :func:`perform` (meant for rendered scores).
        seed: with the source's id, seeds each performance's expression.
        abc_chords: play an ABC tune's chord symbols as a second part below its melody
            (:mod:`antiphon.training.abc`); without it they are left out.
    """

    single_line: bool = False
    expressive: bool = False
    seed: int = 0
    abc_chords: bool = False

    def rng_for(self, source_id: str) -> np.random.Generator:
        return np.random.default_rng([self.seed, zlib.crc32(source_id.encode())])


def onset_groups(onsets_s: np.ndarray, within_s: float = ONSET_GROUP_S) -> np.ndarray:
    """Group index of each onset (sorted ascending): a new group starts more than
    ``within_s`` after the previous group's first onset."""
    groups = np.zeros(len(onsets_s), np.int64)
    start_s, group = -np.inf, -1
    for i, onset_s in enumerate(onsets_s):
        if onset_s - start_s > within_s:
            group += 1
            start_s = onset_s
        groups[i] = group
    return groups


def top_line(notes: np.ndarray) -> np.ndarray:
    """One melodic line: the highest note of each onset group, cut at the next onset."""
    if len(notes) == 0:
        return notes.copy()
    notes = notes[np.argsort(notes[:, 1], kind="stable")]
    groups = onset_groups(notes[:, 1].astype(np.float64))
    order = np.lexsort((-notes[:, 0], groups))  # by group, the highest first
    notes, groups = notes[order], groups[order]
    first = np.ones(len(notes), bool)
    first[1:] = groups[1:] != groups[:-1]
    line = notes[first].copy()
    line[:-1, 2] = np.minimum(line[:-1, 2], line[1:, 1])
    keep = line[:, 2] > line[:, 1]
    return line[keep]


def phrase_ends(group_onsets_s: np.ndarray, group_ends_s: np.ndarray) -> np.ndarray:
    """Indices of the onset groups that end a phrase (see the module docstring)."""
    count = len(group_onsets_s)
    if count < 2:
        return np.zeros(0, np.int64)
    iois = np.diff(group_onsets_s)
    median_ioi = float(np.median(iois))
    ends, since = [], 0
    for k in range(count - 1):
        since += 1
        rest = group_onsets_s[k + 1] - group_ends_s[k] > 1e-3
        long_note = iois[k] >= LONG_NOTE_IOIS * median_ioi and since >= MIN_PHRASE_NOTES
        if rest or long_note:
            ends.append(k)
            since = 0
    return np.asarray(ends, np.int64)


def perform(notes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A deadpan notes array [N, 4] (pitch, onset_s, offset_s, velocity) played with
    expression; a new float32 array, sorted by onset."""
    if len(notes) == 0:
        return notes.copy()
    notes = notes[np.argsort(notes[:, 1], kind="stable")].astype(np.float64)
    groups = onset_groups(notes[:, 1])
    count = int(groups[-1]) + 1
    group_onsets = np.zeros(count)
    group_ends = np.zeros(count)
    np.maximum.at(group_ends, groups, notes[:, 2])
    group_onsets[groups[::-1]] = notes[::-1, 1]  # the first onset of each group
    ends = phrase_ends(group_onsets, group_ends)
    phrase_of_group = np.zeros(count, np.int64)
    phrase_of_group[ends + 1] = 1
    phrase_of_group = np.cumsum(phrase_of_group)
    phrases = int(phrase_of_group[-1]) + 1

    # Breaths: each group after a phrase end starts later by every breath before it.
    breaths = np.zeros(count)
    breaths[ends + 1] = rng.uniform(*BREATH_S, size=len(ends))
    shift = np.cumsum(breaths)[groups]
    onsets = notes[:, 1] + shift
    lengths = notes[:, 2] - notes[:, 1]

    # Tempo: score time -> performed time through a drifting tempo.
    horizon_s = float((onsets + lengths).max()) + DRIFT_KNOT_S
    knots = int(np.ceil(horizon_s / DRIFT_KNOT_S)) + 1
    drift = np.clip(np.cumsum(rng.normal(0.0, DRIFT_STEP, knots)), -DRIFT_LIMIT, DRIFT_LIMIT)
    tempo = rng.uniform(1.0 - TEMPO_SPREAD, 1.0 + TEMPO_SPREAD)
    grid = np.arange(0.0, horizon_s + WARP_GRID_S, WARP_GRID_S)
    rate = tempo * np.exp(np.interp(grid, np.arange(knots) * DRIFT_KNOT_S, drift))
    warp = np.concatenate(([0.0], np.cumsum(np.diff(grid) / rate[:-1])))
    starts = np.interp(onsets, grid, warp)
    stops = np.interp(onsets + lengths, grid, warp)

    # Articulation, per phrase and per note.
    factor = rng.uniform(*ARTICULATION, size=phrases)[phrase_of_group[groups]]
    factor = np.clip(factor + rng.normal(0.0, ARTICULATION_NOTE_STD, len(notes)), 0.3, 1.1)
    durations = np.maximum(MIN_NOTE_S, (stops - starts) * factor)

    # Onset jitter: the group moves together, chord notes spread a little.
    group_jitter = np.clip(
        rng.normal(0.0, ONSET_JITTER_S, count), -ONSET_JITTER_MAX_S, ONSET_JITTER_MAX_S
    )
    spread = np.clip(rng.normal(0.0, CHORD_SPREAD_S, len(notes)), -0.015, 0.015)
    spread[np.r_[True, groups[1:] != groups[:-1]]] = 0.0  # a group's first note is its time
    starts = np.maximum(0.0, starts + group_jitter[groups] + spread)

    # Loudness: base, phrase level, phrase arch, jitter.
    phrase_index = phrase_of_group[groups]
    first_group = np.searchsorted(phrase_of_group, np.arange(phrases))
    last_group = np.append(first_group[1:] - 1, count - 1)
    span = np.maximum(1, last_group - first_group)[phrase_index]
    position = (groups - first_group[phrase_index]) / span
    velocity = (
        rng.uniform(*VELOCITY_BASE)
        + rng.normal(0.0, PHRASE_LEVEL_STD, phrases)[phrase_index]
        + PHRASE_ARCH * np.sin(np.pi * position)
        + rng.normal(0.0, VELOCITY_JITTER, len(notes))
    )

    out = np.stack(
        [notes[:, 0], starts, starts + durations, np.clip(np.round(velocity), 1, 127)], axis=1
    )
    out = out[np.argsort(out[:, 1], kind="stable")]
    _cut_repeated_pitches(out)
    out[:, 1:3] -= out[:, 1].min()
    return out.astype(np.float32)


def _cut_repeated_pitches(notes: np.ndarray) -> None:
    """A note ends before the next onset of its own pitch (legato must not merge them)."""
    for pitch in np.unique(notes[:, 0]):
        rows = np.flatnonzero(notes[:, 0] == pitch)
        if len(rows) > 1:
            nxt = notes[rows[1:], 1] - 0.005
            notes[rows[:-1], 2] = np.maximum(
                notes[rows[:-1], 1] + 0.01, np.minimum(notes[rows[:-1], 2], nxt)
            )
