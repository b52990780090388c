"""The daemon's settings: one frozen dataclass, filled from defaults, then a TOML file, then the
command line, validated once at start.

Each field carries its command-line flag and help in its metadata, so the flags, the TOML keys
and ``--print-config`` are generated from one table and cannot drift apart.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import math
import os
import tomllib
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

from antiphon.daemon.musician.hearing.turns import AUTO_PHRASE_GAP_S

# The shipped models are package data of ``antiphon.exported_models``; in an installed wheel and
# in an editable install alike they are plain files in a folder.
INSTALLED_MODELS_DIR = Path(str(files("antiphon.exported_models")))
PIANO_MODEL = INSTALLED_MODELS_DIR / "antiphon-piano.onnx"
LINE_MODEL = INSTALLED_MODELS_DIR / "antiphon-line.onnx"
# ``--model auto`` (the default): the single-line model for one line, the piano model for
# chords (antiphon.daemon.musician.model.voices).
AUTO_MODEL = "auto"


def user_models_dir() -> Path:
    """The user's own models: ``$XDG_DATA_HOME/antiphon/models`` (``~/.local/share/...``)."""
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "antiphon" / "models"


def model_folders(models_dir: str) -> tuple[Path, ...]:
    """The folders ``/antiphon/model`` may load from: ``models_dir`` when set, else the
    installed models and then the user's folder."""
    if models_dir:
        return (Path(models_dir),)
    return (INSTALLED_MODELS_DIR, user_models_dir())


MODES = ("call_response", "listen", "duet", "both")
REGISTERS = ("below", "above")
# The duet's defaults (BENCHMARKS.md, "Duet"): density and velocity chosen on validation
# pieces (the part's onsets and its velocity over the player's, as the human part's); the
# split is set (middle C), not tuned: it also cuts the measure's own two parts.
DUET_SPLIT = 60
DUET_DENSITY = 2.0
DUET_VELOCITY = 0.9
CARRY_BARS = 0
CLOCK_SOURCES = ("off", "player", "midi", "link")
CLOCK_OUTS = ("off", "midi", "link", "both")
REPLY_STARTS = ("now", "beat", "bar")


class SettingsError(ValueError):
    """A setting that cannot be used; the message names the key and the problem."""


def _setting(
    default: Any,
    help: str,
    flag: str | None = None,
    check: Callable[[Any], str | None] | None = None,
    path: bool = False,
) -> Any:
    """A settings field; ``path`` marks a file or folder, read relative to the config file."""
    return field(
        default=default, metadata={"help": help, "flag": flag, "check": check, "path": path}
    )


def _between(low: float, high: float) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if value is None:
            return None
        if isinstance(value, float) and not math.isfinite(value):
            return "must be a finite number"
        if not low <= value <= high:
            return f"must be between {low:g} and {high:g}"
        return None

    return check


