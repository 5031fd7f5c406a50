"""The per-seed values behind each figure's medians, with the trials that ended at chance marked.

Each function returns one row per plotted point and seed (trial): the grouping columns of the
matching curve frame in derived.py, `seed`, `value` (the accuracy the median is taken of) and
`at_chance` (`failures.at_chance` of the trial). The figures draw them as points beside the
median and its interval, so that one seed far from the others is visible as one.
"""

from __future__ import annotations

import pandas as pd

from analysis import derived
from analysis.compare import running_mean
from analysis.failures import at_chance
from analysis.tidy import CONDITION_KEYS, present

__all__ = [
    "seed_values",
    "toy_seeds",
    "data_fraction_seeds",
    "pgd_seeds",
    "pixle_seeds",
    "expressivity_seeds",
    "learning_seeds",
    "memorization_seeds",
    "transfer_seeds",
]

_TRIAL = ["sweep", "trial_id"]
_COLUMNS = ["seed", "value", "at_chance"]


def _flags(rows: pd.DataFrame, trials: pd.DataFrame) -> pd.Series:
    """at_chance of each row's trial (False for a trial not in `trials`)."""
    if rows.empty or trials.empty:
        return pd.Series(False, index=rows.index, dtype=bool)
    flag = trials[_TRIAL].assign(_chance=at_chance(trials).to_numpy())
    merged = rows[_TRIAL].merge(flag, on=_TRIAL, how="left")
    return pd.Series(merged["_chance"].fillna(False).astype(bool).to_numpy(), index=rows.index)


def seed_values(
    rows: pd.DataFrame, by: list[str], value: str, trials: pd.DataFrame, extra: tuple = ()
) -> pd.DataFrame:
    """Columns `by`, `extra`, seed, value (= rows[value]) and at_chance, sorted by `by` and seed."""
    cols = [*by, *extra, *_COLUMNS]
    if rows.empty or value not in rows.columns:
        return pd.DataFrame(columns=cols)
    out = rows[[*by, *extra, "seed"]].assign(
        value=rows[value].astype(float), at_chance=_flags(rows, trials)
    )
    return out.sort_values([*by, "seed"], kind="stable").reset_index(drop=True)[cols]


def _keys(df: pd.DataFrame, x: str | None = None) -> list[str]:
    return [k for k in present(df, CONDITION_KEYS) if k != x]


def toy_seeds(trials: pd.DataFrame) -> pd.DataFrame:
    """Each toy trial's test accuracy, per (family, arm) as `toy.toy_accuracy` groups them."""
    return seed_values(trials, ["family", "arm"], "test_acc", trials)


def data_fraction_seeds(trials: pd.DataFrame) -> pd.DataFrame:
    t = derived.model_rows(trials)
    by = [*_keys(t, "train_fraction"), "family", "arm", "train_fraction"]
    return seed_values(t, by, "test_acc", t)


def expressivity_seeds(trials: pd.DataFrame) -> pd.DataFrame:
    t = derived.model_rows(trials)
    extra = ("n_params",) if "n_params" in t.columns else ()
    return seed_values(t, [*_keys(t, "C"), "family", "arm", "C"], "test_acc", t, extra)


def memorization_seeds(trials: pd.DataFrame) -> pd.DataFrame:
    t = derived.model_rows(trials)
    by = [*_keys(t, "label_noise"), "family", "arm", "label_noise"]
    return seed_values(t, by, "best_val_acc", t)


def pgd_seeds(evals: pd.DataFrame, trials: pd.DataFrame) -> pd.DataFrame:
    rows = derived.pgd_rows(evals)
    return seed_values(rows, [*_keys(rows), "attack", "family", "arm", "strength"], "acc", trials)


def pixle_seeds(evals: pd.DataFrame, trials: pd.DataFrame) -> pd.DataFrame:
    e = derived.model_rows(evals)
    e = e[e["attack"].isin(("clean", "pixle"))] if not e.empty else e
    return seed_values(e, [*_keys(e), "family", "arm", "attack"], "acc", trials)


def transfer_seeds(evals: pd.DataFrame, trials: pd.DataFrame) -> pd.DataFrame:
    rows = derived.transfer_rows(evals)
    by = [*_keys(rows), "family", "attack", "strength", "lam"]
    return seed_values(rows, by, "acc", trials)


def learning_seeds(epochs: pd.DataFrame, trials: pd.DataFrame, window: int = 3) -> pd.DataFrame:
    """Each seed's own running average of test accuracy per epoch (the curve's per-seed view)."""
    rows = derived.epoch_rows(epochs, trials)
    keys = _keys(rows)
    cols = [*keys, "family", "arm", "epoch", *_COLUMNS]
    if rows.empty:
        return pd.DataFrame(columns=cols)
    chance = trials.assign(_c=at_chance(trials))
    out = []
    for key, g in rows.groupby([*keys, "family", "arm", "seed"], dropna=False, sort=True):
        g = g.sort_values("epoch")
        avg = running_mean(g["test_acc"].to_numpy(dtype=float)[None, :], window)[0]
        ids = chance[chance["trial_id"].isin(g["trial_id"]) & chance["_c"]]
        flag = not ids.empty
        for ep, v in zip(g["epoch"], avg, strict=True):
            out.append((*key[:-1], int(ep), key[-1], float(v), flag))
    return pd.DataFrame(out, columns=cols)
