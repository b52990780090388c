"""What the performer sees of a running daemon: a live terminal view, or status log lines.

``--tui`` on a terminal gives :class:`TerminalView`: a panel redrawn four times a second from
the performer's ``status()`` (parameters, listening or replying, last reaction latency, notes
in and out, dropped messages) with the latest log lines under it. Anywhere else (stdout a
file, a pipe, journald; or no ``--tui``) :class:`StatusLog` writes a ``status key=value ...``
log line when the status has changed, at most once per interval, so a night's log says how
it went and ``grep status`` finds it.

The status is read, never pushed: the view calls ``status()`` from its own thread, and the
performer's threads do nothing for it.
"""

from __future__ import annotations

import collections
import logging
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TextIO

log = logging.getLogger(__name__)

StatusSource = Callable[[], Mapping[str, Any]]

REDRAW_S = 0.25
STATUS_LOG_S = 60.0  # plain log lines: a status line at most this often
TUI_FALLBACK_LOG_S = 10.0  # --tui without a terminal: more often, someone is watching
LOG_LINES_SHOWN = 8
PANEL_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
COUNTER_KEYS = ("notes_in", "notes_out", "replies", "dropped", "echoes")
HEADER_KEYS = ("state", "model")
HIDDEN_KEYS = frozenset({"phrase_end_s"})  # a monotonic clock reading
HIDE_CURSOR = "\x1b[?25l"
SHOW_CURSOR = "\x1b[?25h"
HOME = "\x1b[H"
CLEAR_LINE_END = "\x1b[K"
CLEAR_BELOW = "\x1b[J"
BOLD = "\x1b[1m"
RESET = "\x1b[0m"


