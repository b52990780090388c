"""The beat from an Ableton Link session: Antiphon as one peer, its beat and phase from Link.

Link (https://ableton.github.io/link) shares a tempo, a beat and a phase between the apps on
a network (Ableton Live, Bitwig, phone apps, another Antiphon) with no master and no cable.
The binding is ``LinkPython-extern`` (``pip install 'antiphon[link]'``; its import name is
``link``). It wraps Link's C++ API as plain calls: capturing the session state and asking it
for a beat or a time takes under a microsecond and never waits (Link's "app thread" API
reads a copy the Link thread keeps), so the performer's thread asks it directly, and Link's
own networking runs on its own threads. ``aalink``, the other binding, hands out its beat
through asyncio awaitables, a loop the performer's thread does not run.

Link's clock is not ``time.monotonic()`` (on Linux it is ``CLOCK_MONOTONIC_RAW``, seconds
apart from it and drifting slowly): each question measures the offset between the two,
bracketing a reading of Link's clock between two readings of the performer's.

Without peers there is no session to follow: :meth:`LinkSession.grid` says None and the
player's beat leads (as with a MIDI clock that does not run). Peers that use Link's
start/stop sync are honoured once one of them has started or stopped: while the session is
stopped, no Link beat.
"""

from __future__ import annotations

import importlib.util
import math
import time
from typing import Any

from antiphon.daemon.musician.hearing.beat import BeatGrid

LINK_MODULE = "link"  # the import name of LinkPython-extern
INSTALL_HINT = "pip install 'antiphon[link]'"
DEFAULT_TEMPO_BPM = 120.0  # Link's session tempo before any peer or the player sets one
MIN_TEMPO_BPM, MAX_TEMPO_BPM = 20.0, 999.0  # what Link accepts


class LinkUnavailable(RuntimeError):
    """The Link binding is not installed (the message says how to install it)."""


def link_installed() -> bool:
    """Whether the Link binding can be imported."""
    return importlib.util.find_spec(LINK_MODULE) is not None


class LinkSession:
    """Antiphon as a peer of the Link session on the local network.

    Made enabled (joining the session at once); :meth:`close` leaves it. Every method may be
    called from any thread and returns at once.

    Raises:
        LinkUnavailable: the binding is not installed.
    """

    def __init__(self, tempo_bpm: float = DEFAULT_TEMPO_BPM) -> None:
        try:
            import link
        except ImportError as err:
            raise LinkUnavailable(
                f"Ableton Link needs the link extra, which is not installed: {INSTALL_HINT}"
            ) from err
        self._link: Any = link.Link(tempo_bpm)
        self._clock: Any = self._link.clock()
        self._transport_seen = False  # a peer started or stopped: start/stop sync is in use
        self._link.startStopSyncEnabled = True
        self._link.setStartStopCallback(self._on_start_stop)
        self._link.enabled = True

    def _on_start_stop(self, playing: bool) -> None:
        # On Link's thread: one flag, read by the performer's.
        self._transport_seen = True

    @property
    def peers(self) -> int:
        """How many other peers are in the session."""
        return int(self._link.numPeers())

    @property
    def tempo_bpm(self) -> float:
        """The session's tempo now."""
        return float(self._link.captureAppSessionState().tempo())

    def offset_us(self) -> float:
        """Link's clock minus ``time.monotonic()``, in microseconds, measured now."""
        before_s = time.monotonic()
        link_us = self._clock.micros()
        after_s = time.monotonic()
        return float(link_us) - 0.5e6 * (before_s + after_s)

    def grid(self, now_s: float, quantum: int) -> BeatGrid | None:
        """The session's beat at ``now_s`` (``time.monotonic()``), bars of ``quantum`` beats;
        None without peers, or while peers using start/stop sync have stopped."""
        if self._link.numPeers() == 0:
            return None
        state = self._link.captureAppSessionState()
        if self._transport_seen and not state.isPlaying():
            return None
        return session_grid(state, now_s, self.offset_us(), quantum)

    def beat_at(self, time_s: float, quantum: int) -> float:
        """The session's beat number at ``time_s`` (``time.monotonic()``)."""
        state = self._link.captureAppSessionState()
        return float(state.beatAtTime(int(time_s * 1e6 + self.offset_us()), quantum))

    def transport(self) -> bool | None:
        """Whether the peers' transport runs (Link's start/stop sync); None until a peer has
        started or stopped it (no peer uses it)."""
        if not self._transport_seen:
            return None
        return bool(self._link.captureAppSessionState().isPlaying())

    def time_at(self, beat: float, quantum: int) -> float:
        """When the session's beat ``beat`` falls, as a ``time.monotonic()`` reading."""
        state = self._link.captureAppSessionState()
        offset_us = self.offset_us()
        return (float(state.timeAtBeat(beat, quantum)) - offset_us) * 1e-6

    def set_tempo(self, tempo_bpm: float, at_s: float) -> None:
        """Propose ``tempo_bpm`` to the session from ``at_s`` (``time.monotonic()``); the beat
        goes on from where it is."""
        tempo_bpm = min(MAX_TEMPO_BPM, max(MIN_TEMPO_BPM, tempo_bpm))
        state = self._link.captureAppSessionState()
        state.setTempo(tempo_bpm, int(at_s * 1e6 + self.offset_us()))
        self._link.commitAppSessionState(state)

    def set_playing(self, playing: bool, at_s: float) -> None:
        """Start or stop the session's transport from ``at_s`` (Link's start/stop sync; the
        test peer's, as a DAW's transport does it)."""
        state = self._link.captureAppSessionState()
        state.setIsPlaying(playing, int(at_s * 1e6 + self.offset_us()))
        self._link.commitAppSessionState(state)

    def close(self) -> None:
        """Leave the session."""
        self._link.enabled = False


def session_grid(state: Any, now_s: float, offset_us: float, quantum: int) -> BeatGrid:
    """The beat of a captured Link session state at ``now_s``, its clock ``offset_us`` ahead of
    ``time.monotonic()``: the last beat at or before ``now_s`` as anchor, the last downbeat of
    a ``quantum``-beat bar as the bar's."""
    now_us = int(now_s * 1e6 + offset_us)
    beat = float(state.beatAtTime(now_us, quantum))
    phase = float(state.phaseAtTime(now_us, quantum))
    anchor_us = float(state.timeAtBeat(float(math.floor(beat)), quantum))
    bar_us = float(state.timeAtBeat(beat - phase, quantum))
    return BeatGrid(
        beat_s=60.0 / float(state.tempo()),
        anchor_s=(anchor_us - offset_us) * 1e-6,
        subdivision=4,
        confidence=1.0,
        source="link",
        beats_per_bar=quantum,
        bar_anchor_s=(bar_us - offset_us) * 1e-6,
    )
