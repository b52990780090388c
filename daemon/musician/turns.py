"""Turn-taking: how long to wait, once the player is silent, before the call counts as over.

A fixed phrase gap is wrong both ways: a breath inside a phrase outlasts a short gap, and a
long gap makes every answer late. :class:`TurnJudge` decides instead, at the moment the
player falls silent (no key held, none sustained by the pedal), how long this silence must
last to be the end of the call. The answer is a wait known in advance, so the performer
keeps a deadline and the reply is still made ahead of it
(:mod:`antiphon.daemon.musician.speculation`); the first note leaves at the deadline itself.

What it listens to:

- The model's own expectation. After the player's last release the engine's logits are the
  distribution of the next token; its time-shift tokens (log-spaced, see
  :class:`~antiphon.daemon.codec.Vocabulary`) give the distribution of the silence before
  the player's next note (:func:`silence_survival`). No extra inference: the logits are
  there already, and the engine's state is not touched.
- The player's own pauses in this performance (:class:`PauseHistory`): after a silence of
  ``t`` seconds, how often did this player go on within the next moments? That evidence is
  blended with the model's, the model counting as ``PRIOR_PAUSES`` pauses: a player who
  breathes a lot is waited for.
- The shape of the call's end (:class:`RecentNotes`). A phrase's last note is held longer
  than the notes before it (final lengthening); the longer the last note was held against
  the call's recent notes, the likelier the silence after it is an end. And how the playing
  stopped, weighed by ``ENDING_WEIGHTS`` (fitted on the training splits, piano and single
  lines together): a long last note, a slow pulse, a last chord softer than the ones before
  and, most of all, a silence that began late after the last onset (a note held past the
  usual interval between onsets) say "end"; a short, loud, on-the-pulse last note says
  "breath". On the piano the model's expectation alone hears a dramatic rest after ordinary
  notes as a breath; these tell more of them apart. On single-line material, where the
  piano-trained model is out of its element, they carry the most (the model's own
  expectation is also tempered there, by ``MODEL_WEIGHT``).
- The beat, where one is known (:class:`BeatHint`, from any :class:`BeatSource`): a rest
  that lasts to the next beat is part of the phrase, so the wait runs at least to just after
  the next beat.

The rule: the call is over at the first ``t`` (from ``min_gap_s`` on) where the chance that
the player goes on within ``HORIZON_S``, having been silent for ``t``, falls below a
threshold set by ``eagerness`` (1: answer at the first hint of an end; 0: only when the
player will almost surely not go on); at the latest at ``longest_s`` (the phrase gap).

Pure: numbers in, a wait out; no clock, no engine. Used on the performer's thread
(:meth:`~antiphon.daemon.musician.performer.Performer._judge_silence`), which asks its
``beat_source`` (None until a beat tracker or a MIDI clock is given it) for the next beat
when a silence begins. ``antiphon eval-turns`` measures it
(:mod:`antiphon.daemon.tools.turns_eval`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from antiphon.daemon.codec import Vocabulary
from antiphon.daemon.musician.beat import ONSET_GROUP_S
from antiphon.daemon.musician.phrase import MIN_GAP_S

STEP_S = 0.01  # the waits tried, from MIN_GAP_S to the longest wait
# Tuned on the validation splits of the piano corpus and of the single-line corpus
# (BENCHMARKS.md, "Turn-taking"):
HORIZON_S = 0.3  # "the player goes on" means: a note within this of now
# The threshold on that chance: this at eagerness 0.5, its log-odds moved by this much from
# eagerness 0 to 1.
THRESHOLD = 0.35
EAGERNESS_SPAN = 4.0
MODEL_WEIGHT = 0.75  # the model's log-odds of going on are scaled by this
PRIOR_PAUSES = 64.0  # the model's expectation weighs as much as this many of the player's
LENGTHENING_POWER = 2.0  # odds of going on / (last note's length / recent median) ** this
# Fitted on the training splits (the piano's and the single lines'; see RecentNotes.ending):
# log odds of going on += these weights . (log last key's length, log recent interval between
# onset groups, last group's loudness / recent, log time from the last group's start in
# those intervals).
ENDING_WEIGHTS = np.array((-0.90, -1.37, 0.61, -4.23))
NOTES_KEPT = 16  # the recent notes the last one is compared with
PAUSES_KEPT = 256  # the player's last silences remembered
AUTO_PHRASE_GAP_S = 0.8  # the longest wait these were tuned with: a breath can be waited out
BEAT_CONFIDENCE = 0.5  # a beat hint below this confidence is not followed
BEAT_GRACE_S = 0.06  # a note this late after the beat is still on it


@dataclass(frozen=True)
class BeatHint:
    """The next beat the player's time implies, and how sure the tracker is (0 to 1)."""

    next_beat_s: float
    confidence: float


class BeatSource(Protocol):
    """Anything that knows the beat (a beat tracker, a MIDI clock): the next beat after a
    moment, or None when no beat is known."""

    def beat_after(self, time_s: float) -> BeatHint | None: ...


