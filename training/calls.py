"""Real calls cut from a performance: phrases ended by a silence, and what the player did next.

A performance's notes arrays have the sustain pedal folded into the note lengths, so "no key
or pedal held" is "no note sounding". A phrase ends where nothing sounds for at least
``SILENCE_S`` (1 s, the "real ends" of turn-taking: a pause a player leaves on purpose, not a
breath inside a phrase). Each phrase and the phrase after it make a pair: the call, and the
player's own next phrase, the natural reference for an answer.

Calls are kept when they have ``MIN_CALL_NOTES`` to ``MAX_CALL_NOTES`` notes and last at most
``MAX_CALL_S`` (a continuous stretch of a sonata is not a call). The next phrase is cut to its
first ``NEXT_PHRASE_S`` seconds, the longest a reply may last by default.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

SILENCE_S = 1.0
MIN_CALL_NOTES = 3
MAX_CALL_NOTES = 256
MAX_CALL_S = 30.0
NEXT_PHRASE_S = 20.0


@dataclass(frozen=True)
class CallPair:
    """A call and the player's next phrase, both with times from the call's first onset."""

    performance: str
    index: int  # the call's phrase number in its performance
    call: np.ndarray  # float32 [N, 4]: pitch, onset_s, offset_s, velocity
    next_phrase: np.ndarray
    gap_s: float  # from the call's last release to the next phrase's first onset


def cut_phrases(notes: np.ndarray, silence_s: float = SILENCE_S) -> list[np.ndarray]:
    """The phrases of a performance, in order: a new one starts after ``silence_s`` or more
    with no note sounding."""
    if len(notes) == 0:
        return []
    notes = notes[np.argsort(notes[:, 1], kind="stable")]
    released = np.maximum.accumulate(notes[:, 2])
    starts = np.flatnonzero(notes[1:, 1] - released[:-1] >= silence_s) + 1
    return np.split(notes, starts)


def call_pairs(
    performance: str,
    notes: np.ndarray,
    silence_s: float = SILENCE_S,
    next_phrase_s: float = NEXT_PHRASE_S,
) -> list[CallPair]:
    """Every usable (call, next phrase) pair of a performance (see the module docstring)."""
    phrases = cut_phrases(notes, silence_s)
    pairs = []
    for index, (call, following) in enumerate(itertools.pairwise(phrases)):
        call_s = float(call[:, 2].max() - call[0, 1])
        if not MIN_CALL_NOTES <= len(call) <= MAX_CALL_NOTES or call_s > MAX_CALL_S:
            continue
        origin = float(call[0, 1])
        following = following[following[:, 1] < following[0, 1] + next_phrase_s]
        call_out = call.astype(np.float32).copy()
        next_out = following.astype(np.float32).copy()
        call_out[:, 1:3] -= origin
        next_out[:, 1:3] -= origin
        pairs.append(
            CallPair(
                performance,
                index,
                call_out,
                next_out,
                gap_s=float(following[0, 1] - call[:, 2].max()),
            )
        )
    return pairs