def _one_of(*choices: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if value in choices else f"must be one of {', '.join(choices)}"

    return check


@dataclass(frozen=True)
class Settings:
    """Everything ``antiphon run`` can be told. Field names are the TOML keys."""

    # MIDI ports
    midi_api: str = _setting(
        "auto",
        "MIDI system: auto (ALSA, then a running JACK), alsa, jack, coremidi, windows",
        check=_one_of("auto", "alsa", "jack", "coremidi", "windows"),
    )
    input_port: str | None = _setting(
        None, "connect to this input port (a part of its name is enough); default: a virtual port"
    )
    output_port: str | None = _setting(
        None, "connect to this output port (a part of its name is enough); default: virtual"
    )
    port_name: str = _setting("Antiphon", "name of the virtual ports and the MIDI client")
    listen_channel: int | None = _setting(
        None, "only hear this MIDI channel (1-16); default: all", check=_between(1, 16)
    )
    output_channel: int = _setting(1, "MIDI channel of the replies (1-16)", check=_between(1, 16))
    thru: bool = _setting(False, "pass the player's notes through to the output")
    echo_window_ms: float = _setting(
        40.0,
        "ignore input that mirrors what was just sent within this window (MIDI thru loops)",
        check=_between(0, 1000),
    )
    output_ahead_ms: float = _setting(
        0.0,
        "send each timed message this much before its time, making up for the output's own "
        "latency: with JACK, half a period (1.33 ms at 128 frames and 48 kHz) centres the "
        "delivery on the plan",
        check=_between(0, 20),
    )
    input_queue_size: int = _setting(
        2048, "input messages held before a flood is dropped", check=_between(16, 1_000_000)
    )
    # Model and sampling
    model: str = _setting(
        AUTO_MODEL,  # chosen on replies to held-out calls (docs/playing.md, "Which model plays")
        "the ONNX model to play with, or auto: the single-line model when the player plays "
        "one line, the piano model when they play chords",
        path=True,
    )
    models_dir: str = _setting(
        "",
        "folder of models that OSC may switch to (default: the installed models, then "
        "~/.local/share/antiphon/models)",
        path=True,
    )
    seed: int | None = _setting(None, "random seed, for replies that repeat exactly")
    temperature: float = _setting(
        1.0, "sampling temperature: near 0 almost greedy, higher is wilder", check=_between(0.05, 5)
    )
    noise: float = _setting(0.0, "noise injection, 0 (off) to 1", check=_between(0, 1))
    follow: float = _setting(
        1.0,
        "how strongly a reply follows its call's register, texture, density and pace, 0 (off) to 1",
        check=_between(0, 1),
    )
    mirror: float = _setting(
        0.0,
        "how much of the player's own material (a memory of this performance) the replies "
        "use, 0 (off) to 1",
        check=_between(0, 1),
    )
    range_low: int = _setting(
        0, "lowest pitch a reply may play (MIDI note number)", check=_between(0, 127)
    )
    range_high: int = _setting(
        127, "highest pitch a reply may play (MIDI note number)", check=_between(0, 127)
    )
    density: float = _setting(
        1.0, "a multiplier on the density a reply follows, 0.25 to 4", check=_between(0.25, 4)
    )
    dynamics: int = _setting(
        0, "a shift of the reply's loudness, in velocity levels", check=_between(-64, 64)
    )
    # Call and response
    mode: str = _setting(
        "call_response",
        "call_response: answer each phrase; listen: hear and keep state, never answer; duet: "
        "play a part of its own while the player plays; both: the duet part while the player "
        "plays, a phrase answer when the player stops",
        check=_one_of(*MODES),
    )
    phrase_gap_s: float = _setting(
        AUTO_PHRASE_GAP_S,
        "with turns auto, the longest wait for the end of a call; with turns gap, the seconds "
        "of silence, no key or pedal held, that end it (0.35 suits a fixed gap)",
        flag="--phrase-gap",
        check=_between(0.05, 10),
    )
    turns: str = _setting(
        "auto",
        "when a call ends: auto, when the playing says the player is done (at most "
        "phrase_gap seconds of silence); gap, after phrase_gap seconds of silence",
        check=_one_of("gap", "auto"),
    )
    eagerness: float = _setting(
        0.4,  # chosen on the validation splits by `antiphon fit-turns` (docs/playing.md)
        "with turns auto: the quick answers your breaths buy, 2 x eagerness times a fixed "
        "0.35 s gap's answers inside them (0: only where it is sure)",
        check=_between(0, 1),
    )
    end_phrase_cc: int | None = _setting(
        None, "a CC number (foot switch) that ends the call at once", check=_between(0, 127)
    )
    reply_ratio: float = _setting(
        1.0, "reply length as a multiple of the call's note count", check=_between(0.1, 8)
    )
    reply_min_notes: int = _setting(4, "fewest notes in a reply", check=_between(1, 512))
    reply_max_notes: int = _setting(64, "most notes in a reply", check=_between(1, 512))
    reply_max_s: float = _setting(20.0, "longest reply in seconds", check=_between(0.5, 300))
    overlap: bool = _setting(False, "keep replying when the player starts again")
    # The duet (mode duet or both)
    duet_split: int = _setting(
        DUET_SPLIT,
        "the duet part's split point (MIDI note number): it plays below it (or, with "
        "duet_register above, from it up)",
        flag="--split",
        check=_between(1, 127),
    )
    duet_register: str = _setting(
        "below",
        "which side of the split the duet part plays: below, above",
        check=_one_of(*REGISTERS),
    )
    duet_density: float = _setting(
        DUET_DENSITY,
        "how busy the duet part is, 0.25 to 8: above 1 it plays more of the notes the model "
        "expects and waits for the player less, below 1 the other way round",
        check=_between(0.25, 8),
    )
    duet_velocity: float = _setting(
        DUET_VELOCITY,
        "the duet part's loudness as a multiple of the player's recent velocity",
        check=_between(0.1, 2),
    )
    carry_bars: int = _setting(
        CARRY_BARS,
        "when the player stops, the duet part ends at the end of that bar, or this many bars later",
        check=_between(0, 64),
    )
    duet_output_channel: int = _setting(
        2, "MIDI channel of the duet part (1-16)", check=_between(1, 16)
    )
    max_note_s: float = _setting(
        5.0, "release any reply note held longer than this", check=_between(0.05, 60)
    )
    held_key_timeout_s: float = _setting(
        8.0,
        "with no input at all for this long, keys still held are taken as released "
        "(a lost note-off)",
        check=_between(1, 600),
    )
    # OSC
    osc_port: int | None = _setting(
        9000, "UDP port of the OSC control surface (0: off)", check=_between(0, 65535)
    )
    osc_host: str = _setting("127.0.0.1", "address the OSC server listens on")
    osc_allow: tuple[str, ...] = _setting((), "addresses or CIDR ranges that may send OSC")
    osc_feedback: str | None = _setting(None, "HOST:PORT that receives every parameter change")
    mapping: str | None = _setting(
        None, "TOML file mapping OSC addresses and MIDI CCs to knobs", path=True
    )
    # Stage
    record: str | None = _setting(
        None, "record each performance as a MIDI file in this folder", path=True
    )
    tui: bool = _setting(False, "show a live status view in the terminal")
    # The beat
    clock: str = _setting(
        "player",
        "where the beat comes from: player (Antiphon hears it in the playing), midi (a DAW's "
        "MIDI clock while it runs, else the player), link (the Ableton Link session while it "
        "has peers, else the player), off (replies keep free timing)",
        check=_one_of(*CLOCK_SOURCES),
    )
    link_quantum: int = _setting(
        4,
        "beats per bar in the Link session (Link's quantum): where a reply starts with "
        "reply_start bar, and the phase Link peers share",
        check=_between(1, 16),
    )
    clock_out: str = _setting(
        "off",
        "send the tempo Antiphon keeps to the rig: midi (MIDI clock on the output, or on "
        "clock_out_port), link (the Link session's tempo), both, off",
        check=_one_of(*CLOCK_OUTS),
    )
    clock_out_follow: float = _setting(
        1.0,
        "how fast the outgoing tempo follows the player's: the share of the difference closed "
        "each beat (0 holds the tempo, 1 follows at once, at most 1.25 % a beat)",
        check=_between(0, 1),
    )
    clock_out_port: str | None = _setting(
        None,
        "send MIDI clock on an output port of its own, connected to this port (a part of its "
        "name); default: on the output, with the replies",
    )
    clock_port: str | None = _setting(
        None, "take MIDI clock from this input port (a part of its name); default: the input"
    )
    groove: float = _setting(
        1.0,
        "how far reply onsets are pulled onto the beat's grid: 0 free timing, 1 on the grid",
        check=_between(0, 1),
    )
    reply_start: str = _setting(
        "beat",
        "when a reply starts: now (at the call's end), beat (the next beat), bar (the next "
        "bar, when it is within a beat)",
        check=_one_of(*REPLY_STARTS),
    )
    beats_per_bar: int = _setting(
        4,
        "the meter, for reply_start bar when the clock sends no song position",
        check=_between(1, 16),
    )

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            check = f.metadata.get("check")
            problem = check(getattr(self, f.name)) if check else None
            if problem:
                raise SettingsError(f"{f.name}: {problem} (got {getattr(self, f.name)!r})")
        if self.reply_min_notes > self.reply_max_notes:
            raise SettingsError("reply_min_notes: must not exceed reply_max_notes")


SETTINGS_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}

