"""MIDI ports: the only module that talks to the MIDI system (python-rtmidi, as mido's backend).

Ports are opened with python-rtmidi directly, the library under mido's rtmidi backend, because
mido cannot give a client name to a port that connects to an existing device, and the daemon
wants every port it makes to carry its name. Messages are still mido ``Message`` objects.
How the ports are named and how a name is matched live in :mod:`antiphon.daemon.midi.port_names`.

Input arrives on the MIDI system's own thread (inside the JACK process cycle with JACK): the
callback stamps the message with ``time.monotonic()`` and hands it on, nothing else. Bytes that
are no message are counted and dropped (:mod:`antiphon.daemon.midi.raw_input`); on JACK a
:class:`SysexGuard` ends any sysex left open on the input, which would otherwise swallow
everything played after it, and logs what the input dropped and recovered. A port
connected to a device by name is watched by a thread that looks at the list of port names
once a second; when the device goes away the daemon plays on, says so once, and reconnects by
name when it is back.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import logging
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence

import mido
import rtmidi
from antiphon.daemon.midi.notes import NotesOnTheWire
from antiphon.daemon.midi.port_names import (
    API_LABEL,
    GUARD_PORT,
    MIDI_APIS,
    PortError,
    PortNotFound,
    PortSetupError,
    VirtualPortNames,
    check_api,
    match_port,
    own_port_clash,
    pick_api,
    port_listing,
    virtual_port_names,
)
from antiphon.daemon.midi.raw_input import SYSEX_END, RawInput, RawInputCounts

log = logging.getLogger(__name__)

MessageHandler = Callable[[mido.Message, float], None]
"""Receives each input message and the ``time.monotonic()`` it arrived at."""

RTMIDI_API_OF = {
    "alsa": rtmidi.API_LINUX_ALSA,
    "jack": rtmidi.API_UNIX_JACK,
    "coremidi": rtmidi.API_MACOSX_CORE,
    "windows": rtmidi.API_WINDOWS_MM,
}
ALSA_SEQUENCER = "/dev/snd/seq"
WATCH_INTERVAL_S = 1.0
GUARD_INTERVAL_S = 0.25  # how long a sysex left open may hold the input back
MALFORMED_LOG_INTERVAL_S = 5.0
# How long a message sent on JACK may take to reach its destination: RtMidi queues it for
# the next cycle, so a client that closes sooner loses it (a few periods of any size).
JACK_IN_FLIGHT_S = 0.1
# How long a new JACK connection from an output is left before anything is sent on it: in its
# first cycles the listener may run before the new port has ever cleared its buffer, and libjack
# drops that cycle's events ("MidiBufferMixdown - invalid source buffer"). Seen under load: a
# burst sent at once after connecting was lost whole.
JACK_CONNECTION_SETTLE_S = 0.1
# How long a paused input waits for a callback already on its way (one that took its event
# before the pause and waits for the GIL): the GIL is free meanwhile, so it runs at once.
CALLBACK_SETTLE_S = 0.005


class _GraphChanges:
    """One change at a time to this process's part of the MIDI graph, every input paused.

    Every client made, port opened and client closed by this process goes through
    :meth:`changing`, because of what was seen under a synchronous JACK server (``-S``, as
    the tests and the bench run it):

    - python-rtmidi holds the GIL while it asks the JACK server for a change, and under
      ``-S`` the server may first wait for every client's process callback: an input
      callback of this process that wants the GIL never returns, nor does the change (a
      hang seen when a message arrived while a client opened). During a change every input
      of this process is paused: its callback is taken off, RtMidi queues what arrives
      without needing Python, and when the change is done the callback is set again and
      the queue handed on, a few milliseconds late.
    - libjack walks a client's port list on its own thread when latencies change, while the
      client's thread edits that list to close a port (a crash seen in
      ``JackClient::HandleLatencyCallback`` with clients opening and closing in two
      threads): this process makes one change at a time.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._inputs: weakref.WeakSet[MidiInput] = weakref.WeakSet()

    def add(self, endpoint: MidiInput) -> None:
        self._inputs.add(endpoint)

    def discard(self, endpoint: MidiInput) -> None:
        self._inputs.discard(endpoint)

    @contextlib.contextmanager
    def changing(self) -> Iterator[None]:
        with self._lock:
            if any([endpoint.pause() for endpoint in list(self._inputs)]):
                time.sleep(CALLBACK_SETTLE_S)
            try:
                yield
            finally:
                for endpoint in list(self._inputs):
                    endpoint.resume()


