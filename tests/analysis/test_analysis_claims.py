"""Claims table: verdict rules, effects in displayed units, missing evidence."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from analysis_synthetic import EXPECTED, FAST

from analysis.claims import CLAIMS, TOO_FEW, VERDICTS, claims_table, verdict
from analysis.report import compute_report


@pytest.mark.parametrize(
    ("lo", "hi", "n", "margin", "expected"),
    [
        (0.1, 0.3, (10, 5), None, "supported"),
        (-0.3, -0.1, (10, 5), None, "not supported"),
        (-0.3, 0.0, (10, 5), None, "not supported"),
        (-0.1, 0.3, (10, 5), None, "inconclusive"),
        (0.1, 0.3, (10, 1), None, TOO_FEW),
        (math.nan, math.nan, (10, 5), None, TOO_FEW),
        (-math.inf, -math.inf, (10, 5), None, "not supported"),
        (-0.005, 0.002, (6, 6), 0.01, "supported"),
        (-0.03, -0.02, (6, 6), 0.01, "not supported"),
        (-0.02, 0.0, (6, 6), 0.01, "inconclusive"),
    ],
)
def test_verdict_rule(lo, hi, n, margin, expected):
    assert verdict(lo, hi, *n, margin=margin) == expected


def test_every_claim_has_a_row_and_a_valid_verdict(report):
    c = report.claims
    assert set(c["claim"]) == {spec.name for spec in CLAIMS}
    assert set(c["verdict"]) <= set(VERDICTS)
    assert c["rule"].str.contains("90% CI").all()


def test_claim_effects_in_displayed_units(report):
    c = report.claims.set_index("claim")
    assert c.loc["less training data", "effect"] == pytest.approx(100 * EXPECTED["fraction_saved"])
    assert c.loc["less training data", "unit"] == "% of training set"
    assert c.loc["faster learning", "effect"] == EXPECTED["epochs_saved"]
    assert c.loc["expressivity", "effect"] == pytest.approx(100 * EXPECTED["expressivity_gap"])
    assert c.loc["less memorization", "effect"] == pytest.approx(100 * EXPECTED["noise_gain"])
    for name in ("less training data", "faster learning", "expressivity", "robustness to Pixle"):
        assert c.loc[name, "verdict"] == "supported", name
        assert c.loc[name, "n"] == "SM 10, IBNN 5 (5 paired)"
    assert "IBNN reaches it at fraction 50%" in c.loc["less training data", "details"]


def test_transfer_non_inferiority(report):
    t = report.claims[report.claims["claim"] == "transfer keeps accuracy"]
    lams = t["condition"].str.extract(r"λ=(-?[\d.]+)")[0].astype(float)
    got = dict(zip(lams, t["verdict"], strict=True))
    # gaps -0.2, -0.4, -2 pp against a 1 pp margin
    assert got == {-0.5: "supported", -1.0: "supported", -5.0: "not supported"}


def test_missing_sweeps_give_no_data_rows(sweeps):
    only = [s for s in sweeps if s.kind == "expressivity"]
    report = compute_report(only, FAST)
    c = report.claims
    row = c[c["claim"] == "expressivity"].iloc[0]
    assert row["verdict"] == "supported"
    others = c[c["claim"] != "expressivity"]
    assert (others["verdict"] == "no data").all()
    assert others["details"].str.startswith("no ").all()


def test_sweep_without_sm_arm_is_no_data():
    frames = {"expressivity_effects": pd.DataFrame(columns=["statistic", "value", "lo", "hi"])}
    c = claims_table(frames, {"expressivity"}, 0.9)
    row = c[c["claim"] == "expressivity"].iloc[0]
    assert row["verdict"] == "no data" and "both an SM and an IBNN arm" in row["details"]
