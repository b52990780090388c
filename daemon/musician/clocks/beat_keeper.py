"""The performer's sense of the beat: the player's (tracked), a DAW's (MIDI clock), or none;
and where a reply starts and which grid it keeps.

One :class:`BeatKeeper` per performer. The MIDI callback thread only calls
:meth:`BeatKeeper.submit_clock` (an append to the clock's inbox); everything else runs on the
performer's thread, which feeds it every onset, the player's and the reply's.

Which beat counts (the ``clock`` parameter): ``off``, none (replies keep the model's free
timing); ``player``, the :class:`~antiphon.daemon.musician.hearing.beat.BeatTracker`'s, when it is
sure
of one; ``midi``, the DAW's clock while it runs, else the player's; ``link``, the Ableton Link
session's (:class:`~antiphon.daemon.musician.clocks.link_clock.LinkSession`, bars of
``link_quantum``
beats) while it has peers, else the player's.

Where a reply starts (the ``reply_start`` parameter), with a beat: ``now``, the call's end
(pulled onto the grid by the groove, like every onset); ``beat``, the next beat; ``bar``, the
next downbeat when it comes within a beat, else the next beat (downbeats from the clock's song
position, else the call is taken to have started on one). Never more than one beat after
the call's end. Without a beat: the call's end, as always.

Other parts of the daemon may ask :meth:`BeatKeeper.next_beat_s` and
:attr:`BeatKeeper.confidence` (turn-taking: a call that ends on a beat).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import mido
from antiphon.daemon.musician.clocks.midi_clock import ClockFollower, ClockInbox
from antiphon.daemon.musician.hearing.beat import BeatGrid, BeatTracker, choose_subdivision
from antiphon.daemon.musician.hearing.tempo_follower import TempoFollower

if TYPE_CHECKING:
    from antiphon.daemon.musician.clocks.link_clock import LinkSession

CALL_ONSETS_KEPT = 64  # the player's latest onsets, for the subdivision a call uses


@dataclass(frozen=True)
class ReplyPlan:
    """When a reply starts and the grid it keeps (None: free timing)."""

    start_s: float
    grid: BeatGrid | None
    earliest_s: float  # the start had the beat not moved it


class BeatKeeper:
    """The beat as the performer knows it (see the module docstring)."""

    def __init__(self, beats_per_bar: int = 4) -> None:
        self.inbox = ClockInbox()
        self.tracker = BeatTracker(beats_per_bar)
        self.follower = TempoFollower(self.tracker)
        self.clock = ClockFollower(beats_per_bar)
        self._player_onsets: deque[float] = deque(maxlen=CALL_ONSETS_KEPT)
        self._plan_key: tuple[Any, ...] | None = None
        self._plan: ReplyPlan | None = None
        self.last_grid: BeatGrid | None = None  # swapped whole: status reads it
        self.link: LinkSession | None = None  # the Link session, once joined

    # The MIDI callback's side -------------------------------------------------------------

    def submit_clock(self, message: mido.Message, time_s: float) -> bool:
        """Keep a MIDI clock message (any thread, never blocks); False for other messages."""
        return self.inbox.submit(message, time_s)

    # The performer's side -----------------------------------------------------------------

    def hear_player(self, time_s: float) -> None:
        """The player's note-on at ``time_s``."""
        self.tracker.onset(time_s)
        self.follower.onset(time_s)
        self._player_onsets.append(time_s)

    def hear_reply(self, time_s: float) -> None:
        """A reply's note-on, played at ``time_s``: the reply keeps the beat it hears."""
        self.tracker.onset(time_s)

    def reset(self) -> None:
        """Forget the player's beat (the clock goes on)."""
        self.tracker.reset()
        self.follower.reset()
        self._player_onsets.clear()
        self._plan_key = None

    def follow_clock(self) -> None:
        """Take the clock messages waiting (the performer does at every turn of its loop, at
        least twice a second, so the inbox never overflows)."""
        self.clock.take(self.inbox)

    def grid(self, now_s: float, clock: str, link_quantum: int = 4) -> BeatGrid | None:
        """The beat in force at ``now_s`` for the ``clock`` parameter; None: no beat."""
        self.clock.take(self.inbox)
        grid = None if clock == "off" else self._source_grid(now_s, clock, link_quantum)
        self.last_grid = grid
        return grid

    def lead_grid(self, now_s: float, clock: str, link_quantum: int = 4) -> BeatGrid | None:
        """The beat the outgoing clock follows (``clock_out``): a MIDI clock's or Link's in
        force; else the player's, as the
        :class:`~antiphon.daemon.musician.hearing.tempo_follower.TempoFollower` follows it
        from the first sure beat (before it, the tracker's best guess however unsure), with the
        tracker's confidence (how far the clock may trust it). The beat last used (status,
        turns) stays as it was."""
        grid = self._source_grid(now_s, clock, link_quantum)
        if grid is not None and grid.source != "player":
            return grid
        if grid is not None:
            self.follower.hear_sure(grid)
        followed = self.follower.grid(self.tracker.confidence)
        return followed if followed is not None else self.tracker.estimate()

    def _source_grid(self, now_s: float, clock: str, link_quantum: int) -> BeatGrid | None:
        self.clock.take(self.inbox)
        grid = None
        if clock == "midi":
            grid = self.clock.grid(now_s)
        elif clock == "link" and self.link is not None:
            grid = self.link.grid(now_s, link_quantum)
        if grid is None:
            grid = self.tracker.grid()
        return grid

    @property
    def confidence(self) -> float:
        """How sure Antiphon is of the beat it last used: 0 (none) to 1."""
        grid = self.last_grid
        return 0.0 if grid is None else grid.confidence

    def next_beat_s(self, after_s: float) -> float | None:
        """The first beat at or after ``after_s`` on the beat last used; None without one."""
        grid = self.last_grid
        return None if grid is None else grid.next_beat_s(after_s)

    def plan(
        self,
        call_start_s: float,
        call_end_s: float,
        earliest_s: float,
        now_s: float,
        clock: str,
        reply_start: str,
        groove: float,
        link_quantum: int = 4,
    ) -> ReplyPlan:
        """When the reply to the call (``call_start_s`` to ``call_end_s``) starts, no
        earlier than ``earliest_s``, and its grid. The same call asked again gets the same
        plan (the reply made ahead of the deadline and the one at it must agree)."""
        key = (call_start_s, call_end_s, earliest_s, clock, reply_start, groove, link_quantum)
        if key == self._plan_key and self._plan is not None:
            return self._plan
        grid = self.grid(now_s, clock, link_quantum)
        start_s = earliest_s
        if grid is not None:
            onsets = [t for t in self._player_onsets if call_start_s <= t <= call_end_s]
            subdivision = choose_subdivision(onsets, grid.beat_s, grid.anchor_s)
            bar_anchor_s = grid.bar_anchor_s
            if bar_anchor_s is None:  # no bars from a clock: the call started one
                bar_anchor_s = grid.next_beat_s(call_start_s - grid.beat_s / 2)
            grid = replace(grid, subdivision=subdivision, bar_anchor_s=bar_anchor_s)
            start_s = _start_on(grid, earliest_s, reply_start, groove)
        self._plan_key, self._plan = key, ReplyPlan(start_s, grid, earliest_s)
        return self._plan

    def status(self) -> dict[str, Any]:
        """The beat for ``/antiphon/status``: its source, tempo and confidence."""
        grid = self.last_grid
        if grid is None:
            return {"beat_source": "none", "tempo_bpm": 0.0, "beat_confidence": 0.0}
        return {
            "beat_source": grid.source,
            "tempo_bpm": round(grid.tempo_bpm, 2),
            "beat_confidence": round(grid.confidence, 3),
        }


def _start_on(grid: BeatGrid, earliest_s: float, reply_start: str, groove: float) -> float:
    """Where a reply starts on ``grid``: never before ``earliest_s``, never more than a beat
    after it."""
    if reply_start == "now":
        return grid.pull(earliest_s, groove, not_before_s=earliest_s)
    beat_s = grid.next_beat_s(earliest_s)
    if reply_start == "bar":
        bar_s = grid.next_bar_s(earliest_s)
        if bar_s - earliest_s <= grid.beat_s:
            return bar_s
    return beat_s
