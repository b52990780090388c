"""Fit :mod:`antiphon.training.line_loudness`'s numbers again: ``python -m
antiphon.training.line_loudness_fit CORPUS RENDERS``.

CORPUS is ``antiphon corpus MIDI --piece-by prefix --single-line --seed 0`` over single-line
MIDI files; RENDERS holds a WAV file rendered from each of them, of the same name
(BENCHMARKS.md, "Transcription", says how the shipped numbers' renders were made). Only the
corpus's **training** split is used: the held-out players never are. It prints

- the velocity curve (:data:`~antiphon.training.line_loudness.LEVEL_KNOTS_DB` to
  :data:`~antiphon.training.line_loudness.VELOCITY_KNOTS`), by quantile matching: the
  quantiles of the transcribed notes' levels relative to their recording's median note,
  against the same quantiles of the MIDI velocities' distance from their file's median,
  plus the median of those medians;
- for each release drop tried, the mean F1 with offsets of the transcribed notes against the
  MIDI (every ``--every``-th training file; mir_eval's measure, as
  :mod:`antiphon.training.transcription_bench`, which needs mir_eval installed).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from antiphon.training import line_loudness
from antiphon.training.audio import read_audio
from antiphon.training.corpus import iter_manifest, load_split
from antiphon.training.transcription import (
    SAMPLE_RATE_HZ,
    Transcriber,
    decode_notes,
    tuned_settings,
)

QUANTILES = (1, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 99)
RELEASE_DROPS_DB = (3.0, 6.0, 8.0, 9.0, 10.0, 11.0, 12.0, 18.0)


@dataclass
class Heard:
    """One training file: its MIDI notes, the transcribed notes (decoded, before the
    loudness step) and the recording's short-time power."""

    reference: np.ndarray
    transcribed: np.ndarray
    power: np.ndarray


def velocity_curve(
    relative_levels_db: np.ndarray, velocity_deviations: np.ndarray, file_medians: np.ndarray
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The knots from relative level (dB) to velocity: each of ``QUANTILES`` of the levels
    against the same quantile of the velocities' deviations, shifted by the median of the
    files' median velocities."""
    centre = float(np.median(file_medians))
    levels = np.percentile(relative_levels_db, QUANTILES)
    velocities = centre + np.percentile(velocity_deviations, QUANTILES)
    return tuple(round(float(x), 1) for x in levels), tuple(round(float(x), 1) for x in velocities)


def heard_files(corpus: Path, renders: Path, transcriber: Transcriber) -> list[Heard]:
    """The training split's files, each transcribed from its render."""
    paths = {
        str(entry["id"]): Path(str(entry["path"]))
        for entry in iter_manifest(corpus)
        if entry["split"] == "train"
    }
    heard = []
    for name, reference in load_split(corpus, "train"):
        signal = read_audio(renders / f"{paths[name].stem}.wav", SAMPLE_RATE_HZ)
        note, onset, times_s = transcriber.activations(signal)
        transcribed = decode_notes(note, onset, times_s, transcriber.settings)
        heard.append(Heard(reference, transcribed, line_loudness.power_db(signal)))
    return heard


def fit_velocities(heard: list[Heard]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    levels, deviations, medians = [], [], []
    for h in heard:
        if not len(h.transcribed) or not len(h.reference):
            continue
        onsets_s = h.transcribed[:, 1].astype(np.float64)
        found = line_loudness.note_levels_db(h.power, SAMPLE_RATE_HZ, onsets_s)
        levels.append(found - np.median(found))
        deviations.append(h.reference[:, 3] - np.median(h.reference[:, 3]))
        medians.append(np.median(h.reference[:, 3]))
    return velocity_curve(np.concatenate(levels), np.concatenate(deviations), np.array(medians))


def release_f1(heard: list[Heard], drop_db: float) -> float:
    """Mean F1 with offsets with notes ended ``drop_db`` below their peak."""
    from antiphon.training.transcription_bench import scores

    found = []
    for h in heard:
        notes = h.transcribed.astype(np.float64)
        ends = line_loudness.line_releases(h.power, SAMPLE_RATE_HZ, notes, drop_db)
        found.append(scores(h.reference, np.column_stack((notes[:, :2], ends, notes[:, 3:]))))
    return float(np.mean([f["f1_offsets"] for f in found]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", type=Path, help="antiphon corpus over the MIDI files")
    parser.add_argument("renders", type=Path, help="a WAV file rendered from each MIDI file")
    parser.add_argument("--every", type=int, default=4, help="every Nth file for the releases")
    args = parser.parse_args()
    transcriber = Transcriber(tuned_settings(single_line=True))
    heard = heard_files(args.corpus, args.renders, transcriber)
    level_knots, velocity_knots = fit_velocities(heard)
    print(f"{len(heard)} training files")
    print(f"LEVEL_KNOTS_DB = {level_knots}")
    print(f"VELOCITY_KNOTS = {velocity_knots}")
    for drop_db in RELEASE_DROPS_DB:
        f1 = release_f1(heard[:: args.every], drop_db)
        print(f"release drop {drop_db:g} dB: F1 with offsets {f1:.3f}")


if __name__ == "__main__":
    main()