# What each kind of value is called in an error message.
_KIND_NAMES = {
    bool: "true or false",
    int: "a whole number",
    float: "a number",
    str: "a string",
    tuple: "a list of strings",
}
_TOML_TYPE_NAMES = {
    bool: "true/false",
    int: "a whole number",
    float: "a number",
    str: "a string",
    list: "a list",
    dict: "a table",
}


def _base_type(name: str) -> type:
    hint = typing.get_type_hints(Settings)[name]
    if isinstance(hint, types.UnionType):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    return typing.get_origin(hint) or hint


def flag_of(name: str) -> str:
    return SETTINGS_FIELDS[name].metadata["flag"] or "--" + name.replace("_", "-")


def add_settings_arguments(parser: argparse.ArgumentParser, print_config: bool = True) -> None:
    """A flag for every setting; flags left out keep the value from the file or the default.
    ``print_config``: offer ``--print-config`` too (``antiphon run`` does)."""
    parser.add_argument("--config", type=Path, help="TOML settings file (keys as below)")
    if print_config:
        parser.add_argument(
            "--print-config",
            action="store_true",
            help="show the settings in force, and where each came from, and exit",
        )
    for name, f in SETTINGS_FIELDS.items():
        kind = _base_type(name)
        shown_default = f.default if f.default not in (None, ()) else "none"
        kwargs: dict[str, Any] = {
            "dest": f"setting_{name}",
            "default": None,
            "help": f"{f.metadata['help']} (default: {shown_default})",
        }
        if kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif kind is tuple:
            kwargs["action"] = "append"
            kwargs["metavar"] = name.upper()
        else:
            kwargs["type"] = kind
            kwargs["metavar"] = name.upper()
        parser.add_argument(flag_of(name), **kwargs)


