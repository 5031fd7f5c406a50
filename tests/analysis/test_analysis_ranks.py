"""Exact rank intervals and the effects built on them: p-values against scipy, and coverage.

Coverage tolerance: with R = 1000 simulated experiments, a coverage c has standard error
sqrt(c (1 - c) / R) <= 0.0095 near 0.9; the bounds allow 3 of them around the exact coverage,
and the exact coverage must be >= the nominal 0.90 (so >= 0.88, criterion 1; Mann-Whitney with
3 vs 3 seeds is exactly 0.90, so its simulated value may fall a standard error or two below).
Seeds are fixed: deterministic.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from analysis.effects import PAIRED, UNPAIRED, Contrast, first_point, rank_effect
from analysis.ranks import (
    doubled_midranks,
    mann_whitney_interval,
    min_paired_seeds,
    min_unpaired_seeds,
    rank_sum_p,
    signed_rank_interval,
    signed_rank_p,
)
from analysis.stats import ArmPair

REPS = 1000
DELTA = 0.5


def test_p_values_equal_scipy_exact_tests():
    rng = np.random.default_rng(0)
    for n in (5, 8, 12):
        d = rng.normal(0.3, 1.0, n)
        got = signed_rank_interval(d, 0.9).p
        assert got == pytest.approx(stats.wilcoxon(d, method="exact").pvalue)
    for m, n in ((3, 3), (4, 7), (10, 5)):
        x, y = rng.normal(size=m), rng.normal(0.5, 1.0, n)
        got = mann_whitney_interval(x, y, 0.9).p
        assert got == pytest.approx(stats.mannwhitneyu(y, x, method="exact").pvalue)


def _grid(rng: np.random.Generator, loc: float, sd: float, n: int) -> np.ndarray:
    """Accuracy-like values: multiples of 1/500 (so ties between seeds are common)."""
    return np.round(rng.normal(loc, sd, n) * 500) / 500


def _perm_signed_rank(d: np.ndarray, theta0: float) -> float:
    """scipy's exact permutation test of the Pratt signed-rank statistic (independent check)."""
    e = np.round(d - theta0, 12)

    def t_plus(v):
        return stats.rankdata(np.abs(v))[v > 0].sum()

    res = stats.permutation_test((e,), t_plus, permutation_type="samples", n_resamples=np.inf)
    return float(res.pvalue)


def _perm_rank_sum(x: np.ndarray, y: np.ndarray, theta0: float) -> float:
    xs, ys = x, np.round(y - theta0, 12)

    def rank_sum(a, b):
        return stats.rankdata(np.concatenate([a, b]))[a.size :].sum()

    res = stats.permutation_test(
        (xs, ys), rank_sum, permutation_type="independent", n_resamples=np.inf
    )
    return float(res.pvalue)


def test_midranks_match_scipy_rankdata():
    v = np.array([3.0, 1.0, 3.0, 2.0, 3.0, 1.0])
    assert np.array_equal(doubled_midranks(v), 2 * stats.rankdata(v))


def test_p_values_on_tied_data_equal_scipy_permutation_methods():
    """Ties and zeros (accuracy-like values): the exact conditional tests, as scipy's."""
    rng = np.random.default_rng(3)
    checked_ties = 0
    for n in (5, 6, 8, 10):
        d = _grid(rng, 0.004, 0.006, n)
        checked_ties += np.unique(np.abs(d)).size < n
        got = signed_rank_p(d, 0.0)
        assert got == pytest.approx(_perm_signed_rank(d, 0.0), rel=1e-12)
        ref = stats.wilcoxon(d, zero_method="pratt", method=stats.PermutationMethod())
        if np.any(d != 0):
            assert got == pytest.approx(ref.pvalue, rel=1e-12)
    for m, n in ((3, 3), (5, 5), (6, 4), (8, 8)):
        x, y = _grid(rng, 0.80, 0.006, m), _grid(rng, 0.803, 0.006, n)
        checked_ties += np.unique(np.r_[x, y]).size < m + n
        got = mann_whitney_interval(x, y, 0.9).p
        assert got == pytest.approx(_perm_rank_sum(x, y, 0.0), rel=1e-12)
        ref = stats.mannwhitneyu(y, x, method=stats.PermutationMethod(n_resamples=np.inf))
        assert got == pytest.approx(ref.pvalue, rel=1e-12)
    assert checked_ties >= 4  # the data did contain ties


def test_tied_intervals_are_the_sets_scipy_does_not_reject():
    """On tied data, theta0 is outside the interval exactly when scipy's permutation test
    rejects it at 10%, checked at every Walsh average / difference and between them (the
    interval is closed: its ends themselves may be rejected, as with untied data)."""
    rng = np.random.default_rng(5)
    d = _grid(rng, 0.006, 0.006, 7)
    est = signed_rank_interval(d, 0.9)
    i, j = np.triu_indices(d.size)
    walsh = np.unique(np.round((d[i] + d[j]) / 2, 12))
    thetas = np.r_[walsh, (walsh[1:] + walsh[:-1]) / 2, walsh[0] - 0.01, walsh[-1] + 0.01]
    for t in thetas[~np.isclose(thetas, est.lo) & ~np.isclose(thetas, est.hi)]:
        outside = t < est.lo or t > est.hi
        assert outside == (_perm_signed_rank(d, t) <= 0.1 + 1e-12), (t, est)
    x, y = _grid(rng, 0.80, 0.006, 5), _grid(rng, 0.805, 0.006, 5)
    est = mann_whitney_interval(x, y, 0.9)
    diffs = np.unique(np.round(y[None, :] - x[:, None], 12))
    thetas = np.r_[diffs, (diffs[1:] + diffs[:-1]) / 2, diffs[0] - 0.01, diffs[-1] + 0.01]
    for t in thetas[~np.isclose(thetas, est.lo) & ~np.isclose(thetas, est.hi)]:
        outside = t < est.lo or t > est.hi
        assert outside == (_perm_rank_sum(x, y, t) <= 0.1 + 1e-12), (t, est)


