"""The duet: a part of Antiphon's own, played while the player plays (``mode`` duet or both).

The model proposes, the duet disposes. The part is a
:class:`~antiphon.daemon.musician.answering.reply.Reply` that accompanies (its first note may wait,
a
draw with no event rests): every event of the player enters the recurrent state as it
arrives and rolls back what the part had drawn ahead (a time shift the model sampled past
the player's next event is cut there, and drawn again from what was heard), and between the
player's events the part draws its own, with these pushes (:class:`DuetShaping`):

- its register, one side of ``duet_split`` (``duet_register`` below: the pitches under it;
  above: the split and over). The model knows the whole piano, both hands: while the player
  plays it draws from every pitch, and a note it draws outside the register means the player
  goes next, so the part waits (until the time the model put it at, at least
  :data:`~antiphon.daemon.musician.answering.reply.PLAYER_WAIT_S`) and draws again from what it
  hears
  meanwhile. Masking the other side instead turned every melody note the model expected
  into a note of the part (12 times the human part's onsets on validation pieces). Once the
  player has stopped, the register is a mask;
- its density: a logit bias of ``ln(duet_density)`` on the note-ons of its register and of
  ``-ln(duet_density)`` on the player's (above 1 the part plays more of the events the model
  draws and waits for the player less, below 1 the other way round);
- its harmony: note-ons whose pitch class is neither in the key of the player's notes of the
  last ``HARMONY_WINDOW_S`` nor among the pitch classes the player just struck pushed down by
  ``HARMONY_PUSH`` (:class:`PlayerHarmony`);
- its loudness: relative to the player's recent velocity, ``duet_velocity`` times it, with
  half of the model's own accent kept (:func:`duet_loudness`);
- its pulse: note-ons pulled onto the player's beat grid with ``groove``: the beat in force
  (``clock``), else the tracker's best guess however unsure (``DUET_CONFIDENT``; a reply
  needs a sure beat, the part plays along with the player), taken again at a player's onset
  at most every ``REGRID_EVERY_S``, in eighths or triplets (:func:`part_grid`). The grid's
  phase is the player's: at each of the player's onsets it is moved so that the onset is on
  it (:func:`player_phase`), as a second player counts from the first one's notes rather than
  from a beat of their own. On validation pieces this raised the part's pulse from 0.64 to
  0.95 of the human part's: most of a left hand's pulse is its notes struck with the right
  hand's, and the tracker's phase, a few ms off the player's note, pushed those a unit late;
- its note lengths, bounded by its own pulse and onsets: a note sounds at most
  ``NOTE_BEATS`` beats of its grid, and ends when the part strikes its ``HELD_ONSETS``-th
  onset group after it (a note may ring under the next one, not further). The model hears
  the player's events between its own, so it draws its own note-offs seldom, and without these
  bounds a fifth of the part's notes were held to ``max_note_s``.

When the player stops (the call is found over), the part ends at the end of the bar the
player stopped in, or ``carry_bars`` bars after it (:func:`duet_end_s`); with ``mode`` both
it stops at once and the phrase answer takes the gap. The player's next note carries it on.

Everything here runs on the performer's thread.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import replace

import numpy as np
from antiphon.daemon.codec import PITCHES, Vocabulary
from antiphon.daemon.musician.answering.follow import Steering
from antiphon.daemon.musician.answering.memory import PlayerMemory
from antiphon.daemon.musician.answering.reply import Reply
from antiphon.daemon.musician.answering.shaping import ReplyShaping, ShapingState
from antiphon.daemon.musician.hearing.beat import BeatGrid, choose_subdivision
from antiphon.daemon.musician.hearing.key import key_of, scale_of
from antiphon.daemon.musician.model.conversation import Conversation
from antiphon.daemon.surface.parameters import Parameters

DUET_MODES = ("duet", "both")  # the modes that play a duet part
# The parameters a duet part's draws are pushed by: a change reshapes the part playing.
DUET_KNOBS = ("duet_split", "duet_register", "duet_density", "duet_velocity", "groove")
PART_NOTES = 1_000_000  # a duet part has no note budget: it plays while the player does
PART_MAX_S = 3600.0  # nor a time bound, short of an hour (then a new part starts)
FREE_BAR_S = 2.0  # a bar's length for carry_bars when no beat is known
DUET_CONFIDENT = 0.0  # the beat tracker's confidence from which the part keeps its beat
FINEST_SUBDIVISION = 2  # a part under a player in sixteenths is pulled onto these
REGRID_EVERY_S = 0.5  # the part takes the beat again at a player's onset at most this often
ONSETS_KEPT = 32  # the player's latest onsets, for the subdivision the part keeps
HARMONY_WINDOW_S = 10.0  # the player's notes the key of the moment is heard in
HARMONY_NOTES_KEPT = 64
JUST_STRUCK_S = 1.0  # pitch classes struck this recently are in the harmony, key or not
HARMONY_PUSH = 1.0  # logit push down on a note-on outside the player's harmony
LOUDNESS_SMOOTHING = 0.25  # the share of each note-on's velocity in the player's loudness
ACCENT_KEPT = 0.5  # the share of the model's own velocity accent a duet note keeps
NOTE_BEATS = 2.0  # a part's note sounds at most this many beats of its grid
HELD_ONSETS = 2  # a part's note ends at the part's this-many-th onset group after it
REACTIONS_KEPT = 4096  # the latest reaction times a part's report is made of


def register_mask(split: int, register: str) -> np.ndarray:
    """bool [128]: the pitches the duet part may start, on its side of ``split``: below, the
    pitches under ``split``; above, ``split`` and over."""
    pitches = np.arange(PITCHES)
    return pitches < split if register == "below" else pitches >= split


def density_bias(vocabulary: Vocabulary, register: np.ndarray, duet_density: float) -> np.ndarray:
    """Logit bias [V]: ``ln(duet_density)`` on the note-ons of ``register`` (bool [128]),
    ``-ln(duet_density)`` on the other note-ons, 0 elsewhere."""
    bias = np.zeros(vocabulary.size, np.float64)
    push = math.log(duet_density)
    bias[: vocabulary.note_off_base] = np.where(register, push, -push)
    return bias


def duet_loudness(model_velocity: int, player_velocity: float, duet_velocity: float) -> int:
    """The MIDI velocity of a duet note: ``duet_velocity`` times the player's recent velocity,
    with ``ACCENT_KEPT`` of the model's own difference from it; 1 to 127."""
    target = duet_velocity * player_velocity
    accent = ACCENT_KEPT * (model_velocity - player_velocity)
    return max(1, min(127, round(target + accent)))


