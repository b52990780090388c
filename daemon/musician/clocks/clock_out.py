"""Antiphon as the tempo source: the outgoing clock that the rest of the rig follows.

:class:`ClockLeader` is pure (no ports, no threads, no clock of its own): it is offered the
beat Antiphon keeps (the player's, or a MIDI clock's or Link's passed on) and says when each
MIDI clock tick (0xF8, 24 a quarter note) is due and what to send then: Song Position 0 and
Start before the first tick, Stop when it is switched off. The tick sender
(:mod:`antiphon.daemon.midi.clock_sender`, a thread of its own that never runs inference)
sleeps until each tick and sends it; the performer's thread only offers beats (one
reference swap).

The outgoing tempo is steady by design. It changes once a beat, on the beat:

- toward the beat offered, by ``follow`` (the share of the difference closed each beat: 1
  goes to it, 0 holds the tempo), never by more than ``MAX_TEMPO_STEP`` a beat. The player's
  beat offered is the
  :class:`~antiphon.daemon.musician.hearing.tempo_follower.TempoFollower`'s: it keeps the
  level of the first sure beat (a run of sixteenths is not a new tempo) and leads a player
  who speeds up or slows down by its own trend;
- it starts only on a beat the tracker is sure of (``CONFIDENT``), and then follows the
  player's tempo while the tracker hears one at all (``FOLLOW_CONFIDENT``): real players
  seldom give a sure beat (rubato, swing, rests), and a clock that waited for one would hold
  through most of what they play;
- a reading the tracker is unsure of that lies at another metrical level of the clock's
  tempo (eighths taken for beats, triplets for eighths: ``tempo_follower.METRICAL_RATIOS``)
  is taken at the clock's level;
- with no beat offered (the player stopped, the tracker hears none) the tempo holds.

Its beats are kept near the beat offered: each beat is lengthened or shortened by
``PHASE_GAIN`` of the distance to the nearest beat offered, at most ``MAX_PHASE_STEP`` of a
beat. A clock passed on (MIDI clock, Link) is followed exactly: its tempo at once and its
beat, so Antiphon can bridge Link to a synthesizer's MIDI clock.

With ``on_tempo`` set, each change of the outgoing tempo is told to it on the beat (Link out).
With :attr:`ClockLeader.link` set (``clock`` link), the ticks follow the Link session's
timeline itself: each is due when Link's beat reaches it (asked on the sender's thread, a
call of a microsecond that never waits), so a peer's change of tempo goes out from the next
tick, and the clock starts on a Link downbeat (bars of the quantum). Peers that use Link's
start/stop sync start and stop it: Stop when they stop, Start on the next downbeat once they
play again. A DAW's MIDI clock passed on (:attr:`ClockLeader.passed_transport`, ``clock``
midi) does the same with its Stop and Start: Stop goes out, and once it starts again the clock
waits for the DAW's beat and starts on it; ``on_transport`` hears each (Link out: the
session's transport stops and starts with the DAW's).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol

from antiphon.daemon.musician.hearing.beat import CONFIDENT, BeatGrid
from antiphon.daemon.musician.hearing.tempo_follower import nearest_level

TICKS_PER_BEAT = 24
CLOCK_TICK = (0xF8,)
CLOCK_START = (0xFA,)
CLOCK_STOP = (0xFC,)
SONG_POSITION_ZERO = (0xF2, 0, 0)
# The most the tempo changes in one beat (a share of it). With MAX_PHASE_STEP (pulling one beat
# one way and the next the other), a beat is never more than 1.47 % longer or shorter than the
# one before: (1 + 0.001) / (1 - 0.001) / (1 - 0.0125) - 1. The rest of the 2 % a listener may
# see (issue 22) is left to the delivery: a tick up to 1.7 ms late (p99 at a JACK listener)
# makes the two beats either side of it differ by up to 0.6 % more at 100 bpm. At 1.5 % and
# 0.2 % (1.93 %), a listener saw 2.23 % (BENCHMARKS.md, "Round 17").
MAX_TEMPO_STEP = 0.0125
MAX_PHASE_STEP = 0.001  # the most one beat is stretched or shrunk to meet the beat offered
PHASE_GAIN = 0.25  # the share of the distance to the beat offered closed each beat
# The tracker's confidence from which a running clock follows its reading (the clock starts
# only from CONFIDENT). Chosen on the validation pieces of asap-piano and jazz-solos-dev
# (antiphon eval-clock) and on a player who plays out of time, where lower lets the clock
# drift (BENCHMARKS.md, "Ableton Link and the outgoing clock", "Round 14").
FOLLOW_CONFIDENT = 0.15
PASSED_ON = frozenset(("midi", "link"))  # clock sources followed exactly
MIN_TEMPO_BPM, MAX_TEMPO_BPM = 20.0, 300.0
START_MARGIN_S = 0.005  # the first tick is no sooner than this: the sender must wake for it

Bytes = tuple[int, ...]


class Timeline(Protocol):
    """A shared beat timeline any thread may ask (the Link session), in ``time.monotonic()``."""

    def beat_at(self, time_s: float, quantum: int) -> float: ...
    def time_at(self, beat: float, quantum: int) -> float: ...
    def transport(self) -> bool | None:
        """Whether the peers' transport runs; None while no peer uses start/stop."""
        ...


