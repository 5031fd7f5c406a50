"""Medians over seeds with exact intervals, and the seeded bootstrap kept for curve statistics.

The median of one arm gets the exact distribution-free order-statistic interval
[x_(j), x_(n+1-j)] (`analysis.ranks.median_interval`): the narrowest symmetric one whose exact
binomial coverage is >= the level, NaN when none is (n < 5 at 90%: even [min, max] of 4 seeds
covers only 87.5%).

Statistics of two arms' median *curves* that are not a per-seed contrast (where IBNN's curve
first reaches SM's best, see `analysis.derived`) keep a stratified paired percentile bootstrap:
resample the seeds with replacement B times, recompute the statistic, take the (1 - level)/2
and (1 + level)/2 quantiles of the B values (outer order statistics, numpy's "lower"/"higher"
methods, so that an infinite value such as "never reached" stays usable). Seeds run by both
arms are resampled together, seeds only one arm ran independently within that arm. Its
coverage is measured, not exact (benchmarks/ci_coverage.py), so its interval is reported only
when both arms have at least `BootstrapSpec.bootstrap_min_seeds` seeds. The generator is
`numpy.random.default_rng(spec.seed)`, created afresh for every estimate.

SM vs IBNN differences that are per-seed contrasts use Hodges-Lehmann estimates with exact
Wilcoxon / Mann-Whitney intervals (`analysis.effects`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.ranks import median_interval, min_paired_seeds, min_unpaired_seeds

__all__ = [
    "BootstrapSpec",
    "Estimate",
    "ArmPair",
    "median_ci",
    "summarize",
    "pair_arms",
    "bootstrap_pair",
    "bootstrap_curve",
    "percentile_interval",
    "bootstrap_p",
    "min_median_seeds",
    "ORDER_STATISTIC",
    "BOOTSTRAP",
]


@dataclass(frozen=True)
class BootstrapSpec:
    """How every confidence interval is computed (the name is historical: see `describe`)."""

    level: float = 0.90  # two-sided confidence level of every interval
    n_resamples: int = 2000  # bootstrap resamples B (curve statistics only)
    seed: int = 0  # seed of numpy.random.default_rng for the resampling
    bootstrap_min_seeds: int = 5  # fewest seeds per arm for a bootstrap interval (measured)

    def __post_init__(self) -> None:
        if not 0.0 < self.level < 1.0:
            raise ValueError(f"level must lie in (0, 1), but got {self.level}")
        if self.n_resamples < 100:
            raise ValueError(f"n_resamples must be >= 100, but got {self.n_resamples}")
        if self.bootstrap_min_seeds < 2:
            raise ValueError(
                f"bootstrap_min_seeds must be >= 2, but got {self.bootstrap_min_seeds}"
            )

    def describe(self) -> str:
        """The methods of every interval in a few sentences, for captions and the dashboard."""
        lvl = f"{100 * self.level:g}%"
        lo, hi = 50 * (1 - self.level), 50 * (1 + self.level)
        return (
            f"Median of one arm: sample median over seeds with the exact {lvl} order-statistic "
            f"interval (distribution-free; none below {min_median_seeds(self.level)} seeds). "
            "SM vs IBNN effects that are per-seed contrasts: Hodges-Lehmann estimate with the "
            "exact Wilcoxon signed-rank interval over the seeds both arms ran (estimates the "
            "pseudo-median of the per-seed differences; none below "
            f"{min_paired_seeds(self.level)} shared seeds), or, with no shared seed, the "
            "two-sample Hodges-Lehmann shift with the exact Mann-Whitney interval (none below "
            f"{min_unpaired_seeds(self.level)} seeds per arm); p-values are those tests'. "
            "Where IBNN's median curve first reaches SM's best: stratified paired percentile "
            f"bootstrap ({lo:g}th and {hi:g}th percentiles of {self.n_resamples} resamples, "
            f"numpy default_rng(seed={self.seed})), shown only with >= "
            f"{self.bootstrap_min_seeds} seeds per arm, where its measured coverage is >= 0.88."
        )

    def rng(self) -> np.random.Generator:
        """A fresh generator seeded with `seed`."""
        return np.random.default_rng(self.seed)


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its confidence interval."""

    value: float  # point estimate (statistic on the observed seeds)
    lo: float  # lower end of the interval
    hi: float  # upper end of the interval
    n_a: int = 0  # seeds in the first arm (SM in comparisons; the only arm otherwise)
    n_b: int = 0  # seeds in the second arm (IBNN in comparisons)
    n_shared: int = 0  # seeds run by both arms (resampled paired)
    coverage: float = float("nan")  # exact coverage of [lo, hi] (NaN: measured, or none)
    p: float = float("nan")  # two-sided p-value of the null value, dual to the interval
    se: float = float("nan")  # standard error of the estimate (for power)
    method: str = ""  # how the interval was computed (see `METHODS`)


# Method names stored with every estimate.
ORDER_STATISTIC = "order statistic"
BOOTSTRAP = "percentile bootstrap"


