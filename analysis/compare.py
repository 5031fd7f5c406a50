"""SM vs IBNN comparisons: per-seed contrasts (exact rank intervals) and curve statistics.

A comparison's statistics are either `effects.Contrast`s (an effect defined per seed, with a
Hodges-Lehmann estimate and an exact Wilcoxon / Mann-Whitney interval) or `Statistic`s of the two
arms' median curves (with the gated stratified bootstrap of `stats.bootstrap_pair`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from analysis.effects import Contrast, rank_effect
from analysis.stats import BootstrapSpec, bootstrap_pair, pair_arms
from ibnn.vocab import IBNN_FAMILIES

__all__ = [
    "Statistic",
    "compare_arms",
    "first_crossing",
    "running_mean",
    "mean_gap",
]

# Families compared against SM.
# A statistic maps (xs (k,), med_sm (..., k), med_ibnn (..., k)) to (...,) values.
Statistic = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]

_OUT = [
    "value",
    "lo",
    "hi",
    "n_sm",
    "n_ibnn",
    "n_shared",
    "method",
    "coverage",
    "null",
    "p",
    "se",
]


def running_mean(curves: np.ndarray, window: int) -> np.ndarray:
    """Trailing running average along the last axis; the first window - 1 points are NaN.

    Args:
        curves: (..., k) curves over consecutive epochs.
        window: number of epochs averaged (>= 1).

    Returns:
        (..., k) averages of points j - window + 1 .. j (NaN if any of them is NaN).
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, but got {window}")
    c = np.asarray(curves, dtype=float)
    out = np.full(c.shape, np.nan)
    if c.shape[-1] >= window:
        out[..., window - 1 :] = sliding_window_view(c, window, axis=-1).mean(axis=-1)
    return out


def first_crossing(
    xs: np.ndarray, curves: np.ndarray, target: np.ndarray, interpolate: bool
) -> np.ndarray:
    """First x at which a curve reaches `target` (curve >= target).

    Args:
        xs: (k,) increasing coordinates.
        curves: (..., k) curves (NaN points never count as reaching).
        target: (...,) level to reach, one per curve.
        interpolate: if true, interpolate linearly between the last point below the target and
            the first point at or above it (when both are finite); else return that point's x.

    Returns:
        (...,) the crossing x; +inf where the curve never reaches the target, NaN where the
        target is NaN.
    """
    xs = np.asarray(xs, dtype=float)
    c = np.asarray(curves, dtype=float)
    t = np.asarray(target, dtype=float)[..., None]
    with np.errstate(invalid="ignore"):
        hit = c >= t
    j = hit.argmax(axis=-1)
    x = xs[j].astype(float)
    if interpolate:
        jp = np.maximum(j - 1, 0)
        y1 = np.take_along_axis(c, j[..., None], -1)[..., 0]
        y0 = np.take_along_axis(c, jp[..., None], -1)[..., 0]
        tt = t[..., 0]
        ok = (j > 0) & np.isfinite(y0) & (y1 > y0)
        with np.errstate(invalid="ignore", divide="ignore"):
            frac = np.where(ok, (tt - y0) / (y1 - y0), 1.0)
        x = np.where(ok, xs[jp] + frac * (xs[j] - xs[jp]), x)
    x = np.where(hit.any(axis=-1), x, np.inf)
    return np.where(np.isnan(t[..., 0]), np.nan, x)


def mean_gap(xs: np.ndarray, sm: np.ndarray, ibnn: np.ndarray) -> np.ndarray:
    """IBNN - SM difference of medians, averaged over the curve's points."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN curve gives NaN
        return np.nanmean(ibnn - sm, axis=-1)


def compare_arms(
    df: pd.DataFrame,
    keys: Sequence[str],
    x: str | None,
    value: str,
    statistics: dict[str, Statistic | Contrast],
    spec: BootstrapSpec,
    families: tuple[str, ...] = IBNN_FAMILIES,
) -> pd.DataFrame:
    """For each condition, compare SM with every IBNN arm on one or more statistics.

    Args:
        df: tidy rows with family, arm, seed, `keys`, `x` (if given) and `value`.
        keys: columns of the condition within which arms are compared.
        x: the curve coordinate (None: one value per seed).
        value: the measured column.
        statistics: name -> a per-seed `Contrast` (rank-based effect) or a statistic of the
            median curves (xs, med_sm, med_ibnn) (bootstrap).
        spec: interval settings.
        families: the families whose arms are compared with SM.

    Returns:
        One row per condition, IBNN arm and statistic: keys, arm, family, statistic, value, lo,
        hi, n_sm, n_ibnn, n_shared, method, coverage (exact, or NaN for the bootstrap), null (the
        value the p-value tests), p, se. Conditions without an SM arm give no rows.
    """
    keys = list(keys)
    cols = [*keys, "arm", "family", "statistic", *_OUT]
    if df.empty:
        return pd.DataFrame(columns=cols)
    rows = []
    groups = df.groupby(keys, dropna=False, sort=True) if keys else [((), df)]
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        sm = g[g["family"] == "sm"]
        if sm.empty:
            continue
        for arm, b in g[g["family"].isin(families)].groupby("arm", sort=True):
            pair = pair_arms(sm, b, x, value)
            for name, stat in statistics.items():
                if isinstance(stat, Contrast):
                    est, null = rank_effect(pair, stat, spec.level), stat.null
                else:
                    fn = lambda a, c, s=stat, p=pair: s(p.xs, a, c)  # noqa: E731
                    est, null = bootstrap_pair(pair, fn, spec), 0.0
                rows.append(
                    (
                        *key,
                        arm,
                        b["family"].iloc[0],
                        name,
                        est.value,
                        est.lo,
                        est.hi,
                        est.n_a,
                        est.n_b,
                        est.n_shared,
                        est.method,
                        est.coverage,
                        null,
                        est.p,
                        est.se,
                    )
                )
    return pd.DataFrame(rows, columns=cols)
