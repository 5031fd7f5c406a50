"""Intervals: exact median intervals, the gated stratified bootstrap, pairing, seeding.

Coverage tolerance. With R repetitions an estimated coverage has standard error
sqrt(c (1 - c) / R): 0.015 for c = 0.9 and R = 400. Bounds allow 3 standard errors. The seeds
are fixed, so the tests are deterministic.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binom

from analysis.stats import (
    ArmPair,
    BootstrapSpec,
    bootstrap_curve,
    bootstrap_pair,
    median_ci,
    pair_arms,
    percentile_interval,
    summarize,
)


def _exact_coverage(n: int, level: float) -> tuple[int, float]:
    """Independent computation with scipy: the largest j whose [x_(j), x_(n+1-j)] reaches level."""
    best = (0, float("nan"))
    for j in range(1, n // 2 + 1):
        cov = binom.cdf(n - j, n, 0.5) - binom.cdf(j - 1, n, 0.5)
        if cov >= level:
            best = (j, float(cov))
    return best


@pytest.mark.parametrize("n", [3, 4, 5, 10, 20, 25])
def test_median_ci_is_the_exact_order_statistic_interval(n):
    x = np.random.default_rng(n).normal(size=n)
    est = median_ci(x, BootstrapSpec(level=0.90))
    j, cov = _exact_coverage(n, 0.90)
    assert est.value == pytest.approx(np.median(x)) and est.n_a == n
    if n < 5:  # even [min, max] covers only 75% (n = 3) or 87.5% (n = 4): no interval
        assert j == 0 and np.isnan(est.lo) and np.isnan(est.hi) and np.isnan(est.coverage)
        return
    xs = np.sort(x)
    assert (est.lo, est.hi) == (xs[j - 1], xs[n - j])
    assert est.coverage == pytest.approx(cov) and est.coverage >= 0.90


@pytest.mark.parametrize("n", [5, 10, 20])
@pytest.mark.parametrize(
    ("name", "draw", "true_median"),
    [
        ("normal", lambda rng, n: rng.normal(2.0, 1.0, n), 2.0),
        ("exponential (skewed)", lambda rng, n: rng.exponential(1.0, n), np.log(2.0)),
        ("t, 2 df (heavy tails)", lambda rng, n: rng.standard_t(2, n), 0.0),
    ],
)
def test_median_ci_simulated_coverage_matches_exact(name, draw, true_median, n):
    rng = np.random.default_rng(12345)
    reps, spec = 400, BootstrapSpec(level=0.90)
    hits = 0
    for _ in range(reps):
        est = median_ci(draw(rng, n), spec)
        hits += est.lo <= true_median <= est.hi
    cov = hits / reps
    exact = _exact_coverage(n, 0.90)[1]
    se = np.sqrt(exact * (1 - exact) / reps)
    assert abs(cov - exact) <= 3 * se + 1e-9, f"{name}, n={n}: {cov:.3f} vs exact {exact:.3f}"
    assert cov >= 0.88, f"{name}, n={n}: {cov:.3f}"


def _pair_coverage(n_a: int, n_b: int, noise: float, reps: int = 400):
    """SM ~ N(0, 1) per seed; IBNN = SM of the same seed + 0.3 + noise * N(0, 1): the true
    difference of population medians is 0.3 (both normal). Returns coverage and mean widths of
    the paired and of the unpaired (seeds treated as unrelated) intervals."""
    rng = np.random.default_rng(7)
    hits, w_paired, w_unpaired = 0, [], []
    for r in range(reps):
        x = rng.normal(size=n_a)
        y = x[:n_b] + 0.3 + noise * rng.normal(size=n_b)
        spec = BootstrapSpec(n_resamples=500, seed=r)

        def diff(a, b):
            return b[..., 0] - a[..., 0]

        shared = min(n_a, n_b)
        paired = ArmPair(
            np.zeros(1), x[:, None], y[:, None], shared, np.arange(n_a), np.arange(n_b)
        )
        est = bootstrap_pair(paired, diff, spec)
        hits += est.lo <= 0.3 <= est.hi
        w_paired.append(est.hi - est.lo)
        unpaired = ArmPair(np.zeros(1), x[:, None], y[:, None], 0, np.arange(n_a), np.arange(n_b))
        w = bootstrap_pair(unpaired, diff, spec)
        w_unpaired.append(w.hi - w.lo)
    return hits / reps, float(np.mean(w_paired)), float(np.mean(w_unpaired))


def test_paired_difference_coverage_weak_pairing():
    cov, _, _ = _pair_coverage(10, 10, noise=3.0)
    assert abs(cov - 0.90) <= 0.045, cov


def test_stratified_difference_coverage_unequal_seed_counts():
    # 10 SM seeds, 5 IBNN seeds of which all 5 are shared with SM (the paper's design)
    cov, _, _ = _pair_coverage(10, 5, noise=1.0)
    assert abs(cov - 0.90) <= 0.045, cov


def test_paired_difference_strong_pairing_is_valid_and_narrower():
    # With strongly correlated arms the percentile bootstrap of a difference of medians is
    # conservative (about 0.96 measured), never anti-conservative; pairing must shrink the CI.
    cov, w_paired, w_unpaired = _pair_coverage(10, 10, noise=0.5)
    assert 0.90 - 0.045 <= cov <= 0.99, cov
    assert w_paired < 0.75 * w_unpaired, (w_paired, w_unpaired)


def test_bootstrap_is_seeded_and_reproducible():
    rng = np.random.default_rng(0)
    p = ArmPair(np.zeros(1), rng.normal(size=(12, 1)), rng.normal(size=(12, 1)), 12,
                np.arange(12), np.arange(12))  # fmt: skip

    def diff(a, b):
        return b[..., 0] - a[..., 0]

    a, b = (bootstrap_pair(p, diff, BootstrapSpec(seed=3)) for _ in range(2))
    c = bootstrap_pair(p, diff, BootstrapSpec(seed=4))
    assert (a.lo, a.hi) == (b.lo, b.hi)
    assert (a.lo, a.hi) != (c.lo, c.hi)
    assert a.lo <= a.value <= a.hi


def test_bootstrap_interval_gated_below_min_seeds():
    b = np.array([1.0, 2.5, 3.1, 3.9])[:, None]
    p = ArmPair(np.zeros(1), np.arange(4.0)[:, None], b, 4, np.arange(4), np.arange(4))
    est = bootstrap_pair(p, lambda a, b: b[..., 0] - a[..., 0], BootstrapSpec())
    assert est.value == pytest.approx(1.3) and np.isnan(est.lo) and np.isnan(est.p)
    assert est.se > 0  # kept for the power column
    spec = BootstrapSpec(bootstrap_min_seeds=4)
    ok = bootstrap_pair(p, lambda a, b: b[..., 0] - a[..., 0], spec)
    assert ok.lo <= ok.value <= ok.hi and 0 <= ok.p <= 1


def test_median_ci_small_and_missing_samples():
    one = median_ci([0.7, np.nan], BootstrapSpec())
    assert one.value == 0.7 and one.n_a == 1 and np.isnan(one.lo) and np.isnan(one.hi)
    none = median_ci([], BootstrapSpec())
    assert none.n_a == 0 and np.isnan(none.value)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"level": 1.0}, "level must lie in"),
        ({"n_resamples": 10}, "n_resamples must be"),
        ({"bootstrap_min_seeds": 1}, "bootstrap_min_seeds must be >= 2, but got 1"),
    ],
)
def test_spec_rejects_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BootstrapSpec(**kwargs)


def test_describe_states_method_resamples_and_seed():
    text = BootstrapSpec(level=0.9, n_resamples=1234, seed=9).describe()
    for part in ("order-statistic", "Hodges-Lehmann", "Wilcoxon signed-rank", "Mann-Whitney"):
        assert part in text, part
    assert "percentile bootstrap" in text and "1234" in text and "seed=9" in text
    assert "90%" in text and "none below 5 seeds" in text and ">= 5 seeds per arm" in text


def test_percentile_interval_keeps_infinities_and_drops_nan():
    s = np.array([1.0] * 50 + [np.inf] * 50 + [np.nan] * 10)
    lo, hi = percentile_interval(s, 0.9)
    assert lo == 1.0 and hi == np.inf
    assert np.isnan(percentile_interval(np.full(10, np.nan), 0.9)[0])


def test_summarize_groups_and_counts():
    df = pd.DataFrame(
        {"arm": ["a"] * 5 + ["b"] * 3, "x": [1, 2, 3, 4, 5, 10, 20, np.nan]},
    )
    out = summarize(df, ["arm"], "x", BootstrapSpec(n_resamples=200)).set_index("arm")
    assert out.loc["a", "median"] == 3 and out.loc["a", "n"] == 5
    assert out.loc["b", "median"] == 15 and out.loc["b", "n"] == 2
    assert out.loc["a", "min"] == 1 and out.loc["a", "max"] == 5
    assert (out.loc["a", "lo"], out.loc["a", "hi"]) == (1, 5)  # [min, max] at n = 5: 93.75%
    assert np.isnan(out.loc["b", "lo"])  # 2 values: no 90% interval


def test_pair_arms_puts_shared_seeds_first_in_the_same_order():
    a = pd.DataFrame({"seed": [3, 1, 2, 0], "v": [30.0, 10.0, 20.0, 0.0]})
    b = pd.DataFrame({"seed": [2, 9, 1], "v": [21.0, 90.0, 11.0]})
    p = pair_arms(a, b, None, "v")
    assert p.n_shared == 2
    assert list(p.seeds_a[:2]) == list(p.seeds_b[:2]) == [1, 2]
    assert list(p.a[:, 0]) == [10.0, 20.0, 0.0, 30.0]
    assert list(p.b[:, 0]) == [11.0, 21.0, 90.0]


def test_bootstrap_pair_needs_two_seeds_per_arm():
    p = ArmPair(np.zeros(1), np.ones((1, 1)), np.ones((4, 1)), 1, np.arange(1), np.arange(4))
    est = bootstrap_pair(p, lambda a, b: b[..., 0] - a[..., 0], BootstrapSpec())
    assert est.value == 0 and np.isnan(est.lo)


def test_bootstrap_curve_band_contains_transformed_curve():
    m = np.arange(20.0)[None, :] + np.random.default_rng(1).normal(0, 0.5, (8, 20))
    curve, lo, hi = bootstrap_curve(m, BootstrapSpec(n_resamples=300), lambda c: 2 * c)
    assert np.isfinite(lo).all()
    assert curve == pytest.approx(2 * np.median(m, axis=0))
    assert np.all(lo <= curve + 1e-12) and np.all(curve <= hi + 1e-12)