def percentile_interval(samples: np.ndarray, level: float) -> tuple[float, float]:
    """Percentile interval of bootstrap replicates (NaN replicates dropped).

    Args:
        samples: (B,) replicates of the statistic; may hold +-inf.
        level: two-sided confidence level.

    Returns:
        (lo, hi); NaN, NaN when fewer than half the replicates are finite-or-infinite numbers.
    """
    s = np.asarray(samples, dtype=float)
    s = s[~np.isnan(s)]
    if s.size == 0 or s.size < 0.5 * np.asarray(samples).size:
        return float("nan"), float("nan")
    a = (1.0 - level) / 2.0
    return (
        float(np.quantile(s, a, method="lower")),
        float(np.quantile(s, 1.0 - a, method="higher")),
    )


def _nanmedian(x: np.ndarray, axis: int) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices give NaN, as intended
        return np.nanmedian(x, axis=axis)


def min_median_seeds(level: float) -> int:
    """Fewest values whose [min, max] covers the median with probability >= level (5 at 0.9)."""
    n = 1
    while 1.0 - 2.0 * 0.5**n < level:
        n += 1
    return n


def median_ci(values: Sequence[float] | np.ndarray, spec: BootstrapSpec) -> Estimate:
    """Median of `values` (one per seed, NaN ignored) and its exact order-statistic interval.

    The interval is [x_(j), x_(n+1-j)] with the largest j whose exact coverage
    P(j <= Binomial(n, 1/2) <= n - j) is >= spec.level; `coverage` holds that probability. With
    too few values for the level (n < 5 at 90%) the interval is NaN; with none, all is NaN.
    """
    est = median_interval(np.asarray(values, dtype=float), spec.level)
    n = int(np.sum(~np.isnan(np.asarray(values, dtype=float))))
    return Estimate(est.value, est.lo, est.hi, n, coverage=est.coverage, method=ORDER_STATISTIC)


