"""A tiny synthetic piano corpus (scales, arpeggios, chords) written in the corpus format."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from antiphon.daemon.codec import CodecConfig
from antiphon.training.corpus import Performance, Source, write_corpus

if TYPE_CHECKING:
    from antiphon.training.train import TrainConfig

MAJOR = (0, 2, 4, 5, 7, 9, 11)


def scale_notes(root: int, beats: int, beat_s: float, seed: int) -> np.ndarray:
    """A musically plausible exercise: scale runs up and down over a chord in the left hand."""
    rng = np.random.default_rng(seed)
    rows = []
    t = 0.0
    for beat in range(beats):
        degree = beat % 14 if beat % 14 < 7 else 13 - beat % 14
        octave, step = divmod(degree, 7)
        pitch = root + 12 * octave + MAJOR[step]
        velocity = 64 + 20 * (beat % 4 == 0) + int(rng.integers(-5, 6))
        rows.append((pitch, t, t + 0.9 * beat_s, velocity))
        if beat % 4 == 0:  # a triad under the run
            for interval in (0, 4, 7):
                rows.append((root - 12 + interval, t, t + 3.8 * beat_s, 50))
        t += beat_s
    notes = np.asarray(rows, dtype=np.float32)
    return notes[np.lexsort((notes[:, 0], notes[:, 1]))]


def write_tiny_corpus(out: Path, performances: int = 12, beats: int = 48) -> Path:
    """Write ``performances`` exercises in different keys and tempi; each is its own piece."""
    items = []
    for i in range(performances):
        notes = scale_notes(48 + (i * 5) % 12, beats, 0.18 + 0.02 * (i % 4), seed=i)
        source = Source(f"tiny/{i:02d}", f"tiny/piece{i:02d}", "folder", f"tiny/{i:02d}.mid")
        items.append(Performance(source, notes))
    write_corpus(out, items, CodecConfig(), seed=0)
    return out


def tiny_train_config(corpus: Path, out: Path, **changes: object) -> TrainConfig:
    """A training run small enough for a test: a small model, a few epochs, one thread
    (torch is imported here, when a test trains, not when tests are collected)."""
    from dataclasses import replace

    from antiphon.training.train import TrainConfig

    base = TrainConfig(
        corpus_dir=str(corpus),
        out_dir=str(out),
        epochs=8,
        batch_size=4,
        window=32,
        embedding=32,
        hidden=64,
        layers=2,
        lr=5e-3,
        warmup_steps=10,
        threads=1,
        log_every=5,
        patience=100,
    )
    return replace(base, **changes)  # type: ignore[arg-type]
