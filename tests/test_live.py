"""``antiphon run`` refuses what it cannot use in one line on stderr, with an exit status that
tells a supervisor whether trying again can help: 78 (EX_CONFIG) for what only a change of
configuration fixes, 69 (EX_UNAVAILABLE) for what may come up by itself (a MIDI system)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from antiphon.daemon.midi.ports import compiled_apis

pytestmark = [pytest.mark.system]


def run_daemon(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "antiphon.daemon.cli", "run", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def test_a_setting_out_of_range_is_one_line_and_exit_78() -> None:
    result = run_daemon("--temperature", "99")
    assert result.returncode == 78
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("antiphon run: "), result.stderr
    assert "temperature" in lines[0] and "between 0.05 and 5" in lines[0]


def test_a_missing_model_is_one_line_and_exit_78(tmp_path: Path) -> None:
    missing = tmp_path / "nothing.onnx"
    result = run_daemon("--model", str(missing), "--midi-api", "jack", "--osc-port", "0")
    assert result.returncode == 78
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(missing) in lines[0], result.stderr


@pytest.mark.skipif("windows" in compiled_apis(), reason="python-rtmidi built with Windows MM")
def test_a_midi_system_this_build_lacks_is_one_line_and_exit_78() -> None:
    result = run_daemon("--midi-api", "windows", "--osc-port", "0")
    assert result.returncode == 78
    assert result.stderr.strip().splitlines()[-1] == (
        "antiphon run: this python-rtmidi was built without Windows MM support"
    ), result.stderr


@pytest.mark.skipif("jack" not in compiled_apis(), reason="python-rtmidi built without JACK")
def test_no_midi_system_is_one_line_and_exit_69() -> None:
    env = dict(os.environ, JACK_DEFAULT_SERVER="antiphon-no-such-server")
    result = run_daemon("--midi-api", "jack", "--osc-port", "0", env=env)
    assert result.returncode == 69
    assert result.stderr.strip().splitlines()[-1] == (
        "antiphon run: no JACK server named 'antiphon-no-such-server' running"
    ), result.stderr


def test_print_config_shows_the_settings_and_exits_0() -> None:
    result = run_daemon("--print-config", "--port-name", "Stage")
    assert result.returncode == 0, result.stderr
    assert 'port_name = "Stage"  # command line' in result.stdout
