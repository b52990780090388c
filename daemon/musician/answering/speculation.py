"""Answering on time: the reply made ahead of the call's deadline, kept or withdrawn.

``SPECULATE_BEFORE_S`` (20 ms) before the call's deadline, the performer already makes the
reply as it will be at the deadline (the pause up to the deadline fed, its first events
drawn, see :mod:`antiphon.daemon.musician.answering.reply`), so that at the deadline it only sends.
If
anything comes
first (the player's input, a command, a parameter change), that speculative reply is
withdrawn without a trace, random streams included: a reply is the same whether it was made
ahead or at the deadline. 20 ms is well above the few ms drawing takes even on a busy
machine, and a player who goes on within the last 20 ms of the gap is rare, so little work
is thrown away; drawing when the silence starts would throw it away at every pause.

Used on the performer's thread only (:mod:`antiphon.daemon.musician.playing.performer`).
"""

from __future__ import annotations

from dataclasses import dataclass

from antiphon.daemon.musician.answering.follow import (
    HeardCall,
    Steering,
    model_articulation_weight,
    model_contour_weight,
    model_key_weight,
    model_register_weight,
)
from antiphon.daemon.musician.answering.memory import PlayerMemory
from antiphon.daemon.musician.answering.reply import Reply
from antiphon.daemon.musician.answering.shaping import SHAPING_KNOBS, ReplyShaping, make_shaping
from antiphon.daemon.musician.clocks.beat_keeper import ReplyPlan
from antiphon.daemon.musician.hearing.phrase import Call, reply_length_bounds
from antiphon.daemon.musician.model.conversation import Conversation
from antiphon.daemon.surface.parameters import Parameters

SPECULATE_BEFORE_S = 0.020  # the reply is made this long before the call's deadline
# The parameters a reply made ahead follows without being made again: what they change is
# drawn, or not a reply's at all (thru, overlap).
TAKEN_IN_STRIDE = frozenset(
    {"temperature", "noise", "max_note_s", "thru", "overlap", *SHAPING_KNOBS}
)


@dataclass
class _Speculation:
    """A reply made before its call was over, for the call as it will end if nothing comes."""

    call: Call
    reply: Reply
    start_s: float


class Speculator:
    """Makes replies: at once, or ahead of the call's deadline and handed over if still wanted.

    Args:
        conversation: what the replies are drawn from and fed to.
        before_s: how long before the call's deadline the reply is made; 0 makes it at the
            deadline.
        heard: the call's notes as played, for following it (None: an empty call).
        memory: the player's memory, for ``mirror`` (None: an empty one).
    """

    def __init__(
        self,
        conversation: Conversation,
        before_s: float = SPECULATE_BEFORE_S,
        *,
        heard: HeardCall | None = None,
        memory: PlayerMemory | None = None,
    ) -> None:
        self._conversation = conversation
        self._heard = heard or HeardCall()
        self._memory = memory or PlayerMemory()
        self._before_s = before_s
        self._ahead: _Speculation | None = None
        self._made_for_s: float | None = None  # the deadline last speculated for

    @property
    def holding(self) -> bool:
        """Whether a reply made ahead waits for its deadline."""
        return self._ahead is not None

    def shaping(self, params: Parameters, now_s: float) -> ReplyShaping | None:
        """What shapes a reply to the call heard, with ``params``' knobs."""
        training = self._conversation.engine.info.training
        steering = Steering(
            params.follow,
            params.range_low,
            params.range_high,
            params.density,
            params.dynamics,
            model_key_weight(training),
            articulation_weight=model_articulation_weight(training),
            register_weight=model_register_weight(training),
            contour_weight=model_contour_weight(training),
        )
        return make_shaping(
            self._heard.notes(now_s),
            steering,
            params.mirror,
            self._memory,
            self._conversation.vocabulary,
        )

    def prepare(self, call: Call, plan: ReplyPlan, params: Parameters) -> Reply | None:
        """The reply to ``call`` as ``plan`` starts it (keeping its beat), its first events
        drawn; None when the engine has heard nothing since a reset (after a reset, the pause
        alone is a start)."""
        notes, max_s = reply_length_bounds(call.notes, call.seconds, params)
        reply = Reply(
            self._conversation,
            start_s=plan.start_s,
            phrase_end_s=call.ended_s,
            earliest_s=plan.earliest_s,
            notes=notes,
            max_s=max_s,
            channel=params.output_channel - 1,
            max_note_s=params.max_note_s,
            shaping=self.shaping(params, plan.start_s),
            grid=plan.grid,
            groove=params.groove,
        )
        if not self._conversation.engine.ready:
            reply.withdraw()
            return None
        reply.draw_ahead()
        return reply

    def due_s(self, deadline_s: float | None) -> float | None:
        """When to make the reply ahead of a call's deadline ``deadline_s`` (None: there is
        none, or it is made, or it was made for this deadline and withdrawn)."""
        if self._ahead is not None or deadline_s is None or deadline_s == self._made_for_s:
            return None
        return deadline_s - self._before_s

    def make_ahead(self, call: Call, params: Parameters, plan: ReplyPlan) -> None:
        """Make the reply to ``call`` (not over yet) as ``plan`` will start it."""
        self._made_for_s = call.ended_s
        if params.mode not in ("call_response", "both"):
            return
        reply = self.prepare(call, plan, params)
        if reply is not None:
            self._ahead = _Speculation(call, reply, plan.start_s)

    def take(self, call: Call, start_s: float, answering: bool) -> Reply | None:
        """The reply made ahead if it is the one wanted now (``answering`` ``call``, starting
        at ``start_s``); otherwise it is withdrawn and the answer is None."""
        speculation, self._ahead = self._ahead, None
        if speculation is None:
            return None
        if answering and speculation.call == call and start_s == speculation.start_s:
            return speculation.reply
        speculation.reply.withdraw()
        return None

    def adjust(self, params: Parameters, *, redraw: bool, reshape: bool) -> None:
        """Knobs in ``TAKEN_IN_STRIDE`` changed: the reply made ahead takes ``params``, its
        events drawn again (``redraw``: temperature or noise; ``reshape``: shaping knobs)."""
        if self._ahead is None:
            return
        reply = self._ahead.reply
        reply.max_note_s = params.max_note_s
        if reshape:
            reply.reshape(self.shaping(params, self._ahead.start_s))
        elif redraw:
            reply.rewind()

    def draw_again(self) -> None:
        """Draw the first event of the reply made ahead again, if :meth:`adjust` rolled its
        events back: at the deadline it is sent at once, and the rest drawn after it."""
        if self._ahead is not None and self._ahead.reply.drawn_ahead == 0:
            self._ahead.reply.draw_ahead(most=1)

    def withdraw(self) -> None:
        """Something came before the deadline: the reply made ahead goes, without a trace."""
        speculation, self._ahead = self._ahead, None
        if speculation is not None:
            speculation.reply.withdraw()
        self._made_for_s = None
