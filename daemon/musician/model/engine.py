"""The inference engine: one ONNX session, the LSTM's recurrent state, sampling and noise.

The API follows Notochord's: :meth:`Engine.feed` advances the state with a token (an event
heard from the player, or one the engine itself chose), :meth:`Engine.feed_run` with the few
tokens of one heard event in one run of the model (format-2 files; about the cost of one
step); :meth:`Engine.sample` draws the next
token from the current logits without advancing; :meth:`Engine.reset`,
:meth:`Engine.get_state` and :meth:`Engine.set_state` manage the state (snapshots for rolling
back an unplayed reply event, and state slots).

A step allocates nothing in Python's view: the session runs through two prebuilt IO bindings
that read ``h``/``c`` from one pair of buffers and write the next state into the other, and
the logits into a fixed array. One intra-op thread (see
:func:`antiphon.daemon.musician.model.model_file.load_model`).
The engine is not thread-safe: one thread (the Performer's) owns it.

Sampling: the logits divided by the temperature, plus an optional ``bias`` (logit units at
the sampling temperature: the reply logic's soft pushes, see
:mod:`antiphon.daemon.musician.answering.follow`), restricted to the tokens an optional ``allowed``
mask permits, softmax, an optional ``blend`` that reshapes the unnormalised probabilities in
place (the player's memory, :mod:`antiphon.daemon.musician.answering.memory`), inverse-CDF draw with
one uniform from ``rng``. Without a bias and a blend, the draw is bit for bit the plain one.

Noise injection, the ``noise`` knob in [0, 1]; two effects, both drawn from ``noise_rng``, a
generator separate from the sampling one, so that at a given seed the sampling draws are the
same at every noise level and a small noise makes a small departure:

1. State perturbation: before each step on a token the engine chose itself
   (``feed(token, perturb=True)``), Gaussian noise with standard deviation
   ``noise * STATE_NOISE_AT_FULL * rms`` is added to ``h`` and ``c``, where ``rms`` is the
   per-layer root mean square of ``h`` (and of ``c``) after the last event that was fed
   unperturbed (the player's last event, usually), so the noise scales with the state's
   typical magnitude and does not feed on itself. Heard events are never perturbed.
2. Jumps: each :meth:`Engine.sample` replaces the model's choice, with probability
   ``noise * JUMP_RATE_AT_FULL``, by another token of the same kind (a pitch for a pitch, a
   pause for a pause), drawn from that kind's allowed tokens at ``JUMP_FLATTEN`` times the
   temperature with the model's own choice excluded: an unexpected but not absurd event that
   the following events must make sense of.

At ``noise == 0`` neither effect draws a random number, so the engine is bit-for-bit the
noise-free engine and its sampling stream is unchanged.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from antiphon.daemon.codec import Vocabulary
from antiphon.daemon.musician.model.model_file import load_model

STATE_NOISE_AT_FULL = 0.5  # perturbation std at noise 1, relative to the state's RMS
JUMP_RATE_AT_FULL = 0.2  # chance that a sampled token is replaced by a jump, at noise 1
JUMP_FLATTEN = 4.0  # a jump samples its kind at this many times the temperature
UNIT_53 = 1.0 / (1 << 53)  # a 53-bit integer times this is a uniform double in [0, 1)
RUN_TOKENS_MAX = 6  # the longest run :meth:`Engine.feed_run` binds (longer ones are split)

Blend = Callable[[np.ndarray], None]  # reshapes unnormalised probabilities [V] in place


class EngineError(RuntimeError):
    """The engine was asked for something its state cannot give (a bad token, no logits)."""


@dataclass
class EngineState:
    """A copy of the recurrent state and the logits it predicts."""

    h: np.ndarray
    c: np.ndarray
    logits: np.ndarray
    fed: bool  # False right after a reset: there are no logits to sample from yet

    def copy(self) -> EngineState:
        return EngineState(self.h.copy(), self.c.copy(), self.logits.copy(), self.fed)


def kind_slice(vocabulary: Vocabulary, kind: int) -> slice:
    """The token range of one :class:`~antiphon.daemon.codec.TokenKind`."""
    starts = (
        vocabulary.note_on_base,
        vocabulary.note_off_base,
        vocabulary.time_shift_base,
        vocabulary.velocity_base,
        vocabulary.size,
    )
    return slice(starts[kind], starts[kind + 1])


def file_stamp(path: str | Path) -> tuple[Path, int, int]:
    """Which file, as it was: its resolved path, modification time (ns) and size."""
    resolved = Path(path).resolve()
    stat = resolved.stat()
    return resolved, stat.st_mtime_ns, stat.st_size


class Engine:
    """An exported model loaded once, with its recurrent state and seeded sampling.

    Args:
        model_path: the ONNX file (see :mod:`antiphon.daemon.musician.model.model_file`).
        seed: makes ``rng`` and ``noise_rng`` (and so every reply) repeat exactly; None
            draws fresh entropy.
        temperature: default sampling temperature (> 0).
        noise: noise knob in [0, 1] (see the module docstring).
        session_options: onnxruntime's session options (default: the daemon's, see
            :func:`~antiphon.daemon.musician.model.model_file.session_options`).

    Raises:
        ModelError: the file cannot be used.
    """

    def __init__(
        self,
        model_path: str | Path,
        *,
        seed: int | None = None,
        temperature: float = 1.0,
        noise: float = 0.0,
        session_options: ort.SessionOptions | None = None,
    ) -> None:
        self.session, self.info = load_model(model_path, session_options)
        self.loaded_from = file_stamp(model_path)
        self.vocabulary: Vocabulary = self.info.vocabulary
        self.temperature = temperature
        self.noise = noise
        self.reseed(seed)
        size = self.vocabulary.size
        shape = self.info.state_shape
        self._tokens = np.zeros(RUN_TOKENS_MAX, dtype=np.int64)
        self._h = (np.zeros(shape, np.float32), np.zeros(shape, np.float32))
        self._c = (np.zeros(shape, np.float32), np.zeros(shape, np.float32))
        self._logits = np.zeros((1, size), np.float32)
        self._logits_row = self._logits[0]
        # A run's bindings by its length (a pair: from each state buffer to the other): one
        # token in every file, up to RUN_TOKENS_MAX in a format-2 file.
        longest = RUN_TOKENS_MAX if self.info.feeds_sequences else 1
        self._bindings = {
            length: (self._binding(0, 1, length), self._binding(1, 0, length))
            for length in range(1, longest + 1)
        }
        self._current = 0  # index of the buffers holding the current state
        self._fed = False
        # Sampling scratch, reused at every draw.
        self._tempered = np.zeros(size, np.float32)
        self._weights = np.zeros(size, np.float64)
        self._cumulative = np.zeros(size, np.float64)
        self._jump_weights = np.zeros(size, np.float64)
        self._kind_slices = tuple(kind_slice(self.vocabulary, k) for k in range(4))
        # Noise scratch and the state scale the perturbation is relative to.
        self._gauss = np.zeros(shape, np.float32)
        self._scale_h = np.zeros((shape[0], 1, 1), np.float32)
        self._scale_c = np.zeros((shape[0], 1, 1), np.float32)
        self._scale_stale = True

    @property
    def path(self) -> Path:
        return self.info.path

    def reseed(self, seed: int | None) -> None:
        """Restart both random streams from ``seed`` (None: fresh entropy)."""
        sampling, noise = np.random.SeedSequence(seed).spawn(2)
        self.rng = np.random.Generator(np.random.PCG64(sampling))
        self.noise_rng = np.random.Generator(np.random.PCG64(noise))

    def _binding(self, source: int, target: int, length: int = 1) -> ort.IOBinding:
        layers, batch, hidden = self.info.state_shape
        state = [layers, batch, hidden]
        binding = self.session.io_binding()
        tokens = [1, length] if self.info.feeds_sequences else [1]
        binding.bind_input("token", "cpu", 0, np.int64, tokens, self._tokens.ctypes.data)
        for name, buffers in (("h", self._h), ("c", self._c)):
            binding.bind_input(name, "cpu", 0, np.float32, state, buffers[source].ctypes.data)
            binding.bind_output(
                f"{name}_out", "cpu", 0, np.float32, state, buffers[target].ctypes.data
            )
        binding.bind_output(
            "logits", "cpu", 0, np.float32, list(self._logits.shape), self._logits.ctypes.data
        )
        return binding

    # State ------------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Whether a token has been fed since the last reset (so there are logits)."""
        return self._fed

    @property
    def logits(self) -> np.ndarray:
        """The current logits [V] (a read-only view, overwritten by the next feed)."""
        view = self._logits_row.view()
        view.flags.writeable = False
        return view

    def feed(self, token: int, *, perturb: bool = False) -> None:
        """Advance the state by one token.

        Args:
            token: a token of the model's vocabulary.
            perturb: apply the noise knob's state perturbation before the step; for tokens
                the engine chose itself (a reply), never for heard events.
        """
        self._check(token)
        if perturb and self.noise > 0.0:
            self._perturb(self._current)
        else:
            self._scale_stale = True
        self._tokens[0] = token
        self._run(1)

    def feed_run(self, tokens: list[int]) -> None:
        """Advance the state by ``tokens`` (one heard event's), in as few runs as the file
        allows: one run of up to ``RUN_TOKENS_MAX`` tokens in a format-2 file, one a token in
        a format-1 file. Never perturbed (heard events are not).

        A run of several tokens gives the state of feeding them one by one, up to the int8
        kernels' rounding (they scale a run's inputs together); one token is :meth:`feed`.
        """
        for token in tokens:
            self._check(token)
        longest = len(self._bindings)
        for start in range(0, len(tokens), longest):
            run = tokens[start : start + longest]
            self._tokens[: len(run)] = run
            self._scale_stale = True
            self._run(len(run))

    def _check(self, token: int) -> None:
        if not 0 <= token < self._weights.shape[0]:
            raise EngineError(f"token {token} outside a vocabulary of {self._weights.shape[0]}")

    def _run(self, length: int) -> None:
        """One run of the model on the first ``length`` of ``_tokens``, the state buffers
        swapped."""
        current = self._current
        self.session.run_with_iobinding(self._bindings[length][current])
        self._current = 1 - current
        self._fed = True

    def _perturb(self, current: int) -> None:
        h, c = self._h[current], self._c[current]
        if self._scale_stale:
            np.sqrt(np.mean(np.square(h), axis=(1, 2), keepdims=True), out=self._scale_h)
            np.sqrt(np.mean(np.square(c), axis=(1, 2), keepdims=True), out=self._scale_c)
            self._scale_stale = False
        sigma = np.float32(self.noise * STATE_NOISE_AT_FULL)
        for state, scale in ((h, self._scale_h), (c, self._scale_c)):
            self.noise_rng.standard_normal(dtype=np.float32, out=self._gauss)
            self._gauss *= scale
            self._gauss *= sigma
            state += self._gauss

    def reset(self) -> None:
        """Forget everything: the zero state, no logits until the next feed."""
        for buffers in (self._h, self._c):
            buffers[self._current].fill(0.0)
        self._logits.fill(0.0)
        self._fed = False
        self._scale_stale = True

    def get_state(self, out: EngineState | None = None) -> EngineState:
        """A copy of the state; pass ``out`` (an earlier copy) to reuse its arrays."""
        h, c = self._h[self._current], self._c[self._current]
        if out is None:
            return EngineState(h.copy(), c.copy(), self._logits_row.copy(), self._fed)
        np.copyto(out.h, h)
        np.copyto(out.c, c)
        np.copyto(out.logits, self._logits_row)
        out.fed = self._fed
        return out

    def set_state(self, state: EngineState) -> None:
        """Make a copy of ``state`` the current state (it stays the caller's)."""
        if state.h.shape != self.info.state_shape or state.logits.shape != self._logits_row.shape:
            raise EngineError("that state belongs to a model of another shape")
        np.copyto(self._h[self._current], state.h)
        np.copyto(self._c[self._current], state.c)
        np.copyto(self._logits_row, state.logits)
        self._fed = state.fed
        self._scale_stale = True

    # Sampling ---------------------------------------------------------------------------

    def _fill_weights(
        self,
        allowed: np.ndarray | None,
        temperature: float | None,
        bias: np.ndarray | None = None,
        blend: Blend | None = None,
    ) -> None:
        """Unnormalised probabilities (peak 1 before a blend) of the next token into
        ``self._weights``."""
        if not self._fed:
            raise EngineError("nothing has been fed since the last reset: no logits to sample")
        weights = self._weights
        # Right after a session step has cooled the caches each numpy call costs microseconds,
        # so the arithmetic of the plain formula (test_engine's reference_draw) is done in as
        # few calls as give the same bits: ufuncs and reductions called directly, not through
        # numpy's Python-level wrappers; the tempered logits in float32 (as numpy multiplies a
        # float32 array by a Python float) widened by a copy, not by a multiply that casts.
        inverse = 1.0 / float(temperature or self.temperature)
        tempered = self._logits_row
        if inverse != 1.0:  # x * 1.0 is x
            tempered = np.multiply(tempered, inverse, out=self._tempered)
        if allowed is None:
            np.copyto(weights, tempered)
        else:
            # The forbidden tokens at -inf, the others copied: as copying all and masking
            # after, in fewer passes (a bias has no +inf, so a forbidden token stays at -inf).
            weights.fill(-np.inf)
            np.copyto(weights, tempered, where=allowed)
        if bias is not None:
            np.add(weights, bias, out=weights)
        peak = np.maximum.reduce(weights)
        if peak == -np.inf:
            raise EngineError("every token is masked")
        np.subtract(weights, peak, out=weights)
        np.exp(weights, out=weights)
        if blend is not None:
            blend(weights)

    def probabilities(
        self,
        allowed: np.ndarray | None = None,
        temperature: float | None = None,
        bias: np.ndarray | None = None,
        blend: Blend | None = None,
    ) -> np.ndarray:
        """The distribution :meth:`sample` draws from (before any jump), as a new array."""
        self._fill_weights(allowed, temperature, bias, blend)
        return self._weights / self._weights.sum()

    def sample(
        self,
        allowed: np.ndarray | None = None,
        temperature: float | None = None,
        bias: np.ndarray | None = None,
        blend: Blend | None = None,
    ) -> int:
        """Draw the next token from the current logits, without advancing the state.

        Args:
            allowed: boolean mask [V] of the tokens that may be drawn; None allows all.
            temperature: overrides ``self.temperature`` for this draw.
            bias: added to the tempered logits [V] (float64, no +inf); None adds nothing.
            blend: reshapes the unnormalised probabilities in place (it must leave some
                allowed token a weight above 0); None leaves them.
        """
        self._fill_weights(allowed, temperature, bias, blend)
        cumulative = np.add.accumulate(self._weights, out=self._cumulative)
        # rng.random() as the PCG64 generator computes it (the top 53 bits of one draw),
        # without the Generator's per-call overhead: the same number, the same stream.
        uniform = (self.rng.bit_generator.random_raw() >> 11) * UNIT_53
        point = uniform * cumulative[-1]
        token = min(bisect_right(cumulative, point), cumulative.shape[0] - 1)
        if self.noise > 0.0:
            token = self._maybe_jump(token)
        return token

    def _maybe_jump(self, token: int) -> int:
        # Both draws always happen, so the noise stream stays aligned across noise levels.
        chance, point = self.noise_rng.random(2)
        if chance >= self.noise * JUMP_RATE_AT_FULL:
            return token
        span = self._kind_slices[self.vocabulary.kind(token)]
        weights = self._jump_weights[: span.stop - span.start]
        np.power(self._weights[span], 1.0 / JUMP_FLATTEN, out=weights)  # masked stay 0
        weights[token - span.start] = 0.0
        cumulative = np.cumsum(weights)
        if cumulative[-1] <= 0.0:
            return token  # the model's choice is the only allowed token of its kind
        pick = int(np.searchsorted(cumulative, point * cumulative[-1], side="right"))
        return span.start + min(pick, weights.shape[0] - 1)
