"""Verdict rules on synthetic sweeps with random noise and known effects (criterion 5), and
the sensitivity to failed trials counted at chance accuracy (criterion 2)."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from analysis_synthetic import FAST, build_noisy_expressivity

from analysis.claims import TOO_FEW
from analysis.failures import chance_accuracy, trials_at_chance
from analysis.load import load_storage
from analysis.report import compute_report


def _expressivity_row(root, **kw) -> pd.Series:
    build_noisy_expressivity(root, **kw)
    c = compute_report(load_storage(str(root)), FAST).claims
    rows = c[c["claim"] == "expressivity"]
    assert len(rows) == 1
    return rows.iloc[0]


def test_three_seeds_are_inconclusive_even_with_a_big_effect(tmp_path):
    r = _expressivity_row(tmp_path, n=3, gap=0.05)
    assert r["verdict"] == TOO_FEW and math.isnan(r["lo"]) and math.isnan(r["hi"])
    assert r["effect"] == pytest.approx(5.0, abs=1.5)  # the estimate is still shown
    assert math.isinf(r["mde"]) and r["seeds_needed"] >= 5
    assert math.isnan(r["p_holm"]) and r["verdict_holm"] == TOO_FEW


def test_ten_seeds_and_a_big_effect_are_supported(tmp_path):
    r = _expressivity_row(tmp_path, n=10, gap=0.05)
    assert r["verdict"] == "supported" and r["lo"] > 0 and r["lo"] <= 5.0 <= r["hi"]
    assert r["method"] == "Hodges-Lehmann / Wilcoxon signed-rank"
    assert r["coverage"] == pytest.approx(0.916015625)  # exact, 10 pairs
    assert r["p"] < 0.01 and r["verdict_holm"] == "supported"
    # SD of the differences ~ 0.7 pp: the detectable effect is about 0.6 pp
    assert 0.2 < r["mde"] < 1.5
    assert r["seeds_needed"] == max(5, math.ceil(10 * (r["mde"] / 1.0) ** 2))


def test_ten_seeds_and_no_effect_are_not_supported(tmp_path):
    r = _expressivity_row(tmp_path, n=10, gap=0.0)
    assert r["verdict"] != "supported" and r["lo"] <= 0 <= r["hi"]


def test_failed_trials_at_chance_flag_a_changed_verdict(tmp_path):
    r = _expressivity_row(tmp_path, n=10, gap=0.02, failed=(0, 1, 2, 3))
    assert r["verdict"] == "supported"  # the 6 surviving IBNN seeds flatter IBNN
    assert r["n_failed"] == 4 and r["effect_failed"] < r["effect"]
    assert r["verdict_failed"] != "supported"
    assert (
        r["sensitivity"].startswith("verdict changes to") and "4 failed trials" in r["sensitivity"]
    )


def test_trials_at_chance_stay_in_and_are_counted_with_their_sensitivity(tmp_path):
    """Two of 8 IBNN seeds end at 12.5% (chance 10%) at all 4 widths: they stay in the main
    statistic (its interval reaches below 0: inconclusive), are counted per arm, and without
    them the 6 remaining pairs support the claim: the row says so."""
    build_noisy_expressivity(tmp_path, n=8, gap=0.03, sd=0.002, chance=(0, 1))
    report = compute_report(load_storage(str(tmp_path)), FAST)
    assert len(report.chance) == 8 and set(report.chance["seed"]) == {0, 1}
    assert set(report.chance["family"]) == {"ibnn"}
    r = report.claims[report.claims["claim"] == "expressivity"].iloc[0]
    assert r["n"].startswith("SM 8, IBNN 8")  # nothing left out
    assert r["verdict"] == "inconclusive" and r["lo"] < 0 < r["hi"]
    assert (r["n_chance_sm"], r["n_chance_ibnn"]) == (0, 8)
    assert r["verdict_nochance"] == "supported"
    assert r["chance_sensitivity"] == (
        "verdict changes to “supported” without the 8 trials at chance"
    )


def test_no_trial_at_chance_gives_no_chance_sensitivity(tmp_path):
    r = _expressivity_row(tmp_path, n=6, gap=0.03)
    assert (r["n_chance_sm"], r["n_chance_ibnn"]) == (0, 0)
    assert r["verdict_nochance"] == "" and r["chance_sensitivity"] == ""


def test_without_failures_the_sensitivity_is_the_effect(tmp_path):
    r = _expressivity_row(tmp_path, n=10, gap=0.02)
    assert r["n_failed"] == 0 and r["effect_failed"] == pytest.approx(r["effect"])
    assert r["sensitivity"] == ""


def test_trials_at_chance_and_unknown_dataset():
    t = pd.DataFrame({"dataset": ["fmnist", "toy2d", "svhn"], "state": ["failed", "failed", "ok"],
                      "test_acc": [0.9, 0.9, 0.9]})  # fmt: skip
    assert list(trials_at_chance(t)["test_acc"]) == [0.1, 0.5, 0.9]
    with pytest.raises(ValueError, match="chance accuracy is known for .* but got 'mnist2'"):
        chance_accuracy("mnist2")