class Transport(Protocol):
    """A clock passed on that starts and stops (a DAW's MIDI clock)."""

    def transport(self, now_s: float) -> bool | None:
        """Whether it runs at ``now_s``; None while it has never started or stopped."""
        ...


class ClockLeader:
    """The outgoing clock (see the module docstring).

    Args:
        follow: how fast the outgoing tempo follows the beat offered (0-1), a share a beat.
        on_tempo: called with (tempo in bpm, the beat's time) on each beat the tempo changed.
        on_transport: called with (playing, from when) as a clock passed on
            (:attr:`passed_transport`) stops and starts: when it stops, and on its first beat
            once it plays again.
    """

    def __init__(
        self,
        follow: float = 0.5,
        on_tempo: Callable[[float, float], None] | None = None,
        on_transport: Callable[[bool, float], None] | None = None,
    ) -> None:
        self.follow = follow
        self.on_tempo = on_tempo
        self.on_transport = on_transport
        self._transport_told: bool | None = None  # what on_transport last heard
        self.active = False  # whether the clock runs (``clock_out`` is not off)
        self.midi = False  # whether MIDI clock goes out (the sender sends what tick() says)
        self._offered: BeatGrid | None = None
        self.link: tuple[Timeline, int] | None = None  # Link's timeline to follow, quantum
        self.passed_transport: Transport | None = None  # a MIDI clock's Start and Stop
        self._link_beat0: float | None = None  # the Link beat of tick 0, while following it
        self._halted = True  # off, or the Link peers or the DAW stopped: nothing goes out
        self.tempo_bpm: float | None = None  # the outgoing tempo; None before any beat
        self._next_tick_s = math.inf
        self._tick = 0  # ticks counted since the first beat (Start comes on a beat)
        self._tick_s = 0.0  # the current beat's tick period
        self._sending = False  # Start was sent and Stop not yet

    # Any thread ---------------------------------------------------------------------------

    def offer(self, grid: BeatGrid | None) -> None:
        """The beat now (None: none; the tempo holds). One reference swap."""
        self._offered = grid

    # The sender's thread --------------------------------------------------------------------

    def next_due_s(self, now_s: float) -> float | None:
        """When :meth:`tick` is next due (asked at ``now_s``); None while there is no tempo
        yet (nothing to send until a beat is offered) or while it is not :attr:`active`."""
        link, passed = self.link, self.passed_transport
        running = None if passed is None else passed.transport(now_s)
        self._halted = (
            not self.active
            or (link is not None and link[0].transport() is False)
            or running is False
        )
        if running is False and self._transport_told is not False:
            self._tell_transport(False, now_s)
        if self._halted:
            if self._sending:
                return now_s  # its Stop is due
            self.tempo_bpm = None  # going again, it starts afresh
            self._link_beat0 = None
            return None
        if self.tempo_bpm is None:
            if link is not None:
                self._begin_on_link(*link, now_s)
            elif (grid := self._offered) is not None and (
                grid.source in PASSED_ON or (running is None and grid.confidence >= CONFIDENT)
            ):
                self._begin(grid, now_s)  # a clock started again: on its own first beat
                if running is True and self._transport_told is not True:
                    self._tell_transport(True, self._next_tick_s)
            else:
                return None
        elif (link is None) != (self._link_beat0 is None):
            self._rebase(link)
        return self._next_tick_s

    def tick(self) -> list[Bytes]:
        """The messages due at :meth:`next_due_s`, and the clock moved on to the next tick.
        Switched on, MIDI clock starts on a beat (Song Position 0, Start, then the tick)."""
        sent: list[Bytes] = []
        if self.midi and not self._halted:
            if not self._sending and self._tick % TICKS_PER_BEAT == 0:
                self._sending = True
                sent.extend((SONG_POSITION_ZERO, CLOCK_START))
        elif self._sending:
            self._sending = False
            sent.append(CLOCK_STOP)
        if self._sending:
            sent.append(CLOCK_TICK)
        self._tick += 1
        link, beat0 = self.link, self._link_beat0
        if link is not None and beat0 is not None:
            self._next_tick_s = self._on_link(*link, beat0)
        else:
            self._next_tick_s += self._tick_s
            if self._tick % TICKS_PER_BEAT == 0:
                self._step_beat(self._next_tick_s)
        return sent

    def stop(self) -> list[Bytes]:
        """What to send when the clock goes away (the daemon stops): Stop, if it runs."""
        if self._sending:
            self._sending = False
            return [CLOCK_STOP]
        return []

    def _tell_transport(self, playing: bool, at_s: float) -> None:
        self._transport_told = playing
        if self.on_transport is not None:
            self.on_transport(playing, at_s)

    # The logic ----------------------------------------------------------------------------------

    def _begin(self, grid: BeatGrid, now_s: float) -> None:
        """The first beat offered: its tempo, and the first tick on its next beat."""
        self.tempo_bpm = _bounded(grid.tempo_bpm)
        self._tick_s = 60.0 / self.tempo_bpm / TICKS_PER_BEAT
        self._next_tick_s = grid.next_beat_s(now_s + START_MARGIN_S)
        self._tick = 0
        if self.on_tempo is not None:
            self.on_tempo(self.tempo_bpm, self._next_tick_s)

    def _begin_on_link(self, timeline: Timeline, quantum: int, now_s: float) -> None:
        """Start on Link's next downbeat."""
        beat = timeline.beat_at(now_s + START_MARGIN_S, quantum)
        self._link_beat0 = float(math.ceil(beat / quantum) * quantum)
        self._tick = 0
        self._next_tick_s = self._on_link(timeline, quantum, self._link_beat0)

    def _rebase(self, link: tuple[Timeline, int] | None) -> None:
        """The clock followed changed (to or from Link) while it runs: go on from the tick
        due, on the new one's beats."""
        if link is None:
            self._link_beat0 = None  # the tempo of Link's last beat goes on
            return
        timeline, quantum = link
        beat = timeline.beat_at(self._next_tick_s, quantum) - self._tick / TICKS_PER_BEAT
        self._link_beat0 = float(round(beat))
        self._next_tick_s = self._on_link(timeline, quantum, self._link_beat0)

    def _on_link(self, timeline: Timeline, quantum: int, beat0: float) -> float:
        """When the next tick is due on Link's timeline; on a beat, the tempo there."""
        beat = beat0 + self._tick / TICKS_PER_BEAT
        due_s = timeline.time_at(beat, quantum)
        if self._tick % TICKS_PER_BEAT == 0:
            beat_s = timeline.time_at(beat + 1.0, quantum) - due_s
            if beat_s > 0.0:
                self._tick_s = beat_s / TICKS_PER_BEAT
                tempo = 60.0 / beat_s
                if tempo != self.tempo_bpm:
                    self.tempo_bpm = tempo
                    if self.on_tempo is not None:
                        self.on_tempo(tempo, due_s)
        return due_s

    def _step_beat(self, beat_at_s: float) -> None:
        """At the beat at ``beat_at_s``: the tempo and the length of the next beat."""
        tempo = self.tempo_bpm
        grid = self._offered
        if tempo is None or grid is None or grid.confidence < FOLLOW_CONFIDENT:
            return  # no beat offered, or none heard: the tempo holds
        target = _bounded(grid.tempo_bpm)
        if grid.source in PASSED_ON:
            new_tempo = target
            beat_s = _to_nearest_beat(grid, beat_at_s, 60.0 / new_tempo)
        else:
            if grid.confidence < CONFIDENT:
                target = nearest_level(target, tempo)
            limit = MAX_TEMPO_STEP * tempo
            new_tempo = tempo + max(-limit, min(limit, self.follow * (target - tempo)))
            beat_s = 60.0 / new_tempo
            error_s = _offset_to_nearest_beat(grid, beat_at_s)
            limit_s = MAX_PHASE_STEP * beat_s
            beat_s += max(-limit_s, min(limit_s, PHASE_GAIN * error_s))
        self._tick_s = beat_s / TICKS_PER_BEAT
        if new_tempo != tempo:
            self.tempo_bpm = new_tempo
            if self.on_tempo is not None:
                self.on_tempo(new_tempo, beat_at_s)


def _bounded(tempo_bpm: float) -> float:
    return min(MAX_TEMPO_BPM, max(MIN_TEMPO_BPM, tempo_bpm))


def _offset_to_nearest_beat(grid: BeatGrid, time_s: float) -> float:
    """How far the beat offered nearest ``time_s`` is after it (negative: before it)."""
    beats = (time_s - grid.anchor_s) / grid.beat_s
    return (round(beats) - beats) * grid.beat_s


def _to_nearest_beat(grid: BeatGrid, beat_at_s: float, beat_s: float) -> float:
    """The length of the beat from ``beat_at_s`` that ends on the clock's beat after it
    (a clock passed on is followed beat for beat)."""
    next_beat_s = grid.next_beat_s(beat_at_s + 0.5 * beat_s)
    return next_beat_s - beat_at_s
