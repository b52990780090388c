"""``antiphon doctor``: each check judged from facts (pure), then the command as a process, with
no MIDI system and on a real JACK server, exiting with the status ``antiphon run`` would."""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from antiphon.daemon.midi.port_names import virtual_port_names
from antiphon.daemon.midi.ports import ALSA_SEQUENCER, MidiInput, MidiOutput, compiled_apis
from antiphon.daemon.stage.diagnosis import (
    FAIL,
    OK,
    WARN,
    Finding,
    MidiFacts,
    config_finding,
    exit_status,
    file_finding,
    format_finding,
    midi_system_finding,
    models_folders_finding,
    osc_finding,
    port_findings,
    realtime_finding,
    record_finding,
    transcription_finding,
    writable_folder_problem,
)
from antiphon.daemon.stage.doctor import udp_bind_error
from antiphon.daemon.stage.live import EXIT_CONFIG, EXIT_UNAVAILABLE
from antiphon.daemon.tools.jack_server import JackServer
from hypothesis import given
from hypothesis import strategies as st

NO_SERVER = "antiphon-no-such-server"
needs_jack_build = pytest.mark.skipif(
    "jack" not in compiled_apis(), reason="python-rtmidi built without JACK"
)

# The checks, from facts ------------------------------------------------------------------


def test_no_working_midi_system_fails_with_each_reason_and_the_fix() -> None:
    facts = MidiFacts(
        ("alsa", "jack"),
        {"alsa": "no ALSA sequencer (/dev/snd/seq missing)", "jack": "no JACK server running"},
    )
    finding, api = midi_system_finding("auto", facts, "linux")
    assert api is None
    assert (finding.status, finding.exit_status) == (FAIL, EXIT_UNAVAILABLE)
    assert "/dev/snd/seq missing" in finding.detail and "no JACK server" in finding.detail
    assert "modprobe snd-seq" in finding.fix and "jackd" in finding.fix


def test_a_jack_server_name_that_matches_no_server_is_pointed_out() -> None:
    facts = MidiFacts(("jack",), {"jack": "no JACK server named 'x' running"}, jack_server="x")
    finding, _ = midi_system_finding("jack", facts, "linux")
    assert finding.status == FAIL and "JACK_DEFAULT_SERVER is 'x'" in finding.fix


def test_auto_picks_the_first_working_system_as_antiphon_run_does() -> None:
    both = MidiFacts(("alsa", "jack"))
    assert midi_system_finding("auto", both, "linux")[1] == "alsa"
    no_alsa = MidiFacts(("alsa", "jack"), {"alsa": "no ALSA sequencer"}, jack_server="stage")
    finding, api = midi_system_finding("auto", no_alsa, "linux")
    assert api == "jack" and finding.status == OK
    assert "JACK: server 'stage' running" in finding.detail


def test_a_midi_system_this_build_lacks_is_a_config_failure() -> None:
    finding, api = midi_system_finding("windows", MidiFacts(("alsa", "jack")), "linux")
    assert api is None
    assert (finding.status, finding.exit_status) == (FAIL, EXIT_CONFIG)
    assert "--midi-api" in finding.fix


def test_a_port_name_found_once_is_ok_and_the_ports_are_listed() -> None:
    inputs = ["KeyStep 37:midi 1", "Midi Through:Port-0"]
    findings = port_findings("jack", inputs, ["Synth:in"], "Antiphon", "keystep", None)
    listing, clash_free_input, output = findings[0], findings[1], findings[2]
    assert "KeyStep 37:midi 1" in listing.detail and "Synth:in" in listing.detail
    assert clash_free_input == Finding("MIDI input", OK, "'keystep' finds 'KeyStep 37:midi 1'")
    assert output == Finding("MIDI output", OK, "a virtual port, 'Antiphon-out:out'")


