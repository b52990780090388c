"""The control surface's logic: datagram bytes in, commands out, whole or not at all."""

from __future__ import annotations

import math
import shutil
import struct
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
from antiphon.daemon.musician.playing import performer
from antiphon.daemon.settings import Settings, SettingsError
from antiphon.daemon.surface.datagrams import (
    MAX_BUNDLE_MESSAGES,
    MAX_DATAGRAM_BYTES,
    ControlSurface,
    decode_packet,
)
from antiphon.daemon.surface.mapping import ControlMapping, load_mapping, parse_mapping
from antiphon.daemon.surface.parameters import PARAMETER_NAMES, Parameters
from antiphon.daemon.surface.vocabulary import (
    NAMESPACE,
    PARAMETERS,
    STATE_SLOTS,
    Action,
    Allowlist,
    ControlError,
    ProblemLimiter,
    SetParameter,
    status_messages,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from pythonosc.osc_message_builder import OscMessageBuilder

CURRENT = {p.name: getattr(Settings(), p.name) for p in PARAMETERS}

TOUCHOSC_MAPPING = """
[osc."/1/fader1"]
parameter = "temperature"
range = [0.1, 2.0]

[osc."/1/fader2"]
parameter = "reply_max_notes"
range = [8, 32]

[osc."/1/toggle1"]
parameter = "mode"
values = ["call_response", "listen"]

[osc."/pd/noise"]
parameter = "noise"
input = [0, 127]

[osc."/1/push1"]
action = "panic"

[cc.74]
parameter = "noise"

[cc.20]
action = "state/load"
slot = 3
"""


def message(address: str, *args: Any) -> bytes:
    builder = OscMessageBuilder(address)
    for arg in args:
        if isinstance(arg, tuple):  # (type tag, value) for a type python-osc would not infer
            builder.add_arg(arg[1], arg[0])
        else:
            builder.add_arg(arg)
    return builder.build().dgram


def bundle(*elements: bytes) -> bytes:
    """A bundle (time tag: immediately) of ``elements``, framed by hand so tests can break it."""
    framed = b"".join(struct.pack(">i", len(e)) + e for e in elements)
    return b"#bundle\x00" + b"\x00" * 7 + b"\x01" + framed


@pytest.fixture
def surface(tmp_path: Path) -> ControlSurface:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "other.onnx").write_bytes(b"not really a model")
    return ControlSurface(parse_mapping(_toml(TOUCHOSC_MAPPING)), [tmp_path / "models"])


def _toml(text: str) -> dict[str, object]:
    return tomllib.loads(text)


def decode(surface: ControlSurface, data: bytes) -> list[object]:
    return list(surface.decode(data, CURRENT).commands)


# The table agrees with the settings --------------------------------------------------------


@pytest.mark.parametrize("parameter", [p for p in PARAMETERS if p.kind in (int, float)])
def test_parameter_ranges_are_the_settings_ranges(parameter: object) -> None:
    assert isinstance(parameter, type(PARAMETERS[0]))
    kind = parameter.kind
    both = ("reply_min_notes", "reply_max_notes")

    def make(value: float) -> Settings:
        values = {n: kind(value) for n in both} if parameter.name in both else {}
        return Settings(**{**values, parameter.name: kind(value)})

    make(parameter.low)
    make(parameter.high)
    step = 1 if kind is int else 1e-6
    with pytest.raises(SettingsError):
        make(parameter.low - step)
    with pytest.raises(SettingsError):
        make(parameter.high + step)


def test_every_live_parameter_has_an_address_and_mode_choices_are_the_settings_ones() -> None:
    assert {p.name for p in PARAMETERS} == set(PARAMETER_NAMES)
    assert STATE_SLOTS == performer.STATE_SLOTS
    mode = next(p for p in PARAMETERS if p.name == "mode")
    for choice in mode.choices:
        Settings(mode=choice)
    with pytest.raises(SettingsError):
        Settings(mode="solo")


