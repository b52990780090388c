"""``python -m antiphon.daemon.tools.bench_duet``: the duet part live, through a real JACK
server.

Starts a private ``jackd -d dummy``, ``antiphon run --mode duet`` on it and a probe client;
the probe plays a player's part in real time (the notes at and above ``--split`` of a MIDI
file, or a steady line of eighths) and hears everything the daemon sends. Figures: the duet
notes that arrived while the player played, the notes left sounding once the part ended
(hanging), the timing error at the listener (each of the part's messages, its arrival at the
probe minus the time the daemon planned it for, from the daemon's debug log, matched as
``antiphon bench`` matches a reply's), the daemon's own schedule error (sent minus
planned, the mean and the maximum, from its "duet part" log lines), and its reaction to the
player's note-ons (each one's entering the model's state, p50, p99 and largest, from the same
lines).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

DUET_CHANNEL = 1  # the daemon's default duet_output_channel 2, from 0
SETTLE_S = 10.0
POLL_S = 0.05  # how often the bench looks at the daemon's log for the part's end
# A part's report, logged at its end: its schedule error, and its reaction to the player's
# note-ons (nan when it heard none).
PART_LINE = re.compile(
    r"duet part: .*schedule_error_mean_ms=([\d.]+) schedule_error_max_ms=([\d.]+) "
    r"heard=(\d+) reaction_p50_ms=(\S+) reaction_p99_ms=(\S+) reaction_max_ms=(\S+)"
)
PLANNED_LINE = re.compile(r"performer: duet messages planned=(\S*)")


def _parts_ended(lines: list[str]) -> int:
    """How many duet parts the daemon's log says have ended."""
    return sum(1 for line in lines if PART_LINE.search(line))


def player_part(source: Path | None, split: int, seconds: float) -> list[Any]:
    """The player's part as timed messages: ``source``'s notes at and above ``split`` (its
    first ``seconds``), or eighths at 120 bpm."""
    from antiphon.daemon.codec import Note
    from antiphon.daemon.tools.probe import Timed
    from antiphon.daemon.tools.turns_eval import midi_performances, note_messages

    if source is None:
        notes = [
            Note(72 + (0, 2, 4, 5, 7, 5, 4, 2)[i % 8], 0.25 * i, 0.25 * i + 0.22, 72)
            for i in range(int(seconds / 0.25))
        ]
    else:
        _, played = next(midi_performances(source, 1, "bench_duet"))
        start_s = min(n.onset_s for n in played)
        notes = [
            Note(n.pitch, n.onset_s - start_s, n.offset_s - start_s, n.velocity)
            for n in played
            if n.pitch >= split and n.onset_s - start_s < seconds
        ]
    return [Timed(t, m) for t, m in note_messages(notes)]


