"""The performer: the one thread that owns the engine, hears the player and plays the replies.

Other threads reach it only through what it inherits from
:class:`~antiphon.daemon.musician.playing.performer_controls.PerformerControls`: the MIDI callback's
``submit``, the
parameters, the commands, listeners and status, which queue what they ask and never block.
:meth:`Performer.run` is the performer's thread: it blocks on that queue with a timeout until
the next due moment (the call's end and shortly before it, the next reply event, a note's
maximum length) and does all the work: it feeds the player's events to the engine as they
arrive, detects the end of the call, generates and plays the reply, runs the commands (a
model swap waits for the reply to end) and sends every output message
(:class:`~antiphon.daemon.midi.outlet.Outlet`).

For tests and files (``antiphon respond``), :meth:`process_until` drives the same logic on a
:class:`ManualClock` without threads or sleeping.

Answering on time: shortly before the call's deadline the reply is already made, and
withdrawn without a trace if anything comes first
(:mod:`antiphon.daemon.musician.answering.speculation`).

With ``mode`` duet or both, a part of Antiphon's own plays while the player plays, drawn
between the player's events from the same state (:mod:`antiphon.daemon.musician.playing.duet`); the
player's events roll back what it drew ahead, as they do a reply's.

Input hygiene, echo suppression and the flood policy live in :mod:`antiphon.daemon.midi.intake`.

The player's All Notes Off / All Sound Off (CC123 / CC120) ends the player's held notes and
stops the reply. With ``thru``, the player's notes (not the pedal) are echoed to the output.
Keys still held after ``held_key_timeout_s`` with no input at all lost their note-off, most
likely: they count as released then, the same way (see :meth:`PhraseDetector.release_stale`).
"""

from __future__ import annotations

import ctypes
import logging
import math
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from antiphon.daemon.midi.intake import ALL_OFF, END_PHRASE, NOTE_OFF, NOTE_ON, SUSTAIN, WAKE, Item
from antiphon.daemon.midi.outlet import MidiSink, Outlet
from antiphon.daemon.musician.answering.follow import HeardCall
from antiphon.daemon.musician.answering.memory import PlayerMemory
from antiphon.daemon.musician.answering.reply import Reply, Timed, format_planned
from antiphon.daemon.musician.answering.shaping import SHAPING_KNOBS
from antiphon.daemon.musician.answering.speculation import (
    SPECULATE_BEFORE_S,
    TAKEN_IN_STRIDE,
    Speculator,
)
from antiphon.daemon.musician.clocks.beat_keeper import ReplyPlan
from antiphon.daemon.musician.hearing.beat import BeatGrid
from antiphon.daemon.musician.hearing.phrase import Call, PhraseDetector
from antiphon.daemon.musician.hearing.turns import BeatSource, TurnJudge
from antiphon.daemon.musician.model.engine import Engine, EngineState
from antiphon.daemon.musician.model.voices import Voices
from antiphon.daemon.musician.playing.duet import (
    DUET_KNOBS,
    DUET_MODES,
    duet_end_s,
    duet_grid_guess,
)
from antiphon.daemon.musician.playing.performer_controls import (
    STATE_SLOTS,
    LinkFactory,
    PerformerControls,
)
from antiphon.daemon.settings import AUTO_MODEL, Settings
from antiphon.daemon.surface.parameters import PARAMETER_NAMES, ParameterError, Parameters

# Also importable from here, where callers have always found them.
__all__ = ["STATE_SLOTS", "ManualClock", "MidiSink", "ParameterError", "Performer"]

log = logging.getLogger(__name__)

IDLE_WAIT_S = 0.5  # longest block on the queue, so a stop request is seen without a wake
ON_CPU_WAIT_S = 0.002  # the end of a wait for a due moment, spent on the CPU (see _wait)
REALTIME_ON_CPU_WAIT_S = 0.0005  # the same, on a realtime thread
TURNING_WITHIN_S = 5.0  # a loop this late means the performer's thread hangs
CLOSE_WAIT_S = 1.0  # how long close() waits for a running performer thread to finish
DROP_LOG_INTERVAL_S = 5.0
REPORTS_KEPT = 256
# A call noticed later than this after its end (a busy machine, a backlog of input) is
# answered from now rather than from its end: better a late reply than a rushed one.
MAX_START_LATE_S = 0.030
PR_SET_TIMERSLACK = 29  # Linux prctl: how long the kernel may defer this thread's timed waits


