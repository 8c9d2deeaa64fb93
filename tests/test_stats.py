"""Intervals of :mod:`metabridge.stats` against SciPy's Student t and a hand computation."""

from __future__ import annotations

import math

import pytest

from metabridge.stats import mean_ci95, mean_t_interval95, t_quantile975


@pytest.mark.parametrize("df", [1, 2, 4, 9, 29, 30, 31, 50, 200])
def test_t_quantile_matches_scipy(df: int) -> None:
    stats = pytest.importorskip("scipy.stats")
    assert t_quantile975(df) == pytest.approx(float(stats.t.ppf(0.975, df)), abs=2e-4)


def test_three_seeds_interval_by_hand() -> None:
    r = mean_t_interval95([0.90, 0.92, 0.97])
    sd = math.sqrt(((0.90 - 0.93) ** 2 + (0.92 - 0.93) ** 2 + (0.97 - 0.93) ** 2) / 2)
    assert r.mean == pytest.approx(0.93)
    assert r.ci95 == pytest.approx(4.3027 * sd / math.sqrt(3))
    assert r.ci95 > mean_ci95([0.90, 0.92, 0.97]).ci95  # t with 2 df is wider than the normal 1.96


def test_one_value_has_no_spread_and_bad_input_is_refused() -> None:
    assert math.isnan(mean_t_interval95([0.5]).ci95)
    with pytest.raises(ValueError, match="at least one"):
        mean_t_interval95([])
    with pytest.raises(ValueError, match="diverged"):
        mean_t_interval95([0.5, float("nan")])
    with pytest.raises(ValueError, match="degree of freedom"):
        t_quantile975(0)
