"""``antiphon fit-turns NAME=CORPUS_DIR ...``: fit the turn judge's hazard, and measure it on
each corpus left out of the fit.

For each corpus left out in turn (leave-one-corpus-out):

1. the hazard (:class:`~antiphon.daemon.musician.hearing.turns.Hazard`: "will the player go on
   within ``HORIZON_S``, having been silent t?") is fitted, by weighted logistic regression,
   on the silences of the *other* corpora's training splits, each corpus weighing the same:
   one sample per silence and per moment ``t`` of it (every ``FIT_STEP_S`` from the shortest
   wait to the longest), labelled "went on within the horizon" or not;
2. the threshold (at eagerness 0.5), the earliest answer and the adaptation rate are chosen
   on the other corpora's validation splits, by the judge replayed as the performer drives
   it (:func:`~antiphon.daemon.tools.turns_replay.replay`): of the candidates whose false
   answers stay within ``TARGET_FALSE_RATIO`` times the fixed ``REFERENCE_GAP_S`` gap's on
   every one of them, the one with the shortest median delay on real ends at its worst
   corpus (none within: the one that exceeds it least);
3. the default eagerness is chosen on the same validation splits: the least eager of
   ``DEFAULT_EAGERNESSES`` whose median delay on real ends is at most ``TARGET_MEDIAN_S`` on
   every one of them with no fixed gap both as few false answers and sooner (none such: the
   one with the shortest worst median);
4. the judge so made is reported on the left-out corpus's test split: eagerness 0 to 1 and
   the chosen default, beside the fixed gaps. Nothing is chosen on a corpus that is reported.

Then the same on all the corpora together: the numbers to ship (printed as Python, for
``SHIPPED`` in :mod:`antiphon.daemon.musician.hearing.turns`) and the default eagerness (for the
settings). Pure numpy; no model is run.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from antiphon.daemon.codec import notes_from_array
from antiphon.daemon.musician.hearing.phrase import MIN_GAP_S
from antiphon.daemon.musician.hearing.turns import (
    AUTO_PHRASE_GAP_S,
    CUES,
    FALSE_BELOW_S,
    HORIZON_S,
    REAL_END_S,
    REFERENCE_GAP_S,
    SHIPPED,
    Hazard,
    time_terms,
)
from antiphon.daemon.tools.turns_replay import (
    EAGERNESSES,
    Judged,
    dominated_by,
    format_rows,
    note_messages,
    replay,
    trade_off,
)
from antiphon.training.corpus import CorpusError, load_split

FIT_STEP_S = 0.05  # the moments of each silence the hazard is fitted on
RIDGE = 1.0  # L2 penalty on the weights (not the bias), in units of one corpus's weight
# A setting's false answers against the fixed REFERENCE_GAP_S gap's, on validation.
TARGET_FALSE_RATIO = 0.8
THRESHOLDS = tuple(round(1.0 / (1.0 + math.exp(-x)), 4) for x in (-2.0, -1.0, 0.0))
ADAPT_RATES = (0.0, 0.1, 0.3)
EARLIEST_S = (0.15, 0.2)
DEFAULT_EAGERNESSES = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9)
TARGET_MEDIAN_S = 0.25


@dataclass
class Performance:
    """One performance: its key messages and minutes of playing."""

    name: str
    messages: list[Any]
    minutes: float


def performances(corpus_dir: Path, split: str, limit: int | None) -> list[Performance]:
    """The performances of a split (every ``len // limit``-th one, when ``limit`` is less)."""
    chosen = load_split(corpus_dir, split)
    if limit is not None and len(chosen) > limit:
        chosen = chosen[:: math.ceil(len(chosen) / limit)]
    found = []
    for name, array in chosen:
        notes = list(notes_from_array(array))
        if not notes:
            continue
        minutes = (max(n.offset_s for n in notes) - min(n.onset_s for n in notes)) / 60.0
        found.append(Performance(name, note_messages(notes), minutes))
    return found


# Fitting --------------------------------------------------------------------------------------


def samples(judged: Sequence[Judged]) -> tuple[np.ndarray, np.ndarray]:
    """The hazard's design rows (bias, cues, cues x log(t / MIN_GAP_S), time terms) and
    labels (went on within the horizon) of silences, at each moment ``t`` they outlasted."""
    times_s = np.arange(MIN_GAP_S, AUTO_PHRASE_GAP_S + 1e-9, FIT_STEP_S)
    rows, labels = [], []
    for j in judged:
        at_s = times_s[times_s < j.silence_s]
        if not len(at_s):
            continue
        cues = np.tile(j.cues, (len(at_s), 1))
        rows.append(
            np.hstack(
                (
                    np.ones((len(at_s), 1)),
                    cues,
                    cues * np.log(at_s / MIN_GAP_S)[:, None],
                    time_terms(at_s, j.since_s, j.interval_s),
                )
            )
        )
        labels.append(j.silence_s < at_s + HORIZON_S)
    if not rows:
        return np.zeros((0, 1 + 2 * len(CUES) + 2)), np.zeros(0)
    return np.vstack(rows), np.concatenate(labels).astype(np.float64)


def fit_logistic(
    x: np.ndarray, y: np.ndarray, weight: np.ndarray, ridge: float, steps: int = 30
) -> np.ndarray:
    """Weighted, L2-penalised (not the first column) logistic regression, by Newton steps."""
    beta = np.zeros(x.shape[1])
    penalty = np.full(x.shape[1], ridge)
    penalty[0] = 0.0
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-np.clip(x @ beta, -30, 30)))
        gradient = x.T @ (weight * (y - p)) - penalty * beta
        hessian = (x * (weight * p * (1 - p))[:, None]).T @ x + np.diag(penalty)
        step = np.linalg.solve(hessian, gradient)
        beta += step
        if np.max(np.abs(step)) < 1e-6:
            break
    return beta