def test_a_port_name_matching_several_ports_is_a_config_failure() -> None:
    findings = port_findings("jack", ["Keys A:out", "Keys B:out"], [], "Antiphon", "keys", None)
    (matched,) = [f for f in findings if f.topic == "MIDI input"]
    assert (matched.status, matched.exit_status) == (FAIL, EXIT_CONFIG)
    assert "Keys A:out" in matched.detail and "--input-port" in matched.fix


def test_a_port_that_is_not_there_yet_is_a_warning_antiphon_run_waits_for_it() -> None:
    findings = port_findings("jack", [], ["Synth:in"], "Antiphon", None, "piano")
    (matched,) = [f for f in findings if f.topic == "MIDI output"]
    assert matched.status == WARN and "waits for it" in matched.fix
    assert exit_status(findings) == 0


def test_a_port_of_ours_already_there_fails_as_antiphon_run_would() -> None:
    findings = port_findings("jack", ["Antiphon-out:out"], [], "Antiphon", None, None)
    (clash,) = [f for f in findings if f.topic == "port name"]
    assert (clash.status, clash.exit_status) == (FAIL, EXIT_UNAVAILABLE)
    assert "--port-name" in clash.fix


def test_windows_without_port_names_is_a_config_failure() -> None:
    findings = port_findings("windows", ["loopMIDI Port"], [], "Antiphon", None, None)
    assert [f.exit_status for f in findings if f.status == FAIL] == [EXIT_CONFIG, EXIT_CONFIG]


def test_the_osc_port_off_free_taken_or_badly_set() -> None:
    assert osc_finding("127.0.0.1", 0, None, None).status == OK
    assert osc_finding("127.0.0.1", 9000, None, None).status == OK
    taken = osc_finding("127.0.0.1", 9000, "Address already in use", None)
    assert (taken.status, taken.exit_status) == (FAIL, EXIT_UNAVAILABLE)
    assert "Address already in use" in taken.detail and "--osc-port" in taken.fix
    bad = osc_finding("127.0.0.1", 9000, None, ("osc_allow: 'x' is not an IP address", 78))
    assert (bad.status, bad.exit_status) == (FAIL, EXIT_CONFIG)


@given(st.integers(1, 99), st.one_of(st.none(), st.just(math.inf), st.integers(0, 2**40)))
def test_any_real_time_priority_allowed_is_ok(rtprio: int, memlock: float | None) -> None:
    finding = realtime_finding(rtprio, memlock)
    assert finding.status == OK and f"up to {rtprio}" in finding.detail


def test_no_real_time_priority_is_a_warning_with_the_fix_never_a_failure() -> None:
    finding = realtime_finding(0, 64 * 2**20)
    assert finding.status == WARN and "audio" in finding.fix
    assert realtime_finding(None, None).status == OK  # a system without the limit


def test_a_config_error_fails_with_the_config_status() -> None:
    finding = config_finding(Path("stage.toml"), "stage.toml: tempo: unknown setting", 0)
    assert (finding.status, finding.exit_status) == (FAIL, EXIT_CONFIG)
    valid = config_finding(Path("stage.toml"), None, 3)
    assert (valid.status, valid.detail) == (OK, "stage.toml: valid, 3 settings in force from it")


def test_a_mapping_file_that_cannot_be_used_is_a_config_failure() -> None:
    assert file_finding("mapping", None, None) == Finding("mapping", OK, "none")
    assert file_finding("mapping", "knobs.toml", None).status == OK
    broken = file_finding("mapping", "knobs.toml", "knobs.toml: not valid TOML")
    assert (broken.status, broken.exit_status) == (FAIL, EXIT_CONFIG)


def test_the_exit_status_is_the_first_failure_in_start_up_order() -> None:
    ok = Finding("a", OK, "fine")
    config = Finding("config", FAIL, "bad", "fix it", EXIT_CONFIG)
    midi = Finding("MIDI system", FAIL, "none", "start JACK", EXIT_UNAVAILABLE)
    assert exit_status([ok, midi, config]) == EXIT_UNAVAILABLE
    assert exit_status([config, midi]) == EXIT_CONFIG
    assert exit_status([ok, Finding("b", WARN, "meh", "do this")]) == 0


