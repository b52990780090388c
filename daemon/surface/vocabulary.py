"""The control vocabulary: the parameters a performance may change, the commands, and how a
value is checked; shared by the OSC surface (:mod:`antiphon.daemon.surface.datagrams`,
:mod:`antiphon.daemon.surface.osc`) and
the mapping file (:mod:`antiphon.daemon.surface.mapping`). Pure: no sockets, no ports.

:data:`PARAMETERS` is the table docs/osc.md's parameter table is written from: each parameter's
address, type, range, and whether out-of-range numbers are clamped or refused.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from antiphon.daemon.musician.model.model_file import ModelError
from antiphon.daemon.settings import CLOCK_OUTS, CLOCK_SOURCES, MODES, REGISTERS, REPLY_STARTS
from antiphon.daemon.surface.parameters import ParameterError

NAMESPACE = "/antiphon"
STATE_SLOTS = 128  # as many as the performer keeps
TURNS = ("gap", "auto")

Value = float | int | bool | str
OscArgument = float | int | bool | str


class ControlError(ValueError):
    """An OSC datagram, a control value or a mapping file that cannot be used (one line)."""


# The parameters -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Parameter:
    """A setting OSC may change while Antiphon plays; ``name`` is its :class:`Settings` field
    (where its help lives), ``low..high`` its range there.

    Numbers outside the range are clamped when ``clamp`` is set, refused otherwise.
    """

    name: str
    kind: type
    low: float = 0.0
    high: float = 0.0
    clamp: bool = True
    choices: tuple[str, ...] = ()
    address: str = ""

    def __post_init__(self) -> None:
        if not self.address:
            object.__setattr__(self, "address", f"{NAMESPACE}/{self.name}")


PARAMETERS: tuple[Parameter, ...] = (
    Parameter("temperature", float, 0.05, 5.0),
    Parameter("noise", float, 0.0, 1.0),
    Parameter("follow", float, 0.0, 1.0),
    Parameter("mirror", float, 0.0, 1.0),
    Parameter("range_low", int, 0, 127),
    Parameter("range_high", int, 0, 127),
    Parameter("density", float, 0.25, 4.0),
    Parameter("dynamics", int, -64, 64),
    Parameter("mode", str, clamp=False, choices=MODES),
    Parameter("phrase_gap_s", float, 0.05, 10.0, address=f"{NAMESPACE}/phrase_gap"),
    Parameter("turns", str, clamp=False, choices=TURNS),
    Parameter("eagerness", float, 0.0, 1.0),
    Parameter("reply_ratio", float, 0.1, 8.0),
    Parameter("reply_min_notes", int, 1, 512),
    Parameter("reply_max_notes", int, 1, 512),
    Parameter("reply_max_s", float, 0.5, 300.0),
    Parameter("output_channel", int, 1, 16, clamp=False),
    Parameter("thru", bool),
    Parameter("overlap", bool),
    # The duet
    Parameter("duet_split", int, 1, 127, address=f"{NAMESPACE}/split"),
    Parameter("duet_register", str, clamp=False, choices=REGISTERS),
    Parameter("duet_density", float, 0.25, 8.0),
    Parameter("duet_velocity", float, 0.1, 2.0),
    Parameter("carry_bars", int, 0, 64),
    Parameter("duet_output_channel", int, 1, 16, clamp=False),
    Parameter("max_note_s", float, 0.05, 60.0),
    # The beat
    Parameter("clock", str, clamp=False, choices=CLOCK_SOURCES),
    Parameter("groove", float, 0.0, 1.0),
    Parameter("reply_start", str, clamp=False, choices=REPLY_STARTS),
    Parameter("link_quantum", int, 1, 16, clamp=False),
    Parameter("clock_out", str, clamp=False, choices=CLOCK_OUTS),
    Parameter("clock_out_follow", float, 0.0, 1.0),
)
PARAMETER_BY_NAME = {p.name: p for p in PARAMETERS}
PARAMETER_BY_ADDRESS = {p.address: p for p in PARAMETERS}


# Commands -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SetParameter:
    name: str
    value: Value


@dataclass(frozen=True)
class Action:
    """``panic``, ``reset``, ``memory/clear``, ``state/save`` and ``state/load`` (slot),
    ``model`` (a Path), ``status`` (the port to answer on, or None for the sender's own port)."""

    name: str
    argument: int | Path | None = None


Command = SetParameter | Action


class Controlled(Protocol):
    """What the commands drive: the performer's thread-safe control API."""

    def set_parameter(self, name: str, value: object) -> None: ...
    def panic(self) -> None: ...
    def reset(self) -> None: ...
    def clear_memory(self) -> None: ...
    def save_state(self, slot: int) -> None: ...
    def load_state(self, slot: int) -> None: ...
    def switch_model(self, path: str | Path) -> None: ...
    def status(self) -> dict[str, Any]: ...


def apply_command(command: Command, target: Controlled) -> None:
    """Run one checked command (``status`` is the server's to answer, not the target's).

    Raises:
        ControlError: the target refused it (a model file that does not load, a value that
            crossed another control's change), with what it said.
    """
    try:
        if isinstance(command, SetParameter):
            target.set_parameter(command.name, command.value)
        elif command.name == "panic":
            target.panic()
        elif command.name == "reset":
            target.reset()
        elif command.name == "memory/clear":
            target.clear_memory()
        elif command.name == "state/save" and isinstance(command.argument, int):
            target.save_state(command.argument)
        elif command.name == "state/load" and isinstance(command.argument, int):
            target.load_state(command.argument)
        elif command.name == "model" and isinstance(command.argument, Path):
            target.switch_model(command.argument)
    except (ParameterError, ModelError) as err:
        raise ControlError(str(err)) from err


# Values -------------------------------------------------------------------------------------


def check_number(address: str, value: OscArgument) -> float:
    """``value`` as a finite float; ``address`` names it in the error."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ControlError(f"{address}: expected a number, got {type_name(value)}")
    if not math.isfinite(value):
        raise ControlError(f"{address}: {value} is not a finite number")
    return float(value)


def type_name(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    return {str: "a string", int: "an int", float: "a float"}.get(type(value), "nothing")


def check_value(parameter: Parameter, value: OscArgument, address: str) -> tuple[Value, str]:
    """The value ``parameter`` takes from one OSC argument, and a note when it was clamped.

    Raises:
        ControlError: wrong type, NaN or infinity, or out of range where the policy refuses.
    """
    if parameter.kind is str:
        if not isinstance(value, str):
            raise ControlError(f"{address}: expected a string, got {type_name(value)}")
        if value not in parameter.choices:
            raise ControlError(f"{address}: '{value}' is not one of {', '.join(parameter.choices)}")
        return value, ""
    if parameter.kind is bool:
        if isinstance(value, bool):
            return value, ""
        number = check_number(address, value)
        if number not in (0.0, 1.0):
            raise ControlError(f"{address}: expected true/false or 0/1, got {value}")
        return number == 1.0, ""
    number = check_number(address, value)
    if parameter.kind is int and number != round(number):
        raise ControlError(f"{address}: expected a whole number, got {value}")
    note = ""
    if not parameter.low <= number <= parameter.high:
        span = f"{parameter.low:g}..{parameter.high:g}"
        if not parameter.clamp:
            raise ControlError(f"{address}: {value} is outside {span}")
        clamped = min(max(number, parameter.low), parameter.high)
        note = f"{address}: {value} clamped to {clamped:g} ({span})"
        number = clamped
    return (round(number) if parameter.kind is int else number), note


MIN_NOTES, MAX_NOTES = "reply_min_notes", "reply_max_notes"


def order_reply_bounds(
    commands: list[Command], current: Mapping[str, Any]
) -> tuple[list[Command], list[str]]:
    """Keep reply_min_notes <= reply_max_notes over a datagram's changes, whatever their order.

    The bounds it sets are checked together, against ``current`` for the one it leaves alone;
    if they would cross, the one set is clamped to the other (min to max when both are set).
    They go last, in an order where each step is valid on its own (the performer checks
    each), so "min 40, max 80" works in a bundle from "min 4, max 16" as "max 80, min 40" does.
    """
    bounds = {
        c.name: c.value
        for c in commands
        if isinstance(c, SetParameter) and c.name in (MIN_NOTES, MAX_NOTES)
    }
    if not bounds or MIN_NOTES not in current or MAX_NOTES not in current:
        return commands, []
    rest = [c for c in commands if not (isinstance(c, SetParameter) and c.name in bounds)]
    low, high = bounds.get(MIN_NOTES, current[MIN_NOTES]), bounds.get(MAX_NOTES, current[MAX_NOTES])
    notes = []
    if low > high:
        if MIN_NOTES in bounds:
            notes.append(f"{MIN_NOTES}: {low} clamped to {MAX_NOTES} ({high})")
            low = bounds[MIN_NOTES] = high
        else:
            notes.append(f"{MAX_NOTES}: {high} clamped to {MIN_NOTES} ({low})")
            high = bounds[MAX_NOTES] = low
    order = (MAX_NOTES, MIN_NOTES) if low > current[MAX_NOTES] else (MIN_NOTES, MAX_NOTES)
    rest += [SetParameter(name, bounds[name]) for name in order if name in bounds]
    return rest, notes


# Who may send -------------------------------------------------------------------------------


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Allowlist:
    """The senders that may control Antiphon: addresses or CIDR ranges; empty means anyone
    who can reach the socket (only this machine with the default ``osc_host``)."""

    def __init__(self, entries: Iterable[str]) -> None:
        self.networks: list[Network] = []
        for entry in entries:
            try:
                self.networks.append(ipaddress.ip_network(entry.strip(), strict=False))
            except ValueError as err:
                raise ControlError(
                    f"osc_allow: '{entry}' is not an IP address or CIDR range"
                ) from err

    def allows(self, host: str) -> bool:
        if not self.networks:
            return True
        try:
            address = ipaddress.ip_address(host.split("%")[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.networks)


# Problem reports ----------------------------------------------------------------------------


class ProblemLimiter:
    """Lets a report of each kind of problem through at most once per ``interval_s``.

    ``admit`` answers whether to report now and how many reports of that kind were held back
    since the last one, so a flood of garbage costs one log line a second, not one a packet.
    """

    def __init__(
        self, interval_s: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self._last_s: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def admit(self, kind: str) -> tuple[bool, int]:
        now = self._clock()
        last = self._last_s.get(kind)
        if last is not None and now - last < self.interval_s:
            self._held[kind] = self._held.get(kind, 0) + 1
            return False, 0
        self._last_s[kind] = now
        return True, self._held.pop(kind, 0)


# Status -------------------------------------------------------------------------------------


def status_messages(status: Mapping[str, Any]) -> list[tuple[str, list[OscArgument]]]:
    """The OSC messages that report ``status``: each parameter on its own address (so a
    controller's faders follow), everything else on ``/antiphon/status/<key>``; nested
    tables become deeper addresses, None values are left out."""
    messages: list[tuple[str, list[OscArgument]]] = []
    for key, value in status.items():
        parameter = PARAMETER_BY_NAME.get(key)
        address = parameter.address if parameter else f"{NAMESPACE}/status/{key}"
        messages.extend(_flatten(address, value))
    return messages


def _flatten(address: str, value: Any) -> list[tuple[str, list[OscArgument]]]:
    if value is None:
        return []
    if isinstance(value, Mapping):
        return [m for key, item in value.items() for m in _flatten(f"{address}/{key}", item)]
    if isinstance(value, list | tuple):
        items = [v for v in value if isinstance(v, int | float | str)]
        return [(address, items)] if len(items) == len(value) else []
    if isinstance(value, Path):
        return [(address, [str(value)])]
    if isinstance(value, int | float | str):
        return [(address, [value])]
    return []
