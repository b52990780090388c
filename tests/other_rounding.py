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

from antiphon.daemon.musician.model.engine import Engine
from antiphon.daemon.tools.seed_stability import round_step_otherwise

_feed = Engine.feed


def _feed_rounded_otherwise(self: Engine, token: int, *, perturb: bool = False) -> None:
    _feed(self, token, perturb=perturb)
    round_step_otherwise(self)


def round_like_another_processor() -> None:
    """From now on, every engine in this process rounds otherwise."""
    Engine.feed = _feed_rounded_otherwise  # type: ignore[method-assign]
