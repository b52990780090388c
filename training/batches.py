"""Training data as the daemon sees it: long token streams with the LSTM state carried along.

The daemon never resets the model's state during a performance, so training uses truncated
backpropagation through time over *stateful* windows: each of the B rows of a batch is a
stream of whole performances laid end to end, and window k+1 of a row continues window k of
the same row, so the state left by one window (detached) is the start of the next.

Each performance starts at a window boundary (its last window is padded, with targets
ignored), so the state is zeroed exactly where a performance starts, the same zero state the
daemon starts with. A small random share of other windows also starts from zero, which teaches
the model to pick up a performance in the middle, as the daemon does when a player starts.

Every epoch re-encodes the performances with fresh augmentation (transposition, tempo,
velocity, timing jitter) through the daemon's own codec, so training tokens are exactly what
the daemon would produce from the same playing.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from antiphon.daemon.codec import Vocabulary, encode_notes, notes_from_array

IGNORE = -100  # target of a padded position: no loss there (torch's default ignore_index)


@dataclass(frozen=True)
class Augmentation:
    """Random changes applied to a performance before encoding, new ones every epoch."""

    transpose_semitones: int = 5  # shift drawn from ±this, limited to keep pitches in 0..127
    tempo_low: float = 0.9  # all times scaled by a factor drawn from [tempo_low, tempo_high]
    tempo_high: float = 1.1
    velocity_low: float = 0.8  # velocities scaled by [velocity_low, velocity_high], 1..127
    velocity_high: float = 1.2
    jitter_s: float = 0.005  # standard deviation of Gaussian noise on each onset and offset


NO_AUGMENTATION = Augmentation(0, 1.0, 1.0, 1.0, 1.0, 0.0)


def augment_notes(notes: np.ndarray, rng: np.random.Generator, aug: Augmentation) -> np.ndarray:
    """A changed copy of ``notes`` (rows pitch, onset_s, offset_s, velocity), as float64."""
    out = np.array(notes, dtype=np.float64).reshape(-1, 4)
    if len(out) == 0:
        return out
    pitches, onsets, offsets, velocities = out[:, 0], out[:, 1], out[:, 2], out[:, 3]
    low = max(-aug.transpose_semitones, -int(pitches.min()))
    high = min(aug.transpose_semitones, 127 - int(pitches.max()))
    if low <= high:
        pitches += rng.integers(low, high + 1)
    stretch = rng.uniform(aug.tempo_low, aug.tempo_high)
    onsets *= stretch
    offsets *= stretch
    if aug.jitter_s > 0:
        onsets += rng.normal(0.0, aug.jitter_s, len(out))
        offsets += rng.normal(0.0, aug.jitter_s, len(out))
        np.maximum(onsets, 0.0, out=onsets)
        np.maximum(offsets, onsets, out=offsets)
    velocities *= rng.uniform(aug.velocity_low, aug.velocity_high)
    np.clip(np.rint(velocities), 1, 127, out=velocities)
    return out


def encode_performance(notes: np.ndarray, vocabulary: Vocabulary) -> np.ndarray:
    """Tokens (int16) of one performance given as a notes array."""
    return encode_notes(notes_from_array(notes), vocabulary)


def encode_performances(
    performances: Sequence[np.ndarray],
    vocabulary: Vocabulary,
    rng: np.random.Generator,
    aug: Augmentation = NO_AUGMENTATION,
) -> list[np.ndarray]:
    """Token arrays of the performances, each augmented with its own random draw."""
    return [encode_performance(augment_notes(n, rng, aug), vocabulary) for n in performances]


@dataclass(frozen=True)
class Batch:
    """One window of every row.

    ``reset[i]`` says the state of row i must be zeroed before this window (a performance
    starts here, or a random restart); otherwise row i continues from the previous window.
    """

    inputs: np.ndarray  # int64 [B, T]
    targets: np.ndarray  # int64 [B, T]; IGNORE where there is nothing to predict
    reset: np.ndarray  # bool [B]


class StreamBatches:
    """Stateful windows over token streams: B rows of whole performances laid end to end.

    Performances are dealt to rows in random order, each to the row that is shortest so
    far, so rows end close together. ``batch(k)`` for k past ``steps`` is an empty window
    (all targets ignored); distributed ranks use it to take the same number of steps.
    """

    def __init__(
        self,
        streams: Sequence[np.ndarray],
        rows: int,
        window: int,
        rng: np.random.Generator,
        reset_probability: float = 0.0,
    ) -> None:
        if rows < 1 or window < 1:
            raise ValueError("rows and window must be at least 1")
        self.rows = rows
        self.window = window
        usable = [i for i, s in enumerate(streams) if len(s) >= 2]
        order = [usable[i] for i in rng.permutation(len(usable))]
        windows_of = {i: -(-(len(streams[i]) - 1) // window) for i in usable}
        # Heap of (windows so far, row) so each performance goes to the shortest row.
        heap = [(0, row) for row in range(rows)]
        self.row_performances: list[list[int]] = [[] for _ in range(rows)]
        starts: list[list[int]] = [[] for _ in range(rows)]
        for index in order:
            length, row = heapq.heappop(heap)
            self.row_performances[row].append(index)
            starts[row].append(length)
            heapq.heappush(heap, (length + windows_of[index], row))
        self.steps = max(length for length, _ in heap)
        span = self.steps * window
        self._inputs = np.zeros((rows, span), dtype=np.int16)
        self._targets = np.full((rows, span), IGNORE, dtype=np.int16)
        self._reset = rng.random((rows, self.steps)) < reset_probability
        for row in range(rows):
            for index, start_window in zip(self.row_performances[row], starts[row], strict=True):
                tokens = streams[index]
                at = start_window * window
                self._inputs[row, at : at + len(tokens) - 1] = tokens[:-1]
                self._targets[row, at : at + len(tokens) - 1] = tokens[1:]
                self._reset[row, start_window] = True
        self.tokens = int(sum(len(streams[i]) - 1 for i in usable))  # targets to predict

    def __len__(self) -> int:
        return self.steps

    def batch(self, k: int) -> Batch:
        if k >= self.steps:
            shape = (self.rows, self.window)
            return Batch(
                np.zeros(shape, np.int64),
                np.full(shape, IGNORE, np.int64),
                np.ones(self.rows, dtype=bool),
            )
        cut = slice(k * self.window, (k + 1) * self.window)
        return Batch(
            self._inputs[:, cut].astype(np.int64),
            self._targets[:, cut].astype(np.int64),
            self._reset[:, k].copy(),
        )

    def __iter__(self) -> Iterator[Batch]:
        for k in range(self.steps):
            yield self.batch(k)