def test_a_failure_always_carries_an_exit_status() -> None:
    with pytest.raises(ValueError):
        Finding("x", FAIL, "bad")
    with pytest.raises(ValueError):
        Finding("x", OK, "fine", exit_status=EXIT_CONFIG)


def test_a_finding_prints_its_status_detail_lines_and_fix() -> None:
    text = format_finding(Finding("MIDI system", FAIL, "none\nALSA: gone", "start JACK", 69))
    assert text.splitlines() == [
        "FAIL  MIDI system: none",
        "      ALSA: gone",
        "      -> start JACK",
    ]


def test_the_models_folders_in_order_and_a_missing_models_dir_warns(tmp_path: Path) -> None:
    installed, user = tmp_path / "installed", tmp_path / "user"
    finding = models_folders_finding([installed, user], {installed: ["a", "b"], user: None}, "")
    assert finding.status == OK
    assert finding.detail.splitlines()[1:] == [f"{installed}: a, b", f"{user}: absent"]
    chosen = tmp_path / "mine"
    assert models_folders_finding([chosen], {chosen: None}, str(chosen)).status == WARN


def test_a_recording_folder_is_checked_without_making_it(tmp_path: Path) -> None:
    folder = tmp_path / "sessions" / "tonight"
    assert writable_folder_problem(folder) is None
    assert not (tmp_path / "sessions").exists()
    (tmp_path / "file").write_text("x")
    problem = writable_folder_problem(tmp_path / "file" / "sessions")
    assert problem == f"{tmp_path / 'file'} is not a folder"
    failed = record_finding(str(tmp_path / "file" / "sessions"), problem)
    assert (failed.status, failed.exit_status) == (FAIL, EXIT_CONFIG)
    assert record_finding(None, None).detail == "off"


def test_a_udp_port_in_use_cannot_be_bound_and_is_free_again_once_closed() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
        assert udp_bind_error("127.0.0.1", port) is not None
    assert udp_bind_error("127.0.0.1", port) is None


# The command -------------------------------------------------------------------------------


def doctor(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "antiphon", "doctor", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def lines_of(result: subprocess.CompletedProcess[str], topic: str) -> list[str]:
    """The lines of one finding: its first line and those indented under it."""
    lines = result.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line[6:].startswith(topic + ":"))
    end = start + 1
    while end < len(lines) and lines[end].startswith("      "):
        end += 1
    return lines[start:end]


@pytest.mark.system
@needs_jack_build
def test_without_a_jack_server_doctor_says_why_and_what_to_do_and_exits_69() -> None:
    env = dict(os.environ, JACK_DEFAULT_SERVER=NO_SERVER)
    result = doctor("--midi-api", "jack", "--osc-port", "0", env=env)
    assert result.returncode == EXIT_UNAVAILABLE, result.stdout + result.stderr
    midi = lines_of(result, "MIDI system")
    assert midi[0].startswith("FAIL")
    assert f"      JACK: no JACK server named '{NO_SERVER}' running" in midi
    assert any("-> start JACK" in line and "JACK_DEFAULT_SERVER" in line for line in midi)
    assert result.stdout.splitlines()[-1].startswith("antiphon run would stop with exit status 69")
    assert result.stderr == ""  # libjack's own complaints are kept out


@pytest.mark.system
@needs_jack_build
@pytest.mark.skipif(os.path.exists(ALSA_SEQUENCER), reason="this machine has an ALSA sequencer")
def test_with_no_midi_system_at_all_auto_fails_naming_both() -> None:
    env = dict(os.environ, JACK_DEFAULT_SERVER=NO_SERVER)
    result = doctor("--osc-port", "0", env=env)
    assert result.returncode == EXIT_UNAVAILABLE
    midi = "\n".join(lines_of(result, "MIDI system"))
    assert "/dev/snd/seq missing" in midi and "modprobe snd-seq" in midi
    assert lines_of(result, "MIDI ports")[0].startswith("skip")


