"""``antiphon eval-clock`` against the player's own beats, where a performance has them.

ASAP (Foscarin et al., ISMIR 2020) keeps, beside each performance ``X.mid``, the beats a
musician annotated on it: ``X_annotations.txt``, a line a beat (its time in seconds, the time
again, a label). Where that file is there, a take is also measured against the player's own
tempo, as played (no stretch): the tempo over the 4 beats around each beat (``SPAN_BEATS``),
which a band would follow, and not each beat's own length, which wavers with the touch.

- *The clock behind the player*: how many beats the outgoing clock's tempo (at the player's
  level: a clock at twice or half or another metrical level of the annotated beat is compared
  at that level) trails the player's, the shift that fits best (least squares on the log of
  tempo, -4 to 16 beats), and the misfit left (root mean square, % of tempo).
- *Bounded clocks that know the beats*: the same for two clocks that step toward a tempo they
  are told by at most ``MAX_TEMPO_STEP`` a beat, as the outgoing clock does. One is told the
  player's tempo at every beat ahead of time: where even it trails by more than 2 beats, the
  player's tempo moves faster than the bound lets any clock follow. The other is told each
  beat as it is played and steps toward the tempo of the beat just played: a live clock with
  a perfect ear (one way of following; it does not bound what a live clock can do).
- *How fast the player's tempo moves*: the change of the tempo from one bar (4 beats) to the
  next, a beat, and the share of the bars where it is more than the bound.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from antiphon.daemon.musician.clocks.clock_out import MAX_TEMPO_STEP
from antiphon.daemon.musician.hearing.tempo_follower import nearest_level

ANNOTATIONS_SUFFIX = "_annotations.txt"
SPAN_BEATS = 4  # the player's tempo at a beat: over this many beats around it
MIN_BEATS = 24  # fewer annotated beats in a take: not measured against them
SHIFTS_BEATS = np.arange(-4.0, 16.0 + 1e-9, 0.25)  # the shifts tried


class AnnotationError(ValueError):
    """A beat annotation file that cannot be read as one."""


def annotations_beside(performance: Path) -> Path | None:
    """ASAP's beat annotations of a performance MIDI file, where they are beside it."""
    path = performance.with_name(performance.stem + ANNOTATIONS_SUFFIX)
    return path if path.is_file() else None


def read_beats(path: Path) -> np.ndarray:
    """The beat times (seconds) of an annotation file: each line's first field, rising."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise AnnotationError(f"{path}: not readable ({err})") from err
    beats: list[float] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            beat_s = float(line.split()[0])
        except ValueError:
            raise AnnotationError(f"{path}: line {number} is not a beat time: {line!r}") from None
        if not math.isfinite(beat_s) or (beats and beat_s <= beats[-1]):
            raise AnnotationError(f"{path}: line {number}: the beats do not rise ({line!r})")
        beats.append(beat_s)
    return np.array(beats, np.float64)


def player_tempo(beats: np.ndarray) -> np.ndarray:
    """The player's tempo (bpm) at each beat but the first and last ``SPAN_BEATS / 2``: over
    the ``SPAN_BEATS`` beats around it."""
    return 60.0 * SPAN_BEATS / (beats[SPAN_BEATS:] - beats[:-SPAN_BEATS])


def tempo_change_a_beat(beats: np.ndarray) -> np.ndarray:
    """How much the player's tempo changes from each bar (``SPAN_BEATS`` beats) to the next,
    a beat (a share of the tempo)."""
    bars_s = np.diff(beats[::SPAN_BEATS])
    return np.abs(bars_s[:-1] / bars_s[1:] - 1.0) / SPAN_BEATS


def bounded_clock(tempo_bpm: np.ndarray) -> np.ndarray:
    """A clock told ``tempo_bpm`` at each beat that steps toward it by at most
    ``MAX_TEMPO_STEP`` a beat (from the first)."""
    out = np.empty_like(tempo_bpm)
    out[0] = tempo_bpm[0]
    for k in range(1, len(tempo_bpm)):
        limit = MAX_TEMPO_STEP * out[k - 1]
        out[k] = out[k - 1] + max(-limit, min(limit, tempo_bpm[k] - out[k - 1]))
    return out


def shift_behind(clock_bpm: np.ndarray, tempo_bpm: np.ndarray) -> tuple[float, float]:
    """(beats, misfit as a share of tempo) the clock's tempo trails the player's, a tempo a
    beat in each (NaN where the clock did not run); the clock is taken at the metrical level
    of the player's tempo nearest its own."""
    ran = np.isfinite(clock_bpm)
    level = float(np.median(clock_bpm[ran] / tempo_bpm[ran]))
    clock = np.log(clock_bpm[ran] * (nearest_level(level, 1.0) / level))
    beats = np.arange(len(tempo_bpm), dtype=np.float64)
    played = np.log(tempo_bpm)
    errors = [
        float(np.mean((clock - np.interp(beats[ran] - shift, beats, played)) ** 2))
        for shift in SHIFTS_BEATS
    ]
    best = int(np.argmin(errors))
    return float(SHIFTS_BEATS[best]), math.sqrt(errors[best])