def duet_end_s(stopped_s: float, now_s: float, grid: BeatGrid | None, carry_bars: int) -> float:
    """When a duet part ends, its player having stopped at ``stopped_s`` (the last sound),
    found at ``now_s``: the end of that bar plus ``carry_bars`` bars (without a beat, bars of
    ``FREE_BAR_S``); never before ``now_s``."""
    if grid is None:
        return max(now_s, stopped_s + carry_bars * FREE_BAR_S)
    bar_s = grid.beat_s * grid.beats_per_bar
    return max(now_s, grid.next_bar_s(stopped_s) + carry_bars * bar_s)


class PlayerLoudness:
    """The player's recent velocity: an exponential average of the note-ons."""

    def __init__(self, start: float = 64.0) -> None:
        self.velocity = start

    def note_on(self, velocity: int) -> None:
        self.velocity += LOUDNESS_SMOOTHING * (velocity - self.velocity)


class PlayerHarmony:
    """The harmony of the player's playing: the key of the recent notes and the pitch
    classes just struck, as a logit push on the note-ons outside it (cached, made again
    when a draw asks after the player struck a note)."""

    def __init__(self) -> None:
        self._struck: deque[tuple[int, float]] = deque(maxlen=HARMONY_NOTES_KEPT)
        self._bias = np.zeros(PITCHES, np.float64)
        self._stale = False

    def note_on(self, pitch: int, time_s: float) -> None:
        self._struck.append((pitch, time_s))
        self._stale = True

    def bias(self) -> np.ndarray:
        """Logit bias [128] of the note-ons: ``-HARMONY_PUSH`` outside the harmony."""
        if self._stale:
            self._stale = False
            self._bias[:] = 0.0
            if self._struck:
                last_s = self._struck[-1][1]
                recent = [(p, t) for p, t in self._struck if t > last_s - HARMONY_WINDOW_S]
                notes = np.asarray([(p, t, t + 1.0, 0) for p, t in recent], np.float64)
                inside = set(scale_of(*key_of(notes)))
                inside |= {p % 12 for p, t in recent if t > last_s - JUST_STRUCK_S}
                outside = np.asarray([p % 12 not in inside for p in range(PITCHES)])
                self._bias[outside] = -HARMONY_PUSH
        return self._bias


