"""The Markov baseline: a smoothed variable-order Markov model over the codec's tokens.

This is the approach of the Continuator (Pachet 2003), the classic co-improviser: predict the
next event from the longest context seen before, backing off to shorter ones. To make it a
fair, strong baseline the orders are blended with interpolated modified Kneser–Ney smoothing
(Chen & Goodman 1998), down to order 0 and a uniform floor over the vocabulary, so no token
ever gets probability zero. "Order k" is the model that looks at up to k previous tokens.

Context never crosses performances: each one starts from a context of ``BOS`` symbols (the
LSTM starts each from a zero state). Contexts are encoded exactly, not hashed, as int64
mixed-radix numbers over the ``vocab_size + 1`` symbols, so counting is numpy sorting
(``np.unique``) rather than Python dictionaries; scoring builds the full distribution over the
vocabulary for a chunk of positions at a time, order by order, so top-1 accuracy is exact.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

CHUNK_POSITIONS = 4096  # positions scored at once: [chunk, vocab] float32 matrices
FALLBACK_DISCOUNTS = (0.5, 1.0, 1.5)  # when a table has too few rare n-grams to estimate


class MarkovError(ValueError):
    """A Markov model that cannot be built or asked as requested."""


@dataclass(frozen=True)
class Score:
    """Totals over scored tokens: bits of negative log-likelihood and top-1 hits."""

    bits: float
    tokens: int
    correct: int

    @property
    def bits_per_token(self) -> float:
        return self.bits / self.tokens if self.tokens else float("nan")

    @property
    def accuracy(self) -> float:
        return self.correct / self.tokens if self.tokens else float("nan")

    def __add__(self, other: Score) -> Score:
        return Score(
            self.bits + other.bits, self.tokens + other.tokens, self.correct + other.correct
        )


@dataclass(frozen=True)
class _Level:
    """The n-grams seen after contexts of one length: followers of context ``contexts[i]`` are
    ``follower[start[i]:start[i+1]]``. Keys are ``context * radix + follower``, sorted."""

    contexts: np.ndarray  # int64 [C], sorted
    start: np.ndarray  # int64 [C + 1]
    follower: np.ndarray  # int16 [G]

    @classmethod
    def from_keys(cls, keys: np.ndarray, radix: int) -> _Level:
        contexts, first = np.unique(keys // radix, return_index=True)
        return cls(
            contexts=contexts.astype(np.int64),
            start=np.append(first, len(keys)).astype(np.int64),
            follower=(keys % radix).astype(np.int16),
        )

    @property
    def ngrams(self) -> int:
        return len(self.follower)


@dataclass(frozen=True)
class _Smoothing:
    """Discounted probabilities of a level's n-grams (already divided by their context's
    total count) and, per context, ``gamma``: the mass left to the next shorter context."""

    prob: np.ndarray  # float32 [G]
    gamma: np.ndarray  # float32 [C]

    @classmethod
    def from_counts(cls, level: _Level, counts: np.ndarray) -> _Smoothing:
        d1, d2, d3 = _discounts(counts)
        discount = np.where(counts == 1, d1, np.where(counts == 2, d2, d3))
        first = level.start[:-1]
        total = np.add.reduceat(counts, first).astype(np.float64)
        kept = (
            d1 * np.add.reduceat(counts == 1, first)
            + d2 * np.add.reduceat(counts == 2, first)
            + d3 * np.add.reduceat(counts >= 3, first)
        )
        per_context_total = np.repeat(total, np.diff(level.start))
        return cls(
            prob=((counts - discount) / per_context_total).astype(np.float32),
            gamma=(kept / total).astype(np.float32),
        )


def _discounts(counts: np.ndarray) -> tuple[float, float, float]:
    """Modified Kneser–Ney discounts for counts 1, 2 and 3+ (Chen & Goodman's estimates)."""
    n1, n2, n3, n4 = (int(np.count_nonzero(counts == k)) for k in (1, 2, 3, 4))
    if min(n1, n2, n3, n4) == 0:
        return FALLBACK_DISCOUNTS
    y = n1 / (n1 + 2 * n2)
    raw = (1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3)
    # At least a little mass always goes to shorter contexts: no probability is ever zero.
    d1, d2, d3 = (float(np.clip(d, 0.1, k)) for k, d in enumerate(raw, start=1))
    return d1, d2, d3


class MarkovBaseline:
    """Interpolated modified Kneser–Ney Markov model of orders 0..``max_order``.

    Build one with :meth:`train`; :meth:`score` gives bits and top-1 accuracy per order,
    :meth:`distribution` the full next-token distribution after a context.
    """

    def __init__(
        self,
        vocab_size: int,
        max_order: int,
        levels: list[_Level],
        raw: list[_Smoothing],
        continuation: list[_Smoothing],
    ) -> None:
        self.vocab_size = vocab_size
        self.max_order = max_order
        self.bos = vocab_size  # the symbol before the first token of a performance
        self.radix = vocab_size + 1
        # levels[k]: n-grams after contexts of k tokens. raw[k] smooths their plain counts (the
        # top level of the order-k model); continuation[k] their Kneser–Ney continuation counts
        # (how many distinct tokens precede each), used when a longer context backs off.
        self._levels = levels
        self._raw = raw
        self._continuation = continuation

    @staticmethod
    def check_size(vocab_size: int, max_order: int) -> None:
        if vocab_size < 1 or max_order < 0:
            raise MarkovError("need a vocabulary of at least one token and an order >= 0")
        if (vocab_size + 1) ** (max_order + 1) >= 2**63:
            raise MarkovError(
                f"order {max_order} is too long to encode exactly over {vocab_size} tokens"
            )

    @classmethod
    def train(
        cls, sequences: Iterable[np.ndarray], vocab_size: int, max_order: int = 6
    ) -> MarkovBaseline:
        """Count every context of up to ``max_order`` tokens in ``sequences`` (performances)."""
        cls.check_size(vocab_size, max_order)
        padded, targets, _ = _padded_stream(list(sequences), vocab_size, max_order)
        follower = padded[targets]
        if len(follower) == 0:
            raise MarkovError("no training tokens")
        if follower.min() < 0 or follower.max() >= vocab_size:
            raise MarkovError(f"training tokens must lie in 0..{vocab_size - 1}")
        radix = vocab_size + 1
        levels: list[_Level] = []
        raw: list[_Smoothing] = []
        continuation: list[_Smoothing] = []
        context = np.zeros(len(targets), dtype=np.int64)
        for k in range(max_order + 1):
            if k > 0:
                context += padded[targets - k] * radix ** (k - 1)
            keys, counts = np.unique(context * radix + follower, return_counts=True)
            levels.append(_Level.from_keys(keys, radix))
            raw.append(_Smoothing.from_counts(levels[k], counts))
            if k > 0:
                # Every n-gram of k-1 context tokens is preceded by something (BOS at least), so
                # dropping the oldest token of the k-token ones gives exactly level k-1's n-grams,
                # in the same order; how often each comes out is its continuation count.
                _, distinct = np.unique(keys % radix**k, return_counts=True)
                continuation.append(_Smoothing.from_counts(levels[k - 1], distinct))
        return cls(vocab_size, max_order, levels, raw, continuation)

    def ngram_counts(self) -> list[int]:
        """Distinct (context, follower) pairs seen at each context length 0..max_order."""
        return [level.ngrams for level in self._levels]

    def distribution(self, context: Sequence[int], order: int) -> np.ndarray:
        """Probabilities [vocab_size] of the next token after ``context``, the tokens so far
        in a performance (fewer than ``order`` of them means near its start)."""
        self._check_order(order)
        history = np.full(max(self.max_order, 1), self.bos, dtype=np.int64)
        recent = np.asarray(context, dtype=np.int64)[max(len(context) - self.max_order, 0) :]
        if len(recent):
            history[-len(recent) :] = recent
        for k, probs in self._distributions(history[None, :], {order}):
            if k == order:
                return probs[0].astype(np.float64)
        raise AssertionError("unreachable: the requested order is always produced")

    def score(
        self, sequences: Sequence[np.ndarray], orders: Iterable[int], skip_first: int = 1
    ) -> dict[int, Score]:
        """Bits and top-1 hits of each order on every token of ``sequences`` except the first
        ``skip_first`` of each (the LSTM cannot predict a performance's first token)."""
        wanted = set(orders)
        if not wanted:
            raise MarkovError("no order to score")
        for order in wanted:
            self._check_order(order)
        padded, targets, position = _padded_stream(list(sequences), self.vocab_size, self.max_order)
        targets = targets[position >= skip_first]
        totals = {k: Score(0.0, 0, 0) for k in wanted}
        depth = max(self.max_order, 1)
        for begin in range(0, len(targets), CHUNK_POSITIONS):
            at = targets[begin : begin + CHUNK_POSITIONS]
            history = padded[at[:, None] - np.arange(depth, 0, -1)[None, :]]
            truth = padded[at]
            rows = np.arange(len(at))
            for k, probs in self._distributions(history, wanted):
                bits = -np.log2(probs[rows, truth].astype(np.float64)).sum()
                hits = int(np.count_nonzero(probs.argmax(axis=1) == truth))
                totals[k] = totals[k] + Score(float(bits), len(at), hits)
        return totals

    def _check_order(self, order: int) -> None:
        if not 0 <= order <= self.max_order:
            raise MarkovError(f"order {order} outside 0..{self.max_order}")

    def _distributions(
        self, history: np.ndarray, orders: set[int]
    ) -> Iterator[tuple[int, np.ndarray]]:
        """(order, probabilities [n, vocab]) for each wanted order, given histories [n, depth]
        of previous tokens (most recent last, ``bos`` before a performance's start)."""
        n = len(history)
        context = np.zeros(n, dtype=np.int64)
        backoff: np.ndarray | float = 1.0 / self.vocab_size  # the uniform floor
        for k in range(max(orders) + 1):
            if k > 0:
                context += history[:, -k] * self.radix ** (k - 1)
            if k in orders:
                yield k, self._interpolate(k, self._raw[k], context, backoff)
            if k < max(orders):
                backoff = self._interpolate(k, self._continuation[k], context, backoff)

    def _interpolate(
        self, k: int, smoothing: _Smoothing, context: np.ndarray, backoff: np.ndarray | float
    ) -> np.ndarray:
        """Discounted counts after each context plus its left-over mass times ``backoff``."""
        level = self._levels[k]
        unique, inverse = np.unique(context, return_inverse=True)
        index = np.searchsorted(level.contexts, unique)
        index = np.minimum(index, len(level.contexts) - 1)
        seen = np.flatnonzero(level.contexts[index] == unique)
        own = np.zeros((len(unique), self.vocab_size), dtype=np.float32)
        gamma = np.ones(len(unique), dtype=np.float32)  # an unseen context backs off wholly
        if len(seen):
            which = index[seen]
            first, last = level.start[which], level.start[which + 1]
            lengths = last - first
            rows = np.repeat(seen, lengths)
            flat = np.repeat(first, lengths) + _ranges(lengths)
            own[rows, level.follower[flat]] = smoothing.prob[flat]
            gamma[seen] = smoothing.gamma[which]
        return own[inverse] + gamma[inverse, None] * backoff


def _padded_stream(
    sequences: list[np.ndarray], vocab_size: int, max_order: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All sequences laid end to end, each after ``max_order`` BOS symbols (at least one); the
    index of every real token in that stream, and its position in its own sequence."""
    pad = max(max_order, 1)
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    stream = np.full(int(lengths.sum()) + pad * len(sequences), vocab_size, dtype=np.int64)
    starts = np.cumsum(lengths + pad) - lengths  # index of each sequence's first token
    for start, tokens in zip(starts, sequences, strict=True):
        stream[start : start + len(tokens)] = tokens
    position = _ranges(lengths)
    return stream, np.repeat(starts, lengths) + position, position


def _ranges(lengths: np.ndarray) -> np.ndarray:
    """0..n-1 for each n in ``lengths``, concatenated."""
    total = int(lengths.sum())
    return np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)