def summarize(df: pd.DataFrame, by: Sequence[str], value: str, spec: BootstrapSpec) -> pd.DataFrame:
    """Per group: median of `value` over rows (seeds), its interval, n, min and max.

    Args:
        df: tidy frame, one row per seed (trial) and group.
        by: grouping columns (a configuration); NaN keys form their own group.
        value: column to summarise.
        spec: bootstrap settings.

    Returns:
        One row per group: the `by` columns, median, lo, hi, n, min, max.
    """
    by = list(by)
    cols = [*by, "median", "lo", "hi", "n", "min", "max"]
    if df.empty:
        return pd.DataFrame(columns=cols)
    rows = []
    for key, g in df.groupby(by, dropna=False, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        est = median_ci(g[value].to_numpy(dtype=float), spec)
        vals = g[value].dropna()
        rows.append(
            (
                *key,
                est.value,
                est.lo,
                est.hi,
                est.n_a,
                vals.min() if len(vals) else np.nan,
                vals.max() if len(vals) else np.nan,
            )
        )
    return pd.DataFrame(rows, columns=cols)


@dataclass(frozen=True, eq=False)
class ArmPair:
    """Two arms' values as seed x point matrices, shared seeds first and in the same order."""

    xs: np.ndarray  # (k,) the points of the curve (sorted), e.g. train fractions or epochs
    a: np.ndarray  # (n_a, k) first arm (SM), NaN where a seed lacks a point
    b: np.ndarray  # (n_b, k) second arm (IBNN)
    n_shared: int  # the first n_shared rows of a and b are the same seeds
    seeds_a: np.ndarray  # (n_a,) seed of each row of a
    seeds_b: np.ndarray  # (n_b,) seed of each row of b


def _matrix(df: pd.DataFrame, seeds: list, xs: np.ndarray, x: str, value: str) -> np.ndarray:
    piv = df.pivot_table(index="seed", columns=x, values=value, aggfunc="median", dropna=False)
    piv = piv.reindex(index=seeds, columns=xs)
    return piv.to_numpy(dtype=float)


def pair_arms(a: pd.DataFrame, b: pd.DataFrame, x: str | None, value: str) -> ArmPair:
    """Arrange two arms' rows (columns seed, x, value) as matrices for `bootstrap_pair`.

    Args:
        a: first arm (SM), one row per seed and x.
        b: second arm (IBNN).
        x: the curve's coordinate column, or None for a single value per seed.
        value: the measured column.

    Returns:
        ArmPair over the union of both arms' x values.
    """
    a = a.assign(_x=0.0) if x is None else a.assign(_x=a[x].astype(float))
    b = b.assign(_x=0.0) if x is None else b.assign(_x=b[x].astype(float))
    xs = np.array(sorted(set(a["_x"].dropna()) | set(b["_x"].dropna())), dtype=float)
    sa, sb = set(a["seed"].dropna()), set(b["seed"].dropna())
    shared = sorted(sa & sb)
    seeds_a = shared + sorted(sa - sb)
    seeds_b = shared + sorted(sb - sa)
    return ArmPair(
        xs=xs,
        a=_matrix(a, seeds_a, xs, "_x", value),
        b=_matrix(b, seeds_b, xs, "_x", value),
        n_shared=len(shared),
        seeds_a=np.array(seeds_a),
        seeds_b=np.array(seeds_b),
    )


def _resample_indices(
    rng: np.random.Generator, n_resamples: int, n_shared: int, n_a: int, n_b: int
) -> tuple[np.ndarray, np.ndarray]:
    shared = rng.integers(0, max(n_shared, 1), size=(n_resamples, n_shared))
    only_a = n_shared + rng.integers(0, max(n_a - n_shared, 1), size=(n_resamples, n_a - n_shared))
    only_b = n_shared + rng.integers(0, max(n_b - n_shared, 1), size=(n_resamples, n_b - n_shared))
    return np.concatenate([shared, only_a], axis=1), np.concatenate([shared, only_b], axis=1)


def bootstrap_pair(
    pair: ArmPair,
    statistic: Callable[[np.ndarray, np.ndarray], np.ndarray],
    spec: BootstrapSpec,
) -> Estimate:
    """Stratified paired bootstrap of a statistic of the two arms' median curves.

    Args:
        pair: the two arms (see `pair_arms`).
        statistic: maps the median curves med_a (..., k) and med_b (..., k) to (...,) values,
            e.g. `lambda a, b: b[..., 0] - a[..., 0]` for the IBNN - SM difference of medians.
        spec: bootstrap settings.

    Returns:
        Estimate with the statistic on the observed seeds, its interval, the bootstrap p-value of
        0 (`bootstrap_p`) and standard error (SD of the finite replicates); interval and p are
        NaN when either arm has fewer than spec.bootstrap_min_seeds seeds, se when fewer than 2.
    """
    n_a, n_b = pair.a.shape[0], pair.b.shape[0]
    nan = float("nan")
    if n_a == 0 or n_b == 0:
        return Estimate(nan, nan, nan, n_a, n_b, pair.n_shared, method=BOOTSTRAP)
    value = float(statistic(_nanmedian(pair.a, 0), _nanmedian(pair.b, 0)))
    if min(n_a, n_b) < 2:
        return Estimate(value, nan, nan, n_a, n_b, pair.n_shared, method=BOOTSTRAP)
    ia, ib = _resample_indices(spec.rng(), spec.n_resamples, pair.n_shared, n_a, n_b)
    reps = np.asarray(statistic(_nanmedian(pair.a[ia], 1), _nanmedian(pair.b[ib], 1)), float)
    finite = reps[np.isfinite(reps)]
    se = float(np.std(finite, ddof=1)) if finite.size > 1 else nan
    if min(n_a, n_b) < spec.bootstrap_min_seeds:  # coverage not shown to reach the level
        return Estimate(value, nan, nan, n_a, n_b, pair.n_shared, se=se, method=BOOTSTRAP)
    lo, hi = percentile_interval(reps, spec.level)
    p = bootstrap_p(reps, 0.0)
    return Estimate(value, lo, hi, n_a, n_b, pair.n_shared, p=p, se=se, method=BOOTSTRAP)


def bootstrap_p(samples: np.ndarray, null: float) -> float:
    """Two-sided percentile-bootstrap p-value of `null`: 2 min(P*(s <= null), P*(s >= null)).

    Dual to `percentile_interval`: `null` lies outside the level interval when p < 1 - level
    (up to the discreteness of B). NaN replicates are dropped; NaN when none is left.
    """
    s = np.asarray(samples, dtype=float)
    s = s[~np.isnan(s)]
    if s.size == 0:
        return float("nan")
    return float(min(1.0, 2.0 * min(np.mean(s <= null), np.mean(s >= null))))


def bootstrap_curve(
    matrix: np.ndarray,
    spec: BootstrapSpec,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pointwise interval of a (transformed) median curve over seeds.

    Args:
        matrix: (n, k) one row per seed, NaN where a seed lacks a point.
        spec: bootstrap settings.
        transform: maps median curves (..., k) to (..., k), e.g. a running average.

    Returns:
        (curve, lo, hi), each (k,); lo and hi are NaN when n < spec.bootstrap_min_seeds.
    """
    transform = transform or (lambda c: c)
    n, k = matrix.shape
    curve = transform(_nanmedian(matrix, 0)) if n else np.full(k, np.nan)
    if n < max(2, spec.bootstrap_min_seeds):
        return curve, np.full(k, np.nan), np.full(k, np.nan)
    idx = spec.rng().integers(0, n, size=(spec.n_resamples, n))
    reps = transform(_nanmedian(matrix[idx], 1))  # (B, k)
    bounds = [percentile_interval(reps[:, j], spec.level) for j in range(k)]
    lo, hi = (np.array(v, dtype=float) for v in zip(*bounds, strict=True))
    return curve, lo, hi
