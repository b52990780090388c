"""``antiphon eval --long``: a whole held-out split as one stream, the state never reset.

On stage the daemon's recurrent state runs through a whole gig, hours of playing, one piece
after another, never zeroed. ``antiphon eval`` scores each performance from a zero state
("carried"); here every performance of the split is fed end to end through one state, as a
three-hour set would be, and the very same targets are scored (each performance's tokens
1..n-1: the first token of a performance, which the end of the one before cannot foretell,
is fed but not scored). If the long stream scores within ``LONG_DRIFT_LIMIT`` of carried,
the state does not drift over hours.

The stream is one row stepped token by token (it cannot be batched: each step needs the state
of the one before), a million steps or so for the piano test split: minutes.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from antiphon.training.corpus import load_codec
from antiphon.training.evaluate import EvalError, OnnxScorer, load_pieces, piece_stream
from antiphon.training.markov import Score

log = logging.getLogger(__name__)

LONG_DRIFT_LIMIT = 0.03  # the long stream's bits/token at most this share above carried
LOG_EVERY_TOKENS = 100_000
LN2 = math.log(2.0)


def score_one_stream(scorer: OnnxScorer, tokens: np.ndarray, scored: np.ndarray) -> Score:
    """Feed ``tokens`` through one state from zero; score the prediction of ``tokens[t + 1]``
    where ``scored[t + 1]``."""
    info = scorer.info
    h = np.zeros((info.layers, 1, info.hidden), dtype=np.float32)
    c = np.zeros_like(h)
    bits = 0.0
    correct = 0
    counted = 0
    started_s = time.perf_counter()
    for t in range(len(tokens) - 1):
        logits, h, c = scorer.session.run(
            ["logits", "h_out", "c_out"],
            {"token": scorer.tokens_input(tokens[t : t + 1]), "h": h, "c": c},
        )
        if scored[t + 1]:
            row = logits[0].astype(np.float64)
            top = row.max()
            target = int(tokens[t + 1])
            bits += float(top + np.log(np.exp(row - top).sum()) - row[target]) / LN2
            correct += int(row.argmax() == target)
            counted += 1
        if t and t % LOG_EVERY_TOKENS == 0:
            log.info(
                "long stream: %d of %d tokens, %.4f bits/token so far (%.0f s)",
                t,
                len(tokens),
                bits / max(counted, 1),
                time.perf_counter() - started_s,
            )
    return Score(bits, counted, correct)


@dataclass(frozen=True)
class LongReport:
    """The split scored per performance (carried) and as one stream (long)."""

    model: str
    corpus: str
    split: str
    performances: int
    carried: Score
    long: Score
    seconds: float

    @property
    def drift(self) -> float:
        """Long-stream bits/token over carried, less one (positive: worse over hours)."""
        return self.long.bits_per_token / self.carried.bits_per_token - 1.0

    @property
    def no_drift(self) -> bool:
        return bool(self.drift <= LONG_DRIFT_LIMIT)

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "corpus": self.corpus,
            "split": self.split,
            "performances": self.performances,
            "tokens_scored": self.long.tokens,
            "carried_bits_per_token": self.carried.bits_per_token,
            "long_bits_per_token": self.long.bits_per_token,
            "long_accuracy": self.long.accuracy,
            "drift": self.drift,
            "no_drift": self.no_drift,
            "seconds": self.seconds,
        }

    def table(self) -> str:
        return "\n".join(
            [
                f"{self.model} on {self.corpus} ({self.split}, {self.performances} "
                f"performances, {self.long.tokens} tokens scored)",
                f"  carried, each performance from a zero state: "
                f"{self.carried.bits_per_token:.4f} bits/token",
                f"  one stream, never reset:                     "
                f"{self.long.bits_per_token:.4f} bits/token",
                f"  long / carried - 1: {self.drift:+.2%} (limit +{LONG_DRIFT_LIMIT:.0%}): "
                + ("no drift" if self.no_drift else "DRIFTS"),
            ]
        )


def evaluate_long(
    model_path: Path, corpus_dir: Path, split: str = "test", batch: int = 32, threads: int = 2
) -> LongReport:
    """Score a split carried per performance and as one stream; see the module docstring."""
    scorer = OnnxScorer(model_path, threads)
    if load_codec(corpus_dir) != scorer.info.codec:
        raise EvalError(f"{model_path} and {corpus_dir} use different codecs")
    pieces = load_pieces(corpus_dir, split, scorer.info.vocabulary)
    if not pieces:
        raise EvalError(f"{corpus_dir}: the {split} split holds no performances")
    tokens, starts, targets = piece_stream(pieces)
    started_s = time.perf_counter()
    carried = scorer.score(tokens, starts, targets, batch)
    scored = np.ones(len(tokens), dtype=bool)
    scored[starts] = False  # a performance's first token: fed, not scored (as carried)
    long = score_one_stream(scorer, tokens, scored)
    return LongReport(
        model=str(model_path),
        corpus=str(corpus_dir),
        split=split,
        performances=len(pieces),
        carried=carried,
        long=long,
        seconds=time.perf_counter() - started_s,
    )
