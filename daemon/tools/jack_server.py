"""A private JACK server for tests and the benchmark: ``jackd -S --no-realtime -d dummy``.

Synchronous mode (``-S``): the server waits for every client to finish its cycle before it
goes on, so a client that is late (a non-realtime machine, a Python thread that needed the GIL)
makes the cycle late instead of losing that cycle's MIDI, as the default asynchronous mode
does. Measured here (2 shared cores, non-realtime): a Python client sending bursts while a busy
thread shared its process lost 18 to 24 of 2,400 messages to a listener with the asynchronous
server, none with ``-S``. The price is in the client timeout (``-t``): a client that dies
without closing (SIGKILL) holds up the next client's activation about 30 timeouts long
(10 to 15 s at the default 500 ms, 1 to 1.5 s at 50 ms), so the server is started with
``CLIENT_TIMEOUT_MS``.

A dummy-driver JACK server needs no sound card, so MIDI ports, the daemon and a client can be
wired together for real on any machine (a CI box, a container). Each server gets a unique
name; a process picks it through ``JACK_DEFAULT_SERVER`` (libjack reads it on every client
open), so tests never touch a JACK server someone else is running.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

SERVER_ENV = "JACK_DEFAULT_SERVER"
DEFAULT_SAMPLE_RATE = 48_000
DEFAULT_PERIOD_FRAMES = 128
CLIENT_TIMEOUT_MS = 50
# A realtime server's priority, as an audio set-up has it (docs/service.md: JACK's and
# PipeWire's audio threads at 70 to 95, the daemon's at 20, under them). jackd's own default,
# 10, put its cycle and its clients' process threads (5) under the daemon's performer, which
# could then hold a cycle up while the model ran.
REALTIME_PRIORITY = 70
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0


class JackServerError(RuntimeError):
    """The JACK server could not be started or its tools could not be run."""


def jackd_available() -> bool:
    """Whether ``jackd`` and the client tools this module uses are installed."""
    return all(shutil.which(tool) for tool in ("jackd", "jack_wait", "jack_connect", "jack_lsp"))


def server_running(server_name: str | None = None) -> bool:
    """Whether a JACK server (``server_name``, else the default one) answers."""
    if shutil.which("jack_wait") is None:
        return False
    command = ["jack_wait", "--check"]
    if server_name:
        command += ["--server", server_name]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    return result.stdout.strip() == "running"


class JackServer:
    """A ``jackd -d dummy`` process with a unique name, started and stopped by its owner.

    Use as a context manager, or call :meth:`start` and :meth:`stop` (which is safe to call
    twice and kills the server if it does not exit in time). :meth:`env` gives an environment
    in which child processes (the daemon) talk to this server.
    """

    def __init__(
        self,
        sample_rate: int = DEFAULT_SAMPLE_RATE,
        period_frames: int = DEFAULT_PERIOD_FRAMES,
        name: str | None = None,
        client_timeout_ms: int = CLIENT_TIMEOUT_MS,
        realtime: bool = False,
    ) -> None:
        self.sample_rate = sample_rate
        self.period_frames = period_frames
        self.client_timeout_ms = client_timeout_ms
        self.realtime = realtime  # its cycle and its clients' process threads at SCHED_FIFO
        self.name = name or f"antiphon-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._process: subprocess.Popen[bytes] | None = None
        self._log_dir = Path(tempfile.mkdtemp(prefix="antiphon-jack-"))
        self.log_path = self._log_dir / "jackd.log"

    @property
    def period_s(self) -> float:
        return self.period_frames / self.sample_rate

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ if base is None else base)
        env[SERVER_ENV] = self.name
        return env

    def start(self) -> JackServer:
        if not jackd_available():
            raise JackServerError("jackd is not installed (Debian: apt-get install jackd2)")
        # The dummy driver sleeps between cycles; its default sleep is for 1024 frames, so it
        # must be told the period length or the cycle would be 8 times too long.
        wait_us = round(self.period_s * 1e6)
        scheduling = (
            ["--realtime", "--realtime-priority", str(REALTIME_PRIORITY)]
            if self.realtime
            else ["--no-realtime"]
        )
        command = [
            "jackd", "--sync", "--timeout", str(self.client_timeout_ms), *scheduling,
            "--name", self.name,
            "-d", "dummy", "-r", str(self.sample_rate), "-p", str(self.period_frames),
            "-w", str(wait_us), "-C", "0", "-P", "0",
        ]  # fmt: skip
        with open(self.log_path, "wb") as log:
            self._process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        try:
            self._wait_until_up()
        except JackServerError:
            self.stop()
            raise
        return self

    def _wait_until_up(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise JackServerError(
                    f"jackd exited with status {self._process.returncode}: {self._log_tail()}"
                )
            if server_running(self.name):
                return
            time.sleep(0.05)
        raise JackServerError(f"jackd did not come up in {START_TIMEOUT_S:g} s: {self._log_tail()}")

    def xruns(self) -> int:
        """Cycles the server reported as overrun so far (a late client can lose MIDI events)."""
        try:
            return self.log_path.read_text(errors="replace").count("XRun =")
        except OSError:
            return 0

    def _log_tail(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(lines[-3:]) or "(empty log)"

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        # Clients that died with the server can leave their semaphores behind; nobody else
        # can use a server name this unique.
        for leftover in Path("/dev/shm").glob(f"jack_sem.*_{self.name}_*"):
            leftover.unlink(missing_ok=True)
        shutil.rmtree(self._log_dir, ignore_errors=True)

    def __enter__(self) -> JackServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @contextmanager
    def as_default(self) -> Iterator[JackServer]:
        """Inside, this process's JACK clients and the processes it starts meet on this
        server (``SERVER_ENV`` names it); after, the server named before is named again."""
        previous = os.environ.get(SERVER_ENV)
        os.environ[SERVER_ENV] = self.name
        try:
            yield self
        finally:
            if previous is None:
                os.environ.pop(SERVER_ENV, None)
            else:
                os.environ[SERVER_ENV] = previous

    # Graph tools ---------------------------------------------------------------------------

    def _tool(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [args[0], "--server", self.name, *args[1:]],
            capture_output=True,
            text=True,
            check=False,
            env=self.env(),
        )

    def connect(self, source: str, destination: str) -> None:
        """Connect two ports by their full JACK names (``client:port``)."""
        result = self._tool("jack_connect", source, destination)
        if result.returncode != 0:
            raise JackServerError(
                f"cannot connect {source} -> {destination}: {result.stderr.strip()}"
            )

    def ports(self) -> list[str]:
        """Full names of the ports on the server."""
        result = self._tool("jack_lsp")
        return [line.strip() for line in result.stdout.splitlines() if line.strip()]

    def connections(self, port: str) -> list[str]:
        """The ports connected to ``port``."""
        result = self._tool("jack_lsp", "--connections", port)
        connected: list[str] = []
        current = None
        for line in result.stdout.splitlines():
            if not line.startswith((" ", "\t")):
                current = line.strip()
            elif current == port:
                connected.append(line.strip())
        return connected

    def wait_for_port(self, port: str, timeout_s: float = 5.0) -> bool:
        """Whether ``port`` appears on the server within ``timeout_s`` (checked every 50 ms)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if port in self.ports():
                return True
            time.sleep(0.05)
        return False
