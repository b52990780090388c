"""The mapping file: a controller's own OSC addresses and MIDI CC numbers, mapped onto the
parameters and commands, with the ranges they scale onto. Pure, apart from reading the file.

A TOML file of ``[osc."ADDRESS"]`` and ``[cc.NUMBER]`` tables::

    [osc."/1/fader1"]
    parameter = "temperature"
    range = [0.1, 2.0]

    [cc.74]
    parameter = "noise"
"""

from __future__ import annotations

import logging
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mido
from antiphon.daemon.surface.vocabulary import (
    MAX_NOTES,
    MIN_NOTES,
    NAMESPACE,
    PARAMETER_BY_NAME,
    STATE_SLOTS,
    Action,
    Command,
    ControlError,
    Controlled,
    OscArgument,
    ProblemLimiter,
    SetParameter,
    Value,
    apply_command,
    check_number,
    order_reply_bounds,
)

log = logging.getLogger(__name__)


# Mapped controls ---------------------------------------------------------------------------


@dataclass(frozen=True)
class MappedControl:
    """One fader, knob or button: an input range scaled onto a parameter, or an action.

    ``low``/``high`` is the parameter's range (reversed for an upside-down fader);
    ``values`` the choices a fader's positions select, for a string parameter;
    ``input_low``/``input_high`` what the controller sends at its ends (OSC: 0..1 unless
    told, MIDI CC: 0..127). An action fires when the input crosses its middle (a button
    press), never on release.
    """

    key: str
    parameter: str | None = None
    action: str | None = None
    low: float = 0.0
    high: float = 1.0
    values: tuple[str, ...] = ()
    slot: int = 0
    input_low: float = 0.0
    input_high: float = 1.0

    def position(self, raw: OscArgument) -> float:
        """``raw`` as 0..1 along the input range (clamped); NaN, inf and strings refused."""
        number = check_number(self.key, raw)
        span = self.input_high - self.input_low
        return min(max((number - self.input_low) / span, 0.0), 1.0)

    def command(self, raw: OscArgument) -> Command | None:
        position = self.position(raw)
        if self.action is not None:
            if position < 0.5:
                return None
            if self.action in ("state/save", "state/load"):
                return Action(self.action, self.slot)
            return Action(self.action)
        assert self.parameter is not None
        parameter = PARAMETER_BY_NAME[self.parameter]
        value: Value
        if parameter.kind is str:
            value = self.values[min(int(position * len(self.values)), len(self.values) - 1)]
        elif parameter.kind is bool:
            value = position >= 0.5
        else:
            number = self.low + position * (self.high - self.low)
            value = round(number) if parameter.kind is int else number
        return SetParameter(self.parameter, value)

    def feedback(self, value: Value) -> float | None:
        """Where the controller's fader should sit for ``value`` (for the feedback address)."""
        if self.parameter is None:
            return None
        if isinstance(value, str):
            if value not in self.values:
                return None
            steps = max(len(self.values) - 1, 1)
            position = self.values.index(value) / steps
        elif isinstance(value, bool):
            position = 1.0 if value else 0.0
        else:
            span = self.high - self.low
            position = 0.0 if span == 0 else min(max((value - self.low) / span, 0.0), 1.0)
        return self.input_low + position * (self.input_high - self.input_low)


@dataclass(frozen=True)
class ControlMapping:
    """OSC addresses and MIDI CC numbers mapped onto parameters and actions."""

    osc: Mapping[str, MappedControl] = field(default_factory=dict)
    cc: Mapping[int, MappedControl] = field(default_factory=dict)

    def cc_command(self, control: int, value: int) -> Command | None:
        """The command a MIDI CC (number ``control``, value 0..127) means, if it is mapped."""
        mapped = self.cc.get(control)
        return None if mapped is None else mapped.command(value)

    def feedback(self, name: str, value: Value) -> list[tuple[str, float]]:
        """The mapped OSC addresses that show ``name``, and where each should sit now."""
        positions = []
        for address, mapped in self.osc.items():
            if mapped.parameter == name:
                position = mapped.feedback(value)
                if position is not None:
                    positions.append((address, position))
        return positions


RESERVED_CCS = frozenset({64, *range(120, 128)})  # the pedal and channel mode messages
_MAPPING_KEYS = frozenset({"parameter", "action", "range", "values", "slot", "input"})
_MAPPED_ACTIONS = ("panic", "reset", "memory/clear", "state/save", "state/load")


def load_mapping(path: Path) -> ControlMapping:
    """Read a mapping file.

    Raises:
        ControlError: unreadable, not TOML, or an entry that cannot be used (names the key).
    """
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ControlError(f"cannot read mapping {path}: {err.strerror}") from err
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ControlError(f"{path}: not valid TOML: {err}") from err
    try:
        return parse_mapping(data)
    except ControlError as err:
        raise ControlError(f"{path}: {err}") from err