def format_value(value: Any) -> str:
    """A status value as a short token: floats to 3 significant digits, none as '-'."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, list | tuple):
        return ",".join(format_value(v) for v in value) or "-"
    text = str(value)
    return text.replace(" ", "_") if text else "-"


def flatten_status(status: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """(key, value) leaves of a nested status, nested keys joined by dots; clock readings
    (``HIDDEN_KEYS``), which mean nothing to a reader, left out."""
    leaves: list[tuple[str, Any]] = []
    for key, value in status.items():
        name = f"{prefix}{key}"
        if key in HIDDEN_KEYS:
            continue
        if isinstance(value, Mapping):
            leaves.extend(flatten_status(value, name + "."))
        else:
            leaves.append((name, value))
    return leaves


def status_sections(status: Mapping[str, Any]) -> list[tuple[str, list[tuple[str, Any]]]]:
    """The status in reading order: counters, each nested table, then the parameters.

    A top-level None is a table with nothing in it yet (``last_reply`` before any reply).
    """
    counters = [(key, status[key]) for key in COUNTER_KEYS if key in status]
    sections = [("counters", counters)]
    for key, value in status.items():
        if isinstance(value, Mapping) or value is None:
            sections.append((str(key), flatten_status(value) if value else []))
    parameters = [
        (key, value)
        for key, value in status.items()
        if key not in (*COUNTER_KEYS, *HEADER_KEYS)
        and not isinstance(value, Mapping)
        and value is not None
    ]
    sections.append(("parameters", parameters))
    return sections


def status_line(status: Mapping[str, Any]) -> str:
    """``key=value`` pairs of the whole status on one line, for the log."""
    pairs = [(key, status[key]) for key in HEADER_KEYS if key in status]
    for name, leaves in status_sections(status):
        if name in ("counters", "parameters"):
            pairs.extend(leaves)
        else:
            pairs.extend((f"{name}.{key}", value) for key, value in leaves)
    return " ".join(f"{key}={format_value(value)}" for key, value in pairs)


def summary(status: Mapping[str, Any]) -> str:
    """A few words for ``systemctl status``: the state and the counts."""
    return (
        f"{status.get('state', 'running')}: {status.get('notes_in', 0)} notes in, "
        f"{status.get('notes_out', 0)} out, {status.get('replies', 0)} replies, "
        f"{status.get('dropped', 0)} dropped"
    )


def _pairs_wrapped(pairs: Iterable[tuple[str, Any]], indent: int, width: int) -> list[str]:
    lines: list[str] = []
    current = ""
    for key, value in pairs:
        item = f"{key} {format_value(value)}"
        if current and indent + len(current) + 3 + len(item) > width:
            lines.append(current)
            current = item
        else:
            current = f"{current}   {item}" if current else item
    if current:
        lines.append(current)
    return [" " * indent + line if i else line for i, line in enumerate(lines)]


def render_panel(
    status: Mapping[str, Any], log_lines: Iterable[str], width: int, uptime_s: float
) -> list[str]:
    """The terminal view's lines, at most ``width`` characters each (pure: tested as text).

    First what Antiphon is doing (``state``), for how long, with which model; then the
    counters (notes in and out, replies, dropped input), each nested table (the last reply's
    reaction time and timing) on lines of its own, the parameters, and the latest log lines.
    """
    hours, rest = divmod(int(uptime_s), 3600)
    state = str(status.get("state", "running")).upper()
    header = f"ANTIPHON  {state}  up {hours:d}:{rest // 60:02d}:{rest % 60:02d}"
    if status.get("model"):
        header += f"  model {Path(str(status['model'])).name}"
    sections = status_sections(status)
    label_width = max(len(name) for name, _ in sections)
    lines = [header, ""]
    for name, pairs in sections:
        head = name.ljust(label_width) + "  "
        wrapped = _pairs_wrapped(pairs, len(head), width) or ["-"]
        lines.append(head + wrapped[0])
        lines.extend(wrapped[1:])
    lines += ["", "log"]
    lines.extend("  " + line for line in log_lines)
    return [line[:width] for line in lines]


class _RecentLines(logging.Handler):
    """Keeps the last few log records for the panel, with the time of day only."""

    def __init__(self, size: int = LOG_LINES_SHOWN) -> None:
        super().__init__()
        self.lines: collections.deque[str] = collections.deque(maxlen=size)
        self.setFormatter(logging.Formatter(PANEL_LOG_FORMAT, "%H:%M:%S"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record).splitlines()[0])


class TerminalView:
    """Redraws the status panel on a terminal about four times a second, from its own thread.

    While it runs, log lines that would have gone to the same terminal are shown in the
    panel instead of scrolling it away; on :meth:`stop` the last frame stays on screen and
    logging goes back to the terminal.
    """

    def __init__(self, status: StatusSource, stream: TextIO, redraw_s: float = REDRAW_S) -> None:
        self._status = status
        self._stream = stream
        self._redraw_s = redraw_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="status-view", daemon=True)
        self._started_s = time.monotonic()
        self._moved: list[logging.Handler] = []
        self._recent: _RecentLines | None = None

    def start(self) -> None:
        root = logging.getLogger()
        on_terminal: list[logging.Handler] = [
            h
            for h in root.handlers
            if isinstance(h, logging.StreamHandler) and getattr(h.stream, "isatty", bool)()
        ]
        self._recent = _RecentLines()
        for handler in on_terminal:
            root.removeHandler(handler)
        self._moved = on_terminal
        root.addHandler(self._recent)
        self._stream.write(HIDE_CURSOR + "\x1b[2J")
        self._thread.start()

    def _run(self) -> None:
        while True:
            self.draw()
            if self._stop.wait(self._redraw_s):
                return

    def draw(self) -> None:
        width = shutil.get_terminal_size().columns
        lines = render_panel(
            self._status(),
            self._recent.lines if self._recent else (),
            width,
            time.monotonic() - self._started_s,
        )
        lines[0] = BOLD + lines[0] + RESET
        frame = HOME + "".join(line + CLEAR_LINE_END + "\n" for line in lines) + CLEAR_BELOW
        self._stream.write(frame)
        self._stream.flush()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self._stream.write(SHOW_CURSOR)
        self._stream.flush()
        root = logging.getLogger()
        if self._recent is not None:
            root.removeHandler(self._recent)
        for handler in self._moved:
            root.addHandler(handler)
        log.info("status %s", status_line(self._status()))


class StatusLog:
    """A ``status key=value ...`` log line whenever the status changed, at most every
    ``interval_s``, and one at stop."""

    def __init__(self, status: StatusSource, interval_s: float = STATUS_LOG_S) -> None:
        self._status = status
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="status-log", daemon=True)
        self._last = ""

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.log_if_changed()

    def log_if_changed(self) -> None:
        line = status_line(self._status())
        if line != self._last:
            log.info("status %s", line)
            self._last = line

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.log_if_changed()


def make_status_view(
    tui: bool, status: StatusSource, stream: TextIO = sys.stdout
) -> TerminalView | StatusLog:
    """The terminal view when asked for and stdout is a terminal; status log lines otherwise."""
    if tui and stream.isatty():
        return TerminalView(status, stream)
    if tui:
        log.info("stdout is not a terminal: status goes to the log instead of a live view")
    return StatusLog(status, TUI_FALLBACK_LOG_S if tui else STATUS_LOG_S)
