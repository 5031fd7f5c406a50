"""Power of each claim: the smallest effect its seeds can detect, and the seeds a target needs.

Normal approximation, stated on the page: an estimate with standard error `se` (estimated from
the data: the SD of the per-seed differences over sqrt(n), or the bootstrap SD) detects an
effect theta with probability `power` in a two-sided test at 1 - level when
|theta| >= (z_{1 - (1 - level)/2} + z_power) se / sqrt(ARE). ARE is the asymptotic relative
efficiency of the rank method against the t-test on normal data (3 / pi; 1 for the bootstrap).
The standard error shrinks as 1 / sqrt(seeds per arm), so a target effect t needs
n_eff (mde / t)^2 seeds per arm, and never fewer than the method's minimum for an interval.
"""

from __future__ import annotations

import math

from scipy.stats import norm

from analysis.effects import PAIRED, RANK_METHODS
from analysis.ranks import min_paired_seeds, min_unpaired_seeds
from analysis.stats import BOOTSTRAP

__all__ = ["POWER", "effective_seeds", "min_seeds", "min_detectable", "seeds_needed"]

POWER = 0.80  # power at which the minimal detectable effect is stated


def effective_seeds(n_sm: int, n_ibnn: int, n_shared: int, method: str) -> float:
    """Seeds per arm the standard error corresponds to (pairs when paired; harmonic mean else)."""
    if method == PAIRED:
        return float(n_shared)
    if n_sm <= 0 or n_ibnn <= 0:
        return float("nan")
    return 2.0 / (1.0 / n_sm + 1.0 / n_ibnn)


def min_seeds(method: str, level: float, bootstrap_min: int) -> int:
    """Fewest seeds per arm for which `method` reports an interval at `level`."""
    if method == PAIRED:
        return min_paired_seeds(level)
    if method in RANK_METHODS:
        return min_unpaired_seeds(level)
    if method == BOOTSTRAP:
        return bootstrap_min
    raise ValueError(f"method must be one of {[*RANK_METHODS, BOOTSTRAP]}, but got {method!r}")


def min_detectable(se: float, level: float, method: str, power: float = POWER) -> float:
    """Smallest |effect| detected with probability `power` (normal approximation); NaN if se is."""
    are = 3.0 / math.pi if method in RANK_METHODS else 1.0
    z = norm.ppf(1.0 - (1.0 - level) / 2.0) + norm.ppf(power)
    return float(z * se / math.sqrt(are))


def seeds_needed(mde: float, n_eff: float, target: float, n_min: int) -> float:
    """Seeds per arm for which the minimal detectable effect falls to `target` (>= n_min)."""
    if not (math.isfinite(mde) and math.isfinite(n_eff)) or target <= 0:
        return float("nan")
    return float(max(n_min, math.ceil(n_eff * (mde / target) ** 2)))