def fit_hazard(train: dict[str, list[Judged]]) -> Hazard:
    """The hazard's weights from the silences of several corpora, each weighing the same."""
    xs, ys, ws = [], [], []
    for judged in train.values():
        x, y = samples(judged)
        xs.append(x)
        ys.append(y)
        ws.append(np.full(len(y), 1.0 / max(len(y), 1)))
    beta = fit_logistic(np.vstack(xs), np.concatenate(ys), np.concatenate(ws), RIDGE / 1000)
    weights = [round(float(b), 3) for b in beta]
    count = len(CUES)
    return replace(
        SHIPPED,
        bias=weights[0],
        cues=tuple(weights[1 : 1 + count]),
        cue_slopes=tuple(weights[1 + count : 1 + 2 * count]),
        time=(weights[-2], weights[-1]),
    )


# Choosing and reporting ---------------------------------------------------------------------


def judge_all(chosen: list[Performance], hazard: Hazard, eagerness: float) -> list[Judged]:
    """Every silence of the performances, each performance replayed with a judge of its own."""
    return [j for p in chosen for j in replay(p.messages, eagerness, AUTO_PHRASE_GAP_S, hazard)]


def choose(hazard: Hazard, validation: dict[str, list[Performance]]) -> tuple[Hazard, dict]:
    """The threshold, the earliest answer and the adaptation rate, chosen on the validation
    corpora at eagerness 0.5 (module doc)."""
    best: tuple[tuple[float, float], Hazard, dict[str, Any]] | None = None
    for threshold, earliest_s, rate in itertools.product(THRESHOLDS, EARLIEST_S, ADAPT_RATES):
        candidate = replace(hazard, threshold=threshold, earliest_s=earliest_s, adapt_rate=rate)
        worst_false, worst_median = 0.0, 0.0
        for performances_ in validation.values():
            judged = judge_all(performances_, candidate, 0.5)
            lengths = np.array([j.silence_s for j in judged])
            waits_s = np.array([j.wait_s for j in judged])
            breaths = lengths < FALSE_BELOW_S
            false = ((lengths >= waits_s) & breaths).sum()
            reference = ((lengths >= REFERENCE_GAP_S) & breaths).sum()
            real = lengths >= REAL_END_S  # a wait (under REAL_END_S) declares every real end
            median = float(np.median(waits_s[real])) if real.any() else 0.0
            worst_false = max(worst_false, false / max(reference, 1))
            worst_median = max(worst_median, median)
        # Within the false answers' budget first; then the soonest; then the fewest false.
        over = max(0.0, worst_false - TARGET_FALSE_RATIO)
        key = (over, worst_median + 0.01 * worst_false)
        if best is None or key < best[0]:
            figures_ = {"validation_worst_false_ratio": worst_false,
                        "validation_worst_median_s": worst_median}  # fmt: skip
            best = (key, candidate, figures_)
    assert best is not None
    return best[1], best[2]


def choose_eagerness(hazard: Hazard, validation: dict[str, list[Performance]]) -> float:
    """The default eagerness, chosen on the validation corpora (module doc, step 3)."""
    worst_median: dict[float, float] = {}
    for eagerness in DEFAULT_EAGERNESSES:
        worst, acceptable = 0.0, True
        for performances_ in validation.values():
            minutes = sum(p.minutes for p in performances_)
            rows = trade_off({eagerness: judge_all(performances_, hazard, eagerness)}, minutes)
            median_s = rows[f"auto {eagerness:g}"]["median_delay_s"]
            median_s = math.inf if median_s is None else median_s
            worst = max(worst, median_s)
            if dominated_by(rows, f"auto {eagerness:g}"):
                acceptable = False
        if acceptable and worst <= TARGET_MEDIAN_S:
            return eagerness
        worst_median[eagerness] = worst
    return min(worst_median, key=lambda e: (worst_median[e], e))


