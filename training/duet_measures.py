"""How a duet part goes with its player: pure measures on notes arrays (float [N, 4]: pitch,
onset_s, offset_s, velocity; one time frame), for ``antiphon eval-duet``.

- pulse: the share of a part's onset groups on the player's half-beat grid, minus chance
  (:func:`~antiphon.training.pulse_measures.pulse_share`), figured in windows of
  ``PULSE_WINDOW_S`` (a grid fitted on the player's notes of each window: a performance's
  tempo moves) and averaged over the windows, weighted by the part's onset groups in each;
- consonance: the share of a part's notes whose pitch class is among the player's sounding
  pitch classes at its onset, those the player struck within ``JUST_PLAYED_S`` before it, or
  the scale of the key of the player's notes of the last ``KEY_WINDOW_S``;
- overlap: the share of a part's notes that cross the player's line: struck at or above the
  lowest pitch the player has sounding (the part below the split; mirrored above it);
- register: the part's mean pitch;
- note length: the part's median note length, and the share of its notes held to the
  performer's ``max_note_s`` (a note the part never released itself);
- loudness: the part's mean velocity over the player's.
"""

from __future__ import annotations

import math

import numpy as np
from antiphon.daemon.musician.hearing.key import key_of, scale_of
from antiphon.training.pulse_measures import onset_groups, pulse_share

PULSE_WINDOW_S = 10.0
JUST_PLAYED_S = 1.0
KEY_WINDOW_S = 10.0


def split_hands(notes: np.ndarray, split: int) -> tuple[np.ndarray, np.ndarray]:
    """(the player's part: pitches at or above ``split``; the accompanying part: below)."""
    notes = np.asarray(notes, np.float64).reshape(-1, 4)
    above = notes[:, 0] >= split
    return notes[above], notes[~above]


def excerpt(notes: np.ndarray, start_s: float, seconds: float) -> np.ndarray:
    """The notes struck in ``[start_s, start_s + seconds)``, times from ``start_s``, each
    ending by the excerpt's end."""
    notes = np.asarray(notes, np.float64).reshape(-1, 4)
    end_s = start_s + seconds
    kept = notes[(notes[:, 1] >= start_s) & (notes[:, 1] < end_s)].copy()
    kept[:, 2] = np.minimum(kept[:, 2], end_s)
    kept[:, 1:3] -= start_s
    return kept


def density_ratio(part: np.ndarray, reference: np.ndarray) -> float:
    """The part's onsets over the reference's (the same span): nan without reference onsets."""
    return len(part) / len(reference) if len(reference) else math.nan


def windowed_pulse(
    player: np.ndarray, part: np.ndarray, window_s: float = PULSE_WINDOW_S
) -> float | None:
    """The part's pulse on the player's grid, window by window (see the module docstring);
    None when no window can be measured."""
    if len(part) == 0 or len(player) == 0:
        return None
    end_s = float(max(player[:, 1].max(), part[:, 1].max()))
    total = weight = 0.0
    start_s = 0.0
    while start_s <= end_s:
        in_player = player[(player[:, 1] >= start_s) & (player[:, 1] < start_s + window_s)]
        in_part = part[(part[:, 1] >= start_s) & (part[:, 1] < start_s + window_s)]
        share = pulse_share(in_player, in_part)
        if share is not None:
            groups = len(onset_groups(in_part))
            total += share * groups
            weight += groups
        start_s += window_s
    return total / weight if weight else None


def consonance(player: np.ndarray, part: np.ndarray) -> float | None:
    """The share of the part's notes in the player's harmony (see the module docstring);
    None for a part with no notes."""
    if len(part) == 0:
        return None
    inside = 0
    for pitch, onset_s, _, _ in part:
        heard = player[(player[:, 1] <= onset_s) & (player[:, 1] > onset_s - KEY_WINDOW_S)]
        classes = {
            int(p) % 12
            for p, on_s, off_s, _ in heard
            if off_s > onset_s or on_s > onset_s - JUST_PLAYED_S
        }
        if len(heard):
            classes |= scale_of(*key_of(heard))
        inside += int(pitch) % 12 in classes
    return inside / len(part)


def overlap(player: np.ndarray, part: np.ndarray, below: bool = True) -> float | None:
    """The share of the part's notes that cross the player's line (see the module
    docstring); None for a part with no notes."""
    if len(part) == 0:
        return None
    crossing = 0
    for pitch, onset_s, _, _ in part:
        sounding = player[(player[:, 1] <= onset_s) & (player[:, 2] > onset_s), 0]
        if len(sounding):
            crossing += pitch >= sounding.min() if below else pitch <= sounding.max()
    return crossing / len(part)


def register(part: np.ndarray) -> float | None:
    """The part's mean pitch; None for no notes."""
    return float(part[:, 0].mean()) if len(part) else None


def note_length_s(part: np.ndarray) -> float | None:
    """The part's median note length in seconds; None for no notes."""
    return float(np.median(part[:, 2] - part[:, 1])) if len(part) else None


def held_to(part: np.ndarray, max_note_s: float) -> float | None:
    """The share of the part's notes that sounded ``max_note_s`` (to a millisecond); None
    for no notes."""
    if len(part) == 0:
        return None
    return float(np.mean(part[:, 2] - part[:, 1] >= max_note_s - 1e-3))


def loudness(player: np.ndarray, part: np.ndarray) -> float | None:
    """The part's mean velocity over the player's; None when either has no notes."""
    if len(part) == 0 or len(player) == 0:
        return None
    return float(part[:, 3].mean() / player[:, 3].mean())
