"""The derived results of DESIGN section 6 (Figs. 3-8 and the transfer supplement).

Each function is pure: DataFrames in, a tidy DataFrame out. `trials` is `tidy.trial_table`
output (failed trials already dropped), `evals` are eval rows of usable trials with an `arm`
column (`tidy.add_arm`), `epochs` are raw epoch rows. Accuracies stay fractions in [0, 1].

Curve frames have columns <condition keys>, family, arm, <x>, median, lo, hi, n, min, max.
Comparison frames (from `compare.compare_arms`) are long: one row per condition, IBNN arm and
statistic, with value, lo, hi, n_sm, n_ibnn, n_shared, method, coverage, null, p, se. Effects
that are per-seed contrasts (gaps in accuracy) are Hodges-Lehmann estimates with exact rank
intervals (`effects`); where IBNN's median curve first reaches SM's best is a statistic of the
median curves with the gated bootstrap (`stats.bootstrap_pair`).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from analysis.compare import compare_arms, first_crossing, running_mean
from analysis.effects import Contrast, first_point, mean_over_points
from analysis.stats import BootstrapSpec, bootstrap_curve, summarize
from analysis.tidy import CONDITION_KEYS, add_arm, present, train_rows
from ibnn.vocab import FAMILIES

__all__ = [
    "TRANSFER_MARGIN",
    "GAP",
    "MEAN_GAP",
    "NOISE_GAIN",
    "PGD_ATTACKS",
    "condition_keys",
    "data_fraction_curves",
    "data_fraction_match",
    "pgd_rows",
    "pgd_curves",
    "pgd_effects",
    "pixle_bars",
    "pixle_effects",
    "expressivity_curves",
    "expressivity_effects",
    "learning_curves",
    "learning_speed_match",
    "fraction_statistics",
    "speed_statistics",
    "memorization_curves",
    "memorization_gaps",
    "memorization_effects",
    "transfer_curves",
    "transfer_effects",
    "search_best",
]

# Families trained as models in their own right (transfer rows are derived from SM trials).
PGD_ATTACKS: tuple[str, ...] = ("pgd_surrogate", "pgd_whitebox")
# Non-inferiority margin of "transfer keeps accuracy" (accuracy fraction: 1 pp).
TRANSFER_MARGIN = 0.01
# IBNN - SM at the single point of a per-seed value, and averaged over the curve's points.
GAP = Contrast(first_point)
MEAN_GAP = Contrast(mean_over_points)


def condition_keys(df: pd.DataFrame, exclude: tuple[str, ...] = ()) -> list[str]:
    """Condition columns present in `df`, without those in `exclude` (the figure's x)."""
    return [k for k in present(df, CONDITION_KEYS) if k not in exclude]


def _quiet_max(c: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmax(c, axis=-1)


def _argmax_x(xs: np.ndarray, c: np.ndarray) -> np.ndarray:
    """x of the (first) maximum of each curve; NaN for an all-NaN curve."""
    filled = np.where(np.isnan(c), -np.inf, c)
    x = xs[filled.argmax(axis=-1)].astype(float)
    return np.where(np.isnan(c).all(axis=-1), np.nan, x)


def _models(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["family"].isin(FAMILIES)] if not df.empty else df


# Fig. 3: less training data.
def data_fraction_curves(trials: pd.DataFrame, spec: BootstrapSpec) -> pd.DataFrame:
    """Test accuracy (at the selected epoch) vs train_fraction, per arm."""
    t = _models(trials)
    keys = condition_keys(t, ("train_fraction",))
    return summarize(t, [*keys, "family", "arm", "train_fraction"], "test_acc", spec)


def fraction_statistics() -> dict:
    """Statistics of the median curves over train_fraction (see `data_fraction_match`)."""

    def sm_best(xs, sm, ib):
        return _quiet_max(sm)

    def sm_best_fraction(xs, sm, ib):
        return _argmax_x(xs, sm)

    def fraction(xs, sm, ib):
        return first_crossing(xs, ib, _quiet_max(sm), interpolate=True)

    def fraction_saved(xs, sm, ib):
        return sm_best_fraction(xs, sm, ib) - fraction(xs, sm, ib)

    return {
        "sm_best": sm_best,
        "sm_best_fraction": sm_best_fraction,
        "fraction": fraction,
        "fraction_saved": fraction_saved,
    }


def data_fraction_match(trials: pd.DataFrame, spec: BootstrapSpec) -> pd.DataFrame:
    """Training fraction at which IBNN's median test accuracy reaches SM's best median.

    Statistics: sm_best (SM's best median accuracy over fractions), sm_best_fraction (where SM
    reaches it), fraction (first fraction where IBNN's median reaches sm_best, linearly
    interpolated between measured fractions; +inf if never) and fraction_saved
    (sm_best_fraction - fraction; positive favours IBNN).
    """
    t = _models(trials)
    keys = condition_keys(t, ("train_fraction",))
    return compare_arms(t, keys, "train_fraction", "test_acc", fraction_statistics(), spec)


# Figs. 4 and 5: robustness.
def pgd_rows(evals: pd.DataFrame) -> pd.DataFrame:
    """PGD rows with eps > 0 plus clean accuracy as eps = 0, per PGD attack present.

    For SM, PGD on the SM surrogate is white-box PGD: if some IBNN arm has pgd_whitebox rows but
    SM has none, SM's pgd_surrogate rows stand in for them.
    """
    e = _models(evals)
    if e.empty or "attack" not in e.columns:
        return e
    pgd = e[e["attack"].isin(PGD_ATTACKS) & (e["strength"] > 0)]
    sm_wb = (pgd["family"] == "sm") & (pgd["attack"] == "pgd_whitebox")
    if (pgd["attack"] == "pgd_whitebox").any() and not sm_wb.any():
        extra = pgd[(pgd["family"] == "sm") & (pgd["attack"] == "pgd_surrogate")]
        pgd = pd.concat([pgd, extra.assign(attack="pgd_whitebox")], ignore_index=True)
    clean = e[e["attack"] == "clean"]
    parts = [pgd] + [clean.assign(attack=a, strength=0.0) for a in pgd["attack"].unique()]
    return pd.concat(parts, ignore_index=True)


def pgd_curves(evals: pd.DataFrame, spec: BootstrapSpec) -> pd.DataFrame:
    """Accuracy vs PGD eps (0 = clean), per attack and arm."""
    rows = pgd_rows(evals)
    keys = condition_keys(rows)
    return summarize(rows, [*keys, "attack", "family", "arm", "strength"], "acc", spec)


def pgd_effects(evals: pd.DataFrame, spec: BootstrapSpec) -> pd.DataFrame:
    """IBNN - SM accuracy under PGD, averaged over eps > 0 per seed (statistic "mean_gap")."""
    rows = pgd_rows(evals)
    if rows.empty:
        return compare_arms(rows, [], "strength", "acc", {}, spec)
    rows = rows[rows["strength"] > 0]
    keys = [*condition_keys(rows), "attack"]
    return compare_arms(rows, keys, "strength", "acc", {"mean_gap": MEAN_GAP}, spec)


def pixle_bars(evals: pd.DataFrame, spec: BootstrapSpec) -> pd.DataFrame:
    """Clean and Pixle accuracy per arm (attack column "clean" or "pixle")."""
    e = _models(evals)
    e = e[e["attack"].isin(("clean", "pixle"))] if not e.empty else e
    keys = condition_keys(e)
    return summarize(e, [*keys, "family", "arm", "attack"], "acc", spec)


def pixle_effects(evals: pd.DataFrame, spec: BootstrapSpec) -> pd.DataFrame:
    """IBNN - SM accuracy under Pixle (statistic "gap")."""
    e = _models(evals)
    e = e[e["attack"] == "pixle"] if not e.empty else e
    return compare_arms(e, condition_keys(e), None, "acc", {"gap": GAP}, spec)


# Fig. 6: expressivity.
def expressivity_curves(trials: pd.DataFrame, spec: BootstrapSpec) -> pd.DataFrame:
    """Test accuracy vs C per arm, with the median parameter count of each point (n_params)."""
    t = _models(trials)
    keys = condition_keys(t, ("C",))
    by = [*keys, "family", "arm", "C"]
    out = summarize(t, by, "test_acc", spec)
    if out.empty or "n_params" not in t.columns:
        return out.assign(n_params=np.nan)
    params = t.groupby(by, dropna=False)["n_params"].median().rename("n_params").reset_index()
    return out.merge(params, on=by, how="left")


def expressivity_effects(trials: pd.DataFrame, spec: BootstrapSpec) -> pd.DataFrame:
    """IBNN - SM test accuracy averaged over the widths C per seed (statistic "mean_gap")."""
    t = _models(trials)
    keys = condition_keys(t, ("C",))
    return compare_arms(t, keys, "C", "test_acc", {"mean_gap": MEAN_GAP}, spec)


# Fig. 7: faster learning.
def _epoch_rows(epochs: pd.DataFrame, trials: pd.DataFrame) -> pd.DataFrame:
    rows = train_rows(epochs) if not epochs.empty else epochs
    if rows.empty or trials.empty:
        return rows.assign(arm=pd.Series(dtype=object))
    tags = trials[["sweep", "trial_id", "arm"]]
    return _models(rows.merge(tags, on=["sweep", "trial_id"], how="inner"))


def learning_curves(
    epochs: pd.DataFrame, trials: pd.DataFrame, spec: BootstrapSpec, window: int = 3
) -> pd.DataFrame:
    """Median test accuracy per epoch, as a trailing running average over `window` epochs.

    The curve is the running average of the per-epoch medians over seeds; its band is the
    bootstrap interval of that same statistic. `trials` (usable trials) picks the trials.
    """
    rows = _epoch_rows(epochs, trials)
    keys = condition_keys(rows)
    cols = [*keys, "family", "arm", "epoch", "median", "lo", "hi", "n"]
    if rows.empty:
        return pd.DataFrame(columns=cols)
    out = []
    for key, g in rows.groupby([*keys, "family", "arm"], dropna=False, sort=True):
        piv = g.pivot_table(index="seed", columns="epoch", values="test_acc", aggfunc="median")
        piv = piv.reindex(columns=range(int(piv.columns.min()), int(piv.columns.max()) + 1))
        curve, lo, hi = bootstrap_curve(
            piv.to_numpy(dtype=float), spec, lambda c: running_mean(c, window)
        )
        n = piv.notna().sum(axis=0).to_numpy()
        for j, ep in enumerate(piv.columns):
            out.append((*key, int(ep), curve[j], lo[j], hi[j], int(n[j])))
    return pd.DataFrame(out, columns=cols)


def speed_statistics(window: int = 3) -> dict:
    """Statistics of the median curves over epochs (see `learning_speed_match`)."""

    def sm_best(xs, sm, ib):
        return _quiet_max(running_mean(sm, window))

    def sm_best_epoch(xs, sm, ib):
        return _argmax_x(xs, running_mean(sm, window))

    def match_epoch(xs, sm, ib):
        return first_crossing(xs, running_mean(ib, window), sm_best(xs, sm, ib), False)

    def epochs_saved(xs, sm, ib):
        return sm_best_epoch(xs, sm, ib) - match_epoch(xs, sm, ib)

    return {
        "sm_best": sm_best,
        "sm_best_epoch": sm_best_epoch,
        "match_epoch": match_epoch,
        "epochs_saved": epochs_saved,
    }


def learning_speed_match(
    epochs: pd.DataFrame, trials: pd.DataFrame, spec: BootstrapSpec, window: int = 3
) -> pd.DataFrame:
    """First epoch at which IBNN's running-average median test accuracy matches SM's best.

    Statistics: sm_best (best running-average median of SM), sm_best_epoch (where), match_epoch
    (first epoch where IBNN's running average >= sm_best; +inf if never) and epochs_saved
    (sm_best_epoch - match_epoch; positive favours IBNN).
    """
    rows = _epoch_rows(epochs, trials)
    stats = speed_statistics(window)
    return compare_arms(rows, condition_keys(rows), "epoch", "test_acc", stats, spec)


# Fig. 8: less memorization.
def memorization_curves(trials: pd.DataFrame, spec: BootstrapSpec) -> pd.DataFrame:
    """Best validation accuracy vs label_noise, per arm."""
    t = _models(trials)
    keys = condition_keys(t, ("label_noise",))
    return summarize(t, [*keys, "family", "arm", "label_noise"], "best_val_acc", spec)


def memorization_gaps(trials: pd.DataFrame, spec: BootstrapSpec) -> pd.DataFrame:
    """IBNN - SM best validation accuracy at each label_noise (statistic "gap")."""
    t = _models(trials)
    keys = condition_keys(t, ("label_noise",))
    if not t.empty and "label_noise" in t.columns:
        keys = [*keys, "label_noise"]
    return compare_arms(t, keys, None, "best_val_acc", {"gap": GAP}, spec)


def _noise_score(xs: np.ndarray, curves: np.ndarray) -> np.ndarray:
    """Per seed: mean over noisy levels minus the value without noise (the mean if 0 is absent).

    The effect IBNN - SM of this score is the noise gain: the gap with wrong labels minus the
    gap without.
    """
    noisy = xs > 0
    if xs.size and xs[0] == 0 and noisy.any():
        return mean_over_points(xs[noisy], curves[..., noisy]) - curves[..., 0]
    return mean_over_points(xs, curves)


NOISE_GAIN = Contrast(_noise_score)


def memorization_effects(trials: pd.DataFrame, spec: BootstrapSpec) -> pd.DataFrame:
    """Statistic "noise_gain": how much larger the IBNN - SM best-val-accuracy gap is with wrong
    labels (mean over label_noise > 0) than without (label_noise = 0)."""
    t = _models(trials)
    keys = condition_keys(t, ("label_noise",))
    return compare_arms(t, keys, "label_noise", "best_val_acc", {"noise_gain": NOISE_GAIN}, spec)


# Supplementary: SM weights transferred into IBNN without retraining.
def _transfer_rows(evals: pd.DataFrame) -> pd.DataFrame:
    if evals.empty:
        return evals
    e = evals[evals["attack"].isin(("clean", "pgd_surrogate"))]
    sm = e[e["family"] == "sm"].assign(lam=0.0)
    tr = e[e["family"] == "ibnn_transfer"]
    if tr.empty:
        return tr
    return pd.concat([sm, tr], ignore_index=True)


def transfer_curves(evals: pd.DataFrame, spec: BootstrapSpec) -> pd.DataFrame:
    """Accuracy vs transferred lam (SM itself at lam = 0), clean and under PGD (surrogate)."""
    rows = _transfer_rows(evals)
    keys = condition_keys(rows)
    return summarize(rows, [*keys, "family", "attack", "strength", "lam"], "acc", spec)


def transfer_effects(evals: pd.DataFrame, spec: BootstrapSpec) -> pd.DataFrame:
    """Per transferred lam: transferred - SM accuracy, clean (statistic "clean_gap", tested
    against -TRANSFER_MARGIN) and averaged over PGD eps > 0 (statistic "pgd_gap"). Seeds are the
    SM trials', so fully paired. Adds a numeric lam column."""
    rows = _transfer_rows(evals)
    if rows.empty:
        return compare_arms(rows, [], None, "acc", {}, spec).assign(lam=[])
    rows = add_arm(rows.drop(columns=["arm"], errors="ignore"))
    keys = condition_keys(rows)
    fam = ("ibnn_transfer",)
    clean_rows = rows[rows["attack"] == "clean"]
    clean = Contrast(first_point, null=-TRANSFER_MARGIN)
    pgd = rows[(rows["attack"] == "pgd_surrogate") & (rows["strength"] > 0)]
    out = pd.concat(
        [
            compare_arms(clean_rows, keys, None, "acc", {"clean_gap": clean}, spec, fam),
            compare_arms(pgd, keys, "strength", "acc", {"pgd_gap": MEAN_GAP}, spec, fam),
        ],
        ignore_index=True,
    )
    lam_of = rows.drop_duplicates("arm").set_index("arm")["lam"]
    return out.assign(lam=out["arm"].map(lam_of).astype(float))


# Search (Discussion): best configurations found.
def search_best(trials: pd.DataFrame, spec: BootstrapSpec, top: int = 5) -> pd.DataFrame:
    """The `top` arms per dataset by median validation accuracy at the selected epoch, next to
    their cost: median wall time per trial (`wall_s`, seconds) and median solver iterations per
    epoch (`solver_iters`), over the arm's trials (seeds). A ranking to read, not the
    configuration `--from-search` takes (`ibnn.sweep.search.confirmation.confirmed_choice`)."""
    t = _models(trials)
    keys = present(t, ("dataset", "L", "C"))
    by = [*keys, "family", "arm"]
    s = summarize(t, by, "val_acc", spec)
    if s.empty:
        return s
    cost = present(t, ("wall_s", "solver_iters"))
    if cost:
        medians = t.groupby(by, dropna=False, sort=True)[cost].median().reset_index()
        s = s.merge(medians, on=by, how="left")
    s = s.sort_values("median", ascending=False, kind="stable")
    if "dataset" not in s.columns:
        return s.head(top).reset_index(drop=True)
    return s.groupby("dataset", sort=True).head(top).reset_index(drop=True)


# Public names of the row selections above, for the per-seed frames (`analysis.seeds`).
model_rows = _models
epoch_rows = _epoch_rows
transfer_rows = _transfer_rows
__all__ += ["model_rows", "epoch_rows", "transfer_rows"]
