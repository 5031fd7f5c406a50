"""Exact distribution-free intervals: order statistics for a median, Hodges-Lehmann for shifts.

Three intervals, each with its exact coverage under its assumption (continuous data):

- median of one sample: [x_(j), x_(n+1-j)], coverage P(j <= Binomial(n, 1/2) <= n - j);
- paired shift (pseudo-median of the differences d, valid when d is symmetric about it): the
  Hodges-Lehmann estimate median{(d_i + d_j) / 2, i <= j} with the interval of the exact
  Wilcoxon signed-rank test, [W_(k), W_(N+1-k)] of the N = n(n+1)/2 sorted Walsh averages;
- two-sample shift (Y = X + delta in distribution): the Hodges-Lehmann estimate
  median{y_j - x_i} with the interval of the exact Mann-Whitney test, [D_(k), D_(N+1-k)] of the
  N = m n sorted differences.

Each interval takes the largest k (the narrowest symmetric interval) whose exact coverage is
still >= the requested level; when even k = 1 (the widest) falls short, there is none (k = 0)
and the caller reports NaN. The p-value of a hypothesised value theta0 is the exact two-sided
p-value of the same test applied to the data shifted by theta0, so that theta0 lies outside
the interval exactly when the test rejects at the interval's achieved level.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from math import comb

import numpy as np

__all__ = [
    "RankEstimate",
    "binomial_cdf",
    "order_statistic_rank",
    "signed_rank_counts",
    "mann_whitney_counts",
    "symmetric_rank",
    "median_interval",
    "signed_rank_interval",
    "mann_whitney_interval",
    "min_paired_seeds",
    "min_unpaired_seeds",
]


@dataclass(frozen=True)
class RankEstimate:
    """A Hodges-Lehmann (or median) estimate with its exact interval."""

    value: float  # point estimate
    lo: float  # lower end; NaN when no interval reaches the level
    hi: float  # upper end
    coverage: float  # exact coverage of [lo, hi] under the method's assumption (NaN if none)
    p: float  # exact two-sided p-value of theta = theta0 (NaN when there are no data)


def binomial_cdf(n: int) -> np.ndarray:
    """P(Binomial(n, 1/2) <= i) for i = 0..n, as an (n + 1,) array."""
    counts = np.array([comb(n, i) for i in range(n + 1)], dtype=float)
    return np.cumsum(counts) / 2.0**n


@lru_cache(maxsize=256)
def signed_rank_counts(n: int) -> tuple[float, ...]:
    """Number of sign patterns giving each value 0..n(n+1)/2 of the signed-rank statistic T+."""
    counts = np.zeros(n * (n + 1) // 2 + 1)
    counts[0] = 1.0
    for r in range(1, n + 1):
        counts[r:] = counts[r:] + counts[:-r].copy()
    return tuple(counts)


@lru_cache(maxsize=1024)
def mann_whitney_counts(m: int, n: int) -> tuple[float, ...]:
    """Number of rank orderings giving each value 0..m n of the Mann-Whitney statistic U."""
    # f[i][j][u]: orderings of i x's and j y's with U = u (u = pairs with y above x).
    f = [[np.zeros(1) for _ in range(n + 1)] for _ in range(m + 1)]
    for i in range(m + 1):
        for j in range(n + 1):
            if i == 0 or j == 0:
                f[i][j] = np.zeros(i * j + 1)
                f[i][j][0] = 1.0
                continue
            out = np.zeros(i * j + 1)
            # the largest value is a y (above all i x's: adds i) or an x (adds nothing)
            out[i : i + (i * (j - 1)) + 1] += f[i][j - 1]
            out[: (i - 1) * j + 1] += f[i - 1][j]
            f[i][j] = out
    return tuple(f[m][n])


def symmetric_rank(counts: np.ndarray | tuple[float, ...], level: float) -> tuple[int, float]:
    """Largest k whose symmetric interval still has coverage >= level.

    Given the null counts of a statistic S on 0..N (symmetric about N/2), the interval between
    the k-th smallest and k-th largest of the N sorted pair statistics (Walsh averages or
    differences) misses theta exactly when S <= k - 1 or S >= N - k + 1.

    Returns:
        (k, coverage) with coverage = 1 - 2 P(S <= k - 1) >= level; (0, nan) when none exists.
    """
    c = np.asarray(counts, dtype=float)
    cdf = np.cumsum(c) / c.sum()
    best, cov = 0, float("nan")
    for k in range(1, (c.size + 1) // 2 + 1):
        coverage = 1.0 - 2.0 * cdf[k - 1]
        if coverage < level:
            break
        best, cov = k, float(coverage)
    return best, cov


def order_statistic_rank(n: int, level: float) -> tuple[int, float]:
    """Largest j with P(j <= Binomial(n, 1/2) <= n - j) >= level, and that coverage.

    [x_(j), x_(n+1-j)] (1-based order statistics) then covers the population median with that
    exact probability for any continuous distribution. (0, nan) when even [min, max] falls short.
    """
    if n < 1:
        return 0, float("nan")
    cdf = binomial_cdf(n)
    best, cov = 0, float("nan")
    for j in range(1, n // 2 + 1):
        coverage = 1.0 - 2.0 * cdf[j - 1]
        if coverage < level:
            break
        best, cov = j, float(coverage)
    return best, cov


def _two_sided_p(counts: tuple[float, ...], s: float) -> float:
    c = np.asarray(counts, dtype=float)
    total = c.sum()
    grid = np.arange(c.size)
    below = c[grid <= s + 1e-9].sum() / total
    above = c[grid >= s - 1e-9].sum() / total
    return float(min(1.0, 2.0 * min(below, above)))


def median_interval(x: np.ndarray, level: float) -> RankEstimate:
    """Sample median and its exact order-statistic interval (NaN values dropped)."""
    v = np.sort(np.asarray(x, dtype=float)[~np.isnan(np.asarray(x, dtype=float))])
    n = v.size
    if n == 0:
        return RankEstimate(*(float("nan"),) * 5)
    j, cov = order_statistic_rank(n, level)
    lo, hi = (float(v[j - 1]), float(v[n - j])) if j else (float("nan"), float("nan"))
    return RankEstimate(float(np.median(v)), lo, hi, cov, float("nan"))


def min_paired_seeds(level: float) -> int:
    """Fewest pairs for which the signed-rank interval reaches `level` (5 at 0.90)."""
    n = 1
    while symmetric_rank(signed_rank_counts(n), level)[0] == 0:
        n += 1
    return n


def min_unpaired_seeds(level: float) -> int:
    """Fewest seeds per arm (equal arms) for which the Mann-Whitney interval reaches `level`."""
    n = 1
    while symmetric_rank(mann_whitney_counts(n, n), level)[0] == 0:
        n += 1
    return n


def _count_above(values: np.ndarray, theta0: float) -> float:
    """#{values > theta0} + #{values == theta0} / 2 (ties split, so the test stays dual)."""
    return float((values > theta0).sum() + 0.5 * (values == theta0).sum())


