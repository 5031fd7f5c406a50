"""A search whose driver is SIGKILLed after two trials finished resumes with --resume: the
study then holds exactly the requested number of finished trials, none RUNNING, and every
Parquet trial row is terminal (the issue's reproduction, on the fake trial)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import optuna
import pytest

from ibnn.results import TERMINAL_STATUSES, read_table
from tests.sweeps.conftest import FAKE, REPO, kill_leftovers, python, ray_env

TRIALS = 6
ARGS = ["--smoke", "--trials", str(TRIALS), "--max-concurrent", "1", "--epochs", "3"]


def dashboard_get(url: str, path: str) -> dict:
    """GET a JSON route of optuna-dashboard's WSGI app on the study storage (no server)."""
    from wsgiref.util import setup_testing_defaults

    from optuna_dashboard import wsgi

    environ = {"PATH_INFO": path, "REQUEST_METHOD": "GET"}
    setup_testing_defaults(environ)
    status = []
    body = b"".join(wsgi(url)(environ, lambda s, h, *a: status.append(s)))
    assert status[0].startswith("200"), status
    return json.loads(body)


def terminal_rows(storage: str) -> int:
    trials = read_table(storage, "srch", "trials").to_pandas()
    return int(trials["status"].isin(TERMINAL_STATUSES).sum()) if len(trials) else 0


@pytest.mark.slow
def test_sigkilled_search_resumes_without_orphans(short_tmp):
    storage = str(short_tmp / "res")
    env = ray_env(short_tmp, FAKE_TRIAL_EPOCH_S="0.4")
    cmd = [python(), "sweeps/search.py", *ARGS, "--trial-module", FAKE, "--name", "srch"]
    cmd += ["--storage", storage]
    log = open(short_tmp / "first.log", "w")
    first = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 120
        while terminal_rows(storage) < 2:
            assert first.poll() is None, "the search ended before it could be killed"
            assert time.monotonic() < deadline, "two search trials did not finish in 120 s"
            time.sleep(0.1)
        # optuna-dashboard opens the study while the search runs; lam is a parameter.
        url = f"sqlite:///{storage}/srch/optuna.db"
        studies = dashboard_get(url, "/api/studies")["study_summaries"]
        (study_id,) = [s["study_id"] for s in studies if s["study_name"] == "srch"]
        live = dashboard_get(url, f"/api/studies/{study_id}")["trials"]
        assert len(live) >= 2 and all(
            "lam" in {p["name"] for p in t["params"]} for t in live if t["params"]
        )
        time.sleep(0.3)  # into the third trial
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        log.close()
    kill_leftovers(str(short_tmp / "rt"))
    # The study was live: it is on disk while the search runs, not copied at the end.
    before = optuna.load_study(study_name="srch", storage=url).trials
    assert sum(t.state.is_finished() for t in before) >= 2

    resumed = subprocess.run(
        [*cmd, "--resume"], cwd=REPO, env=env, capture_output=True, text=True, timeout=240
    )
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "UpdateFinishedTrialError" not in resumed.stderr

    study = optuna.load_study(study_name="srch", storage=url)
    states = [t.state for t in study.trials]
    assert len(states) == TRIALS and all(s.is_finished() for s in states), states
    assert {"lam", "p", "w_extent"} <= set(study.trials[0].params)
    trials = read_table(storage, "srch", "trials").to_pandas()
    assert trials["status"].isin(TERMINAL_STATUSES).all(), trials["status"].tolist()
    search = trials[trials["seed"] == 1000]
    assert sorted(search["search_number"]) == list(range(TRIALS))
    # Parquet and the study agree on every trial's outcome.
    by_number = {t.number: t for t in study.trials}
    for row in search.itertuples():
        t = by_number[row.search_number]
        assert t.user_attrs["status"] == row.status
        if row.status == "ok":
            assert t.state == optuna.trial.TrialState.COMPLETE and t.value == row.objective
            assert row.epochs_done == 4  # one warm-up and three main epochs
        if row.status == "pruned":  # stopped by ASHA at its first rung: its epochs so far kept
            # (the trial's process may run ahead of the driver's decision by an epoch or so)
            assert t.state == optuna.trial.TrialState.PRUNED and row.epochs_done >= 2
    meta = json.loads((short_tmp / "res" / "srch" / "sweep.json").read_text())
    confirm = meta["confirm"]["variants"]  # the best 3 configurations on 2 fresh seeds
    assert len(confirm) == 6 and len(trials) == TRIALS + 6
    assert meta["status"] == "finished" and meta["counts"]["total"] == TRIALS + 6
