"""The performer as other threads see it: what they may call, and how it reaches the engine.

Nothing here runs inference, touches the recurrent state or blocks on slow work:

- The MIDI input callback calls :meth:`PerformerControls.submit`: input hygiene, the echo
  check and the flood policy (:class:`~antiphon.daemon.midi.intake.InputGate`), then one put on a
  queue.
- Control threads (OSC, CLI) call :meth:`~PerformerControls.set_parameter` (an immutable
  :class:`~antiphon.daemon.surface.parameters.Parameters` swapped in by reference) and the commands
  (:meth:`~PerformerControls.panic`, :meth:`~PerformerControls.reset`,
  :meth:`~PerformerControls.save_state`, :meth:`~PerformerControls.load_state`,
  :meth:`~PerformerControls.switch_model`), which are queued for the performer's thread and
  wake it. Loading a new model happens in the caller's thread; only the swap is queued.
- Status and figures are read from values the performer's thread swaps in whole.
- The outgoing clock (``clock_out``): :attr:`PerformerControls.clock_leader` is offered the
  beat by the performer's thread and read by the tick sender's; the Link session (``clock
  link``, ``clock_out link``) is joined, when first asked for, on the thread that asked.

The performer's thread (:class:`~antiphon.daemon.musician.playing.performer.Performer`, a subclass)
takes
the input
and the commands from here and does the work.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mido
from antiphon.daemon.midi.intake import InputGate
from antiphon.daemon.musician.answering.memory import PlayerMemory
from antiphon.daemon.musician.answering.reply import Reply, ReplyReport
from antiphon.daemon.musician.clocks.beat_keeper import BeatKeeper
from antiphon.daemon.musician.clocks.clock_out import ClockLeader
from antiphon.daemon.musician.clocks.link_clock import LinkSession, LinkUnavailable
from antiphon.daemon.musician.model.conversation import Conversation
from antiphon.daemon.musician.model.engine import Engine, file_stamp
from antiphon.daemon.musician.model.model_file import ModelError
from antiphon.daemon.musician.model.voices import Voices
from antiphon.daemon.musician.playing.duet import DuetPlayer
from antiphon.daemon.settings import AUTO_MODEL, Settings
from antiphon.daemon.surface.parameters import PARAMETER_NAMES, ParameterError, Parameters

log = logging.getLogger(__name__)

STATE_SLOTS = 128
CLOCK_MESSAGE_TYPES = frozenset(("clock", "start", "continue", "stop", "songpos"))

Listener = Callable[[str, object], None]
LinkFactory = Callable[[], LinkSession]
LINK_SETTINGS = {"clock": ("link",), "clock_out": ("link", "both")}


class PerformerControls:
    """The thread-safe side of the performer: input hand-over, parameters, commands, listeners,
    status. Every call returns at once: it swaps an immutable value or puts on a queue.

    Args:
        settings: the daemon's settings (the live-tunable ones become :attr:`parameters`).
        engine: the loaded model; the performer owns it from now on.
        link: joins the Ableton Link session, when ``clock`` or ``clock_out`` first asks for
            it (None: never; files rendered offline have no session to join).
    """

    def __init__(self, settings: Settings, engine: Engine, link: LinkFactory | None = None) -> None:
        self.settings = settings
        self._params = Parameters.from_settings(settings)
        self._params_lock = threading.Lock()  # only between control threads that set
        self._listeners: tuple[Listener, ...] = ()
        self._gate = InputGate(settings)  # the MIDI callback thread's side
        self._beat = BeatKeeper(settings.beats_per_bar)  # its clock inbox: the callback's too
        self._commands: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        # Written by the performer's thread, read by status() from any thread.
        self._conversation = Conversation(engine)
        self.memory = PlayerMemory()  # the player's phrases in this performance (``mirror``)
        # The model played before the current one, kept for a swap back (claimed by
        # switch_model's thread, replaced by the performer's at a swap).
        self._previous_engine: Engine | None = None
        self._voices: Voices | None = None  # --model auto's engines (the performer's)
        self._previous_lock = threading.Lock()
        self._reply: Reply | None = None
        self._duet = DuetPlayer()  # the duet part (mode duet or both)
        self._reports: tuple[ReplyReport, ...] = ()
        self._closed = False
        self.notes_in = 0
        self.notes_out = 0
        self.replies = 0
        self.clock_leader = ClockLeader(
            settings.clock_out_follow, on_tempo=self._tempo_out, on_transport=self._transport_out
        )
        self._link_factory = link
        self._link_lock = threading.Lock()  # between control threads that ask for Link
        self._join_link_if_asked(self._params)

    # The MIDI callback's side ---------------------------------------------------------------

    def submit(self, message: mido.Message, time_s: float) -> None:
        """Hand over one input message (from the MIDI callback thread; never blocks).

        Call from one thread at a time. ``time_s`` is when it arrived, on the performer's clock.
        MIDI clock never counts as playing: it goes to the beat (unless the clock has its own
        port, ``clock_port``).
        """
        if message.type in CLOCK_MESSAGE_TYPES:
            if self.settings.clock_port is None:
                self._beat.submit_clock(message, time_s)
            return
        self._gate.submit(message, time_s)

    def submit_clock(self, message: mido.Message, time_s: float) -> None:
        """Hand over a message from the clock port (``clock_port``; never blocks): MIDI clock
        is kept for the beat, everything else is ignored."""
        self._beat.submit_clock(message, time_s)

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
            params = self._params.with_value(name, value)
            if name in LINK_SETTINGS:  # joined before the performer sees the new value
                self._join_link_if_asked(params)
            self._params = params
            applied = getattr(params, name)
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
        """Stop any reply and clear the recurrent state and the player's memory: the model
        forgets the performance."""
        self._command("reset")

    def clear_memory(self) -> None:
        """Forget the player's phrases (the ``mirror`` memory); the model's state stays."""
        self._command("memory_clear")

    def save_state(self, slot: int) -> None:
        """Keep a copy of the recurrent state and the player's memory in ``slot`` (0-127)."""
        self._command("save", _check_slot(slot))

    def load_state(self, slot: int) -> None:
        """Stop any reply and go back to the state saved in ``slot``."""
        self._command("load", _check_slot(slot))

    def switch_model(self, path: str | Path) -> None:
        """Load another model (in the caller's thread) and swap it in between replies.

        The new model starts from a fresh state; saved state slots are cleared. The model
        swapped out is kept: swapping back to it (its file unchanged) loads nothing. ``auto``
        loads both shipped models and chooses between them at each call's end
        (:mod:`~antiphon.daemon.musician.model.voices`); a model asked for by path ends that.

        Raises:
            ModelError: the file cannot be used, or its codec differs from the current one.
        """
        if str(path) == AUTO_MODEL:
            self._command("voices", Voices.load(self.settings))
            return
        current = self._conversation.engine
        engine = self._take_previous(path)
        if engine is None:
            engine = Engine(path, temperature=current.temperature, noise=current.noise)
            if engine.info.codec != current.info.codec:
                raise ModelError(f"{path}: its codec differs from the playing model's; restart")
        else:
            engine.reset()
            engine.temperature, engine.noise = current.temperature, current.noise
        self._command("swap", engine)

    def _take_previous(self, path: str | Path) -> Engine | None:
        """The model played before the current one, if ``path`` is its file, unchanged since
        it was loaded: swapping back takes no loading (nor the memory a load leaves)."""
        try:
            stamp = file_stamp(path)
        except OSError:
            return None  # loading it says what is wrong with it
        with self._previous_lock:
            previous = self._previous_engine
            if previous is None or previous.loaded_from != stamp:
                return None
            self._previous_engine = None
            return previous

    def status(self) -> dict[str, Any]:
        """Every parameter, what the performer is doing, the last reply's figures, counters."""
        reply, reports = self._reply, self._reports
        return {
            **{name: getattr(self._params, name) for name in PARAMETER_NAMES},
            "state": "closed"
            if self._closed
            else "replying"
            if reply
            else "duet"
            if self._duet.part
            else "listening",
            "duet_parts": self._duet.parts,
            "model": str(self._conversation.engine.path),
            "model_auto": self._voices is not None,
            "notes_in": self.notes_in,
            "notes_out": self.notes_out,
            "dropped": self.dropped,
            "echoes": self.echoes,
            "replies": self.replies,
            "memory_notes": self.memory.notes,
            "last_reply": reports[-1].to_dict() if reports else None,
            **self._beat.status(),
            "clock_out_bpm": round(self.clock_leader.tempo_bpm or 0.0, 2),
            "link_peers": self._beat.link.peers if self._beat.link is not None else 0,
        }

    @property
    def link(self) -> LinkSession | None:
        """The Link session, once joined."""
        return self._beat.link

    def _join_link_if_asked(self, params: Parameters) -> None:
        """Join the Link session the first time ``clock`` or ``clock_out`` asks for it (on
        the asking thread: joining starts Link's threads). Without the binding, one warning:
        the player's beat leads and no tempo goes to Link."""
        asked = any(getattr(params, name) in values for name, values in LINK_SETTINGS.items())
        if not asked or self._link_factory is None:
            return
        with self._link_lock:
            if self._beat.link is not None:
                return
            try:
                self._beat.link = self._link_factory()
            except LinkUnavailable as err:
                log.warning("%s", err)
                self._link_factory = None  # said once
                self._notify("error", str(err))

    def _tempo_out(self, tempo_bpm: float, at_s: float) -> None:
        """The outgoing tempo changed on the beat at ``at_s`` (on the tick sender's thread):
        to the Link session with ``clock_out`` link or both, unless Link is the clock
        followed (its tempo would come back to it, late)."""
        if (session := self._link_out()) is not None:
            session.set_tempo(tempo_bpm, at_s)

    def _transport_out(self, playing: bool, at_s: float) -> None:
        """A DAW's clock passed on stopped or started (on the tick sender's thread): the Link
        session's transport with it, with ``clock_out`` link or both (start/stop sync)."""
        if (session := self._link_out()) is not None:
            session.set_playing(playing, at_s)

    def _link_out(self) -> LinkSession | None:
        """The Link session the outgoing clock goes to (``clock_out`` link or both), unless
        Link is the clock followed (what went out would come back to it, late); else None."""
        params, session = self._params, self._beat.link
        if session is not None and params.clock_out in ("link", "both") and params.clock != "link":
            return session
        return None

    def close_link(self) -> None:
        """Leave the Link session, if joined."""
        session = self._beat.link
        if session is not None:
            self._beat.link = None
            session.close()

    def reply_reports(self) -> tuple[ReplyReport, ...]:
        """The figures of the last replies, oldest first."""
        return self._reports

    @property
    def replying(self) -> bool:
        return self._reply is not None

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


def _check_slot(slot: int) -> int:
    if isinstance(slot, bool) or not isinstance(slot, int) or not 0 <= slot < STATE_SLOTS:
        raise ParameterError(f"state slot must be a whole number 0-{STATE_SLOTS - 1}, got {slot!r}")
    return slot