def _type_name(value: Any) -> str:
    return _TOML_TYPE_NAMES.get(type(value), type(value).__name__)


def check_value(name: str, value: Any, label: str | None = None) -> Any:
    """``value`` as setting ``name`` holds it; :class:`SettingsError` if it cannot be one.

    The message names the setting (as ``label``, its key by default) and the problem: a wrong
    type or a value out of range.
    """
    label = label or name
    kind = _base_type(name)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if kind is tuple and isinstance(value, list):
        if not all(isinstance(item, str) for item in value):
            raise SettingsError(f"{label}: expected {_KIND_NAMES[tuple]}")
        value = tuple(value)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise SettingsError(f"{label}: expected {_KIND_NAMES[kind]}, got {_type_name(value)}")
    check = SETTINGS_FIELDS[name].metadata["check"]
    problem = check(value) if check else None
    if problem:
        raise SettingsError(f"{label}: {problem} (got {value!r})")
    return value


def _unknown_key_message(key: str) -> str:
    close = difflib.get_close_matches(key, SETTINGS_FIELDS, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"{key}: unknown setting{hint}"


def load_toml(path: Path) -> dict[str, Any]:
    """The settings a TOML file holds, checked one by one.

    An unreadable file, an unknown key, a wrong type or a value out of range raises
    :class:`SettingsError` with one line: the file, the key and the problem. Relative file and
    folder settings are read from the config file's folder, and ``~`` is the home folder, so
    the file means the same whichever folder the daemon starts in (a system service: /).
    """
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise SettingsError(f"{path}: cannot read it: {err.strerror}") from err
    except UnicodeDecodeError as err:
        raise SettingsError(f"{path}: not UTF-8 text: {err.reason}") from err
    except tomllib.TOMLDecodeError as err:
        raise SettingsError(f"{path}: not valid TOML: {err}") from err
    values = {}
    for key, value in data.items():
        try:
            if key not in SETTINGS_FIELDS:
                raise SettingsError(_unknown_key_message(key))
            values[key] = check_value(key, value)
        except SettingsError as err:
            raise SettingsError(f"{path}: {err}") from None
        if SETTINGS_FIELDS[key].metadata["path"] and values[key] and values[key] != AUTO_MODEL:
            values[key] = str(path.parent / Path(values[key]).expanduser())
    return values


def resolve_settings(
    args: argparse.Namespace, file_values: Mapping[str, Any] | None = None
) -> tuple[Settings, dict[str, str]]:
    """Settings from defaults, then the config file, then flags; and where each came from.

    Sources are "default", the config file's path, or "command line".
    """
    values: dict[str, Any] = {}
    sources = {name: "default" for name in SETTINGS_FIELDS}
    config_path: Path | None = getattr(args, "config", None)
    if file_values is None and config_path is not None:
        file_values = load_toml(config_path)
    for name, value in (file_values or {}).items():
        values[name] = value
        sources[name] = str(config_path or "config file")
    for name in SETTINGS_FIELDS:
        value = getattr(args, f"setting_{name}", None)
        if value is None:
            continue
        values[name] = check_value(name, value, label=flag_of(name))
        sources[name] = "command line"
    return Settings(**values), sources


def describe_settings(settings: Settings, sources: Mapping[str, str]) -> str:
    """The settings in force as a TOML file, each line saying where its value came from.

    Settings without a value are shown commented out, so the output can be saved and used
    as a config file.
    """
    lines = []
    for name in SETTINGS_FIELDS:
        value = getattr(settings, name)
        if value is None:
            lines.append(f"# {name} = (none)  # {sources[name]}")
        else:
            lines.append(f"{name} = {_toml_value(value)}  # {sources[name]}")
    return "\n".join(lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + "".join(_toml_char(c) for c in value) + '"'
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)


def _toml_char(char: str) -> str:
    """A character inside a TOML basic string: quotes, backslashes and controls escaped."""
    if char in '"\\':
        return "\\" + char
    if (ord(char) < 0x20 and char != "\t") or ord(char) == 0x7F:
        return f"\\u{ord(char):04X}"
    return char
