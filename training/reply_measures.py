"""How well a phrase answers its call: a table of measures, each a pure function of the call
and the phrase (notes arrays float [N, 4]: pitch, onset_s, offset_s, velocity).

``antiphon eval-replies`` applies every entry of :data:`MEASURES` to the reply, to the
player's own next phrase and to a shuffled control; to add a measure, append a
:class:`Measure`. A function returns None where it does not apply (a pace needs two onset
groups, a 4-note sequence four notes).

- register, density, texture, pace: distances between the phrase's shape and the call's
  (:mod:`antiphon.daemon.musician.hearing.phrase_shape`): |median pitch difference| in semitones,
  |log2 of the ratio| of onset groups per second, |difference| of notes per onset group,
  |log2 of the ratio| of the median inter-onset intervals;
- in_key: the share of the phrase's notes in the call's key (Krumhansl-Schmuckler, see
  :mod:`antiphon.daemon.musician.hearing.key`);
- copy: the share of the phrase's 4-note pitch sequences that occur in the call;
- intervals, contour, span_rate, articulation: how the phrase moves against how the call
  moves (:mod:`antiphon.daemon.musician.hearing.motion`): the total variation distance between the
  interval profiles (shares of repeats, steps, skips and leaps), |difference| of the shares
  of direction changes, |log2 of the ratio| of spans per second and of articulations
  (a line note's length over the time to the next onset);
- overlap: the share of the phrase's sounding time with two or more notes sounding, on calls
  that play one line (None on others);
- chromatic: the share of the phrase's notes outside the call's key (1 - in_key), held
  within a margin of the player's on both sides;
- pulse, tempo: the share of the phrase's onsets on the call's beat grid carried on past its
  end (pulse), or on a grid of the call's beat period at the phrase's own best phase
  (tempo), each minus what random onsets get (:mod:`antiphon.training.pulse_measures`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from antiphon.daemon.musician.hearing.key import key_of, scale_of
from antiphon.daemon.musician.hearing.motion import (
    articulation,
    direction_changes,
    interval_profile,
    overlap_share,
    plays_one_line,
    profile_distance,
    span_per_s,
)
from antiphon.daemon.musician.hearing.phrase_shape import PhraseShape, shape_of
from antiphon.training.pulse_measures import pulse_share, tempo_share

COPY_LENGTH = 4

MeasureFunction = Callable[[np.ndarray, np.ndarray], float | None]


@dataclass(frozen=True)
class Measure:
    """One row of the table: a name, its unit, and the function of (call, phrase)."""

    name: str
    unit: str
    function: MeasureFunction
    distance: bool  # a distance to the call (lower is closer), else a share


def _shapes(call: np.ndarray, phrase: np.ndarray) -> tuple[PhraseShape, PhraseShape] | None:
    call_shape, phrase_shape = shape_of(call), shape_of(phrase)
    if call_shape is None or phrase_shape is None:
        return None
    return call_shape, phrase_shape


def register_distance(call: np.ndarray, phrase: np.ndarray) -> float | None:
    shapes = _shapes(call, phrase)
    return None if shapes is None else abs(shapes[1].median_pitch - shapes[0].median_pitch)


def density_distance(call: np.ndarray, phrase: np.ndarray) -> float | None:
    shapes = _shapes(call, phrase)
    if shapes is None:
        return None
    return abs(math.log2(shapes[1].groups_per_s / shapes[0].groups_per_s))


def texture_distance(call: np.ndarray, phrase: np.ndarray) -> float | None:
    shapes = _shapes(call, phrase)
    return None if shapes is None else abs(shapes[1].notes_per_group - shapes[0].notes_per_group)


def pace_distance(call: np.ndarray, phrase: np.ndarray) -> float | None:
    shapes = _shapes(call, phrase)
    if shapes is None:
        return None
    call_ioi, phrase_ioi = shapes[0].median_ioi_s, shapes[1].median_ioi_s
    if not call_ioi or not phrase_ioi:
        return None
    return abs(math.log2(phrase_ioi / call_ioi))


def in_key_share(call: np.ndarray, phrase: np.ndarray) -> float | None:
    if len(call) == 0 or len(phrase) == 0:
        return None
    scale = scale_of(*key_of(call))
    return float(np.mean([int(p) % 12 in scale for p in phrase[:, 0]]))


def chromatic_share(call: np.ndarray, phrase: np.ndarray) -> float | None:
    share = in_key_share(call, phrase)
    return None if share is None else 1.0 - share


def interval_distance(call: np.ndarray, phrase: np.ndarray) -> float | None:
    call_profile, phrase_profile = interval_profile(call), interval_profile(phrase)
    if call_profile is None or phrase_profile is None:
        return None
    return profile_distance(call_profile, phrase_profile)


def contour_distance(call: np.ndarray, phrase: np.ndarray) -> float | None:
    call_changes, phrase_changes = direction_changes(call), direction_changes(phrase)
    if call_changes is None or phrase_changes is None:
        return None
    return abs(phrase_changes - call_changes)


def _log2_ratio(call_value: float | None, phrase_value: float | None) -> float | None:
    if not call_value or not phrase_value:
        return None
    return abs(math.log2(phrase_value / call_value))


def span_rate_distance(call: np.ndarray, phrase: np.ndarray) -> float | None:
    return _log2_ratio(span_per_s(call), span_per_s(phrase))


def articulation_distance(call: np.ndarray, phrase: np.ndarray) -> float | None:
    return _log2_ratio(articulation(call), articulation(phrase))


def line_overlap(call: np.ndarray, phrase: np.ndarray) -> float | None:
    """The phrase's overlap share, where the call plays one line."""
    if not plays_one_line(call):
        return None
    return overlap_share(phrase)


def pitch_sequences(notes: np.ndarray, length: int = COPY_LENGTH) -> list[tuple[int, ...]]:
    """The phrase's consecutive pitch sequences of ``length`` notes, in onset order (ties by
    pitch)."""
    order = np.lexsort((notes[:, 0], notes[:, 1]))
    pitches = [int(p) for p in notes[order, 0]]
    return [tuple(pitches[i : i + length]) for i in range(len(pitches) - length + 1)]


def copy_share(call: np.ndarray, phrase: np.ndarray) -> float | None:
    sequences = pitch_sequences(phrase)
    if not sequences:
        return None
    found = set(pitch_sequences(call))
    return sum(s in found for s in sequences) / len(sequences)


MEASURES: list[Measure] = [
    Measure("register", "semitones", register_distance, distance=True),
    Measure("density", "|log2 ratio|", density_distance, distance=True),
    Measure("texture", "notes/group", texture_distance, distance=True),
    Measure("pace", "|log2 ratio|", pace_distance, distance=True),
    Measure("in_key", "share", in_key_share, distance=False),
    Measure("chromatic", "share", chromatic_share, distance=False),
    # Motion (antiphon.daemon.musician.hearing.motion).
    Measure("intervals", "TV distance", interval_distance, distance=True),
    Measure("contour", "share", contour_distance, distance=True),
    Measure("span_rate", "|log2 ratio|", span_rate_distance, distance=True),
    Measure("articulation", "|log2 ratio|", articulation_distance, distance=True),
    Measure("overlap", "share", line_overlap, distance=False),
    Measure("copy", "share", copy_share, distance=False),
    # The beat (antiphon.training.pulse_measures): shares above chance.
    Measure("pulse", "share-chance", pulse_share, distance=False),
    Measure("tempo", "share-chance", tempo_share, distance=False),
]