def threshold_for(eagerness: float) -> float:
    """The chance of going on below which the call is over, for an eagerness in [0, 1]."""
    eagerness = min(1.0, max(0.0, eagerness))
    log_odds = math.log(THRESHOLD / (1.0 - THRESHOLD)) + (eagerness - 0.5) * EAGERNESS_SPAN
    return 1.0 / (1.0 + math.exp(-log_odds))


def silence_survival(logits: np.ndarray, vocabulary: Vocabulary, times_s: np.ndarray) -> np.ndarray:
    """P(the silence lasts longer than each of ``times_s``), as the model expects it.

    ``logits`` are the engine's scores for the next token right after the player's last
    release (temperature 1: the model's expectation, not how boldly a reply samples). A
    note-on or velocity token means the next note follows at once; a time shift of bin k
    means a silence of about ``time_shifts_s[k]`` (the top bin: that long or longer);
    note-offs (nothing is sounding) are left out. The silence's distribution function is
    interpolated in log time between the bins' edges.
    """
    v = vocabulary
    peak = float(logits.max())
    weights = np.exp(logits.astype(np.float64) - peak)
    at_once = weights[v.note_on_base : v.note_off_base].sum() + weights[v.velocity_base :].sum()
    shifts = weights[v.time_shift_base : v.velocity_base]
    total = at_once + shifts.sum()
    # Distribution function at each bin's upper edge (the geometric mean with the next bin).
    centres = np.asarray(v.time_shifts_s)
    edges = np.sqrt(centres[:-1] * centres[1:])
    below = (at_once + np.cumsum(shifts[:-1])) / total
    survival = 1.0 - np.interp(np.log(times_s), np.log(edges), below, left=at_once / total)
    # Beyond the top bin's lower edge the model says only "this long or longer".
    return np.asarray(np.clip(survival, 0.0, 1.0))


class PauseHistory:
    """The player's silences in this performance (last release to next note), newest kept."""

    def __init__(self, kept: int = PAUSES_KEPT) -> None:
        self._pauses = np.zeros(kept, np.float64)
        self._count = 0

    def __len__(self) -> int:
        return min(self._count, self._pauses.shape[0])

    def add(self, silence_s: float) -> None:
        self._pauses[self._count % self._pauses.shape[0]] = silence_s
        self._count += 1

    def clear(self) -> None:
        self._count = 0

    def going_on(self, times_s: np.ndarray, horizon_s: float) -> tuple[np.ndarray, np.ndarray]:
        """For each ``t`` of ``times_s``: how many pauses lasted longer than ``t``, and how
        many of those ended within ``horizon_s`` after ``t`` (the player went on)."""
        pauses = np.sort(self._pauses[: len(self)])
        longer = len(pauses) - np.searchsorted(pauses, times_s, side="right")
        beyond = len(pauses) - np.searchsorted(pauses, times_s + horizon_s, side="right")
        return longer.astype(np.float64), (longer - beyond).astype(np.float64)


class RecentNotes:
    """How the player has just been playing: how long each of the last ``kept`` keys was
    held, and the onset groups (notes struck within ``ONSET_GROUP_S`` of the one before):
    their times, sizes and loudness."""

    def __init__(self, kept: int = NOTES_KEPT) -> None:
        self._pressed_s: dict[tuple[int, int], float] = {}
        self._lengths = np.zeros(kept, np.float64)
        self._count = 0
        self._iois = np.zeros(kept, np.float64)  # between the starts of successive groups
        self._loudness = np.zeros(kept, np.float64)  # each group's mean velocity
        self._groups = 0
        self._group_start_s = -np.inf
        self._group_onset_s = -np.inf  # the group's latest onset: the chain goes on from it
        self._group_size = 0
        self._group_velocity = 0.0

    def key_down(self, key: tuple[int, int], time_s: float, velocity: int) -> None:
        self._pressed_s[key] = time_s
        if time_s - self._group_onset_s > ONSET_GROUP_S:
            if self._groups:  # the interval from the group before: the (groups - 1)th
                slot = (self._groups - 1) % self._iois.shape[0]
                self._iois[slot] = time_s - self._group_start_s
            self._groups += 1
            self._group_start_s = time_s
            self._group_size = 0
            self._group_velocity = 0.0
        self._group_onset_s = time_s
        self._group_size += 1
        self._group_velocity += velocity
        slot = (self._groups - 1) % self._loudness.shape[0]
        self._loudness[slot] = self._group_velocity / self._group_size

    def key_up(self, key: tuple[int, int], time_s: float) -> None:
        pressed_s = self._pressed_s.pop(key, None)
        if pressed_s is not None:
            self._lengths[self._count % self._lengths.shape[0]] = time_s - pressed_s
            self._count += 1

    def all_up(self) -> None:
        """Every key let go at once (All Notes Off, a lost note-off): no length is known."""
        self._pressed_s.clear()

    def lengthening(self) -> float:
        """The last key's length over the median of the recent ones (1 when unknown)."""
        count = min(self._count, self._lengths.shape[0])
        if count == 0:
            return 1.0
        median = float(np.median(self._lengths[:count]))
        return float(max(self._last_length(), 1e-3) / max(median, 1e-3))

    def _last_length(self) -> float:
        return float(self._lengths[(self._count - 1) % self._lengths.shape[0]])

    def ending(self, silence_start_s: float) -> np.ndarray:
        """What the end of the playing says, as ``ENDING_WEIGHTS`` weighs it: the log of the
        last key's length (s), the log of the median interval between the recent groups (s),
        the last group's loudness against the recent groups', and the log of the time from
        the last group's start to the silence, in those intervals."""
        groups = min(self._groups, self._loudness.shape[0])
        if groups == 0 or self._count == 0:
            return np.zeros(len(ENDING_WEIGHTS))
        iois = min(self._groups - 1, self._iois.shape[0])
        interval_s = max(float(np.median(self._iois[:iois])) if iois else 0.5, 0.02)
        last = self._loudness[(self._groups - 1) % self._loudness.shape[0]]
        loudness = last / max(float(np.median(self._loudness[:groups])), 1.0)
        since = (silence_start_s - self._group_start_s) / interval_s
        return np.array(
            (
                np.log(max(self._last_length(), 0.01)),
                np.log(interval_s),
                min(loudness, 3.0),
                np.log(max(since, 0.01)),
            )
        )


