"""``antiphon run``: the daemon's process. Settings, model, ports, the performer's thread, signals.

Start-up: settings -> model -> output port -> performer -> stage services made (they may tap
the input and output) -> the recorder started -> input port -> performer's thread -> the other
services started -> "ready".
Shut-down runs the other way: the services (systemd hears STOPPING first), the input's callback
deregistered, the performer's thread stopped; every path out, an exception's included, goes
through the performer's ``close()``: note-offs for every sounding note and All Notes Off. The
recorder alone stops after that, so the recording holds those last note-offs too.

Exit statuses (``sysexits.h`` names), so a supervisor knows whether trying again can help:
0 a clean stop (SIGTERM, SIGINT); 1 a crash (a bug: the traceback is logged); 69
``EX_UNAVAILABLE``, no MIDI system or a port that cannot be opened now (JACK not up yet at
boot, an OSC port in use): it may go away; 78 ``EX_CONFIG``, a bad config file or setting, a
model or mapping file that cannot be used, a recording folder that cannot be written, MIDI
ports asked for what this machine cannot do: restarting cannot help, the config must change
(the systemd units do not restart on it).

The main thread only waits: SIGINT and SIGTERM set an event and nothing else. The MIDI input
arrives on the MIDI system's thread and is handed to ``Performer.submit``; one performer
thread owns the engine and sends everything that goes out.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Protocol

import mido
from antiphon.daemon.settings import (
    Settings,
    SettingsError,
    add_settings_arguments,
    describe_settings,
    resolve_settings,
)

if TYPE_CHECKING:
    from antiphon.daemon.midi.ports import MidiOutput, MidiPorts
    from antiphon.daemon.musician.playing.performer import Performer

log = logging.getLogger(__name__)

READY_MARK = (
    "ready:"  # the log line that says the daemon listens (antiphon.daemon.tools.probe waits for it)
)
PERFORMER_STOP_WAIT_S = 2.0
# The MIDI callback runs inside the JACK cycle (a few ms) and must take the GIL from whatever
# thread holds it; Python's default of 5 ms would make it miss cycles, and lose their events.
GIL_SWITCH_INTERVAL_S = 0.0002
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
EXIT_OK, EXIT_FAILED = 0, 1
EXIT_UNAVAILABLE = 69  # EX_UNAVAILABLE: may work later (no MIDI system yet)
EXIT_CONFIG = 78  # EX_CONFIG: will not work until the configuration changes

Tap = Callable[[mido.Message, float], None]
"""Sees a message and its ``time.monotonic()``; on the MIDI or performer thread: never block."""


class Service(Protocol):
    """A stage feature run alongside the performer (OSC, recording, systemd, status view)."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


@dataclass
class Stage:
    """What the stage services work with.

    ``input_taps`` see every input message after the performer got it (on the MIDI thread);
    ``output_taps`` see every message sent (on the performer's thread). Both must return at
    once: append to a queue, set a flag. ``witnesses`` are the services that only watch
    (the recorder): they start first and stop last, after the performer's last note-offs.
    """

    settings: Settings
    sources: dict[str, str]
    performer: Performer
    ports: MidiPorts
    input_taps: list[Tap] = field(default_factory=list)
    output_taps: list[Tap] = field(default_factory=list)
    witnesses: list[Service] = field(default_factory=list)


def stage_services(stage: Stage) -> list[Service]:
    """The services to run for these settings; started in order once the ports are open and
    the performer plays, stopped in reverse before the performer closes.

    This is where the OSC server, the session recorder, the systemd notifier and the status
    view are made (they may add taps to ``stage``). The recorder goes to ``stage.witnesses``.
    """
    from antiphon.daemon.stage.recorder import SessionRecorder
    from antiphon.daemon.stage.sdnotify import SystemdService
    from antiphon.daemon.stage.status_view import make_status_view, summary
    from antiphon.daemon.surface.osc import control_services

    services: list[Service] = []
    performer = stage.performer
    if stage.settings.record is not None:
        recorder = SessionRecorder(Path(stage.settings.record))
        stage.input_taps.append(recorder.player)
        stage.output_taps.append(recorder.antiphon)
        stage.witnesses.append(recorder)
    services.extend(control_services(stage.settings, performer, stage.input_taps))
    services.append(make_status_view(stage.settings.tui, performer.status))
    # Last: systemd hears READY=1 once everything else runs.
    services.append(SystemdService(performer.turning, lambda: summary(performer.status())))
    return services


class TappedOutput:
    """The performer's sink: the output port, then each output tap."""

    def __init__(self, output: MidiOutput, taps: list[Tap]) -> None:
        self._output = output
        self._taps = taps

    def send(self, message: mido.Message) -> None:
        self._output.send(message)
        if self._taps:
            sent_s = time.monotonic()
            for tap in self._taps:
                tap(message, sent_s)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_settings_arguments(parser)


