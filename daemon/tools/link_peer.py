"""A real Ableton Link peer in a process of its own, for the tests and ``antiphon bench``.

``python -m antiphon.daemon.tools.link_peer --tempo 100`` joins the Link session and answers
one line of JSON per line it reads on stdin:

- ``state``: ``{"peers", "tempo_bpm", "playing", "beat", "time_s"}`` (its beat at
  ``time_s``, a ``time.monotonic()`` reading; the same clock in every process on this
  machine; ``playing`` null until some peer started or stopped the transport);
- ``tempo BPM``: sets the session's tempo now, ``{"time_s"}`` when it did;
- ``time_at BEAT``: ``{"time_s"}`` when the session's beat ``BEAT`` falls;
- ``playing 1`` or ``playing 0``: starts or stops the session's transport now (start/stop
  sync), ``{"time_s"}``;
- ``quit``: leaves the session and exits.

:class:`LinkPeer` starts it and asks it; it is always stopped (a context manager).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from antiphon.daemon.musician.clocks.link_clock import LinkSession

QUANTUM = 4
PEER_STOP_WAIT_S = 5.0


class LinkPeerError(RuntimeError):
    """The peer process exited, or found no other peer in time."""


def serve(session: LinkSession, lines: TextIO, out: TextIO) -> None:
    """Answer each request line of ``lines`` on ``out`` until ``quit`` or the end."""
    for line in lines:
        words = line.split()
        if not words:
            continue
        command, now_s = words[0], time.monotonic()
        answer: dict[str, Any]
        if command == "state":
            answer = {
                "peers": session.peers,
                "tempo_bpm": session.tempo_bpm,
                "playing": session.transport(),
                "beat": session.beat_at(now_s, QUANTUM),
                "time_s": now_s,
            }
        elif command == "tempo":
            session.set_tempo(float(words[1]), now_s)
            answer = {"time_s": now_s}
        elif command == "playing":
            session.set_playing(words[1] == "1", now_s)
            answer = {"time_s": now_s}
        elif command == "time_at":
            answer = {"time_s": session.time_at(float(words[1]), QUANTUM)}
        elif command == "quit":
            return
        else:
            answer = {"error": f"unknown request {command!r}"}
        out.write(json.dumps(answer) + "\n")
        out.flush()


class LinkPeer:
    """A Link peer process at ``tempo_bpm``; ask it with :meth:`ask`."""

    def __init__(self, tempo_bpm: float) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "antiphon.daemon.tools.link_peer", "--tempo", str(tempo_bpm)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def ask(self, request: str) -> dict[str, Any]:
        """One request (see the module docstring), its answer."""
        process = self._process
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(request + "\n")
        process.stdin.flush()
        line = process.stdout.readline()
        if not line:
            raise LinkPeerError(f"the Link peer exited (status {process.poll()})")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def wait_for_peers(self, timeout_s: float) -> bool:
        """Whether the peer saw another peer within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while self.ask("state")["peers"] == 0:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def stop(self) -> None:
        process = self._process
        if process.poll() is None:
            try:
                assert process.stdin is not None
                process.stdin.write("quit\n")
                process.stdin.flush()
                process.wait(PEER_STOP_WAIT_S)
            except (OSError, subprocess.TimeoutExpired):
                process.kill()
                process.wait()


@contextmanager
def link_peer(tempo_bpm: float) -> Iterator[LinkPeer]:
    """A Link peer process for the block, stopped after it whatever happens."""
    peer = LinkPeer(tempo_bpm)
    try:
        yield peer
    finally:
        peer.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tempo", type=float, default=120.0)
    args = parser.parse_args(argv)
    session = LinkSession(args.tempo)
    try:
        serve(session, sys.stdin, sys.stdout)
    finally:
        session.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