GRAPH_CHANGES = _GraphChanges()
CHANNELS = 16
ALL_NOTES_OFF_CC = 123


# MIDI systems ------------------------------------------------------------------------------


def compiled_apis() -> list[str]:
    """The MIDI systems this python-rtmidi build supports, by their ``--midi-api`` names."""
    compiled = set(rtmidi.get_compiled_api())
    return [name for name, api in RTMIDI_API_OF.items() if api in compiled]


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence what libasound and libjack print to fd 2 while a system is probed.

    Both libraries write their own multi-line complaints when the system is absent; the user
    gets one line from :func:`probe_api` instead. Only used before any thread is started.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _unavailable_reason(api: str, err: rtmidi.RtMidiError) -> str:
    if api == "alsa":
        return f"no ALSA sequencer ({err})"
    if api == "jack":
        server = os.environ.get("JACK_DEFAULT_SERVER")
        named = f" named '{server}'" if server else ""
        return f"no JACK server{named} running"
    return f"{API_LABEL[api]} unavailable ({err})"


def probe_api(api: str) -> None:
    """Check that a MIDI system can be used now; :class:`PortError` saying why not."""
    check_api(api, compiled_apis())
    if api == "alsa" and not os.path.exists(ALSA_SEQUENCER):
        raise PortError(f"no ALSA sequencer ({ALSA_SEQUENCER} missing)")
    try:
        with _quiet_stderr(), GRAPH_CHANGES.changing():
            probe = rtmidi.MidiIn(RTMIDI_API_OF[api], "Antiphon probe")
            probe.get_port_count()
            probe.delete()
    except rtmidi.RtMidiError as err:
        raise PortError(_unavailable_reason(api, err)) from err


def unavailable_reason(api: str) -> str | None:
    """Why a built-in MIDI system cannot be used now; None when it works."""
    try:
        probe_api(api)
    except PortError as err:
        return str(err)
    return None


def choose_api(choice: str) -> str:
    """The MIDI system to use for a ``--midi-api`` choice, checked to be working now."""
    return pick_api(choice, compiled_apis(), unavailable_reason)


# Ports -------------------------------------------------------------------------------------


