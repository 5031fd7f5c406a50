"""Discussion: Optuna (TPE) over lam, p, w_extent and lam_trainable, on validation accuracy.

The study lives in ``<storage>/<sweep>/optuna.db`` by default (``optuna-dashboard
sqlite:///results/search_fmnist/optuna.db``, live), or in ``--study-storage``; the replication
sweeps take its best confirmed configuration with ``--from-search <storage>/search_<dataset>``.

    python sweeps/search.py --dataset fmnist --trials 40 --storage results
    python sweeps/search.py --trials 12 --space w_extent=none --max-train 10000
"""

from __future__ import annotations

from typing import Any

import optuna

from ibnn.sweep import SweepSpec, main

P_CHOICES = (5.0, 10.0, 20.0)
W_EXTENTS = (None, 3, 5, 7)  # None: uniform w over the whole channel


def space(trial: optuna.Trial) -> dict[str, Any]:
    """lam over about [-10, 1/(2p)): a sign, then a log-uniform magnitude below zero or a
    fraction of the uniqueness bound 1/(2p) above it (so lam < 1/(2p) strictly)."""
    p = trial.suggest_categorical("p", P_CHOICES)
    if trial.suggest_categorical("lam_sign", ("negative", "positive")) == "negative":
        lam = -trial.suggest_float("lam_magnitude", 1e-3, 10.0, log=True)
    else:
        lam = trial.suggest_float("lam_fraction", 0.05, 0.95) / (2.0 * p)
    # lam itself as a parameter (a one-point distribution: nothing is sampled), so Optuna's
    # plots and the dashboard show it next to its helpers.
    lam = trial.suggest_float("lam", lam, lam)
    trial.suggest_categorical("w_extent", W_EXTENTS)
    trial.suggest_categorical("lam_trainable", (False, True))
    return {"lam": lam}


SPEC = SweepSpec(
    name="search",
    description="Optuna search over lam, p, w_extent and lam_trainable (best config per dataset)",
    kind="search",
    search_space=space,
    search_only_keys=("lam_sign", "lam_magnitude", "lam_fraction"),
    search_trials=40,
    epochs=20,
    chosen_neuron=False,
)

if __name__ == "__main__":
    raise SystemExit(main(SPEC))