# Parameters --------------------------------------------------------------------------------


def test_a_float_parameter_takes_floats_ints_and_doubles(surface: ControlSurface) -> None:
    assert decode(surface, message("/antiphon/temperature", 0.5)) == [
        SetParameter("temperature", 0.5)
    ]
    assert decode(surface, message("/antiphon/temperature", 2)) == [
        SetParameter("temperature", 2.0)
    ]
    assert decode(surface, message("/antiphon/phrase_gap", ("d", 0.25))) == [
        SetParameter("phrase_gap_s", 0.25)
    ]


def test_out_of_range_numbers_are_clamped_and_reported(surface: ControlSurface) -> None:
    decoded = surface.decode(message("/antiphon/temperature", 99.0), CURRENT)
    assert decoded.commands == [SetParameter("temperature", 5.0)]
    assert "clamped to 5" in decoded.notes[0]
    assert decode(surface, message("/antiphon/noise", -0.5)) == [SetParameter("noise", 0.0)]


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (message("/antiphon/temperature", float("nan")), "not a finite number"),
        (message("/antiphon/temperature", float("inf")), "not a finite number"),
        (message("/antiphon/noise", ("d", -math.inf)), "not a finite number"),
        (message("/antiphon/temperature", "hot"), "expected a number, got a string"),
        (message("/antiphon/temperature", True), "expected a number, got a boolean"),
        (message("/antiphon/temperature"), "takes one argument, got 0"),
        (message("/antiphon/temperature", 0.5, 0.6), "takes one argument, got 2"),
        (message("/antiphon/output_channel", 17), "17 is outside 1..16"),
        (message("/antiphon/output_channel", 2.5), "expected a whole number"),
        (message("/antiphon/mode", "solo"), "'solo' is not one of call_response, listen"),
        (message("/antiphon/mode", 1), "expected a string"),
        (message("/antiphon/thru", 0.5), "expected true/false or 0/1"),
        (message("/antiphon/volume", 0.5), "/antiphon/volume: unknown address"),
        (message("/antiphon/*", 0.5), "unknown address"),
        (message("/1/fader9", 0.5), "unknown address"),
        (message("/1/fader1", "x"), "expected a number"),
        (message("/antiphon/state/save", 128), "a slot is a whole number 0 to 127"),
        (message("/antiphon/state/load", -1), "a slot is a whole number 0 to 127"),
        (message("/antiphon/state/load", 1.5), "a slot is a whole number 0 to 127"),
        (message("/antiphon/status", 70000), "a port is a whole number"),
    ],
)
def test_bad_arguments_are_refused_with_a_message(
    surface: ControlSurface, data: bytes, problem: str
) -> None:
    with pytest.raises(ControlError, match=problem.replace("*", r"\*")):
        surface.decode(data, CURRENT)


def test_ints_and_bools_take_what_touchosc_sends(surface: ControlSurface) -> None:
    assert decode(surface, message("/antiphon/output_channel", 3.0)) == [
        SetParameter("output_channel", 3)
    ]
    assert decode(surface, message("/antiphon/thru", 1.0)) == [SetParameter("thru", True)]
    assert decode(surface, message("/antiphon/thru", False)) == [SetParameter("thru", False)]
    assert decode(surface, message("/antiphon/mode", "listen")) == [SetParameter("mode", "listen")]