def signed_rank_interval(d: np.ndarray, level: float, theta0: float = 0.0) -> RankEstimate:
    """Hodges-Lehmann pseudo-median of paired differences with the exact signed-rank interval.

    Args:
        d: (n,) per-pair differences (NaN dropped).
        level: two-sided confidence level.
        theta0: the hypothesised pseudo-median for the p-value.

    Returns:
        RankEstimate; lo, hi, coverage NaN when n is too small for `level` (n < 5 at 0.90).
    """
    d = np.asarray(d, dtype=float)
    d = d[~np.isnan(d)]
    n = d.size
    if n == 0:
        return RankEstimate(*(float("nan"),) * 5)
    i, j = np.triu_indices(n)
    walsh = np.sort((d[i] + d[j]) / 2.0)
    counts = signed_rank_counts(n)
    k, cov = symmetric_rank(counts, level)
    lo, hi = (float(walsh[k - 1]), float(walsh[-k])) if k else (float("nan"), float("nan"))
    # T+ equals the number of Walsh averages above theta0 (ties counted half).
    p = _two_sided_p(counts, _count_above(walsh, theta0))
    return RankEstimate(float(np.median(walsh)), lo, hi, cov, p)


def mann_whitney_interval(
    x: np.ndarray, y: np.ndarray, level: float, theta0: float = 0.0
) -> RankEstimate:
    """Two-sample Hodges-Lehmann shift (y - x) with the exact Mann-Whitney interval.

    Args:
        x: (m,) first sample (SM), NaN dropped.
        y: (n,) second sample (IBNN), NaN dropped.
        level: two-sided confidence level.
        theta0: the hypothesised shift for the p-value.

    Returns:
        RankEstimate; lo, hi, coverage NaN when m, n are too small for `level`.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    x, y = x[~np.isnan(x)], y[~np.isnan(y)]
    if x.size == 0 or y.size == 0:
        return RankEstimate(*(float("nan"),) * 5)
    diffs = np.sort((y[None, :] - x[:, None]).ravel())
    counts = mann_whitney_counts(x.size, y.size)
    k, cov = symmetric_rank(counts, level)
    lo, hi = (float(diffs[k - 1]), float(diffs[-k])) if k else (float("nan"), float("nan"))
    p = _two_sided_p(counts, _count_above(diffs, theta0))
    return RankEstimate(float(np.median(diffs)), lo, hi, cov, p)
