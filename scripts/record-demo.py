"""Record a short real session and draw it: docs/piano-roll.png, in docs/on-stage.md.

Starts a private JACK server (``jackd -d dummy``, no sound card needed) and ``antiphon run
--record`` on it, plays three phrases into it (the hand-played call from the tests, then two
generated ones), waits for each reply to finish, stops the daemon with SIGTERM as systemd
would, and runs ``antiphon plot`` on the recording.

    .venv/bin/python scripts/record-demo.py [--model M.onnx] [--out docs/piano-roll.png]
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from antiphon.daemon.midi.port_names import virtual_port_names
from antiphon.daemon.tools.jack_server import SERVER_ENV, JackServer
from antiphon.daemon.tools.probe import DaemonProcess, MidiProbe, human_phrase, load_phrase

ROOT = Path(__file__).resolve().parent.parent
CALL = ROOT / "tests" / "data" / "call.mid"
# The line antiphon.daemon.stage.live logs when a reply has finished.
REPLY_MARK = "antiphon.daemon.stage.live: reply "


def wait_for_replies(daemon: DaemonProcess, count: int, timeout_s: float = 15.0) -> None:
    """Until the daemon has logged ``count`` finished replies (one ``reply ...`` line each)."""
    deadline_s = time.monotonic() + timeout_s
    while time.monotonic() < deadline_s:
        if sum(REPLY_MARK in line for line in daemon.lines) >= count:
            time.sleep(0.5)  # a breath before the next phrase
            return
        time.sleep(0.1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="the model to play with (default: the shipped one)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "piano-roll.png")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    sessions = Path(tempfile.mkdtemp(prefix="antiphon-demo-"))
    run_args = ["--midi-api", "jack", "--record", str(sessions), "--osc-port", "0"]
    run_args += ["--seed", str(args.seed), "--reply-max-s", "4", "--phrase-gap", "0.4"]
    if args.model:
        run_args += ["--model", args.model]
    with JackServer() as server:
        os.environ[SERVER_ENV] = server.name
        daemon = DaemonProcess(run_args, env=server.env()).start(ready_timeout_s=60)
        names = virtual_port_names("jack", "Antiphon")
        server.wait_for_port(names.input_listed)
        probe = MidiProbe("jack", names.input_listed, names.output_listed, name="Demo")
        time.sleep(0.5)  # the connections reach the JACK graph
        rng = random.Random(args.seed)
        try:
            phrases = (load_phrase(CALL), human_phrase(rng, 10), human_phrase(rng, 8))
            for count, phrase in enumerate(phrases, start=1):
                probe.play(phrase)
                wait_for_replies(daemon, count)
        finally:
            probe.close()
            code = daemon.terminate()
    print(daemon.log())
    if code != 0:
        print(f"antiphon run exited with status {code}", file=sys.stderr)
        return 1
    (recording,) = sessions.glob("*.mid")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "antiphon.daemon.cli", "plot", str(recording)]
    command += ["-o", str(args.out)]
    return subprocess.run(command, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
