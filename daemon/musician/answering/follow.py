"""Following the call: soft pushes on the model's choices toward the call's shape, and the
live steering (a pitch range, a density multiplier, a loudness shift).

The model proposes, the reply logic disposes: nothing here copies or transposes the call or
changes the model. Each piece turns the call's shape
(:mod:`antiphon.daemon.musician.hearing.phrase_shape`, measured on the call as the player played it)
into additive biases on the tempered logits at sampling time, in nats, scaled by the
``follow`` knob (0: no bias at all, the plain draw bit for bit):

- :class:`RegisterBias`: note-ons far from the call's median pitch are pushed down,
  quadratically in (distance / the call's spread), at most ``REGISTER_MAX`` nats
  (``REGISTER_WEIGHT`` at one spread, or what the model file asks for:
  :func:`model_register_weight`);
- :class:`KeyBias`: note-ons outside the call's key (Krumhansl-Schmuckler,
  :mod:`antiphon.daemon.musician.hearing.key`) are pushed down by ``KEY_WEIGHT`` nats, or by what
  the model file asks for (:func:`model_key_weight`);
- :class:`TextureBias`: while an onset group is open (within ``ONSET_GROUP_S`` of its first
  note), another note-on is pushed up while the group has fewer notes than the call's mean
  per group, and down once it has as many (a single-line call gets a single line);
- :class:`PaceBias`: once the group is closed, starting the next one (a note-on or a velocity
  token) is pushed down before the target inter-onset interval and up after it (the log2 of
  elapsed / target, times a weight), and time shifts are pushed toward landing on the target
  (quadratically in octaves; falling short costs as much as overshooting, or one shift would
  be split into many small ones). The target is the call's median inter-onset interval
  divided by the ``density`` multiplier.
- :class:`DensityBias`: over the whole reply, the onset groups played against those the
  call's density (times ``density``) gives for the time since the reply's first note. While
  the reply is behind, starting the next group is pushed up (the log2 of the ratio, times a
  weight). When it is so far ahead that the next group is due more than ``PAUSE_AFTER``
  target intervals on, a pause is due: starting a group is pushed down and time shifts are
  pushed toward the pause's end. A call that plays runs and pauses gets runs and pauses.
- :class:`ArticulationBias`: answering one line (a reply that plays one note at a time),
  toward the call's articulation (:func:`~antiphon.daemon.musician.hearing.motion.articulation`,
  a note's length over the time to the next onset). While the reply's note sounds, releasing
  it is pushed down before the call's articulation times the target interval and up after
  it, and time shifts toward landing there; once it is released, starting the next one is
  pushed down before the time that makes the released note's length over it the call's
  articulation and up after it, and time shifts toward landing there, on top of the pace's
  pushes: the reply is as legato or as detached as the call. It then pauses only when the
  density puts it ``LINE_PAUSE_AFTER`` target intervals ahead: runs and rests, as a line
  plays. Its weight is the model file's (:func:`model_articulation_weight`; none: no push,
  as before).
- :class:`ContourBias`: answering one line, once the reply's line has moved, a note-on that
  turns against its last move is pushed by the log-odds of the call's share of direction
  changes: the reply runs on or zigzags as the call does. Its weight is the model file's
  (:func:`model_contour_weight`; none: no push, as before).

Live steering: :func:`pitch_range_mask` (a hard mask on note-ons outside the range between
``range_low`` and ``range_high``: every reply note lies inside) and ``dynamics`` (velocity
levels added to each reply note as it is played, like a fader: the model hears the velocity
it chose, see :meth:`~antiphon.daemon.musician.answering.shaping.ReplyShaping.loudness`).

:class:`HeardCall` keeps the notes of the call in progress, for the shape.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from antiphon.daemon.codec import PITCHES, Vocabulary
from antiphon.daemon.musician.hearing.key import key_of, scale_of
from antiphon.daemon.musician.hearing.motion import articulation, direction_changes
from antiphon.daemon.musician.hearing.phrase_shape import (
    ONSET_GROUP_S,
    PhraseShape,
    shape_of,
)

REGISTER_WEIGHT = 1.0  # nats at one spread from the call's median pitch, at follow 1
REGISTER_MIN_SPREAD = 4.0  # semitones: a narrow call still leaves the reply some room
REGISTER_MAX = 8.0
KEY_WEIGHT = 2.0  # nats off a note-on outside the call's key, at follow 1
ARTICULATION_MAX = 8.0  # nats on a one-line reply's release or next onset, either way
TEXTURE_WEIGHT = 32.0  # nats per note the open group is short of (or over) the call's
TEXTURE_MAX = 16.0
PACE_WEIGHT = 4.0  # nats per octave of elapsed / target interval
PACE_MAX = 8.0
DENSITY_WEIGHT = 4.0  # nats per octave of expected / played onset groups
DENSITY_MAX = 4.0
PAUSE_AFTER = 2.0  # a pause is due when the density puts the next group this many targets on
# The same for a one-line reply pushed toward the call's articulation: a line plays runs and
# rests, and pausing as soon as it is 2 targets ahead broke its runs into detached pairs
# (validation soloists: articulation distance 0.218 at 2, 0.134 at 4, 0.082 at 8).
LINE_PAUSE_AFTER = 8.0
CONTOUR_SHARE_MAX = 0.9  # the call's share of direction changes, kept within 0.1 to 0.9
# The contour push's correction, in nats per turn the reply's line is short of (or past) the
# call's share so far, at follow 1 (ContourBias). Chosen on the validation soloists: contour
# distance 0.100 at 0, 0.029 at 4, 0.021 at 8, 0.020 at 16 (BENCHMARKS.md, "A voice for
# single-line players").
CONTOUR_GAIN = 8.0
PAUSE_WEIGHT = 1.0  # nats per octave squared a time shift lands from the pause's end
# Nats per octave squared a time shift lands from the target, either way: falling short costs
# as much as overshooting, or the model splits one pause into many tiny shifts.
SHIFT_WEIGHT = 2.0
ELAPSED_FROM_S = 0.001  # the shifts' bias table: elapsed times from 1 ms,
ELAPSED_STEPS_PER_OCTAVE = 16  # 1/16 octave apart,
ELAPSED_ROWS = 16 * 14  # up to 16 s
MAX_CALL_NOTES = 512  # the heard call keeps its last this many notes
PASSAGE_BREAK_S = 1.0  # a silence this long starts a new call (the "real ends" of a phrase)
DEFAULT_IOI_S = 0.25  # the target interval of a one-chord call with no density to go by

# A one-line reply's line: its last pitch (-1: none yet), the sign of its last move (0: none),
# how many times it has moved and how many of those moves turned against the one before.
LineState = tuple[int, int, int, int]
NO_LINE: LineState = (-1, 0, 0, 0)
# (the open onset group's first note time, its notes, the reply's groups, its first note time)
GroupState = tuple[float, int, int, float]
NO_GROUP: GroupState = (-math.inf, 0, 0, -math.inf)


class HeardCall:
    """The notes of the call in progress, as the player played them: every note since the
    last silence of ``PASSAGE_BREAK_S`` or more with no note sounding (bounded: the last
    ``MAX_CALL_NOTES``), whatever the phrase gap that ended the call, so a call with short
    pauses inside is followed whole. Fed by the performer's thread; :meth:`notes` gives the
    notes still sounding an end at the time asked."""

    def __init__(self, capacity: int = MAX_CALL_NOTES) -> None:
        self._notes = np.zeros((capacity, 4), np.float64)
        self._count = 0
        self._next = 0
        self._sounding: dict[int, int] = {}  # pitch -> row
        self._silent_since_s = -math.inf

    def clear(self) -> None:
        self._count = 0
        self._next = 0
        self._sounding.clear()

    def note_on(self, pitch: int, velocity: int, time_s: float) -> None:
        if not self._sounding and time_s - self._silent_since_s >= PASSAGE_BREAK_S:
            self.clear()  # a new passage
        row = self._next
        self._notes[row] = (pitch, time_s, math.inf, velocity)
        self._sounding[pitch] = row
        self._next = (row + 1) % len(self._notes)
        self._count = min(self._count + 1, len(self._notes))

    def note_off(self, pitch: int, time_s: float) -> None:
        row = self._sounding.pop(pitch, None)
        if row is not None and self._notes[row, 0] == pitch:
            self._notes[row, 2] = time_s
        if not self._sounding:
            self._silent_since_s = time_s

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
    key_weight: float = KEY_WEIGHT  # or what the model file asks for (model_key_weight)
    articulation_weight: float = 0.0  # what the model file asks for (model_articulation_weight)
    contour_weight: float = 0.0  # what the model file asks for (model_contour_weight)
    register_weight: float = REGISTER_WEIGHT  # or what the model file asks for

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

    def __init__(
        self,
        notes: np.ndarray,
        shape: PhraseShape,
        follow: float,
        weight: float = REGISTER_WEIGHT,
    ) -> None:
        low, high = np.percentile(notes[:, 0], [10, 90])
        spread = max(REGISTER_MIN_SPREAD, float(high - low) / 2.0)
        distance = (np.arange(PITCHES) - shape.median_pitch) / spread
        self.bias = np.maximum(-REGISTER_MAX, -weight * follow * np.square(distance))


def _model_weight(training: Mapping[str, Any], name: str, default: float) -> float:
    """A weight the model file's training facts give (``follow.<name>``, a number of 0 or
    more), else ``default``."""
    follow = training.get("follow")
    if isinstance(follow, Mapping):
        weight = follow.get(name)
        if isinstance(weight, int | float) and math.isfinite(weight) and weight >= 0:
            return float(weight)
    return default


def model_key_weight(training: Mapping[str, Any]) -> float:
    """How many nats (at follow 1) a model's note-ons outside the call's key are pushed down:
    what its file's training facts say (``follow.key_weight``; the single-line model, trained
    on chromatic jazz lines, asks for less, tuned on its validation soloists), else
    ``KEY_WEIGHT``."""
    return _model_weight(training, "key_weight", KEY_WEIGHT)


def model_register_weight(training: Mapping[str, Any]) -> float:
    """How many nats (at follow 1, one spread from the call's median pitch) a model's
    note-ons are pushed toward the call's register: what its file's training facts say
    (``follow.register_weight``; the single-line model asks for less, tuned on its
    validation soloists: its replies hugged the call's median and turned back more often
    than the players), else ``REGISTER_WEIGHT``."""
    return _model_weight(training, "register_weight", REGISTER_WEIGHT)


def model_contour_weight(training: Mapping[str, Any]) -> float:
    """How hard (at follow 1) a one-line reply's turns are pushed toward the call's share of
    direction changes: what the model file's training facts say (``follow.contour_weight``;
    tuned on the single-line model's validation soloists), else 0: no push."""
    return _model_weight(training, "contour_weight", 0.0)


def model_articulation_weight(training: Mapping[str, Any]) -> float:
    """How many nats per octave (at follow 1) a one-line reply's releases are pushed toward
    the call's articulation: what the model file's training facts say
    (``follow.articulation_weight``; tuned on the single-line model's validation soloists),
    else 0: no push, the reply released as the model chooses."""
    return _model_weight(training, "articulation_weight", 0.0)


class KeyBias:
    """Note-on biases [128]: pitches outside the call's key pushed down."""

    def __init__(self, notes: np.ndarray, follow: float, weight: float = KEY_WEIGHT) -> None:
        scale = scale_of(*key_of(notes))
        outside = np.asarray([p % 12 not in scale for p in range(PITCHES)])
        self.bias = np.where(outside, -weight * follow, 0.0)


class TextureBias:
    """The push on another note-on while an onset group is open."""

    def __init__(self, shape: PhraseShape, follow: float) -> None:
        self._target = shape.notes_per_group
        self._follow = follow

    def onset(self, group_notes: int) -> float:
        short = self._target - 0.5 - group_notes
        return self._follow * max(-TEXTURE_MAX, min(TEXTURE_MAX, TEXTURE_WEIGHT * short))


def log_push(elapsed_s: float, target_s: float, weight: float, most: float) -> float:
    """``weight`` nats per octave that ``elapsed_s`` lies past ``target_s`` (below it: a push
    down), within +-``most``."""
    push = weight * math.log2(max(elapsed_s, 1e-3) / target_s)
    return max(-most, min(most, push))


def shift_table(shifts_s: np.ndarray, target_s: float, weight: float) -> np.ndarray:
    """The time shifts' biases toward landing ``target_s`` after a start (``weight`` nats
    per octave squared off it), one row per elapsed time since the start (1/16 octave
    steps from ``ELAPSED_FROM_S``, see :func:`shift_row`): a draw looks its row up instead
    of computing it."""
    elapsed = ELAPSED_FROM_S * 2.0 ** (np.arange(ELAPSED_ROWS) / ELAPSED_STEPS_PER_OCTAVE)
    octaves = np.log2((shifts_s[None, :] + elapsed[:, None]) / target_s)
    return -weight * np.square(octaves)


def shifts_toward(
    out: np.ndarray, shifts_s: np.ndarray, elapsed_s: float, target_s: float, weight: float
) -> np.ndarray:
    """Fill ``out`` with the time shifts' biases toward landing ``target_s`` after a start
    ``elapsed_s`` ago (``weight`` nats per octave squared off it), as a row of
    :func:`shift_table` but for any elapsed time and target; returns ``out``."""
    np.add(shifts_s, max(elapsed_s, 0.0), out=out)
    out /= target_s
    np.log2(out, out=out)
    np.square(out, out=out)
    out *= -weight
    return out


def shift_row(elapsed_s: float) -> int:
    """The row of :func:`shift_table` for ``elapsed_s`` since the start."""
    steps = math.log2(max(elapsed_s, ELAPSED_FROM_S) / ELAPSED_FROM_S)
    return min(ELAPSED_ROWS - 1, round(steps * ELAPSED_STEPS_PER_OCTAVE))


class PaceBias:
    """The push on starting the next onset group, and on time shifts, by the time since the
    open group's first note."""

    def __init__(
        self,
        shape: PhraseShape,
        follow: float,
        density: float,
        shifts_s: np.ndarray,
    ) -> None:
        ioi_s = shape.median_ioi_s
        if ioi_s is None:
            ioi_s = 1.0 / shape.groups_per_s if shape.groups_per_s > 0 else DEFAULT_IOI_S
        self.target_s = ioi_s / density
        self._follow = follow
        self._shifts_s = shifts_s
        self._shift_bias = np.zeros(len(shifts_s), np.float64)
        self._table = shift_table(shifts_s, self.target_s, follow * SHIFT_WEIGHT)

    def onset(self, elapsed_s: float) -> float:
        return self._follow * log_push(elapsed_s, self.target_s, PACE_WEIGHT, PACE_MAX)

    def shifts(self, elapsed_s: float, pause_s: float | None = None) -> np.ndarray:
        """Biases of the time shifts (a view of a reused array): by how far (in octaves,
        squared) each would land from the target interval after the open group's first note,
        or, with ``pause_s`` (a pause is due), from that long after it."""
        if pause_s is None:
            return self._table[shift_row(elapsed_s)]
        weight = self._follow * PAUSE_WEIGHT
        return shifts_toward(self._shift_bias, self._shifts_s, elapsed_s, pause_s, weight)


class ArticulationBias:
    """A one-line reply's pushes toward the call's articulation: while its note sounds, on
    releasing it and on time shifts, toward a length of the call's articulation times the
    target interval; once it is released, on starting the next one and on time shifts,
    toward the onset that makes the released note's length over the interval the call's
    articulation.

    Args:
        call_articulation: the call's articulation
            (:func:`~antiphon.daemon.musician.hearing.motion.articulation`).
        target_ioi_s: the target interval between onsets (:class:`PaceBias`'s).
        follow: the knob.
        weight: nats per octave of elapsed / target time, at follow 1; the shifts get half
            of it per octave squared (as the pace's).
        shifts_s: the vocabulary's time shifts.
    """

    def __init__(
        self,
        call_articulation: float,
        target_ioi_s: float,
        follow: float,
        weight: float,
        shifts_s: np.ndarray,
    ) -> None:
        self._articulation = call_articulation
        self._weight = follow * weight
        self._shifts_s = shifts_s
        self._shift_bias = np.zeros(len(shifts_s), np.float64)
        self.length_s = max(ELAPSED_FROM_S, call_articulation * target_ioi_s)
        self._hold_table = shift_table(shifts_s, self.length_s, 0.5 * self._weight)

    def release(self, elapsed_s: float) -> float:
        """The push on releasing the note sounding since ``elapsed_s``."""
        return log_push(elapsed_s, self.length_s, self._weight, ARTICULATION_MAX)

    def hold_shifts(self, elapsed_s: float) -> np.ndarray:
        """The time shifts' biases (a row of a table) toward the sounding note's target
        length."""
        return self._hold_table[shift_row(elapsed_s)]

    def target_s(self, length_s: float) -> float:
        """The interval after a note of ``length_s`` that gives the call's articulation."""
        return max(ELAPSED_FROM_S, length_s / self._articulation)

    def onset(self, elapsed_s: float, length_s: float) -> float:
        """The push on starting the next note ``elapsed_s`` after the onset of the released
        note of ``length_s``."""
        return log_push(elapsed_s, self.target_s(length_s), self._weight, ARTICULATION_MAX)

    def add_shifts(self, shifts: np.ndarray, elapsed_s: float, length_s: float) -> None:
        """Add to ``shifts`` (in place) the push of each time shift toward landing on the
        target interval (in octaves, squared)."""
        target_s = self.target_s(length_s)
        weight = 0.5 * self._weight
        shifts += shifts_toward(self._shift_bias, self._shifts_s, elapsed_s, target_s, weight)


class ContourBias:
    """A one-line reply's push on turning: once its line has moved, note-ons that turn
    against the last move get ``weight`` times the log-odds of the call's share of direction
    changes (:func:`~antiphon.daemon.musician.hearing.motion.direction_changes`): down after
    a call that runs on, up after one that zigzags, nothing after one that turns half the
    time. Then a correction by the line so far, ``gain`` nats per turn it is short of the
    call's share (or past it): drawn turn by turn with a fixed push, a short reply's share
    strays from the call's by chance; kept to it, it strays less.

    Args:
        call_changes: the call's share of direction changes.
        follow: the knob.
        weight: the share of the log-odds pushed, at follow 1.
        gain: the correction at follow 1 (0: none).
    """

    def __init__(self, call_changes: float, follow: float, weight: float, gain: float) -> None:
        share = min(CONTOUR_SHARE_MAX, max(1.0 - CONTOUR_SHARE_MAX, call_changes))
        self.turn = follow * weight * math.log(share / (1.0 - share))
        # The correction's target, kept within bounds too: held to a share of 0, a line could
        # only run on or repeat its note.
        self._share = share
        self._gain = follow * gain

    def add(self, on_bias: np.ndarray, line: LineState) -> None:
        """Add the push to the note-ons' biases (in place), after the line's last move."""
        pitch, direction, moves, turns = line
        turn = self.turn
        if self._gain and moves:
            # Turning now is nearer the call's share if it leaves the turns so far (out of
            # the moves after the first) nearer that share of the moves made by then.
            turn += self._gain * (self._share * moves - turns - 0.5)
        if direction > 0:
            on_bias[:pitch] += turn
        elif direction < 0:
            on_bias[pitch + 1 :] += turn


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

    def due_s(self, groups: int, first_s: float) -> float:
        """When the next group is due by the density (on the reply's clock)."""
        return first_s + groups / self.groups_per_s if self.groups_per_s > 0 else first_s


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
        self.register = RegisterBias(call, shape, follow, steering.register_weight)
        self.key = KeyBias(call, follow, steering.key_weight)
        self._pitch_bias = self.register.bias + self.key.bias
        self.texture = TextureBias(shape, follow)
        self.pace = PaceBias(
            shape,
            follow,
            steering.density,
            np.asarray(vocabulary.time_shifts_s, np.float64),
        )
        self.density = DensityBias(shape, follow, steering.density)
        call_articulation = articulation(call) if steering.articulation_weight > 0 else None
        self.articulation = (
            None
            if not call_articulation
            else ArticulationBias(
                call_articulation,
                self.pace.target_s,
                follow,
                steering.articulation_weight,
                np.asarray(vocabulary.time_shifts_s, np.float64),
            )
        )
        call_changes = direction_changes(call) if steering.contour_weight > 0 else None
        self.contour = (
            None
            if call_changes is None
            else ContourBias(call_changes, follow, steering.contour_weight, CONTOUR_GAIN)
        )
        self._bias = np.zeros(vocabulary.size, np.float64)
        # Views of the bias by kind, made once: a draw fills them in place.
        self._on_bias = self._bias[vocabulary.note_on_base : vocabulary.note_off_base]
        self._off_bias = self._bias[vocabulary.note_off_base : vocabulary.time_shift_base]
        self._shift_bias = self._bias[vocabulary.time_shift_base : vocabulary.velocity_base]
        self._velocity_bias = self._bias[vocabulary.velocity_base :]
        self._last_group: GroupState | None = None
        self._last_s = math.nan
        self._last_released_s: float | None = None
        self._last_line = NO_LINE
        self._holding = False

    def bias(
        self,
        group: GroupState,
        now_s: float,
        released_s: float | None = None,
        line: LineState = NO_LINE,
    ) -> np.ndarray:
        """The bias for the next draw, ``now_s`` being the drawing's time, ``released_s``
        when a one-line reply last released its note (-inf: not yet; None: not answering one
        line) and ``line`` its line so far (a reused array, the same as last time when
        nothing changed: after a note-off or a velocity token)."""
        bias = self._bias
        if (
            group == self._last_group
            and now_s == self._last_s
            and released_s == self._last_released_s
            and line == self._last_line
        ):
            return bias
        self._last_group, self._last_s = group, now_s
        self._last_released_s, self._last_line = released_s, line
        group_s, group_notes, groups, first_s = group
        elapsed_s = now_s - group_s
        if self._holding:
            self._off_bias.fill(0.0)
        one_line = released_s is not None
        articulation = self.articulation if one_line else None
        contour = self.contour if one_line else None
        released_s = -math.inf if released_s is None else released_s
        self._holding = articulation is not None and group_notes > 0 and released_s < group_s
        if self._holding and articulation is not None:
            # A one-line reply's note sounds (note-ons and velocities are masked): only its
            # release and the time until it are drawn.
            self._off_bias.fill(articulation.release(elapsed_s))
            np.copyto(self._shift_bias, articulation.hold_shifts(elapsed_s))
            return bias
        pausing = False
        if group_notes == 0:
            onset, shifts = 0.0, None
        elif elapsed_s <= ONSET_GROUP_S:
            # Still in the group: another note thickens it; a time shift still counts
            # toward the next group.
            onset = self.texture.onset(group_notes)
            shifts = self.pace.shifts(elapsed_s)
        else:
            density = self.density.onset(groups, now_s - first_s)
            pause_s = self.density.due_s(groups, first_s) - group_s
            pause_after = PAUSE_AFTER if articulation is None else LINE_PAUSE_AFTER
            pausing = pause_s > pause_after * self.pace.target_s  # ahead of the density
            if pausing:
                onset, shifts = density, self.pace.shifts(elapsed_s, pause_s)
            else:
                onset = self.pace.onset(elapsed_s) + max(0.0, density)
                shifts = self.pace.shifts(elapsed_s)
        # A one-line reply's note released in the group (not in a pause): the next onset
        # is pushed toward the call's articulation too.
        length_s = released_s - group_s
        articulated = articulation if not pausing and 0 < length_s < math.inf else None
        if articulated is not None:
            onset += articulated.onset(elapsed_s, length_s)
        np.add(self._pitch_bias, onset, out=self._on_bias)
        if contour is not None:
            contour.add(self._on_bias, line)
        self._velocity_bias.fill(onset)
        if shifts is None:
            self._shift_bias.fill(0.0)
        else:
            np.copyto(self._shift_bias, shifts)
            if articulated is not None:
                articulated.add_shifts(self._shift_bias, elapsed_s, length_s)
        return bias


def after_note_on(group: GroupState, time_s: float) -> GroupState:
    """The onset-group state after a note-on at ``time_s``."""
    group_s, group_notes, groups, first_s = group
    if group_notes > 0 and time_s - group_s <= ONSET_GROUP_S:
        return group_s, group_notes + 1, groups, first_s
    return time_s, 1, groups + 1, first_s if groups else time_s
