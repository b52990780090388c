"""Fitting the single line's velocity curve again (``line_loudness_fit``): quantile matching."""

from __future__ import annotations

import numpy as np
import pytest
from antiphon.training.line_loudness_fit import QUANTILES, velocity_curve
from hypothesis import given, settings
from hypothesis import strategies as st


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.floats(0.5, 6.0), st.floats(60.0, 120.0))
def test_the_curve_recovers_a_monotone_map_from_level_to_velocity(
    seed: int, slope: float, centre: float
) -> None:
    rng = np.random.default_rng(seed)
    levels = rng.normal(0.0, 3.0, 2000)
    deviations = slope * np.tanh(levels / 3.0) * 3.0  # louder is faster, not linearly
    level_knots, velocity_knots = velocity_curve(levels, deviations, np.full(10, centre))
    assert len(level_knots) == len(velocity_knots) == len(QUANTILES)
    assert list(level_knots) == sorted(level_knots)
    assert list(velocity_knots) == sorted(velocity_knots)
    # The curve maps each level back to the velocity it came with.
    mapped = np.interp(levels, level_knots, velocity_knots)
    expected = centre + deviations
    inside = (levels > level_knots[0]) & (levels < level_knots[-1])
    assert np.abs(mapped - expected)[inside].max() < 0.15 * slope * 3.0 + 0.1


def test_the_centre_is_the_median_of_the_files_medians() -> None:
    levels = np.linspace(-3.0, 3.0, 101)
    _, velocity_knots = velocity_curve(levels, np.zeros(101), np.array([90.0, 100.0, 120.0]))
    assert velocity_knots == pytest.approx((100.0,) * len(QUANTILES))
