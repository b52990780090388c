"""The settings file and the command line: one-line refusals, precedence, provenance."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from antiphon.daemon.settings import (
    SETTINGS_FIELDS,
    Settings,
    SettingsError,
    add_settings_arguments,
    describe_settings,
    load_toml,
    resolve_settings,
)
from hypothesis import given, settings
from hypothesis import strategies as st

EXAMPLE = Path(__file__).resolve().parent.parent / "systemd" / "antiphon.toml"


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_settings_arguments(parser)
    return parser.parse_args(argv)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "antiphon.toml"
    path.write_text(text)
    return path


def refusal(path: Path) -> str:
    with pytest.raises(SettingsError) as caught:
        resolve_settings(parse("--config", str(path)))
    message = str(caught.value)
    assert "\n" not in message
    assert str(path) in message
    return message


def test_unknown_key_is_refused_naming_it_and_the_nearest_known_one(tmp_path: Path) -> None:
    message = refusal(write(tmp_path, "temperature = 0.9\nphrase_gap = 0.5\n"))
    assert "phrase_gap: unknown setting; did you mean 'phrase_gap_s'?" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('temperature = "hot"', "temperature: expected a number, got a string"),
        ("output_channel = 1.5", "output_channel: expected a whole number, got a number"),
        ("reply_min_notes = true", "reply_min_notes: expected a whole number, got true/false"),
        ("thru = 1", "thru: expected true or false, got a whole number"),
        ("osc_allow = [1, 2]", "osc_allow: expected a list of strings"),
        ('osc_allow = "10.0.0.1"', "osc_allow: expected a list of strings, got a string"),
        ("[phrase_gap_s]\nvalue = 1", "phrase_gap_s: expected a number, got a table"),
    ],
)
def test_wrong_type_is_refused_naming_the_key(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in refusal(write(tmp_path, text + "\n"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("temperature = 9.0", "temperature: must be between 0.05 and 5 (got 9.0)"),
        ("output_channel = 17", "output_channel: must be between 1 and 16 (got 17)"),
        ("osc_port = 70000", "osc_port: must be between 0 and 65535"),
        ("noise = nan", "noise: must be a finite number"),
        ('mode = "jam"', "mode: must be one of call_response, listen"),
    ],
)
def test_out_of_range_is_refused_naming_the_key(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in refusal(write(tmp_path, text + "\n"))


def test_a_file_that_is_not_toml_is_refused_in_one_line(tmp_path: Path) -> None:
    assert "not valid TOML" in refusal(write(tmp_path, "temperature = = 1\n[oops\n"))


def test_a_missing_file_is_refused_in_one_line(tmp_path: Path) -> None:
    assert "cannot read it: No such file or directory" in refusal(tmp_path / "absent.toml")


def test_bounds_that_contradict_each_other_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "reply_min_notes = 40\nreply_max_notes = 10\n")
    with pytest.raises(SettingsError, match="reply_min_notes: must not exceed reply_max_notes"):
        resolve_settings(parse("--config", str(path)))


def test_command_line_overrides_the_file_and_the_file_the_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, "temperature = 0.7\nnoise = 0.2\nthru = true\n")
    resolved, sources = resolve_settings(
        parse("--config", str(path), "--noise", "0.5", "--no-thru", "--phrase-gap", "0.6")
    )
    assert (resolved.temperature, resolved.noise, resolved.thru) == (0.7, 0.5, False)
    assert resolved.phrase_gap_s == 0.6
    assert resolved.reply_ratio == Settings().reply_ratio
    assert sources["temperature"] == str(path)
    assert sources["noise"] == sources["thru"] == sources["phrase_gap_s"] == "command line"
    assert sources["reply_ratio"] == "default"


def test_a_bad_command_line_value_is_refused_naming_the_flag() -> None:
    with pytest.raises(SettingsError, match=r"^--temperature: must be between 0.05 and 5"):
        resolve_settings(parse("--temperature", "0"))


def test_paths_in_the_file_are_read_from_its_folder(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    path = tmp_path / "etc" / "antiphon.toml"
    path.write_text('model = "models/m.onnx"\nrecord = "/srv/sessions"\nmapping = "~/m.toml"\n')
    resolved, _ = resolve_settings(parse("--config", str(path)))
    assert resolved.model == str(tmp_path / "etc" / "models" / "m.onnx")
    assert resolved.record == "/srv/sessions"
    assert resolved.mapping == str(Path.home() / "m.toml")


def test_print_config_names_the_source_of_every_setting(tmp_path: Path) -> None:
    path = write(tmp_path, "temperature = 0.7\n")
    resolved, sources = resolve_settings(parse("--config", str(path), "--port-name", "Stage"))
    lines = describe_settings(resolved, sources).splitlines()
    assert len(lines) == len(SETTINGS_FIELDS)
    assert f"temperature = 0.7  # {path}" in lines
    assert 'port_name = "Stage"  # command line' in lines
    assert "noise = 0.0  # default" in lines
    assert "# seed = (none)  # default" in lines


valid_settings = st.fixed_dictionaries(
    {},
    optional={
        "temperature": st.floats(0.05, 5.0),
        "noise": st.floats(0.0, 1.0),
        "phrase_gap_s": st.floats(0.05, 10.0),
        "output_channel": st.integers(1, 16),
        "listen_channel": st.integers(1, 16),
        "seed": st.integers(0, 2**31),
        "thru": st.booleans(),
        "mode": st.sampled_from(["call_response", "listen", "duet", "both"]),
        "port_name": st.text(min_size=1, max_size=20),
        "osc_allow": st.lists(st.text(max_size=12), max_size=3).map(tuple),
        "reply_max_notes": st.integers(64, 512),
    },
)


@settings(max_examples=60, deadline=None)
@given(values=valid_settings)
def test_printed_config_loads_back_to_the_same_settings(
    tmp_path_factory: pytest.TempPathFactory, values: dict[str, object]
) -> None:
    original = Settings(**values)  # type: ignore[arg-type]
    sources = {name: "default" for name in SETTINGS_FIELDS}
    path = tmp_path_factory.mktemp("printed") / "printed.toml"
    path.write_text(describe_settings(original, sources), encoding="utf-8")
    loaded, _ = resolve_settings(parse(), load_toml(path))
    assert loaded == original


def test_the_example_file_names_every_setting_and_each_value_is_valid(tmp_path: Path) -> None:
    text = EXAMPLE.read_text()
    assert tomllib.loads(text) == {}  # everything commented out: the defaults
    commented = dict(re.findall(r"^# (\w+) = (.+)$", text, flags=re.MULTILINE))
    assert set(commented) == set(SETTINGS_FIELDS)
    uncommented = write(tmp_path, "".join(f"{k} = {v}\n" for k, v in commented.items()))
    resolved, sources = resolve_settings(parse("--config", str(uncommented)))
    assert set(sources.values()) == {str(uncommented)}
    for name in ("midi_api", "temperature", "phrase_gap_s", "osc_port", "reply_max_notes"):
        assert getattr(resolved, name) == SETTINGS_FIELDS[name].default


def antiphon(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "antiphon.daemon.cli", *argv],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_antiphon_run_refuses_a_broken_file_with_one_line_and_status_78(tmp_path: Path) -> None:
    path = write(tmp_path, "temperature = 0.9\nchannel = 2\n")
    result = antiphon("run", "--config", str(path))
    assert result.returncode == 78  # EX_CONFIG: the systemd units do not restart on it
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"antiphon run: {path}: channel: unknown setting; did you mean 'output_channel'?"
    ]


def test_antiphon_run_print_config_shows_each_value_and_its_source(tmp_path: Path) -> None:
    path = write(tmp_path, "noise = 0.25\n")
    result = antiphon("run", "--config", str(path), "--print-config", "--seed", "3")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert f"noise = 0.25  # {path}" in lines
    assert "seed = 3  # command line" in lines
    assert "temperature = 1.0  # default" in lines
