"""From raw epoch rows to one row per trial: model selection, arms and trial states.

Model selection: only rows with phase == "train" count as epochs (warm-up rows are dropped; a
table without a phase column counts epochs >= 1). The reported epoch of a trial is the last
train row whose `selected` is true; if none is, the epoch with the best val_acc (earliest on
ties); if val_acc is missing throughout, the last epoch.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.palette import family_label
from ibnn.results.schema import FAILED_STATUSES, OK, RUNNING, STATUSES
from ibnn.vocab import NEURON_KEYS

__all__ = [
    "CONDITION_KEYS",
    "VARIANT_KEYS",
    "OK_STATES",
    "train_rows",
    "arm_label",
    "add_arm",
    "trial_states",
    "trial_table",
    "drop_failed",
    "present",
]

# Columns that define the experimental condition SM and IBNN are compared in (selection: the
# trial's model-selection mode, "val" or the authors' "paper" mode; never pooled).
CONDITION_KEYS: tuple[str, ...] = (
    "dataset",
    "L",
    "C",
    "train_fraction",
    "label_noise",
    "selection",
)
# Columns that tell apart variants of one family (not used for SM).
VARIANT_KEYS: tuple[str, ...] = NEURON_KEYS
# Trial statuses that count as usable: finished ("ok") or still in progress ("running").
OK_STATES: tuple[str, ...] = (OK, RUNNING)
_TRIAL = ["sweep", "trial_id"]
_CONFIG = (
    "selection",
    "family",
    "dataset",
    "seed",
    "L",
    "C",
    "n_params",
    "lam",
    "p",
    "w_extent",
    "lam_trainable",
    "train_fraction",
    "label_noise",
)


def present(df: pd.DataFrame, cols: tuple[str, ...] | list[str]) -> list[str]:
    """The columns of `cols` that `df` has and that hold a value in some row, in order.

    A column of the results contract that a writer left null everywhere (an older file, a
    column that does not apply) counts as absent, so it never becomes an all-NaN grouping key.
    """
    return [c for c in cols if c in df.columns and (df.empty or df[c].notna().any())]


def train_rows(epochs: pd.DataFrame) -> pd.DataFrame:
    """Rows that count as epochs (phase == "train", or epoch >= 1 without a phase column)."""
    if "phase" in epochs.columns:
        return epochs[epochs["phase"] == "train"]
    return epochs[epochs["epoch"] >= 1]


def _fmt(v: object) -> str:
    return f"{float(v):g}" if isinstance(v, int | float | np.number) else str(v)


def arm_label(family: str, lam=None, p=None, w_extent=None, lam_trainable=None) -> str:
    """Display name of an arm: the family, plus lam, p, w extent and trainability for IBNN."""
    label = family_label(family)
    if family == "sm":
        return label
    parts = []
    if lam is not None and not pd.isna(lam):
        parts.append(f"λ={_fmt(lam)}" + (" trainable" if lam_trainable is True else ""))
    if p is not None and not pd.isna(p):
        parts.append(f"p={_fmt(p)}")
    if w_extent is not None and not pd.isna(w_extent):
        parts.append(f"w {int(w_extent)}×{int(w_extent)}")
    return f"{label} ({', '.join(parts)})" if parts else label


def add_arm(df: pd.DataFrame) -> pd.DataFrame:
    """Copy of `df` with an `arm` column (see `arm_label`)."""
    out = df.copy()
    if out.empty:
        out["arm"] = pd.Series(dtype=object)
        return out
    keys = present(out, VARIANT_KEYS)

    def label(row: pd.Series) -> str:
        kw = {k: bool(row[k]) if isinstance(row[k], np.bool_) else row[k] for k in keys}
        return arm_label(row["family"], **kw)

    out["arm"] = out.apply(label, axis=1)
    return out


def _state(status: pd.Series) -> np.ndarray:
    # a failed status, or one this version does not know, is "failed"
    kept = status.where(status.isin(STATUSES) & ~status.isin(FAILED_STATUSES), "failed")
    return kept.to_numpy()


def trial_states(epochs: pd.DataFrame, registry: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per trial, its status and state ("ok", "running", "pruned" or "failed").

    "pruned" trials were stopped early by a search's scheduler: left out of the statistics like
    failed ones, but counted apart from them (stopping a bad configuration is not a failure).

    The status is the writer's registry entry (the `trials` table) when there is one, else the
    `status` of the trial's last train epoch ("ok" when the column is absent or null). Trials
    that are only in the registry are included.

    Returns:
        Frame with sweep, trial_id, status, state.
    """
    cols = [*_TRIAL, "status", "state"]
    rows = train_rows(epochs) if not epochs.empty else epochs
    parts = []
    if not rows.empty:
        last = rows.sort_values([*_TRIAL, "epoch"]).groupby(_TRIAL, sort=False).tail(1)
        status = last["status"].fillna("ok").astype(str) if "status" in last.columns else "ok"
        parts.append(last[_TRIAL].assign(status=status))
    if registry is not None and not registry.empty:
        parts.append(registry[_TRIAL].assign(status=registry["status"].astype(str)))
    if not parts:
        return pd.DataFrame(columns=cols)
    out = pd.concat(parts, ignore_index=True).drop_duplicates(_TRIAL, keep="last")
    out["state"] = _state(out["status"])
    return out.reset_index(drop=True)[cols]


