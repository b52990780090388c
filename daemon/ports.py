"""MIDI ports: the only module that talks to the MIDI system (python-rtmidi, as mido's backend).

Ports are opened with python-rtmidi directly, the library under mido's rtmidi backend, because
mido cannot give a client name to a port that connects to an existing device, and the daemon
wants every port it makes to carry its name. Messages are still mido ``Message`` objects.

Names the daemon's virtual ports get (``port_name`` setting, default "Antiphon"):

    ========  ===========================  ============================
    system    input (play into this)       output (replies come out)
    ========  ===========================  ============================
    JACK      ``Antiphon-in:in``           ``Antiphon-out:out``
    ALSA      ``Antiphon-in:in 128:0``     ``Antiphon-out:out 129:0``
    CoreMIDI  ``Antiphon-in``              ``Antiphon-out``
    ========  ===========================  ============================

(JACK gives each rtmidi port its own client, and two clients cannot share a name, hence the
``-in``/``-out`` clients; ALSA shows the same client and port names plus the client:port
numbers it assigned; Windows MM has no virtual ports: connect to a loopMIDI port by name.)

Input arrives on the MIDI system's own thread (inside the JACK process cycle with JACK): the
callback stamps the message with ``time.monotonic()`` and hands it on, nothing else. A port
connected to a device by name is watched by a thread that looks at the list of port names
once a second; when the device goes away the daemon plays on, says so once, and reconnects by
name when it is back.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import mido
import rtmidi

log = logging.getLogger(__name__)

MessageHandler = Callable[[mido.Message, float], None]
"""Receives each input message and the ``time.monotonic()`` it arrived at."""

RTMIDI_API_OF = {
    "alsa": rtmidi.API_LINUX_ALSA,
    "jack": rtmidi.API_UNIX_JACK,
    "coremidi": rtmidi.API_MACOSX_CORE,
    "windows": rtmidi.API_WINDOWS_MM,
}
API_LABEL = {"alsa": "ALSA", "jack": "JACK", "coremidi": "CoreMIDI", "windows": "Windows MM"}
ALSA_SEQUENCER = "/dev/snd/seq"
WATCH_INTERVAL_S = 1.0
CHANNELS = 16
ALL_NOTES_OFF_CC = 123


class PortError(RuntimeError):
    """A MIDI port or MIDI system that cannot be used; the message is one line for the user."""


class PortNotFound(PortError):
    """No port matches a name (it may be a device that is not plugged in yet)."""


# MIDI systems ------------------------------------------------------------------------------


def compiled_apis() -> list[str]:
    """The MIDI systems this python-rtmidi build supports, by their ``--midi-api`` names."""
    compiled = set(rtmidi.get_compiled_api())
    return [name for name, api in RTMIDI_API_OF.items() if api in compiled]


def auto_order() -> list[str]:
    """The systems ``--midi-api auto`` tries, in order, on this platform."""
    if sys.platform.startswith("linux"):
        return ["alsa", "jack"]
    if sys.platform == "darwin":
        return ["coremidi", "jack"]
    if sys.platform == "win32":
        return ["windows"]
    return compiled_apis()


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
    if api not in RTMIDI_API_OF:
        raise PortError(f"unknown MIDI system '{api}' (use one of {', '.join(RTMIDI_API_OF)})")
    if api not in compiled_apis():
        raise PortError(f"this python-rtmidi was built without {API_LABEL[api]} support")
    if api == "alsa" and not os.path.exists(ALSA_SEQUENCER):
        raise PortError(f"no ALSA sequencer ({ALSA_SEQUENCER} missing)")
    try:
        with _quiet_stderr():
            probe = rtmidi.MidiIn(RTMIDI_API_OF[api], "Antiphon probe")
            probe.get_port_count()
            probe.delete()
    except rtmidi.RtMidiError as err:
        raise PortError(_unavailable_reason(api, err)) from err


def choose_api(choice: str) -> str:
    """The MIDI system to use for a ``--midi-api`` choice, checked to be working now."""
    if choice != "auto":
        probe_api(choice)
        return choice
    reasons = []
    for api in auto_order():
        try:
            probe_api(api)
        except PortError as err:
            reasons.append(str(err))
            continue
        return api
    advice = {
        "linux": "start JACK (`jackd -d dummy` or your audio setup) or load the ALSA sequencer "
        "(`sudo modprobe snd-seq`), then retry",
        "darwin": "CoreMIDI should always be there; check Audio MIDI Setup",
    }.get(sys.platform, "install a MIDI system python-rtmidi supports")
    raise PortError(" and ".join(reasons) + ": " + advice)


# Names -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VirtualPortNames:
    """The ports ``antiphon run`` makes: rtmidi client and port names, and the listed names."""

    input_client: str
    input_port: str
    input_listed: str  # as JACK, CoreMIDI and ALSA (plus " 128:0") list it
    output_client: str
    output_port: str
    output_listed: str

    def is_own(self, listed_name: str) -> bool:
        """Whether a name in a port list is one of this daemon's ports (never connect to it)."""
        return any(
            listed_name == own or listed_name.startswith(own + " ")
            for own in (self.input_listed, self.output_listed)
        )


