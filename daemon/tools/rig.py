"""The daemon on a JACK server with a probe on its ports, for the soak and the fuzz run.

:class:`LiveRig` starts what is missing (its own synchronous ``jackd -d dummy`` when no JACK
server runs), ``antiphon run`` as a process and a :class:`~antiphon.daemon.tools.probe.MidiProbe`
connected to it, and undoes all of it in reverse, whatever happened.
"""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path
from types import TracebackType
from typing import Any

from antiphon.daemon.midi.port_names import virtual_port_names
from antiphon.daemon.musician.hearing.turns import AUTO_PHRASE_GAP_S
from antiphon.daemon.tools.bench_report import PHRASE_GAP_S
from antiphon.daemon.tools.jack_server import SERVER_ENV, JackServer, server_running
from antiphon.daemon.tools.probe import DaemonProcess, MidiProbe

PORT_NAME = "AntiphonRig"


def free_udp_port() -> int:
    """A UDP port nobody listens on now (for the daemon's OSC server)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def reaction_run_args(model: Path, seed: int, reply_max_s: float, turns: str = "gap") -> list[str]:
    """``antiphon run`` arguments for timing the reaction: the turn-taking asked for, with the
    bench's phrase gap (``turns`` gap) or the judge's longest wait (auto), and replies that
    start at once rather than on the next beat (the reaction, not where the beat puts it)."""
    phrase_gap_s = PHRASE_GAP_S if turns == "gap" else AUTO_PHRASE_GAP_S
    return [
        *("--model", str(model), "--seed", str(seed), "--phrase-gap", str(phrase_gap_s)),
        *("--turns", turns),
        *("--reply-max-s", str(reply_max_s), "--reply-start", "now"),
    ]


class LiveRig:
    """A JACK server (the running one, or its own), the daemon and a probe on its ports.

    Args:
        run_args: ``antiphon run`` arguments besides the MIDI system, port name and OSC port.
        period_frames: the period of its own server, when it starts one.
        log_level: the daemon's (``debug`` logs each reply message's planned time).
        realtime_priority: above 0, its own server runs realtime and the daemon under
            ``chrt --fifo`` at this priority (docs/service.md's realtime set-up).
    """

    def __init__(
        self,
        run_args: list[str],
        period_frames: int = 128,
        log_level: str = "debug",
        realtime_priority: int = 0,
    ) -> None:
        self.osc_port = free_udp_port()
        self._run_args = [
            *("--midi-api", "jack", "--port-name", PORT_NAME, "--osc-port", str(self.osc_port)),
            *run_args,
        ]
        self._period_frames = period_frames
        self._log_level = log_level
        self._realtime_priority = realtime_priority
        self._stack = contextlib.ExitStack()
        self.server: JackServer | None = None
        self.daemon: DaemonProcess | None = None
        self.probe: MidiProbe | None = None
        self.exit_code: int | None = None

    def __enter__(self) -> LiveRig:
        with self._stack as stack:
            if not server_running(os.environ.get(SERVER_ENV)):
                self.server = JackServer(
                    period_frames=self._period_frames, realtime=self._realtime_priority > 0
                ).start()
                stack.callback(self.server.stop)
                previous = os.environ.get(SERVER_ENV)
                os.environ[SERVER_ENV] = self.server.name
                stack.callback(_restore_env, previous)
            priority = self._realtime_priority
            self.daemon = DaemonProcess(
                self._run_args,
                env=dict(os.environ),
                log_level=self._log_level,
                launcher=["chrt", "--fifo", str(priority)] if priority > 0 else [],
            ).start()
            stack.callback(self.daemon.stop)
            names = virtual_port_names("jack", PORT_NAME)
            self.probe = MidiProbe("jack", names.input_listed, names.output_listed, "RigProbe")
            stack.callback(self.probe.close)
            self._stack = stack.pop_all()
        return self

    def terminate(self) -> int:
        """SIGTERM to the daemon; its exit status (the probe stays open to hear its last notes)."""
        assert self.daemon is not None
        self.exit_code = self.daemon.terminate()
        return self.exit_code

    def jack(self) -> dict[str, Any]:
        server = self.server
        return {
            "server": os.environ.get(SERVER_ENV, "default"),
            "started_by_rig": server is not None,
            "period_frames": server.period_frames if server else None,
            "realtime": server.realtime if server else None,
            "daemon_fifo_priority": self._realtime_priority or None,
            "xruns": server.xruns() if server else None,
        }

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stack.close()


def _restore_env(previous: str | None) -> None:
    if previous is None:
        os.environ.pop(SERVER_ENV, None)
    else:
        os.environ[SERVER_ENV] = previous
