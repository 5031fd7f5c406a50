"""Many claims at once: the family-wise error of the claims table and Holm's adjustment."""

from __future__ import annotations

import numpy as np

__all__ = ["holm", "family_wise_error", "family_wise_text"]


def holm(p: np.ndarray) -> np.ndarray:
    """Holm step-down adjusted p-values; NaN entries stay NaN and are not counted in the family.

    Args:
        p: (m,) p-values.

    Returns:
        (m,) adjusted p-values: the k-th smallest of the m finite ones becomes
        max_{j <= k} min(1, (m - j + 1) p_(j)).
    """
    p = np.asarray(p, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = ok.size
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    adj = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(adj)
    return out


def family_wise_error(m: int, level: float) -> dict[str, float]:
    """Chance of at least one false verdict among m rows when no effect is real.

    Each row's interval misses with probability <= 1 - level, and wrongly says "supported"
    (the whole interval on the favourable side) with probability <= (1 - level) / 2.

    Returns:
        supported_independent, supported_bound (Bonferroni, any dependence),
        any_independent, any_bound.
    """
    a = 1.0 - level
    return {
        "supported_independent": 1.0 - (1.0 - a / 2.0) ** m,
        "supported_bound": min(1.0, m * a / 2.0),
        "any_independent": 1.0 - (1.0 - a) ** m,
        "any_bound": min(1.0, m * a),
    }


def family_wise_text(m: int, level: float) -> str:
    """One paragraph stating the family-wise error of a table of m rows, for the page."""
    e = family_wise_error(m, level)
    a = 1.0 - level
    return (
        f"The table makes {m} comparisons, each with a {100 * level:g}% interval. If no effect "
        f"were real, each row would wrongly read \u201csupported\u201d with probability at most "
        f"{100 * a / 2:g}% and give some wrong verdict with at most {100 * a:g}%; so the chance "
        "of at least one false \u201csupported\u201d in the table is "
        f"{100 * e['supported_independent']:.0f}% if the rows were independent and at most "
        f"{100 * e['supported_bound']:.0f}% whatever their dependence (at least one wrong "
        f"verdict: {100 * e['any_independent']:.0f}% / {100 * e['any_bound']:.0f}%). The Holm "
        f"column adjusts each row's p-value for all {m} rows: \u201csupported (Holm)\u201d keeps "
        f"the family-wise error of the table at {100 * a:g}%."
    )