class Aftermath:
    """What the player's last event left to do once the part's due notes are out: the note-on
    the beat tracker, the player's memory and the duet part have not heard yet (pitch,
    velocity, time), the pause it ended that the turn judge has not been told, and whether a
    silence may want judging."""

    def __init__(self) -> None:
        self.note_on: tuple[int, int, float] | None = None
        self.pause_s: float | None = None
        self.judge = False

    @property
    def pending(self) -> bool:
        return self.judge or self.note_on is not None or self.pause_s is not None

    def take_hearing(self) -> tuple[tuple[int, int, float] | None, float | None]:
        """The note-on and the pause, leaving neither (the judging stays)."""
        taken = (self.note_on, self.pause_s)
        self.note_on = self.pause_s = None
        return taken


class ManualClock:
    """A clock that only moves when told to: the time of a simulated performance."""

    def __init__(self, start_s: float = 0.0) -> None:
        self.now_s = start_s

    def __call__(self) -> float:
        return self.now_s

    def advance_to(self, time_s: float) -> None:
        self.now_s = max(self.now_s, time_s)


class Performer(PerformerControls):
    """Call and response on one input and one output: the performer's thread.

    Args:
        settings: the daemon's settings (the live-tunable ones become :attr:`parameters`).
        engine: the loaded model; the performer owns it from now on.
        sink: where output messages go.
        clock: seconds, monotonic; ``submit``'s ``time_s`` must come from the same clock.
            A :class:`ManualClock` enables :meth:`process_until`.
        speculate_before_s: how long before the call's deadline the reply is made; 0 makes
            it at the deadline.
        link: joins the Ableton Link session when first asked for (None: never).
        voices: with ``--model auto``, the two engines to choose from at each call's end
            (``engine`` is the one that plays first); None plays ``engine`` only.
    """

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        sink: MidiSink,
        *,
        clock: Callable[[], float] = time.monotonic,
        speculate_before_s: float = SPECULATE_BEFORE_S,
        link: LinkFactory | None = None,
        voices: Voices | None = None,
    ) -> None:
        super().__init__(settings, engine, link)
        self._voices = voices
        self._clock = clock
        # Timed messages go out this much before their time (``output_ahead_ms``): every
        # due moment of a reply or a duet part is this much earlier, and the part or reply
        # plays what is due by then.
        self._ahead_s = settings.output_ahead_ms / 1000.0
        self._outlet = Outlet(sink, clock, self._gate, self._ahead_s)
        self._applied: Parameters | None = None
        self._phrase = PhraseDetector(self._params.phrase_gap_s, settings.held_key_timeout_s)
        self._heard = HeardCall()  # the call in progress, for following it
        self._speculator = Speculator(
            self._conversation, speculate_before_s, heard=self._heard, memory=self.memory
        )
        self._turns = TurnJudge()
        self._answered_silence_s: float | None = None  # the silence the last reply answered
        self._aftermath = Aftermath()  # the player's last event's work that can wait
        # Where the turn-taking judge hears the beat. None: it judges without one. Wired to the
        # beat this performer keeps, the single-line validation median delay went from 0.10 s
        # to 0.43 s (a rest is waited out to the next beat), so it is not wired by default.
        self.beat_source: BeatSource | None = None
        self.last_call: Call | None = None  # the call last found over (answered or not)
        self._reply_grid: BeatGrid | None = None  # the beat the reply playing keeps
        self._slots: dict[int, EngineState] = {}
        self._memory_slots: dict[int, PlayerMemory] = {}
        self._next_engine: Engine | None = None
        self._drops_logged = 0
        self._drops_logged_s = -DROP_LOG_INTERVAL_S
        # Lifecycle.
        self._runner: threading.Thread | None = None
        self._run_exited = threading.Event()
        self._turned_s: float | None = None  # when run() last went round its loop
        self._on_cpu_wait_s = ON_CPU_WAIT_S  # run() sets it for its thread (see _wait)
        self._stop_requested = False
        self._close_lock = threading.Lock()

    # The performer's thread -------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """The performer's thread body: until ``stop`` is set or :meth:`close` is called.

        On the way out (also by an exception) every sounding note is released.
        """
        self._runner = threading.current_thread()
        self._run_exited.clear()
        _tighten_timer_slack()
        self._on_cpu_wait_s = REALTIME_ON_CPU_WAIT_S if _realtime() else ON_CPU_WAIT_S
        try:
            while not stop.is_set() and not self._stop_requested:
                self._turned_s = self._clock()
                item = self._wait(self.next_due_s())
                if item is not None and item[0] != WAKE:
                    self._send_part_due(self._clock())
                    self._take(item)
                self._service(self._clock())
        finally:
            self.close()
            self._runner = None
            self._run_exited.set()

    def _wait(self, due_s: float | None) -> Item | None:
        """The next input item, or None once ``due_s`` (None: nothing due) or ``IDLE_WAIT_S``
        has come. The last ``ON_CPU_WAIT_S`` before ``due_s`` are waited on the CPU: a timed
        wait ends up to a millisecond or more late on a busy machine, and the due moments
        are when notes leave (the reply's first one at the call's deadline). On a realtime
        thread only the last ``REALTIME_ON_CPU_WAIT_S``: the kernel wakes it sooner, and
        while it waits on the CPU no thread of a lower priority gets that core (a JACK
        server set up below it, as the bench's is, loses cycles)."""
        gate, clock, on_cpu_s = self._gate, self._clock, self._on_cpu_wait_s
        if due_s is None:
            return gate.take(IDLE_WAIT_S)
        item = gate.take(min(IDLE_WAIT_S, due_s - clock() - on_cpu_s))
        if item is not None or due_s - clock() > on_cpu_s:
            return item
        while clock() < due_s:
            if gate.waiting:
                return gate.take(0.0)
            time.sleep(0)  # a moment for the other threads (the MIDI input's callback)
        return None

    def process_until(self, time_s: float) -> None:
        """Simulated time: handle the queued input and everything due up to ``time_s``.

        Needs a :class:`ManualClock`, which this moves forward.
        """
        clock = self._clock
        if not isinstance(clock, ManualClock):
            raise TypeError("process_until needs a ManualClock")
        while True:
            self._drain()
            due_s = self.next_due_s()
            if due_s is None or due_s > time_s:
                break
            clock.advance_to(due_s)
            self._service(clock.now_s)
        clock.advance_to(time_s)
        self._drain()
        self._service(clock.now_s)

    def next_due_s(self) -> float | None:
        """When the performer next has something to do (None: nothing until input comes)."""
        if self._gate.waiting or not self._commands.empty() or self._aftermath.pending:
            return self._clock()  # input, commands or an event's aftermath waiting: now
        if self._params is not self._applied and self._speculator.holding:
            return self._clock()  # the reply made ahead takes the new values now
        reply = self._reply
        phrase = self._phrase
        if reply is not None:
            due_s = None if (reply_s := reply.next_due_s()) is None else reply_s - self._ahead_s
        else:
            due_s = self._speculation_due_s()
        if (part := self._duet.part) is not None and (part_s := part.next_due_s()) is not None:
            part_s -= self._ahead_s
            due_s = part_s if due_s is None else min(due_s, part_s)
        for other_s in (phrase.deadline(), phrase.stale_due_s()):
            if other_s is not None and (due_s is None or other_s < due_s):
                due_s = other_s
        return due_s

    def turning(self, within_s: float = TURNING_WITHIN_S) -> bool:
        """Whether :meth:`run` went round its loop within ``within_s`` (it does at least every
        ``IDLE_WAIT_S``): false when the thread hangs or is gone. The systemd watchdog asks."""
        turned_s = self._turned_s
        return turned_s is not None and self._clock() - turned_s < within_s

    def _drain(self) -> None:
        while (item := self._gate.take(0.0)) is not None:
            if item[0] != WAKE:
                self._take(item)

    def _apply_parameters(self) -> Parameters:
        params = self._params
        if params is not self._applied:
            engine = self._conversation.engine
            applied = self._applied
            redraw = (engine.temperature, engine.noise) != (params.temperature, params.noise)
            reshape = applied is not None and any(
                getattr(applied, k) != getattr(params, k) for k in SHAPING_KNOBS
            )
            if applied is not None and all(
                getattr(applied, k) == getattr(params, k)
                for k in PARAMETER_NAMES
                if k not in TAKEN_IN_STRIDE
            ):
                self._speculator.adjust(params, redraw=redraw, reshape=reshape)
            else:
                self._speculator.withdraw()  # made with the parameters of before
            reply = self._reply
            if reply is not None:
                reply.max_note_s = params.max_note_s
                if redraw:
                    reply.rewind()  # the events drawn ahead are drawn again with the new ones
                if reshape:
                    reply.reshape(self._speculator.shaping(params, self._clock()))
            part = self._duet.part
            if part is not None:
                part.max_note_s = params.max_note_s
                if applied is not None and any(
                    getattr(applied, k) != getattr(params, k) for k in DUET_KNOBS
                ):
                    self._duet.reshape(self._conversation, self.memory, params)
                elif redraw:
                    part.rewind()
            engine.temperature, engine.noise = params.temperature, params.noise
            # Playing along, each of the player's events enters the state in one run.
            self._conversation.hears_in_runs = params.mode in DUET_MODES
            leader = self.clock_leader
            leader.follow = params.clock_out_follow
            leader.midi = params.clock_out in ("midi", "both")
            leader.active = params.clock_out != "off"
            session = self._beat.link
            if session is not None and params.clock == "link":
                leader.link = (session, params.link_quantum)  # asked for its beat at each beat
            else:
                leader.link = None
            # A DAW's clock passed on: its Stop and Start go out too.
            leader.passed_transport = self._beat.clock if params.clock == "midi" else None
            self._phrase.gap_s = params.phrase_gap_s
            if params.turns != "auto":
                self._phrase.wait_s = None
            self._applied = params
        return params

    def _take(self, item: Item) -> None:
        """One of the player's events, fed as it arrives. What the model and the parts need at
        once is done here, the model's feed as early as it can be; what can wait (the beat
        tracker, the player's memory, the duet part's hearing and beat, the turn judge) is
        left in :attr:`_aftermath` for :meth:`_service`, once the part's due notes are out."""
        code, time_s, channel, data1, data2 = item
        self._speculator.withdraw()  # the call goes on (or ends now)
        params = self._apply_parameters()
        self._catch_up(params)  # an event taken before the last one's aftermath was done
        self._release_stale(time_s)  # held keys that timed out before this event
        reply = self._reply
        answer_over = reply is None or (reply.notes_played > 0 and not len(reply.sounding))
        if reply is not None:
            reply.rewind()  # the unplayed events go; the player's event comes first
            if code == ALL_OFF or (code == NOTE_ON and not params.overlap):
                self._end_reply(reply.stop(time_s))
        part = self._duet.part
        if part is not None:
            if code == NOTE_ON and params.mode in DUET_MODES:
                self.notes_out += self._outlet.emit(part.strike_with(time_s, self._clock()), part)
            part.rewind()  # what the duet part drew ahead goes too
            if code == ALL_OFF:
                self._end_duet(part.stop(time_s))
        conversation, phrase, key = self._conversation, self._phrase, (channel, data1)
        aftermath = self._aftermath
        if code == NOTE_ON:
            if params.thru:
                self._outlet.send_all(self._outlet.thru.start(channel, data1, data2, time_s))
            if params.mode in DUET_MODES:
                started_s = time.perf_counter()
                conversation.note_on(data1, data2, time_s)
                self._duet.reactions.add(time.perf_counter() - started_s)
            else:
                conversation.note_on(data1, data2, time_s)
            aftermath.note_on = (data1, data2, time_s)
            if phrase.poll(time_s) is not None:
                log.debug("the player went on before the call was answered")
            if (silence_start_s := phrase.silence_start_s) is not None:
                aftermath.pause_s = self._silence_heard_s(silence_start_s, time_s, answer_over)
            self._turns.key_down(key, time_s, data2)
            self.notes_in += 1
            self._heard.note_on(data1, data2, time_s)
            phrase.note_on(key, time_s)
        elif code == NOTE_OFF:
            self._outlet.send_all(self._outlet.thru.stop(channel, data1))
            conversation.note_off(data1, time_s)
            self._heard.note_off(data1, time_s)
            self._turns.key_up(key, time_s)
            phrase.note_off(key, time_s)
        elif code == SUSTAIN:
            conversation.sustain(data2, time_s)
            phrase.sustain(data2 >= 64, time_s)
        elif code == ALL_OFF:
            self._outlet.release_thru()
            conversation.all_notes_off(time_s)
            self._heard.release_all(time_s)
            self._turns.all_up()
            phrase.all_notes_off(time_s)
        elif code == END_PHRASE:
            call = phrase.end_now(time_s)
            if call is not None:
                self._answer(call, self._clock())
        if (part := self._duet.part) is not None:
            part.rebase(time_s)  # its time is the player's from here
        aftermath.judge = phrase.silence_start_s is not None

    def _catch_up(self, params: Parameters, *, judging: bool = True) -> None:
        """The work the player's last event left (:class:`Aftermath`), in the order it was
        heard: the beat tracker hears the note-on, the turn judge the pause it ended, the
        player's memory and the duet part the note, and (``judging``) a silence that began
        is judged."""
        aftermath = self._aftermath
        note_on, pause_s = aftermath.take_hearing()
        if note_on is not None:
            self._beat.hear_player(note_on[2])
        if pause_s is not None:
            self._turns.heard_pause(pause_s)
        if note_on is not None:
            pitch, velocity, time_s = note_on
            self.memory.note_on(pitch, time_s)
            if params.mode in DUET_MODES:
                self._duet_hears(pitch, velocity, time_s, params)
        if judging and aftermath.judge:
            aftermath.judge = False
            self._judge_silence(params)

    def _silence_heard_s(self, silence_start_s: float, time_s: float, answer_over: bool) -> float:
        """How long the silence the player ends at ``time_s`` was, as the turn judge learns
        it: as long as it was, unless a reply answered it and the player went on once the
        answer was over (``answer_over``: the reply had ended, or played and fallen silent):
        then they went on because the answer was, not because their breath was, and the
        silence ended their call whatever its length (inf). An answer inside a breath, the
        player going on over it, is learnt as the breath it was."""
        if self._answered_silence_s == silence_start_s and answer_over:
            return math.inf
        return time_s - silence_start_s

    def _judge_silence(self, params: Parameters) -> None:
        """With ``turns`` ``auto``, when a silence has just begun (the model has heard the last
        release): how long it must last to end the call, decided now, so the call has a
        deadline and the reply is made ahead of it
        (:mod:`~antiphon.daemon.musician.hearing.turns`)."""
        phrase, engine = self._phrase, self._conversation.engine
        silence_start_s = phrase.silence_start_s
        if (
            params.turns != "auto"
            or silence_start_s is None
            or phrase.wait_s is not None
            or not phrase.in_call
            or not engine.ready
        ):
            return
        beat_source = self.beat_source
        beat = beat_source.beat_after(silence_start_s) if beat_source is not None else None
        phrase.wait_s = self._turns.wait_s(
            params.eagerness, params.phrase_gap_s, silence_start_s, beat
        )
        log.debug(
            "silence at %.3f s: the call is over after %.3f s of it", silence_start_s, phrase.wait_s
        )

    def _service(self, now_s: float) -> None:
        """Everything due at ``now_s``: commands, the call's end, the reply's events."""
        if self._aftermath.pending:  # what the player's last event left, before any command
            self._catch_up(self._apply_parameters(), judging=False)
        while not self._commands.empty():  # only this thread takes: then a get succeeds
            name, argument = self._commands.get(False)
            self._speculator.withdraw()
            self._run_command(name, argument, now_s)
        params = self._apply_parameters()
        self._beat.follow_clock()
        if params.clock_out != "off":
            self.clock_leader.offer(self._beat.lead_grid(now_s, params.clock, params.link_quantum))
        self._release_stale(now_s)
        call = self._phrase.poll(now_s)
        if call is not None:
            self._answer(call, now_s)
        reply = self._reply
        if reply is not None:
            if params.mode not in ("call_response", "both"):
                self._end_reply(reply.stop(now_s))
            else:
                self._play(reply, now_s)
        part = self._duet.part
        if part is not None:
            if params.mode not in DUET_MODES:
                self._end_duet(part.stop(now_s))
            else:
                self._play_duet(part, now_s)
        if self._next_engine is not None and self._reply is None and self._duet.part is None:
            self._swap_engine(self._next_engine)
        self._catch_up(params)  # a silence the last event began, judged once the notes are out
        self._speculate(now_s)
        dropped = self.dropped
        if dropped != self._drops_logged and now_s - self._drops_logged_s >= DROP_LOG_INTERVAL_S:
            log.warning("input flood: %d messages dropped so far", dropped)
            self._drops_logged, self._drops_logged_s = dropped, now_s

    def _release_stale(self, now_s: float) -> None:
        """Keys held with no input at all for ``held_key_timeout_s`` (a lost note-off, most
        likely) count as released then: the call can end, thru notes stop, the model hears
        every note end and the pedal lift."""
        phrase = self._phrase
        due_s = phrase.stale_due_s()
        if due_s is None or now_s < due_s:
            return
        keys = phrase.release_stale(now_s)
        log.warning(
            "no input for %g s with %d key(s) held (%s): taken as released; a lost note-off?",
            phrase.held_timeout_s,
            len(keys),
            " ".join(f"{pitch}/ch{channel + 1}" for channel, pitch in keys),
        )
        self._speculator.withdraw()
        if self._reply is not None:
            self._reply.rewind()  # the player's side is fed first, as in _take
        if self._duet.part is not None:
            self._duet.part.rewind()
        self._outlet.release_thru()
        self._turns.all_up()
        self._conversation.all_notes_off(due_s)
        self._judge_silence(self._apply_parameters())

    def _answer(self, call: Call, now_s: float) -> None:
        self.last_call = call
        params = self._apply_parameters()  # new parameters withdraw the speculation
        if self._reply is not None:
            self._end_reply(self._reply.stop(now_s))
        part = self._duet.part
        if part is not None:
            if params.mode == "duet":  # it plays to the end of the bar (and carries on)
                grid = self._duet.grid
                part.finish_by(duet_end_s(call.last_sound_s, now_s, grid, params.carry_bars))
            else:  # the phrase answer takes the gap
                self._end_duet(part.stop(now_s))
        self._choose_voice(now_s)
        earliest_s = call.ended_s if now_s - call.ended_s <= MAX_START_LATE_S else now_s
        plan = self._plan(call, earliest_s, now_s, params)
        answering = params.mode in ("call_response", "both")
        reply = self._speculator.take(call, plan.start_s, answering)
        if not answering:
            return
        if reply is None:
            reply = self._speculator.prepare(call, plan, params)
        if reply is None:
            return
        self._reply = reply
        self._reply_grid = plan.grid
        self._answered_silence_s = self._phrase.silence_start_s
        self._play(reply, now_s, starting=True)  # the first note, at once

    def _speculation_due_s(self) -> float | None:
        """When to make the reply ahead of the call's deadline (None: not now, or done)."""
        if self._reply is not None or self._duet.part is not None:
            return None  # (a reply made ahead would draw from the state the part draws from)
        return self._speculator.due_s(self._phrase.deadline())

    def _speculate(self, now_s: float) -> None:
        self._speculator.draw_again()
        due_s = self._speculation_due_s()
        if due_s is None or now_s < due_s:
            return
        params = self._apply_parameters()
        call = self._phrase.pending_call()
        if call is not None:
            self._choose_voice(now_s)
            plan = self._plan(call, call.ended_s, now_s, params)
            self._speculator.make_ahead(call, params, plan)

    def _choose_voice(self, now_s: float) -> None:
        """With ``--model auto``, the voice for the call just over, switched before its reply
        is made, never during one (:mod:`~antiphon.daemon.musician.model.voices`)."""
        voices = self._voices
        if voices is None or self._reply is not None or self._duet.part is not None:
            return  # (a duet part's marks hold the playing model's states)
        engine = voices.pick(self._heard.notes(now_s), self._conversation.engine)
        if engine is None:
            return
        self._conversation.replace_engine(engine)
        self._slots.clear()  # states of the other model
        self._memory_slots.clear()
        self._notify("model", str(engine.path))

    def _plan(self, call: Call, earliest_s: float, now_s: float, params: Parameters) -> ReplyPlan:
        """When the reply to ``call`` starts and the beat it keeps (see
        :class:`~antiphon.daemon.musician.clocks.beat_keeper.BeatKeeper`)."""
        return self._beat.plan(
            call.start_s,
            call.last_sound_s,
            earliest_s,
            now_s,
            params.clock,
            params.reply_start,
            params.groove,
            params.link_quantum,
        )

    def _play(self, reply: Reply, now_s: float, *, starting: bool = False) -> None:
        """Send the reply's events due by ``now_s``, then draw the coming ones ahead."""
        while timed := reply.advance(now_s + self._ahead_s):
            self._emit(timed, reply)
        if starting:
            self._notify("replying", True)  # after the first note: listeners take time
        if reply.done:
            self._end_reply([])
        else:
            self._keep_link_tempo(reply, now_s)
            reply.draw_ahead()

    def _keep_link_tempo(self, reply: Reply, now_s: float) -> None:
        """A reply on Link's beat keeps the session's tempo: changed by a peer mid-reply, it
        is the new one from the next event drawn (the beat stays the session's)."""
        grid, session = self._reply_grid, self._beat.link
        if grid is None or grid.source != "link" or session is None:
            return
        current = session.grid(now_s, grid.beats_per_bar)
        if current is None or current.beat_s == grid.beat_s:
            return
        self._reply_grid = replace(current, subdivision=grid.subdivision)
        reply.regrid(self._reply_grid)

    def _duet_hears(self, pitch: int, velocity: int, time_s: float, params: Parameters) -> None:
        """The player's note-on (fed, and heard by the beat tracker), in a duet mode: the part
        carries on (or starts, from the player's time), and keeps the beat as it now is."""
        duet = self._duet
        duet.hear(pitch, velocity, time_s)
        part = duet.part
        if part is None:
            if self._reply is not None or not self._conversation.engine.ready:
                return  # a reply goes on (overlap): no second voice drawing from the state
            part = duet.start(self._conversation, self.memory, time_s, params, self._clock)
            part.rebase(time_s)  # its time is the player's from here (as a going part's is)
            self._notify("duet", True)
        elif part.finishing:
            part.finish_by(None)  # the player went on: so does the part
        if duet.beat_due(time_s):
            grid = None
            if params.clock != "off":
                grid = self._beat.grid(time_s, params.clock, params.link_quantum)
                grid = grid or duet_grid_guess(self._beat.tracker.estimate())
            duet.follow_beat(grid)

    def _play_duet(self, part: Reply, now_s: float) -> None:
        """Send the duet part's events due by ``now_s``, then draw the coming ones ahead."""
        while timed := part.advance(now_s + self._ahead_s):
            self.notes_out += self._outlet.emit(timed, part)
        if part.done:
            self._end_duet([])
        else:
            part.draw_ahead()

    def _send_part_due(self, now_s: float) -> None:
        """Send the duet part's events due by ``now_s`` and drawn already, before the player's
        event that came with them is taken (it would roll them back and keep them waiting for
        its handling, a millisecond or more) and before anything is drawn."""
        part = self._duet.part
        if part is not None and self._params.mode in DUET_MODES:
            while timed := part.advance(now_s + self._ahead_s, draw=False):
                self.notes_out += self._outlet.emit(timed, part)

    def _end_duet(self, release: list[Timed]) -> None:
        part = self._duet.part
        if part is None:
            return
        self.notes_out += self._outlet.emit(release, part)
        part.settle()  # the model hears the notes it was stopped on, once they are sent
        self._duet.part = None
        report = part.report()  # after the last message: off the hot path
        heard, reaction_p50_ms, reaction_p99_ms, reaction_max_ms = self._duet.reactions.summary_ms()
        self._duet.reactions.clear()
        log.info(
            "duet part: notes=%d seconds=%.3f interrupted=%s schedule_error_mean_ms=%.3f "
            "schedule_error_max_ms=%.3f heard=%d reaction_p50_ms=%.3f reaction_p99_ms=%.3f "
            "reaction_max_ms=%.3f",
            report.notes,
            report.seconds,
            report.interrupted,
            report.schedule_error_mean_ms,
            report.schedule_error_max_ms,
            heard,
            reaction_p50_ms,
            reaction_p99_ms,
            reaction_max_ms,
        )
        if log.isEnabledFor(logging.DEBUG):  # for `bench_duet`'s timing at the listener
            log.debug("duet messages planned=%s", format_planned(part.sent))
        self._notify("duet", False)

    def _end_reply(self, release: list[Timed]) -> None:
        reply = self._reply
        if reply is None:
            return
        self._emit(release, reply)
        reply.settle()  # the model hears the notes it was stopped on, once they are sent
        self._reply = None
        self.replies += 1
        report = reply.report()
        self._reports = (*self._reports[-(REPORTS_KEPT - 1) :], report)
        if log.isEnabledFor(logging.DEBUG):  # after the last message: off the hot path
            log.debug("reply: %s", report)
            log.debug(
                "reply messages phrase_end_s=%.6f planned=%s",
                report.phrase_end_s,
                format_planned(reply.sent),
            )
        self._notify("replying", False)
        self._notify("reply", report.to_dict())

    def _run_command(self, name: str, argument: Any, now_s: float) -> None:
        engine = self._conversation.engine
        if name == "panic":
            self._release_everything(now_s)
            self._notify("panic", True)
        elif name == "reset":
            if self._reply is not None:
                self._end_reply(self._reply.stop(now_s))
            if self._duet.part is not None:
                self._end_duet(self._duet.part.stop(now_s))
            engine.reset()
            self.memory.clear()
            self._beat.reset()
            self._notify("state", "reset")
        elif name == "memory_clear":
            self.memory.clear()
            self._notify("state", "memory cleared")
        elif name == "save":
            if self._reply is not None:
                self._reply.rewind()
            if self._duet.part is not None:
                self._duet.part.rewind()
            self._slots[argument] = engine.get_state()
            self._memory_slots[argument] = self.memory.snapshot()
            self._notify("state", f"saved {argument}")
        elif name == "load":
            state = self._slots.get(argument)
            if state is None:
                self._notify("error", f"state slot {argument} is empty")
                return
            if self._reply is not None:
                self._end_reply(self._reply.stop(now_s))
            if self._duet.part is not None:
                self._end_duet(self._duet.part.stop(now_s))
            engine.set_state(state)
            self.memory.restore(self._memory_slots[argument])
            self._notify("state", f"loaded {argument}")
        elif name == "swap":
            self._next_engine = argument
        elif name == "voices":
            self._voices = argument  # the next call's end chooses
            self._notify("model", AUTO_MODEL)

    def _swap_engine(self, engine: Engine) -> None:
        old = self._conversation.engine
        self._voices = None  # a model asked for by name plays until told otherwise
        engine.rng, engine.noise_rng = old.rng, old.noise_rng
        self._conversation.replace_engine(engine)
        self._next_engine = None
        self._applied = None
        self._slots.clear()
        self._memory_slots.clear()
        with self._previous_lock:
            held = [self._previous_engine] if self._previous_engine is not None else []
            self._previous_engine = old
        if held:
            _let_go(held)
        log.info("now playing %s", engine.path)
        self._notify("model", str(engine.path))

    # Output -------------------------------------------------------------------------------------

    def _emit(self, timed: list[Timed], reply: Reply) -> None:
        self.notes_out += self._outlet.emit(timed, reply)
        for planned_s, message in timed:
            if message.type == "note_on" and message.velocity > 0:
                self._beat.hear_reply(planned_s)

    def _release_everything(self, now_s: float) -> None:
        self._speculator.withdraw()
        if self._reply is not None:
            self._end_reply(self._reply.stop(now_s))
        if self._duet.part is not None:
            self._end_duet(self._duet.part.stop(now_s))
        self._outlet.release_all()

    # Lifecycle ------------------------------------------------------------------------------------

    def close(self) -> None:
        """Release every sounding note and send All Notes Off on every channel used.

        Safe on every exit path and idempotent. From another thread while :meth:`run` is
        going on, it first asks the performer's thread to stop (which then does the release)
        and waits up to ``CLOSE_WAIT_S`` for it.
        """
        runner = self._runner
        if runner is not None and runner is not threading.current_thread():
            self._stop_requested = True
            self._wake()
            self._run_exited.wait(CLOSE_WAIT_S)
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
            self._gate.closed = True
        self._release_everything(self._clock())


def _realtime() -> bool:
    """Whether this thread runs under a realtime policy (``chrt --fifo``, the realtime
    set-up of docs/service.md)."""
    try:
        return os.sched_getscheduler(0) in (os.SCHED_FIFO, os.SCHED_RR)
    except (AttributeError, OSError):  # not Linux: no realtime policies to ask about
        return False


def _tighten_timer_slack() -> None:
    """Let this thread's timed waits (on the input queue, until the next due moment) end on
    time: Linux defers them by up to the thread's timer slack, 50 us by default."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0)
        except (OSError, AttributeError) as err:  # no libc to ask: the default slack stays
            log.debug("timer slack unchanged: %s", err)


def _let_go(held: list[Engine]) -> None:
    """Free a model no longer kept and give its memory back, off the performer's thread.

    glibc keeps the heap a freed model used, so each swap left RSS a step higher (the
    30-minute soak's 8.6 MB an hour, in steps at the swaps); ``malloc_trim`` returns it. Twelve
    swaps between the two shipped models in one process: RSS 75 to 83 MB without it, 69 to
    72 MB with it. ``held`` is the only reference, emptied by the thread.
    """

    def release() -> None:
        held.clear()
        try:
            ctypes.CDLL(None).malloc_trim(0)
        except (OSError, AttributeError) as err:  # not glibc: its allocator decides
            log.debug("memory not trimmed after a model swap: %s", err)

    threading.Thread(target=release, name="model-release", daemon=True).start()