def test_all_equal_differences_give_a_point_interval():
    d = np.full(6, 0.01)
    est = signed_rank_interval(d, 0.9)
    assert (est.value, est.lo, est.hi) == pytest.approx((0.01, 0.01, 0.01))
    assert est.p == pytest.approx(2 / 2**6)
    assert rank_sum_p(np.full(4, 0.5), np.full(4, 0.5), 0.0) == 1.0


@pytest.mark.parametrize(("n", "paired"), [(5, True), (10, True), (5, False), (10, False)])
def test_coverage_on_tied_accuracy_like_data(n, paired):
    """Values on a 1/500 grid, true shift 0.004 (2 grid steps): coverage >= 0.88 - 2 se."""
    rng = np.random.default_rng(11)
    hits = 0
    for _ in range(400):
        u = rng.normal(0.8, 0.01, n)
        sm = np.round((u + rng.normal(0, 0.003, n)) * 500) / 500
        base = u if paired else rng.normal(0.8, 0.01, n)
        ib = np.round((base + 0.004 + rng.normal(0, 0.003, n)) * 500) / 500
        est = signed_rank_interval(ib - sm, 0.9) if paired else mann_whitney_interval(sm, ib, 0.9)
        hits += est.lo - 1e-12 <= 0.004 <= est.hi + 1e-12
    assert hits / 400 >= 0.88 - 2 * np.sqrt(0.09 / 400), hits


def test_interval_is_dual_to_the_test():
    """theta0 outside the interval exactly when the exact p-value is below 1 - coverage."""
    rng = np.random.default_rng(1)
    d = rng.normal(0.4, 1.0, 9)
    est = signed_rank_interval(d, 0.9)
    for theta0 in np.linspace(-1.5, 2.0, 71):
        p = signed_rank_interval(d, 0.9, theta0).p
        outside = theta0 < est.lo or theta0 > est.hi
        assert outside == (p <= 1 - est.coverage + 1e-12), theta0


def test_minimum_seed_counts_at_90_percent():
    # signed rank: 4 pairs reach at most 1 - 2/16 = 87.5%; Mann-Whitney 3 vs 3: 1 - 2/20 = 90%
    assert min_paired_seeds(0.9) == 5 and min_unpaired_seeds(0.9) == 3
    assert np.isnan(signed_rank_interval(np.arange(4.0), 0.9).lo)
    est = mann_whitney_interval(np.arange(3.0), np.arange(3.0) + 10, 0.9)
    assert (est.lo, est.hi, est.coverage) == (8.0, 12.0, pytest.approx(0.9))


def _noise(dist: str, rng: np.random.Generator, n: int) -> np.ndarray:
    if dist == "normal":
        return rng.normal(size=n)
    if dist == "lognormal":
        return np.exp(rng.normal(size=n)) - 1.0
    return rng.standard_t(2, size=n)


def _effect_coverage(dist: str, n: int, paired: bool) -> tuple[float, float, int]:
    """Simulated coverage of DELTA, the exact coverage claimed, and how many had an interval."""
    rng = np.random.default_rng(7)
    hits, shown, claimed = 0, 0, np.nan
    for _ in range(REPS):
        u = rng.normal(size=n) if paired else np.zeros(n)
        sm = u + _noise(dist, rng, n)
        ib = (u if paired else rng.normal(size=n)) + DELTA + _noise(dist, rng, n)
        pair = ArmPair(np.zeros(1), sm[:, None], ib[:, None], n if paired else 0,
                       np.arange(n), np.arange(n))  # fmt: skip
        est = rank_effect(pair, Contrast(first_point), 0.9)
        assert est.method == (PAIRED if paired else UNPAIRED)
        if np.isnan(est.lo):
            continue
        shown, claimed = shown + 1, est.coverage
        hits += est.lo <= DELTA <= est.hi
    return (hits / shown if shown else np.nan), claimed, shown


@pytest.mark.parametrize("dist", ["normal", "lognormal", "t2"])
@pytest.mark.parametrize(
    ("n", "paired"), [(3, True), (5, True), (10, True), (3, False), (10, False)]
)
def test_effect_coverage_at_least_088(dist, n, paired):
    cov, claimed, shown = _effect_coverage(dist, n, paired)
    if paired and n == 3:  # no signed-rank interval reaches 90% with 3 pairs: none reported
        assert shown == 0
        return
    se = np.sqrt(claimed * (1 - claimed) / REPS)
    assert claimed >= 0.90 and shown == REPS, (dist, n, paired, claimed)
    assert abs(cov - claimed) <= 3 * se, (dist, n, paired, cov, claimed)
    assert cov >= 0.88 - 2 * se, (dist, n, paired, cov)
