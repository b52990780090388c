"""Session recording: each performance as a standard MIDI file, written while it happens.

A file of type 1 with two tracks, "Player" (what came in) and "Antiphon" (what went out),
opens in any DAW and in mido. A track chunk carries its length up front, so a MIDI file cannot
be appended to and stay valid; instead the whole file is written again every ``flush_s``
seconds, to a temporary file that is synced and then renamed over the old one. A crash or a
power cut loses at most the last few seconds, and never leaves a half-written file.

The MIDI and engine threads only append to a deque (no lock, no I/O); a thread of the
recorder's own turns what they appended into track bytes and writes the file. Events are
encoded once, as they are drained, so a flush costs the file write, not the whole night's
encoding again.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import mido

log = logging.getLogger(__name__)

TICKS_PER_BEAT = 960
TEMPO_US_PER_BEAT = 500_000  # 120 bpm: 1920 ticks a second, about half a millisecond a tick
FLUSH_S = 2.0
PLAYER = 0
ANTIPHON = 1
TRACK_NAMES = ("Player", "Antiphon")
RECORDED_TYPES = frozenset(
    {"note_on", "note_off", "control_change", "pitchwheel", "aftertouch", "polytouch"}
)


class RecorderError(OSError):
    """The recording folder cannot be used; the message is one line for the user."""


def _variable_int(value: int) -> bytes:
    """A MIDI variable-length quantity (delta times, meta lengths)."""
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


class _Track:
    """One track's encoded events so far, and the notes it has sounding."""

    def __init__(self, name: str, first_events: list[mido.MetaMessage]) -> None:
        self.data = bytearray()
        self.tick = 0
        self.sounding: set[tuple[int, int]] = set()
        for meta in [mido.MetaMessage("track_name", name=name), *first_events]:
            self.data += _variable_int(0) + bytes(meta.bytes())

    def add(self, tick: int, message: mido.Message) -> None:
        tick = max(tick, self.tick)  # two threads may append a hair out of order
        self.data += _variable_int(tick - self.tick) + bytes(message.bytes())
        self.tick = tick
        key = (message.channel, message.note) if message.type in ("note_on", "note_off") else None
        if key is not None:
            if message.type == "note_on" and message.velocity > 0:
                self.sounding.add(key)
            else:
                self.sounding.discard(key)

    def chunk(self) -> bytes:
        body = bytes(self.data) + _variable_int(0) + bytes(mido.MetaMessage("end_of_track").bytes())
        return b"MTrk" + len(body).to_bytes(4, "big") + body


def session_path(folder: Path, started: datetime) -> Path:
    """A new file in ``folder`` named by the start time (``antiphon-2025-05-01-213005.mid``)."""
    stem = "antiphon-" + started.strftime("%Y-%m-%d-%H%M%S")
    path = folder / f"{stem}.mid"
    n = 2
    while path.exists():
        path = folder / f"{stem}-{n}.mid"
        n += 1
    return path


class SessionRecorder:
    """Records one performance: :meth:`player` and :meth:`antiphon` from any thread.

    Times are ``clock()`` readings (``time.monotonic()`` by default, as the MIDI callback
    stamps them); the file's time zero is :meth:`start`. :meth:`stop` releases notes still
    sounding in the file (a key held at the end), writes the file a last time and closes it.
    """

    def __init__(
        self,
        folder: Path,
        clock: Callable[[], float] = time.monotonic,
        flush_s: float = FLUSH_S,
        now: Callable[[], datetime] = datetime.now,
    ) -> None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise RecorderError(
                f"cannot make the recording folder {folder}: {err.strerror}"
            ) from err
        if not os.access(folder, os.W_OK | os.X_OK):
            raise RecorderError(f"cannot write in the recording folder {folder}")
        self.path = session_path(folder, now())
        self._clock = clock
        self._flush_s = flush_s
        self._pending: collections.deque[tuple[int, float, mido.Message]] = collections.deque()
        tempo = mido.MetaMessage("set_tempo", tempo=TEMPO_US_PER_BEAT)
        self._tracks = (_Track(TRACK_NAMES[PLAYER], [tempo]), _Track(TRACK_NAMES[ANTIPHON], []))
        self._start_s: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="session-recorder", daemon=True)
        self._write_failed = False
        self.writes = 0

    # Called from the MIDI and engine threads: append only.

    def player(self, message: mido.Message, time_s: float) -> None:
        """A message the player sent (as received, stamped with its arrival time)."""
        if message.type in RECORDED_TYPES:
            self._pending.append((PLAYER, time_s, message))

    def antiphon(self, message: mido.Message, time_s: float) -> None:
        """A message Antiphon sent, stamped with the time it went out."""
        if message.type in RECORDED_TYPES:
            self._pending.append((ANTIPHON, time_s, message))

    # The recorder's own thread.

    def start(self) -> None:
        """Time zero of the file; writes the (empty) file and starts flushing."""
        self._start_s = self._clock()
        self.flush()
        self._thread.start()
        log.info("recording to %s", self.path)

    def _run(self) -> None:
        while not self._stop.wait(self._flush_s):
            self.flush()

    def _tick(self, time_s: float) -> int:
        assert self._start_s is not None
        return round(
            mido.second2tick(max(0.0, time_s - self._start_s), TICKS_PER_BEAT, TEMPO_US_PER_BEAT)
        )

    def _drain(self) -> None:
        while self._pending:
            track, time_s, message = self._pending.popleft()
            self._tracks[track].add(self._tick(time_s), message)

    def flush(self) -> None:
        """Encode what was appended and write the whole file again, atomically.

        A failed write (disk full, card pulled) is logged once and tried again next time;
        recording never stops the performance.
        """
        self._drain()
        header = b"MThd" + (6).to_bytes(4, "big")
        header += (1).to_bytes(2, "big") + len(self._tracks).to_bytes(2, "big")
        header += TICKS_PER_BEAT.to_bytes(2, "big")
        content = header + b"".join(track.chunk() for track in self._tracks)
        temporary = self.path.with_name(f".{self.path.name}.partial")
        try:
            with open(temporary, "wb") as file:
                file.write(content)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, self.path)
        except OSError as err:
            if not self._write_failed:
                log.warning("cannot write the recording %s: %s", self.path, err.strerror)
            self._write_failed = True
            return
        if self._write_failed:
            log.warning("writing the recording %s again", self.path)
        self._write_failed = False
        self.writes += 1

    def stop(self) -> None:
        """Release what still sounds in the file, write it a last time, stop the thread."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        if self._start_s is None:
            return
        self._drain()
        end_tick = self._tick(self._clock())
        for track in self._tracks:
            for channel, pitch in sorted(track.sounding):
                track.add(end_tick, mido.Message("note_off", channel=channel, note=pitch))
        self.flush()
        log.info("recording saved: %s", self.path)
