"""Live status and log lines: the terminal view, its fallback, and the log format."""

from __future__ import annotations

import io
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from antiphon.daemon.stage.logs import configure_logging
from antiphon.daemon.stage.status_view import (
    StatusLog,
    TerminalView,
    make_status_view,
    render_panel,
    status_line,
)

STATUS: dict[str, Any] = {
    "temperature": 0.8,
    "noise": 0.1,
    "mode": "call_response",
    "thru": False,
    "state": "replying",
    "model": "/opt/models/antiphon-piano.onnx",
    "notes_in": 120,
    "notes_out": 98,
    "dropped": 3,
    "replies": 7,
    "last_reply": {"phrase_end_s": 81234.5, "reaction_ms": 3.214, "notes": 12},
}


def test_the_panel_says_what_antiphon_does_and_fits_the_terminal() -> None:
    lines = render_panel(
        STATUS, ["WARNING antiphon.daemon.midi.ports: gone"], width=60, uptime_s=3725
    )
    assert lines[0] == "ANTIPHON  REPLYING  up 1:02:05  model antiphon-piano.onnx"
    text = "\n".join(lines)
    for shown in ("notes_in 120", "notes_out 98", "dropped 3", "reaction_ms 3.21"):
        assert shown in text
    assert "temperature 0.8" in text and "thru no" in text
    assert "81234" not in text  # a clock reading means nothing to the performer
    assert lines[-1] == "  WARNING antiphon.daemon.midi.ports: gone"
    assert all(len(line) <= 60 for line in lines)


def test_the_status_line_is_key_value_pairs_in_reading_order() -> None:
    line = status_line(STATUS)
    assert line.startswith("state=replying model=/opt/models/antiphon-piano.onnx notes_in=120")
    assert "last_reply.reaction_ms=3.21" in line.split()
    assert "temperature=0.8" in line.split()
    assert status_line({**STATUS, "last_reply": None}).count("last_reply") == 0


def test_status_lines_are_logged_only_when_something_changed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    status = dict(STATUS)
    view = StatusLog(lambda: status, interval_s=3600)
    with caplog.at_level(logging.INFO, logger="antiphon.daemon.stage.status_view"):
        view.log_if_changed()
        view.log_if_changed()
        status["notes_in"] = 121
        view.log_if_changed()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert "notes_in=120" in lines[0] and "notes_in=121" in lines[1]
    assert all(line.startswith("status state=") for line in lines)


def test_without_a_terminal_the_view_falls_back_to_log_lines() -> None:
    assert isinstance(make_status_view(True, lambda: STATUS, io.StringIO()), StatusLog)
    assert isinstance(make_status_view(False, lambda: STATUS, io.StringIO()), StatusLog)


@pytest.fixture
def root_logging() -> Iterator[None]:
    """Put the root logger back as it was (pytest's capture handlers included)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


@pytest.fixture
def terminal() -> Iterator[tuple[io.TextIOWrapper, int]]:
    """A real pseudo-terminal: the view's stream, and the end a terminal emulator reads."""
    leader, follower = os.openpty()
    stream = open(follower, "w", encoding="utf-8", closefd=True)  # noqa: SIM115
    try:
        yield stream, leader
    finally:
        stream.close()
        os.close(leader)


def read_all(fd: int) -> str:
    os.set_blocking(fd, False)
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode()


@pytest.mark.usefixtures("root_logging")
def test_on_a_terminal_the_view_redraws_and_takes_the_log_lines_into_the_panel(
    terminal: tuple[io.TextIOWrapper, int],
) -> None:
    stream, leader = terminal
    root = logging.getLogger()
    terminal_handler = logging.StreamHandler(stream)
    root.addHandler(terminal_handler)
    root.setLevel(logging.INFO)
    try:
        view = make_status_view(True, lambda: STATUS, stream)
        assert isinstance(view, TerminalView)
        view.start()
        assert terminal_handler not in root.handlers
        logging.getLogger("antiphon.daemon.midi.ports").warning("MIDI input 'KeyStep' is gone")
        view.draw()
        view.stop()
        assert terminal_handler in root.handlers  # logging goes back to the terminal
    finally:
        root.removeHandler(terminal_handler)
    screen = read_all(leader)
    assert "\x1b[H" in screen and "ANTIPHON  REPLYING" in screen
    # In the panel: indented, with the time of day.
    assert re.search(
        r"\n  \d\d:\d\d:\d\d WARNING antiphon.daemon.midi.ports: MIDI input 'KeyStep' is gone",
        screen,
    )
    assert "\x1b[?25h" in screen  # the cursor is back
    assert "status state=replying" in screen  # the last status, logged to the terminal


@pytest.mark.usefixtures("root_logging")
def test_log_lines_have_a_time_a_level_and_a_module(tmp_path: Path) -> None:
    path = tmp_path / "log.txt"
    with open(path, "w") as stream:
        configure_logging("warning", stream)
        logging.getLogger("daemon.test").info("not shown: below the level")
        logging.getLogger("daemon.test").warning("port gone name=%s", "KeyStep")
    (line,) = path.read_text().splitlines()
    date, time, level, rest = line.split(" ", 3)
    assert len(date) == 10 and len(time) == 12  # 2025-05-01 21:30:05.123
    assert (level, rest) == ("WARNING", "daemon.test: port gone name=KeyStep")


@pytest.mark.usefixtures("root_logging")
def test_under_journald_lines_carry_the_syslog_level_and_no_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "journal.txt"
    with open(path, "w") as stream:
        info = os.fstat(stream.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{info.st_dev}:{info.st_ino}")
        configure_logging("info", stream)
        logging.getLogger("daemon.test").info("ready: listening")
        logging.getLogger("daemon.test").error("model gone")
    assert path.read_text().splitlines() == [
        "<6>INFO daemon.test: ready: listening",
        "<3>ERROR daemon.test: model gone",
    ]
