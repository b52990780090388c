"""``antiphon fit-turns NAME=CORPUS_DIR ...``: fit the turn judge's hazard, and measure it on
each corpus left out of the fit.

For each corpus left out in turn (leave-one-corpus-out):

1. the cues are chosen: those that tell a real end from a breath the same way (the same side
   of chance, by the area under the curve) on every corpus fitted on; a cue that means "end"
   in one kind of playing and "go on" in another is left out (weight 0);
2. the hazard (:class:`~antiphon.daemon.musician.hearing.turns.Hazard`: "will the player go on
   within ``HORIZON_S``, having been silent t?") is fitted, by weighted logistic regression,
   on the silences of the *other* corpora's training splits, each corpus weighing the same:
   one sample per silence and per moment ``t`` of it (every ``FIT_STEP_S`` from the shortest
   wait to the longest), labelled "went on within the horizon" or not; the threshold is a
   chance of 0.5 at eagerness 0.5 (the player's own intercept calibrates the chances);
3. the default eagerness is chosen on the other corpora's validation splits, the judge
   replayed as the performer drives it (:func:`~antiphon.daemon.tools.turns_replay.replay`):
   of ``DEFAULT_EAGERNESSES`` that no fixed gap dominates on any of them, the one furthest
   inside the goal on the worst of them (:func:`slack`: the share of real ends answered
   within ``QUICK_S`` beyond one half, or the share of the fixed ``REFERENCE_GAP_S``
   gap's false answers left unspent, whichever is smaller). Not the least eager that meets
   the goal: the median delay is a cliff (the judge answers early or late), and a default
   at the edge of it on the validation corpora falls off it on other players;
4. the judge so made is reported on the left-out corpus, all of it (nothing of it was fitted
   on or chosen on) and its test split alone: eagerness 0 to 1 and the chosen default, beside
   the fixed gaps.

Then the same on all the corpora together: the numbers to ship (printed as Python, for
``SHIPPED`` in :mod:`antiphon.daemon.musician.hearing.turns`) and the default eagerness (for the
settings). Pure numpy; no model is run.
"""

from __future__ import annotations

import argparse
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
    EAGERNESS_SPAN,
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
# The default eagerness is chosen in steps that move the threshold's log-odds by 0.1.
DEFAULT_EAGERNESSES = tuple(
    round(0.3 + k * 0.1 / EAGERNESS_SPAN, 4) for k in range(round(0.6 * EAGERNESS_SPAN / 0.1) + 1)
)


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