class DuetShaping(ReplyShaping):
    """The pushes on a duet part's draws: its register, density and loudness (see the
    module docstring). Nothing follows a call: the part hears the player instead."""

    def __init__(
        self,
        vocabulary: Vocabulary,
        memory: PlayerMemory,
        loudness: PlayerLoudness,
        harmony: PlayerHarmony,
        *,
        split: int,
        register: str,
        density: float,
        velocity: float,
    ) -> None:
        # A reply's shaping with every push off (nothing to follow, no memory, no range),
        # then the part's register.
        super().__init__(np.zeros((0, 4)), Steering(), 0.0, memory, vocabulary)
        self.pitch_allowed = register_mask(split, register)
        self._density = density_bias(vocabulary, self.pitch_allowed, density)
        self._harmony = harmony
        self._sum = np.zeros(vocabulary.size, np.float64)
        self._player = loudness
        self._velocity = velocity

    def bias(self, state: ShapingState, now_s: float) -> np.ndarray | None:
        total = self._sum
        total[:] = self._density
        total[:PITCHES] += self._harmony.bias()
        return total

    def loudness(self, velocity: int) -> int:
        return duet_loudness(velocity, self._player.velocity, self._velocity)


def duet_grid_guess(estimate: BeatGrid | None) -> BeatGrid | None:
    """The tracker's best guess of the player's beat, when it is sure enough for a duet part
    to keep (``DUET_CONFIDENT``, below what a reply needs: the part plays with the player,
    who keeps it on the beat as it goes)."""
    if estimate is None or estimate.confidence < DUET_CONFIDENT:
        return None
    return estimate


def part_grid(grid: BeatGrid | None, onsets_s: list[float], start_s: float) -> BeatGrid | None:
    """The grid a duet part keeps: ``grid`` (the beat in force) with the subdivision the
    player's recent onsets use, and bars counted from the part's start when the clock gives
    none."""
    if grid is None:
        return None
    subdivision = choose_subdivision(onsets_s, grid.beat_s, grid.anchor_s)
    if subdivision == 4:
        subdivision = FINEST_SUBDIVISION
    bar_anchor_s = grid.bar_anchor_s
    if bar_anchor_s is None:
        bar_anchor_s = grid.next_beat_s(start_s - grid.beat_s / 2)
    return replace(grid, subdivision=subdivision, bar_anchor_s=bar_anchor_s)


def player_phase(grid: BeatGrid, onset_s: float) -> BeatGrid:
    """``grid`` moved (by less than half a unit) so that the player's onset at ``onset_s`` is
    on one of its subdivision points; a DAW's clock (``source`` other than the player) is
    kept as it is: the player follows it."""
    if grid.source != "player":
        return grid
    unit_s = grid.unit_s
    units = (onset_s - grid.anchor_s) / unit_s
    shift_s = (units - round(units)) * unit_s
    if shift_s == 0.0:
        return grid
    bar_anchor_s = None if grid.bar_anchor_s is None else grid.bar_anchor_s + shift_s
    return replace(grid, anchor_s=grid.anchor_s + shift_s, bar_anchor_s=bar_anchor_s)


class ReactionTimes:
    """How long each of the player's note-ons took to enter the model's state while playing
    along (the duet's reaction), the latest ``REACTIONS_KEPT``, for a part's report line."""

    def __init__(self) -> None:
        self._seconds = np.zeros(REACTIONS_KEPT)
        self._count = 0

    def add(self, seconds: float) -> None:
        self._seconds[self._count % REACTIONS_KEPT] = seconds
        self._count += 1

    def summary_ms(self) -> tuple[int, float, float, float]:
        """How many were timed, and the p50, p99 and largest of those kept, in ms (nan if
        none)."""
        kept = 1000.0 * self._seconds[: min(self._count, REACTIONS_KEPT)]
        if len(kept) == 0:
            return 0, math.nan, math.nan, math.nan
        p50, p99 = np.percentile(kept, [50, 99])
        return self._count, float(p50), float(p99), float(kept.max())

    def clear(self) -> None:
        self._count = 0