@pytest.mark.system
def test_a_broken_config_file_is_reported_and_exits_78(tmp_path: Path) -> None:
    config = tmp_path / "stage.toml"
    config.write_text('temprature = 1.2\nport_name = "Stage"\n', encoding="utf-8")
    env = dict(os.environ, JACK_DEFAULT_SERVER=NO_SERVER)
    result = doctor("--config", str(config), "--osc-port", "0", env=env)
    assert result.returncode == EXIT_CONFIG
    (line, *_) = lines_of(result, "config")
    assert line.startswith("FAIL") and "did you mean 'temperature'?" in line
    assert lines_of(result, "model")[0].startswith("ok")  # the other checks still ran


@pytest.fixture
def keyboard(jack_server: JackServer) -> Iterator[tuple[str, str]]:
    """A stand-in keyboard on the JACK server: a source and a destination port of its own."""
    names = virtual_port_names("jack", "DoctorKeys")
    source = MidiOutput("jack", names)
    destination = MidiInput("jack", names, lambda message, time_s: None)
    source.open()
    try:
        destination.open()
        try:
            yield names.output_listed, names.input_listed
        finally:
            destination.close()
    finally:
        source.close()


@pytest.mark.jack
@pytest.mark.system
def test_on_a_jack_server_doctor_lists_the_ports_finds_the_keyboard_and_exits_0(
    jack_server: JackServer, keyboard: tuple[str, str], tmp_path: Path
) -> None:
    source, destination = keyboard
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind(("127.0.0.1", 0))
        free_port = holder.getsockname()[1]
    config = tmp_path / "stage.toml"
    config.write_text('input_port = "doctorkeys-out"\nosc_port = 9\n', encoding="utf-8")
    result = doctor(
        "--config", str(config), "--osc-port", str(free_port), env=jack_server.env()
    )  # the flag wins over the file, as with antiphon run
    assert result.returncode == 0, result.stdout + result.stderr
    assert lines_of(result, "config") == [
        f"ok    config: {config}: valid, 1 setting in force from it"
    ]
    assert lines_of(result, "MIDI system")[0].startswith("ok    MIDI system: JACK")
    ports = "\n".join(lines_of(result, "MIDI ports"))
    assert source in ports and destination in ports
    assert lines_of(result, "MIDI input") == [
        f"ok    MIDI input: 'doctorkeys-out' finds '{source}'"
    ]
    assert lines_of(result, "OSC") == [f"ok    OSC: UDP 127.0.0.1:{free_port} is free"]
    assert result.stdout.splitlines()[-1] == "antiphon run can start with these settings"


@pytest.mark.jack
@pytest.mark.system
def test_on_a_jack_server_a_port_name_in_use_and_a_taken_osc_port_fail(
    jack_server: JackServer, keyboard: tuple[str, str]
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind(("127.0.0.1", 0))
        taken_port = holder.getsockname()[1]
        result = doctor(
            "--port-name", "DoctorKeys", "--osc-port", str(taken_port), env=jack_server.env()
        )
    assert result.returncode == EXIT_UNAVAILABLE
    assert lines_of(result, "port name")[0].startswith("FAIL")
    assert lines_of(result, "OSC")[0].startswith("FAIL  OSC: cannot listen on UDP")


def test_transcription_says_what_it_reads_and_how_to_read_more_never_failing() -> None:
    without = transcription_finding(None)
    assert without.status == OK and "WAV" in without.detail
    assert "pip install 'antiphon[audio]'" in without.fix
    with_extra = transcription_finding("0.13.1")
    assert with_extra.status == OK and "FLAC" in with_extra.detail and not with_extra.fix