def test_reply_bounds_never_cross(surface: ControlSurface) -> None:
    current = {**CURRENT, "reply_min_notes": 4, "reply_max_notes": 16}
    decoded = surface.decode(message("/antiphon/reply_min_notes", 30), current)
    assert decoded.commands == [SetParameter("reply_min_notes", 16)]
    assert "clamped to reply_max_notes" in decoded.notes[0]
    decoded = surface.decode(message("/antiphon/reply_max_notes", 2), current)
    assert decoded.commands == [SetParameter("reply_max_notes", 4)]
    up = [SetParameter("reply_max_notes", 40), SetParameter("reply_min_notes", 30)]
    for first, second in (("min", "max"), ("max", "min")):
        values = {"min": 30, "max": 40}
        both = bundle(
            message(f"/antiphon/reply_{first}_notes", values[first]),
            message(f"/antiphon/reply_{second}_notes", values[second]),
        )
        assert surface.decode(both, current).commands == up
    down = bundle(message("/antiphon/reply_max_notes", 3), message("/antiphon/reply_min_notes", 2))
    assert surface.decode(down, current).commands == [
        SetParameter("reply_min_notes", 2),
        SetParameter("reply_max_notes", 3),
    ]


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, 512),
    st.integers(1, 512),
    st.lists(st.tuples(st.sampled_from(["min", "max"]), st.integers(-10, 600)), max_size=3),
)
def test_reply_bounds_in_any_order_apply_one_by_one_without_crossing(
    low: int, high: int, changes: list[tuple[str, int]]
) -> None:
    low, high = min(low, high), max(low, high)
    parameters = Parameters.from_settings(Settings(reply_min_notes=low, reply_max_notes=high))
    surface = ControlSurface(ControlMapping(), [Path("/nonexistent")])
    data = bundle(*(message(f"/antiphon/reply_{which}_notes", n) for which, n in changes))
    current = {"reply_min_notes": low, "reply_max_notes": high}
    for command in surface.decode(data, current).commands:
        assert isinstance(command, SetParameter)
        parameters = parameters.with_value(command.name, command.value)  # the performer's check
    final = {which: min(max(n, 1), 512) for which, n in changes}  # clamped to 1..512
    if final.keys() == {"max"} and final["max"] >= low:
        assert parameters.reply_max_notes == final["max"]
    if final.keys() == {"min"} and final["min"] <= high:
        assert parameters.reply_min_notes == final["min"]


# Actions -----------------------------------------------------------------------------------


def test_buttons_fire_on_press_and_not_on_release(surface: ControlSurface) -> None:
    assert decode(surface, message("/antiphon/panic")) == [Action("panic")]
    assert decode(surface, message("/antiphon/panic", 1.0)) == [Action("panic")]
    assert decode(surface, message("/antiphon/reset", True)) == [Action("reset")]
    assert decode(surface, message("/antiphon/panic", 0.0)) == []
    assert decode(surface, message("/antiphon/reset", False)) == []
    assert decode(surface, message("/antiphon/memory/clear")) == [Action("memory/clear")]
    assert decode(surface, message("/antiphon/memory/clear", 0)) == []
    mapped = parse_mapping({"cc": {"22": {"action": "memory/clear"}}})
    assert mapped.cc_command(22, 127) == Action("memory/clear")


def test_state_slots_and_status_ports(surface: ControlSurface) -> None:
    assert decode(surface, message("/antiphon/state/save", 3)) == [Action("state/save", 3)]
    assert decode(surface, message("/antiphon/state/load", 3.0)) == [Action("state/load", 3)]
    assert decode(surface, message("/antiphon/status")) == [Action("status")]
    assert decode(surface, message("/antiphon/status", 9001)) == [Action("status", 9001)]


def test_model_switch_stays_inside_the_models_folder(surface: ControlSurface) -> None:
    root = surface.models_dirs[0].resolve()
    for name in ("other.onnx", "other", str(root / "other.onnx")):
        assert decode(surface, message("/antiphon/model", name)) == [
            Action("model", root / "other.onnx")
        ]
    (root.parent / "secret.onnx").write_bytes(b"x")
    for outside in ("../secret.onnx", "/etc/passwd", "", "missing.onnx", "."):
        with pytest.raises(ControlError, match="/antiphon/model: "):
            surface.decode(message("/antiphon/model", outside), CURRENT)
    with pytest.raises(ControlError, match="expected a string"):
        surface.decode(message("/antiphon/model", 3), CURRENT)


