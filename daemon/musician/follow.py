"""Following the call: soft pushes on the model's choices toward the call's shape, and the
live steering (a pitch range, a density multiplier, a loudness shift).

The model proposes, the reply logic disposes: nothing here copies or transposes the call or
changes the model. Each piece turns the call's shape
(:mod:`antiphon.daemon.musician.phrase_shape`, measured on the call as the player played it)
into additive biases on the tempered logits at sampling time, in nats, scaled by the
``follow`` knob (0: no bias at all, the plain draw bit for bit):

- :class:`RegisterBias`: note-ons far from the call's median pitch are pushed down,
  quadratically in (distance / the call's spread), at most ``REGISTER_MAX`` nats;
- :class:`TextureBias`: while an onset group is open (within ``ONSET_GROUP_S`` of its first
  note), another note-on is pushed up while the group has fewer notes than the call's mean
  per group, and down once it has as many (a single-line call gets a single line);
- :class:`PaceBias`: once the group is closed, starting the next one (a note-on or a velocity
  token) is pushed down before the target inter-onset interval and up after it (the log2 of
  elapsed / target, times a weight), and time shifts that would overshoot the target are
  pushed down. The target is the call's median inter-onset interval divided by the
  ``density`` multiplier.
- :class:`DensityBias`: over the whole reply, starting the next onset group is pushed down
  while the reply has more groups than the call's density (times ``density``) gives for the
  time since its first note, and up while it has fewer (the log2 of the ratio, times a
  weight): a call with pauses gets a reply with pauses.

Live steering: :func:`pitch_range_mask` (a hard mask on note-ons outside the range between
``range_low`` and ``range_high``: every reply note lies inside) and ``dynamics`` (velocity
levels added to each reply note as it is played, like a fader: the model hears the velocity
it chose, see :meth:`~antiphon.daemon.musician.shaping.ReplyShaping.loudness`).

:class:`HeardCall` keeps the notes of the call in progress, for the shape.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from antiphon.daemon.codec import PITCHES, Vocabulary
from antiphon.daemon.musician.phrase_shape import ONSET_GROUP_S, PhraseShape, shape_of

REGISTER_WEIGHT = 1.0  # nats at one spread from the call's median pitch, at follow 1
REGISTER_MIN_SPREAD = 4.0  # semitones: a narrow call still leaves the reply some room
REGISTER_MAX = 8.0
TEXTURE_WEIGHT = 2.0  # nats per note the open group is short of (or over) the call's
TEXTURE_MAX = 4.0
PACE_WEIGHT = 2.0  # nats per octave of elapsed / target interval
PACE_MAX = 4.0
DENSITY_WEIGHT = 2.0  # nats per octave of expected / played onset groups
DENSITY_MAX = 4.0
OVERSHOOT_WEIGHT = 1.0  # nats per octave squared a time shift would overshoot the target
MAX_CALL_NOTES = 512  # the heard call keeps its last this many notes
DEFAULT_IOI_S = 0.25  # the target interval of a one-chord call with no density to go by

# (the open onset group's first note time, its notes, the reply's groups, its first note time)
GroupState = tuple[float, int, int, float]
NO_GROUP: GroupState = (-math.inf, 0, 0, -math.inf)


class HeardCall:
    """The notes of the call in progress, as the player played them (bounded: the last
    ``MAX_CALL_NOTES``). Fed by the performer's thread; :meth:`notes` gives the notes still
    sounding an end at the time asked."""

    def __init__(self, capacity: int = MAX_CALL_NOTES) -> None:
        self._notes = np.zeros((capacity, 4), np.float64)
        self._count = 0
        self._next = 0
        self._sounding: dict[int, int] = {}  # pitch -> row

    def clear(self) -> None:
        self._count = 0
        self._next = 0
        self._sounding.clear()

    def note_on(self, pitch: int, velocity: int, time_s: float) -> None:
        row = self._next
        self._notes[row] = (pitch, time_s, math.inf, velocity)
        self._sounding[pitch] = row
        self._next = (row + 1) % len(self._notes)
        self._count = min(self._count + 1, len(self._notes))

    def note_off(self, pitch: int, time_s: float) -> None:
        row = self._sounding.pop(pitch, None)
        if row is not None and self._notes[row, 0] == pitch:
            self._notes[row, 2] = time_s

    def release_all(self, time_s: float) -> None:
        for pitch in list(self._sounding):
            self.note_off(pitch, time_s)

    def notes(self, now_s: float) -> np.ndarray:
        """A new array [N, 4] (pitch, onset_s, offset_s, velocity), oldest first."""
        if self._count < len(self._notes):
            notes = self._notes[: self._count].copy()
        else:
            notes = np.roll(self._notes, -self._next, axis=0)
        np.minimum(notes[:, 2], now_s, out=notes[:, 2])
        return notes


@dataclass(frozen=True)
class Steering:
    """The reply-shaping knobs (the live parameters of the same names)."""

    follow: float = 0.0
    range_low: int = 0
    range_high: int = PITCHES - 1
    density: float = 1.0
    dynamics: int = 0

    @property
    def ranged(self) -> bool:
        return self.range_low > 0 or self.range_high < PITCHES - 1


def pitch_range_mask(low: int, high: int) -> np.ndarray:
    """bool [128]: the pitches a reply may start, ``low`` to ``high`` inclusive."""
    mask = np.zeros(PITCHES, bool)
    mask[max(0, low) : min(PITCHES - 1, high) + 1] = True
    return mask


class RegisterBias:
    """Note-on biases [128] around the call's median pitch (see the module docstring)."""

    def __init__(self, notes: np.ndarray, shape: PhraseShape, follow: float) -> None:
        low, high = np.percentile(notes[:, 0], [10, 90])
        spread = max(REGISTER_MIN_SPREAD, float(high - low) / 2.0)
        distance = (np.arange(PITCHES) - shape.median_pitch) / spread
        self.bias = np.maximum(-REGISTER_MAX, -REGISTER_WEIGHT * follow * np.square(distance))


