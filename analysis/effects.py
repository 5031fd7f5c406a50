"""SM vs IBNN effects that are per-seed contrasts, with exact rank-based intervals.

A contrast reduces each seed's curve of one arm to a score (its accuracy at one point, its mean
over the curve's points, ...); the effect is how much IBNN's scores exceed SM's.

- Seeds run by both arms (paired): the differences d_s = score(IBNN_s) - score(SM_s) of the
  shared seeds; the estimate is their Hodges-Lehmann pseudo-median (median of the Walsh
  averages), the interval the exact Wilcoxon signed-rank one. It covers the pseudo-median of the
  distribution of d, which is its median and its mean when d is symmetric (as it is when the two
  arms' seed noise has the same distribution). Seeds that only one arm ran are not used.
- No shared seed (unpaired): the two-sample Hodges-Lehmann shift median(score_IBNN -
  score_SM) over all pairs, with the exact Mann-Whitney interval; it covers the shift delta
  when IBNN's scores are SM's shifted by delta in distribution.

Where the exact interval cannot reach the level (fewer than 5 shared seeds at 90%, or fewer than
3 per arm unpaired) it is NaN and the verdict is "inconclusive (too few seeds)".
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from analysis.ranks import mann_whitney_interval, signed_rank_interval
from analysis.stats import ArmPair, Estimate

__all__ = [
    "PAIRED",
    "UNPAIRED",
    "RANK_METHODS",
    "Contrast",
    "first_point",
    "mean_over_points",
    "rank_effect",
]

PAIRED = "Hodges-Lehmann / Wilcoxon signed-rank"
UNPAIRED = "Hodges-Lehmann / Mann-Whitney"
RANK_METHODS: tuple[str, ...] = (PAIRED, UNPAIRED)

# A score maps (xs (k,), curves (n, k)) to (n,) per-seed values.
Score = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Contrast:
    """An effect defined per seed: IBNN's score minus SM's."""

    score: Score  # per-seed score of one arm's curves
    null: float = 0.0  # effect tested by the p-value: 0, or -margin for non-inferiority


def first_point(xs: np.ndarray, curves: np.ndarray) -> np.ndarray:
    """The value at the curve's first (only) point."""
    return np.asarray(curves, dtype=float)[..., 0]


def mean_over_points(xs: np.ndarray, curves: np.ndarray) -> np.ndarray:
    """The mean over the curve's points (NaN points left out)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN row gives NaN
        return np.nanmean(np.asarray(curves, dtype=float), axis=-1)


def _sd(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(np.std(x, ddof=1)) if x.size > 1 else float("nan")


def rank_effect(pair: ArmPair, contrast: Contrast, level: float) -> Estimate:
    """Hodges-Lehmann effect IBNN - SM of a per-seed contrast with its exact interval.

    Args:
        pair: the two arms (`analysis.stats.pair_arms`), shared seeds first.
        contrast: the per-seed score and the null value of the p-value.
        level: two-sided confidence level.

    Returns:
        Estimate with method PAIRED when any seed is shared, else UNPAIRED; coverage is the
        interval's exact coverage, p the exact two-sided p-value of contrast.null, se the
        normal-theory standard error (SD of d over sqrt(n), or of the two means).
    """
    n_a, n_b, k = pair.a.shape[0], pair.b.shape[0], pair.n_shared
    sa = contrast.score(pair.xs, pair.a) if n_a else np.zeros(0)
    sb = contrast.score(pair.xs, pair.b) if n_b else np.zeros(0)
    if k > 0:
        d = sb[:k] - sa[:k]
        d = d[~np.isnan(d)]
        r = signed_rank_interval(d, level, contrast.null)
        se = _sd(d) / np.sqrt(d.size) if d.size else float("nan")
        method = PAIRED
    else:
        r = mann_whitney_interval(sa, sb, level, contrast.null)
        a, b = sa[np.isfinite(sa)], sb[np.isfinite(sb)]
        se = np.sqrt(_sd(a) ** 2 / a.size + _sd(b) ** 2 / b.size) if a.size and b.size else np.nan
        method = UNPAIRED
    return Estimate(r.value, r.lo, r.hi, n_a, n_b, k, r.coverage, r.p, float(se), method)
