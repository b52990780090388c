"""The OSC control surface: the only module that touches OSC sockets.

A python-osc UDP server runs on its own thread. Each datagram is checked in this order:

1. the sender is on the allowlist (``--osc-allow``), else it is dropped unparsed and counted;
2. it is at most :data:`~antiphon.daemon.surface.datagrams.MAX_DATAGRAM_BYTES` (the socket reads
one byte more,
   so a bigger one is seen whole as too big, never cut down into something that parses);
3. :class:`~antiphon.daemon.surface.datagrams.ControlSurface` turns it into commands, the whole
datagram or
   nothing (a bundle with one bad message changes nothing);
4. the commands go to the performer's thread-safe control API, in order.

The server hands datagrams to the surface itself (``finish_request``) rather than through
python-osc's dispatcher, which calls handlers message by message (a bundle would half apply)
and sleeps in the server thread until a bundle's time tag.

Problems (refused, clamped, dropped) are logged at most once a second per kind, and sent to
the feedback address as ``/antiphon/error s``. The feedback address (``--osc-feedback``) also
gets every parameter change, whoever made it, on the parameter's own address and on the
mapped addresses that show it, plus the performer's state; a thread of its own sends them so
the performer's threads never wait on a socket.
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from antiphon.daemon.settings import Settings, model_folders
from antiphon.daemon.surface.datagrams import MAX_DATAGRAM_BYTES, ControlSurface
from antiphon.daemon.surface.mapping import CcControl, ControlMapping, load_mapping
from antiphon.daemon.surface.vocabulary import (
    NAMESPACE,
    PARAMETER_BY_NAME,
    Action,
    Allowlist,
    ControlError,
    Controlled,
    OscArgument,
    ProblemLimiter,
    apply_command,
    status_messages,
)
from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.osc_server import BlockingOSCUDPServer

log = logging.getLogger(__name__)

Address = tuple[str, int]
OscMessage = tuple[str, list[OscArgument]]
EVENT_QUEUE_SIZE = 1024
STOP_TIMEOUT_S = 2.0


class OscError(RuntimeError):
    """The OSC server or feedback address cannot be set up; the message is one line."""


class OscSettingError(OscError):
    """An OSC setting that cannot be used as written (not HOST:PORT): no retry can help."""


def parse_host_port(text: str, what: str = "osc_feedback") -> Address:
    """``HOST:PORT`` (``[::1]:9001`` for IPv6) as a resolved ``(host, port)``.

    Raises:
        OscSettingError: not HOST:PORT, or a port outside 1..65535.
        OscError: a host that does not resolve (the name service may come up later).
    """
    host, _, port_text = text.rpartition(":")
    host = host.strip("[]")
    if not host or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise OscSettingError(f"{what}: expected HOST:PORT, like 127.0.0.1:9001 (got {text!r})")
    try:
        info = socket.getaddrinfo(host, int(port_text), type=socket.SOCK_DGRAM)
    except socket.gaierror as err:
        raise OscError(f"{what}: cannot resolve {host!r}: {err.strerror}") from err
    resolved = info[0][4]
    return str(resolved[0]), int(resolved[1])


def encode(messages: list[OscMessage]) -> bytes:
    """One datagram: a message, or a bundle (time tag: immediately) of several."""
    built = []
    for address, args in messages:
        builder = OscMessageBuilder(address)
        for arg in args:
            builder.add_arg(arg)
        built.append(builder.build())
    if len(built) == 1:
        return built[0].dgram
    bundle = OscBundleBuilder(IMMEDIATELY)
    for message in built:
        bundle.add_content(message)
    return bundle.build().dgram


class _UdpServer(BlockingOSCUDPServer):
    """python-osc's UDP server with the allowlist before anything is read, and the whole
    datagram going to :meth:`OscControl._on_datagram`."""

    max_packet_size = MAX_DATAGRAM_BYTES + 1

    def __init__(self, address: Address, control: OscControl) -> None:
        self._control = control
        super().__init__(address, Dispatcher())

    def verify_request(self, request: Any, client_address: Any) -> bool:
        return self._control._admit(client_address)

    def finish_request(self, request: Any, client_address: Any) -> None:
        data, sock = request
        self._control._on_datagram(data, sock, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A bug, not bad input (bad input is a ControlError): keep serving, keep the traceback.
        log.exception("OSC: error handling a datagram from %s", client_address[0])


class Performing(Controlled, Protocol):
    """The performer as the control surface sees it: commands, status, change listeners."""

    def add_listener(self, listener: Callable[[str, object], None]) -> None: ...
    def remove_listener(self, listener: Callable[[str, object], None]) -> None: ...


class OscControl:
    """The OSC server, the feedback sender, and the counters they keep.

    Args:
        settings: ``osc_host``, ``osc_port``, ``osc_allow``, ``osc_feedback``, ``models_dir``.
        performer: what the commands drive and whose changes are fed back.
        mapping: mapped addresses.
        clock: for the rate limit on problem reports.

    Raises:
        OscError, ControlError: a bad feedback address or allowlist.
    """

    def __init__(
        self,
        settings: Settings,
        performer: Performing,
        mapping: ControlMapping,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.performer = performer
        self.mapping = mapping
        self.surface = ControlSurface(mapping, model_folders(settings.models_dir))
        self.allowlist = Allowlist(settings.osc_allow)
        self.feedback_address = (
            parse_host_port(settings.osc_feedback) if settings.osc_feedback else None
        )
        self.limiter = ProblemLimiter(clock=clock)
        self.counters = {"received": 0, "applied": 0, "refused": 0, "dropped": 0}
        self._server: _UdpServer | None = None
        self._server_thread: threading.Thread | None = None
        self._events: queue.Queue[tuple[str, object] | None] = queue.Queue(EVENT_QUEUE_SIZE)
        self._notifier: threading.Thread | None = None
        self._feedback_socket: socket.socket | None = None

    @property
    def address(self) -> Address:
        """Where the server listens."""
        if self._server is None:
            raise OscError("the OSC server is not running")
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    # Starting and stopping -----------------------------------------------------------------

    def start(self) -> None:
        """Bind, serve, and send the whole status to the feedback address.

        Raises:
            OscError: the address cannot be bound (in use, not this machine's).
        """
        host, port = self.settings.osc_host, self.settings.osc_port or 0
        try:
            self._server = _UdpServer((host, port), self)
        except (OSError, OverflowError) as err:
            reason = getattr(err, "strerror", None) or str(err)
            raise OscError(f"cannot listen for OSC on {host}:{port}: {reason}") from err
        if self.feedback_address is not None:
            family = socket.AF_INET6 if ":" in self.feedback_address[0] else socket.AF_INET
            self._feedback_socket = socket.socket(family, socket.SOCK_DGRAM)
        self._notifier = threading.Thread(target=self._notify, name="osc-feedback", daemon=True)
        self._notifier.start()
        self.performer.add_listener(self._on_change)
        self._queue("_send", status_messages(self._status()))
        self._server_thread = threading.Thread(
            target=self._server.serve_forever, name="osc-server", daemon=True
        )
        self._server_thread.start()
        if not self.allowlist.networks and not _is_loopback(host):
            log.warning("OSC on %s with no --osc-allow: anyone on the network may send", host)
        feedback = ""
        if self.feedback_address is not None:
            feedback = " feedback to {}:{}".format(*self.feedback_address)
        log.info("OSC control on %s:%d%s", *self.address, feedback)

    def stop(self) -> None:
        """Stop serving and close the socket, then send what feedback is queued and close
        that socket too; safe to call twice."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._server_thread is not None:
            self._server_thread.join(STOP_TIMEOUT_S)
            self._server_thread = None
        if self._notifier is not None:
            self.performer.remove_listener(self._on_change)
            self._events.put(None)
            self._notifier.join(STOP_TIMEOUT_S)
            self._notifier = None
        if self._feedback_socket is not None:
            self._feedback_socket.close()
            self._feedback_socket = None

    # Receiving (the server's thread) ------------------------------------------------------

    def _admit(self, sender: Address) -> bool:
        if self.allowlist.allows(sender[0]):
            return True
        self.counters["dropped"] += 1
        self.report("dropped", f"OSC from {sender[0]} dropped: not in --osc-allow")
        return False

    def _on_datagram(self, data: bytes, sock: socket.socket, sender: Address) -> None:
        self.counters["received"] += 1
        try:
            decoded = self.surface.decode(data, self._status())
        except ControlError as err:
            self.counters["refused"] += 1
            self.report("refused", f"OSC from {sender[0]} refused: {err}")
            return
        for note in decoded.notes:
            self.report("clamped", f"OSC from {sender[0]}: {note}")
        for command in decoded.commands:
            if isinstance(command, Action) and command.name == "status":
                port = command.argument if isinstance(command.argument, int) else sender[1]
                self._answer(sock, (sender[0], port))
                continue
            try:
                apply_command(command, self.performer)
            except ControlError as err:
                self.counters["refused"] += 1
                self.report("failed", f"OSC from {sender[0]}: {err}")
                return
        self.counters["applied"] += 1

    def _answer(self, sock: socket.socket, to: Address) -> None:
        try:
            sock.sendto(encode(status_messages(self._status())), to)
        except OSError as err:
            self.report("status", f"OSC status to {to[0]}:{to[1]} not sent: {err.strerror}")

    def _status(self) -> dict[str, Any]:
        return {**self.performer.status(), "osc": dict(self.counters)}

    # Problems and feedback -----------------------------------------------------------------

    def report(self, kind: str, text: str) -> None:
        """Log a problem and send it to the feedback address, at most once a second per kind."""
        admitted, held = self.limiter.admit(kind)
        if not admitted:
            return
        if held:
            text += f" ({held} more like it since)"
        log.warning("%s", text)
        self._queue("_send", [(f"{NAMESPACE}/error", [text])])

    def _on_change(self, topic: str, value: object) -> None:
        """The performer's listener: on its threads, so it only queues."""
        self._queue(topic, value)

    def _queue(self, topic: str, value: object) -> None:
        try:
            self._events.put_nowait((topic, value))
        except queue.Full:
            self.counters["dropped"] += 1

    def _notify(self) -> None:
        """The feedback thread: turns changes into OSC messages and sends them."""
        while (event := self._events.get()) is not None:
            topic, value = event
            if topic == "error":
                self.report("performer", str(value))
                continue
            messages = feedback_messages(topic, value, self.mapping)
            if messages and self._feedback_socket is not None and self.feedback_address:
                try:
                    self._feedback_socket.sendto(encode(messages), self.feedback_address)
                except OSError as err:
                    if self.limiter.admit("feedback")[0]:
                        host, port = self.feedback_address
                        log.warning("OSC feedback to %s:%d failed: %s", host, port, err.strerror)


def feedback_messages(topic: str, value: object, mapping: ControlMapping) -> list[OscMessage]:
    """What the feedback address hears of one performer change (``_send``: ready messages)."""
    if topic == "_send":
        return list(value) if isinstance(value, list) else []
    parameter = PARAMETER_BY_NAME.get(topic)
    if parameter is not None and isinstance(value, float | int | str):
        messages: list[OscMessage] = [(parameter.address, [value])]
        messages += [(address, [position]) for address, position in mapping.feedback(topic, value)]
        return messages
    if topic == "replying":
        return [(f"{NAMESPACE}/status/state", ["replying" if value else "listening"])]
    if topic == "duet":
        return [(f"{NAMESPACE}/status/state", ["duet" if value else "listening"])]
    if topic in ("reply", "model"):
        return status_messages({"last_reply" if topic == "reply" else topic: value})
    if topic in ("state", "panic"):
        return [(f"{NAMESPACE}/event", [topic if value is True else str(value)])]
    return []


def control_services(
    settings: Settings, performer: Performing, input_taps: list[Callable[[Any, float], None]]
) -> list[OscControl]:
    """The control surface for these settings: the mapped MIDI CCs become an input tap, and
    the OSC server is the service to start (none with ``osc_port`` 0).

    Raises:
        ControlError: the mapping file cannot be used, or maps the end-phrase CC.
        OscError: a bad feedback address.
    """
    mapping = load_mapping(Path(settings.mapping)) if settings.mapping else ControlMapping()
    if settings.end_phrase_cc is not None and settings.end_phrase_cc in mapping.cc:
        raise ControlError(f"mapping: cc.{settings.end_phrase_cc} is the end_phrase_cc")
    if mapping.cc:
        input_taps.append(CcControl(mapping, performer))
    if not settings.osc_port:
        return []
    return [OscControl(settings, performer, mapping)]


def _is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")
