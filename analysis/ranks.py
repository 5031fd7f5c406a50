"""Exact distribution-free intervals: order statistics for a median, Hodges-Lehmann for shifts.

Three intervals, each with its exact coverage under its assumption (continuous data):

- median of one sample: [x_(j), x_(n+1-j)], coverage P(j <= Binomial(n, 1/2) <= n - j);
- paired shift (pseudo-median of the differences d, valid when d is symmetric about it): the
  Hodges-Lehmann estimate median{(d_i + d_j) / 2, i <= j} with the interval of the exact
  Wilcoxon signed-rank test, [W_(k), W_(N+1-k)] of the N = n(n+1)/2 sorted Walsh averages;
- two-sample shift (Y = X + delta in distribution): the Hodges-Lehmann estimate
  median{y_j - x_i} with the interval of the exact Mann-Whitney test, [D_(k), D_(N+1-k)] of the
  N = m n sorted differences.

For continuous data each interval is [k-th smallest, k-th largest] with the largest k (the
narrowest symmetric interval) whose exact coverage is still >= the requested level; when even
k = 1 (the widest) falls short, there is none and the caller reports NaN.

Ties (accuracies are multiples of 1/n_eval, so equal values between seeds are the rule) are
handled exactly, by conditioning on them: the statistics use mid-ranks (tied values share the
mean of their ranks) and their null distribution is the permutation distribution given those
mid-ranks (every sign pattern of the nonzero differences, equally likely, for the signed-rank
test, whose zeros keep their rank and never count as positive (Pratt); every split of the
pooled values into the two samples for the rank-sum test), counted exactly by dynamic
programming over doubled mid-ranks, which are integers. This is the distribution that
`scipy.stats.permutation_test` enumerates. The p-value of theta0 is that test's two-sided
p-value (twice the smaller tail, at most 1) on the data shifted by theta0, and the interval is
the set of theta0 it does not reject at 1 - level: the p-value can change only at a Walsh
average (paired) or a pairwise difference (two-sample), so the interval runs from the first to
the last of those points (or the gaps between them) that is not rejected. On untied data this
is the same [k-th smallest, k-th largest] interval. The coverage reported is the exact coverage
of that untied interval; a conditional test of level 1 - level keeps at least `level` under
ties too. Values equal to 12 decimals count as tied (grid values minus grid values are not
exactly equal in floating point).
"""

from __future__ import annotations

from collections.abc import Callable
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
    "doubled_midranks",
    "sign_flip_counts",
    "rank_sum_counts",
    "signed_rank_p",
    "rank_sum_p",
    "accepted_interval",
]

_DECIMALS = 12  # values equal to this many decimals count as tied


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


def _two_sided_p(counts: np.ndarray, s: int) -> float:
    """Twice the smaller tail of the null counts at the observed (integer) statistic s."""
    total = counts.sum()
    below, above = counts[: s + 1].sum() / total, counts[s:].sum() / total
    return float(min(1.0, 2.0 * min(below, above)))


def _tied(x: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(x, dtype=float), _DECIMALS)


def doubled_midranks(a: np.ndarray) -> np.ndarray:
    """Twice the 1-based mid-ranks of `a` (tied values share the mean of their ranks), as ints."""
    a = np.asarray(a)
    order = np.argsort(a, kind="stable")
    s = a[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    ends = np.r_[starts[1:], s.size]
    out = np.empty(s.size, dtype=np.int64)
    out[order] = np.repeat(starts + 1 + ends, ends - starts)  # first rank + last rank
    return out


@lru_cache(maxsize=8192)
def sign_flip_counts(ranks: tuple[int, ...]) -> np.ndarray:
    """counts[s]: sign patterns of items with these doubled ranks whose positive ones sum to s."""
    counts = np.zeros(sum(ranks) + 1)
    counts[0] = 1.0
    for r in ranks:
        counts[r:] = counts[r:] + counts[:-r].copy()
    counts.flags.writeable = False
    return counts


@lru_cache(maxsize=8192)
def rank_sum_counts(ranks: tuple[int, ...], n: int) -> np.ndarray:
    """counts[s]: size-n subsets of the pooled doubled ranks whose ranks sum to s."""
    f = np.zeros((n + 1, sum(ranks) + 1))
    f[0, 0] = 1.0
    for r in ranks:
        f[1:, r:] = f[1:, r:] + f[:-1, :-r]  # right side first: each item used at most once
    out = f[n].copy()
    out.flags.writeable = False
    return out


def signed_rank_p(d: np.ndarray, theta0: float) -> float:
    """Exact conditional two-sided signed-rank p-value of pseudo-median theta0 (Pratt zeros)."""
    e = _tied(np.asarray(d, dtype=float) - theta0)
    r = doubled_midranks(np.abs(e))
    counts = sign_flip_counts(tuple(sorted(r[e != 0].tolist())))
    return _two_sided_p(counts, int(r[e > 0].sum()))


def rank_sum_p(x: np.ndarray, y: np.ndarray, theta0: float) -> float:
    """Exact conditional two-sided rank-sum (Mann-Whitney) p-value of the shift y - x = theta0."""
    pooled = _tied(
        np.concatenate([np.asarray(x, dtype=float), np.asarray(y, dtype=float) - theta0])
    )
    r = doubled_midranks(pooled)
    counts = rank_sum_counts(tuple(sorted(r.tolist())), len(y))
    return _two_sided_p(counts, int(r[len(x) :].sum()))


def accepted_interval(
    points: np.ndarray, p_at: Callable[[float], float], level: float
) -> tuple[float, float]:
    """Hull of the theta0 that a test whose p-value changes only at `points` does not reject.

    The line splits into the distinct points and the open gaps around them; each piece is
    tested once (at the point, or the gap's middle) from the outside in. (nan, nan) when the
    outermost gap is not rejected (too few data for `level`) or nothing is accepted.
    """
    c = np.unique(_tied(points))
    alpha = 1.0 - level + 1e-12
    span = max(float(c[-1] - c[0]), 1.0)

    def theta(i: int) -> float:  # piece i: even 2j, the gap below c[j]; odd 2j + 1, c[j]
        j = i // 2
        if i % 2:
            return float(c[j])
        if j == 0:
            return float(c[0] - span)
        if j == c.size:
            return float(c[-1] + span)
        return float((c[j - 1] + c[j]) / 2)

    pieces = range(2 * c.size + 1)
    lo_i = next((i for i in pieces if p_at(theta(i)) > alpha), None)
    if lo_i is None or lo_i == 0:
        return float("nan"), float("nan")
    hi_i = next(i for i in reversed(pieces) if p_at(theta(i)) > alpha)
    if hi_i == 2 * c.size:
        return float("nan"), float("nan")
    return float(c[(lo_i - 1) // 2]), float(c[hi_i // 2])


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
    walsh = (d[i] + d[j]) / 2.0
    lo, hi = accepted_interval(walsh, lambda t: signed_rank_p(d, t), level)
    cov = symmetric_rank(signed_rank_counts(n), level)[1] if not np.isnan(lo) else float("nan")
    return RankEstimate(float(np.median(walsh)), lo, hi, cov, signed_rank_p(d, theta0))


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
    diffs = (y[None, :] - x[:, None]).ravel()
    lo, hi = accepted_interval(diffs, lambda t: rank_sum_p(x, y, t), level)
    counts = mann_whitney_counts(x.size, y.size)
    cov = symmetric_rank(counts, level)[1] if not np.isnan(lo) else float("nan")
    return RankEstimate(float(np.median(diffs)), lo, hi, cov, rank_sum_p(x, y, theta0))
