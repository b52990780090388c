"""Groove: a reply's note-ons placed on the beat's grid, with the model told the truth.

The model proposes when a note comes (the time shifts it samples); :class:`GridPlacer`
disposes: the note-on is played at :meth:`~antiphon.daemon.musician.hearing.beat.BeatGrid.pull` of
that time (with ``groove`` 1, on the nearest point of the grid's subdivision; in between,
pulled toward it). So that the model's state stays the one truth about what was played, the
tokens it was fed since the event before are taken back (its state restored) and fed again:
the time shifts that reach the played time (:class:`~antiphon.daemon.codec.TokenWriter`, with
its error feedback), then the velocity and the note-on it chose. The random streams are not
rolled back: the draw goes on from where it is.

A note-on the model put with the note-on before it (a chord: no time shift between them)
stays with it. Note-offs keep the model's timing (from the note-on as played).
"""

from __future__ import annotations

from antiphon.daemon.codec import TokenWriter, Vocabulary
from antiphon.daemon.musician.hearing.beat import BeatGrid
from antiphon.daemon.musician.model.engine import Engine, EngineState


class GridPlacer:
    """Places a reply's note-ons on ``grid`` with ``groove`` in [0, 1]; inactive (never
    called) without a grid or at groove 0, so the reply is then exactly the model's."""

    def __init__(self, vocabulary: Vocabulary, grid: BeatGrid | None, groove: float) -> None:
        self.grid = grid
        self.groove = groove
        self.active = grid is not None and groove > 0.0
        self._writer = TokenWriter(vocabulary)
        self._time_shift_base = vocabulary.time_shift_base
        self._velocity_base = vocabulary.velocity_base

    def place(
        self,
        engine: Engine,
        state_before: EngineState | None,
        tokens: list[int],
        after_onset: bool,
        clock_before_s: float,
        clock_s: float,
        last_s: float,
        offset_s: float,
    ) -> tuple[list[int], float, float] | None:
        """Place a drawn note-on; None when it stays where the model put it.

        Args:
            engine: fed ``tokens`` (the last one the note-on) from ``state_before``.
            after_onset: the event before is a note-on (then with no time shift between
                them, this one is in its chord, and stays with it).
            clock_before_s, clock_s: the stream's decoded clock before the tokens and at
                the note-on.
            last_s: when the reply's event before it plays (the note-on never goes before).
            offset_s: the played time of decoded clock 0 (time = clock + offset).

        Returns:
            (the tokens now fed, the decoded clock at the note-on, the time it plays at).
        """
        grid = self.grid
        if grid is None or state_before is None or (after_onset and clock_s == clock_before_s):
            return None
        time_s = clock_s + offset_s
        target_s = grid.pull(time_s, self.groove, not_before_s=last_s)
        if target_s == time_s:
            return None
        writer = self._writer
        writer.clock_s = clock_before_s
        shift_base, velocity_base = self._time_shift_base, self._velocity_base
        placed = writer.advance_to(target_s - offset_s)
        placed.extend(t for t in tokens if not shift_base <= t < velocity_base)
        engine.set_state(state_before)
        for token in placed:
            engine.feed(token, perturb=True)
        return placed, writer.clock_s, target_s
