"""The OSC surface's logic, without sockets: datagram bytes in, commands out, whole or not.

:func:`decode_packet` turns one UDP datagram into ``(address, args)`` calls, strictly;
:class:`ControlSurface` turns the calls into commands, checking every argument (type, count,
NaN and infinity, range) before it returns anything, so a datagram is used whole or not at
all: a bundle with one bad message changes nothing.

The datagram framing is checked here rather than left to python-osc, whose bundle parser
loops forever on a negative element size and whose string reader raises
``UnicodeDecodeError`` on bytes that are not UTF-8; python-osc still parses each message's
arguments.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from antiphon.daemon.musician.model.model_file import ModelError, resolve_model_path
from antiphon.daemon.settings import AUTO_MODEL
from antiphon.daemon.surface.mapping import ControlMapping
from antiphon.daemon.surface.vocabulary import (
    NAMESPACE,
    PARAMETER_BY_ADDRESS,
    STATE_SLOTS,
    Action,
    Command,
    ControlError,
    OscArgument,
    SetParameter,
    check_number,
    check_value,
    order_reply_bounds,
    type_name,
)
from pythonosc import osc_message

MAX_DATAGRAM_BYTES = 4096
MAX_BUNDLE_MESSAGES = 32
MAX_BUNDLE_DEPTH = 4
BUNDLE_PREFIX = b"#bundle\x00"
ARGUMENT_TAGS = frozenset("ifhdsTF")  # the OSC types any address here can use


@dataclass
class Decoded:
    """The commands a datagram holds, in order, and the clamping it needed (to report)."""

    commands: list[Command] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# Datagram framing ---------------------------------------------------------------------------


OscCall = tuple[str, tuple[OscArgument, ...]]


def decode_packet(data: bytes) -> list[OscCall]:
    """The messages in one datagram (a message, or a bundle of them, flattened in order).

    Bundle time tags are ignored: a bundle is applied when it arrives, as one change.

    Raises:
        ControlError: the datagram is empty, too big, malformed, or holds too many messages.
    """
    if not data:
        raise ControlError("empty datagram")
    if len(data) > MAX_DATAGRAM_BYTES:
        raise ControlError(f"datagram of {len(data)} bytes (at most {MAX_DATAGRAM_BYTES})")
    calls: list[OscCall] = []
    _decode_element(data, calls, depth=0)
    return calls


def _decode_element(data: bytes, calls: list[OscCall], depth: int) -> None:
    if len(data) % 4:
        raise ControlError(f"malformed datagram: {len(data)} bytes is not a multiple of 4")
    if data.startswith(BUNDLE_PREFIX):
        _decode_bundle(data, calls, depth)
    elif data.startswith(b"/"):
        if len(calls) >= MAX_BUNDLE_MESSAGES:
            raise ControlError(f"bundle of more than {MAX_BUNDLE_MESSAGES} messages")
        calls.append(_decode_message(data))
    else:
        raise ControlError("malformed datagram: not an OSC message or bundle")


def _decode_bundle(data: bytes, calls: list[OscCall], depth: int) -> None:
    if depth >= MAX_BUNDLE_DEPTH:
        raise ControlError(f"bundles nested more than {MAX_BUNDLE_DEPTH} deep")
    index = len(BUNDLE_PREFIX) + 8  # the time tag
    if len(data) < index:
        raise ControlError("malformed bundle: no time tag")
    while index < len(data):
        if index + 4 > len(data):
            raise ControlError("malformed bundle: truncated element size")
        (size,) = struct.unpack_from(">i", data, index)
        index += 4
        if size <= 0 or size % 4 or index + size > len(data):
            raise ControlError(f"malformed bundle: element size {size}")
        _decode_element(data[index : index + size], calls, depth + 1)
        index += size


def _padded(length: int) -> int:
    """Bytes an OSC string of ``length`` bytes takes: a NUL, then padding to 4."""
    return (length // 4 + 1) * 4


_ARGUMENT_BYTES = {"i": 4, "f": 4, "h": 8, "d": 8, "T": 0, "F": 0}


def _decode_message(data: bytes) -> OscCall:
    end = data.find(b"\x00")
    raw_address = data[:end]
    if end < 0 or not raw_address.isascii() or not raw_address.decode().isprintable():
        raise ControlError("malformed message: the address is not a printable ASCII string")
    address = raw_address.decode()
    index = _padded(len(raw_address))
    tags = ""
    if index < len(data):
        tag_end = data.find(b"\x00", index)
        raw_tags = data[index:tag_end] if tag_end >= 0 else b""
        if not raw_tags.startswith(b",") or not raw_tags.isascii():
            raise ControlError(f"{address}: malformed message: no type tag string")
        tags = raw_tags[1:].decode()
        unknown = set(tags) - ARGUMENT_TAGS
        if unknown:
            kinds = "".join(sorted(unknown))
            raise ControlError(f"{address}: unsupported argument type '{kinds}'")
    try:
        args = tuple(osc_message.OscMessage(data).params)
    except (osc_message.ParseError, UnicodeDecodeError) as err:
        raise ControlError(f"{address}: malformed message: arguments do not parse") from err
    expected = index + (_padded(len(tags) + 1) if index < len(data) else 0)
    for tag, arg in zip(tags, args, strict=True):
        expected += _padded(len(arg.encode())) if tag == "s" else _ARGUMENT_BYTES[tag]
    if expected > len(data):  # python-osc reads a cut-off float as 0.0
        raise ControlError(f"{address}: malformed message: the arguments are cut short")
    if expected < len(data):
        raise ControlError(f"{address}: malformed message: {len(data) - expected} stray bytes")
    # A 32-bit float's shortest decimal form: a fader's 0.3 is 0.3, not 0.30000001192092896.
    args = tuple(
        float(f"{arg:.7g}") if tag == "f" and isinstance(arg, float) else arg
        for tag, arg in zip(tags, args, strict=True)
    )
    return address, args


# Calls to commands --------------------------------------------------------------------------------


class ControlSurface:
    """Turns OSC calls into commands, whole or not at all.

    Args:
        mapping: mapped addresses and CCs.
        models_dirs: the only folders ``/antiphon/model`` may load from, searched in order.
    """

    def __init__(self, mapping: ControlMapping, models_dirs: Sequence[Path]) -> None:
        self.mapping = mapping
        self.models_dirs = tuple(models_dirs)

    def decode(self, data: bytes, current: Mapping[str, Any]) -> Decoded:
        """The commands one datagram holds; ``current`` holds the parameters' values now.

        Raises:
            ControlError: on the first problem; then none of the datagram's commands apply.
        """
        decoded = Decoded()
        for address, args in decode_packet(data):
            command, note = self.interpret(address, args)
            if command is not None:
                decoded.commands.append(command)
            if note:
                decoded.notes.append(note)
        decoded.commands, notes = order_reply_bounds(decoded.commands, current)
        decoded.notes += notes
        return decoded

    def interpret(self, address: str, args: Sequence[OscArgument]) -> tuple[Command | None, str]:
        """One call's command (None for a button's release) and a clamping note.

        Raises:
            ControlError: unknown address, or arguments it cannot take.
        """
        parameter = PARAMETER_BY_ADDRESS.get(address)
        if parameter is not None:
            value, note = check_value(parameter, _one(address, args), address)
            return SetParameter(parameter.name, value), note
        mapped = self.mapping.osc.get(address)
        if mapped is not None:
            return mapped.command(_one(address, args)), ""
        if address.startswith(NAMESPACE + "/"):
            action = address[len(NAMESPACE) + 1 :]
            if action in ("panic", "reset", "memory/clear"):
                return (Action(action) if _pressed(address, args) else None), ""
            if action in ("state/save", "state/load"):
                return Action(action, _slot(address, args)), ""
            if action == "model":
                requested = _one(address, args)
                if not isinstance(requested, str):
                    raise ControlError(f"{address}: expected a string, got {type_name(requested)}")
                if requested == AUTO_MODEL:  # both shipped models, chosen by what is heard
                    return Action(action, Path(AUTO_MODEL)), ""
                try:
                    path = resolve_model_path(requested, self.models_dirs)
                except ModelError as err:
                    raise ControlError(f"{address}: {err}") from err
                return Action(action, path), ""
            if action == "status":
                return Action(action, _reply_port(address, args)), ""
        raise ControlError(f"{address}: unknown address")


def _one(address: str, args: Sequence[OscArgument]) -> OscArgument:
    if len(args) != 1:
        raise ControlError(f"{address}: takes one argument, got {len(args)}")
    return args[0]


def _pressed(address: str, args: Sequence[OscArgument]) -> bool:
    """No argument, or a true one (a button press); a false one is the button's release."""
    if not args:
        return True
    value = _one(address, args)
    return value if isinstance(value, bool) else check_number(address, value) != 0


def _slot(address: str, args: Sequence[OscArgument]) -> int:
    number = check_number(address, _one(address, args))
    if number != round(number) or not 0 <= number < STATE_SLOTS:
        raise ControlError(f"{address}: a slot is a whole number 0 to {STATE_SLOTS - 1}")
    return int(number)


def _reply_port(address: str, args: Sequence[OscArgument]) -> int | None:
    if not args:
        return None
    number = check_number(address, _one(address, args))
    if number != round(number) or not 1 <= number <= 65535:
        raise ControlError(f"{address}: a port is a whole number 1 to 65535")
    return int(number)