class DuetPlayer:
    """What the performer keeps for the duet: the part playing (None between parts), the
    player's loudness and recent onsets."""

    def __init__(self) -> None:
        self.part: Reply | None = None
        self.loudness = PlayerLoudness()
        self.harmony = PlayerHarmony()
        self._onsets: deque[float] = deque(maxlen=ONSETS_KEPT)
        self._grid: BeatGrid | None = None
        self._beat_taken_s = -math.inf
        self._max_note_s = math.inf  # the part's longest note without a grid
        self.parts = 0  # parts started, for the status
        self.reactions = ReactionTimes()  # of the note-ons heard since the last part ended

    def hear(self, pitch: int, velocity: int, time_s: float) -> None:
        """The player's note-on (the part playing, if any, rewound by it): the part's grid
        takes its phase."""
        self.loudness.note_on(velocity)
        self._onsets.append(time_s)
        self.harmony.note_on(pitch, time_s)
        part, grid = self.part, self._grid
        if part is not None and grid is not None:
            self._grid = player_phase(grid, time_s)
            part.rephase(self._grid)

    def start(
        self,
        conversation: Conversation,
        memory: PlayerMemory,
        now_s: float,
        params: Parameters,
        clock: Callable[[], float],
    ) -> Reply:
        """A new part from ``now_s`` (the player's note-on just heard) with ``params``' duet
        knobs, its grid to come (:meth:`follow_beat`); ``clock`` is the performer's (a note
        is planned no earlier than its draw is done)."""
        shaping = self._shaping(conversation, memory, params)
        self._grid = None
        self._beat_taken_s = -math.inf
        self._max_note_s = params.max_note_s
        self.part = Reply(
            conversation,
            start_s=now_s,
            phrase_end_s=now_s,
            notes=PART_NOTES,
            max_s=PART_MAX_S,
            channel=params.duet_output_channel - 1,
            max_note_s=params.max_note_s,
            shaping=shaping,
            groove=params.groove,
            accompanying=True,
            held_onsets=HELD_ONSETS,
            clock=clock,
        )
        self.parts += 1
        return self.part

    def reshape(self, conversation: Conversation, memory: PlayerMemory, params: Parameters) -> None:
        """The duet's knobs changed: the part playing draws on with them (its channel stays
        until the next part, so that its notes end where they began)."""
        part = self.part
        if part is None:
            return
        part.reshape(self._shaping(conversation, memory, params))
        part.regrid(self._grid, params.groove)

    def _shaping(
        self, conversation: Conversation, memory: PlayerMemory, params: Parameters
    ) -> DuetShaping:
        """The pushes on the part's draws, from ``params``' duet knobs."""
        return DuetShaping(
            conversation.vocabulary,
            memory,
            self.loudness,
            self.harmony,
            split=params.duet_split,
            register=params.duet_register,
            density=params.duet_density,
            velocity=params.duet_velocity,
        )

    def beat_due(self, time_s: float) -> bool:
        """Whether the part should take the beat again at the player's onset at ``time_s``
        (at most every ``REGRID_EVERY_S``: asking the tracker costs more than the rest of a
        player's event, and a tempo moves slower than that)."""
        if self.part is None or time_s - self._beat_taken_s < REGRID_EVERY_S:
            return False
        self._beat_taken_s = time_s
        return True

    def follow_beat(self, grid: BeatGrid | None) -> None:
        """The beat in force now (at a player's onset, just heard): the part keeps it from
        its next event, with the subdivision the player uses, at the player's phase, and its
        notes no longer than ``NOTE_BEATS`` of it."""
        part = self.part
        if part is None:
            return
        placed = part_grid(grid, list(self._onsets), part.start_s)
        if placed is not None and self._onsets:
            placed = player_phase(placed, self._onsets[-1])
        if placed != self._grid:
            self._grid = placed
            part.regrid(placed)
            longest_s = self._max_note_s
            if placed is not None:
                longest_s = min(longest_s, NOTE_BEATS * placed.beat_s)
            part.limit_notes(longest_s, self._onsets[-1] if self._onsets else part.start_s)

    @property
    def grid(self) -> BeatGrid | None:
        """The grid the part keeps (None: free timing)."""
        return self._grid