def parse_mapping(data: Mapping[str, Any]) -> ControlMapping:
    """The mapping a parsed TOML document describes; see :func:`load_mapping`."""
    unknown = set(data) - {"osc", "cc"}
    if unknown:
        raise ControlError(f"unknown section '{sorted(unknown)[0]}' (expected osc, cc)")
    osc: dict[str, MappedControl] = {}
    for address, entry in _table(data.get("osc", {}), "osc").items():
        key = f'osc."{address}"'
        if not address.startswith("/") or not address.isascii() or not address.isprintable():
            raise ControlError(f"{key}: an OSC address starts with '/' and is printable ASCII")
        if address.startswith(NAMESPACE + "/") or address == NAMESPACE:
            raise ControlError(f"{key}: the {NAMESPACE} addresses are built in")
        osc[address] = _mapped(key, _table(entry, key), (0.0, 1.0))
    cc: dict[int, MappedControl] = {}
    for number, entry in _table(data.get("cc", {}), "cc").items():
        key = f"cc.{number}"
        if not number.isdigit() or not 0 <= int(number) <= 127:
            raise ControlError(f"{key}: a CC number is 0 to 127")
        if int(number) in RESERVED_CCS:
            raise ControlError(f"{key}: the sustain pedal and CCs 120-127 are heard, not mapped")
        cc[int(number)] = _mapped(key, _table(entry, key), (0.0, 127.0))
    return ControlMapping(osc, cc)


def _table(value: Any, key: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ControlError(f"{key}: expected a table")
    return value


def _pair(value: Any, key: str) -> tuple[float, float]:
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
        or not all(math.isfinite(v) for v in value)
    ):
        raise ControlError(f"{key}: expected two numbers, like [0.1, 2.0]")
    return float(value[0]), float(value[1])


def _mapped(key: str, entry: dict[str, Any], default_input: tuple[float, float]) -> MappedControl:
    unknown = set(entry) - _MAPPING_KEYS
    if unknown:
        raise ControlError(f"{key}.{sorted(unknown)[0]}: unknown key")
    if key.startswith("cc.") and "input" in entry:
        raise ControlError(f"{key}.input: a CC always sends 0..127")
    input_low, input_high = default_input
    if "input" in entry:
        input_low, input_high = _pair(entry["input"], f"{key}.input")
    if input_low == input_high:
        raise ControlError(f"{key}.input: the two ends must differ")
    if ("parameter" in entry) == ("action" in entry):
        raise ControlError(f"{key}: needs either parameter or action")
    if "action" in entry:
        action = entry["action"]
        if action not in _MAPPED_ACTIONS:
            raise ControlError(f"{key}.action: must be one of {', '.join(_MAPPED_ACTIONS)}")
        slot = entry.get("slot", 0)
        if isinstance(slot, bool) or not isinstance(slot, int) or not 0 <= slot < STATE_SLOTS:
            raise ControlError(f"{key}.slot: a slot is 0 to {STATE_SLOTS - 1}")
        if ("slot" in entry) != action.startswith("state/") or {"range", "values"} & set(entry):
            raise ControlError(f"{key}: '{action}' takes no range or values, slot only for state")
        return MappedControl(key, action=action, slot=slot, input_low=input_low,
                             input_high=input_high)  # fmt: skip
    name = entry["parameter"]
    parameter = PARAMETER_BY_NAME.get(name) if isinstance(name, str) else None
    if parameter is None:
        names = ", ".join(PARAMETER_BY_NAME)
        raise ControlError(f"{key}.parameter: '{name}' is not one of {names}")
    values: tuple[str, ...] = ()
    low, high = parameter.low, parameter.high
    if parameter.kind is str:
        raw_values = entry.get("values", list(parameter.choices))
        if (
            not isinstance(raw_values, list)
            or not raw_values
            or any(v not in parameter.choices for v in raw_values)
        ):
            raise ControlError(f"{key}.values: a list of {', '.join(parameter.choices)}")
        values = tuple(raw_values)
    elif "values" in entry:
        raise ControlError(f"{key}.values: only for mode and turns")
    if "range" in entry:
        if parameter.kind in (str, bool):
            raise ControlError(f"{key}.range: {name} has no range")
        low, high = _pair(entry["range"], f"{key}.range")
        for end in (low, high):
            if not parameter.low <= end <= parameter.high:
                span = f"{parameter.low:g}..{parameter.high:g}"
                raise ControlError(f"{key}.range: {end:g} is outside {name}'s {span}")
    return MappedControl(key, parameter=name, low=low, high=high, values=values,
                         input_low=input_low, input_high=input_high)  # fmt: skip


class CcControl:
    """An input tap: the MIDI CCs the mapping maps become commands on the performer.

    Runs on the MIDI input thread, so it only looks up a table and sets a parameter or queues
    a command; a refused value is logged at most once a second. Any channel is heard (a knob
    box often sends on its own channel).
    """

    def __init__(self, mapping: ControlMapping, target: Controlled) -> None:
        self.mapping = mapping
        self.target = target
        self.limiter = ProblemLimiter()

    def __call__(self, message: mido.Message, time_s: float) -> None:
        if message.type != "control_change":
            return
        command = self.mapping.cc_command(message.control, message.value)
        if command is None:
            return
        try:
            if isinstance(command, SetParameter) and command.name in (MIN_NOTES, MAX_NOTES):
                [command], _ = order_reply_bounds([command], self.target.status())
            apply_command(command, self.target)
        except ControlError as err:
            if self.limiter.admit("cc")[0]:
                log.warning("MIDI CC %d refused: %s", message.control, err)