def against_beats(
    clock_at: Callable[[np.ndarray], np.ndarray], beats: np.ndarray
) -> dict[str, Any] | None:
    """A take's figures against the player's ``beats`` (the take's times): ``clock_at`` reads
    the outgoing tempo at given times (NaN before it ran). None with too few beats, or where
    the clock ran at fewer than half of them."""
    if len(beats) < MIN_BEATS:
        return None
    tempo_bpm = player_tempo(beats)
    half = SPAN_BEATS // 2
    clock_bpm = clock_at(beats[half:-half])
    if np.sum(np.isfinite(clock_bpm)) < len(clock_bpm) / 2:
        return None
    shift, misfit = shift_behind(clock_bpm, tempo_bpm)
    ahead_shift, ahead_misfit = shift_behind(bounded_clock(tempo_bpm), tempo_bpm)
    # the tempo of the beat just played, at each beat of tempo_bpm (beats[half:-half])
    just_played_bpm = 60.0 / np.diff(beats)[half - 1 : -half]
    live_shift, live_misfit = shift_behind(bounded_clock(just_played_bpm), tempo_bpm)
    changes = tempo_change_a_beat(beats)
    return {
        "beats": len(beats),
        "shift_beats": shift,
        "misfit_percent": 100.0 * misfit,
        "told_ahead_shift_beats": ahead_shift,
        "told_ahead_misfit_percent": 100.0 * ahead_misfit,
        "told_live_shift_beats": live_shift,
        "told_live_misfit_percent": 100.0 * live_misfit,
        "tempo_change_a_beat_percent": 100.0 * float(np.median(changes)),
        "bars_beyond_the_bound": float(np.mean(changes > MAX_TEMPO_STEP)),
    }


def summarise(rows: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The takes measured against their beats (rows' ``against_beats``); None when none was."""
    measured = [r["against_beats"] for r in rows if r.get("against_beats")]
    if not measured:
        return None

    def within(key: str) -> float:
        return float(np.mean([abs(m[key]) <= 2.0 for m in measured]))

    def median(key: str) -> float:
        return float(np.median([m[key] for m in measured]))

    return {
        "takes": len(measured),
        "within_2_beats": within("shift_beats"),
        "shift_beats_median": median("shift_beats"),
        "misfit_percent_median": median("misfit_percent"),
        "told_ahead_within_2_beats": within("told_ahead_shift_beats"),
        "told_ahead_shift_beats_median": median("told_ahead_shift_beats"),
        "told_live_within_2_beats": within("told_live_shift_beats"),
        "told_live_shift_beats_median": median("told_live_shift_beats"),
        "tempo_change_a_beat_percent_median": median("tempo_change_a_beat_percent"),
        "bars_beyond_the_bound_median": median("bars_beyond_the_bound"),
    }


def format_summary(summary: dict[str, Any]) -> str:
    return (
        f"  against the player's annotated beats ({summary['takes']} takes, as played): the "
        f"clock trails the player's tempo by a median {summary['shift_beats_median']:.1f} beats, "
        f"within 2 beats in {100 * summary['within_2_beats']:.0f} % (misfit median "
        f"{summary['misfit_percent_median']:.1f} %); clocks bound as it is "
        f"({100 * MAX_TEMPO_STEP:.2f} % a beat) told the player's tempo ahead of time: "
        f"{summary['told_ahead_shift_beats_median']:.1f} beats, within 2 in "
        f"{100 * summary['told_ahead_within_2_beats']:.0f} %; told each beat as it is played: "
        f"{summary['told_live_shift_beats_median']:.1f} beats, within 2 in "
        f"{100 * summary['told_live_within_2_beats']:.0f} %; the player's tempo moves "
        f"{summary['tempo_change_a_beat_percent_median']:.2f} % a beat (bar to bar, median), "
        f"more than the bound in {100 * summary['bars_beyond_the_bound_median']:.0f} % of the bars"
    )
