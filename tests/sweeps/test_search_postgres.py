"""A search whose study lives on a real PostgreSQL server (started from Debian's package): the
study is written there while the search runs, and any other process can open it."""

from __future__ import annotations

import json
import subprocess
import sys

import optuna
import pytest

from ibnn.results import read_table
from ibnn.sweep import runner
from tests.sweeps.conftest import FAKE, REPO, load_script
from tests.sweeps.postgres import postgres_server


@pytest.fixture(scope="module")
def pg_url():
    with postgres_server() as url:
        yield url


@pytest.mark.slow
def test_search_study_on_postgresql(ray_session, tmp_path, pg_url):
    spec = load_script("search").SPEC
    argv = ["--smoke", "--trial-module", FAKE, "--trials", "3", "--confirm-top", "1"]
    argv += ["--study-storage", pg_url, "--storage", str(tmp_path)]
    assert runner.main(spec, argv) == 0
    assert not (tmp_path / "search_fmnist" / "optuna.db").exists()  # nothing on the driver
    meta = json.loads((tmp_path / "search_fmnist" / "sweep.json").read_text())
    assert meta["study"] == {"name": "search_fmnist", "storage": pg_url}
    # Another process (as on another machine) opens the study from the server.
    code = (
        "import optuna, sys; "
        "s = optuna.load_study(study_name='search_fmnist', storage=sys.argv[1]); "
        "print(sorted((t.number, t.state.name, round(t.params['lam'], 9)) for t in s.trials))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, pg_url], capture_output=True, text=True, cwd=REPO, check=True
    ).stdout
    study = optuna.load_study(study_name="search_fmnist", storage=pg_url)
    assert len(study.trials) == 3 and all(t.state.is_finished() for t in study.trials)
    assert out.strip() == str(
        sorted((t.number, t.state.name, round(t.params["lam"], 9)) for t in study.trials)
    )
    trials = read_table(str(tmp_path), "search_fmnist", "trials").to_pandas()
    search = trials[[json.loads(c)["seed"] == 1000 for c in trials["config_json"]]]
    assert sorted(search["search_number"]) == [0, 1, 2]
    confirm = trials.drop(search.index)  # the best configuration on 2 fresh seeds
    best = search.loc[search["objective"].idxmax(), "search_number"]
    assert confirm["search_number"].tolist() == [best, best]
    lam = {round(t.params["lam"], 9) for t in study.trials}
    assert {round(json.loads(c)["lam"], 9) for c in trials["config_json"]} <= lam
    # A fresh search with the same name refuses to add trials to the existing study.
    with pytest.raises(SystemExit, match="already exists"):
        runner.main(spec, [*argv[:-1], str(tmp_path / "again")])