class TextureBias:
    """The push on another note-on while an onset group is open."""

    def __init__(self, shape: PhraseShape, follow: float) -> None:
        self._target = shape.notes_per_group
        self._follow = follow

    def onset(self, group_notes: int) -> float:
        short = self._target - 0.5 - group_notes
        return self._follow * max(-TEXTURE_MAX, min(TEXTURE_MAX, TEXTURE_WEIGHT * short))


class PaceBias:
    """The push on starting the next onset group, and on time shifts, by the time since the
    open group's first note."""

    def __init__(
        self, shape: PhraseShape, follow: float, density: float, shifts_s: np.ndarray
    ) -> None:
        ioi_s = shape.median_ioi_s
        if ioi_s is None:
            ioi_s = 1.0 / shape.groups_per_s if shape.groups_per_s > 0 else DEFAULT_IOI_S
        self.target_s = ioi_s / density
        self._follow = follow
        self._shifts_s = shifts_s
        self._shift_bias = np.zeros(len(shifts_s), np.float64)

    def onset(self, elapsed_s: float) -> float:
        octaves = math.log2(max(elapsed_s, 1e-3) / self.target_s)
        return self._follow * max(-PACE_MAX, min(PACE_MAX, PACE_WEIGHT * octaves))

    def shifts(self, elapsed_s: float) -> np.ndarray:
        """Biases of the time shifts (a view of a reused array)."""
        over = self._shift_bias
        np.add(self._shifts_s, max(elapsed_s, 0.0), out=over)
        over /= self.target_s
        np.log2(over, out=over)
        np.maximum(over, 0.0, out=over)
        np.square(over, out=over)
        over *= -self._follow * OVERSHOOT_WEIGHT
        return over


class DensityBias:
    """The push on starting the next onset group, by the groups played so far against the
    call's density."""

    def __init__(self, shape: PhraseShape, follow: float, density: float) -> None:
        self.groups_per_s = shape.groups_per_s * density
        self._follow = follow

    def onset(self, groups: int, since_first_s: float) -> float:
        expected = 1.0 + self.groups_per_s * max(0.0, since_first_s)
        octaves = math.log2(expected / (groups + 1.0))
        return self._follow * max(-DENSITY_MAX, min(DENSITY_MAX, DENSITY_WEIGHT * octaves))


class FollowBias:
    """Every following bias for one reply, as one logit vector per draw.

    Args:
        call: the call's notes [N, 4] as the player played them (at least one).
        steering: the knobs.
        vocabulary: the model's tokens.
    """

    def __init__(self, call: np.ndarray, steering: Steering, vocabulary: Vocabulary) -> None:
        shape = shape_of(call)
        assert shape is not None, "a call without notes"
        self.shape = shape
        follow = steering.follow
        self.register = RegisterBias(call, shape, follow)
        self.texture = TextureBias(shape, follow)
        self.pace = PaceBias(
            shape, follow, steering.density, np.asarray(vocabulary.time_shifts_s, np.float64)
        )
        self.density = DensityBias(shape, follow, steering.density)
        self._on = slice(vocabulary.note_on_base, vocabulary.note_off_base)
        self._shifts = slice(vocabulary.time_shift_base, vocabulary.velocity_base)
        self._velocities = slice(vocabulary.velocity_base, vocabulary.size)
        self._bias = np.zeros(vocabulary.size, np.float64)

    def bias(self, group: GroupState, now_s: float) -> np.ndarray:
        """The bias for the next draw, ``now_s`` being the drawing's time (a reused array)."""
        bias = self._bias
        group_s, group_notes, groups, first_s = group
        elapsed_s = now_s - group_s
        if group_notes == 0:
            onset, shifts = 0.0, None
        elif elapsed_s <= ONSET_GROUP_S:
            onset, shifts = self.texture.onset(group_notes), None
        else:
            onset = self.pace.onset(elapsed_s) + self.density.onset(groups, now_s - first_s)
            shifts = self.pace.shifts(elapsed_s)
        np.add(self.register.bias, onset, out=bias[self._on])
        bias[self._velocities] = onset
        if shifts is None:
            bias[self._shifts] = 0.0
        else:
            bias[self._shifts] = shifts
        return bias


def after_note_on(group: GroupState, time_s: float) -> GroupState:
    """The onset-group state after a note-on at ``time_s``."""
    group_s, group_notes, groups, first_s = group
    if group_notes > 0 and time_s - group_s <= ONSET_GROUP_S:
        return group_s, group_notes + 1, groups, first_s
    return time_s, 1, groups + 1, first_s if groups else time_s
