"""Antiphon as a systemd service: the unit files, the sd_notify protocol, a clean stop.

systemd cannot run inside the test (it is not PID 1 here), so the parts are checked one by
one with the real thing where it can run: ``systemd-analyze verify`` (Debian package systemd)
reads the units as systemd would; a real datagram socket plays systemd's NOTIFY_SOCKET; and
the daemon is started with exactly the unit's ExecStart command line, on a real JACK server,
then stopped with SIGTERM in the middle of a reply, as ``systemctl stop`` does.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import mido
import pytest
from antiphon.daemon.midi.port_names import virtual_port_names
from antiphon.daemon.musician.playing.performer import IDLE_WAIT_S, TURNING_WITHIN_S
from antiphon.daemon.stage.live import EXIT_CONFIG, EXIT_UNAVAILABLE
from antiphon.daemon.stage.sdnotify import SystemdNotifier, SystemdService
from antiphon.daemon.tools.jack_server import JackServer
from antiphon.daemon.tools.probe import MidiProbe, Timed, note_ons, sounding_notes

UNITS = Path(__file__).resolve().parent.parent / "systemd"
USER_UNIT = UNITS / "antiphon.service"
SYSTEM_UNIT = UNITS / "antiphon-system.service"
ANTIPHON = Path(sys.executable).parent / "antiphon"  # the console script of this install
STOP_WITHIN_S = 5.0
READY_WITHIN_S = 60.0

needs_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze is not installed (Debian: apt-get install systemd)",
)


class NotifySocket:
    """What systemd listens on: a datagram socket whose messages are kept in order."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind(str(path))
        self.messages: list[dict[str, str]] = []

    def receive(self, timeout_s: float) -> dict[str, str] | None:
        self._socket.settimeout(timeout_s)
        try:
            data = self._socket.recv(4096)
        except TimeoutError:
            return None
        fields = dict(line.split("=", 1) for line in data.decode().splitlines())
        self.messages.append(fields)
        return fields

    def wait_for(self, key: str, timeout_s: float) -> dict[str, str] | None:
        deadline_s = time.monotonic() + timeout_s
        while (left_s := deadline_s - time.monotonic()) > 0:
            fields = self.receive(left_s)
            if fields is not None and key in fields:
                return fields
        return None

    def drain(self) -> None:
        while self.receive(0.05) is not None:
            pass

    def close(self) -> None:
        self._socket.close()


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[NotifySocket]:
    listener = NotifySocket(tmp_path / "notify")
    try:
        yield listener
    finally:
        listener.close()


# sd_notify ---------------------------------------------------------------------------------


def test_ready_watchdog_and_stopping_reach_the_notify_socket(notify_socket: NotifySocket) -> None:
    environ = {"NOTIFY_SOCKET": str(notify_socket.path), "WATCHDOG_USEC": "100000"}
    service = SystemdService(lambda: True, lambda: "listening", SystemdNotifier(environ))
    service.start()
    assert notify_socket.receive(5.0) == {"READY": "1", "STATUS": "listening"}
    assert notify_socket.wait_for("WATCHDOG", 5.0) == {"WATCHDOG": "1", "STATUS": "listening"}
    service.stop()
    assert notify_socket.wait_for("STOPPING", 5.0) is not None


def test_a_hung_performer_gets_no_watchdog_ping(notify_socket: NotifySocket) -> None:
    environ = {"NOTIFY_SOCKET": str(notify_socket.path), "WATCHDOG_USEC": "40000"}
    service = SystemdService(lambda: False, lambda: "hung", SystemdNotifier(environ))
    service.start()
    time.sleep(0.2)  # five watchdog periods
    service.stop()
    notify_socket.drain()
    assert [m for m in notify_socket.messages if "WATCHDOG" in m] == []
    assert "READY" in notify_socket.messages[0] and "STOPPING" in notify_socket.messages[-1]


def test_an_abstract_socket_address_is_understood() -> None:
    name = f"antiphon-test-{os.getpid()}"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind("\0" + name)
    try:
        SystemdNotifier({"NOTIFY_SOCKET": "@" + name}).ready("up")
        listener.settimeout(5.0)
        assert listener.recv(4096) == b"READY=1\nSTATUS=up"
    finally:
        listener.close()