def samples(judged: Sequence[Judged], cues: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """The hazard's design rows (bias, the chosen cues, each times log(t / MIN_GAP_S), time
    terms) and labels (went on within the horizon) of silences, at each moment ``t`` they
    outlasted."""
    times_s = np.arange(MIN_GAP_S, AUTO_PHRASE_GAP_S + 1e-9, FIT_STEP_S)
    rows, labels = [], []
    for j in judged:
        at_s = times_s[times_s < j.silence_s]
        if not len(at_s):
            continue
        chosen = np.tile(j.cues[list(cues)], (len(at_s), 1))
        rows.append(
            np.hstack(
                (
                    np.ones((len(at_s), 1)),
                    chosen,
                    chosen * np.log(at_s / MIN_GAP_S)[:, None],
                    time_terms(at_s, j.since_s, j.interval_s),
                )
            )
        )
        labels.append(j.silence_s < at_s + HORIZON_S)
    if not rows:
        return np.zeros((0, 1 + 2 * len(cues) + 2)), np.zeros(0)
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


def end_association(judged: Sequence[Judged]) -> np.ndarray:
    """For each cue, the chance that a real end's value exceeds a breath's (the area under
    the curve; ties count half), over the silences that outlasted the earliest answer."""
    lengths = np.array([j.silence_s for j in judged])
    values = np.array([j.cues for j in judged]).reshape(len(judged), len(CUES))
    ends = values[lengths >= REAL_END_S]
    breaths = values[(lengths >= SHIPPED.earliest_s) & (lengths < FALSE_BELOW_S)]
    if not len(ends) or not len(breaths):
        return np.full(len(CUES), 0.5)
    areas = []
    for cue in range(len(CUES)):
        ordered = np.sort(breaths[:, cue])
        below = np.searchsorted(ordered, ends[:, cue], side="left")
        not_above = np.searchsorted(ordered, ends[:, cue], side="right")
        areas.append(float(np.mean(below + not_above)) / (2 * len(ordered)))
    return np.array(areas)


def agreeing_cues(train: dict[str, list[Judged]]) -> list[int]:
    """The cues on the same side of chance (``end_association``) in every corpus."""
    sides = np.sign(np.array([end_association(judged) for judged in train.values()]) - 0.5)
    return [cue for cue in range(len(CUES)) if abs(sides[:, cue].sum()) == len(train)]


def fit_hazard(train: dict[str, list[Judged]]) -> Hazard:
    """The hazard's weights from the silences of several corpora, each weighing the same, on
    the cues that agree across them (the others weigh 0)."""
    cues = agreeing_cues(train)
    xs, ys, ws = [], [], []
    for judged in train.values():
        x, y = samples(judged, cues)
        xs.append(x)
        ys.append(y)
        ws.append(np.full(len(y), 1.0 / max(len(y), 1)))
    beta = fit_logistic(np.vstack(xs), np.concatenate(ys), np.concatenate(ws), RIDGE / 1000)
    weights, slopes = np.zeros(len(CUES)), np.zeros(len(CUES))
    weights[cues] = beta[1 : 1 + len(cues)]
    slopes[cues] = beta[1 + len(cues) : 1 + 2 * len(cues)]
    return replace(
        SHIPPED,
        bias=round(float(beta[0]), 3),
        cues=tuple(round(float(w), 3) for w in weights),
        cue_slopes=tuple(round(float(w), 3) for w in slopes),
        time=(round(float(beta[-2]), 3), round(float(beta[-1]), 3)),
        threshold=0.5,
    )


# Choosing and reporting ---------------------------------------------------------------------


def judge_all(chosen: list[Performance], hazard: Hazard, eagerness: float) -> list[Judged]:
    """Every silence of the performances, each performance replayed with a judge of its own."""
    return [j for p in chosen for j in replay(p.messages, eagerness, AUTO_PHRASE_GAP_S, hazard)]


def slack(rows: dict[str, dict[str, Any]], name: str) -> float:
    """How far inside the goal the trade-off's row ``name`` is (module doc, step 3);
    negative: outside."""
    reference = rows[f"gap {REFERENCE_GAP_S:g}"]["false_per_min"]
    unspent = 1.0 - rows[name]["false_per_min"] / reference if reference > 0 else 0.0
    quick = rows[name]["quick_share"]
    return min(quick - 0.5 if quick is not None else 0.0, unspent)


def choose_eagerness(hazard: Hazard, validation: dict[str, list[Performance]]) -> float:
    """The default eagerness, chosen on the validation corpora (module doc, step 3)."""
    worst_slack: dict[float, float] = {}
    dominated: set[float] = set()
    for eagerness in DEFAULT_EAGERNESSES:
        worst = math.inf
        for performances_ in validation.values():
            minutes = sum(p.minutes for p in performances_)
            rows = trade_off({eagerness: judge_all(performances_, hazard, eagerness)}, minutes)
            worst = min(worst, slack(rows, f"auto {eagerness:g}"))
            if dominated_by(rows, f"auto {eagerness:g}"):
                dominated.add(eagerness)
        worst_slack[eagerness] = worst
    allowed = [e for e in DEFAULT_EAGERNESSES if e not in dominated] or list(DEFAULT_EAGERNESSES)
    return max(allowed, key=lambda e: (worst_slack[e], -e))


def report(hazard: Hazard, test: list[Performance], eagerness: float) -> dict[str, Any]:
    """The trade-off on some performances: eagerness 0 to 1 and the default ``eagerness``
    beside the fixed gaps."""
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
        eagerness = choose_eagerness(hazard, validation)
        used = [cue for cue, weight in zip(CUES, hazard.cues, strict=True) if weight != 0.0]
        chosen = {"eagerness": eagerness, "cues": used}
        if left_out is None:
            results["shipped"] = {"hazard": asdict(hazard), "validation": chosen}
            print(f"\nAll corpora: to ship\n{hazard!r}\ndefault eagerness {eagerness:g}")
            continue
        whole = [p for split in ("train", "validation", "test") for p in splits[(left_out, split)]]
        measured = {
            "all": report(hazard, whole, eagerness),
            "test": report(hazard, splits[(left_out, "test")], eagerness),
        }
        results["left_out"][left_out] = {"fitted_on": others, "hazard": asdict(hazard),
                                         "validation": chosen, **measured}  # fmt: skip
        for part, what in (("all", "all of it"), ("test", "its test split")):
            print(
                f"\nLeft out: {left_out}, {what} (fitted on {', '.join(others)}; cues: "
                f"{', '.join(used)}; {measured[part]['performances']} performances, "
                f"{measured[part]['minutes']:.1f} min)"
            )
            print(format_rows(measured[part]["rows"]))
            dominated = measured[part]["default_dominated_by"] or "none"
            print(f"the default (auto {eagerness:g}) dominated by: {dominated}")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    if args.plot is not None:
        from antiphon.daemon.tools.turns_plot import plot_trade_off

        panels = {f"{name} left out (all of it)": r["all"]["rows"]
                  for name, r in results["left_out"].items()}  # fmt: skip
        defaults = [f"auto {r['all']['eagerness']:g}" for r in results["left_out"].values()]
        plot_trade_off(panels, defaults, args.plot)
    return 0
