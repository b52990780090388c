"""Held-out evaluation of a shipped ONNX model against the Markov baseline.

What is scored is the exported artefact itself, through onnxruntime, exactly as the daemon
runs it: one token per step, the recurrent state starting from zero at the start of each
performance. Two ways of carrying the state are scored on the same tokens:

- carried: the state runs through each whole performance (what the daemon does on stage);
- windowed: the state is zeroed every ``window`` tokens (how the model saw data in training).

If carried is much worse than windowed, the state drifts over long performances. Beside the
model, a Kneser–Ney Markov baseline (:mod:`antiphon.training.markov`) trained on the corpus's train
split
is scored on the very same tokens, order by order.

A performance's first token has nothing before it to be predicted from, so every score covers
tokens 1..n-1 of each performance (as training does). Several performances run as the rows of
one batch; a row that finishes takes the next performance, longest first, so the batch stays
full until the end. Nothing here needs torch.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from antiphon.daemon.codec import Vocabulary, encode_notes, notes_from_array
from antiphon.daemon.musician.model.model_file import ModelError, load_model, session_options
from antiphon.training.corpus import load_codec, load_split
from antiphon.training.markov import MarkovBaseline, Score

log = logging.getLogger(__name__)

MARKOV_MARGIN = 0.15  # carried bits/token must be at least this share below the best Markov
DRIFT_LIMIT = 0.03  # carried bits/token at most this share above windowed
EVAL_SPLITS = ("test", "validation")
LN2 = float(np.log(2.0))


class EvalError(ValueError):
    """An evaluation that cannot run; the message is one line for the user."""


@dataclass(frozen=True)
class Piece:
    """One held-out performance as tokens, with the number of notes it holds."""

    id: str
    tokens: np.ndarray  # int64
    notes: int


class OnnxScorer:
    """An exported single-step model in onnxruntime, scoring token streams in batches.

    The file is opened and checked by the daemon's own loader, with the daemon's session
    options except the thread count.
    """

    def __init__(self, path: Path, threads: int = 2) -> None:
        try:
            session, self.info = load_model(path)
        except ModelError as err:
            raise EvalError(str(err)) from err
        if threads != session_options().intra_op_num_threads:
            options = session_options()
            options.intra_op_num_threads = threads
            session = ort.InferenceSession(str(path), options, providers=session.get_providers())
        self.session = session

    def tokens_input(self, tokens: np.ndarray) -> np.ndarray:
        """``token`` as the file takes it: one token per row, [B, 1] in format 2."""
        return tokens[:, None] if self.info.feeds_sequences else tokens

    def score(
        self, tokens: np.ndarray, starts: np.ndarray, lengths: np.ndarray, batch: int
    ) -> Score:
        """Bits and top-1 hits over segments of ``tokens``: segment i is fed
        ``tokens[starts[i] + p]`` from a zero state and predicts ``tokens[starts[i] + p + 1]``,
        for p in 0..lengths[i]-1."""
        pending = deque(int(i) for i in np.argsort(-lengths, kind="stable") if lengths[i] > 0)
        rows = min(max(batch, 1), len(pending))
        row_start = np.zeros(rows, dtype=np.int64)
        row_length = np.zeros(rows, dtype=np.int64)
        for row in range(rows):
            segment = pending.popleft()
            row_start[row], row_length[row] = starts[segment], lengths[segment]
        position = np.zeros(rows, dtype=np.int64)
        h = np.zeros((self.info.layers, rows, self.info.hidden), dtype=np.float32)
        c = np.zeros_like(h)
        total = Score(0.0, 0, 0)
        while len(position):
            at = row_start + position
            logits, h, c = self.session.run(
                ["logits", "h_out", "c_out"],
                {"token": self.tokens_input(tokens[at]), "h": h, "c": c},
            )
            total = total + _score_logits(logits, tokens[at + 1])
            position += 1
            finished = np.flatnonzero(position == row_length)
            if not len(finished):
                continue
            keep = np.ones(len(position), dtype=bool)
            for row in finished.tolist():
                if pending:
                    segment = pending.popleft()
                    row_start[row], row_length[row] = starts[segment], lengths[segment]
                    position[row] = 0
                    h[:, row] = 0.0
                    c[:, row] = 0.0
                else:
                    keep[row] = False
            if not keep.all():
                row_start, row_length, position = row_start[keep], row_length[keep], position[keep]
                h = np.ascontiguousarray(h[:, keep])
                c = np.ascontiguousarray(c[:, keep])
        return total


def _score_logits(logits: np.ndarray, truth: np.ndarray) -> Score:
    """Bits of ``truth`` under softmax(logits) and top-1 hits, summed over the rows."""
    x = logits.astype(np.float64)
    top = x.max(axis=1)
    log_total = top + np.log(np.exp(x - top[:, None]).sum(axis=1))
    nats = log_total - x[np.arange(len(truth)), truth]
    hits = int(np.count_nonzero(x.argmax(axis=1) == truth))
    return Score(float(nats.sum()) / LN2, len(truth), hits)


def load_pieces(corpus_dir: Path, split: str, vocabulary: Vocabulary) -> list[Piece]:
    """The performances of a split, encoded by the daemon's codec (no augmentation)."""
    return [
        Piece(pid, encode_notes(notes_from_array(notes), vocabulary).astype(np.int64), len(notes))
        for pid, notes in load_split(corpus_dir, split)
    ]


