"""Turn-taking: how long to wait, once the player is silent, before the call counts as over.

A fixed phrase gap is wrong both ways: a breath inside a phrase outlasts a short gap, and a
long gap makes every answer late. :class:`TurnJudge` decides instead, at the moment the
player falls silent (no key held, none sustained by the pedal), how long this silence must
last to be the end of the call. The answer is a wait known in advance, so the performer
keeps a deadline and the reply is still made ahead of it
(:mod:`antiphon.daemon.musician.answering.speculation`); the first note leaves at the deadline
itself.

What it listens to: a small hazard, "will the player go on within ``HORIZON_S``, having
been silent ``t``?", a logistic function of cues that do not depend on tempo or style
(:meth:`RecentNotes.cues`): the last key's length against the recent ones (final
lengthening), the time from the last onset to the silence and the last interval between
onsets, both in the player's own recent interval between onsets, the last chord's loudness
against the recent ones, the last note's pitch against the recent ones and the step to it;
and the silence so far, in seconds and in the player's intervals (how overdue the next onset
is). (The tempo itself and the length of the phrase so far are the style, not the phrase's
end: they told ends from breaths in opposite ways in different kinds of playing, so they are
not cues.) Its weights (:data:`SHIPPED`) were fitted across three kinds of playing
(classical piano, improvised jazz solos, rendered single lines) by ``antiphon fit-turns``
(:mod:`antiphon.training.turns_fit`; BENCHMARKS.md, "Turn-taking"), on the cues that tell
ends from breaths the same way in all of them; it also measures them on each kind left out
of the fit.

It adapts to the player (:meth:`TurnJudge.heard_pause`): every silence, once the player goes
on, says what the hazard should have said at each moment of it where the judge decides (every
``CALIBRATION_STEP_S`` from the earliest answer on, as long as it lasted: did the next note come
within ``HORIZON_S``?). The
player's own intercept (``player_bias``) is the one that makes the hazard's chances match
what this player did, over their last ``CALIBRATION_KEPT`` such moments, held toward the
fitted intercept by a prior worth ``calibration_prior`` moments (a maximum a posteriori
logistic intercept, two Newton steps each time a silence begins). Every silence teaches it,
the breaths and the ends alike, so after a minute of playing it knows the player's
breathing: the cues' weights carry across kinds of playing (they were fitted across
three), the intercept does not (a bebop soloist goes on after a silence far more often than
a pianist does). The chances it gives are those the judge goes by before the player's own
threshold is known (below), and after the early moment.

The shipped model's expectation of the next onset is not used: it was learned on classical
piano only, and the earlier judge, which leaned on it, waited 0.8 s on most real ends of jazz
solos. The beat, where one is known (:class:`BeatHint`, from any :class:`BeatSource`): a
rest that lasts to the next beat is part of the phrase, so the wait runs at least to just
after the next beat.

The rule: the judge answers early or late. At the hazard's ``earliest_s`` (0.24 s: the
latest moment an answer still comes within ``QUICK_S``) the call is over if the hazard's
log-odds of going on are below the player's own threshold (:meth:`TurnJudge.early_threshold`):
the one that, over their last ``BUDGET_KEPT`` silences, would have answered inside as many
of their breaths as a fixed ``REFERENCE_GAP_S`` gap did, times ``BUDGET_SPAN * eagerness``
(their budget of false answers, spent on the silences that look most like ends). Until the
player has used some, the threshold leans toward the fitted one (a chance of going on of
:func:`threshold_for` the eagerness, with the player's intercept), by ``BUDGET_PRIOR`` such
breaths. So the threshold comes from the player: a bebop soloist's many breaths of a third
of a second buy as many early answers as the fixed gap would have spent inside them, and the
cues decide which silences get them; never one where the player goes on at least
``EARLY_CEILING`` surely, by the hazard with their intercept (a player who only breathes is
not answered inside every breath because a fixed gap would be). Later in the silence it
answers only where the chance of going on falls ``LATE_LOG_ODDS`` below the fitted
threshold; at the latest at ``longest_s`` (the phrase gap). Why one early moment: the ends
the judge is sure of are answered within a quarter second, and the silences it is unsure of
are waited out rather than answered between a quarter second and the end of a breath, where
an answer falls inside a breath as often as not and is no sooner to the player's ear than
waiting for them.

Pure: numbers in, a wait out; no clock, no engine. Used on the performer's thread
(:meth:`~antiphon.daemon.musician.playing.performer.Performer._judge_silence`). ``antiphon
eval-turns`` measures it (:mod:`antiphon.daemon.tools.turns_eval`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from antiphon.daemon.musician.hearing.phrase import MIN_GAP_S
from antiphon.daemon.musician.hearing.phrase_shape import ONSET_GROUP_S

STEP_S = 0.01  # the waits tried, from MIN_GAP_S to the longest wait
HORIZON_S = 0.3  # "the player goes on" means: a note within this of now
EAGERNESS_SPAN = 4.0  # the threshold's log-odds move by this much from eagerness 0 to 1
NOTES_KEPT = 16  # the recent notes the last one is compared with
# What a player feels (as `antiphon eval-turns` counts it): an answer within a silence
# shorter than FALSE_BELOW_S was false (the player was only breathing); a silence of
# REAL_END_S or more was a phrase's end.
FALSE_BELOW_S = 0.6
REAL_END_S = 1.0
REFERENCE_GAP_S = 0.35  # the fixed gap whose false answers the judge must not exceed
QUICK_S = 0.25  # a real end answered within this is answered quickly (the goal: most are)
ADAPT_LIMIT = 4.0  # the player's own intercept stays within this of the fitted one
CALIBRATION_STEP_S = 0.05  # the moments of each silence the player's intercept learns from
CALIBRATION_KEPT = 2000  # the player's last moments it learns from (some 20 minutes)
CALIBRATION_STEP_LIMIT = 1.0  # the intercept's largest Newton step, in log-odds
BUDGET_SPAN = 2.0  # false answers allowed, per fixed-gap false answer, at eagerness 1
BUDGET_PRIOR = 1.0  # the fitted threshold weighs as much as this many fixed-gap false answers
BUDGET_KEPT = 500  # the player's last silences the early threshold is learnt from
LATE_LOG_ODDS = 0.8  # after the early moment, the chance must fall this far below threshold
EARLY_CEILING = 0.9  # never an early answer where the player goes on at least this surely
AUTO_PHRASE_GAP_S = 0.8  # the longest wait these were tuned with: a breath can be waited out
BEAT_CONFIDENCE = 0.5  # a beat hint below this confidence is not followed
BEAT_GRACE_S = 0.06  # a note this late after the beat is still on it
CUES = (
    "lengthening",  # log(last key's length / median of the recent keys' lengths)
    "since",  # log(time from the last onset group's start to the silence / interval)
    "loudness",  # last group's loudness / median of the recent groups' - 1
    "last_interval",  # log(interval before the last group / the median interval)
    "articulation",  # log(last key's length / the median interval)
    "register",  # (last group's top pitch - median of the recent groups' tops) / 12
    "fall",  # (last group's top pitch - the group's before) / 12
)
# The silence so far: log(t, s), and log((time from the last onset group's start to the
# silence + t) / interval): how overdue the next onset is, in the player's own intervals.
TIME_TERMS = ("log_silence", "overdue")


@dataclass(frozen=True)
class Hazard:
    """The hazard's numbers: log-odds of going on within ``HORIZON_S``, silent ``t`` =
    ``bias`` + (``cues`` + ``cue_slopes`` log(t / MIN_GAP_S)) . :meth:`RecentNotes.cues` +
    ``time`` . :func:`time_terms` (+ the player's own intercept). ``threshold``: the chance
    of going on below which the call is over, at eagerness 0.5 (before the player's own
    threshold is known); ``earliest_s``: the early moment, no call ends sooner;
    ``calibration_prior``: how many of the player's moments the fitted intercept weighs
    against theirs (``math.inf``: the player changes nothing: neither their intercept nor
    their threshold is learnt)."""

    bias: float
    cues: tuple[float, ...]
    cue_slopes: tuple[float, ...]
    time: tuple[float, float]
    threshold: float
    earliest_s: float
    calibration_prior: float


# Fitted by `antiphon fit-turns` (training/turns_fit.py) on the training splits of the asap
# piano (30 performances, evenly spaced), the jazz solos (split by soloist) and the music21
# single lines, on the cues that agree across them (the pitch step and the last interval did
# not: weight 0); the threshold (a chance of 0.5), the early moment (0.24 s) and the prior
# (3 moments) set, not tuned; 2026-12-06, and again on 2026-12-07 with the early moment and
# the player's budget: the same numbers (BENCHMARKS.md, "Turn-taking", has the command).
SHIPPED = Hazard(
    bias=-1.77,
    cues=(-0.272, -1.41, 1.313, 0.0, -0.294, 0.315, 0.0),
    cue_slopes=(-0.002, 0.017, -0.327, 0.0, 0.668, -0.145, 0.0),
    time=(-1.139, 0.751),
    threshold=0.5,
    earliest_s=0.24,
    calibration_prior=3.0,
)


@dataclass(frozen=True)
class BeatHint:
    """The next beat the player's time implies, and how sure the tracker is (0 to 1)."""

    next_beat_s: float
    confidence: float


class BeatSource(Protocol):
    """Anything that knows the beat (a beat tracker, a MIDI clock): the next beat after a
    moment, or None when no beat is known."""

    def beat_after(self, time_s: float) -> BeatHint | None: ...


def threshold_for(eagerness: float, threshold: float = SHIPPED.threshold) -> float:
    """The chance of going on below which the call is over, for an eagerness in [0, 1]
    (``threshold`` at 0.5)."""
    eagerness = min(1.0, max(0.0, eagerness))
    return _chance(_log_odds(threshold) + (eagerness - 0.5) * EAGERNESS_SPAN)


def _log_odds(chance: float) -> float:
    return math.log(chance / (1.0 - chance))


def _chance(log_odds: float) -> float:
    return 1.0 / (1.0 + math.exp(-log_odds))


def time_terms(times_s: np.ndarray, since_s: float, interval_s: float) -> np.ndarray:
    """The hazard's terms for silences of ``times_s`` (one row each, ``TIME_TERMS``), the
    silence having begun ``since_s`` after the last onset group's start."""
    return np.stack((np.log(times_s), np.log((since_s + times_s) / interval_s)), axis=-1)


def first_waits_s(
    times_s: np.ndarray, chance: np.ndarray, thresholds: np.ndarray, earliest_s: float
) -> np.ndarray:
    """For each of ``thresholds``: the first of ``times_s``, from ``earliest_s`` on, where
    the chance of going on is below it; the last of ``times_s`` if none."""
    ended = (chance[None, :] < thresholds[:, None]) & (times_s >= earliest_s - 1e-9)[None, :]
    first = np.where(ended.any(axis=1), ended.argmax(axis=1), len(times_s) - 1)
    return np.asarray(times_s[first])


def _median(values: np.ndarray) -> float:
    """The median of a few values (as ``np.median``, a tenth of its cost on 16 values: this
    runs when each silence begins)."""
    ordered = np.sort(values)
    count = len(ordered)
    return float(ordered[(count - 1) // 2] + ordered[count // 2]) / 2.0


class RecentNotes:
    """How the player has just been playing: how long each of the last ``kept`` keys was
    held, and the onset groups (notes struck within ``ONSET_GROUP_S`` of the one before):
    their times and loudness, and how many since the phrase began."""

    def __init__(self, kept: int = NOTES_KEPT) -> None:
        self._pressed_s: dict[tuple[int, int], float] = {}
        self._lengths = np.zeros(kept, np.float64)
        self._count = 0
        self._iois = np.zeros(kept, np.float64)  # between the starts of successive groups
        self._loudness = np.zeros(kept, np.float64)  # each group's mean velocity
        self._tops = np.zeros(kept, np.float64)  # each group's highest pitch
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
        top = self._tops[slot] if self._group_size > 1 else 0.0
        self._tops[slot] = max(top, key[1])

    def key_up(self, key: tuple[int, int], time_s: float) -> None:
        pressed_s = self._pressed_s.pop(key, None)
        if pressed_s is not None:
            self._lengths[self._count % self._lengths.shape[0]] = time_s - pressed_s
            self._count += 1

    def all_up(self) -> None:
        """Every key let go at once (All Notes Off, a lost note-off): no length is known."""
        self._pressed_s.clear()

    def interval_s(self) -> float:
        """The median interval between the recent onset groups (0.5 s before two groups)."""
        iois = min(self._groups - 1, self._iois.shape[0])
        return max(_median(self._iois[:iois]) if iois > 0 else 0.5, 0.02)

    def since_s(self, silence_start_s: float) -> float:
        """The time from the last onset group's start to ``silence_start_s`` (0 if none)."""
        return max(silence_start_s - self._group_start_s, 0.0) if self._groups else 0.0

    def _last_length(self) -> float:
        return float(self._lengths[(self._count - 1) % self._lengths.shape[0]])

    def cues(self, silence_start_s: float) -> np.ndarray:
        """What the end of the playing says, one value for each of ``CUES`` (all 0 before the
        first note has been let go)."""
        groups = min(self._groups, self._loudness.shape[0])
        if groups == 0 or self._count == 0:
            return np.zeros(len(CUES))
        interval_s = self.interval_s()
        lengths = self._lengths[: min(self._count, self._lengths.shape[0])]
        last_s = max(self._last_length(), 0.01)
        last = self._loudness[(self._groups - 1) % self._loudness.shape[0]]
        last_top = self._tops[(self._groups - 1) % self._tops.shape[0]]
        loudness = last / max(_median(self._loudness[:groups]), 1.0)
        since = max(silence_start_s - self._group_start_s, 0.01) / interval_s
        last_ioi, fall = 1.0, 0.0
        if self._groups > 1:
            last_ioi = self._iois[(self._groups - 2) % self._iois.shape[0]] / interval_s
            fall = last_top - self._tops[(self._groups - 2) % self._tops.shape[0]]
        return np.array(
            (
                math.log(last_s / max(_median((lengths)), 0.01)),
                math.log(since),
                min(loudness, 3.0) - 1.0,
                math.log(max(last_ioi, 0.01)),
                math.log(last_s / interval_s),
                (last_top - _median(self._tops[:groups])) / 12.0,
                fall / 12.0,
            )
        )


class TurnJudge:
    """Decides how long a silence must last to end the call (see the module docstring).

    Args:
        min_gap_s: the shortest wait.
        hazard: the hazard's numbers (the shipped ones by default).
    """

    def __init__(self, min_gap_s: float = MIN_GAP_S, hazard: Hazard = SHIPPED) -> None:
        self.min_gap_s = min_gap_s
        self.hazard = hazard
        self.notes = RecentNotes()
        self.player_bias = 0.0  # the player's own intercept, learnt from their silences
        self._cue_weights = np.asarray(hazard.cues, np.float64)
        self._cue_slopes = np.asarray(hazard.cue_slopes, np.float64)
        self._time_weights = np.asarray(hazard.time, np.float64)
        self._longest_s = -1.0
        self._times_s = np.zeros(0)
        self._log_times = np.zeros(0)
        # What the player taught: the fitted log-odds (without their intercept) at moments
        # of their silences, and whether they went on within the horizon; a ring.
        self._taught_log_odds = np.zeros(CALIBRATION_KEPT)
        self._taught_went_on = np.zeros(CALIBRATION_KEPT)
        self._taught = 0
        self._untaught = False  # moments added since the intercept was last solved
        # The moments of a silence it learns from: where the judge decides, from the earliest
        # answer on, at the moments the hazard was fitted on.
        first_s = max(hazard.earliest_s, MIN_GAP_S)
        self._moments_s = np.arange(first_s, AUTO_PHRASE_GAP_S + 1e-9, CALIBRATION_STEP_S)
        self._log_moments = np.log(self._moments_s / MIN_GAP_S)
        # The silence judged last: the fitted log-odds at each calibration moment.
        self._judged: np.ndarray | None = None
        # What the player's silences were, for the early threshold: the fitted log-odds at
        # the early moment (without their intercept) and the silence's length, for each
        # silence that outlasted it; a ring.
        self._early_s = max(hazard.earliest_s, min_gap_s)
        self._heard_log_odds = np.zeros(BUDGET_KEPT)
        self._heard_lengths = np.zeros(BUDGET_KEPT)
        self._heard = 0
        self._judged_early: float | None = None

    def _grid(self, longest_s: float) -> np.ndarray:
        if longest_s != self._longest_s:  # made again only when the phrase gap changes
            count = max(1, round((longest_s - self.min_gap_s) / STEP_S) + 1)
            self._times_s = np.linspace(self.min_gap_s, max(self.min_gap_s, longest_s), count)
            self._log_times = np.log(self._times_s / MIN_GAP_S)
            self._longest_s = longest_s
        return self._times_s

    def _silence_terms(self, silence_start_s: float) -> tuple[float, float, float, float]:
        """What the hazard needs of the playing before the silence, computed once a silence:
        its level and slope (the cues weighed), the time from the last onset group's start to
        the silence, and the player's interval."""
        notes = self.notes
        cues = notes.cues(silence_start_s)
        level = self.hazard.bias + float(self._cue_weights @ cues)
        slope = float(self._cue_slopes @ cues)
        return level, slope, notes.since_s(silence_start_s), notes.interval_s()

    def _fitted_log_odds(
        self,
        times_s: np.ndarray,
        log_times: np.ndarray,
        terms: tuple[float, float, float, float],
    ) -> np.ndarray:
        """The hazard's log-odds of going on at ``times_s`` into the silence (``log_times``:
        log(times_s / MIN_GAP_S)), without the player's own intercept."""
        level, slope, since_s, interval_s = terms
        timed = time_terms(times_s, since_s, interval_s) @ self._time_weights
        return level + slope * log_times + timed

    def _going_on(
        self, longest_s: float, terms: tuple[float, float, float, float]
    ) -> tuple[np.ndarray, np.ndarray]:
        self._learn()
        times_s = self._grid(longest_s)
        log_odds = self.player_bias + self._fitted_log_odds(times_s, self._log_times, terms)
        return times_s, 1.0 / (1.0 + np.exp(-log_odds))

    def going_on(self, longest_s: float, silence_start_s: float) -> tuple[np.ndarray, np.ndarray]:
        """The waits tried and, for each, the chance that the player goes on within the
        horizon having been silent that long."""
        return self._going_on(longest_s, self._silence_terms(silence_start_s))

    def wait_s(
        self,
        eagerness: float,
        longest_s: float,
        silence_start_s: float = 0.0,
        beat: BeatHint | None = None,
    ) -> float:
        """How long the silence that began at ``silence_start_s`` must last to end the call,
        between ``min_gap_s`` and ``longest_s``. Remembered for :meth:`heard_pause`."""
        if longest_s <= self.min_gap_s:
            return longest_s
        terms = self._silence_terms(silence_start_s)
        early_s = min(self._early_s, longest_s)
        at_early = np.array((early_s,))
        early = float(self._fitted_log_odds(at_early, np.log(at_early / MIN_GAP_S), terms)[0])
        self._learn()
        sure_to_go_on = _chance(early + self.player_bias) >= EARLY_CEILING
        if early < self.early_threshold(eagerness) and not sure_to_go_on:
            wait_s = early_s
        else:
            times_s, chance = self._going_on(longest_s, terms)
            fitted = _log_odds(threshold_for(eagerness, self.hazard.threshold))
            late = np.array((_chance(fitted - LATE_LOG_ODDS),))
            wait_s = float(first_waits_s(times_s, chance, late, early_s + STEP_S / 2)[0])
        if beat is not None and beat.confidence >= BEAT_CONFIDENCE:
            to_beat_s = beat.next_beat_s - silence_start_s + BEAT_GRACE_S
            wait_s = max(wait_s, min(to_beat_s, longest_s))
        wait_s = min(max(wait_s, self.min_gap_s), longest_s)
        if math.isfinite(self.hazard.calibration_prior):
            self._judged = self._fitted_log_odds(self._moments_s, self._log_moments, terms)
            self._judged_early = early if early_s == self._early_s else None
        return wait_s

    def early_threshold(self, eagerness: float) -> float:
        """The fitted log-odds (without the player's intercept) below which a silence ends
        the call at the early moment: the player's budget of false answers spent on their
        past silences, leaning toward the fitted threshold until they have used some (see
        the module docstring)."""
        eagerness = min(1.0, max(0.0, eagerness))
        fitted = _log_odds(threshold_for(eagerness, self.hazard.threshold)) - self.player_bias
        kept = min(self._heard, BUDGET_KEPT)
        lengths = self._heard_lengths[:kept]
        breaths = np.sort(self._heard_log_odds[:kept][lengths < FALSE_BELOW_S])
        if not len(breaths):
            return fitted
        gap_false = float(
            np.count_nonzero((lengths >= REFERENCE_GAP_S) & (lengths < FALSE_BELOW_S))
        )
        allowed = BUDGET_SPAN * eagerness * gap_false  # the breaths it may answer inside
        if allowed >= len(breaths) - 1:
            spent = float(breaths[-1]) + 1.0
        else:
            below = int(allowed)
            spent = float(
                breaths[below] + (allowed - below) * (breaths[below + 1] - breaths[below])
            )
        weight = gap_false / (gap_false + BUDGET_PRIOR)
        return weight * spent + (1.0 - weight) * fitted

    def key_down(self, key: tuple[int, int], time_s: float, velocity: int) -> None:
        self.notes.key_down(key, time_s, velocity)

    def key_up(self, key: tuple[int, int], time_s: float) -> None:
        self.notes.key_up(key, time_s)

    def all_up(self) -> None:
        self.notes.all_up()

    def heard_pause(self, silence_s: float) -> None:
        """The player went on after a silence of ``silence_s``. If the judge gave a wait for
        it, each calibration moment the silence outlasted is kept: what the fitted hazard said
        then, and whether the player went on within the horizon. (Cheap: this runs as the
        player's note arrives; the intercept is solved when the next silence begins.)"""
        judged, self._judged = self._judged, None
        early, self._judged_early = self._judged_early, None
        if early is not None and silence_s > self._early_s:
            slot = self._heard % BUDGET_KEPT
            self._heard_log_odds[slot] = early
            self._heard_lengths[slot] = silence_s
            self._heard += 1
        if judged is None:
            return
        outlasted = silence_s > self._moments_s
        count = int(outlasted.sum())
        slots = (self._taught + np.arange(count)) % CALIBRATION_KEPT
        self._taught_log_odds[slots] = judged[outlasted]
        self._taught_went_on[slots] = silence_s < self._moments_s[outlasted] + HORIZON_S
        self._taught += count
        self._untaught = self._untaught or count > 0

    def _learn(self) -> None:
        """The player's intercept: two Newton steps (each at most
        ``CALIBRATION_STEP_LIMIT``: far from it, a logistic's Newton step overshoots), from the
        last one, toward the maximum a posteriori intercept of the moments kept (prior: the
        fitted one, worth ``calibration_prior`` moments)."""
        if not self._untaught:
            return
        self._untaught = False
        kept = min(self._taught, CALIBRATION_KEPT)
        log_odds, went_on = self._taught_log_odds[:kept], self._taught_went_on[:kept]
        prior = self.hazard.calibration_prior
        bias = self.player_bias
        for _ in range(2):
            chance = 1.0 / (1.0 + np.exp(-np.clip(log_odds + bias, -30.0, 30.0)))
            gradient = float(np.sum(went_on - chance)) - prior * bias
            curvature = float(np.sum(chance * (1.0 - chance))) + prior
            step = min(CALIBRATION_STEP_LIMIT, max(-CALIBRATION_STEP_LIMIT, gradient / curvature))
            bias = min(ADAPT_LIMIT, max(-ADAPT_LIMIT, bias + step))
        self.player_bias = bias
