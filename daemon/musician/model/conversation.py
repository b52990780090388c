"""The conversation: the one token stream that the player and Antiphon both write into.

The engine's state is the whole performance: every event the player makes is encoded (pedal
applied, times quantised with error feedback by :class:`~antiphon.daemon.codec.StreamEncoder`) and
fed as it arrives; the tokens of Antiphon's own replies are fed by the reply as it samples
them and then committed here, so the encoder's clock follows them
(:meth:`~antiphon.daemon.codec.TokenWriter.follow`) and the player's next event is timed from the
reply's last one.

Long silences are capped: a gap longer than ``max_silence_s`` (default 8 s, two of the
longest time shifts) is fed as ``max_silence_s``. The model rarely saw longer silences in
training, and every 4 s of silence would cost a step right when the player starts again.
"""

from __future__ import annotations

from collections.abc import Iterable

from antiphon.daemon.codec import NoteEvent, StreamEncoder, TokenWriter
from antiphon.daemon.musician.model.engine import Engine

MAX_FED_SILENCE_S = 8.0


class Conversation:
    """The token stream of a performance and the engine that has heard it.

    Times are the performer's clock in seconds. Not thread-safe: the Performer's thread
    owns it.
    """

    def __init__(self, engine: Engine, max_silence_s: float = MAX_FED_SILENCE_S) -> None:
        self.engine = engine
        self.vocabulary = engine.vocabulary
        self.max_silence_s = max_silence_s
        self.encoder = StreamEncoder(self.vocabulary)
        self.velocity = 64  # MIDI velocity of the stream's current velocity token
        # Whether a heard event's tokens go to the engine in one run (Engine.feed_run: the
        # duet's reaction) or one by one (the state of every figure measured in call mode).
        self.hears_in_runs = False

    @property
    def writer(self) -> TokenWriter:
        return self.encoder.writer

    @property
    def clock_s(self) -> float:
        """The time the tokens fed so far decode to."""
        return self.encoder.writer.clock_s

    def replace_engine(self, engine: Engine) -> None:
        """Continue the stream with another engine (same codec), from its current state."""
        self.engine = engine

    # The player's side ---------------------------------------------------------------------

    def note_on(self, pitch: int, velocity: int, time_s: float) -> None:
        self._cap_silence(time_s)
        self._hear(self.encoder.note_on(pitch, velocity, time_s))

    def note_off(self, pitch: int, time_s: float) -> None:
        self._cap_silence(time_s)
        self._hear(self.encoder.note_off(pitch, time_s))

    def sustain(self, value: int, time_s: float) -> None:
        self._cap_silence(time_s)
        self._hear(self.encoder.sustain(value, time_s))

    def all_notes_off(self, time_s: float) -> None:
        self._cap_silence(time_s)
        self._hear(self.encoder.all_notes_off(time_s))

    def silence_until(self, time_s: float) -> None:
        """Feed the time shifts up to ``time_s`` (the pause before a reply starts)."""
        self._cap_silence(time_s)
        self._hear(self.writer.advance_to(time_s))

    # Antiphon's side -------------------------------------------------------------------------

    def commit(self, tokens: Iterable[int]) -> None:
        """Reply tokens that were already fed and are now played: the clock follows them."""
        for token in tokens:
            self.writer.follow(token)
            self._track(token)

    def release(self, pitch: int, clock_s: float) -> None:
        """Feed the end of a reply note that Antiphon ended itself (forced or interrupted)."""
        self._hear(self.writer.write(NoteEvent(clock_s, pitch, 0)))

    # ------------------------------------------------------------------------------------------

    def _cap_silence(self, time_s: float) -> None:
        if time_s - self.writer.clock_s > self.max_silence_s:
            self.writer.clock_s = time_s - self.max_silence_s

    def _hear(self, tokens: list[int]) -> None:
        if self.hears_in_runs:
            self.engine.feed_run(tokens)
        else:
            for token in tokens:
                self.engine.feed(token)
        for token in tokens:
            self._track(token)

    def _track(self, token: int) -> None:
        if token >= self.vocabulary.velocity_base:
            self.velocity = self.vocabulary.velocity_of_bin(token - self.vocabulary.velocity_base)
