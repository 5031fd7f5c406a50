"""Every sweep script runs with --smoke on the real trial runner and writes its Parquet tables."""

from __future__ import annotations

import json

import pytest

from ibnn.results import read_table
from ibnn.sweep import runner
from tests.sweeps.conftest import SCRIPTS, load_script

pytestmark = pytest.mark.slow  # Ray sweeps end to end (seconds to a minute each)

# Cheap IBNN settings (a few solver iterations per step): a small positive lam for the
# replication scripts; for the search, a sampler seed whose first draw is a small lam with a
# global w (any seed works, some are just slower on a CPU).
CHEAP = {
    "search": ["--trials", "1", "--search-seed", "7", "--confirm-top", "0"],
    "toy2d": [],
    "transfer": [],
}


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_smoke_run_writes_parquet(ray_session, tmp_path, name):
    spec = load_script(name).SPEC
    argv = ["--smoke", "--storage", str(tmp_path), *CHEAP.get(name, ["--lam", "0.04"])]
    assert runner.main(spec, argv) == 0
    sweep = name if name == "toy2d" else f"{name}_fmnist"
    meta = json.loads((tmp_path / sweep / "sweep.json").read_text())
    n = meta["expected_trials"]
    counts = meta["counts"]
    assert counts["total"] == n == counts["ok"] + counts["failed"] and counts["ok"] >= 1
    assert meta["status"] == "finished" and "error" not in meta["trial_status"]
    epochs = read_table(str(tmp_path), sweep, "epochs").to_pandas()
    evals = read_table(str(tmp_path), sweep, "evals").to_pandas()
    trials = read_table(str(tmp_path), sweep, "trials").to_pandas()
    per_trial = 1 + spec.smoke_epochs  # one warm-up epoch, then the main epochs
    assert epochs["trial_id"].nunique() == n == len(trials)
    assert len(epochs) == n * per_trial and not epochs.duplicated(["trial_id", "epoch"]).any()
    assert set(epochs["sweep"]) == {sweep} and set(epochs["experiment"]) == {name}
    seed = 1000 if name == "search" else 0  # search seeds are disjoint from replication seeds
    assert epochs["val_acc"].between(0, 1).all() and (epochs["seed"] == seed).all()
    assert set(trials["status"]) <= {"ok", "solver_failed", "diverged"}
    ok = set(trials.loc[trials["status"] == "ok", "trial_id"])
    assert ok and ok <= set(evals["trial_id"])
    assert set(evals["attack"]) == set(spec.evals)
    if name == "toy2d":
        bounds = read_table(str(tmp_path), sweep, "boundaries").to_pandas()
        assert set(bounds["trial_id"]) == ok and bounds["prob"].between(0, 1).all()
    if name == "transfer":
        moved = evals[evals["family"] == "ibnn_transfer"]
        assert sorted(set(moved["lam"])) == [-1.0, 0.04]
    if name == "robustness":
        assert sorted(set(evals.loc[evals["attack"] == "pgd_surrogate", "strength"])) == [0, 0.05]