def test_a_symlink_out_of_the_models_folder_is_refused(surface: ControlSurface) -> None:
    elsewhere = surface.models_dirs[0].parent / "elsewhere.onnx"
    elsewhere.write_bytes(b"x")
    (surface.models_dirs[0] / "link.onnx").symlink_to(elsewhere)
    with pytest.raises(ControlError, match="outside the models folder"):
        surface.decode(message("/antiphon/model", "link.onnx"), CURRENT)


# Datagrams ---------------------------------------------------------------------------------


def test_a_bundle_applies_whole(surface: ControlSurface) -> None:
    good = bundle(message("/antiphon/temperature", 0.3), message("/antiphon/noise", 0.2))
    assert decode(surface, good) == [SetParameter("temperature", 0.3), SetParameter("noise", 0.2)]
    nested = bundle(message("/antiphon/panic"), bundle(message("/antiphon/mode", "listen")))
    assert decode(surface, nested) == [Action("panic"), SetParameter("mode", "listen")]


def test_a_bundle_with_one_bad_message_changes_nothing(surface: ControlSurface) -> None:
    bad = bundle(message("/antiphon/temperature", 0.3), message("/antiphon/noise", "loud"))
    with pytest.raises(ControlError, match="/antiphon/noise: expected a number"):
        surface.decode(bad, CURRENT)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "empty datagram"),
        (b"hello world!", "not an OSC message or bundle"),
        (message("/antiphon/panic")[:-1], "not a multiple of 4"),
        (b"/ant\xffphon\x00\x00\x00", "not a printable ASCII"),
        (b"/antiphon/temperature\x00\x00\x00f\x00\x00\x00", "no type tag string"),
        (message("/antiphon/temperature", 0.5) + b"\x00" * 4, "4 stray bytes"),
        (message("/antiphon/temperature", 0.5)[:-4], "arguments are cut short"),
        (message("/antiphon/mode", "x")[:-4] + b"\xff\x00\x00\x00", "arguments do not parse"),
        (message("/antiphon/temperature", ("b", b"blob")), "unsupported argument type 'b'"),
        (message("/antiphon/temperature", ("N", None)), "unsupported argument type 'N'"),
        (b"#bundle\x00\x00\x00\x00\x00", "no time tag"),
        (b"#bundle\x00" + b"\x00" * 8 + struct.pack(">i", -4), "element size -4"),
        (b"#bundle\x00" + b"\x00" * 8 + struct.pack(">i", 400), "element size 400"),
        (b"#bundle\x00" + b"\x00" * 8 + b"\x00\x00", "not a multiple of 4"),
        (bundle(bundle(bundle(bundle(bundle(message("/antiphon/panic")))))), "nested more than"),
        (bundle(*[message("/antiphon/panic")] * (MAX_BUNDLE_MESSAGES + 1)), "more than 32"),
        (message("/antiphon/model", "x" * MAX_DATAGRAM_BYTES), "bytes (at most 4096)"),
    ],
)
def test_malformed_datagrams_are_refused_with_a_message(data: bytes, problem: str) -> None:
    with pytest.raises(ControlError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        decode_packet(data)


def oscsend_bytes(address: str, *typed: str) -> bytes:
    """The datagram liblo's oscsend builds (an encoder independent of python-osc)."""
    return subprocess.run(
        ["oscsend", "-", address, *typed], check=True, capture_output=True, timeout=5
    ).stdout


@pytest.mark.skipif(shutil.which("oscsend") is None, reason="needs oscsend (liblo-tools)")
def test_datagrams_built_by_liblo_decode_as_sent(surface: ControlSurface) -> None:
    sent = {
        ("/antiphon/temperature", "f", "0.5"): SetParameter("temperature", 0.5),
        ("/antiphon/noise", "d", "0.25"): SetParameter("noise", 0.25),
        ("/antiphon/output_channel", "i", "7"): SetParameter("output_channel", 7),
        ("/antiphon/reply_max_notes", "h", "12"): SetParameter("reply_max_notes", 12),
        ("/antiphon/mode", "s", "listen"): SetParameter("mode", "listen"),
        ("/antiphon/thru", "T"): SetParameter("thru", True),
        ("/antiphon/overlap", "F"): SetParameter("overlap", False),
        ("/antiphon/state/load", "i", "5"): Action("state/load", 5),
        ("/antiphon/panic",): Action("panic"),
    }
    for (address, *typed), command in sent.items():
        assert decode(surface, oscsend_bytes(address, *typed)) == [command]
    with pytest.raises(ControlError, match="not a finite number"):
        surface.decode(oscsend_bytes("/antiphon/temperature", "f", "nan"), CURRENT)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200))
