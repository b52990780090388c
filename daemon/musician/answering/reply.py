"""One reply, drawn ahead of time and played on the performer's clock.

Events are drawn before they are due, so that when one is due the performer only sends it:
:meth:`Reply.draw_ahead` keeps at least the next event drawn, and with it every event due
within ``LOOKAHEAD_S`` of that one (the notes of a chord then leave back to back), up to
``MAX_DRAWN_AHEAD`` events. Drawing an event samples its tokens and feeds them (the engine
needs them to go on), so before each event the reply takes a :class:`_Mark`: the engine's
state and both random streams. Drawn events that were not played are rolled back out of the
state together, to the mark of the first of them, when something else happens first: the
player plays, a note reaches its maximum length, the reply is stopped. With the random
streams rolled back too, what a reply plays does not depend on how far ahead it was drawn.

A reply can also be made before its call is over (the performer does so a few ms before the
deadline, see :mod:`antiphon.daemon.musician.answering.speculation`) and, as long as it has
played nothing, withdrawn (:meth:`Reply.withdraw`): the pause it fed and the events it drew
leave no trace.

How a reply is shaped (the mask of tokens the engine may sample):

- The first note sounds at once: until the first note-on, time shifts (and note-offs) are
  masked, so the model can only choose a velocity and a pitch. The pause since the call's
  last sound has already been fed as time shifts, so the model knows where it is.
- Note-offs are only allowed for pitches the reply has sounding (no stray note-offs).
- After the note budget (:func:`~antiphon.daemon.musician.hearing.phrase.reply_length_bounds`),
note-ons and
  velocities are masked: the model may only release its notes and wait. Notes still sounding
  ``RELEASE_GRACE_S`` after the last note-on are released by force, as is everything at the
  reply's time bound. A note sounding ``max_note_s`` is released by force at once.
- Every note Antiphon ends itself is fed to the model as a note-off at the time it happened,
  once its note-off has been sent (:meth:`Reply.settle`), so feeding does not delay sending.
- An optional :class:`~antiphon.daemon.musician.answering.shaping.ReplyShaping` pushes each draw
  (following the call, the pitch range as a mask on note-ons, the loudness shift, the
  player's memory); without one, the draws are the model's alone.

Times are in seconds on the performer's clock. A reply event planned at decoded time ``C``
plays at ``start_s + (C - C0)``, where ``C0`` is the stream's clock at the start.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import mido
import numpy as np
from antiphon.daemon.codec import TokenWriter
from antiphon.daemon.midi.notes import SoundingNotes
from antiphon.daemon.musician.answering.follow import NO_GROUP, GroupState, after_note_on
from antiphon.daemon.musician.answering.shaping import ReplyShaping, ShapingState
from antiphon.daemon.musician.hearing.beat import BeatGrid
from antiphon.daemon.musician.hearing.phrase_shape import ONSET_GROUP_S
from antiphon.daemon.musician.model.conversation import Conversation
from antiphon.daemon.musician.model.engine import Engine, EngineState
from antiphon.daemon.musician.playing.groove import GridPlacer

RELEASE_GRACE_S = 1.5  # after the last note-on, time the model has to release its notes
MAX_TOKENS_PER_EVENT = 32  # a model that emits this many tokens without an event is stopped
# Drawing an event takes a few engine steps (about 1 ms, several on a busy machine): events
# due within this of the next one are drawn before it is sent, so none waits for a drawing.
LOOKAHEAD_S = 0.010
MAX_DRAWN_AHEAD = 8  # bounds the work thrown away when the player interrupts
# An accompanying part draws no further ahead once its next event is due this soon: a draw
# takes about a millisecond live, and the event would wait for it.
DUE_SOON_S = 0.001
# An accompanying part whose model says the player goes next waits at least this long before
# it draws again (the player's event, when it comes first, rolls the wait back).
PLAYER_WAIT_S = 0.1

Timed = tuple[float, mido.Message]  # (planned time, message)
PlannedNote = tuple[float, bool, int]  # (planned time, note-on?, pitch)


@dataclass(frozen=True)
class ReplyReport:
    """What a finished reply did, with its timing figures."""

    phrase_end_s: float  # when the call ended (its last sound + the phrase gap)
    # The daemon's own reaction: phrase end -> first note-on sent, less the beat's wait
    # (``beat_wait_ms``); None: no note played.
    reaction_ms: float | None
    notes: int
    seconds: float  # reply start -> its last message
    interrupted: bool
    schedule_error_mean_ms: float  # actual send time - planned time, over every message
    schedule_error_max_ms: float
    beat_bpm: float | None = None  # the tempo of the beat it kept; None: free timing
    beat_source: str = "none"  # where that beat came from: player, midi
    beat_wait_ms: float | None = None  # earliest start -> first note's planned time

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def format_planned(sent: list[Timed]) -> str:
    """The notes a reply sent with their planned times, compact: ``+60@12.345678`` for a
    note-on, ``-60@12.567890`` for a note-off, comma-separated, in the order they were sent.

    ``antiphon bench`` reads it back (:func:`parse_planned`) from the daemon's debug log, to
    compare with when each message arrived at a listener (the same ``time.monotonic()``).
    """
    return ",".join(
        f"{'+' if m.type == 'note_on' and m.velocity > 0 else '-'}{m.note}@{planned_s:.6f}"
        for planned_s, m in sent
        if m.type in ("note_on", "note_off")
    )


def parse_planned(text: str) -> list[PlannedNote]:
    """:func:`format_planned` read back.

    Raises:
        ValueError: not in that format.
    """
    notes = []
    for item in filter(None, text.split(",")):
        event, _, time_text = item.partition("@")
        if event[:1] not in ("+", "-"):
            raise ValueError(f"not a planned note: {item!r}")
        notes.append((float(time_text), event[0] == "+", int(event[1:])))
    return notes


class _Mark:
    """Where the stream stood before something was drawn: the engine's state and both random
    streams. Restoring it leaves no trace of what was drawn since, and the same random draws
    come again. Marks are reused (their arrays are overwritten by the next :meth:`take`)."""

    __slots__ = ("noise_rng", "rng", "state")

    def __init__(self) -> None:
        self.state: EngineState | None = None
        self.rng: Mapping[str, Any] = {}
        self.noise_rng: Mapping[str, Any] = {}

    def take(self, engine: Engine) -> None:
        self.state = engine.get_state(out=self.state)
        self.rng = engine.rng.bit_generator.state
        self.noise_rng = engine.noise_rng.bit_generator.state

    def restore(self, engine: Engine) -> None:
        assert self.state is not None, "a mark restored before it was taken"
        engine.set_state(self.state)
        engine.rng.bit_generator.state = self.rng
        engine.noise_rng.bit_generator.state = self.noise_rng


@dataclass
class _Drawn:
    """An event drawn (its tokens fed) and not yet played."""

    due_s: float
    tokens: list[int]
    # Its note-on or note-off, made while drawing; None: a rest (an accompanying part's
    # time shifts with no event within ``MAX_TOKENS_PER_EVENT`` tokens, fed when due).
    message: mido.Message | None
    mark: _Mark  # the stream before its tokens


class Reply:
    """A reply in progress.

    Args:
        conversation: the token stream; its engine already holds the call.
        start_s: the pause up to here is fed (now), and the first note is due here.
        phrase_end_s: when the call ended (for the reaction time).
        earliest_s: where the reply would start had the beat not moved it (None: at
            ``start_s``): the beat's wait from here to the first note is on purpose, and not
            part of the daemon's reaction.
        notes: note budget; max_s: time bound (see
        :func:`~antiphon.daemon.musician.hearing.phrase.reply_length_bounds`).
        channel: MIDI channel 0-15 of the reply's notes.
        max_note_s: force-release any note sounding this long.
        shaping: what pushes the draws (None: nothing, the model's own choices).
        grid: the beat the reply keeps (None: the model's free timing).
        groove: how far each note-on is pulled onto the grid's subdivision (0 not at all,
            1 onto it): the tokens fed are those of the time it is played at.
        accompanying: a part played while the player plays (the duet,
            :mod:`~antiphon.daemon.musician.playing.duet`): its first note may wait, and a draw that
            finds no event rests (its time shifts are fed when due) instead of ending it.
            The shaping's pitch range is its register: while the player plays, the model
            draws from every pitch, and a note event outside the register is the player's
            (the model says the player goes next): the part rests until then, at least
            ``PLAYER_WAIT_S``, and draws again (:meth:`_wait_for_player`). Once
            :meth:`finish_by` ends it, the register is a mask, as a reply's range is.
        held_onsets: a note is released when the reply strikes its ``held_onsets``-th onset
            group after it (None: held as long as the model says, up to ``max_note_s``).
    """

    def __init__(
        self,
        conversation: Conversation,
        *,
        start_s: float,
        phrase_end_s: float,
        earliest_s: float | None = None,
        notes: int,
        max_s: float,
        channel: int,
        max_note_s: float,
        shaping: ReplyShaping | None = None,
        grid: BeatGrid | None = None,
        groove: float = 0.0,
        accompanying: bool = False,
        held_onsets: int | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._conversation = conversation
        self._accompanying = accompanying
        self._yielding = accompanying  # a note outside the register is the player's
        self._rest_writer = TokenWriter(conversation.vocabulary)
        self._shaping = shaping
        self._played_shape: ShapingState | None = None if shaping is None else shaping.start
        self._draw_shape = self._played_shape
        self._placer = GridPlacer(conversation.vocabulary, grid, groove)
        vocabulary = conversation.vocabulary
        self._time_shift_base = vocabulary.time_shift_base
        self._velocity_base = vocabulary.velocity_base
        self._note_off_base = vocabulary.note_off_base
        self._shifts_s = vocabulary.time_shifts_s
        self.channel = channel
        self.max_note_s = max_note_s
        self._max_note_from_s = -math.inf  # a shorter max_note_s holds from here
        self._held_onsets = held_onsets
        self._played_group: GroupState = NO_GROUP  # onset groups played (with held_onsets)
        self._group_of: dict[int, int] = {}  # sounding pitch -> its onset group
        self.phrase_end_s = phrase_end_s
        self.earliest_s = start_s if earliest_s is None else earliest_s
        self._start_mark = _Mark()
        self._start_mark.take(conversation.engine)
        self._clock_before_s = conversation.clock_s
        conversation.silence_until(start_s)
        self.start_s = start_s
        self._offset_s = start_s - conversation.clock_s  # played time = decoded clock + this
        self._end_s = start_s + max_s
        self._max_end_s = self._end_s
        self._notes = notes
        self.notes_played = 0
        self._release_by_s = self._end_s
        self.sounding = SoundingNotes()
        self.done = False
        self.interrupted = False
        self._drawn: deque[_Drawn] = deque()
        self._spare_marks: list[_Mark] = []
        self._unfed_releases: list[tuple[int, float]] = []  # (pitch, stream clock)
        self._stalled_at_s: float | None = None  # the drawing found no event before this time
        self._last_s = start_s  # the planned time of the last message played
        # Where the drawing stands: the played events plus the drawn ones.
        self._allowed = np.ones(vocabulary.size, bool)
        self._draw_clock_s = 0.0
        self._draw_velocity = 0
        self._draw_last_s = start_s
        self._draw_notes_left = notes
        self._draw_release_by_s = self._end_s
        self._draw_sounding: set[int] = set()
        self._draw_after_onset = False  # the last event drawn is a note-on (for chords)
        self._draw_stale = False
        # An accompanying part decides as the player's events come in: what it decides (a note
        # the model puts with that event, a note cut short) is planned no earlier than the
        # moment it was decided (``clock``, the performer's), not for the event's arrival,
        # which has passed (the gap is the part's reaction, not a late send).
        self._decided_at = clock
        self._restart_drawing()
        # Figures.
        self._first_note_sent_s: float | None = None
        self._first_note_planned_s = start_s  # its planned time, once it is sent
        self._error_total_s = 0.0
        self._error_max_s = 0.0
        self.sent: list[Timed] = []  # every message sent, with its planned time

    # Scheduling ---------------------------------------------------------------------------

    @property
    def drawn_ahead(self) -> int:
        """How many events are drawn (fed) and not yet played."""
        return len(self._drawn)

    def next_due_s(self) -> float | None:
        """When :meth:`advance` has something to do next; None once the reply is done."""
        if self.done:
            return None
        if not self._drawn and self._stalled_at_s is None:
            return self._last_s  # an event to draw: due now
        return min(self._expiry_s(), self._finish_s(), self._pending_s())

    def advance(self, now_s: float, *, draw: bool = True) -> list[Timed]:
        """Play the next thing due by ``now_s``; its messages, with their planned times.

        Returns after each event (or forced release), so the caller sends it before the next
        is even looked at: call again until it returns nothing, then :meth:`draw_ahead`.
        Drawn events are played without drawing; only when nothing is drawn is the next
        event drawn here (with ``draw`` False, not even then: nothing is played).
        """
        out: list[Timed] = []
        while not self.done and not out:
            if not self._drawn and self._stalled_at_s is None:
                if not draw:
                    break
                self._draw()
                continue
            expiry_s, pending_s, finish_s = self._expiry_s(), self._pending_s(), self._finish_s()
            due_s = min(expiry_s, pending_s, finish_s)
            if due_s > now_s:
                break
            self._last_s = due_s
            if expiry_s == due_s:
                self._release_expired(due_s, out)
            elif pending_s == due_s:
                self._play(out)
            else:
                self._release_all(due_s, out)
                self.done = True
        return out

    def strike_with(self, onset_s: float, now_s: float) -> list[Timed]:
        """An accompanying part, the player's note-on at ``onset_s`` about to be heard: its next
        drawn event, a note-on due within one onset group (``ONSET_GROUP_S``) after that onset,
        is struck now (``now_s``), with the player's note, before the player's note rolls it
        back. The model put it with the player's next note, and the player played it a little
        sooner than the model's time (live, a few ms either way; in simulated time a player's
        onset and a part's note due at once already go the part's first). Its messages,
        planned now; none if the next event is anything else."""
        drawn = self._drawn
        if not self._accompanying or not drawn:
            return []
        first = drawn[0]
        if (
            first.message is None
            or first.message.type != "note_on"
            or first.due_s - onset_s > ONSET_GROUP_S
            or min(self._expiry_s(), self._finish_s()) <= first.due_s
        ):
            return []
        first.due_s = max(now_s, self._last_s)
        return self.advance(first.due_s, draw=False)

    def draw_ahead(self, most: int | None = None) -> None:
        """Draw the coming events before they are due (call after sending what was due).

        At least the next event, and every event due within ``LOOKAHEAD_S`` of it, up to
        ``most`` events drawn (``MAX_DRAWN_AHEAD``); nothing once the reply has no event
        left to play. An accompanying part stops once its next event is due within
        ``DUE_SOON_S`` (it draws on after sending it).
        """
        self.settle()
        most = MAX_DRAWN_AHEAD if most is None else most
        drawn, clock = self._drawn, self._decided_at
        while (
            not self.done
            and self._stalled_at_s is None
            and len(drawn) < most
            and (self._draw_notes_left > 0 or self._draw_sounding)
            and (not drawn or drawn[-1].due_s < drawn[0].due_s + LOOKAHEAD_S)
            and (not drawn or clock is None or clock() < drawn[0].due_s - DUE_SOON_S)
        ):
            self._draw()

    def settle(self) -> None:
        """Feed the ends of the notes the reply released itself (call once their note-offs
        are sent, before feeding anything else), and draw on from the played events."""
        self._feed_releases()
        if self._draw_stale:
            self._restart_drawing()

    def _feed_releases(self) -> None:
        if self._unfed_releases:
            for pitch, clock_s in self._unfed_releases:
                self._conversation.release(pitch, clock_s)
            self._unfed_releases.clear()

    def rewind(self) -> None:
        """Roll every drawn, unplayed event back out of the engine's state and random streams.

        Call before feeding anything else (the player's events) while the reply is going on
        (it also settles, see :meth:`settle`; an accompanying part only feeds its releases,
        and starts drawing again at its next draw); the reply draws again from the new state
        on the next :meth:`advance`.
        """
        drawn = self._drawn
        if drawn:
            drawn[0].mark.restore(self._conversation.engine)
            self._spare_marks.extend(d.mark for d in drawn)
            drawn.clear()
        self._stalled_at_s = None
        self._draw_stale = True
        if self._accompanying:
            # The player's event comes next, and the part draws on from what it leaves
            # (:meth:`rebase`): drawing restarts then, at the next draw.
            self._feed_releases()
        else:
            self.settle()

    def reshape(self, shaping: ReplyShaping | None) -> None:
        """Draw on with other pushes (the knobs changed): the events drawn ahead are drawn
        again from the next one."""
        self.rewind()
        if shaping is None:
            self._played_shape = None
        elif self._played_shape is None or not self.sent:
            self._played_shape = shaping.start  # nothing played: it starts as the new one
        self._shaping = shaping
        self._draw_stale = True
        self.settle()

    def rebase(self, now_s: float) -> None:
        """An accompanying part, the player's event at ``now_s`` just fed: the stream's
        clock now means ``now_s``. The player's times are quantised as they are fed (with
        error feedback), so the stream's clock runs up to a time shift's rounding away from
        the player's; without this, the part's next note, drawn from the clock, could fall
        before the note it answers."""
        if self._accompanying:
            self._offset_s = now_s - self._conversation.clock_s
            self._draw_stale = True

    def regrid(self, grid: BeatGrid | None, groove: float | None = None) -> None:
        """Keep ``grid`` (and ``groove``; None: as it is) from the next event drawn (an
        accompanying part follows the beat as the player goes on); the events drawn ahead
        are drawn again."""
        self.rewind()
        groove = self._placer.groove if groove is None else groove
        self._placer = GridPlacer(self._conversation.vocabulary, grid, groove)

    def rephase(self, grid: BeatGrid) -> None:
        """Keep ``grid`` (the same beat at another phase) from the next event drawn, with
        the same groove; the events drawn ahead are drawn again."""
        if self._drawn:
            self.rewind()
        self._placer.grid = grid

    def limit_notes(self, max_note_s: float, now_s: float) -> None:
        """Release every note at ``max_note_s`` from now on (a note already sounding longer
        ends at ``now_s``, not before)."""
        if max_note_s != self.max_note_s:
            self.rewind()
            self.max_note_s = max_note_s
            decided_s = -math.inf if self._decided_at is None else self._decided_at()
            self._max_note_from_s = max(now_s, decided_s)

    def finish_by(self, end_s: float | None) -> None:
        """End the reply at ``end_s`` (every note released then); None: at its own time
        bound again. The events drawn ahead are drawn again."""
        self.rewind()
        self._end_s = self._max_end_s if end_s is None else min(end_s, self._max_end_s)
        self._release_by_s = self._end_s
        self._yielding = self._accompanying and end_s is None
        self._draw_stale = True

    @property
    def finishing(self) -> bool:
        """Whether :meth:`finish_by` set an end before the reply's own time bound."""
        return self._end_s < self._max_end_s

    def stop(self, now_s: float) -> list[Timed]:
        """End the reply now: every sounding note off (the model is told by :meth:`settle`)."""
        out: list[Timed] = []
        if not self.done:
            self.rewind()
            self._last_s = max(self._last_s, now_s)
            self._release_all(self._last_s, out)
            self.done = True
            self.interrupted = True
        return out

    def withdraw(self) -> None:
        """Undo a reply that has played nothing (one made before its call was over, when the
        call went on): the pause it fed and every event it drew leave the state, the random
        streams and the stream's clock are back where they were. The reply is then done."""
        assert not self.sent and self.notes_played == 0, "withdrawing a reply that played"
        self._drawn.clear()
        self._start_mark.restore(self._conversation.engine)
        self._conversation.writer.clock_s = self._clock_before_s
        self.done = True

    def _expiry_s(self) -> float:
        oldest_s = self.sounding.oldest_start_s()
        if oldest_s is None:
            return math.inf
        return max(oldest_s + self.max_note_s, self._max_note_from_s)

    def _pending_s(self) -> float:
        return self._drawn[0].due_s if self._drawn else math.inf

    def _finish_s(self) -> float:
        if self._stalled_at_s is not None:
            return min(self._stalled_at_s, self._release_by_s)
        return self._release_by_s

    # Drawing ------------------------------------------------------------------------------

    def _time_of(self, clock_s: float) -> float:
        return clock_s + self._offset_s

    def _clock_of(self, time_s: float) -> float:
        return time_s - self._offset_s

    def _restart_drawing(self) -> None:
        """Draw on from the played events alone: the stream's clock, the budget, the mask."""
        conversation = self._conversation
        self._draw_clock_s = conversation.clock_s
        self._draw_velocity = conversation.velocity
        self._draw_last_s = self._last_s
        if self._accompanying:  # nothing goes before what the player just played
            self._draw_last_s = max(self._last_s, self._time_of(conversation.clock_s))
        self._draw_notes_left = self._notes - self.notes_played
        self._draw_release_by_s = self._release_by_s
        sounding = self._draw_sounding
        sounding.clear()
        sounding.update(pitch for _, pitch in self.sounding)
        allowed, off = self._allowed, self._note_off_base
        allowed.fill(True)
        allowed[off : self._time_shift_base] = False
        for pitch in sounding:
            allowed[off + pitch] = True
        if self._shaping is not None:
            self._draw_shape = self._played_shape
            register = self._shaping.pitch_allowed
            if register is not None and self._yielding:
                allowed[off : self._time_shift_base] |= ~register  # the player's note-offs
            elif register is not None:
                allowed[:off] &= register
        if self._accompanying:
            for pitch in sounding:  # a part's note is released before it is struck again
                allowed[pitch] = False
        if self.notes_played == 0 and not self._accompanying:
            allowed[self._time_shift_base : self._velocity_base] = False
        if self._draw_notes_left <= 0:
            allowed[:off] = False  # no more note-ons
            allowed[self._velocity_base :] = False
        self._draw_after_onset = False
        self._draw_stale = False

    def _draw(self) -> None:
        """Sample (and feed) tokens up to the next note event, and queue it to be played."""
        self.settle()
        engine = self._conversation.engine
        mark = self._spare_marks.pop() if self._spare_marks else _Mark()
        mark.take(engine)
        allowed = self._allowed
        velocity_base, time_shift_base = self._velocity_base, self._time_shift_base
        clock_s, velocity = self._draw_clock_s, self._draw_velocity
        limit_s = self._draw_release_by_s
        tokens: list[int] = []
        shaping, shape = self._shaping, self._draw_shape
        for _ in range(MAX_TOKENS_PER_EVENT):
            if shaping is None or shape is None:
                token = engine.sample(allowed)
            else:
                after_velocity = bool(tokens) and tokens[-1] >= velocity_base
                token = self._sample_shaped(shaping, shape, clock_s, after_velocity)
            engine.feed(token, perturb=True)
            tokens.append(token)
            if token >= velocity_base:
                velocity = self._conversation.vocabulary.velocity_of_bin(token - velocity_base)
            elif token >= time_shift_base:
                clock_s += self._shifts_s[token - time_shift_base]
                if self._time_of(clock_s) > limit_s:
                    break
            elif self._yielding and self._players_event(token):
                self._wait_for_player(mark, clock_s)
                return
            else:
                due_s = None
                if token < self._note_off_base and self._placer.active:
                    placed = self._placer.place(
                        engine,
                        mark.state,
                        tokens,
                        self._draw_after_onset,
                        self._draw_clock_s,
                        clock_s,
                        self._draw_last_s,
                        self._offset_s,
                    )
                    if placed is not None:
                        tokens, clock_s, due_s = placed
                self._queue(token, tokens, clock_s, velocity, mark, due_s)
                return
        # (A rest that does not move the clock would be drawn again and again.)
        if (
            self._accompanying
            and self._draw_clock_s < clock_s
            and self._time_of(clock_s) <= limit_s
        ):
            self._queue_rest(tokens, clock_s, velocity, mark)
            return
        mark.restore(engine)
        self._spare_marks.append(mark)
        self._stalled_at_s = max(self._draw_last_s, min(self._time_of(clock_s), limit_s))

    def _sample_shaped(
        self, shaping: ReplyShaping, shape: ShapingState, clock_s: float, after_velocity: bool
    ) -> int:
        """A draw with the shaping's pushes. Right after a velocity token, velocities are
        masked: two in a row say nothing, and with the note-ons narrowed (a range) the model
        could go on choosing velocities until the event gives up. Answering one line
        (``shaping.one_line``) while a reply note sounds, note-ons and velocities are masked:
        the sounding note ends first."""
        engine, allowed = self._conversation.engine, self._allowed
        bias = shaping.bias(shape, self._time_of(clock_s))
        holding = shaping.one_line and bool(self._draw_sounding)
        if not after_velocity and not holding:
            return engine.sample(allowed, bias=bias, blend=shaping.blend(shape))
        saved = allowed.copy()
        allowed[self._velocity_base :] = False
        if holding:
            allowed[: self._note_off_base] = False
        try:
            return engine.sample(allowed, bias=bias, blend=shaping.blend(shape))
        finally:
            allowed[:] = saved

    def _queue(
        self,
        token: int,
        tokens: list[int],
        clock_s: float,
        velocity: int,
        mark: _Mark,
        due_s: float | None = None,
    ) -> None:
        """Queue a drawn note event to be played (at ``due_s``, placed on the grid, or at its
        decoded time), and draw on as if it had been."""
        if due_s is None:
            # Never before the last event: a forced note-off's time was quantised.
            due_s = max(self._draw_last_s, self._time_of(clock_s))
        if self._decided_at is not None:
            due_s = max(due_s, self._decided_at())
        self._draw_clock_s, self._draw_velocity, self._draw_last_s = clock_s, velocity, due_s
        allowed, off = self._allowed, self._note_off_base
        if token >= off:
            pitch = token - off
            message = mido.Message("note_off", channel=self.channel, note=pitch, velocity=0)
            allowed[token] = False
            self._draw_sounding.discard(pitch)
            self._draw_after_onset = False
            if self._shaping is not None and self._draw_shape is not None:
                self._draw_shape = self._shaping.after_note_off(self._draw_shape, due_s)
            if self._accompanying:
                allowed[pitch] = self._may_strike(pitch)
        else:
            if self._shaping is not None:
                velocity = self._shaping.loudness(velocity)
            message = mido.Message("note_on", channel=self.channel, note=token, velocity=velocity)
            if self._shaping is not None and self._draw_shape is not None:
                self._draw_shape = self._shaping.after_note_on(self._draw_shape, token, due_s)
            allowed[off + token] = True
            if self._accompanying:
                allowed[token] = False
            self._draw_sounding.add(token)
            self._draw_after_onset = True
            allowed[self._time_shift_base : self._velocity_base] = True  # after the first note
            self._draw_notes_left -= 1
            if self._draw_notes_left <= 0:
                allowed[:off] = False  # no more note-ons
                allowed[self._velocity_base :] = False
                self._draw_release_by_s = min(self._end_s, due_s + RELEASE_GRACE_S)
        self._drawn.append(_Drawn(due_s, tokens, message, mark))

    def _may_strike(self, pitch: int) -> bool:
        """Whether an accompanying part may draw a note-on of ``pitch`` once it is released."""
        if self._draw_notes_left <= 0:
            return False
        register = self._shaping.pitch_allowed if self._shaping is not None else None
        return register is None or self._yielding or bool(register[pitch])

    def _players_event(self, token: int) -> bool:
        """Whether a note event drawn is outside the part's register: the player's."""
        register = self._shaping.pitch_allowed if self._shaping is not None else None
        return register is not None and not register[token % self._note_off_base]

    def _wait_for_player(self, mark: _Mark, clock_s: float) -> None:
        """The model says the player goes next (at ``clock_s``): what was drawn leaves the
        state (the random streams go on), and the part rests until then, at least
        ``PLAYER_WAIT_S``: the silence fed, it draws again."""
        engine = self._conversation.engine
        assert mark.state is not None
        engine.set_state(mark.state)
        writer = self._rest_writer
        writer.clock_s = self._draw_clock_s
        tokens = writer.advance_to(max(clock_s, self._draw_clock_s + PLAYER_WAIT_S))
        if self._time_of(writer.clock_s) > self._draw_release_by_s:
            self._spare_marks.append(mark)
            self._stalled_at_s = max(self._draw_last_s, self._draw_release_by_s)
            return
        for token in tokens:
            engine.feed(token, perturb=True)
        self._queue_rest(tokens, writer.clock_s, self._draw_velocity, mark)

    def _queue_rest(self, tokens: list[int], clock_s: float, velocity: int, mark: _Mark) -> None:
        """Queue the time shifts of a draw that found no event: fed when due, then the
        drawing goes on from there."""
        due_s = max(self._draw_last_s, self._time_of(clock_s))
        self._draw_clock_s, self._draw_velocity, self._draw_last_s = clock_s, velocity, due_s
        self._draw_after_onset = False
        self._drawn.append(_Drawn(due_s, tokens, None, mark))

    # Playing ------------------------------------------------------------------------------

    def _play(self, out: list[Timed]) -> None:
        drawn = self._drawn.popleft()
        self._spare_marks.append(drawn.mark)
        self._conversation.commit(drawn.tokens)
        due_s, message = drawn.due_s, drawn.message
        if message is None:
            return  # a rest
        if message.type == "note_off":
            out.extend((due_s, m) for m in self.sounding.stop_message(message))
            if self._shaping is not None and self._played_shape is not None:
                self._played_shape = self._shaping.after_note_off(self._played_shape, due_s)
            self._check_done()
            return
        out.extend((due_s, m) for m in self.sounding.start_message(message, due_s))
        if self._shaping is not None and self._played_shape is not None:
            self._played_shape = self._shaping.after_note_on(
                self._played_shape, message.note, due_s
            )
        self.notes_played += 1
        if self.notes_played >= self._notes:
            self._release_by_s = min(self._end_s, due_s + RELEASE_GRACE_S)
        if self._held_onsets is not None:
            self._release_held(message.note, due_s, out)

    def _release_held(self, pitch: int, now_s: float, out: list[Timed]) -> None:
        """The note ``pitch`` just struck at ``now_s``: the notes struck ``held_onsets``
        onset groups before it end now (the events drawn ahead are drawn again)."""
        self._played_group = after_note_on(self._played_group, now_s)
        group_of, groups = self._group_of, self._played_group[2]
        group_of[pitch] = groups
        assert self._held_onsets is not None
        ended = [
            p
            for _, p in self.sounding
            if p != pitch and groups - group_of.get(p, groups) >= self._held_onsets
        ]
        if ended:
            self.rewind()
            for p in ended:
                self._release(p, now_s, out)

    def _release_expired(self, now_s: float, out: list[Timed]) -> None:
        self.rewind()
        for _, pitch in self.sounding.expired(now_s, self.max_note_s):
            self._release(pitch, now_s, out)
        self._check_done()

    def _release_all(self, now_s: float, out: list[Timed]) -> None:
        self.rewind()
        for _, pitch in self.sounding:
            self._release(pitch, now_s, out)

    def _release(self, pitch: int, now_s: float, out: list[Timed]) -> None:
        out.extend((now_s, m) for m in self.sounding.stop(self.channel, pitch))
        self._unfed_releases.append((pitch, self._clock_of(now_s)))
        self._draw_stale = True

    def _check_done(self) -> None:
        if self.notes_played >= self._notes and len(self.sounding) == 0:
            self.done = True

    # Figures ------------------------------------------------------------------------------

    def record_send(self, planned_s: float, sent_s: float, message: mido.Message) -> None:
        """Account for a message the performer sent at ``sent_s`` (planned at ``planned_s``)."""
        error_s = sent_s - planned_s
        self._error_total_s += abs(error_s)
        self._error_max_s = max(self._error_max_s, abs(error_s))
        self.sent.append((planned_s, message))
        if self._first_note_sent_s is None and message.type == "note_on":
            self._first_note_sent_s = sent_s
            self._first_note_planned_s = planned_s
        self._last_s = max(self._last_s, planned_s)

    def report(self) -> ReplyReport:
        reaction_ms = beat_wait_ms = None
        if self._first_note_sent_s is not None:
            planned_s, earliest_s = self._first_note_planned_s, self.earliest_s
            late_s = self._first_note_sent_s - planned_s
            reaction_ms = 1000.0 * (late_s + earliest_s - self.phrase_end_s)
            beat_wait_ms = 1000.0 * (planned_s - earliest_s)
        grid = self._placer.grid
        return ReplyReport(
            phrase_end_s=self.phrase_end_s,
            reaction_ms=reaction_ms,
            notes=self.notes_played,
            seconds=self._last_s - self.start_s,
            interrupted=self.interrupted,
            schedule_error_mean_ms=1000.0 * self._error_total_s / max(1, len(self.sent)),
            schedule_error_max_ms=1000.0 * self._error_max_s,
            beat_bpm=None if grid is None else round(grid.tempo_bpm, 2),
            beat_source="none" if grid is None else grid.source,
            beat_wait_ms=beat_wait_ms,
        )
