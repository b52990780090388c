"""``antiphon transcribe``: recordings to MIDI files (see :mod:`antiphon.training.transcription`).

Each audio file given, or found in a folder given (recursively), becomes a MIDI file under
``-o``, at the same relative place. Finished transcriptions are cached by the audio's
content and the settings (in ``OUT/.transcriptions`` unless ``--cache`` says where), so a
folder run that was interrupted, run again, only transcribes what it had not finished.
A file that cannot be read, or in which no note is heard, is skipped with one line.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)
MIDI_SUFFIXES = {".mid", ".midi"}
TICKS_PER_BEAT = 480
TEMPO_US_PER_BEAT = 500_000  # 120 bpm: one second is 960 ticks


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "audio",
        nargs="+",
        type=Path,
        help="audio files (WAV; FLAC, Ogg, MP3, AIFF with the 'audio' extra) or folders of them",
    )
    parser.add_argument(
        "-o",
        "--out",
        type=Path,
        required=True,
        help="folder to write the MIDI files to (or, for one audio file, a .mid file)",
    )
    parser.add_argument(
        "--single-line",
        action="store_true",
        help="one note at a time: for a horn, a voice, any single melodic line "
        "(default: any number of notes at once, as on a piano)",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        help="folder of finished transcriptions (default: OUT/.transcriptions)",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="files transcribed at once, each in its own process (default: 1)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        help="onnxruntime threads per file (default: one per core with --jobs 1, else 1)",
    )


@dataclass(frozen=True)
class Job:
    audio: Path
    midi: Path


def find_jobs(inputs: list[Path], out: Path) -> list[Job]:
    """Each audio file to transcribe and the MIDI file it becomes; a CLI-facing
    ValueError for a path that does not exist."""
    from antiphon.training.audio import AUDIO_SUFFIXES

    single_file = len(inputs) == 1 and inputs[0].is_file() and out.suffix.lower() in MIDI_SUFFIXES
    if single_file:
        return [Job(inputs[0], out)]
    jobs = []
    for item in inputs:
        if item.is_dir():
            found = sorted(p for p in item.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
            jobs += [
                Job(p, out / item.name / p.relative_to(item).with_suffix(".mid")) for p in found
            ]
        elif item.is_file():
            jobs.append(Job(item, out / item.with_suffix(".mid").name))
        else:
            raise ValueError(f"{item}: no such file or folder")
    return jobs


def write_midi(notes: np.ndarray, path: Path, program: int = 0) -> None:
    """Notes (pitch, onset_s, offset_s, velocity) as a one-track MIDI file at 120 bpm, for
    the General MIDI ``program`` (0: a grand piano)."""
    import mido

    ticks_per_s = TICKS_PER_BEAT * 1e6 / TEMPO_US_PER_BEAT
    events = []
    for pitch, onset_s, offset_s, velocity in notes:
        on, off = round(onset_s * ticks_per_s), round(offset_s * ticks_per_s)
        events.append((on, 1, int(pitch), int(velocity)))
        events.append((max(off, on + 1), 0, int(pitch), 0))
    events.sort()  # at one tick, note-offs first
    track = mido.MidiTrack(
        [
            mido.MetaMessage("set_tempo", tempo=TEMPO_US_PER_BEAT, time=0),
            mido.Message("program_change", program=program, time=0),
        ]
    )
    now = 0
    for tick, _, pitch, velocity in events:
        kind = "note_on" if velocity else "note_off"
        track.append(mido.Message(kind, note=pitch, velocity=velocity, time=tick - now))
        now = tick
    midi = mido.MidiFile(ticks_per_beat=TICKS_PER_BEAT)
    midi.tracks.append(track)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    midi.save(str(partial))
    partial.replace(path)


# One transcriber (and its ONNX session) per process and settings, kept between files.
_TRANSCRIBERS: dict[tuple[object, int], Any] = {}


def _transcribe(job: Job, settings: Any, threads: int, cache_dir: Path) -> tuple[Any, bool, str]:
    """Notes of one job's audio and whether they came from the cache; or the reason it is
    skipped, in one line (then the notes are None)."""
    from antiphon.training.audio import AudioError
    from antiphon.training.transcription import (
        Transcriber,
        TranscriptionCache,
        TranscriptionError,
        transcribe_cached,
    )

    transcriber = _TRANSCRIBERS.setdefault((settings, threads), Transcriber(settings, threads))
    try:
        notes, from_cache = transcribe_cached(job.audio, transcriber, TranscriptionCache(cache_dir))
    except (AudioError, TranscriptionError, OSError) as err:
        return None, False, str(err)
    return notes, from_cache, ""


class _InProcess:
    """``map`` in this process, one file after another (``--jobs 1``)."""

    def map(self, function: Any, *iterables: Any) -> Any:
        return map(function, *iterables)


def _has_soundfile() -> bool:
    try:
        import soundfile  # noqa: F401
    except ImportError:
        return False
    return True


def run(args: argparse.Namespace) -> int:
    from antiphon.training.audio import SOUNDFILE_SUFFIXES
    from antiphon.training.transcription import tuned_settings
    from tqdm import tqdm

    try:
        jobs = find_jobs(args.audio, args.out)
    except ValueError as err:
        print(f"antiphon transcribe: {err}", file=sys.stderr)
        return 2
    if not jobs:
        print("antiphon transcribe: no audio files found", file=sys.stderr)
        return 2
    needs_soundfile = [j.audio for j in jobs if j.audio.suffix.lower() in SOUNDFILE_SUFFIXES]
    if needs_soundfile and not _has_soundfile():
        print(
            f"antiphon transcribe: {needs_soundfile[0].name} needs the 'audio' extra "
            "(soundfile is not installed; WAV files need nothing more); install it with: "
            "pip install 'antiphon[audio]'",
            file=sys.stderr,
        )
        return 2
    out_folder = args.out.parent if args.out.suffix.lower() in MIDI_SUFFIXES else args.out
    cache_dir = args.cache or out_folder / ".transcriptions"
    settings = tuned_settings(args.single_line)
    workers = max(1, min(args.jobs, len(jobs)))
    threads = args.threads if args.threads is not None else (0 if workers == 1 else 1)
    count = len(jobs)
    started = time.perf_counter()
    done = cached = notes_total = 0
    skipped = []
    with ProcessPoolExecutor(workers) if workers > 1 else nullcontext() as pool:
        arguments = (jobs, [settings] * count, [threads] * count, [cache_dir] * count)
        results = (pool or _InProcess()).map(_transcribe, *arguments)
        progress = tqdm(results, total=count, unit="file", desc="transcribing", disable=None)
        for job, (notes, from_cache, reason) in zip(jobs, progress, strict=True):
            if notes is None:
                log.warning("skipped %s: %s", job.audio, reason)
                skipped.append(job.audio)
                continue
            write_midi(notes, job.midi)
            done += 1
            cached += from_cache
            notes_total += len(notes)
    print(
        f"transcribe: {done} files ({cached} from the cache), {notes_total} notes, "
        f"{len(skipped)} skipped, {time.perf_counter() - started:.1f} s"
    )
    return 0 if done else 1
