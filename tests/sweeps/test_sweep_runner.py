"""The runner on a shared in-process Ray: retries from checkpoints, Optuna search feeding a
replication sweep, progress lines (fast fake trial)."""

from __future__ import annotations

import dataclasses
import json
import math

import optuna
import pytest

from ibnn.results import read_table
from ibnn.sweep import runner
from ibnn.sweep.command_line.args import parse_args
from ibnn.sweep.plan import build_plan
from ibnn.sweep.trials.identity import flatten_config, trial_id
from tests.sweeps.conftest import FAKE, load_script

pytestmark = pytest.mark.slow  # Ray sweeps end to end (seconds to a minute each)

FAKE_ARGS = ["--smoke", "--trial-module", FAKE]
FAULTY_ARGS = ["--smoke", "--trial-module", "tests.sweeps.faulty_trial"]


def table(root, sweep, name):
    return read_table(str(root), sweep, name).to_pandas()


def reference_records(configs):
    """Epoch records of the fake trials run directly, without Ray and without failures (the
    faulty trial's config, so that fault fields are accepted and trial ids match)."""
    from tests.sweeps.fake_trial import Trial
    from tests.sweeps.faulty_trial import TrialConfig

    out = {}
    for config in configs:
        trial = Trial(TrialConfig.from_dict(config))
        while not trial.done:
            trial.run_epoch()
        out[trial_id(trial.cfg.to_dict())] = trial.records
    return out


def test_a_failing_trial_is_retried_from_its_checkpoint_without_duplicate_rows(
    ray_session, tmp_path, capsys
):
    base = load_script("memorization").SPEC
    faults = tmp_path / "faults"
    inject = {"fail_after_epoch": 0, "fault_dir": str(faults)}
    faulty = dataclasses.replace(base, overrides=lambda ctx: inject)
    argv = [*FAULTY_ARGS, "--epochs", "3", "--max-failures", "1", "--storage", str(tmp_path)]
    assert runner.main(faulty, argv) == 0
    out = capsys.readouterr().out
    sweep = "memorization_fmnist"
    rows = table(tmp_path, sweep, "epochs")
    n_trials = 4  # smoke: label_noise (0, 0.4) x (sm, ibnn), one seed
    assert rows["trial_id"].nunique() == n_trials
    assert not rows.duplicated(["trial_id", "epoch"]).any()
    assert out.count("failed; retrying from its last checkpoint") == n_trials
    assert len(list(faults.iterdir())) == n_trials  # each failed once
    # The retried trials continued from their epoch-0 checkpoints: the numbers of a run that
    # never failed.
    plan = build_plan(base, parse_args(base, [*FAKE_ARGS, "--epochs", "3"]))
    configs = [flatten_config({**plan.constants, "variant": v, **inject}) for v in plan.variants]
    expected = reference_records(configs)
    assert set(expected) == set(rows["trial_id"])
    for tid, records in expected.items():
        got = rows[rows["trial_id"] == tid].sort_values("epoch")
        assert got["epoch"].tolist() == [r["epoch"] for r in records] == [0, 1, 2, 3]
        assert got["val_acc"].tolist() == [r["val_acc"] for r in records]
        assert got["train_loss"].tolist() == [r["train_loss"] for r in records]
        # Epochs 1..3 ran after one checkpoint load (fake: wall_s counts loads), not from scratch.
        assert got["wall_s"].tolist() == [0.0, 1.0, 1.0, 1.0]
    meta = json.loads((tmp_path / sweep / "sweep.json").read_text())
    assert meta["counts"] == {"ok": n_trials, "failed": 0, "total": n_trials}
    assert meta["trial_status"] == {"ok": n_trials} and meta["finished"]