def run(args: argparse.Namespace) -> int:
    try:
        settings, sources = resolve_settings(args)
    except SettingsError as err:
        print(f"antiphon run: {err}", file=sys.stderr)
        return EXIT_CONFIG
    if args.print_config:
        print(describe_settings(settings, sources))
        return EXIT_OK
    # Heavy imports (onnxruntime, rtmidi) only now: `antiphon --help` stays light.
    from antiphon.daemon.midi.port_names import PortError, PortSetupError
    from antiphon.daemon.musician.model.model_file import ModelError
    from antiphon.daemon.stage.recorder import RecorderError
    from antiphon.daemon.surface.osc import OscError, OscSettingError
    from antiphon.daemon.surface.vocabulary import ControlError

    stop = threading.Event()
    with _stop_on_signals(stop):
        try:
            return play(settings, sources, stop)
        except (ModelError, ControlError, RecorderError, OscSettingError, PortSetupError) as err:
            print(f"antiphon run: {err}", file=sys.stderr)
            return EXIT_CONFIG
        except (PortError, OscError) as err:
            print(f"antiphon run: {err}", file=sys.stderr)
            return EXIT_UNAVAILABLE


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    def handle(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, handle) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def play(settings: Settings, sources: dict[str, str], stop: threading.Event) -> int:
    """Play until ``stop`` is set (or the performer fails); the exit status."""
    from antiphon.daemon.midi.clock_sender import ClockSender
    from antiphon.daemon.midi.ports import MidiPorts
    from antiphon.daemon.musician.clocks.link_clock import LinkSession
    from antiphon.daemon.musician.model.voices import open_engine
    from antiphon.daemon.musician.playing.performer import Performer

    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    engine, voices = open_engine(settings)
    log.info("model %s (%d layers of %d)", engine.path, engine.info.layers, engine.info.hidden)
    ports = MidiPorts(
        midi_api=settings.midi_api,
        port_name=settings.port_name,
        output_port=settings.output_port,
        clock_out_port=settings.clock_out_port,
    )
    try:
        output_taps: list[Tap] = []
        performer = Performer(
            settings,
            engine,
            TappedOutput(ports.output, output_taps),
            link=LinkSession,
            voices=voices,
        )
        # The outgoing MIDI clock's thread: idle until clock_out asks for it.
        clock_sender = ClockSender(
            performer.clock_leader,
            ports.clock_output or ports.output,
            settings.output_ahead_ms / 1000.0,
        )
        clock_sender.start()
        try:
            stage = Stage(settings, sources, performer, ports, output_taps=output_taps)
            return _perform(stage, stop)
        finally:
            ports.stop_input()
            performer.close()  # note-offs and All Notes Off, whatever happened above
            clock_sender.stop()  # MIDI clock's Stop, when it ran
            performer.close_link()
    finally:
        ports.close()


def _perform(stage: Stage, stop: threading.Event) -> int:
    performer, ports = stage.performer, stage.ports
    services = stage_services(stage)
    input_taps = tuple(stage.input_taps)

    def hear(message: mido.Message, time_s: float) -> None:
        performer.submit(message, time_s)
        for tap in input_taps:
            tap(message, time_s)

    performer.add_listener(_log_reply)
    failed = threading.Event()
    with contextlib.ExitStack() as on_exit:
        # Undone in reverse, each step even if one before it fails: the services (systemd
        # hears STOPPING first), the input's callback, the performer's thread, its last
        # note-offs, and only then the witnesses (the recording gets those note-offs).
        for witness in stage.witnesses:
            witness.start()
            on_exit.callback(witness.stop)
        on_exit.callback(performer.close)
        ports.open_input(
            hear,
            stage.settings.input_port,
            clock_port=stage.settings.clock_port,
            clock_handler=performer.submit_clock,
        )
        performer_stop = threading.Event()
        thread = threading.Thread(
            target=_run_performer, args=(performer, performer_stop, failed, stop), name="performer"
        )
        thread.start()
        on_exit.callback(_stop_performer, ports, performer_stop, thread)
        for service in services:
            service.start()
            on_exit.callback(service.stop)
        # What is loaded by now (modules, the model, the ports) is out of the collector's
        # reach from here: a full collection, which holds up every thread, then walks only
        # what was made since (before, one took 14 to 21 ms mid-performance).
        gc.freeze()
        log.info("%s %s", READY_MARK, ports.describe())
        stop.wait()
        log.info("stopping")
    return EXIT_FAILED if failed.is_set() else EXIT_OK


def _stop_performer(
    ports: MidiPorts, performer_stop: threading.Event, thread: threading.Thread
) -> None:
    """Deregister the input's callback (nothing reaches the performer after it), then stop
    the performer's thread, which releases every sounding note on its way out."""
    ports.stop_input()
    if ports.input is not None:
        counts = ports.input.counts
        log.info(
            "MIDI input: %d malformed events and %d sysex dropped; %d sysex without an end "
            "ended, %d messages recovered from them",
            counts.malformed,
            counts.sysex,
            counts.swallowed_sysex,
            counts.recovered,
        )
    performer_stop.set()
    thread.join(PERFORMER_STOP_WAIT_S)
    if thread.is_alive():
        log.error(
            "the performer did not stop in %g s; releasing notes anyway", PERFORMER_STOP_WAIT_S
        )


def _log_reply(topic: str, value: object) -> None:
    """One line per finished reply, ``key=value``: what it played and how fast it answered."""
    if topic == "reply" and isinstance(value, dict):
        log.info("reply %s", " ".join(f"{key}={_fact(v)}" for key, v in value.items()))


def _fact(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _run_performer(
    performer: Performer,
    performer_stop: threading.Event,
    failed: threading.Event,
    daemon_stop: threading.Event,
) -> None:
    """The performer thread: a failure is logged whole and stops the daemon (exit status 1),
    so a supervisor restarts it; the performer's own ``finally`` has released the notes."""
    try:
        performer.run(performer_stop)
    except Exception:
        log.exception("the performer failed; stopping")
        failed.set()
    finally:
        daemon_stop.set()