def piece_stream(pieces: Sequence[Piece]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pieces' tokens end to end, each piece's start in it, and its number of targets."""
    lengths = np.array([len(p.tokens) for p in pieces], dtype=np.int64)
    starts = np.cumsum(lengths) - lengths
    tokens = np.concatenate([p.tokens for p in pieces]) if pieces else np.zeros(0, np.int64)
    return tokens.astype(np.int64), starts, np.maximum(lengths - 1, 0)


def windows(starts: np.ndarray, targets: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Segments of at most ``window`` targets covering each piece's targets in order."""
    counts = -(-targets // window)
    index = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    offset = index * window
    return np.repeat(starts, counts) + offset, np.minimum(
        window, np.repeat(targets, counts) - offset
    )


@dataclass(frozen=True)
class EvalReport:
    """Everything ``antiphon eval`` measured; :meth:`table` and :meth:`to_json` present it."""

    model: str
    corpus: str
    split: str
    performances: int
    notes: int
    window: int
    carried: Score
    windowed: Score
    markov: dict[int, Score]
    markov_train_tokens: int
    seconds: dict[str, float]

    @property
    def tokens(self) -> int:
        return self.carried.tokens

    @property
    def best_order(self) -> int:
        return min(self.markov, key=lambda k: (self.markov[k].bits_per_token, k))

    @property
    def improvement(self) -> float:
        """How much lower carried bits/token is than the best Markov order's, as a share."""
        return 1.0 - self.carried.bits_per_token / self.markov[self.best_order].bits_per_token

    @property
    def drift_ratio(self) -> float:
        """Carried bits/token over windowed bits/token (above 1: the carried state drifts)."""
        return self.carried.bits_per_token / self.windowed.bits_per_token

    @property
    def beats_markov(self) -> bool:
        return self.improvement >= MARKOV_MARGIN

    @property
    def no_drift(self) -> bool:
        return self.drift_ratio <= 1.0 + DRIFT_LIMIT

    def bits_per_note(self, score: Score) -> float:
        return score.bits / self.notes if self.notes else float("nan")

    def _row(self, score: Score) -> dict[str, float]:
        return {
            "bits_per_token": score.bits_per_token,
            "bits_per_note": self.bits_per_note(score),
            "accuracy": score.accuracy,
            "bits": score.bits,
            "tokens": score.tokens,
            "correct": score.correct,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "corpus": self.corpus,
            "split": self.split,
            "performances": self.performances,
            "notes": self.notes,
            "tokens": self.tokens,
            "window": self.window,
            "carried": self._row(self.carried),
            "windowed": self._row(self.windowed),
            "markov": {
                "smoothing": "interpolated modified Kneser-Ney",
                "train_tokens": self.markov_train_tokens,
                "orders": {str(k): self._row(s) for k, s in sorted(self.markov.items())},
                "best_order": self.best_order,
            },
            "improvement_over_markov": self.improvement,
            "carried_over_windowed": self.drift_ratio,
            "acceptance": {
                "markov_margin": MARKOV_MARGIN,
                "beats_markov": self.beats_markov,
                "drift_limit": DRIFT_LIMIT,
                "no_drift": self.no_drift,
            },
            "seconds": self.seconds,
        }

    def table(self) -> str:
        lines = [
            f"{self.model} on {self.corpus} ({self.split}): {self.performances} performances, "
            f"{self.notes} notes, {self.tokens} tokens scored",
            f"{'':28}{'bits/token':>11}{'bits/note':>11}{'top-1':>8}",
        ]
        rows = [
            ("LSTM carried (as the daemon)", self.carried),
            (f"LSTM windowed ({self.window} tokens)", self.windowed),
        ]
        rows += [(f"Markov order {k}", s) for k, s in sorted(self.markov.items())]
        for name, score in rows:
            lines.append(
                f"{name:28}{score.bits_per_token:11.4f}{self.bits_per_note(score):11.3f}"
                f"{score.accuracy:8.3f}"
            )
        best = self.markov[self.best_order]
        lines += [
            f"best Markov: order {self.best_order} ({best.bits_per_token:.4f} bits/token)",
            f"carried vs best Markov: {abs(self.improvement):.1%} "
            f"{'fewer' if self.improvement >= 0 else 'MORE'} bits/token "
            f"(needs >= {MARKOV_MARGIN:.0%} fewer): {_verdict(self.beats_markov)}",
            f"carried / windowed: {self.drift_ratio:.4f} "
            f"(needs <= {1 + DRIFT_LIMIT:.2f}, no drift): {_verdict(self.no_drift)}",
        ]
        return "\n".join(lines)


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def evaluate(
    model_path: Path,
    corpus_dir: Path,
    split: str = "test",
    window: int = 128,
    max_order: int = 6,
    batch: int = 32,
    threads: int = 2,
) -> EvalReport:
    """Score the model carried and windowed, and the Markov baseline, on one held-out split."""
    if split not in EVAL_SPLITS:
        raise EvalError(f"split must be one of {', '.join(EVAL_SPLITS)}, not '{split}'")
    if window < 1 or batch < 1 or threads < 1 or max_order < 1:
        raise EvalError("window, batch, threads and max order must each be at least 1")
    seconds: dict[str, float] = {}
    scorer = OnnxScorer(model_path, threads)
    corpus_codec = load_codec(corpus_dir)
    if corpus_codec != scorer.info.codec:
        raise EvalError(
            f"{model_path} was trained with codec {scorer.info.codec.to_json()} but "
            f"{corpus_dir} was built with {corpus_codec.to_json()}; "
            "rebuild the corpus with the model's codec"
        )
    vocabulary = scorer.info.vocabulary

    clock = time.perf_counter()
    pieces = load_pieces(corpus_dir, split, vocabulary)
    if not pieces:
        raise EvalError(f"{corpus_dir}: the {split} split holds no performances")
    tokens, starts, targets = piece_stream(pieces)
    if not targets.sum():
        raise EvalError(f"{corpus_dir}: the {split} split holds no tokens to predict")
    seconds["encode_split"] = time.perf_counter() - clock
    log.info("%s: %d performances, %d tokens to predict", split, len(pieces), targets.sum())

    clock = time.perf_counter()
    carried = scorer.score(tokens, starts, targets, batch)
    seconds["carried"] = time.perf_counter() - clock
    log.info("carried: %.4f bits/token (%.1f s)", carried.bits_per_token, seconds["carried"])
    clock = time.perf_counter()
    windowed = scorer.score(tokens, *windows(starts, targets, window), batch)
    seconds["windowed"] = time.perf_counter() - clock
    log.info("windowed: %.4f bits/token (%.1f s)", windowed.bits_per_token, seconds["windowed"])

    clock = time.perf_counter()
    train = [p.tokens for p in load_pieces(corpus_dir, "train", vocabulary)]
    seconds["encode_train"] = time.perf_counter() - clock
    clock = time.perf_counter()
    markov = MarkovBaseline.train(train, vocabulary.size, max_order)
    seconds["markov_train"] = time.perf_counter() - clock
    log.info("Markov: trained on %d tokens (%.1f s)", sum(map(len, train)), seconds["markov_train"])
    clock = time.perf_counter()
    markov_scores = markov.score([p.tokens for p in pieces], range(1, max_order + 1))
    seconds["markov_score"] = time.perf_counter() - clock

    return EvalReport(
        model=str(model_path),
        corpus=str(corpus_dir),
        split=split,
        performances=len(pieces),
        notes=sum(p.notes for p in pieces),
        window=window,
        carried=carried,
        windowed=windowed,
        markov=markov_scores,
        markov_train_tokens=int(sum(len(t) for t in train)),
        seconds=seconds,
    )
