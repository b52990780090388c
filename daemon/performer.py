"""The performer: the one thread that owns the engine, hears the player and plays the replies.

Threads and who touches what:

- The MIDI input callback calls :meth:`Performer.submit`: input hygiene, the echo check and
  the flood policy (:class:`~daemon.intake.InputGate`), then one put on a queue. It never
  blocks and never runs inference.
- :meth:`Performer.run` is the performer's thread: it blocks on that queue with a timeout
  until the next due moment (the call's end and shortly before it, the next reply event, a
  note's maximum length) and does all the work: it feeds the player's events to the engine
  as they arrive, detects the end of the call, generates and plays the reply, and sends
  every output message.
- Control threads (OSC, CLI) call :meth:`Performer.set_parameter` (an immutable
  :class:`~daemon.parameters.Parameters` swapped in by reference) and the commands
  (:meth:`panic`, :meth:`reset`, :meth:`save_state`, :meth:`load_state`,
  :meth:`switch_model`), which are queued for the performer's thread. Loading a new model
  happens in the caller's thread; only the swap is queued, and it waits for the reply to end.

For tests and files (``antiphon respond``), :meth:`process_until` drives the same logic on a
:class:`ManualClock` without threads or sleeping.

Answering on time: ``speculate_before_s`` (20 ms) before the call's deadline, the performer
already makes the reply as it will be at the deadline (the pause up to the deadline fed, its
first events drawn, see :mod:`daemon.reply`), so that at the deadline it only sends. If
anything comes first (the player's input, a command, a parameter change), that speculative
reply is withdrawn without a trace, random streams included: a reply is the same whether it
was made ahead or at the deadline. 20 ms is well above the few ms drawing takes even on a
busy machine, and a player who goes on within the last 20 ms of the gap is rare, so little
work is thrown away; drawing when the silence starts would throw it away at every pause.

Input hygiene, echo suppression and the flood policy live in :mod:`daemon.intake`.

The player's All Notes Off / All Sound Off (CC123 / CC120) ends the player's held notes and
stops the reply. With ``thru``, the player's notes (not the pedal) are echoed to the output.
Keys still held after ``held_key_timeout_s`` with no input at all lost their note-off, most
likely: they count as released then, the same way (see :meth:`PhraseDetector.release_stale`).
"""

from __future__ import annotations

import ctypes
import logging
import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import mido

from daemon.conversation import Conversation
from daemon.engine import Engine, EngineState
from daemon.intake import ALL_OFF, END_PHRASE, NOTE_OFF, NOTE_ON, SUSTAIN, WAKE, InputGate, Item
from daemon.model_file import ModelError
from daemon.notes import ALL_NOTES_OFF_CC, SoundingNotes
from daemon.parameters import PARAMETER_NAMES, ParameterError, Parameters
from daemon.phrase import Call, PhraseDetector, reply_length_bounds
from daemon.reply import Reply, ReplyReport, Timed, format_planned
from daemon.settings import Settings

log = logging.getLogger(__name__)

IDLE_WAIT_S = 0.5  # longest block on the queue, so a stop request is seen without a wake
TURNING_WITHIN_S = 5.0  # a loop this late means the performer's thread hangs
CLOSE_WAIT_S = 1.0  # how long close() waits for a running performer thread to finish
DROP_LOG_INTERVAL_S = 5.0
STATE_SLOTS = 128
REPORTS_KEPT = 256
SPECULATE_BEFORE_S = 0.020  # the reply is made this long before the call's deadline
# A call noticed later than this after its end (a busy machine, a backlog of input) is
# answered from now rather than from its end: better a late reply than a rushed one.
MAX_START_LATE_S = 0.030
PR_SET_TIMERSLACK = 29  # Linux prctl: how long the kernel may defer this thread's timed waits

Listener = Callable[[str, object], None]


class MidiSink(Protocol):
    """Where the performer's messages go (an output port; a list in tests and files).

    ``send`` must return quickly and must not raise for a lost device (log and drop).
    """

    def send(self, message: mido.Message) -> None: ...


@dataclass
class _Speculation:
    """A reply made before its call was over, for the call as it will end if nothing comes."""

    call: Call
    reply: Reply


