"""Holm's adjustment, the family-wise error statement and the power columns."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from analysis.effects import PAIRED, UNPAIRED
from analysis.multiplicity import family_wise_error, family_wise_text, holm
from analysis.power import effective_seeds, min_detectable, min_seeds, seeds_needed
from analysis.stats import BOOTSTRAP


def _holm_brute(p: list[float]) -> list[float]:
    """Independent computation: textbook Holm with explicit loops."""
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    out, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def test_holm_against_textbook_and_nan_left_out():
    p = [0.01, 0.04, 0.03, 0.2, 0.005]
    assert holm(np.array(p)) == pytest.approx(_holm_brute(p))
    got = holm(np.array([0.01, np.nan, 0.04]))
    assert np.isnan(got[1]) and got[[0, 2]] == pytest.approx(_holm_brute([0.01, 0.04]))


def test_family_wise_error_of_nine_claims():
    e = family_wise_error(9, 0.9)
    assert e["supported_independent"] == pytest.approx(1 - 0.95**9)  # 37%
    assert e["any_independent"] == pytest.approx(1 - 0.9**9)  # 61%
    assert e["supported_bound"] == pytest.approx(0.45) and e["any_bound"] == pytest.approx(0.9)
    text = family_wise_text(9, 0.9)
    assert "9 comparisons" in text and "37%" in text and "45%" in text and "Holm" in text


def test_min_detectable_and_seeds_needed():
    z = norm.ppf(0.95) + norm.ppf(0.8)
    assert min_detectable(0.01, 0.9, BOOTSTRAP) == pytest.approx(z * 0.01)
    assert min_detectable(0.01, 0.9, PAIRED) == pytest.approx(z * 0.01 / math.sqrt(3 / math.pi))
    # halving the detectable effect needs four times the seeds
    assert seeds_needed(0.02, 10, 0.01, 5) == 40
    assert seeds_needed(0.001, 10, 0.01, 5) == 5  # never below the method's minimum
    assert math.isnan(seeds_needed(float("nan"), 10, 0.01, 5))
    assert effective_seeds(10, 5, 5, PAIRED) == 5
    assert effective_seeds(10, 5, 0, UNPAIRED) == pytest.approx(2 / (1 / 10 + 1 / 5))
    assert (min_seeds(PAIRED, 0.9, 5), min_seeds(UNPAIRED, 0.9, 5)) == (5, 3)
    with pytest.raises(ValueError, match="method must be one of .* but got 'magic'"):
        min_seeds("magic", 0.9, 5)
