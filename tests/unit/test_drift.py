"""Drift math without Spark: PSI and JS against hand-worked numbers and scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon

from goldsmith.monitor.drift import PSI_FLOOR, js_divergence, psi


def test_identical_distributions_have_zero_drift() -> None:
    assert psi([3, 5, 2], [3, 5, 2]) == 0.0
    assert psi([3, 5, 2], [0.3, 0.5, 0.2]) == pytest.approx(0.0, abs=1e-15)  # counts and proportions mix
    assert js_divergence([1, 1, 0], [2, 2, 0]) == pytest.approx(0.0, abs=1e-15)


def test_psi_two_bins_by_hand() -> None:
    # (0.25 - 0.5) ln(0.25/0.5) + (0.75 - 0.5) ln(0.75/0.5) = 0.25 ln 2 + 0.25 ln 1.5 = 0.25 ln 3
    assert psi([50, 50], [25, 75]) == pytest.approx(math.log(3) / 4, rel=1e-12)
    assert psi([25, 75], [50, 50]) == pytest.approx(math.log(3) / 4, rel=1e-12)  # symmetric in its two sides


def test_psi_floors_an_empty_bin() -> None:
    # baseline [1, 0] -> [1, 1e-4]; window [0.5, 0.5]: (0.5 - 1) ln 0.5 + (0.5 - 1e-4) ln(0.5 / 1e-4)
    expected = -0.5 * math.log(0.5) + (0.5 - PSI_FLOOR) * math.log(0.5 / PSI_FLOOR)
    assert psi([7, 0], [3, 3]) == pytest.approx(expected, rel=1e-12)
    assert math.isfinite(psi([1, 0], [0, 1]))


def test_psi_matches_numpy() -> None:
    rng = np.random.default_rng(3)
    b, a = rng.integers(0, 40, 12), rng.integers(0, 40, 12)
    bp, ap = np.maximum(b / b.sum(), PSI_FLOOR), np.maximum(a / a.sum(), PSI_FLOOR)
    assert psi(b.tolist(), a.tolist()) == pytest.approx(float(np.sum((ap - bp) * np.log(ap / bp))), rel=1e-12)


def test_js_by_hand_and_bounds() -> None:
    # p = [0.5, 0.5], q = [0.25, 0.75], m = [0.375, 0.625]
    by_hand = 0.5 * (0.5 * math.log(0.5 / 0.375) + 0.5 * math.log(0.5 / 0.625)) + 0.5 * (
        0.25 * math.log(0.25 / 0.375) + 0.75 * math.log(0.75 / 0.625)
    )
    assert js_divergence([1, 1], [1, 3]) == pytest.approx(by_hand, rel=1e-12)
    assert js_divergence([1, 0], [0, 1]) == pytest.approx(math.log(2), rel=1e-12)  # disjoint: the maximum
    assert js_divergence([1, 3], [1, 1]) == pytest.approx(by_hand, rel=1e-12)  # symmetric


def test_js_matches_scipy() -> None:
    rng = np.random.default_rng(4)
    for _ in range(5):
        p, q = rng.integers(0, 30, 8), rng.integers(0, 30, 8)
        p[0] = 0  # a zero bucket on one side
        assert js_divergence(p.tolist(), q.tolist()) == pytest.approx(float(jensenshannon(p, q)) ** 2, rel=1e-9)


def test_empty_side_is_nan() -> None:
    assert math.isnan(psi([0, 0], [1, 2]))
    assert math.isnan(psi([1, 2], [0, 0]))
    assert math.isnan(js_divergence([], []))


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="length"):
        psi([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="non-negative"):
        js_divergence([1, -1], [1, 1])
    with pytest.raises(ValueError, match="finite"):
        psi([1, math.nan], [1, 1])