def test_without_systemd_nothing_is_sent_and_no_thread_runs() -> None:
    notifier = SystemdNotifier({})
    assert not notifier.enabled and notifier.watchdog_s is None
    service = SystemdService(lambda: True, lambda: "x", notifier)
    service.start()
    assert service._thread is None
    service.stop()


def test_a_watchdog_meant_for_another_process_is_ignored() -> None:
    environ = {"NOTIFY_SOCKET": "/nonexistent", "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}
    assert SystemdNotifier(environ).watchdog_s is None
    environ["WATCHDOG_PID"] = str(os.getpid())
    assert SystemdNotifier(environ).watchdog_s == 1.0


def test_a_vanished_notify_socket_is_not_fatal(tmp_path: Path) -> None:
    notifier = SystemdNotifier({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    notifier.ready("up")  # logged once, never raised: systemd going away must not stop music
    notifier.stopping()


# The unit files ----------------------------------------------------------------------------


def unit_values(unit: Path, key: str) -> list[str]:
    return [
        line.split("=", 1)[1].strip()
        for line in unit.read_text().splitlines()
        if line.startswith(f"{key}=")
    ]


def analyze(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", "verify", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )


def user_home(tmp_path: Path) -> dict[str, str]:
    """A home with antiphon where the user unit expects it, and a runtime folder for the
    user manager that systemd-analyze starts to check the unit."""
    home = tmp_path / "home"
    (home / ".local" / "bin").mkdir(parents=True)
    (home / ".local" / "bin" / "antiphon").symlink_to(ANTIPHON)
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    return {**os.environ, "HOME": str(home), "XDG_RUNTIME_DIR": str(runtime)}


@needs_analyze
def test_the_user_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    result = analyze(["--user", str(USER_UNIT)], user_home(tmp_path))
    # systemd-analyze only warns (status 0) about unknown keys and bad values: refuse both.
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


@needs_analyze
def test_the_system_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    # Its ExecStart, /opt/antiphon/.venv/bin/antiphon, is not on this machine and a test may
    # not make it: the copy checked differs from the unit only in that path.
    (exec_start,) = unit_values(SYSTEM_UNIT, "ExecStart")
    assert exec_start.startswith("/opt/antiphon/.venv/bin/antiphon run --config /etc/antiphon/")
    unit = tmp_path / "antiphon.service"
    unit.write_text(
        SYSTEM_UNIT.read_text().replace("/opt/antiphon/.venv/bin/antiphon", str(ANTIPHON))
    )
    result = analyze([str(unit)], dict(os.environ))
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


@needs_analyze
def test_a_broken_unit_is_caught(tmp_path: Path) -> None:
    broken = tmp_path / "antiphon.service"
    broken.write_text(USER_UNIT.read_text().replace("Type=notify", "Type=notifi"))
    result = analyze(["--user", str(broken)], user_home(tmp_path))
    assert "Failed to parse service type" in result.stderr


def test_both_units_are_notify_services_that_restart_and_have_a_watchdog() -> None:
    for unit in (USER_UNIT, SYSTEM_UNIT):
        assert unit_values(unit, "Type") == ["notify"]
        assert unit_values(unit, "Restart") == ["on-failure"]
        # Not after a configuration error (or a bad command line): only a change fixes those.
        (prevent,) = unit_values(unit, "RestartPreventExitStatus")
        assert set(prevent.split()) == {str(EXIT_CONFIG), "2"}
        assert str(EXIT_UNAVAILABLE) not in prevent.split()
        # A healthy performer turns every IDLE_WAIT_S; a hung one is caught within the timeout.
        assert IDLE_WAIT_S < TURNING_WITHIN_S <= float(unit_values(unit, "WatchdogSec")[0])
        assert int(unit_values(unit, "Nice")[0]) < 0


# The daemon as the unit runs it ------------------------------------------------------------


def unit_command(home: Path, config_home: Path) -> list[str]:
    """The user unit's ExecStart, with the specifiers systemd would fill in."""
    (exec_start,) = unit_values(USER_UNIT, "ExecStart")
    assert exec_start[0] not in "-@:+!", "the test does not handle ExecStart prefixes"
    filled = exec_start.replace("%h", str(home)).replace("%E", str(config_home))
    assert "%" not in filled, f"a specifier the test does not fill: {filled}"
    return shlex.split(filled)


def wait_for_connection(server: JackServer, source: str, destination: str) -> bool:
    """Whether JACK shows ``source`` connected to ``destination`` within 5 s (a message sent
    before the graph has the connection is lost)."""
    deadline_s = time.monotonic() + 5.0
    while time.monotonic() < deadline_s:
        if destination in server.connections(source):
            return True
        time.sleep(0.05)
    return False


@pytest.mark.jack
@pytest.mark.system
def test_the_daemon_started_as_the_unit_starts_it_stops_cleanly_on_sigterm(
    tmp_path: Path, jack_server: JackServer, notify_socket: NotifySocket, call_phrase: list[Timed]
) -> None:
    env = user_home(tmp_path)
    home, config_home = Path(env["HOME"]), tmp_path / "config"
    sessions = tmp_path / "sessions"
    config = config_home / "antiphon" / "antiphon.toml"
    config.parent.mkdir(parents=True)
    config.write_text(
        'midi_api = "jack"\nport_name = "AntiphonUnit"\nosc_port = 0\nseed = 5\n'
        f'reply_min_notes = 8\nrecord = "{sessions}"\n'
    )
    env.update(
        jack_server.env(),
        NOTIFY_SOCKET=str(notify_socket.path),
        WATCHDOG_USEC="1000000",
        PYTHONUNBUFFERED="1",
    )
    log_path = tmp_path / "daemon.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            unit_command(home, config_home),
            cwd=home,  # a user manager starts services in the home folder
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    probe = None
    try:
        ready = notify_socket.wait_for("READY", READY_WITHIN_S)
        assert ready is not None, log_path.read_text()
        assert ready["STATUS"].startswith("listening")
        names = virtual_port_names("jack", "AntiphonUnit")
        assert jack_server.wait_for_port(names.output_listed)
        probe = MidiProbe("jack", names.input_listed, names.output_listed, name="UnitProbe")
        probe_names = virtual_port_names("jack", "UnitProbe")
        assert wait_for_connection(jack_server, probe_names.output_listed, names.input_listed)
        probe.play(call_phrase)
        assert probe.wait_until(lambda received: len(note_ons(received)) >= 2, 20.0), (
            log_path.read_text()
        )
        # In the middle of the reply, as `systemctl stop` does it.
        process.send_signal(signal.SIGTERM)
        sent_s = time.monotonic()
        code = process.wait(timeout=STOP_WITHIN_S + 5.0)
        stopped_after_s = time.monotonic() - sent_s
        time.sleep(0.2)  # the last note-offs cross the JACK graph
        received = probe.received()
    finally:
        if probe is not None:
            probe.close()
        if process.poll() is None:
            process.kill()
            process.wait()
    log_text = log_path.read_text()
    assert code == 0, log_text
    assert stopped_after_s < STOP_WITHIN_S, log_text
    assert sounding_notes(received) == set()
    assert "Traceback" not in log_text
    notify_socket.drain()
    assert any("WATCHDOG" in m for m in notify_socket.messages)
    assert "STOPPING" in notify_socket.messages[-1]
    # The recording: the call whole, and the reply exactly as the listener heard it, the
    # note-offs and All Notes Off sent on SIGTERM included (the recorder stops after the
    # performer has closed): every note Antiphon started, Antiphon ended, in the file too.
    (recording,) = sessions.glob("*.mid")
    player, antiphon = mido.MidiFile(recording).tracks
    assert sum(m.type == "note_on" and m.velocity > 0 for m in player) == 14
    recorded = [m for m in antiphon if not m.is_meta]
    assert len(note_ons([Timed(0.0, m) for m in recorded])) >= 2
    assert [m.bytes() for m in recorded] == [t.message.bytes() for t in received]
    assert recorded[-1].is_cc(123)  # the performer's last message on the way out
    assert sounding_notes([Timed(0.0, m) for m in recorded]) == set()
