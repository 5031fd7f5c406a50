"""Compaction of an interrupted sweep is refused (it would leave a resumed trial's rows twice
for a plain ``pandas.read_parquet``); once the resumed sweep has finished, it compacts and a
plain pandas read holds every (trial_id, epoch) exactly once and every trial once, ok."""

from __future__ import annotations

import json
import re
import signal
import subprocess

import pandas as pd
import pytest

from ibnn.results.storage import COMPACT_FILE
from tests.sweeps.conftest import FAKE, REPO, python, ray_env
from tests.sweeps.test_sweep_resume import EPOCHS_PER_TRIAL, wait_mid_sweep

pytestmark = pytest.mark.slow  # Ray sweeps end to end

ARGS = ["--smoke", "--epochs", "4", "--seeds", "2", "--trial-module", FAKE, "--name", "df"]


def test_interrupt_compact_resume_then_plain_pandas_reads_each_row_once(short_tmp):
    storage = short_tmp / "res"
    env = ray_env(short_tmp, FAKE_TRIAL_EPOCH_S="0.7", TUNE_GLOBAL_CHECKPOINT_S="1")
    cmd = [python(), "sweeps/data_fraction.py", *ARGS, "--storage", str(storage)]
    compact = [python(), "-m", "ibnn.sweep", "compact", str(storage / "df")]
    with open(short_tmp / "first.log", "w") as log:
        first = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_mid_sweep(str(storage), first, timeout=120)
            first.send_signal(signal.SIGINT)
            assert first.wait(timeout=120) == 130
        finally:
            if first.poll() is None:
                first.kill()
    console = (short_tmp / "first.log").read_text()  # Ctrl-C: our hint, not Ray's
    outcome = re.search(r"interrupted: (\d+) ok, (\d+) failed of 8 trials; continue it", console)
    assert outcome and "--resume" in console[outcome.end() :].splitlines()[0], console[-2000:]
    assert "Tuner.restore" not in console and "Failed to fetch metrics" not in console
    ok, failed = map(int, outcome.groups())  # the status line counts no stopped trial as done
    status = [ln.split("] ", 1)[1] for ln in console.splitlines() if "trials done" in ln]
    assert status[-1].startswith(f"{ok + failed}/8 trials done ({failed} failed)"), status[-1]
    before = {p: p.read_bytes() for p in sorted((storage / "df" / "epochs").iterdir())}
    refused = subprocess.run(compact, cwd=REPO, env=env, capture_output=True, text=True)
    assert refused.returncode == 2 and "has not finished (status 'interrupted')" in refused.stderr
    assert {p: p.read_bytes() for p in sorted((storage / "df" / "epochs").iterdir())} == before

    resumed = subprocess.run(
        [*cmd, "--resume"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    done = subprocess.run(compact, cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert [p.name for p in (storage / "df" / "epochs").iterdir()] == [COMPACT_FILE]

    epochs = pd.read_parquet(storage / "df" / "epochs")  # plain pandas, no ibnn reader
    trials = pd.read_parquet(storage / "df" / "trials")
    assert not epochs.duplicated(["trial_id", "epoch"]).any()
    assert len(epochs) == 8 * EPOCHS_PER_TRIAL and epochs["trial_id"].nunique() == 8
    assert trials["trial_id"].is_unique and len(trials) == 8
    assert set(trials["status"]) == {"ok"}
    meta = json.loads((storage / "df" / "sweep.json").read_text())
    assert meta["status"] == "finished"
