"""The measure of what ``--seed`` promises runs, and its stand-in for another processor's
rounding really moves the numbers (or the figure in the docs would measure nothing)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from antiphon.daemon.musician.model.engine import Engine
from antiphon.daemon.tools.seed_stability import (
    LastBitEngine,
    logit_spread,
    measure,
    options_for,
    round_otherwise,
)

MODEL = str(Path(__file__).resolve().parent.parent / "exported_models" / "antiphon-piano.onnx")


def test_the_last_bit_engine_moves_every_step_by_about_one_unit_in_the_last_place() -> None:
    options = options_for("all", 1)
    plain = logit_spread(MODEL, options, Engine, steps=3)
    moved = logit_spread(MODEL, options, LastBitEngine, steps=3)
    # The first step: one unit in the last place, no more, on every logit.
    assert np.all(np.abs(moved[0] - plain[0]) <= np.abs(np.spacing(plain[0])) * 1.01)
    assert np.count_nonzero(moved[0] != plain[0]) == plain.shape[1]


def test_the_measure_compares_every_variant_with_the_daemons_setting() -> None:
    figures = measure(MODEL, calls=1, seeds=1)
    assert figures["replies"] == 1
    assert figures["reference"] == "all/1"
    assert "all/1" not in figures["variants"]
    assert len(figures["variants"]) == 8  # 4 levels x 2 thread counts, less one, + last-bit
    assert figures["variants"]["last-bit"]["logits_bit_identical"] is False


def test_the_other_rounding_moves_every_value_by_one_unit_in_the_last_place() -> None:
    values = np.linspace(-3.0, 3.0, 1001, dtype=np.float32)
    moved = values.copy()
    round_otherwise(moved)
    assert np.all(moved != values)
    assert np.all(np.abs(moved - values) <= np.spacing(np.abs(values)) * 1.01)
    again = values.copy()
    round_otherwise(again)
    assert np.array_equal(again, moved)  # the same value always rounds the same way