def report(hazard: Hazard, test: list[Performance], eagerness: float) -> dict[str, Any]:
    """The trade-off on a test split: eagerness 0 to 1 and the default ``eagerness`` beside
    the fixed gaps."""
    judged = {e: judge_all(test, hazard, e) for e in sorted({*EAGERNESSES, eagerness})}
    minutes = sum(p.minutes for p in test)
    rows = trade_off(judged, minutes)
    return {
        "minutes": minutes,
        "performances": len(test),
        "silences": len(judged[eagerness]),
        "eagerness": eagerness,
        "rows": rows,
        "default_dominated_by": dominated_by(rows, f"auto {eagerness:g}"),
    }


# Command ------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "corpora", nargs="+", metavar="NAME=CORPUS_DIR",
        help="the corpora (at least two), each built by antiphon corpus",
    )  # fmt: skip
    parser.add_argument(
        "--limit", action="append", default=[], metavar="NAME=N",
        help="use at most N performances of each split of corpus NAME (evenly spaced)",
    )  # fmt: skip
    parser.add_argument("--json", type=Path, default=None, metavar="OUT", help="the results")
    parser.add_argument(
        "--plot", type=Path, default=None, metavar="OUT.png",
        help="draw each left-out corpus's trade-off (needs matplotlib)",
    )  # fmt: skip
    parser.epilog = (
        f"False answers: declared within a silence shorter than {FALSE_BELOW_S:g} s; "
        f"the longest wait {AUTO_PHRASE_GAP_S:g} s."
    )


def _pairs(values: Sequence[str], what: str) -> dict[str, str]:
    found = {}
    for value in values:
        name, sep, rest = value.partition("=")
        if not sep or not name or not rest:
            raise CorpusError(f"{value!r}: write {what} as NAME=VALUE")
        found[name] = rest
    return found


def run(args: argparse.Namespace) -> int:
    try:
        corpora = {name: Path(path) for name, path in _pairs(args.corpora, "a corpus").items()}
        limits = {name: int(n) for name, n in _pairs(args.limit, "a limit").items()}
        if len(corpora) < 2:
            raise CorpusError("give at least two corpora: one is left out at a time")
        splits = {
            (name, split): performances(path, split, limits.get(name))
            for name, path in corpora.items()
            for split in ("train", "validation", "test")
        }
    except (CorpusError, ValueError) as err:
        print(f"antiphon fit-turns: {err}", file=sys.stderr)
        return 2
    # The cues do not depend on the judge's waits: any hazard and eagerness will do.
    train = {name: judge_all(splits[(name, "train")], SHIPPED, 0.5) for name in corpora}
    results: dict[str, Any] = {"left_out": {}}
    for left_out in [*corpora, None]:
        others = [name for name in corpora if name != left_out]
        hazard = fit_hazard({name: train[name] for name in others})
        validation = {name: splits[(name, "validation")] for name in others}
        hazard, chosen = choose(hazard, validation)
        chosen["eagerness"] = eagerness = choose_eagerness(hazard, validation)
        if left_out is None:
            results["shipped"] = {"hazard": asdict(hazard), "validation": chosen}
            print(f"\nAll corpora: to ship\n{hazard!r}\ndefault eagerness {eagerness:g}")
            continue
        measured = report(hazard, splits[(left_out, "test")], eagerness)
        results["left_out"][left_out] = {
            "fitted_on": others, "hazard": asdict(hazard), "validation": chosen, "test": measured,
        }  # fmt: skip
        print(
            f"\nLeft out: {left_out} (fitted on {', '.join(others)}; test split: "
            f"{measured['performances']} performances, {measured['minutes']:.1f} min)"
        )
        print(format_rows(measured["rows"]))
        default = f"auto {eagerness:g}"
        print(f"the default ({default}) dominated by: {measured['default_dominated_by'] or 'none'}")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    if args.plot is not None:
        from antiphon.daemon.tools.turns_plot import plot_trade_off

        panels = {f"{name} left out (test split)": r["test"]["rows"]
                  for name, r in results["left_out"].items()}  # fmt: skip
        defaults = [f"auto {r['test']['eagerness']:g}" for r in results["left_out"].values()]
        plot_trade_off(panels, defaults, args.plot)
    return 0
