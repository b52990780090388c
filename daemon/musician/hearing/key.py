"""The key of a phrase, by the Krumhansl-Schmuckler algorithm, and its scale.

The duration-weighted pitch-class profile of the notes is correlated with the 24 rotations of
the Krumhansl-Kessler major and minor key profiles; the best is the key. A major key's scale
is the major scale; a minor key's is the natural and harmonic minor scales together.
Used by the reply logic to keep a reply in its call's key (:mod:`~.follow`) and by
``antiphon eval-replies`` to measure it.
"""

from __future__ import annotations

import numpy as np

# Krumhansl-Kessler probe-tone profiles, C major and C minor.
MAJOR_PROFILE = np.asarray([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
MINOR_PROFILE = np.asarray([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
MINOR_SCALES = (0, 2, 3, 5, 7, 8, 10, 11)  # natural minor, plus the harmonic minor's 7th


def _standardised(rows: np.ndarray) -> np.ndarray:
    centred = rows - rows.mean(axis=-1, keepdims=True)
    return centred / np.sqrt((centred**2).sum(axis=-1, keepdims=True))


# The 24 keys' profiles, standardised (the major keys on C to B, then the minor ones): the
# correlation with a pitch-class profile is one matrix product.
KEY_PROFILES = _standardised(
    np.array([np.roll(t, tonic) for t in (MAJOR_PROFILE, MINOR_PROFILE) for tonic in range(12)])
)


def key_of(notes: np.ndarray) -> tuple[int, bool]:
    """The key of some notes [N, 4] (pitch, onset_s, offset_s, ...): (tonic pitch class,
    minor?)."""
    profile = np.zeros(12)
    durations = np.maximum(notes[:, 2] - notes[:, 1], 0.01)
    np.add.at(profile, notes[:, 0].astype(np.int64) % 12, durations)
    if profile.std() == 0:
        return 0, False
    best = int(np.argmax(KEY_PROFILES @ _standardised(profile)))
    return best % 12, best >= 12


def scale_of(tonic: int, minor: bool) -> frozenset[int]:
    """The pitch classes of a key's scale."""
    return frozenset((tonic + step) % 12 for step in (MINOR_SCALES if minor else MAJOR_SCALE))