class _Endpoint:
    """One rtmidi port of the daemon: virtual, or connected to a device found by name.

    Subclasses make the rtmidi object and do their direction's part; this class does the
    bookkeeping: opening, the name, losing the device and finding it again.
    """

    kind = "port"

    def __init__(self, api: str, names: VirtualPortNames, pattern: str | None) -> None:
        self.api = api
        self.pattern = pattern
        self.names = names
        self.connected_to: str | None = None  # the device's listed name, when one is connected
        self.absent = False  # a named device that went away or has not appeared yet
        self.closed = False
        try:
            with GRAPH_CHANGES.changing():
                self._rt = self._make_rt()
        except rtmidi.RtMidiError as err:
            raise PortError(f"cannot make the MIDI {self.kind}: {err}") from err

    def _make_rt(self) -> rtmidi.MidiIn | rtmidi.MidiOut:
        raise NotImplementedError

    def _own_port(self) -> str:
        raise NotImplementedError

    def _before_open(self) -> None:
        """Direction-specific set-up before the port opens (the input's callback)."""

    def _on_gone(self) -> None:
        """Direction-specific reaction to the device going away."""

    @property
    def virtual(self) -> bool:
        return self.pattern is None

    @property
    def own_name(self) -> str:
        return self.names.input_listed if self.kind == "input" else self.names.output_listed

    @property
    def name(self) -> str:
        """What a user should look for: the device it is connected to, or its own name."""
        return self.connected_to if self.connected_to is not None else self.own_name

    def open(self) -> None:
        """Open the port. A named device that is not there yet is waited for, not an error:
        the watcher connects it when it appears (a keyboard plugged in after boot)."""
        try:
            with GRAPH_CHANGES.changing():
                self._open()
        except rtmidi.RtMidiError as err:
            wanted = self.pattern or self.own_name
            raise PortError(f"cannot open the MIDI {self.kind} '{wanted}': {err}") from err

    def _open(self) -> None:
        self._before_open()
        if self.pattern is None:
            self._rt.open_virtual_port(self._own_port())
            return
        listed = self._rt.get_ports()
        try:
            target = match_port(self.pattern, self.names.others(listed), self.kind)
        except PortNotFound as err:
            self.absent = True
            log.warning("%s; waiting for it", err)
            return
        self._rt.open_port(listed.index(target), self._own_port())
        self.connected_to = target

    def check(self, present: Sequence[str]) -> None:
        """Notice the device going away or coming back, given the names listed now."""
        if self.pattern is None or self.closed:
            return
        if not self.absent:
            if self.connected_to not in present:
                self.absent = True
                self._on_gone()
                log.warning(
                    "MIDI %s '%s' is gone; playing on, will reconnect when it returns",
                    self.kind,
                    self.connected_to,
                )
            return
        try:
            target = match_port(self.pattern, self.names.others(present), self.kind)
        except PortError:
            return  # not there yet (or ambiguous): look again next time
        try:
            self._reconnect(target)
        except (rtmidi.RtMidiError, ValueError) as err:
            log.warning("MIDI %s '%s' is there but cannot be opened: %s", self.kind, target, err)
            return
        event = "is back: reconnected" if self.connected_to else "is there: connected"
        self.absent = False
        self.connected_to = target
        log.warning("MIDI %s '%s' %s", self.kind, target, event)

    def _reconnect(self, target: str) -> None:
        with GRAPH_CHANGES.changing():
            self._rt.close_port()
            self._before_open()
            self._rt.open_port(self._rt.get_ports().index(target), self._own_port())

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        with GRAPH_CHANGES.changing():
            self._rt.close_port()
            self._rt.delete()


