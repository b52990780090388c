"""Audio to notes: Basic Pitch's note model (ONNX, run by onnxruntime) and its decoding.

The model (``models/basic-pitch-nmp.onnx``, Apache-2.0, see ``models/README.md``) hears
2-second windows of mono audio at 22050 Hz and gives, per 256-sample frame and per piano
key, how likely a note sounds there (``note``) and starts there (``onset``). The decoding
follows Basic Pitch's own (R. M. Bittner et al., ICASSP 2022):

- an onset is a local peak in time of the onset activation (with onsets also inferred from
  sudden rises of the note activation) at least ``onset_threshold``;
- a note runs from its onset while the note activation stays at least ``frame_threshold``,
  forgiving dips of fewer than ``ENERGY_TOLERANCE_FRAMES``; notes shorter than
  ``min_note_s`` are dropped; the frames a note used (and its neighbouring keys) are spent;
- then, like Melodia, notes without a detected onset are grown from the strongest
  remaining activation, forwards and backwards.

With ``single_line`` (a horn, a voice) one note sounds at a time: of the notes starting
within ``LINE_ONSET_GROUP_S`` of each other, only the most salient is kept, and each note
ends where the next begins. Then each note's octave is chosen along the whole line (the
model's commonest error on a saxophone is to hear the octave below): a note may move up an
octave where the key above is active over it, and a line prefers steps to leaps, so the
octave that best fits both the activations and the neighbouring notes wins (a Viterbi
path over "as heard" and "an octave up"; see :func:`choose_octaves`). Last, a line's
velocities and note ends are read from the recording's loudness, which the model's
activations hardly follow (:mod:`antiphon.training.line_loudness`).

The thresholds are tuned per kind (:func:`tuned_settings`) on rendered audio of the
validation split (see :mod:`antiphon.training.transcription_bench` and BENCHMARKS.md).

Frame times are exact per window (each window starts ``WINDOW_HOP_SAMPLES`` after the
last), not Basic Pitch's approximate correction.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from antiphon.training.audio import read_audio
from antiphon.training.line_loudness import line_releases, line_velocities, power_db

MODEL_PATH = Path(__file__).resolve().parent / "models" / "basic-pitch-nmp.onnx"
SAMPLE_RATE_HZ = 22050
FRAME_HOP_SAMPLES = 256
WINDOW_SAMPLES = 2 * SAMPLE_RATE_HZ - FRAME_HOP_SAMPLES  # the model's fixed input length
OVERLAP_FRAMES = 30  # between windows; half is cut from each side of a window's frames
WINDOW_HOP_SAMPLES = WINDOW_SAMPLES - OVERLAP_FRAMES * FRAME_HOP_SAMPLES
LOWEST_PITCH = 21  # the model's first key: A0
KEYS = 88
ENERGY_TOLERANCE_FRAMES = 11
LINE_ONSET_GROUP_S = 0.03
# A single line's salience: the note's mean activation (as a velocity, 1..127) plus this much
# per semitone of pitch, so that of two equally strong notes starting together the higher
# wins (the model's commonest error on a horn is the octave below).
LINE_PITCH_BONUS = 0.5
# Octave choice along a line (tuned on the validation split's saxophone and trumpet):
OCTAVE_EVIDENCE_RATIO = 0.5  # activation above / as heard, at which both octaves cost alike
OCTAVE_EVIDENCE_WEIGHT = 2.0
OCTAVE_MIN_RATIO = 0.15  # below this, the octave above is not a candidate at all
LEAP_COST = 2.0  # per octave of leap beyond a fifth between notes of one phrase
PHRASE_GAP_S = 0.5  # a longer silence between notes: no cost for the leap across it
WINDOWS_PER_RUN = 16  # windows per onnxruntime call: bounds memory on long recordings
# Part of every cache key: raise it when the decoding changes what notes it gives.
DECODING_VERSION = 3
_INPUT = "serving_default_input_2:0"
_NOTE, _ONSET = "StatefulPartitionedCall:1", "StatefulPartitionedCall:2"


class TranscriptionError(ValueError):
    """Audio that gives no notes; the message says why."""


@dataclass(frozen=True)
class TranscriptionSettings:
    """How audio becomes notes; saved with cached transcriptions, so a change re-transcribes.

    Args:
        single_line: one note at a time (a horn, a voice); else any number (a piano).
        onset_threshold: the onset activation a note must start with.
        frame_threshold: the note activation a note keeps sounding at.
        min_note_s: shorter notes are dropped.
        offset_s: added to every time (the model's frames lag or lead the sound a little).
    """

    single_line: bool = False
    onset_threshold: float = 0.7
    frame_threshold: float = 0.5
    min_note_s: float = 0.05
    offset_s: float = -0.01

    def key(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def tuned_settings(single_line: bool) -> TranscriptionSettings:
    """The settings measured best on the validation split for a single line (saxophone and
    trumpet) or a piano; Basic Pitch's own defaults are 0.5, 0.3 and 0.128 s."""
    if single_line:
        return TranscriptionSettings(True, 0.5, 0.4, 0.05, -0.015)
    return TranscriptionSettings(False, 0.7, 0.5, 0.05, -0.01)


class Transcriber:
    """Runs the model on audio files or signals; the ONNX session is made on first use,
    with ``threads`` threads (0: onnxruntime's choice, one per core)."""

    def __init__(self, settings: TranscriptionSettings | None = None, threads: int = 1) -> None:
        self.settings = settings or tuned_settings(single_line=False)
        self.threads = threads
        self._session: Any = None

    def transcribe_file(self, path: Path) -> np.ndarray:
        """Notes (float32 [N, 4]: pitch, onset_s, offset_s, velocity) heard in an audio file.

        Raises:
            AudioError: the file cannot be read.
            TranscriptionError: no note is heard in it.
        """
        return self.transcribe_signal(read_audio(path, SAMPLE_RATE_HZ))

    def transcribe_signal(self, signal: np.ndarray) -> np.ndarray:
        """Notes heard in a mono signal at :data:`SAMPLE_RATE_HZ`."""
        note, onset, times_s = self.activations(signal)
        notes = notes_heard(signal, note, onset, times_s, self.settings)
        if len(notes) == 0:
            raise TranscriptionError("no notes heard (silence, or too quiet)")
        return notes

    def activations(self, signal: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The model's note and onset activations [frames, 88] and each frame's time."""
        half = OVERLAP_FRAMES // 2
        padded = np.concatenate([np.zeros(half * FRAME_HOP_SAMPLES, np.float32), signal])
        starts = np.arange(0, len(padded), WINDOW_HOP_SAMPLES)
        notes, onsets, times = [], [], []
        for first in range(0, len(starts), WINDOWS_PER_RUN):
            batch = np.zeros((len(starts[first : first + WINDOWS_PER_RUN]), WINDOW_SAMPLES, 1))
            for row, start in enumerate(starts[first : first + WINDOWS_PER_RUN]):
                window = padded[start : start + WINDOW_SAMPLES]
                batch[row, : len(window), 0] = window
            note, onset = self._run(batch.astype(np.float32))
            frames = note.shape[1]
            kept = slice(half, frames - half)
            for row, start in enumerate(starts[first : first + WINDOWS_PER_RUN]):
                notes.append(note[row, kept])
                onsets.append(onset[row, kept])
                frame = np.arange(half, frames - half)
                times.append((start + frame * FRAME_HOP_SAMPLES) / SAMPLE_RATE_HZ)
        times_s = np.concatenate(times) - half * FRAME_HOP_SAMPLES / SAMPLE_RATE_HZ
        inside = times_s < len(signal) / SAMPLE_RATE_HZ
        return np.concatenate(notes)[inside], np.concatenate(onsets)[inside], times_s[inside]

    def _run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self._session is None:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
            self._session = ort.InferenceSession(
                str(MODEL_PATH), options, providers=["CPUExecutionProvider"]
            )
        note, onset = self._session.run([_NOTE, _ONSET], {_INPUT: batch})
        return note, onset


def notes_heard(
    signal: np.ndarray,
    note: np.ndarray,
    onset: np.ndarray,
    times_s: np.ndarray,
    settings: TranscriptionSettings,
) -> np.ndarray:
    """The notes decoded from the model's activations of ``signal`` (see :func:`decode_notes`);
    a single line's velocities and note ends then come from the signal's loudness (see
    :mod:`antiphon.training.line_loudness`)."""
    notes = decode_notes(note, onset, times_s, settings)
    if settings.single_line and len(notes):
        power = power_db(signal)
        notes[:, 3] = line_velocities(power, SAMPLE_RATE_HZ, notes[:, 1])
        notes[:, 2] = line_releases(power, SAMPLE_RATE_HZ, notes)
    return notes


def decode_notes(
    note: np.ndarray, onset: np.ndarray, times_s: np.ndarray, settings: TranscriptionSettings
) -> np.ndarray:
    """Notes (float32 [N, 4]: pitch, onset_s, offset_s, velocity), sorted by onset, from the
    model's activations [frames, 88] (see the module docstring)."""
    count = len(note)
    if count < 3:
        return np.zeros((0, 4), np.float32)
    frame_s = FRAME_HOP_SAMPLES / SAMPLE_RATE_HZ
    min_frames = round(settings.min_note_s / frame_s)
    onset = np.maximum(onset, _inferred_onsets(note, onset))
    peak = np.zeros_like(onset, dtype=bool)
    peak[1:-1] = (onset[1:-1] > onset[:-2]) & (onset[1:-1] > onset[2:])
    frame_idx, key_idx = np.nonzero(peak & (onset >= settings.onset_threshold))
    order = np.argsort(-frame_idx, kind="stable")  # latest first, as Basic Pitch does
    energy = note.astype(np.float64).copy()
    found: list[tuple[int, int, int, float]] = []
    for start, key in zip(frame_idx[order], key_idx[order], strict=True):
        if start >= count - 1:
            continue
        end = _run_end(energy[:, key], start + 1, 1, settings.frame_threshold)
        if end - start <= min_frames:
            continue
        energy[start:end, max(0, key - 1) : key + 2] = 0.0
        found.append((start, end, key, float(note[start:end, key].mean())))
    while True:  # the Melodia trick: grow notes from the strongest activation left
        flat = int(np.argmax(energy))
        middle, key = divmod(flat, KEYS)
        if energy[middle, key] <= settings.frame_threshold:
            break
        energy[middle, key] = 0.0
        end = _run_end(energy[:, key], middle + 1, 1, settings.frame_threshold, energy, key)
        start = _run_end(energy[:, key], middle - 1, -1, settings.frame_threshold, energy, key)
        start += 1
        if end - start <= min_frames:
            continue
        found.append((start, end, key, float(note[start:end, key].mean())))
    if not found:
        return np.zeros((0, 4), np.float32)
    rows = np.asarray(found, np.float64)
    starts, ends = rows[:, 0].astype(int), np.minimum(rows[:, 1].astype(int), count - 1)
    notes = np.stack(
        [
            rows[:, 2] + LOWEST_PITCH,
            times_s[starts] + settings.offset_s,
            times_s[ends] + settings.offset_s,
            np.clip(np.round(127 * rows[:, 3]), 1, 127),
            _octave_above_ratios(rows, note),
        ],
        axis=1,
    )
    notes[:, 1:3] = np.maximum(notes[:, 1:3], 0.0)
    notes = notes[np.lexsort((rows[:, 2], starts))]  # by onset, then pitch
    if settings.single_line:
        notes = one_line(notes)
        notes[:, 0] += 12 * choose_octaves(notes[:, 0], notes[:, 1], notes[:, 2], notes[:, 4])
    return notes[:, :4].astype(np.float32)


def _run_end(
    column: np.ndarray,
    begin: int,
    step: int,
    threshold: float,
    spend: np.ndarray | None = None,
    key: int = 0,
) -> int:
    """Walk from ``begin`` by ``step`` while the activation holds (dips shorter than
    :data:`ENERGY_TOLERANCE_FRAMES` forgiven); the first frame past the note's end (or,
    walking back, the last frame before its start). With ``spend``, the frames walked over
    are spent there, on the key and its neighbours."""
    count = len(column)
    i, below = begin, 0
    while 0 < i < count - 1 and below < ENERGY_TOLERANCE_FRAMES:
        below = below + 1 if column[i] < threshold else 0
        if spend is not None:
            spend[i, max(0, key - 1) : key + 2] = 0.0
        i += step
    return i - step * below


def _inferred_onsets(note: np.ndarray, onset: np.ndarray, differences: int = 2) -> np.ndarray:
    """Onsets read from sudden rises of the note activation, scaled to the onsets' peak."""
    rises = []
    for n in range(1, differences + 1):
        shifted = np.concatenate([np.zeros((n, note.shape[1]), note.dtype), note])
        rises.append(shifted[n:] - shifted[:-n])
    rise = np.maximum(np.min(rises, axis=0), 0.0)
    rise[:differences] = 0.0
    peak = float(rise.max())
    return rise * (float(onset.max()) / peak) if peak > 0 else rise


def _octave_above_ratios(rows: np.ndarray, note: np.ndarray) -> np.ndarray:
    """Per note (row: start frame, end frame, key, strength): the mean activation of the key
    an octave above over the note, over that of its own key (0 at the top of the range)."""
    ratios = np.zeros(len(rows))
    for i, row in enumerate(rows):
        start, end, key = int(row[0]), max(int(row[1]), int(row[0]) + 1), int(row[2])
        if key + 12 < KEYS:
            here = max(float(note[start:end, key].mean()), 1e-6)
            ratios[i] = float(note[start:end, key + 12].mean()) / here
    return ratios


def choose_octaves(
    pitches: np.ndarray, onsets_s: np.ndarray, offsets_s: np.ndarray, above_ratios: np.ndarray
) -> np.ndarray:
    """For each note of a line, 1 to move it up an octave, else 0: the cheapest path, where
    moving costs ``OCTAVE_EVIDENCE_WEIGHT * (OCTAVE_EVIDENCE_RATIO - ratio)`` (less than
    nothing when the octave above is the more active) and a leap of more than a fifth
    between notes less than ``PHRASE_GAP_S`` apart costs ``LEAP_COST`` per octave beyond."""
    count = len(pitches)
    choice = np.zeros(count, np.int64)
    if count == 0:
        return choice
    evidence = np.zeros((count, 2))
    evidence[:, 1] = OCTAVE_EVIDENCE_WEIGHT * (OCTAVE_EVIDENCE_RATIO - above_ratios)
    evidence[above_ratios < OCTAVE_MIN_RATIO, 1] = np.inf
    cost = evidence[0].copy()
    back = np.zeros((count, 2), np.int64)
    for i in range(1, count):
        joined = onsets_s[i] - offsets_s[i - 1] < PHRASE_GAP_S
        new = np.empty(2)
        for octave in (0, 1):
            steps = []
            for before in (0, 1):
                leap = abs(pitches[i] + 12 * octave - pitches[i - 1] - 12 * before)
                steps.append(cost[before] + (LEAP_COST * max(0.0, leap - 7) / 12 if joined else 0))
            back[i, octave] = int(np.argmin(steps))
            new[octave] = min(steps) + evidence[i, octave]
        cost = new
    choice[-1] = int(np.argmin(cost))
    for i in range(count - 1, 0, -1):
        choice[i - 1] = back[i, choice[i]]
    return choice


def one_line(notes: np.ndarray) -> np.ndarray:
    """One note at a time, from notes sorted by onset: of the notes starting within
    :data:`LINE_ONSET_GROUP_S` of a group's first, the most salient (see
    :data:`LINE_PITCH_BONUS`) is kept; each kept note ends where the next begins."""
    if len(notes) == 0:
        return notes.copy()
    kept, group_start = [], 0
    salience = notes[:, 3] + LINE_PITCH_BONUS * notes[:, 0]
    for i in range(1, len(notes) + 1):
        if i == len(notes) or notes[i, 1] - notes[group_start, 1] > LINE_ONSET_GROUP_S:
            kept.append(group_start + int(np.argmax(salience[group_start:i])))
            group_start = i
    line = notes[kept].copy()
    line[:-1, 2] = np.minimum(line[:-1, 2], line[1:, 1])
    return line[line[:, 2] > line[:, 1]]


class TranscriptionCache:
    """Finished transcriptions by the audio's content and the settings: a folder of
    ``<sha256>.npy`` files, each written whole or not at all."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def key(self, audio: Path, settings: TranscriptionSettings) -> str:
        digest = hashlib.sha256()
        digest.update(f"{settings.key()} decoding {DECODING_VERSION}".encode())
        digest.update(_model_digest().encode())
        with Path(audio).open("rb") as data:
            for block in iter(lambda: data.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()

    def get(self, key: str) -> np.ndarray | None:
        try:
            return np.load(self.folder / f"{key}.npy")
        except (OSError, ValueError):
            return None

    def put(self, key: str, notes: np.ndarray) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        partial = self.folder / f"{key}.{os.getpid()}.partial.npy"
        np.save(partial, notes.astype(np.float32))
        partial.replace(self.folder / f"{key}.npy")


_MODEL_DIGEST: list[str] = []


def _model_digest() -> str:
    if not _MODEL_DIGEST:
        _MODEL_DIGEST.append(hashlib.sha256(MODEL_PATH.read_bytes()).hexdigest())
    return _MODEL_DIGEST[0]


def transcribe_cached(
    path: Path, transcriber: Transcriber, cache: TranscriptionCache | None
) -> tuple[np.ndarray, bool]:
    """Notes of an audio file, from the cache when it was transcribed with these settings
    before; and whether they came from the cache."""
    key = cache.key(path, transcriber.settings) if cache is not None else ""
    if cache is not None:
        cached = cache.get(key)
        if cached is not None:
            return cached, True
    notes = transcriber.transcribe_file(path)
    if cache is not None:
        cache.put(key, notes)
    return notes, False