def bench(
    source: Path | None,
    split: int,
    seconds: float,
    realtime_priority: int = 0,
    output_ahead_ms: float = 0.0,
) -> dict[str, Any]:
    from antiphon.daemon.midi.port_names import virtual_port_names
    from antiphon.daemon.settings import PIANO_MODEL
    from antiphon.daemon.tools.bench_report import exact_timing, planned_notes
    from antiphon.daemon.tools.jack_server import SERVER_ENV, JackServer
    from antiphon.daemon.tools.probe import (
        DaemonProcess,
        MidiProbe,
        note_ons,
        sounding_notes,
        wait_for_quiet,
    )

    phrase = player_part(source, split, seconds)
    server = JackServer(realtime=realtime_priority > 0).start()
    name = f"Duet{os.getpid() % 10**5}"
    env = {**os.environ, SERVER_ENV: server.name}
    previous = os.environ.get(SERVER_ENV)
    os.environ[SERVER_ENV] = server.name
    daemon = DaemonProcess(
        [
            *("--midi-api", "jack", "--port-name", name, "--osc-port", "0", "--seed", "1"),
            *("--model", str(PIANO_MODEL), "--mode", "duet", "--split", str(split)),
            *("--output-ahead-ms", f"{output_ahead_ms:g}"),
        ],
        env=env,
        log_level="debug",  # the part's planned messages, logged once it has ended
        launcher=["chrt", "--fifo", str(realtime_priority)] if realtime_priority > 0 else [],
    )
    try:
        daemon.start()
        names = virtual_port_names("jack", name)
        probe = MidiProbe("jack", names.input_listed, names.output_listed, name=name + "P")
        try:
            started_s = time.monotonic()
            last_sent_s = probe.play(phrase)
            # The part playing when the player stops ends some beats later: wait for its end in
            # the daemon's log (a part that ended earlier says nothing of the last one), then
            # until nothing sounds and nothing has come for a while (its last notes on the way).
            parts_ended = _parts_ended(daemon.lines)
            deadline_s = time.monotonic() + SETTLE_S
            while time.monotonic() < deadline_s and _parts_ended(daemon.lines) == parts_ended:
                time.sleep(POLL_S)
            wait_for_quiet(probe, SETTLE_S)
            received = probe.received()
        finally:
            probe.close()
    finally:
        daemon.stop()
        xruns = server.xruns()
        server.stop()
        if previous is None:
            os.environ.pop(SERVER_ENV, None)
        else:
            os.environ[SERVER_ENV] = previous
    duet_messages = [t for t in received if getattr(t.message, "channel", None) == DUET_CHANNEL]
    duet = note_ons(duet_messages)
    parts = [
        tuple(map(float, m.groups())) for line in daemon.lines if (m := PART_LINE.search(line))
    ]
    reactions = [part[2:] for part in parts if part[2] > 0]
    return {
        "source": str(source) if source else "eighths",
        "split": split,
        "realtime_priority": realtime_priority or None,
        "output_ahead_ms": output_ahead_ms,
        "player_notes": sum(1 for t in phrase if t.message.type == "note_on"),
        "played_s": last_sent_s - started_s,
        "duet_notes": len(duet),
        "duet_notes_while_playing": sum(1 for t in duet if t.time_s <= last_sent_s),
        "hanging": len(sounding_notes(received)),
        "jack_late_cycles": xruns,
        "parts": len(parts),
        "schedule_error_mean_ms": max((part[0] for part in parts), default=None),
        "schedule_error_max_ms": max((part[1] for part in parts), default=None),
        # A player's note-on entering the model's state, timed by the daemon (its log line
        # at each part's end); the worst part's p99 and largest.
        "reaction_heard": int(sum(r[0] for r in reactions)),
        "reaction_p50_ms": max((r[1] for r in reactions), default=None),
        "reaction_p99_ms": max((r[2] for r in reactions), default=None),
        "reaction_max_ms": max((r[3] for r in reactions), default=None),
        **exact_timing(planned_notes(daemon.lines, PLANNED_LINE), duet_messages),
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", type=Path, default=None, help="a MIDI performance to play")
    parser.add_argument("--split", type=int, default=60, help="the player's part: at and above")
    parser.add_argument("--seconds", type=float, default=30.0, help="how much of it to play")
    parser.add_argument(
        "--realtime-priority", type=int, default=0, metavar="N",
        help="run jackd realtime and the daemon under chrt --fifo N, as antiphon bench does",
    )  # fmt: skip
    parser.add_argument(
        "--output-ahead-ms", type=float, default=0.0, metavar="MS",
        help="the daemon's output_ahead_ms (half the JACK period centres the delivery)",
    )  # fmt: skip
    parser.add_argument("--json", type=Path, default=None, metavar="OUT")


def run(args: argparse.Namespace) -> int:
    from antiphon.daemon.tools.jack_server import jackd_available

    if not jackd_available():
        print("bench_duet: needs jackd (Debian: apt-get install jackd2)", file=sys.stderr)
        return 2
    report = bench(
        args.source, args.split, args.seconds, args.realtime_priority, args.output_ahead_ms
    )
    print(json.dumps(report, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0 if report["hanging"] == 0 else 1


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m antiphon.daemon.tools.bench_duet")
    add_arguments(parser)
    return run(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