class MidiInput(_Endpoint):
    """The daemon's MIDI input: each message goes to ``handler(message, time.monotonic())``."""

    kind = "input"

    def __init__(
        self,
        api: str,
        names: VirtualPortNames,
        handler: MessageHandler,
        pattern: str | None = None,
    ) -> None:
        self._handler = handler
        self._raw = RawInput()
        self._guard: SysexGuard | None = None
        self._listening = False  # its callback is set
        self._callback_pairs: list[tuple[object, ...]] = []
        super().__init__(api, names, pattern)

    @property
    def counts(self) -> RawInputCounts:
        """What the input dropped (malformed events, sysex) and recovered, since it opened."""
        return self._raw.counts

    def _make_rt(self) -> rtmidi.MidiIn:
        rt = rtmidi.MidiIn(RTMIDI_API_OF[self.api], self.names.input_client)
        # Active sensing is dropped inside rtmidi: it never reaches Python. MIDI clock comes
        # through, for the beat (the performer keeps it apart from the playing). Sysex is let
        # through, because rtmidi drops a swallowed message with the sysex that swallowed it
        # when it ignores sysex; raw_input drops the sysex and keeps the rest.
        rt.ignore_types(sysex=False, timing=False, active_sense=True)
        return rt

    def open(self) -> None:
        super().open()
        if self.api == "jack" and self._guard is None:
            self._guard = SysexGuard(self)
            self._guard.start()

    def _own_port(self) -> str:
        return self.names.input_port

    def _before_open(self) -> None:
        # Its callback is set when the change that opens it is done (see _GraphChanges).
        GRAPH_CHANGES.add(self)

    def pause(self) -> bool:
        """Take the callback off: RtMidi queues what arrives. Whether it was listening."""
        if not self._listening:
            return False
        self._rt.cancel_callback()
        self._listening = False
        return True

    def resume(self) -> None:
        """Hand on what was queued meanwhile, in order, and set the callback again.

        RtMidi reads no queue while a callback is set, so an event that lands in the
        microseconds between the last look and the callback waits in the queue for the next
        change of the graph.
        """
        if self.closed or self._listening:
            return
        while (event := self._rt.get_message()) is not None:
            self._on_midi(event)
        self._rt.set_callback(self._on_midi)
        self._keep_callback_pair()
        self._listening = True

    def _keep_callback_pair(self) -> None:
        """Hold the (function, data) pair that python-rtmidi gives RtMidi as a bare pointer.

        python-rtmidi lets go of the pair when the callback is cancelled (a pause, a close). A
        MIDI thread already in RtMidi's dispatch with that pointer, waiting for the GIL, then
        reads freed memory: the segfault seen under ``jackd -S`` when a message arrived while
        a port closed. The endpoint keeps every pair it set (one per change of the graph) for
        as long as it lives; found through the rtmidi object's references, the only way
        python-rtmidi shows them.
        """
        self._callback_pairs.extend(
            ref
            for ref in gc.get_referents(self._rt)
            if isinstance(ref, tuple) and ref and ref[0] == self._on_midi
        )

    def _on_midi(self, event: tuple[list[int], float], data: object = None) -> None:
        # Runs on the MIDI system's thread (inside the JACK cycle): stamp, parse, hand on.
        if self.closed:
            return  # it was already waiting for the GIL when the port closed
        received_s = time.monotonic()
        for message in self._raw.read(event[0]):
            self._handler(message, received_s)

    def _on_gone(self) -> None:
        # Keys held on a device that vanished will never be released: release them. (From
        # the watcher's thread; the MIDI thread has nothing to deliver from a gone device.)
        now_s = time.monotonic()
        for channel in range(CHANNELS):
            self._handler(
                mido.Message("control_change", channel=channel, control=ALL_NOTES_OFF_CC), now_s
            )

    def _reconnect(self, target: str) -> None:
        super()._reconnect(target)
        if self._guard is not None:
            self._guard.connect()  # the port was made anew: its connections are gone

    def close(self) -> None:
        """Stop the guard, then close (the change pauses the input: nothing arrives in a
        half-closed port)."""
        if self._guard is not None:
            self._guard.stop()
            self._guard = None
        super().close()
        GRAPH_CHANGES.discard(self)