def test_garbage_bytes_decode_or_raise_control_error(data: bytes) -> None:
    surface = ControlSurface(parse_mapping(_toml(TOUCHOSC_MAPPING)), [Path("/nonexistent")])
    try:
        surface.decode(data, CURRENT)
    except ControlError as err:
        assert "\n" not in str(err)


ADDRESSES = [p.address for p in PARAMETERS] + [
    "/antiphon/panic",
    "/antiphon/state/save",
    "/antiphon/model",
    "/1/fader1",
    "/antiphon/nope",
]


@st.composite
def plausible_messages(draw: st.DrawFn) -> bytes:
    """Near-misses: real addresses, real type tags, payloads that may be cut, padded or wrong."""
    address = draw(st.sampled_from(ADDRESSES)).encode()
    tags = draw(st.text(alphabet="ifhdsTFNbt[]", max_size=4))
    payload = draw(st.binary(max_size=24))
    head = address + b"\x00" * (4 - len(address) % 4)
    tag_bytes = b"," + tags.encode()
    return head + tag_bytes + b"\x00" * (4 - len(tag_bytes) % 4) + payload


@settings(max_examples=400, deadline=None)
@given(st.lists(plausible_messages(), min_size=1, max_size=4), st.booleans())
def test_near_miss_datagrams_apply_whole_or_not_at_all(
    messages: list[bytes], as_bundle: bool
) -> None:
    surface = ControlSurface(parse_mapping(_toml(TOUCHOSC_MAPPING)), [Path("/nonexistent")])
    data = bundle(*messages) if as_bundle else messages[0]
    try:
        commands = surface.decode(data, CURRENT).commands
    except ControlError:
        return
    # Decoded: every message was understood, and each one's command passed its checks.
    for command in commands:
        if isinstance(command, SetParameter):
            parameter = next(p for p in PARAMETERS if p.name == command.name)
            assert isinstance(command.value, parameter.kind)
            if parameter.kind in (int, float):  # bool is an int too, but has no range
                assert parameter.low <= command.value <= parameter.high


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from([p for p in PARAMETERS if p.kind is float]),
    st.floats(allow_nan=True, allow_infinity=True, width=32),
)
def test_any_float_is_clamped_into_range_or_refused(parameter: object, value: float) -> None:
    assert isinstance(parameter, type(PARAMETERS[0]))
    surface = ControlSurface(ControlMapping(), [Path("/nonexistent")])
    try:
        [command] = surface.decode(message(parameter.address, value), CURRENT).commands
    except ControlError:
        assert not math.isfinite(value)
        return
    assert isinstance(command, SetParameter)
    assert parameter.low <= float(command.value) <= parameter.high


# The mapping file --------------------------------------------------------------------------


