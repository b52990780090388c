"""A single line's dynamics and articulation from the recording's loudness.

Basic Pitch's activations hardly follow loudness (the model is trained to hear notes at any
level), and its note activation rings on through the room until the next note starts. On
the training soloists' saxophone renders (below) the mean activation over a note correlates
0.09 with the MIDI velocity it was rendered from, and 74 % of the notes ran on to the next
onset (27 % in the MIDI). The audio's own short-time power says both better:

- **Velocity**: a note's level is the peak power from just before its onset to 100 ms after
  it (or to the next onset, if sooner), in dB (correlation 0.71 with the MIDI velocity
  within a recording). Levels are taken relative to the recording's median note level, so
  the gain a recording was made at does not matter, and mapped to velocities by a monotone
  curve (:data:`LEVEL_KNOTS_DB` to :data:`VELOCITY_KNOTS`).
- **Release**: a note ends after the last frame whose power is within
  :data:`RELEASE_DROP_DB` of the note's peak, so the gap before the next note is heard
  (F1 with offsets 0.70 -> 0.91 on those renders).

Both were fitted on the first 30 s of the 181 solos of jazz-solos-dev's 31 training
soloists (split by soloist, seed 0), rendered as tenor saxophone by fluidsynth (FluidR3_GM;
BENCHMARKS.md, "Transcription"), never on the held-out soloists, by scripts kept with the
benchmark notes, now ``python -m antiphon.training.line_loudness_fit``
(:mod:`antiphon.training.line_loudness_fit`). The velocity curve is
quantile matching: the quantiles (1, 5, 10, 20, ..., 90, 95, 99 %) of the transcribed
notes' relative levels against the same quantiles of the MIDI velocities' distance from
their file's median velocity, plus the median of those medians (108). The release drop was
chosen in the middle of the plateau of F1 with offsets over 3 to 18 dB: 8 to 11 dB all
gave 0.910 to 0.911 (9 dB: 0.910).
"""

from __future__ import annotations

import numpy as np

FRAME_SAMPLES = 128  # short-time power frames (5.8 ms at 22050 Hz)
BEFORE_ONSET_S = 0.01  # the transcribed onset may come a frame late
LEVEL_WINDOW_S = 0.1
MIN_WINDOW_S = 0.03
# Relative level (dB from the recording's median note level) -> velocity; flat beyond the
# ends. Fitted as the module docstring says.
LEVEL_KNOTS_DB = (-70.5, -4.1, -3.0, -1.8, -1.0, -0.4, 0.0, 0.4, 0.8, 1.3, 2.0, 2.5, 3.6)
VELOCITY_KNOTS = (85, 93, 97, 101, 104, 106, 108, 110, 112, 114, 117, 120, 125)
RELEASE_DROP_DB = 9.0
MIN_RELEASE_FRAMES = 4  # a shorter note keeps the end its activation gave


def power_db(signal: np.ndarray) -> np.ndarray:
    """Short-time power (dB) of :data:`FRAME_SAMPLES`-sample frames."""
    frames = len(signal) // FRAME_SAMPLES
    blocks = signal[: frames * FRAME_SAMPLES].astype(np.float64).reshape(frames, FRAME_SAMPLES)
    return 10 * np.log10(np.mean(blocks**2, axis=1) + 1e-12)


def note_levels_db(power: np.ndarray, rate_hz: int, onsets_s: np.ndarray) -> np.ndarray:
    """Each note's level: the peak of ``power`` (per frame, dB) from :data:`BEFORE_ONSET_S`
    before its onset to :data:`LEVEL_WINDOW_S` after it, or to the next onset if that is
    sooner (but at least :data:`MIN_WINDOW_S`). ``onsets_s`` sorted."""
    if len(power) == 0 or len(onsets_s) == 0:
        return np.zeros(len(onsets_s))
    following = np.append(onsets_s[1:], np.inf)
    ends_s = np.maximum(np.minimum(onsets_s + LEVEL_WINDOW_S, following), onsets_s + MIN_WINDOW_S)
    first = _frame(onsets_s - BEFORE_ONSET_S, rate_hz, len(power) - 1)
    last = np.maximum(_frame(ends_s, rate_hz, len(power)), first + 1)
    return np.array([power[a:b].max() for a, b in zip(first, last, strict=True)])


def line_velocities(power: np.ndarray, rate_hz: int, onsets_s: np.ndarray) -> np.ndarray:
    """MIDI velocities (1..127) of a single line's notes, from the level at each onset
    relative to the recording's median note level (see the module docstring)."""
    levels = note_levels_db(power, rate_hz, onsets_s)
    if len(levels) == 0:
        return levels
    velocities = np.interp(levels - np.median(levels), LEVEL_KNOTS_DB, VELOCITY_KNOTS)
    return np.clip(np.round(velocities), 1, 127)


def line_releases(
    power: np.ndarray, rate_hz: int, notes: np.ndarray, drop_db: float = RELEASE_DROP_DB
) -> np.ndarray:
    """Each note's end (s): after the last frame, before its present end, whose power is
    within ``drop_db`` of its peak (the peak over its first :data:`LEVEL_WINDOW_S`); never
    later than the end it had. ``notes``: pitch, onset_s, offset_s, ... rows."""
    ends = notes[:, 2].astype(np.float64).copy()
    first = _frame(notes[:, 1], rate_hz, len(power))
    last = _frame(notes[:, 2], rate_hz, len(power))
    window = max(1, round(LEVEL_WINDOW_S * rate_hz / FRAME_SAMPLES))
    for i, (a, b) in enumerate(zip(first, last, strict=True)):
        if b - a < MIN_RELEASE_FRAMES:
            continue
        heard = power[a:b]
        loud = np.nonzero(heard >= heard[:window].max() - drop_db)[0]
        ends[i] = min(ends[i], (a + loud[-1] + 1) * FRAME_SAMPLES / rate_hz)
    return ends


def _frame(times_s: np.ndarray, rate_hz: int, limit: int) -> np.ndarray:
    return np.clip((np.asarray(times_s) * rate_hz / FRAME_SAMPLES).astype(int), 0, limit)
