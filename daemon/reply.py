"""One reply, generated just in time and played on the performer's clock.

The reply samples tokens until the next note event, schedules that event, and samples the
one after only when it has been played. Before sampling an event it keeps a snapshot of the
engine's state, so an event that was sampled (and fed: the engine needed it to go on) but not
yet played can be rolled back out of the state when something else happens first: the player
plays, a note reaches its maximum length, the reply is stopped.

How a reply is shaped (the mask of tokens the engine may sample):

- The first note sounds at once: until the first note-on, time shifts (and note-offs) are
  masked, so the model can only choose a velocity and a pitch. The pause since the call's
  last sound has already been fed as time shifts, so the model knows where it is.
- Note-offs are only allowed for pitches the reply has sounding (no stray note-offs).
- After the note budget (:func:`~daemon.phrase.reply_length_bounds`), note-ons and
  velocities are masked: the model may only release its notes and wait. Notes still sounding
  ``RELEASE_GRACE_S`` after the last note-on are released by force, as is everything at the
  reply's time bound. A note sounding ``max_note_s`` is released by force at once.
- Every note Antiphon ends itself is fed to the model as a note-off at the time it happened.

Times are in seconds on the performer's clock. A reply event planned at decoded time ``C``
plays at ``start_s + (C - C0)``, where ``C0`` is the stream's clock at the start.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import mido
import numpy as np

from daemon.codec import TokenKind
from daemon.conversation import Conversation
from daemon.engine import EngineState, kind_slice
from daemon.notes import SoundingNotes

RELEASE_GRACE_S = 1.5  # after the last note-on, time the model has to release its notes
MAX_TOKENS_PER_EVENT = 32  # a model that emits this many tokens without an event is stopped

Timed = tuple[float, mido.Message]  # (planned time, message)


@dataclass(frozen=True)
class ReplyReport:
    """What a finished reply did, with its timing figures."""

    phrase_end_s: float  # when the call ended (its last sound + the phrase gap)
    reaction_ms: float | None  # phrase end -> first note-on sent; None: no note played
    notes: int
    seconds: float  # reply start -> its last message
    interrupted: bool
    schedule_error_mean_ms: float  # actual send time - planned time, over every message
    schedule_error_max_ms: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Pending:
    due_s: float
    tokens: list[int]
    pitch: int
    velocity: int  # 0: a note-off


class Reply:
    """A reply in progress.

    Args:
        conversation: the token stream; its engine already holds the call.
        start_s: now; the pause up to here is fed, and the first note is due here.
        phrase_end_s: when the call ended (for the reaction time).
        notes: note budget; max_s: time bound (see :func:`~daemon.phrase.reply_length_bounds`).
        channel: MIDI channel 0-15 of the reply's notes.
        max_note_s: force-release any note sounding this long.
    """

    def __init__(
        self,
        conversation: Conversation,
        *,
        start_s: float,
        phrase_end_s: float,
        notes: int,
        max_s: float,
        channel: int,
        max_note_s: float,
    ) -> None:
        self._conversation = conversation
        vocabulary = conversation.vocabulary
        self._time_shift_base = vocabulary.time_shift_base
        self._velocity_base = vocabulary.velocity_base
        self._note_off_base = vocabulary.note_off_base
        self._shifts_s = vocabulary.time_shifts_s
        self.channel = channel
        self.max_note_s = max_note_s
        self.phrase_end_s = phrase_end_s
        conversation.silence_until(start_s)
        self.start_s = start_s
        self._start_clock_s = conversation.clock_s
        self._end_s = start_s + max_s
        self._release_by_s = self._end_s
        self._notes_left = notes
        self.notes_played = 0
        self.sounding = SoundingNotes()
        self.done = False
        self.interrupted = False
        self._allowed = np.ones(vocabulary.size, bool)
        self._allowed[kind_slice(vocabulary, TokenKind.TIME_SHIFT)] = False
        self._allowed[kind_slice(vocabulary, TokenKind.NOTE_OFF)] = False
        self._snapshot: EngineState | None = None
        self._pending: _Pending | None = None
        self._stalled_at_s: float | None = None  # the plan found no event before this time
        self._last_s = start_s
        self._first_note_sent_s: float | None = None
        self._error_total_s = 0.0
        self._error_max_s = 0.0
        self._sent = 0

    # Scheduling ---------------------------------------------------------------------------

    def next_due_s(self) -> float | None:
        """When :meth:`advance` has something to do next; None once the reply is done."""
        if self.done:
            return None
        if self._pending is None and self._stalled_at_s is None:
            return self._last_s  # an event to plan: due now
        return min(self._expiry_s(), self._finish_s(), self._pending_s())

    def advance(self, now_s: float) -> list[Timed]:
        """Play what is due by ``now_s``; the messages, with their planned times.

        Returns as soon as an event was played and the next one must be sampled, so the
        caller sends it without waiting for that: call again until it returns nothing.
        """
        out: list[Timed] = []
        while not self.done:
            if self._pending is None and self._stalled_at_s is None:
                if out:
                    break
                self._plan()
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

    def rewind(self) -> None:
        """Roll the planned, unplayed event back out of the engine's state.

        Call before feeding anything else (the player's events) while the reply is going on;
        the reply plans again from the new state on the next :meth:`advance`.
        """
        if self._pending is not None and self._snapshot is not None:
            self._conversation.engine.set_state(self._snapshot)
        self._pending = None
        self._stalled_at_s = None

    def stop(self, now_s: float) -> list[Timed]:
        """End the reply now: every sounding note off, and the model told so."""
        out: list[Timed] = []
        if not self.done:
            self.rewind()
            self._last_s = max(self._last_s, now_s)
            self._release_all(self._last_s, out)
            self.done = True
            self.interrupted = True
        return out

    def _expiry_s(self) -> float:
        oldest_s = self.sounding.oldest_start_s()
        return math.inf if oldest_s is None else oldest_s + self.max_note_s

    def _pending_s(self) -> float:
        return math.inf if self._pending is None else self._pending.due_s

    def _finish_s(self) -> float:
        if self._stalled_at_s is not None:
            return min(self._stalled_at_s, self._release_by_s)
        return self._release_by_s

    # Generation ---------------------------------------------------------------------------

    def _time_of(self, clock_s: float) -> float:
        return self.start_s + (clock_s - self._start_clock_s)

    def _clock_of(self, time_s: float) -> float:
        return self._start_clock_s + (time_s - self.start_s)

    def _plan(self) -> None:
        """Sample (and feed) tokens up to the next note event, and schedule it."""
        conversation = self._conversation
        engine = conversation.engine
        self._snapshot = engine.get_state(out=self._snapshot)
        clock_s, velocity = conversation.clock_s, conversation.velocity
        limit_s = self._finish_s()
        tokens: list[int] = []
        for _ in range(MAX_TOKENS_PER_EVENT):
            token = engine.sample(self._allowed)
            engine.feed(token, perturb=True)
            tokens.append(token)
            if token >= self._velocity_base:
                velocity = conversation.vocabulary.velocity_of_bin(token - self._velocity_base)
            elif token >= self._time_shift_base:
                clock_s += self._shifts_s[token - self._time_shift_base]
                if self._time_of(clock_s) > limit_s:
                    break
            else:
                # Never before the last event: a forced note-off's time was quantised.
                due_s = max(self._last_s, self._time_of(clock_s))
                if token >= self._note_off_base:
                    self._pending = _Pending(due_s, tokens, token - self._note_off_base, 0)
                else:
                    self._pending = _Pending(due_s, tokens, token, velocity)
                return
        engine.set_state(self._snapshot)
        self._stalled_at_s = max(self._last_s, min(self._time_of(clock_s), limit_s))

    def _play(self, out: list[Timed]) -> None:
        pending = self._pending
        assert pending is not None
        self._pending = None
        self._conversation.commit(pending.tokens)
        due_s, pitch = pending.due_s, pending.pitch
        if pending.velocity == 0:
            out.extend((due_s, m) for m in self.sounding.stop(self.channel, pitch))
            self._allowed[self._note_off_base + pitch] = False
            self._check_done()
            return
        out.extend(
            (due_s, m) for m in self.sounding.start(self.channel, pitch, pending.velocity, due_s)
        )
        self._allowed[self._note_off_base + pitch] = True
        if self.notes_played == 0:
            self._allowed[self._time_shift_base : self._velocity_base] = True
        self.notes_played += 1
        self._notes_left -= 1
        if self._notes_left <= 0:
            self._allowed[: self._note_off_base] = False  # no more note-ons
            self._allowed[self._velocity_base :] = False
            self._release_by_s = min(self._end_s, due_s + RELEASE_GRACE_S)

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
        self._allowed[self._note_off_base + pitch] = False
        self._conversation.release(pitch, self._clock_of(now_s))

    def _check_done(self) -> None:
        if self._notes_left <= 0 and len(self.sounding) == 0:
            self.done = True

    # Figures ------------------------------------------------------------------------------

    def record_send(self, planned_s: float, sent_s: float, message: mido.Message) -> None:
        """Account for a message the performer sent at ``sent_s`` (planned at ``planned_s``)."""
        error_s = sent_s - planned_s
        self._error_total_s += abs(error_s)
        self._error_max_s = max(self._error_max_s, abs(error_s))
        self._sent += 1
        if self._first_note_sent_s is None and message.type == "note_on":
            self._first_note_sent_s = sent_s
        self._last_s = max(self._last_s, planned_s)

    def report(self) -> ReplyReport:
        reaction_ms = None
        if self._first_note_sent_s is not None:
            reaction_ms = (self._first_note_sent_s - self.phrase_end_s) * 1000.0
        return ReplyReport(
            phrase_end_s=self.phrase_end_s,
            reaction_ms=reaction_ms,
            notes=self.notes_played,
            seconds=self._last_s - self.start_s,
            interrupted=self.interrupted,
            schedule_error_mean_ms=1000.0 * self._error_total_s / max(1, self._sent),
            schedule_error_max_ms=1000.0 * self._error_max_s,
        )
