"""Sweep folders written before ``ibnn.sweep`` was laid out by concern resume with this code.

The fixtures were produced with that code (commit 8e31835): ``grid_interrupted.tar.gz`` is a
``sweeps/data_fraction.py --smoke --epochs 4 --seeds 2 --trial-module tests.sweeps.fake_trial
--name old_grid --max-concurrent 1`` sweep stopped with Ctrl-C after two of its eight trials;
``search_tuner.pkl`` and ``confirm_tuner.pkl`` are the ``tuner.pkl`` files of a smoke search
(``sweeps/search.py``) and its confirmation. Tune pickles TrialNamer, TrialSettings,
SweepProgress, the searcher and PruneRecorder by their old module paths.
"""

from __future__ import annotations

import json
import pickle
import tarfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from ibnn.results import read_table
from ibnn.sweep import runner
from ibnn.sweep.search.pruning import PruneRecorder
from ibnn.sweep.search.searcher import StudySearcher
from ibnn.sweep.trials.identity import TrialNamer, TrialSettings
from ibnn.sweep.trials.progress import SweepProgress
from tests.sweeps.conftest import FAKE, load_script

FIXTURES = Path(__file__).parent / "fixtures" / "old_layout"
OLD_STORAGE = "/tmp/oldfix/grid"  # where the grid fixture was written
ARGS = ["--smoke", "--epochs", "4", "--seeds", "2", "--trial-module", FAKE, "--name", "old_grid"]


def _callbacks(state: dict) -> list:
    return state["_run_config"].callbacks


def test_tune_states_pickled_at_the_old_layout_load_as_the_new_classes():
    search = pickle.loads((FIXTURES / "search_tuner.pkl").read_bytes())
    confirm = pickle.loads((FIXTURES / "confirm_tuner.pkl").read_bytes())
    tune_config = search["_tune_config"]
    assert isinstance(tune_config.search_alg, StudySearcher)
    namer = tune_config.trial_name_creator
    assert isinstance(namer, TrialNamer) and isinstance(namer.settings, TrialSettings)
    assert namer.settings.trial_module == FAKE
    assert [type(c) for c in _callbacks(search)] == [SweepProgress, PruneRecorder]
    assert [type(c) for c in _callbacks(confirm)] == [SweepProgress]
    # The unpickled namer still names a trial as the old code did.
    trial = SimpleNamespace(
        config={"dataset": "fmnist", "variant": {"family": "sm", "seed": 3}}, trial_id="x1"
    )
    assert namer(trial).startswith("sm_s3_") and len(namer(trial)) == len("sm_s3_") + 12


@pytest.mark.slow
def test_an_interrupted_sweep_of_the_old_layout_resumes_and_completes(ray_session, tmp_path):
    with tarfile.open(FIXTURES / "grid_interrupted.tar.gz") as tar:
        tar.extractall(tmp_path, filter="data")
    record = tmp_path / "old_grid" / "sweep.json"
    meta = json.loads(record.read_text())
    assert meta["status"] == "interrupted" and meta["counts"]["ok"] == 2
    # The folder moved here: its recorded --storage follows it (a changed flag is refused).
    meta["args"] = [str(tmp_path) if a == OLD_STORAGE else a for a in meta["args"]]
    record.write_text(json.dumps(meta))
    before = read_table(str(tmp_path), "old_grid", "epochs").to_pandas()
    spec = load_script("data_fraction").SPEC
    argv = [*ARGS, "--max-concurrent", "1", "--storage", str(tmp_path), "--resume"]
    assert runner.main(spec, argv) == 0
    meta = json.loads(record.read_text())
    assert meta["status"] == "finished" and meta["counts"] == {"ok": 8, "failed": 0, "total": 8}
    assert len(meta["resumed"]) == 1
    rows = read_table(str(tmp_path), "old_grid", "epochs").to_pandas()
    assert rows["trial_id"].nunique() == 8 and len(rows) == 8 * 5  # warm-up + 4 epochs each
    assert not rows.duplicated(["trial_id", "epoch"]).any()
    kept = rows.merge(before, on=["trial_id", "epoch"], suffixes=("", "_before"))
    assert len(kept) == len(before) and (kept["val_acc"] == kept["val_acc_before"]).all()