def trial_table(epochs: pd.DataFrame, registry: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per trial with its configuration, state and model-selection results.

    Args:
        epochs: raw epoch rows of one or more sweeps.
        registry: the writer's `trials` table, if any (see `trial_states`).

    Returns:
        Frame with sweep, trial_id, the configuration columns present, arm, status, state,
        n_epochs, last_epoch, selected_epoch, selected_by ("selected", "best val_acc" or "last
        epoch"), test_acc and val_acc at the selected epoch, best_val_acc, final_test_acc, and
        the trial's cost when the rows carry it: wall_s (all its epochs, warm-up included) and
        solver_iters (mean forward solver iterations per train epoch).
    """
    rows = train_rows(epochs) if not epochs.empty else epochs
    if rows.empty:
        return pd.DataFrame(
            columns=[*_TRIAL, "family", "seed", "arm", "state", "test_acc", "best_val_acc"]
        )
    rows = rows.sort_values([*_TRIAL, "epoch"]).reset_index(drop=True)
    g = rows.groupby(_TRIAL, sort=False)
    last = g.tail(1).set_index(_TRIAL)

    flag = rows["selected"] if "selected" in rows.columns else pd.Series(False, index=rows.index)
    flag = flag.fillna(False).astype(bool)
    chosen = rows[flag].groupby(_TRIAL, sort=False).tail(1).assign(selected_by="selected")
    taken = rows.set_index(_TRIAL).index.isin(chosen.set_index(_TRIAL).index)
    rest = rows[~taken]
    valid = rest.dropna(subset=["val_acc"])
    by_val = valid.loc[valid.groupby(_TRIAL, sort=False)["val_acc"].idxmax()]
    by_val = by_val.assign(selected_by="best val_acc")
    no_val = rest[~rest.set_index(_TRIAL).index.isin(valid.set_index(_TRIAL).index)]
    by_last = no_val.groupby(_TRIAL, sort=False).tail(1).assign(selected_by="last epoch")
    sel = pd.concat([chosen, by_val, by_last]).set_index(_TRIAL)

    out = last[present(last, _CONFIG)].copy()
    out["n_epochs"] = g.size()
    out["last_epoch"] = last["epoch"]
    out["selected_epoch"] = sel["epoch"]
    out["selected_by"] = sel["selected_by"]
    out["test_acc"] = sel["test_acc"]
    out["val_acc"] = sel["val_acc"]
    out["best_val_acc"] = g["val_acc"].max()
    out["final_test_acc"] = last["test_acc"]
    if "wall_s" in epochs.columns:
        out["wall_s"] = epochs.groupby(_TRIAL, sort=False)["wall_s"].sum(min_count=1)
    if "solver_iters" in rows.columns:
        out["solver_iters"] = g["solver_iters"].mean()
    states = trial_states(epochs, registry).set_index(_TRIAL)
    out["status"] = states["status"]
    out["state"] = states["state"]
    return add_arm(out.reset_index())


def drop_failed(
    df: pd.DataFrame,
    epochs: pd.DataFrame | None = None,
    registry: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Rows of usable trials only (state "ok" or "running").

    Args:
        df: a trial table (with a state column) or evals/boundaries rows (states looked up by
            sweep and trial_id, see `trial_states`; trials of unknown state are kept).
        epochs: raw epoch rows, needed when `df` has no state column.
        registry: the writer's `trials` table, if any.
    """
    if df.empty:
        return df
    if "state" not in df.columns:
        states = trial_states(epochs if epochs is not None else pd.DataFrame(), registry)
        if states.empty:
            return df
        df = df.merge(states[[*_TRIAL, "state"]], on=_TRIAL, how="left")
        df["state"] = df["state"].fillna("ok")
    return df[df["state"].isin(OK_STATES)].reset_index(drop=True)