def test_mapped_faders_scale_onto_their_range(surface: ControlSurface) -> None:
    [command] = decode(surface, message("/1/fader1", 0.5))
    assert isinstance(command, SetParameter) and command.name == "temperature"
    assert command.value == pytest.approx(1.05)
    assert decode(surface, message("/1/fader2", 1.0)) == [SetParameter("reply_max_notes", 32)]
    assert decode(surface, message("/1/toggle1", 1.0)) == [SetParameter("mode", "listen")]
    assert decode(surface, message("/1/toggle1", 0.0)) == [SetParameter("mode", "call_response")]
    assert decode(surface, message("/pd/noise", 127)) == [SetParameter("noise", 1.0)]
    assert decode(surface, message("/1/fader1", 7.0)) == [SetParameter("temperature", 2.0)]
    assert decode(surface, message("/1/push1", 1.0)) == [Action("panic")]
    assert decode(surface, message("/1/push1", 0.0)) == []


def test_mapped_ccs_scale_0_to_127(surface: ControlSurface) -> None:
    mapping = surface.mapping
    assert mapping.cc_command(74, 127) == SetParameter("noise", 1.0)
    assert mapping.cc_command(74, 0) == SetParameter("noise", 0.0)
    assert mapping.cc_command(20, 127) == Action("state/load", 3)
    assert mapping.cc_command(20, 0) is None
    assert mapping.cc_command(1, 64) is None


def test_feedback_puts_a_mapped_fader_where_the_value_is(surface: ControlSurface) -> None:
    mapping = surface.mapping
    [(address, position)] = mapping.feedback("temperature", 1.05)
    assert address == "/1/fader1"
    assert position == pytest.approx(0.5)
    assert mapping.feedback("mode", "listen") == [("/1/toggle1", 1.0)]
    assert mapping.feedback("noise", 0.5) == [("/pd/noise", 63.5)]
    assert mapping.feedback("temperature", 9.0) == [("/1/fader1", 1.0)]


def test_a_mapping_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "touchosc.toml"
    path.write_text(TOUCHOSC_MAPPING)
    mapping = load_mapping(path)
    assert set(mapping.osc) == {"/1/fader1", "/1/fader2", "/1/toggle1", "/pd/noise", "/1/push1"}
    assert set(mapping.cc) == {74, 20}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('[osc."/1/f"]\nparameter = "volume"', "osc.\"/1/f\".parameter: 'volume' is not one of"),
        ('[osc."/1/f"]\nparameter = "noise"\nrange = [0, 2]', 'osc."/1/f".range: 2 is outside'),
        ('[osc."/1/f"]\nparameter = "noise"\nrange = [0]', 'osc."/1/f".range: expected two'),
        ('[osc."/1/f"]\nparameter = "noise"\nrange = [0, nan]', "range: expected two numbers"),
        ('[osc."/1/f"]\nparameter = "noise"\ncolor = 1', 'osc."/1/f".color: unknown key'),
        ('[osc."/1/f"]\nrange = [0, 1]', 'osc."/1/f": needs either parameter or action'),
        ('[osc."/1/f"]\naction = "explode"', 'osc."/1/f".action: must be one of'),
        ('[osc."/1/f"]\naction = "state/save"\nslot = 128', "slot: a slot is 0 to 127"),
        ('[osc."/1/f"]\nparameter = "thru"\nrange = [0, 1]', "range: thru has no range"),
        ('[osc."/1/f"]\nparameter = "mode"\nvalues = ["solo"]', "values: a list of"),
        ('[osc."/1/f"]\nparameter = "noise"\ninput = [1, 1]', "input: the two ends must differ"),
        ('[osc."/antiphon/noise"]\nparameter = "noise"', "the /antiphon addresses are built in"),
        ('[osc."fader"]\nparameter = "noise"', "starts with '/'"),
        ('[cc.128]\nparameter = "noise"', "cc.128: a CC number is 0 to 127"),
        ('[cc.x]\nparameter = "noise"', "cc.x: a CC number is 0 to 127"),
        ('[cc.1]\nparameter = "noise"\ninput = [0, 1]', "cc.1.input: a CC always sends"),
        ("[midi]\nx = 1", "unknown section 'midi'"),
        ("osc = 3", "osc: expected a table"),
        ("[osc\nbroken", "not valid TOML"),
    ],
)
def test_mapping_file_errors_name_the_key(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "mapping.toml"
    path.write_text(text)
    with pytest.raises(ControlError) as caught:
        load_mapping(path)
    message_text = str(caught.value)
    assert problem in message_text
    assert message_text.startswith(str(path))
    assert "\n" not in message_text


def test_a_missing_mapping_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ControlError, match="cannot read mapping"):
        load_mapping(tmp_path / "nope.toml")