class SysexGuard:
    """Ends a sysex left open on a JACK input, and says what the input dropped and recovered.

    python-rtmidi's JACK backend takes every event after an unterminated ``F0`` fragment as
    part of that sysex until an event ends in ``F7``. This thread sends a lone ``F7`` from a
    port of its own, connected to the input, every ``GUARD_INTERVAL_S``: with no sysex open
    it arrives as itself and is dropped; otherwise it ends the sysex, and the messages it had
    swallowed come out of it (:mod:`antiphon.daemon.midi.raw_input`), a quarter of a second
    late at most. A long sysex sent in several events can be cut by it, which costs nothing:
    the daemon does not listen to sysex. After each tick the thread logs, at once, a sysex
    that had swallowed messages, and, at most every ``MALFORMED_LOG_INTERVAL_S``, how many
    malformed events were dropped.
    """

    def __init__(self, endpoint: MidiInput) -> None:
        self._endpoint = endpoint
        self._lock = threading.Lock()  # between the ticks and a reconnect
        self._stop = threading.Event()
        try:
            with GRAPH_CHANGES.changing():
                self._rt = rtmidi.MidiOut(RTMIDI_API_OF[endpoint.api], endpoint.names.guard_client)
        except rtmidi.RtMidiError as err:
            raise PortError(f"cannot make the input's sysex guard: {err}") from err
        self._thread = threading.Thread(target=self._run, name="midi-sysex-guard", daemon=True)
        self._reported = RawInputCounts()
        self._malformed_logged_s = -MALFORMED_LOG_INTERVAL_S

    def start(self) -> None:
        self.connect()
        self._thread.start()

    def connect(self) -> None:
        """(Re)connect the guard's port to the input's own port."""
        with self._lock, GRAPH_CHANGES.changing():
            self._rt.close_port()
            listed = self._rt.get_ports()
            own = self._endpoint.names.input_listed
            if own not in listed:  # a named device not there yet: connected when it comes
                log.debug("the input's sysex guard waits for '%s'", own)
                return
            self._rt.open_port(listed.index(own), GUARD_PORT)

    def _run(self) -> None:
        while not self._stop.wait(GUARD_INTERVAL_S):
            with self._lock:
                try:
                    self._rt.send_message([SYSEX_END])
                except rtmidi.RtMidiError as err:
                    log.debug("the sysex guard could not send: %s", err)
            self._report()

    def _report(self) -> None:
        counts, reported = self._endpoint.counts, self._reported
        if counts.swallowed_sysex > reported.swallowed_sysex:
            log.warning(
                "MIDI input '%s': a sysex without its end (F7) swallowed what came after it; "
                "Antiphon ended it: %d messages heard late (%d sysex fragments so far)",
                self._endpoint.name,
                counts.recovered - reported.recovered,
                counts.swallowed_sysex,
            )
            reported.swallowed_sysex, reported.recovered = counts.swallowed_sysex, counts.recovered
        now_s = time.monotonic()
        if (
            counts.malformed > reported.malformed
            and now_s - self._malformed_logged_s >= MALFORMED_LOG_INTERVAL_S
        ):
            log.warning(
                "MIDI input '%s': %d malformed events dropped (%d so far)",
                self._endpoint.name,
                counts.malformed - reported.malformed,
                counts.malformed,
            )
            reported.malformed = counts.malformed
            self._malformed_logged_s = now_s

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        with self._lock, GRAPH_CHANGES.changing():
            self._rt.close_port()
            self._rt.delete()


class MidiOutput(_Endpoint):
    """The daemon's MIDI output. ``send`` never raises: a device that vanished drops messages.

    A device that comes back after vanishing is first sent note-offs for the notes it was
    playing when it went (and All Notes Off on their channels): it may still be sounding them.
    """

    kind = "output"

    def __init__(self, api: str, names: VirtualPortNames, pattern: str | None = None) -> None:
        self._lock = threading.Lock()  # taken by send and by a reconnect, never for long
        self._wire = NotesOnTheWire()  # what the connected device is sounding
        self._sent_s = -JACK_IN_FLIGHT_S  # when the last message left
        self.failed_sends = 0
        super().__init__(api, names, pattern)

    def _make_rt(self) -> rtmidi.MidiOut:
        return rtmidi.MidiOut(RTMIDI_API_OF[self.api], self.names.output_client)

    def _own_port(self) -> str:
        return self.names.output_port

    def open(self) -> None:
        super().open()
        if self.connected_to is not None:
            self._settle_connection()

    def _settle_connection(self) -> None:
        if self.api == "jack":
            time.sleep(JACK_CONNECTION_SETTLE_S)

    def send(self, message: mido.Message) -> None:
        self.send_raw(message.bytes())

    def send_raw(self, data: Sequence[int]) -> None:
        """Send bytes as one event, whatever they are (python-rtmidi takes one to three
        bytes, or more starting with ``F0``): how the fuzz run puts garbage on a port."""
        with self._lock:
            if self.closed or self.absent:
                return
            try:
                self._rt.send_message(data)
                self._sent_s = time.monotonic()
                self._wire.sent(data)
            except rtmidi.RtMidiError as err:
                self.failed_sends += 1
                if self.failed_sends == 1:
                    log.warning("MIDI output '%s' refused a message: %s", self.name, err)

    def _reconnect(self, target: str) -> None:
        with self._lock:
            super()._reconnect(target)
        self._settle_connection()  # still absent meanwhile: the engine's sends are dropped
        with self._lock:
            left = len(self._wire)
            for message in self._wire.release():
                self._rt.send_message(message.bytes())
        if left:
            log.warning(
                "MIDI output '%s' is back: ended the %d notes it was playing when it went",
                target,
                left,
            )

    def close(self) -> None:
        """Close once the last message sent has left: on JACK it waits in RtMidi's queue for
        the next cycle, and the note-offs sent just before a close must not be lost with it."""
        with self._lock:
            if self.api == "jack":
                time.sleep(max(0.0, self._sent_s + JACK_IN_FLIGHT_S - time.monotonic()))
            super().close()


