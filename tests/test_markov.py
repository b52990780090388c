"""The Markov baseline: a proper distribution, the Kneser–Ney it claims to be, and orders that
behave as orders should."""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
import pytest
from antiphon.training.markov import FALLBACK_DISCOUNTS, MarkovBaseline, MarkovError
from hypothesis import given, settings
from hypothesis import strategies as st

Context = tuple[int, ...]


class ReferenceKneserNey:
    """Interpolated modified Kneser–Ney written the obvious way (dicts of counters), to check
    the vectorised model against. Same definitions: BOS padding, continuation counts for the
    shorter contexts, Chen & Goodman discounts per table, uniform floor."""

    def __init__(self, sequences: list[np.ndarray], vocab_size: int, max_order: int) -> None:
        self.vocab_size, self.pad = vocab_size, max(max_order, 1)
        self.raw: list[defaultdict[Context, Counter[int]]] = []
        for _ in range(max_order + 1):
            self.raw.append(defaultdict(Counter))
        for seq in sequences:
            padded = [vocab_size] * self.pad + [int(t) for t in seq]
            for i in range(self.pad, len(padded)):
                for k in range(max_order + 1):
                    self.raw[k][tuple(padded[i - k : i])][padded[i]] += 1
        self.continuation: list[defaultdict[Context, Counter[int]]] = []
        for k in range(max_order):
            table: defaultdict[Context, Counter[int]] = defaultdict(Counter)
            for context, followers in self.raw[k + 1].items():
                for token in followers:
                    table[context[1:]][token] += 1
            self.continuation.append(table)

    @staticmethod
    def _discounts(table: dict[Context, Counter[int]]) -> tuple[float, ...]:
        counts = [c for followers in table.values() for c in followers.values()]
        n = [counts.count(k) for k in (1, 2, 3, 4)]
        if min(n) == 0:
            return FALLBACK_DISCOUNTS
        y = n[0] / (n[0] + 2 * n[1])
        raw = (1 - 2 * y * n[1] / n[0], 2 - 3 * y * n[2] / n[1], 3 - 4 * y * n[3] / n[2])
        return tuple(min(max(d, 0.1), k) for k, d in enumerate(raw, start=1))

    def _smooth(
        self, table: dict[Context, Counter[int]], context: Context, lower: np.ndarray
    ) -> np.ndarray:
        if context not in table:
            return lower
        discounts = self._discounts(table)
        followers = table[context]
        total = sum(followers.values())
        out = lower * sum(discounts[min(c, 3) - 1] for c in followers.values()) / total
        for token, c in followers.items():
            out[token] += (c - discounts[min(c, 3) - 1]) / total
        return out

    def distribution(self, context: list[int], order: int) -> np.ndarray:
        history = ([self.vocab_size] * self.pad + context)[-self.pad :]
        lower = np.full(self.vocab_size, 1.0 / self.vocab_size)
        for k in range(order):
            lower = self._smooth(self.continuation[k], tuple(history[len(history) - k :]), lower)
        return self._smooth(self.raw[order], tuple(history[len(history) - order :]), lower)


def _random_pieces(rng: np.random.Generator, vocab: int, count: int, most: int) -> list[np.ndarray]:
    return [rng.integers(0, vocab, size=int(rng.integers(1, most))) for _ in range(count)]


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    vocab=st.integers(2, 12),
    max_order=st.integers(0, 6),
    context=st.lists(st.integers(0, 11), max_size=10),
    order=st.integers(0, 6),
)
def test_probabilities_sum_to_one_over_the_vocabulary_and_are_never_zero(
    seed: int, vocab: int, max_order: int, context: list[int], order: int
) -> None:
    rng = np.random.default_rng(seed)
    model = MarkovBaseline.train(_random_pieces(rng, vocab, 6, 40), vocab, max_order)
    probs = model.distribution([t % vocab for t in context], min(order, max_order))
    assert probs.shape == (vocab,)
    assert probs.sum() == pytest.approx(1.0, abs=1e-5)
    assert probs.min() > 0.0


def test_matches_a_plain_dictionary_kneser_ney_everywhere() -> None:
    rng = np.random.default_rng(7)
    vocab, max_order = 9, 4
    # Skewed data so counts of 1, 2, 3 and 4 all occur and the estimated discounts are used.
    pieces = [
        rng.choice(vocab, size=int(rng.integers(20, 120)), p=np.arange(1, 10) / 45)
        for _ in range(30)
    ]
    model = MarkovBaseline.train(pieces, vocab, max_order)
    reference = ReferenceKneserNey(pieces, vocab, max_order)
    probe = rng.choice(vocab, size=60, p=np.arange(1, 10) / 45).tolist()
    for end in range(0, 60, 3):
        for order in range(max_order + 1):
            np.testing.assert_allclose(
                model.distribution(probe[:end], order),
                reference.distribution(probe[:end], order),
                rtol=1e-5,
                atol=1e-7,
            )