# Senders, problems, status -----------------------------------------------------------------


def test_allowlist_takes_addresses_and_ranges() -> None:
    allow = Allowlist(["192.168.1.0/24", "10.0.0.7", "fd00::/8"])
    assert allow.allows("192.168.1.40")
    assert allow.allows("10.0.0.7")
    assert allow.allows("::ffff:192.168.1.9")
    assert allow.allows("fd00::1")
    assert not allow.allows("10.0.0.8")
    assert not allow.allows("127.0.0.1")
    assert not allow.allows("not an address")
    assert Allowlist([]).allows("203.0.113.5")
    with pytest.raises(ControlError, match="osc_allow: 'stage' is not an IP address"):
        Allowlist(["stage"])


def test_problem_reports_are_rate_limited_per_kind() -> None:
    now = [0.0]
    limiter = ProblemLimiter(interval_s=1.0, clock=lambda: now[0])
    assert limiter.admit("malformed") == (True, 0)
    assert limiter.admit("malformed") == (False, 0)
    assert limiter.admit("malformed") == (False, 0)
    assert limiter.admit("refused") == (True, 0)
    now[0] = 1.5
    assert limiter.admit("malformed") == (True, 2)
    assert limiter.admit("malformed") == (False, 0)


def test_status_puts_parameters_on_their_own_addresses() -> None:
    messages = status_messages(
        {
            "temperature": 0.5,
            "phrase_gap_s": 0.3,
            "state": "listening",
            "last_reply": {"latency_ms": 3.5, "notes": 12},
            "saved_slots": [1, 3],
            "model": Path("/m/a.onnx"),
            "seed": None,
        }
    )
    assert messages == [
        ("/antiphon/temperature", [0.5]),
        ("/antiphon/phrase_gap", [0.3]),
        ("/antiphon/status/state", ["listening"]),
        ("/antiphon/status/last_reply/latency_ms", [3.5]),
        ("/antiphon/status/last_reply/notes", [12]),
        ("/antiphon/status/saved_slots", [1, 3]),
        ("/antiphon/status/model", ["/m/a.onnx"]),
    ]


# The reference -----------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent


def osc_reference() -> str:
    """The OSC page of the docs, which documents every address."""
    return (ROOT / "docs" / "osc.md").read_text(encoding="utf-8")


def test_the_osc_table_documents_every_address_with_its_range_and_default() -> None:
    rows = {
        line.split("|")[1].strip(" `"): line
        for line in osc_reference().splitlines()
        if line.startswith("| `/antiphon/")
    }
    defaults = Settings()
    for parameter in PARAMETERS:
        row = rows[parameter.address]
        default = getattr(defaults, parameter.name)
        if parameter.kind in (int, float):
            assert f"{parameter.low:g} to {parameter.high:g}" in row
            assert f"| {default:g} |" in row or f"| {float(default)} |" in row
            assert ("clamped" if parameter.clamp else "refused") in row
        elif parameter.kind is str:
            assert all(f"`{choice}`" in row for choice in parameter.choices)
            assert f"| `{default}` |" in row
        else:
            assert "| off |" in row
    for command in ("panic", "reset", "state/save", "state/load", "model", "status"):
        assert f"{NAMESPACE}/{command}" in rows
