"""Transcription measured on rendered audio: ``python -m antiphon.training.transcription_bench``.

Held-out MIDI is rendered to audio by a real synthesizer (fluidsynth with a General MIDI
soundfont): jazz-solos-dev solos (split by soloist, as ``antiphon corpus --piece-by prefix``
splits them) as tenor saxophone and as trumpet, asap-piano performances (split by piece
folder) as piano; each also with pink noise added. The audio is transcribed and scored
against the notes it was rendered from with mir_eval's note measures: F1 with onsets
within 50 ms and the pitch exact, and F1 with offsets too (within 20% of the note's length
or 50 ms). Speed is seconds of audio transcribed per second of wall time, and per second of CPU time
(all threads; on a shared machine the wall time also counts other people's work).

``--grid`` decodes each file's activations under several thresholds (for tuning, on the
validation split); the figures to report come from the test split at the chosen settings.
``--write-renders OUT`` does none of this: it writes the first ``--seconds`` of every jazz
solo as MIDI and rendered as saxophone, the material of the model trained on transcribed
audio and of :mod:`antiphon.training.line_loudness_fit` (BENCHMARKS.md, "Transcription").
Needs fluidsynth, a GM soundfont and ``pip install mir_eval`` (benchmark only). JSON out.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from antiphon.training.audio import read_audio
from antiphon.training.corpus import folder_sources, score_notes, split_pieces
from antiphon.training.transcribe_command import write_midi
from antiphon.training.transcription import (
    SAMPLE_RATE_HZ,
    Transcriber,
    notes_heard,
    tuned_settings,
)

SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
RENDER_RATE_HZ = 44100
PROGRAMS = {"saxophone": 66, "trumpet": 56, "piano": 0}  # General MIDI, from 0
NOISE_SNR_DB = 20.0
GRID_ONSET = (0.3, 0.4, 0.5, 0.6)
GRID_FRAME = (0.2, 0.3, 0.4)


def held_out_files(root: Path, piece_by: str, split: str, count: int, seed: int = 0) -> list[Path]:
    """``count`` files of the split, spread over its pieces (soloists or piece folders)."""
    sources = folder_sources(root, piece_by)
    split_of = split_pieces((s.piece for s in sources), seed)
    by_piece: dict[str, list[Path]] = {}
    for source in sources:
        if split_of[source.piece] == split:
            by_piece.setdefault(source.piece, []).append(Path(source.path))
    # Pieces spread evenly over the sorted list (composers, soloists A to Z); a piece's
    # next file only once every piece has given one.
    pieces = sorted(by_piece)
    if len(pieces) > count:
        pieces = [pieces[int(i * len(pieces) / count)] for i in range(count)]
    chosen: list[Path] = []
    round_ = 0
    while len(chosen) < count and any(len(by_piece[p]) > round_ for p in pieces):
        for piece in pieces:
            if len(by_piece[piece]) > round_ and len(chosen) < count:
                chosen.append(by_piece[piece][round_])
        round_ += 1
    return chosen


def excerpt(path: Path, seconds: float) -> np.ndarray:
    """The sounding notes (pedal applied) starting in the first ``seconds`` from the first."""
    import symusic

    notes = score_notes(symusic.Score(str(path), ttype="second"))
    notes = notes[notes[:, 1] < seconds]
    notes[:, 2] = np.minimum(notes[:, 2], seconds + 2.0)
    return notes


def render(notes: np.ndarray, program: int, folder: Path, name: str) -> np.ndarray:
    wav = folder / f"{name}.wav"
    render_files(notes, program, folder / f"{name}.mid", wav)
    return read_audio(wav, SAMPLE_RATE_HZ)


def render_files(notes: np.ndarray, program: int, midi: Path, wav: Path) -> None:
    """``notes`` written to the MIDI file ``midi`` and rendered by fluidsynth to ``wav``."""
    write_midi(notes, midi, program)
    command = ["fluidsynth", "-ni", "-q", "-g", "0.6", "-r", str(RENDER_RATE_HZ)]
    subprocess.run([*command, "-F", str(wav), SOUNDFONT, str(midi)], check=True)


def write_renders(jazz: Path, out: Path, seconds: float) -> int:
    """The first ``seconds`` of every solo under ``jazz``, as MIDI (``out/midi``) and
    rendered as tenor saxophone (``out/wav``), each of the solo's name: what the model
    trained on transcribed audio and ``line_loudness_fit`` start from. Returns the count."""
    (out / "midi").mkdir(parents=True, exist_ok=True)
    (out / "wav").mkdir(parents=True, exist_ok=True)
    sources = folder_sources(jazz, "prefix")
    for source in sources:
        stem = Path(source.path).stem
        notes = excerpt(Path(source.path), seconds)
        render_files(
            notes, PROGRAMS["saxophone"], out / "midi" / f"{stem}.mid", out / "wav" / f"{stem}.wav"
        )
    return len(sources)


def pink_noise(length: int, rng: np.random.Generator) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(length))
    spectrum /= np.sqrt(np.maximum(np.arange(len(spectrum)), 1.0))
    noise = np.fft.irfft(spectrum, n=length)
    return noise / np.sqrt(np.mean(noise**2))


def with_noise(signal: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    level = np.sqrt(np.mean(signal**2)) / 10 ** (snr_db / 20)
    return (signal + level * pink_noise(len(signal), rng)).astype(np.float32)


def scores(reference: np.ndarray, estimate: np.ndarray) -> dict[str, float]:
    """mir_eval note F1, with onsets only and with offsets, and the median onset error."""
    from mir_eval import transcription

    def hz(pitches: np.ndarray) -> np.ndarray:
        return 440.0 * 2 ** ((pitches - 69) / 12)

    def intervals(notes: np.ndarray) -> np.ndarray:
        ends = np.maximum(notes[:, 2], notes[:, 1] + 1e-3)
        return np.stack([notes[:, 1], ends], axis=1).astype(np.float64)

    if len(estimate) == 0:
        return {"f1": 0.0, "f1_offsets": 0.0, "precision": 0.0, "recall": 0.0, "lag_s": 0.0}
    ref_i, ref_p = intervals(reference), hz(reference[:, 0])
    est_i, est_p = intervals(estimate), hz(estimate[:, 0])
    p, r, f1, _ = transcription.precision_recall_f1_overlap(
        ref_i, ref_p, est_i, est_p, onset_tolerance=0.05, offset_ratio=None
    )
    _, _, f1_off, _ = transcription.precision_recall_f1_overlap(
        ref_i, ref_p, est_i, est_p, onset_tolerance=0.05, offset_ratio=0.2
    )
    pairs = transcription.match_notes(ref_i, ref_p, est_i, est_p, 0.1, offset_ratio=None)
    lag = [est_i[j, 0] - ref_i[i, 0] for i, j in pairs]
    return {
        "f1": float(f1),
        "f1_offsets": float(f1_off),
        "precision": float(p),
        "recall": float(r),
        "lag_s": float(np.median(lag)) if lag else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jazz", type=Path, default=Path("/work/shared/data/jazz-solos-dev"))
    parser.add_argument("--piano", type=Path, default=Path("/work/shared/data/asap-piano"))
    parser.add_argument("--split", default="test", choices=["validation", "test"])
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--grid", action="store_true", help="decode under every threshold pair")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--min-note-s", type=float, help="default: tuned_settings()")
    parser.add_argument("--onset-threshold", type=float, help="default: tuned_settings()")
    parser.add_argument("--frame-threshold", type=float, help="default: tuned_settings()")
    parser.add_argument("--kinds", default="saxophone,trumpet,piano")
    parser.add_argument(
        "--write-renders", type=Path, metavar="OUT",
        help="instead: write the first --seconds of every --jazz solo to OUT/midi and OUT/wav",
    )  # fmt: skip
    args = parser.parse_args()
    if args.write_renders is not None:
        count = write_renders(args.jazz, args.write_renders, args.seconds)
        print(f"{count} solos written to {args.write_renders}")
        return

    kinds = args.kinds.split(",")
    sets = {
        "line": held_out_files(args.jazz, "prefix", args.split, args.files),
        "piano": held_out_files(args.piano, "folder", args.split, args.files),
    }
    rng = np.random.default_rng(0)
    results: dict[str, Any] = {
        "per_condition": {},
        "files": {k: [str(p) for p in v] for k, v in sets.items()},
    }
    audio_s = wall_s = cpu_s = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for kind in kinds:
            single = kind != "piano"
            files = sets["line" if single else "piano"]
            base = tuned_settings(single)
            overrides = {
                "min_note_s": args.min_note_s,
                "onset_threshold": args.onset_threshold,
                "frame_threshold": args.frame_threshold,
            }
            base = replace(base, **{k: v for k, v in overrides.items() if v is not None})
            transcriber = Transcriber(base, threads=args.threads)
            for noisy in (False, True):
                condition = f"{kind}{' +noise' if noisy else ''}"
                rows: dict[str, list[dict[str, float]]] = {}
                for index, path in enumerate(files):
                    reference = excerpt(path, args.seconds)
                    signal = render(reference, PROGRAMS[kind], Path(tmp), f"{kind}{index}")
                    if noisy:
                        signal = with_noise(signal, NOISE_SNR_DB, rng)
                    started, cpu_started = time.perf_counter(), time.process_time()
                    note, onset, times_s = transcriber.activations(signal)
                    default = notes_heard(signal, note, onset, times_s, base)
                    wall_s += time.perf_counter() - started
                    cpu_s += time.process_time() - cpu_started
                    audio_s += len(signal) / SAMPLE_RATE_HZ
                    grid = [(base.onset_threshold, base.frame_threshold)]
                    if args.grid:
                        grid = [(o, f) for o in GRID_ONSET for f in GRID_FRAME]
                    for onset_t, frame_t in grid:
                        settings = replace(base, onset_threshold=onset_t, frame_threshold=frame_t)
                        estimate = default
                        if settings != base:
                            estimate = notes_heard(signal, note, onset, times_s, settings)
                        key = f"onset {onset_t} frame {frame_t}"
                        rows.setdefault(key, []).append(scores(reference, estimate))
                summary = {
                    key: {m: round(float(np.mean([r[m] for r in v])), 4) for m in v[0]}
                    for key, v in rows.items()
                }
                results["per_condition"][condition] = summary
                print(condition, json.dumps(summary), flush=True)
    results["audio_s"] = round(audio_s, 1)
    results["transcribe_wall_s"] = round(wall_s, 1)
    results["audio_s_per_s"] = round(audio_s / max(wall_s, 1e-9), 1)
    # On a shared machine wall time counts other people's work; CPU time does not.
    results["transcribe_cpu_s"] = round(cpu_s, 1)
    results["audio_s_per_cpu_s"] = round(audio_s / max(cpu_s, 1e-9), 1)
    results["machine"] = f"{platform.processor() or platform.machine()}, {args.threads} threads"
    results["split"] = args.split
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
