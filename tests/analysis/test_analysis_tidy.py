"""Model selection, trial states and arms."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.tidy import arm_label, drop_failed, trial_states, trial_table


def _rows(trial_id: str, phases, epochs, val, test, selected=None, status=None) -> pd.DataFrame:
    n = len(epochs)
    df = pd.DataFrame(
        {
            "sweep": "s",
            "trial_id": trial_id,
            "family": "ibnn",
            "seed": 0,
            "lam": -1.0,
            "p": 10.0,
            "phase": phases,
            "epoch": epochs,
            "val_acc": val,
            "test_acc": test,
            "status": status or ["running"] * (n - 1) + ["ok"],
        }
    )
    if selected is not None:
        df["selected"] = selected
    return df


def test_selected_epoch_is_last_selected_train_row_and_warmup_is_ignored():
    df = _rows(
        "t",
        ["warmup", "warmup", "train", "train", "train", "train"],
        [-1, 0, 1, 2, 3, 4],
        [0.99, 0.99, 0.5, 0.7, 0.6, 0.65],
        [0.99, 0.99, 0.4, 0.6, 0.8, 0.9],
        selected=[True, True, True, True, False, False],
    )
    t = trial_table(df).iloc[0]
    assert t["selected_epoch"] == 2 and t["selected_by"] == "selected"
    assert t["test_acc"] == 0.6  # not the warm-up's 0.99, not the last epoch's 0.9
    assert t["best_val_acc"] == 0.7 and t["n_epochs"] == 4 and t["final_test_acc"] == 0.9


def test_fallback_best_val_then_last_epoch():
    a = _rows("a", ["train"] * 3, [1, 2, 3], [0.5, 0.8, 0.8], [0.1, 0.2, 0.3], [False] * 3)
    b = _rows("b", ["train"] * 2, [1, 2], [np.nan, np.nan], [0.4, 0.45])
    t = trial_table(pd.concat([a, b], ignore_index=True)).set_index("trial_id")
    assert t.loc["a", "selected_by"] == "best val_acc"
    assert t.loc["a", "selected_epoch"] == 2  # earliest of the tied best
    assert t.loc["a", "test_acc"] == 0.2
    assert t.loc["b", "selected_by"] == "last epoch" and t.loc["b", "test_acc"] == 0.45


def test_table_without_phase_counts_epochs_from_one():
    df = _rows("t", ["x"] * 3, [0, 1, 2], [0.9, 0.5, 0.6], [0.9, 0.5, 0.6]).drop(columns="phase")
    t = trial_table(df).iloc[0]
    assert t["n_epochs"] == 2 and t["selected_epoch"] == 2


def test_states_from_last_epoch_and_registry_override():
    ok = _rows("ok", ["train"] * 2, [1, 2], [0.5, 0.6], [0.5, 0.6])
    bad = _rows(
        "bad", ["train"] * 2, [1, 2], [0.5, 0.6], [0.5, 0.6], status=["running", "diverged"]
    )
    run = _rows("run", ["train"], [1], [0.5], [0.5], status=["running"])
    epochs = pd.concat([ok, bad, run], ignore_index=True)
    states = trial_states(epochs).set_index("trial_id")["state"].to_dict()
    assert states == {"ok": "ok", "bad": "failed", "run": "running"}
    registry = pd.DataFrame(
        {"sweep": ["s", "s"], "trial_id": ["run", "new"], "status": ["solver_failed", "running"]}
    )
    states = trial_states(epochs, registry).set_index("trial_id")["state"].to_dict()
    assert states["run"] == "failed" and states["new"] == "running"
    trials = trial_table(epochs, registry)
    assert set(drop_failed(trials)["trial_id"]) == {"ok"}


def test_drop_failed_on_eval_rows_uses_epoch_states():
    epochs = pd.concat(
        [
            _rows("ok", ["train"], [1], [0.5], [0.5]),
            _rows("bad", ["train"], [1], [0.5], [0.5], status=["diverged"]),
        ]
    )
    evals = pd.DataFrame({"sweep": "s", "trial_id": ["ok", "bad", "orphan"], "acc": [1, 2, 3]})
    kept = drop_failed(evals, epochs)
    assert list(kept["trial_id"]) == ["ok", "orphan"]


def test_arm_labels():
    assert arm_label("sm", lam=0.0, p=10.0) == "SM"
    assert arm_label("ibnn", lam=-0.5, p=10.0) == "IBNN (λ=-0.5, p=10)"
    assert arm_label("ibnn", lam=-0.5, p=10.0, w_extent=5, lam_trainable=True) == (
        "IBNN (λ=-0.5 trainable, p=10, w 5×5)"
    )
    assert arm_label("ibnn", lam=-0.5, w_extent=np.nan) == "IBNN (λ=-0.5)"