class ManualClock:
    """A clock that only moves when told to: the time of a simulated performance."""

    def __init__(self, start_s: float = 0.0) -> None:
        self.now_s = start_s

    def __call__(self) -> float:
        return self.now_s

    def advance_to(self, time_s: float) -> None:
        self.now_s = max(self.now_s, time_s)


class Performer:
    """Call and response on one input and one output.

    Args:
        settings: the daemon's settings (the live-tunable ones become :attr:`parameters`).
        engine: the loaded model; the performer owns it from now on.
        sink: where output messages go.
        clock: seconds, monotonic; ``submit``'s ``time_s`` must come from the same clock.
            A :class:`ManualClock` enables :meth:`process_until`.
        speculate_before_s: how long before the call's deadline the reply is made; 0 makes
            it at the deadline.
    """

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        sink: MidiSink,
        *,
        clock: Callable[[], float] = time.monotonic,
        speculate_before_s: float = SPECULATE_BEFORE_S,
    ) -> None:
        self.settings = settings
        self._sink = sink
        self._clock = clock
        self._params = Parameters.from_settings(settings)
        self._params_lock = threading.Lock()  # only between control threads that set
        self._applied: Parameters | None = None
        self._conversation = Conversation(engine)
        self._phrase = PhraseDetector(self._params.phrase_gap_s, settings.held_key_timeout_s)
        self._reply: Reply | None = None
        self._speculate_before_s = speculate_before_s
        self._speculation: _Speculation | None = None
        self._speculated_for_s: float | None = None  # the deadline last speculated for
        self._thru = SoundingNotes()
        self._reply_channels: set[int] = set()  # every channel a reply has sounded on
        self._slots: dict[int, EngineState] = {}
        self._next_engine: Engine | None = None
        self._listeners: tuple[Listener, ...] = ()
        self._gate = InputGate(settings)  # the MIDI callback thread's side
        self._commands: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        # Counters and figures.
        self.notes_in = 0
        self.notes_out = 0
        self.replies = 0
        self._reports: tuple[ReplyReport, ...] = ()
        self._drops_logged = 0
        self._drops_logged_s = -DROP_LOG_INTERVAL_S
        # Lifecycle.
        self._runner: threading.Thread | None = None
        self._run_exited = threading.Event()
        self._turned_s: float | None = None  # when run() last went round its loop
        self._stop_requested = False
        self._closed = False
        self._close_lock = threading.Lock()

    # The MIDI callback's side ---------------------------------------------------------------

    def submit(self, message: mido.Message, time_s: float) -> None:
        """Hand over one input message (from the MIDI callback thread; never blocks).

        Call from one thread at a time. ``time_s`` is when it arrived, on the performer's clock.
        """
        self._gate.submit(message, time_s)

    @property
    def dropped(self) -> int:
        """Input messages dropped by the flood policy."""
        return self._gate.dropped

    @property
    def echoes(self) -> int:
        """Input messages dropped as echoes of Antiphon's own output."""
        return self._gate.echoes

    # Control (any thread) ---------------------------------------------------------------------

    @property
    def parameters(self) -> Parameters:
        return self._params

    def set_parameter(self, name: str, value: object) -> None:
        """Change a live parameter; it applies from the performer's next event.

        Raises:
            ParameterError: unknown name or a value out of range (nothing changes).
        """
        with self._params_lock:
            self._params = self._params.with_value(name, value)
            applied = getattr(self._params, name)
        self._wake()
        self._notify(name, applied)

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(topic, value)`` on changes: a parameter's name and new value (on
        the setter's thread); "replying" True/False, "reply" (a report dict), "model",
        "state", "panic", "error" (on the performer's thread). It must return quickly."""
        self._listeners = (*self._listeners, listener)

    def remove_listener(self, listener: Listener) -> None:
        self._listeners = tuple(x for x in self._listeners if x is not listener)

    def panic(self) -> None:
        """Every sounding note off now (reply and thru), All Notes Off on every channel used."""
        self._command("panic")

    def reset(self) -> None:
        """Stop any reply and clear the recurrent state: the model forgets the performance."""
        self._command("reset")

    def save_state(self, slot: int) -> None:
        """Keep a copy of the recurrent state in ``slot`` (0-127)."""
        self._command("save", _check_slot(slot))

    def load_state(self, slot: int) -> None:
        """Stop any reply and go back to the state saved in ``slot``."""
        self._command("load", _check_slot(slot))

    def switch_model(self, path: str | Path) -> None:
        """Load another model (in the caller's thread) and swap it in between replies.

        The new model starts from a fresh state; saved state slots are cleared.

        Raises:
            ModelError: the file cannot be used, or its codec differs from the current one.
        """
        current = self._conversation.engine
        engine = Engine(path, temperature=current.temperature, noise=current.noise)
        if engine.info.codec != current.info.codec:
            raise ModelError(f"{path}: its codec differs from the playing model's; restart")
        self._command("swap", engine)

    def status(self) -> dict[str, Any]:
        """Every parameter, what the performer is doing, the last reply's figures, counters."""
        reply, reports = self._reply, self._reports
        return {
            **{name: getattr(self._params, name) for name in PARAMETER_NAMES},
            "state": "closed" if self._closed else "replying" if reply else "listening",
            "model": str(self._conversation.engine.path),
            "notes_in": self.notes_in,
            "notes_out": self.notes_out,
            "dropped": self.dropped,
            "echoes": self.echoes,
            "replies": self.replies,
            "last_reply": reports[-1].to_dict() if reports else None,
        }

    def reply_reports(self) -> tuple[ReplyReport, ...]:
        """The figures of the last replies, oldest first."""
        return self._reports

    def _command(self, name: str, argument: object = None) -> None:
        self._commands.put((name, argument))
        self._wake()

    def _wake(self) -> None:
        self._gate.wake()

    def _notify(self, topic: str, value: object) -> None:
        for listener in self._listeners:
            try:
                listener(topic, value)
            except Exception:  # a broken listener must not stop the music; it is logged
                log.exception("listener %r failed on %s", listener, topic)

    # The performer's thread -------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """The performer's thread body: until ``stop`` is set or :meth:`close` is called.

        On the way out (also by an exception) every sounding note is released.
        """
        self._runner = threading.current_thread()
        self._run_exited.clear()
        _tighten_timer_slack()
        try:
            while not stop.is_set() and not self._stop_requested:
                self._turned_s = self._clock()
                due_s = self.next_due_s()
                wait_s = IDLE_WAIT_S if due_s is None else min(IDLE_WAIT_S, due_s - self._clock())
                item = self._gate.take(wait_s)
                if item is not None and item[0] != WAKE:
                    self._take(item)
                self._service(self._clock())
        finally:
            self.close()
            self._runner = None
            self._run_exited.set()

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
        if self._gate.waiting or not self._commands.empty():
            return self._clock()  # input or commands waiting: now
        reply = self._reply
        phrase = self._phrase
        due_s = reply.next_due_s() if reply is not None else self._speculation_due_s()
        for other_s in (phrase.deadline(), phrase.stale_due_s()):
            if other_s is not None and (due_s is None or other_s < due_s):
                due_s = other_s
        return due_s

    def turning(self, within_s: float = TURNING_WITHIN_S) -> bool:
        """Whether :meth:`run` went round its loop within ``within_s`` (it does at least every
        ``IDLE_WAIT_S``): false when the thread hangs or is gone. The systemd watchdog asks."""
        turned_s = self._turned_s
        return turned_s is not None and self._clock() - turned_s < within_s

    @property
    def replying(self) -> bool:
        return self._reply is not None

    def _drain(self) -> None:
        while (item := self._gate.take(0.0)) is not None:
            if item[0] != WAKE:
                self._take(item)

    def _apply_parameters(self) -> Parameters:
        params = self._params
        if params is not self._applied:
            self._withdraw_speculation()  # made with the parameters of before
            engine = self._conversation.engine
            reply = self._reply
            if reply is not None:
                reply.max_note_s = params.max_note_s
                if (engine.temperature, engine.noise) != (params.temperature, params.noise):
                    reply.rewind()  # the events drawn ahead are drawn again with the new ones
            engine.temperature, engine.noise = params.temperature, params.noise
            self._phrase.gap_s = params.phrase_gap_s
            self._applied = params
        return params

    def _take(self, item: Item) -> None:
        """One of the player's events, fed as it arrives."""
        code, time_s, channel, data1, data2 = item
        self._release_stale(time_s)  # held keys that timed out before this event
        self._withdraw_speculation()  # the call goes on (or ends now)
        params = self._apply_parameters()
        reply = self._reply
        if reply is not None:
            reply.rewind()  # the unplayed events go; the player's event comes first
            if code == ALL_OFF or (code == NOTE_ON and not params.overlap):
                self._end_reply(reply.stop(time_s))
        conversation, phrase, key = self._conversation, self._phrase, (channel, data1)
        if code == NOTE_ON:
            if phrase.poll(time_s) is not None:
                log.debug("the player went on before the call was answered")
            self.notes_in += 1
            if params.thru:
                self._emit_now(self._thru.start(channel, data1, data2, time_s))
            phrase.note_on(key, time_s)
            conversation.note_on(data1, data2, time_s)
        elif code == NOTE_OFF:
            self._emit_now(self._thru.stop(channel, data1))
            phrase.note_off(key, time_s)
            conversation.note_off(data1, time_s)
        elif code == SUSTAIN:
            phrase.sustain(data2 >= 64, time_s)
            conversation.sustain(data2, time_s)
        elif code == ALL_OFF:
            self._release_thru()
            phrase.all_notes_off(time_s)
            conversation.all_notes_off(time_s)
        elif code == END_PHRASE:
            call = phrase.end_now(time_s)
            if call is not None:
                self._answer(call, self._clock())

    def _service(self, now_s: float) -> None:
        """Everything due at ``now_s``: commands, the call's end, the reply's events."""
        while not self._commands.empty():  # only this thread takes: then a get succeeds
            name, argument = self._commands.get(False)
            self._withdraw_speculation()
            self._run_command(name, argument, now_s)
        params = self._apply_parameters()
        self._release_stale(now_s)
        call = self._phrase.poll(now_s)
        if call is not None:
            self._answer(call, now_s)
        reply = self._reply
        if reply is not None:
            if params.mode != "call_response":
                self._end_reply(reply.stop(now_s))
            else:
                self._play(reply, now_s)
        if self._next_engine is not None and self._reply is None:
            self._swap_engine(self._next_engine)
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
        self._withdraw_speculation()
        if self._reply is not None:
            self._reply.rewind()  # the player's side is fed first, as in _take
        self._release_thru()
        self._conversation.all_notes_off(due_s)

    def _answer(self, call: Call, now_s: float) -> None:
        params = self._apply_parameters()  # new parameters withdraw the speculation
        speculation, self._speculation = self._speculation, None
        if self._reply is not None:
            self._end_reply(self._reply.stop(now_s))
        start_s = call.ended_s if now_s - call.ended_s <= MAX_START_LATE_S else now_s
        answering = params.mode == "call_response"
        if speculation is not None and not (
            answering and speculation.call == call and start_s == call.ended_s
        ):
            speculation.reply.withdraw()
            speculation = None
        if not answering:
            return
        reply = speculation.reply if speculation else self._prepare(call, start_s, params)
        if reply is None:
            return
        self._reply = reply
        self._play(reply, now_s, starting=True)  # the first note, at once

    def _prepare(self, call: Call, start_s: float, params: Parameters) -> Reply | None:
        """The reply to ``call`` starting at ``start_s``, its first events drawn; None when the
        engine has heard nothing since a reset (after a reset, the pause alone is a start)."""
        notes, max_s = reply_length_bounds(call.notes, call.seconds, params)
        reply = Reply(
            self._conversation,
            start_s=start_s,
            phrase_end_s=call.ended_s,
            notes=notes,
            max_s=max_s,
            channel=params.output_channel - 1,
            max_note_s=params.max_note_s,
        )
        if not self._conversation.engine.ready:
            reply.withdraw()
            return None
        reply.draw_ahead()
        return reply

    def _speculation_due_s(self) -> float | None:
        """When to make the reply ahead of the call's deadline (None: not now, or done)."""
        if self._speculation is not None or self._reply is not None:
            return None
        deadline_s = self._phrase.deadline()
        if deadline_s is None or deadline_s == self._speculated_for_s:
            return None
        return deadline_s - self._speculate_before_s

    def _speculate(self, now_s: float) -> None:
        due_s = self._speculation_due_s()
        if due_s is None or now_s < due_s:
            return
        params = self._apply_parameters()
        call = self._phrase.pending_call()
        if call is None:
            return
        self._speculated_for_s = call.ended_s
        if params.mode != "call_response":
            return
        reply = self._prepare(call, call.ended_s, params)
        if reply is not None:
            self._speculation = _Speculation(call, reply)

    def _withdraw_speculation(self) -> None:
        speculation, self._speculation = self._speculation, None
        if speculation is not None:
            speculation.reply.withdraw()
        self._speculated_for_s = None

    def _play(self, reply: Reply, now_s: float, *, starting: bool = False) -> None:
        """Send the reply's events due by ``now_s``, then draw the coming ones ahead."""
        while timed := reply.advance(now_s):
            self._emit(timed, reply)
        if starting:
            self._notify("replying", True)  # after the first note: listeners take time
        if reply.done:
            self._end_reply([])
        else:
            reply.draw_ahead()

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
            engine.reset()
            self._notify("state", "reset")
        elif name == "save":
            if self._reply is not None:
                self._reply.rewind()
            self._slots[argument] = engine.get_state()
            self._notify("state", f"saved {argument}")
        elif name == "load":
            state = self._slots.get(argument)
            if state is None:
                self._notify("error", f"state slot {argument} is empty")
                return
            if self._reply is not None:
                self._end_reply(self._reply.stop(now_s))
            engine.set_state(state)
            self._notify("state", f"loaded {argument}")
        elif name == "swap":
            self._next_engine = argument

    def _swap_engine(self, engine: Engine) -> None:
        old = self._conversation.engine
        engine.rng, engine.noise_rng = old.rng, old.noise_rng
        self._conversation.replace_engine(engine)
        self._next_engine = None
        self._applied = None
        self._slots.clear()
        log.info("now playing %s", engine.path)
        self._notify("model", str(engine.path))

    # Output -------------------------------------------------------------------------------------

    def _emit_now(self, messages: list[mido.Message]) -> None:
        for message in messages:
            self._send(message)

    def _emit(self, timed: list[Timed], reply: Reply) -> None:
        for planned_s, message in timed:
            sent_s = self._send(message)
            reply.record_send(planned_s, sent_s, message)
            if message.type == "note_on":
                self.notes_out += 1
                self._reply_channels.add(message.channel)

    def _send(self, message: mido.Message) -> float:
        self._sink.send(message)
        sent_s = self._clock()
        self._gate.sent(message, sent_s)
        return sent_s

    def _release_thru(self) -> None:
        for channel, pitch in self._thru:
            self._emit_now(self._thru.stop(channel, pitch))

    def _release_everything(self, now_s: float) -> None:
        self._withdraw_speculation()
        if self._reply is not None:
            self._end_reply(self._reply.stop(now_s))
        self._emit_now(self._thru.release_all())  # with All Notes Off on the thru channels
        for channel in sorted(self._reply_channels - self._thru.channels_used):
            self._send(mido.Message("control_change", channel=channel, control=ALL_NOTES_OFF_CC))

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


def _tighten_timer_slack() -> None:
    """Let this thread's timed waits (on the input queue, until the next due moment) end on
    time: Linux defers them by up to the thread's timer slack, 50 us by default."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0)
        except (OSError, AttributeError) as err:  # no libc to ask: the default slack stays
            log.debug("timer slack unchanged: %s", err)


def _check_slot(slot: int) -> int:
    if isinstance(slot, bool) or not isinstance(slot, int) or not 0 <= slot < STATE_SLOTS:
        raise ParameterError(f"state slot must be a whole number 0-{STATE_SLOTS - 1}, got {slot!r}")
    return slot