def test_search_then_replication_from_the_best_confirmed_configuration(
    ray_session, tmp_path, capsys
):
    storage = str(tmp_path)
    search = load_script("search").SPEC
    argv = [*FAKE_ARGS, "--trials", "4", "--epochs", "2", "--no-prune", "--confirm-top", "2"]
    assert runner.main(search, [*argv, "--storage", storage]) == 0
    trials = table(tmp_path, "search_fmnist", "trials")
    configs = [json.loads(c) for c in trials["config_json"]]
    seeds = [c["seed"] for c in configs]
    assert sorted(seeds) == [1000] * 4 + [1001, 1001, 1002, 1002]  # 4 search + 2 x 2 confirm
    assert set(trials["status"]) == {"ok"}
    assert all(c["lam"] < 1 / (2 * c["p"]) and c["family"] == "ibnn" for c in configs)
    assert not any("lam_sign" in c for c in configs)  # search-only keys never reach the trial
    # Cost next to accuracy: wall time and solver iterations of every trial.
    assert trials["wall_s"].notna().all() and (trials["solver_iters"] > 0).all()
    db = tmp_path / "search_fmnist" / "optuna.db"
    study = optuna.load_study(study_name="search_fmnist", storage=f"sqlite:///{db}")
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == len(study.trials) == 4
    search_rows = trials[[s == 1000 for s in seeds]]
    assert math.isclose(study.best_value, search_rows["objective"].max())
    assert {"p", "lam", "lam_sign", "w_extent", "lam_trainable"} <= set(study.best_trial.params)
    assert {"wall_s", "solver_iters", "epochs_done"} <= set(study.best_trial.user_attrs)
    # The confirmation re-ran the two best search configurations on two fresh seeds each.
    top2 = search_rows.sort_values("objective", ascending=False)["search_number"][:2]
    confirmed = trials[[s != 1000 for s in seeds]]
    assert sorted(confirmed["search_number"]) == sorted(list(top2) * 2)
    meta = json.loads((tmp_path / "search_fmnist" / "sweep.json").read_text())
    assert meta["counts"]["total"] == 8 and meta["status"] == "finished"
    assert len(meta["confirm"]["variants"]) == 4

    spec = load_script("expressivity").SPEC
    argv = [*FAKE_ARGS, "--from-search", str(tmp_path / "search_fmnist"), "--storage", storage]
    argv.append("--verbose")  # one line per trial epoch
    capsys.readouterr()
    assert runner.main(spec, argv) == 0
    out = capsys.readouterr().out
    meta = json.loads((tmp_path / "expressivity_fmnist" / "sweep.json").read_text())
    source = meta["neuron_source"]
    assert source["source"] == "search" and len(source["seeds"]) == 3
    assert source["search_number"] in set(top2)
    row = search_rows[search_rows["search_number"] == source["search_number"]].iloc[0]
    best = json.loads(row["config_json"])
    assert source["trial_id"] == row["trial_id"] and source["seeds"] == [1000, 1001, 1002]
    chosen = {k: best[k] for k in ("lam", "p", "w_extent", "lam_trainable")}
    assert meta["neuron"] == chosen
    epochs = table(tmp_path, "expressivity_fmnist", "epochs")
    ibnn = epochs[epochs["family"] == "ibnn"]
    assert len(ibnn) > 0 and set(ibnn["lam"]) == {best["lam"]} and set(ibnn["p"]) == {best["p"]}
    assert set(epochs["seed"]) == {0}  # replication seeds: disjoint from 1000, 1001, 1002
    # Progress: one line per finished trial epoch, with the sweep's progress, and no Tune tables.
    lines = [ln for ln in out.splitlines() if "trials done" in ln]
    assert sum(" | epoch " in ln for ln in lines) == len(epochs)
    assert lines[-1].split("]")[1].strip().startswith("4/4 trials done")
    assert "Trial status" not in out and "Configuration for experiment" not in out


def test_a_trial_failing_on_every_retry_is_recorded_as_error(ray_session, tmp_path):
    base = load_script("transfer").SPEC
    inject = {"fail_after_epoch": 0, "fault_dir": str(tmp_path / "faults")}
    broken = dataclasses.replace(base, overrides=lambda ctx: {**base.overrides(ctx), **inject})
    argv = [*FAULTY_ARGS, "--max-failures", "0", "--storage", str(tmp_path)]
    assert runner.main(broken, argv) == 1
    trials = table(tmp_path, "transfer_fmnist", "trials")
    assert trials["status"].tolist() == ["error"] and trials["epochs_done"].tolist() == [1]
    assert "InjectedFailure" in trials["error"].iloc[0]
    meta = json.loads((tmp_path / "transfer_fmnist" / "sweep.json").read_text())
    assert meta["counts"] == {"ok": 0, "failed": 1, "total": 1}
    assert meta["trial_status"] == {"error": 1} and meta["status"] == "finished"