class PortWatcher:
    """A thread that lists port names once a second and tells named endpoints what it saw.

    It lists through rtmidi objects of its own, so it never shares one with the MIDI thread
    or the engine thread. Not a poll of the MIDI data: the input still arrives by callback.
    """

    def __init__(self, endpoints: Sequence[_Endpoint], interval_s: float = WATCH_INTERVAL_S):
        self._inputs = [e for e in endpoints if not e.virtual and e.kind == "input"]
        self._outputs = [e for e in endpoints if not e.virtual and e.kind == "output"]
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._listers: tuple[rtmidi.MidiIn, rtmidi.MidiOut] | None = None
        if self._inputs or self._outputs:
            api = RTMIDI_API_OF[(self._inputs or self._outputs)[0].api]
            try:
                with GRAPH_CHANGES.changing():
                    self._listers = (
                        rtmidi.MidiIn(api, "Antiphon watch"),
                        rtmidi.MidiOut(api, "Antiphon watch"),
                    )
            except rtmidi.RtMidiError as err:
                raise PortError(f"cannot watch the MIDI ports: {err}") from err
            self._thread = threading.Thread(target=self._run, name="midi-port-watcher", daemon=True)

    def start(self) -> None:
        if self._thread is not None:
            self._thread.start()

    def _run(self) -> None:
        assert self._listers is not None
        sources, destinations = self._listers
        while not self._stop.wait(self._interval_s):
            try:
                inputs, outputs = sources.get_ports(), destinations.get_ports()
            except rtmidi.RtMidiError as err:
                log.warning("cannot list MIDI ports: %s", err)
                continue
            for endpoint in self._inputs:
                endpoint.check(inputs)
            for endpoint in self._outputs:
                endpoint.check(outputs)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread.is_alive():
            self._thread.join()
        if self._listers is not None:
            with GRAPH_CHANGES.changing():
                for lister in self._listers:
                    lister.delete()
            self._listers = None


