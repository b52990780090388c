"""Telling systemd how the daemon is doing: the sd_notify protocol, with no dependency.

Under a ``Type=notify`` unit systemd passes ``NOTIFY_SOCKET``, a datagram socket that takes
lines such as ``READY=1``; with ``WatchdogSec=`` it also passes ``WATCHDOG_USEC`` and restarts
the daemon when no ``WATCHDOG=1`` comes within that time. Without ``NOTIFY_SOCKET`` (started
by hand, by a test, by another supervisor) every call here does nothing.

The watchdog pings only while the daemon is healthy, as a ``healthy()`` callable says (the
engine thread still turning), so systemd restarts a daemon that hangs, not just one that dies.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)


class SystemdNotifier:
    """Sends sd_notify messages to ``NOTIFY_SOCKET`` when there is one."""

    def __init__(self, environ: Mapping[str, str] = os.environ) -> None:
        address = environ.get("NOTIFY_SOCKET", "")
        self._address = "\0" + address[1:] if address.startswith("@") else address
        self._socket: socket.socket | None = None
        if self._address:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._failed = False
        self.watchdog_s = _watchdog_interval_s(environ)

    @property
    def enabled(self) -> bool:
        return self._socket is not None

    def notify(self, *fields: str) -> None:
        """Send ``KEY=value`` fields in one datagram; a failure is logged once, never raised."""
        if self._socket is None:
            return
        try:
            self._socket.sendto("\n".join(fields).encode(), self._address)
        except OSError as err:
            if not self._failed:
                log.warning("cannot notify systemd at %s: %s", self._address, err)
            self._failed = True

    def ready(self, status: str) -> None:
        self.notify("READY=1", f"STATUS={status}")

    def stopping(self) -> None:
        self.notify("STOPPING=1", "STATUS=stopping: releasing notes")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def _watchdog_interval_s(environ: Mapping[str, str]) -> float | None:
    """Seconds within which systemd wants a ping, if it watches this process; else None."""
    pid = environ.get("WATCHDOG_PID")
    if pid is not None and pid != str(os.getpid()):
        return None  # meant for another process (we were started by the main one)
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 1e6 if usec > 0 else None


class SystemdService:
    """The daemon's side of a ``Type=notify`` unit: ready, watchdog pings, status, stopping.

    ``healthy()`` is asked before each ping (at half the watchdog interval); ``describe()``
    gives the one-line status ``systemctl status antiphon`` shows, updated with each ping.
    Without ``NOTIFY_SOCKET`` it starts no thread and sends nothing.
    """

    def __init__(
        self,
        healthy: Callable[[], bool],
        describe: Callable[[], str],
        notifier: SystemdNotifier | None = None,
    ) -> None:
        self.notifier = notifier or SystemdNotifier()
        self._healthy = healthy
        self._describe = describe
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if not self.notifier.enabled:
            return
        self.notifier.ready(self._describe())
        interval_s = self.notifier.watchdog_s
        if interval_s is not None:
            self._thread = threading.Thread(
                target=self._ping, args=(interval_s / 2,), name="systemd-watchdog", daemon=True
            )
            self._thread.start()

    def _ping(self, every_s: float) -> None:
        said_unhealthy = False
        while not self._stop.wait(every_s):
            if self._healthy():
                self.notifier.notify("WATCHDOG=1", f"STATUS={self._describe()}")
                said_unhealthy = False
            elif not said_unhealthy:
                log.error("the performer has stopped turning; systemd will restart Antiphon")
                said_unhealthy = True

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.notifier.stopping()
        self.notifier.close()
