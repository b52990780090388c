"""Log lines: plain text, one event per line, the same columns everywhere.

``2025-05-01 21:30:05.123 WARNING antiphon.daemon.midi.ports: MIDI input 'KeyStep' is gone; ...``:
a time,
the level, the module, the message (facts in it as ``key=value`` where there are several),
so ``grep WARNING`` or ``grep status`` finds what it should. Under systemd, where stderr is
the journal, the time is left to journald and each line starts with its syslog priority
(``<4>`` for a warning), so ``journalctl --user -u antiphon -p warning`` honours the levels.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import TextIO

PLAIN_FORMAT = "%(asctime)s.%(msecs)03d %(levelname)s %(name)s: %(message)s"
JOURNAL_FORMAT = "%(levelname)s %(name)s: %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
SYSLOG_PRIORITY = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}


def writes_to_journal(stream: TextIO, environ: Mapping[str, str] = os.environ) -> bool:
    """Whether ``stream`` is the systemd journal (``JOURNAL_STREAM`` names its device:inode)."""
    try:
        device, inode = (int(part) for part in environ["JOURNAL_STREAM"].split(":"))
        info = os.fstat(stream.fileno())
    except (KeyError, ValueError, OSError):
        return False
    return (info.st_dev, info.st_ino) == (device, inode)


class JournalFormatter(logging.Formatter):
    """Prefixes each line with its syslog priority, which journald reads as the level."""

    def format(self, record: logging.LogRecord) -> str:
        priority = SYSLOG_PRIORITY.get(record.levelno, 6)
        return f"<{priority}>" + super().format(record).replace("\n", f"\n<{priority}>")


def configure_logging(level: str, stream: TextIO = sys.stderr) -> None:
    """Log at ``level`` (debug, info, warning, error) to ``stream``, in the format above."""
    handler = logging.StreamHandler(stream)
    if writes_to_journal(stream):
        handler.setFormatter(JournalFormatter(JOURNAL_FORMAT))
    else:
        handler.setFormatter(logging.Formatter(PLAIN_FORMAT, DATE_FORMAT))
    logging.basicConfig(level=getattr(logging, level.upper()), handlers=[handler], force=True)