def virtual_port_names(api: str, port_name: str) -> VirtualPortNames:
    """Client and port names for ``port_name`` on a MIDI system (see the module docstring)."""
    if api == "coremidi":
        # CoreMIDI programs list endpoints by their own name, so it must say whose it is.
        return VirtualPortNames(
            port_name, f"{port_name}-in", f"{port_name}-in",
            port_name, f"{port_name}-out", f"{port_name}-out",
        )  # fmt: skip
    return VirtualPortNames(
        f"{port_name}-in", "in", f"{port_name}-in:in",
        f"{port_name}-out", "out", f"{port_name}-out:out",
    )  # fmt: skip


def match_port(pattern: str, names: Sequence[str], kind: str = "port") -> str:
    """The one name in ``names`` that ``pattern`` means: equal or a part of it, any case.

    An exact match wins over partial ones ("KeyStep" finds "Arturia KeyStep 37 MIDI 1").
    No match or several partial matches raise :class:`PortError` listing the candidates.
    """
    wanted = pattern.casefold()
    exact = [name for name in names if name.casefold() == wanted]
    if len(exact) == 1:
        return exact[0]
    found = exact or [name for name in names if wanted in name.casefold()]
    if len(found) == 1:
        return found[0]
    if not found:
        known = ", ".join(f"'{n}'" for n in names) or "none"
        raise PortNotFound(f"no MIDI {kind} matches '{pattern}' (there are: {known})")
    candidates = ", ".join(f"'{n}'" for n in found)
    raise PortError(
        f"'{pattern}' matches several MIDI {kind}s: {candidates}; give more of the name"
    )


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
            self._before_open()
            if self.pattern is None:
                self._rt.open_virtual_port(self._own_port())
                return
            listed = self._rt.get_ports()
            try:
                target = match_port(self.pattern, self._others(listed), self.kind)
            except PortNotFound as err:
                self.absent = True
                log.warning("%s; waiting for it", err)
                return
            self._rt.open_port(listed.index(target), self._own_port())
            self.connected_to = target
        except rtmidi.RtMidiError as err:
            wanted = self.pattern or self.own_name
            raise PortError(f"cannot open the MIDI {self.kind} '{wanted}': {err}") from err

    def _others(self, listed: Sequence[str]) -> list[str]:
        return [n for n in listed if not self.names.is_own(n)]

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
            target = match_port(self.pattern, self._others(present), self.kind)
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
        self._rt.close_port()
        self._before_open()
        self._rt.open_port(self._rt.get_ports().index(target), self._own_port())

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
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
        self.malformed = 0  # messages mido could not parse, dropped
        super().__init__(api, names, pattern)

    def _make_rt(self) -> rtmidi.MidiIn:
        rt = rtmidi.MidiIn(RTMIDI_API_OF[self.api], self.names.input_client)
        # Sysex, clock and active sensing are dropped inside rtmidi: they never reach Python.
        rt.ignore_types(sysex=True, timing=True, active_sense=True)
        return rt

    def _own_port(self) -> str:
        return self.names.input_port

    def _before_open(self) -> None:
        # Set before opening, so no message waits in rtmidi's queue (closing cancels it).
        self._rt.set_callback(self._on_midi)

    def _on_midi(self, event: tuple[list[int], float], data: object = None) -> None:
        # Runs on the MIDI system's thread (inside the JACK cycle): stamp, parse, hand on.
        received_s = time.monotonic()
        try:
            message = mido.Message.from_bytes(event[0])
        except ValueError:
            self.malformed += 1
            return
        self._handler(message, received_s)

    def _on_gone(self) -> None:
        # Keys held on a device that vanished will never be released: release them. (From
        # the watcher's thread; the MIDI thread has nothing to deliver from a gone device.)
        now_s = time.monotonic()
        for channel in range(CHANNELS):
            self._handler(
                mido.Message("control_change", channel=channel, control=ALL_NOTES_OFF_CC), now_s
            )

    def close(self) -> None:
        """Deregister the callback first, so no message arrives in a half-closed port."""
        if not self.closed:
            self._rt.cancel_callback()
        super().close()


