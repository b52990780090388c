"""Make this machine round like another one.

``ANTIPHON_TEST_ROUNDING=other bash scripts/test`` (tests/conftest.py reads it) moves every
logit and every number of the recurrent state one unit in the last place after each engine
step, up or down by a hash of the value (so the same state always rounds the same way, and a
rolled-back draw repeats). That is what another processor's kernels (AVX2 against AVX-512,
FMA or not) do to onnxruntime's results. A test that still passes under it does not depend on
this processor's last bits; one that fails compares with numbers only this machine computes.
It acts on engines in the pytest process, not on daemons started as processes.
"""

from __future__ import annotations

import numpy as np
from antiphon.daemon.musician.model.engine import Engine

_feed = Engine.feed
_MIX = np.uint32(2654435761)  # Knuth's multiplicative hash


def round_otherwise(values: np.ndarray) -> None:
    """Move each float32 of ``values`` one unit in the last place, in place."""
    up = (((values.view(np.uint32) * _MIX) >> np.uint32(13)) & np.uint32(1)).astype(bool)
    higher = np.nextafter(values, np.float32(np.inf))
    lower = np.nextafter(values, np.float32(-np.inf))
    values[...] = np.where(up, higher, lower)


def _feed_rounded_otherwise(self: Engine, token: int, *, perturb: bool = False) -> None:
    _feed(self, token, perturb=perturb)
    # The arrays the next draw and the next step read (Engine.feed swaps its buffers).
    current = self._current
    for values in (self._logits_row, self._h[current], self._c[current]):
        round_otherwise(values)


def round_like_another_processor() -> None:
    """From now on, every engine in this process rounds otherwise."""
    Engine.feed = _feed_rounded_otherwise  # type: ignore[method-assign]