class TurnJudge:
    """Decides how long a silence must last to end the call (see the module docstring).

    Args:
        vocabulary: the model's codec vocabulary (its time-shift bins).
        min_gap_s: the shortest wait.
        horizon_s: how soon the player must go on for a silence to count as a breath.
    """

    def __init__(
        self, vocabulary: Vocabulary, min_gap_s: float = MIN_GAP_S, horizon_s: float = HORIZON_S
    ) -> None:
        self.vocabulary = vocabulary
        self.min_gap_s = min_gap_s
        self.horizon_s = horizon_s
        self.pauses = PauseHistory()
        self.notes = RecentNotes()
        self._longest_s = -1.0
        self._times_s = np.zeros(0)

    def _grid(self, longest_s: float) -> np.ndarray:
        if longest_s != self._longest_s:  # made again only when the phrase gap changes
            count = max(1, round((longest_s - self.min_gap_s) / STEP_S) + 1)
            self._times_s = np.linspace(self.min_gap_s, max(self.min_gap_s, longest_s), count)
            self._longest_s = longest_s
        return self._times_s

    def going_on(
        self, logits: np.ndarray, longest_s: float, silence_start_s: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """The waits tried and, for each, the chance that the player goes on within the
        horizon having been silent that long: the model's and the player's evidence."""
        times_s = self._grid(longest_s)
        horizon_s = self.horizon_s
        grid = np.concatenate((times_s, times_s + horizon_s))
        survival = silence_survival(logits, self.vocabulary, grid)
        now, later = survival[: len(times_s)], survival[len(times_s) :]
        model = np.clip((now - later) / np.maximum(now, 1e-9), 1e-6, 1.0 - 1e-6)
        model = 1.0 / (1.0 + ((1.0 - model) / model) ** MODEL_WEIGHT)  # tempered log-odds
        longer, went_on = self.pauses.going_on(times_s, horizon_s)
        chance = (went_on + PRIOR_PAUSES * model) / (longer + PRIOR_PAUSES)
        odds = chance / np.maximum(1.0 - chance, 1e-9)
        odds *= self.notes.lengthening() ** -LENGTHENING_POWER
        odds *= np.exp(ENDING_WEIGHTS @ self.notes.ending(silence_start_s))
        return times_s, odds / (1.0 + odds)

    def wait_s(
        self,
        logits: np.ndarray,
        eagerness: float,
        longest_s: float,
        silence_start_s: float = 0.0,
        beat: BeatHint | None = None,
    ) -> float:
        """How long the silence that began at ``silence_start_s`` must last to end the call,
        between ``min_gap_s`` and ``longest_s``."""
        if longest_s <= self.min_gap_s:
            return longest_s
        times_s, chance = self.going_on(logits, longest_s, silence_start_s)
        ended = np.flatnonzero(chance < threshold_for(eagerness))
        wait_s = float(times_s[ended[0]]) if len(ended) else longest_s
        if beat is not None and beat.confidence >= BEAT_CONFIDENCE:
            to_beat_s = beat.next_beat_s - silence_start_s + BEAT_GRACE_S
            wait_s = max(wait_s, min(to_beat_s, longest_s))
        return min(max(wait_s, self.min_gap_s), longest_s)

    def key_down(self, key: tuple[int, int], time_s: float, velocity: int) -> None:
        self.notes.key_down(key, time_s, velocity)

    def key_up(self, key: tuple[int, int], time_s: float) -> None:
        self.notes.key_up(key, time_s)

    def all_up(self) -> None:
        self.notes.all_up()

    def heard_pause(self, silence_s: float) -> None:
        """The player went on after a silence of ``silence_s``."""
        self.pauses.add(silence_s)
