"""The right voice for the call (``--model auto``): the single-line model when the player plays
one line, the piano model when they play chords, chosen from what is heard.

At each call's end, before its reply is made (never during a reply), the call's overlap share
(:func:`~antiphon.daemon.musician.hearing.motion.overlap_share`: the share of its sounding time with
two or more notes sounding) decides, with hysteresis: the line model takes over at an overlap
of at most ``LINE_AT_MOST``, the piano model at ``CHORDS_AT_LEAST`` or more, and in between
the voice that plays stays, so a legato line or one double stop does not flip it back and
forth. Calls of fewer than ``MIN_NOTES`` notes leave the voice as it is.

Switching costs one replay: the incoming model is reset and fed the call as heard (the notes
since the last silence of a second, :class:`~antiphon.daemon.musician.answering.follow.HeardCall`),
so
it answers a call it has heard whole; what it heard before that is forgotten. The model
playing is the one truth about what was heard, so the other is not fed in between (see
BENCHMARKS.md for what a replay costs).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from antiphon.daemon.codec import encode_notes, notes_from_array
from antiphon.daemon.musician.hearing.motion import overlap_share
from antiphon.daemon.musician.model.engine import Engine
from antiphon.daemon.musician.model.model_file import ModelError
from antiphon.daemon.settings import AUTO_MODEL, LINE_MODEL, PIANO_MODEL, Settings

log = logging.getLogger(__name__)

VOICES = ("piano", "line")
LINE_AT_MOST = 0.1
CHORDS_AT_LEAST = 0.3
MIN_NOTES = 3


@dataclass
class VoiceChooser:
    """Which voice answers, from the calls heard (hysteresis: see the module docstring)."""

    voice: str = "piano"

    def hear(self, call: np.ndarray) -> str:
        """The voice for a call (notes [N, 4]), which becomes the current one."""
        share = overlap_share(call) if len(call) >= MIN_NOTES else None
        if share is not None:
            if share <= LINE_AT_MOST:
                self.voice = "line"
            elif share >= CHORDS_AT_LEAST:
                self.voice = "piano"
        return self.voice


class Voices:
    """The two engines of ``--model auto`` and the choice between them.

    Owned by the performer's thread, like the engines.
    """

    def __init__(self, piano: Engine, line: Engine) -> None:
        if piano.info.codec != line.info.codec:
            raise ModelError(f"{line.path}: its codec differs from {piano.path}'s")
        self.engines = {"piano": piano, "line": line}
        self.chooser = VoiceChooser()
        self.switches = 0

    @classmethod
    def load(cls, settings: Settings) -> Voices:
        """Both shipped models, with the settings' seed and sampling."""

        def load(path: object) -> Engine:
            return Engine(
                str(path),
                seed=settings.seed,
                temperature=settings.temperature,
                noise=settings.noise,
            )

        return cls(load(PIANO_MODEL), load(LINE_MODEL))

    @property
    def voice(self) -> str:
        return self.chooser.voice

    def pick(self, call: np.ndarray, playing: Engine) -> Engine | None:
        """The engine to answer ``call`` with when it is not ``playing``: reset and fed the
        call, with ``playing``'s random streams and sampling; None to keep ``playing``."""
        engine = self.engines[self.chooser.hear(call)]
        if engine is playing:
            return None
        engine.rng, engine.noise_rng = playing.rng, playing.noise_rng
        engine.temperature, engine.noise = playing.temperature, playing.noise
        replay(engine, call)
        self.switches += 1
        log.info("the %s voice answers (%s)", self.voice, engine.path)
        return engine


def replay(engine: Engine, call: np.ndarray) -> None:
    """Reset ``engine`` and feed it ``call`` (notes [N, 4]) from its first onset, so its
    state ends where the call's last event does."""
    engine.reset()
    if len(call) == 0:
        return
    notes = np.array(call, np.float64)
    notes[:, 1:3] -= notes[:, 1].min()
    for token in encode_notes(notes_from_array(notes), engine.vocabulary):
        engine.feed(int(token))


def open_engine(settings: Settings) -> tuple[Engine, Voices | None]:
    """The engine that plays first, and the voices when ``settings.model`` is ``auto``."""
    if settings.model == AUTO_MODEL:
        voices = Voices.load(settings)
        return voices.engines[voices.voice], voices
    engine = Engine(
        settings.model, seed=settings.seed, temperature=settings.temperature, noise=settings.noise
    )
    return engine, None
