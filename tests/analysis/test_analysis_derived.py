"""Derived results of DESIGN section 6 on synthetic sweeps with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from analysis_synthetic import (
    EXPECTED,
    FAST,
    IBNN_SEEDS,
    SEARCH_WALL_PER_EPOCH,
    SM_SEEDS,
    build_expressivity,
)

from analysis import derived
from analysis.compare import first_crossing, running_mean
from analysis.figures import fig_expressivity
from analysis.load import load_storage
from analysis.report import combine, compute_report
from analysis.tidy import drop_failed, trial_table


def _stat(frame: pd.DataFrame, name: str, **where) -> pd.Series:
    rows = frame[frame["statistic"] == name]
    for k, v in where.items():
        rows = rows[rows[k] == v]
    assert len(rows) == 1, rows
    return rows.iloc[0]


def _trials(sweeps, kind):
    return drop_failed(trial_table(combine(sweeps, kind, "epochs")))


def test_running_mean_and_first_crossing():
    c = np.array([[1.0, 2.0, 3.0, 4.0, 5.0]])
    assert running_mean(c, 3)[0, 2:] == pytest.approx([2.0, 3.0, 4.0])
    assert np.isnan(running_mean(c, 3)[0, :2]).all()
    xs = np.array([0.1, 0.2, 0.4])
    curves = np.array([[0.5, 0.7, 0.9], [0.5, 0.6, 0.65], [0.95, 1.0, 1.0]])
    got = first_crossing(xs, curves, np.array([0.8, 0.8, 0.8]), interpolate=True)
    assert got[0] == pytest.approx(0.3) and got[1] == np.inf and got[2] == pytest.approx(0.1)
    got = first_crossing(xs, curves, np.array([0.8, 0.8, np.nan]), interpolate=False)
    assert got[0] == pytest.approx(0.4) and np.isnan(got[2])
    with pytest.raises(ValueError, match="window must be >= 1"):
        running_mean(c, 0)


def test_data_fraction_match(report):
    m = report.frames["data_fraction_match"]
    for name in ("sm_best", "sm_best_fraction", "fraction", "fraction_saved"):
        row = _stat(m, name)
        assert row["value"] == pytest.approx(EXPECTED[name], abs=1e-9), name
    row = _stat(m, "fraction")
    assert row["lo"] <= EXPECTED["fraction"] <= row["hi"]
    assert (row["n_sm"], row["n_ibnn"], row["n_shared"]) == (
        len(SM_SEEDS),
        len(IBNN_SEEDS),
        len(IBNN_SEEDS),
    )


def test_data_fraction_curves_use_selected_epoch(report):
    c = report.frames["data_fraction_curves"]
    sm = c[(c["family"] == "sm") & (c["train_fraction"] == 1.0)].iloc[0]
    assert sm["median"] == pytest.approx(0.85)  # the selected epoch's, not the last (0.87)
    assert sm["n"] == len(SM_SEEDS)


def test_robustness_effects(report):
    e = report.frames["pgd_effects"]
    sur = _stat(e, "mean_gap", attack="pgd_surrogate")
    wb = _stat(e, "mean_gap", attack="pgd_whitebox")
    assert sur["value"] == pytest.approx(EXPECTED["pgd_surrogate_gap"])
    # SM's white-box PGD is its surrogate PGD, which stands in for it
    assert wb["value"] == pytest.approx(EXPECTED["pgd_whitebox_gap"])
    assert sur["lo"] > 0
    p = _stat(report.frames["pixle_effects"], "gap")
    assert p["value"] == pytest.approx(EXPECTED["pixle_gap"])


def test_pgd_curves_start_at_clean_accuracy(report):
    c = report.frames["pgd_curves"]
    at0 = c[c["strength"] == 0.0]
    assert set(at0["attack"]) == {"pgd_surrogate", "pgd_whitebox"}
    assert at0["median"].to_numpy() == pytest.approx(0.85)
    assert "jacobian_norm" not in set(c["attack"])
    sm = c[(c["family"] == "sm") & (c["attack"] == "pgd_surrogate")].sort_values("strength")
    assert sm["median"].to_numpy() == pytest.approx([0.85, 0.85 * 0.92, 0.85 * 0.84, 0.85 * 0.6])


def test_pixle_bars(report):
    b = report.frames["pixle_bars"].set_index(["family", "attack"])["median"]
    assert b[("sm", "pixle")] == pytest.approx(0.30) and b[("ibnn", "pixle")] == pytest.approx(0.45)
    assert b[("sm", "clean")] == pytest.approx(0.85)


def test_expressivity_excludes_failed_trial(report, sweeps):
    e = _stat(report.frames["expressivity_effects"], "mean_gap")
    assert e["value"] == pytest.approx(EXPECTED["expressivity_gap"])
    assert e["n_ibnn"] == len(IBNN_SEEDS)  # the diverged seed-99 trial is left out
    c = report.frames["expressivity_curves"]
    ib = c[(c["family"] == "ibnn") & (c["C"] == 3)].iloc[0]
    assert ib["median"] == pytest.approx(0.79) and ib["n"] == len(IBNN_SEEDS)
    assert ib["n_params"] == 310


def test_learning_speed_match(report):
    m = report.frames["learning_speed_match"]
    for name in ("sm_best_epoch", "match_epoch", "epochs_saved"):
        assert _stat(m, name)["value"] == EXPECTED[name], name
    assert _stat(m, "sm_best")["value"] == pytest.approx(0.84)


def test_learning_curves_against_pandas_rolling(report, sweeps):
    """Independent computation: per-epoch median over seeds, then a 3-epoch rolling mean."""
    ep = combine(sweeps, "learning_speed", "epochs")
    ep = ep[ep["phase"] == "train"]
    expected = ep[ep["family"] == "ibnn"].groupby("epoch")["test_acc"].median().rolling(3).mean()
    c = report.frames["learning_curves"]
    got = c[c["family"] == "ibnn"].set_index("epoch")["median"]
    pd.testing.assert_series_equal(got.sort_index(), expected, check_names=False, atol=1e-12)
    band = c.dropna(subset=["lo"])
    assert (band["lo"] <= band["median"] + 1e-12).all()
    assert (band["median"] <= band["hi"] + 1e-12).all()


def test_memorization(report):
    e = _stat(report.frames["memorization_effects"], "noise_gain")
    assert e["value"] == pytest.approx(EXPECTED["noise_gain"])
    g = report.frames["memorization_gaps"].set_index("label_noise")["value"]
    for noise, gap in EXPECTED["memorization_gaps"].items():
        assert g[noise] == pytest.approx(gap), noise
    c = report.frames["memorization_curves"]
    sm0 = c[(c["family"] == "sm") & (c["label_noise"] == 0.0)].iloc[0]
    assert sm0["median"] == pytest.approx(0.85)


def test_transfer(report):
    e = report.frames["transfer_effects"]
    for lam in EXPECTED["transfer_lams"]:
        clean = _stat(e, "clean_gap", lam=lam)
        assert clean["value"] == pytest.approx(-0.004 * abs(lam))
        assert clean["n_shared"] == 6  # transfer rows come from the SM trials: fully paired
        assert _stat(e, "pgd_gap", lam=lam)["value"] == pytest.approx(0.05 * abs(lam))
    c = report.frames["transfer_curves"]
    sm = c[(c["family"] == "sm") & (c["attack"] == "clean")]
    assert list(sm["lam"]) == [0.0] and sm["median"].iloc[0] == pytest.approx(0.85)


def test_search_best_orders_by_validation_accuracy(report):
    s = report.frames["search_best"]
    assert list(s["arm"]) == ["IBNN (λ=-2, p=10)", "IBNN (λ=-0.5, p=10)", "IBNN (λ=-0.1, p=10)"]
    # Cost next to accuracy: wall time of all 6 epoch rows of a trial, solver iterations.
    assert list(s["wall_s"]) == [6 * SEARCH_WALL_PER_EPOCH[lam] for lam in (-2.0, -0.5, -0.1)]
    assert list(s["solver_iters"]) == [3.0, 3.0, 3.0]


def test_comparison_without_sm_gives_no_rows(sweeps):
    t = _trials(sweeps, "expressivity")
    assert derived.expressivity_effects(t[t["family"] != "sm"], FAST).empty


def test_unpaired_when_seeds_disjoint(sweeps):
    t = _trials(sweeps, "expressivity")
    t = t[(t["family"] == "sm") | (t["seed"] < 3)].copy()
    t.loc[t["family"] == "ibnn", "seed"] += 100
    e = _stat(derived.expressivity_effects(t, FAST), "mean_gap")
    assert e["n_shared"] == 0 and e["n_ibnn"] == 3
    assert e["value"] == pytest.approx(0.03, abs=0.004)


def test_sweeps_of_one_kind_are_pooled_and_split_by_dataset(tmp_path):
    build_expressivity(tmp_path, "fmnist", gap=0.03)
    build_expressivity(tmp_path, "svhn", gap=-0.02)
    sweeps = load_storage(str(tmp_path))
    assert [s.kind for s in sweeps] == ["expressivity", "expressivity"]
    report = compute_report(sweeps, FAST)
    e = report.frames["expressivity_effects"].set_index("dataset")["value"]
    assert e["fmnist"] == pytest.approx(0.03) and e["svhn"] == pytest.approx(-0.02)
    claims = report.claims.set_index("condition")["verdict"]
    assert claims["fmnist, UCN(1, C)"] == "supported"
    assert claims["svhn, UCN(1, C)"] == "not supported"
    fig = fig_expressivity(report.frames["expressivity_curves"])
    titles = [a.text for a in fig.layout.annotations]
    assert titles == ["fmnist, UCN(1, C)", "svhn, UCN(1, C)"]


def test_paper_selection_mode_is_never_pooled_with_val(sweeps):
    t = _trials(sweeps, "expressivity")
    paper = t.assign(selection="paper", test_acc=t["test_acc"] + (t["family"] == "ibnn") * 0.01)
    both = pd.concat([t.assign(selection="val"), paper], ignore_index=True)
    e = derived.expressivity_effects(both, FAST)
    e = e[e["statistic"] == "mean_gap"].set_index("selection")["value"]
    assert e["val"] == pytest.approx(0.03) and e["paper"] == pytest.approx(0.04)