class MidiOutput(_Endpoint):
    """The daemon's MIDI output. ``send`` never raises: a device that vanished drops messages."""

    kind = "output"

    def __init__(self, api: str, names: VirtualPortNames, pattern: str | None = None) -> None:
        self._lock = threading.Lock()  # taken by send and by a reconnect, never for long
        self.failed_sends = 0
        super().__init__(api, names, pattern)

    def _make_rt(self) -> rtmidi.MidiOut:
        return rtmidi.MidiOut(RTMIDI_API_OF[self.api], self.names.output_client)

    def _own_port(self) -> str:
        return self.names.output_port

    def send(self, message: mido.Message) -> None:
        with self._lock:
            if self.closed or self.absent:
                return
            try:
                self._rt.send_message(message.bytes())
            except rtmidi.RtMidiError as err:
                self.failed_sends += 1
                if self.failed_sends == 1:
                    log.warning("MIDI output '%s' refused a message: %s", self.name, err)

    def _reconnect(self, target: str) -> None:
        with self._lock:
            super()._reconnect(target)

    def close(self) -> None:
        with self._lock:
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
        self, midi_api: str = "auto", port_name: str = "Antiphon", output_port: str | None = None
    ) -> None:
        self.api = choose_api(midi_api)
        self.names = virtual_port_names(self.api, port_name)
        self._refuse_name_clash()
        if self.api == "windows" and output_port is None:
            raise PortError(
                "Windows MM has no virtual ports: make one with loopMIDI and pass --output-port"
            )
        self.output = MidiOutput(self.api, self.names, output_port)
        try:
            self.output.open()
        except PortError:
            self.output.close()
            raise
        self.input: MidiInput | None = None
        self._watcher: PortWatcher | None = None

    def open_input(self, handler: MessageHandler, input_port: str | None = None) -> None:
        """Open the input (virtual, or connected to ``input_port`` found by name)."""
        if self.api == "windows" and input_port is None:
            raise PortError(
                "Windows MM has no virtual ports: make one with loopMIDI and pass --input-port"
            )
        self.input = MidiInput(self.api, self.names, handler, input_port)
        try:
            self.input.open()
            self._watcher = PortWatcher([self.input, self.output])
        except PortError:
            self.input.close()
            raise
        self._watcher.start()

    def _refuse_name_clash(self) -> None:
        # JACK would quietly rename our client to "Antiphon-in-01"; say so instead.
        inputs, outputs = list_ports(self.api)
        taken = sorted(n for n in inputs + outputs if self.names.is_own(n))
        if taken:
            raise PortError(
                f"a MIDI port named '{taken[0]}' already exists (another antiphon running?): "
                "choose another --port-name"
            )

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

    def close(self) -> None:
        self.stop_input()
        self.output.close()


# `antiphon ports` --------------------------------------------------------------------------


def list_ports(api: str) -> tuple[list[str], list[str]]:
    """(inputs, outputs) of a working MIDI system: what --input-port and --output-port accept."""
    api_id = RTMIDI_API_OF[api]
    try:
        with _quiet_stderr():
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
        choices=["all", *RTMIDI_API_OF],
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
        names = virtual_port_names(api, args.port_name)
        print(f"{label}:")
        print("  inputs (what --input-port accepts):")
        for name in inputs or ["(none)"]:
            print(f"    {name}")
        print("  outputs (what --output-port accepts):")
        for name in outputs or ["(none)"]:
            print(f"    {name}")
        if api != "windows":
            print(
                f"  antiphon run makes the virtual ports '{names.input_listed}' (play into it)"
                f" and '{names.output_listed}' (replies)"
            )
    return 0 if working else 1
