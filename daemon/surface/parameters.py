"""The knobs that may change during a performance (OSC, CLI), validated like the settings.

A :class:`Parameters` value is immutable; a change makes a new one, which the performer's
thread picks up at its next event (one reference swap, no lock on the engine's side).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from typing import Any

from antiphon.daemon.settings import SETTINGS_FIELDS, Settings


class ParameterError(ValueError):
    """A parameter name or value that cannot be used; the message says which and why."""


@dataclass(frozen=True)
class Parameters:
    """The live-tunable part of :class:`~antiphon.daemon.settings.Settings` (same names, same
    ranges)."""

    temperature: float
    noise: float
    follow: float
    mirror: float
    range_low: int
    range_high: int
    density: float
    dynamics: int
    mode: str
    phrase_gap_s: float
    turns: str
    eagerness: float
    reply_ratio: float
    reply_min_notes: int
    reply_max_notes: int
    reply_max_s: float
    max_note_s: float
    output_channel: int  # 1-16, as in the settings
    thru: bool
    overlap: bool
    # The duet
    duet_split: int
    duet_register: str
    duet_density: float
    duet_velocity: float
    carry_bars: int
    duet_output_channel: int  # 1-16, as in the settings
    # The beat
    clock: str
    groove: float
    reply_start: str
    link_quantum: int
    clock_out: str
    clock_out_follow: float

    @classmethod
    def from_settings(cls, settings: Settings) -> Parameters:
        return cls(**{name: getattr(settings, name) for name in PARAMETER_NAMES})

    def with_value(self, name: str, value: object) -> Parameters:
        """A copy with one parameter changed; the value is checked and coerced.

        Numbers arrive from OSC as int or float and booleans as 0/1: an int is accepted for a
        float, an integral float for an int, 0/1 for a bool.

        Raises:
            ParameterError: unknown name, wrong type, or out of range.
        """
        if name not in PARAMETER_NAMES:
            raise ParameterError(f"unknown parameter {name!r}; known: {', '.join(PARAMETER_NAMES)}")
        coerced = _coerce(name, value, _KINDS[name])
        check = SETTINGS_FIELDS[name].metadata.get("check")
        problem = check(coerced) if check else None
        if problem:
            raise ParameterError(f"{name}: {problem} (got {value!r})")
        changed = dataclasses.replace(self, **{name: coerced})
        if changed.reply_min_notes > changed.reply_max_notes:
            raise ParameterError(
                f"{name}: reply_min_notes ({changed.reply_min_notes}) must not exceed "
                f"reply_max_notes ({changed.reply_max_notes})"
            )
        return changed


_KINDS: dict[str, type] = typing.get_type_hints(Parameters)
PARAMETER_NAMES: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Parameters))


def _coerce(name: str, value: object, kind: type) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int | float) and value in (0, 1):
            return bool(value)
        raise ParameterError(f"{name}: expected true/false or 0/1, got {value!r}")
    if kind is str:
        if isinstance(value, str):
            return value
        raise ParameterError(f"{name}: expected a word, got {value!r}")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ParameterError(f"{name}: expected a number, got {value!r}")
    if not math.isfinite(value):
        raise ParameterError(f"{name}: must be a finite number (got {value!r})")
    if kind is int:
        if value != int(value):
            raise ParameterError(f"{name}: expected a whole number, got {value!r}")
        return int(value)
    return float(value)
