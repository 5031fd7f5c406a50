"""Sensitivity to failed trials: the same rows with failed trials counted at chance accuracy.

Every statistic of the dashboard leaves failed trials out (status other than "ok" or
"running": failed, diverged, solver_failed, ...). If one arm fails more often, its survivors
flatter it. The functions here give the rows the claims would be computed from if every failed
trial instead scored chance accuracy (1 / number of classes) wherever it has, or would have, an
accuracy: at every epoch it wrote, at its selected epoch, and on every evaluation its arm ran.
A failed trial without any epoch row (its configuration is unknown) cannot be placed and stays
out.

Trials that ended at chance accuracy are different: they finished, so they are results and stay
in every statistic. `at_chance` marks them (test and validation accuracy at the selected epoch
both within CHANCE_MARGIN of chance), so that the figures can show them and the claims can say
whether a verdict depends on them.
"""

from __future__ import annotations

import pandas as pd

from analysis.tidy import CONDITION_KEYS, OK_STATES, VARIANT_KEYS, present
from ibnn.results.schema import PRUNED
from ibnn.vocab import NUM_CLASSES

__all__ = [
    "CHANCE_ACCURACY",
    "CHANCE_MARGIN",
    "at_chance",
    "chance_trials",
    "chance_accuracy",
    "failed_trials",
    "trials_at_chance",
    "epochs_at_chance",
    "evals_at_chance",
]

# Chance accuracy (1 / number of classes) of each dataset.
CHANCE_ACCURACY: dict[str, float] = {name: 1.0 / k for name, k in NUM_CLASSES.items()}
# A trial whose accuracies at the selected epoch are all <= chance + this "ended at chance"
# (5 pp: 12.5% on a 10-class dataset is at chance; 16% is not).
CHANCE_MARGIN = 0.05
# Accuracy columns of a trial table.
_TRIAL_ACC = ("test_acc", "val_acc", "best_val_acc", "final_test_acc")
_TRIAL = ["sweep", "trial_id"]


def chance_accuracy(dataset: str) -> float:
    """1 / number of classes of `dataset`; a dataset not in CHANCE_ACCURACY is an error."""
    if dataset not in CHANCE_ACCURACY:
        raise ValueError(
            f"chance accuracy is known for datasets {sorted(CHANCE_ACCURACY)}, but got {dataset!r}"
        )
    return CHANCE_ACCURACY[dataset]


def failed_trials(trials: pd.DataFrame) -> pd.DataFrame:
    """Rows of a trial table (`tidy.trial_table`) whose state is "failed" (not usable, and not
    "pruned": a search's early stop is a verdict on a configuration, not a failure)."""
    if trials.empty or "state" not in trials.columns:
        return trials.iloc[0:0]
    return trials[~trials["state"].isin((*OK_STATES, PRUNED))]


def at_chance(trials: pd.DataFrame) -> pd.Series:
    """Per trial of a trial table: True when its test_acc and val_acc at the selected epoch (those
    present) are all <= chance + CHANCE_MARGIN. False without an accuracy or a known dataset."""
    accs = present(trials, ("test_acc", "val_acc"))
    if trials.empty or not accs or "dataset" not in trials.columns:
        return pd.Series(False, index=trials.index, dtype=bool)
    chance = trials["dataset"].map(CHANCE_ACCURACY).astype(float)
    best = trials[accs].max(axis=1, skipna=True)
    return (best <= chance + CHANCE_MARGIN).fillna(False).astype(bool)


def chance_trials(trials: pd.DataFrame) -> pd.DataFrame:
    """The trials of a trial table that ended at chance (`at_chance`)."""
    return trials[at_chance(trials)]


def _chance_of(rows: pd.DataFrame) -> pd.Series:
    return rows["dataset"].map(chance_accuracy).astype(float)


def trials_at_chance(trials: pd.DataFrame) -> pd.DataFrame:
    """All trials of a trial table, the failed ones with chance accuracy in every accuracy column.

    Args:
        trials: `tidy.trial_table` output, failed trials included.

    Returns:
        Copy with every trial, state unchanged.
    """
    out = trials.copy()
    bad = out.index.isin(failed_trials(out).index)
    if bad.any():
        chance = _chance_of(out[bad])
        for col in present(out, _TRIAL_ACC):
            out.loc[bad, col] = chance
    return out


def epochs_at_chance(epochs: pd.DataFrame, trials: pd.DataFrame) -> pd.DataFrame:
    """Epoch rows with the failed trials' test_acc and val_acc set to chance at every epoch."""
    failed = failed_trials(trials)
    if epochs.empty or failed.empty:
        return epochs
    out = epochs.copy()
    bad = out.set_index(_TRIAL).index.isin(failed.set_index(_TRIAL).index)
    chance = _chance_of(out[bad])
    for col in present(out, ("test_acc", "val_acc")):
        out.loc[bad, col] = chance
    return out


def _key(df: pd.DataFrame, cols: list[str]) -> pd.Series:
    return df[cols].astype(str).agg("|".join, axis=1)


def evals_at_chance(evals: pd.DataFrame, trials: pd.DataFrame) -> pd.DataFrame:
    """Evaluation rows of usable trials plus, for each failed trial, its arm's evaluations at
    chance.

    A failed trial gets a copy of the rows of one usable trial of the same sweep, family and
    variant (lam, p, w_extent), with its own trial_id, seed and condition, and acc = chance
    where the template has an accuracy. Rows the failed trial wrote itself are replaced.

    Args:
        evals: evaluation rows of usable trials (`tidy.drop_failed`).
        trials: the trial table, failed trials included.
    """
    failed = failed_trials(trials)
    if evals.empty or failed.empty:
        return evals
    match = ["sweep", "family", *present(evals, VARIANT_KEYS[:3])]
    match = [c for c in match if c in failed.columns]
    own = present(failed, ["seed", *CONDITION_KEYS])
    ev = evals.assign(_k=_key(evals, match))
    first = ev.drop_duplicates(["_k"])[["_k", "trial_id"]].set_index("_k")["trial_id"]
    parts = [evals]
    for _, f in failed.iterrows():
        k = "|".join(str(f[c]) for c in match)
        if k not in first.index:
            continue
        rows = ev[(ev["_k"] == k) & (ev["trial_id"] == first[k])].drop(columns="_k").copy()
        rows["trial_id"] = f["trial_id"]
        for c in own:
            if c in rows.columns:
                rows[c] = f[c]
        rows.loc[rows["acc"].notna(), "acc"] = chance_accuracy(str(f["dataset"]))
        parts.append(rows)
    return pd.concat(parts, ignore_index=True)