class MidiPorts:
    """The daemon's output and input, on one MIDI system.

    Made with the output open; :meth:`open_input` then starts the input (and watching named
    devices), once whatever handles the input is ready. Close in two steps:
    :meth:`stop_input` (nothing reaches the handler after it), then, once the note-offs
    have gone out, :meth:`close`.
    """

    def __init__(
        self,
        midi_api: str = "auto",
        port_name: str = "Antiphon",
        output_port: str | None = None,
        clock_out_port: str | None = None,
    ) -> None:
        self.api = choose_api(midi_api)
        self.names = virtual_port_names(self.api, port_name)
        self._refuse_name_clash()
        if self.api == "windows" and output_port is None:
            raise PortSetupError(
                "Windows MM has no virtual ports: make one with loopMIDI and pass --output-port"
            )
        self.output = MidiOutput(self.api, self.names, output_port)
        try:
            self.output.open()
        except PortError:
            self.output.close()
            raise
        self.input: MidiInput | None = None
        self.clock_input: MidiInput | None = None
        # The outgoing MIDI clock's own port (``clock_out_port``), connected to that device.
        self.clock_output: MidiOutput | None = None
        if clock_out_port is not None:
            self.clock_output = MidiOutput(self.api, _clock_out_names(self.names), clock_out_port)
            try:
                self.clock_output.open()
            except PortError:
                self.clock_output.close()
                self.output.close()
                raise
        self._watcher: PortWatcher | None = None

    def open_input(
        self,
        handler: MessageHandler,
        input_port: str | None = None,
        clock_port: str | None = None,
        clock_handler: MessageHandler | None = None,
    ) -> None:
        """Open the input (virtual, or connected to ``input_port`` found by name), and the
        clock's own input when ``clock_port`` is given (its messages go to
        ``clock_handler``)."""
        if self.api == "windows" and input_port is None:
            raise PortSetupError(
                "Windows MM has no virtual ports: make one with loopMIDI and pass --input-port"
            )
        self.input = MidiInput(self.api, self.names, handler, input_port)
        endpoints: list[_Endpoint] = [self.input, self.output]
        if self.clock_output is not None:
            endpoints.append(self.clock_output)
        try:
            self.input.open()
            if clock_port is not None and clock_handler is not None:
                self.clock_input = MidiInput(
                    self.api, _clock_names(self.names), clock_handler, clock_port
                )
                self.clock_input.open()
                endpoints.append(self.clock_input)
            self._watcher = PortWatcher(endpoints)
        except PortError:
            self.input.close()
            if self.clock_input is not None:
                self.clock_input.close()
            raise
        self._watcher.start()

    def _refuse_name_clash(self) -> None:
        inputs, outputs = list_ports(self.api)
        clash = own_port_clash(self.names, inputs + outputs)
        if clash is not None:
            raise clash

    def describe(self) -> str:
        """One line for the log: where to play and where the replies come out."""

        def side(endpoint: _Endpoint) -> str:
            if endpoint.absent:
                return f"'{endpoint.pattern}' (waiting for it)"
            return f"'{endpoint.name}'" + (" (virtual)" if endpoint.virtual else "")

        heard = side(self.input) if self.input is not None else "(not open)"
        return f"{API_LABEL[self.api]}: input {heard}, output {side(self.output)}"

    def stop_input(self) -> None:
        """Stop watching and deregister the input: nothing reaches the handler after this."""
        if self._watcher is not None:
            self._watcher.stop()
        if self.input is not None:
            self.input.close()
        if self.clock_input is not None:
            self.clock_input.close()

    def close(self) -> None:
        self.stop_input()
        if self.clock_output is not None:
            self.clock_output.close()
        self.output.close()


def _clock_names(names: VirtualPortNames) -> VirtualPortNames:
    """The clock input's own client and port names: the input's, marked as the clock's."""
    return dataclasses.replace(
        names,
        input_client=f"{names.input_client} clock",
        input_port=f"{names.input_port}-clock",
    )


def _clock_out_names(names: VirtualPortNames) -> VirtualPortNames:
    """The outgoing clock's own client and port names: the output's, marked as the clock's."""
    return dataclasses.replace(
        names,
        output_client=f"{names.output_client} clock",
        output_port=f"{names.output_port}-clock",
    )


# `antiphon ports` --------------------------------------------------------------------------


def list_ports(api: str) -> tuple[list[str], list[str]]:
    """(inputs, outputs) of a working MIDI system: what --input-port and --output-port accept."""
    api_id = RTMIDI_API_OF[api]
    try:
        with _quiet_stderr(), GRAPH_CHANGES.changing():
            source = rtmidi.MidiIn(api_id, "Antiphon ports")
            destination = rtmidi.MidiOut(api_id, "Antiphon ports")
            inputs, outputs = source.get_ports(), destination.get_ports()
            source.delete()
            destination.delete()
    except rtmidi.RtMidiError as err:
        raise PortError(_unavailable_reason(api, err)) from err
    return inputs, outputs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--midi-api",
        choices=["all", *MIDI_APIS],
        default="all",
        help="which MIDI system to list (default: every one this build supports)",
    )
    parser.add_argument(
        "--port-name", default="Antiphon", help="show the virtual port names for this name"
    )


def run(args: argparse.Namespace) -> int:
    apis = compiled_apis() if args.midi_api == "all" else [args.midi_api]
    working = 0
    for api in apis:
        label = API_LABEL[api]
        try:
            probe_api(api)
            inputs, outputs = list_ports(api)
        except PortError as err:
            print(f"{label}: not available: {err}")
            continue
        working += 1
        print(port_listing(api, inputs, outputs, args.port_name))
    return 0 if working else 1