def test_scores_are_the_log_probabilities_of_its_own_distributions() -> None:
    rng = np.random.default_rng(3)
    vocab = 7
    model = MarkovBaseline.train(_random_pieces(rng, vocab, 10, 80), vocab, 3)
    piece = rng.integers(0, vocab, size=50)
    scores = model.score([piece], range(4))
    for order in range(4):
        dists = [model.distribution(piece[:t].tolist(), order) for t in range(1, 50)]
        bits = -sum(np.log2(d[piece[t + 1]]) for t, d in enumerate(dists))
        hits = sum(int(d.argmax() == piece[t + 1]) for t, d in enumerate(dists))
        assert scores[order].tokens == 49
        assert scores[order].bits == pytest.approx(bits, rel=1e-5)
        assert scores[order].correct == hits


def test_a_repeating_phrase_is_predicted_near_perfectly_at_order_two_and_poorly_below() -> None:
    # After 1 comes 4 or 5 and after 5 comes 9, 3 or 8: one token of context is not enough,
    # two always are.
    phrase = np.array([3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8])
    model = MarkovBaseline.train([np.tile(phrase, 40), np.tile(phrase, 25)], 10, 4)
    scores = model.score([np.tile(phrase, 10)], range(5))
    for order in (2, 3, 4):
        assert scores[order].accuracy == 1.0
        assert scores[order].bits_per_token < 0.05
    assert scores[1].accuracy < 0.85
    assert scores[1].bits_per_token > 0.4
    assert scores[0].accuracy < 0.3
    assert scores[0].bits_per_token > 2.5


def test_longer_contexts_help_when_the_next_token_echoes_the_one_four_back() -> None:
    rng = np.random.default_rng(11)
    vocab = 6

    def piece(length: int) -> np.ndarray:
        tokens = list(rng.integers(0, vocab, size=4))
        while len(tokens) < length:
            echo = rng.random() < 0.9
            tokens.append(tokens[-4] if echo else int(rng.integers(0, vocab)))
        return np.array(tokens)

    model = MarkovBaseline.train([piece(400) for _ in range(60)], vocab, 6)
    scores = model.score([piece(300) for _ in range(10)], range(7))
    bits = {k: s.bits_per_token for k, s in scores.items()}
    assert bits[4] < 0.5 * min(bits[1], bits[2], bits[3])
    assert bits[6] < 0.5 * min(bits[1], bits[2], bits[3])
    assert scores[4].accuracy > 0.85
    assert scores[3].accuracy < 0.4


def test_context_does_not_carry_from_one_performance_into_the_next() -> None:
    rng = np.random.default_rng(5)
    vocab = 8
    model = MarkovBaseline.train(_random_pieces(rng, vocab, 20, 60), vocab, 5)
    first, second = rng.integers(0, vocab, size=30), rng.integers(0, vocab, size=25)
    together = model.score([first, second], range(6))
    apart = [model.score([first], range(6)), model.score([second], range(6))]
    for order in range(6):
        assert together[order].tokens == 29 + 24
        assert together[order].bits == pytest.approx(apart[0][order].bits + apart[1][order].bits)
        assert together[order].correct == apart[0][order].correct + apart[1][order].correct


def test_an_unseen_token_still_gets_the_uniform_floor() -> None:
    model = MarkovBaseline.train([np.array([0, 1, 0, 1, 0, 1])], 4, 2)
    probs = model.distribution([0, 1], 2)
    assert 0.0 < probs[3] < 0.05
    assert probs.argmax() == 0


def test_tokens_outside_the_vocabulary_are_refused() -> None:
    with pytest.raises(MarkovError, match="must lie in"):
        MarkovBaseline.train([np.array([0, 1, 5])], 4, 2)


def test_an_order_too_long_to_encode_exactly_is_refused() -> None:
    with pytest.raises(MarkovError, match="too long"):
        MarkovBaseline.train([np.array([0, 1])], 384, 7)


def test_orders_outside_the_trained_range_are_refused() -> None:
    model = MarkovBaseline.train([np.array([0, 1, 2])], 3, 2)
    with pytest.raises(MarkovError, match="outside"):
        model.score([np.array([0, 1, 2])], [3])
