"""What shapes one reply's draws, put together: the following biases and the steering
(:mod:`antiphon.daemon.musician.answering.follow`) and the memory blend
(:mod:`antiphon.daemon.musician.answering.memory`), with the small state they need as the reply is
drawn (the open onset group, the reply's melody so far).

That state is an immutable value the reply keeps twice, for the events played and for those
drawn ahead, so rolling drawn events back rolls it back too. With every knob off there is no
:class:`ReplyShaping` at all (:func:`make_shaping` gives None) and the reply draws exactly as
it always did.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from antiphon.daemon.codec import Vocabulary
from antiphon.daemon.musician.answering.follow import (
    NO_GROUP,
    NO_LINE,
    FollowBias,
    GroupState,
    LineState,
    Steering,
    after_note_on,
    pitch_range_mask,
)
from antiphon.daemon.musician.answering.memory import (
    MelodyState,
    MemoryBlend,
    PlayerMemory,
    advance,
)
from antiphon.daemon.musician.hearing.motion import plays_one_line
from antiphon.daemon.musician.model.engine import Blend

# The parameters a reply's shaping is made from: a change reshapes the reply playing.
SHAPING_KNOBS = ("follow", "mirror", "range_low", "range_high", "density", "dynamics")


class ShapingState(NamedTuple):
    group: GroupState
    melody: MelodyState
    released_s: float = -math.inf  # a one-line reply's last release (-inf: none, or chords)
    line: LineState = NO_LINE  # a one-line reply's last pitch and move


class ReplyShaping:
    """The pushes on one reply's draws.

    Args:
        call: the call's notes [N, 4] as played (following needs at least one).
        steering: the knobs.
        mirror: the memory's share of the pitch choice, 0 to 1.
        memory: the player's memory (read at each draw; the performer feeds it).
        vocabulary: the model's tokens.
    """

    def __init__(
        self,
        call: np.ndarray,
        steering: Steering,
        mirror: float,
        memory: PlayerMemory,
        vocabulary: Vocabulary,
    ) -> None:
        self.follow = (
            FollowBias(call, steering, vocabulary) if steering.follow > 0 and len(call) else None
        )
        # Following a call that plays one line, the reply plays one line too: a note starts
        # only once the one sounding has ended (the reply masks note-ons meanwhile).
        self.one_line = self.follow is not None and bool(plays_one_line(call))
        low, high = sorted((steering.range_low, steering.range_high))
        self.pitch_allowed = pitch_range_mask(low, high) if steering.ranged else None
        self._dynamics = steering.dynamics
        self.memory_blend = MemoryBlend(memory, mirror) if mirror > 0 else None
        self.start = ShapingState(NO_GROUP, memory.state)

    def after_note_on(self, state: ShapingState, pitch: int, time_s: float) -> ShapingState:
        melody = state.melody
        if self.memory_blend is not None:
            melody, _ = advance(melody, pitch, time_s)
        line = state.line
        if self.one_line:
            last, direction, moves, turns = line
            move = 0 if last < 0 else (pitch > last) - (pitch < last)
            if move:
                moves, turns = moves + 1, turns + (direction != 0 and move != direction)
            line = (pitch, move or direction, moves, turns)
        return ShapingState(after_note_on(state.group, time_s), melody, state.released_s, line)

    def after_note_off(self, state: ShapingState, time_s: float) -> ShapingState:
        """The state after the reply released a note at ``time_s`` (kept when answering one
        line: the articulation's push needs it)."""
        return state._replace(released_s=time_s) if self.one_line else state

    def bias(self, state: ShapingState, now_s: float) -> np.ndarray | None:
        """The logit bias of the next draw at the drawing's time ``now_s``."""
        if self.follow is None:
            return None
        if not self.one_line:
            return self.follow.bias(state.group, now_s)
        return self.follow.bias(state.group, now_s, state.released_s, state.line)

    def blend(self, state: ShapingState) -> Blend | None:
        return None if self.memory_blend is None else self.memory_blend.at(state.melody)

    def loudness(self, velocity: int) -> int:
        """The MIDI velocity a note the model chose at ``velocity`` is played at."""
        return max(1, min(127, velocity + self._dynamics))


def make_shaping(
    call: np.ndarray,
    steering: Steering,
    mirror: float,
    memory: PlayerMemory,
    vocabulary: Vocabulary,
) -> ReplyShaping | None:
    """The shaping of a reply, or None when every knob is off (the plain draw)."""
    if steering.follow == 0 and not steering.ranged and steering.dynamics == 0 and mirror == 0:
        return None
    return ReplyShaping(call, steering, mirror, memory, vocabulary)
