"""A sweep whose driver is SIGKILLed mid-sweep, then interrupted again with Ctrl-C, completes
with --resume, each (trial_id, epoch) written exactly once, with the numbers of an
uninterrupted run. Compaction of the interrupted sweep is refused (it would leave a resumed
trial's rows twice for a plain ``pandas.read_parquet``); once the resumed sweep has finished,
it compacts and a plain pandas read holds every (trial_id, epoch) exactly once."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time

import pandas as pd
import pytest

from ibnn.results import read_table
from ibnn.results.storage import COMPACT_FILE
from ibnn.sweep.command_line.args import parse_args
from ibnn.sweep.plan import build_plan
from ibnn.sweep.trials.identity import flatten_config
from tests.sweeps.conftest import FAKE, REPO, kill_leftovers, load_script, python, ray_env
from tests.sweeps.fake_trial import Trial, TrialConfig

pytestmark = pytest.mark.slow  # Ray sweeps end to end (seconds to a minute each)

ARGS = ["--smoke", "--epochs", "4", "--seeds", "2", "--trial-module", FAKE, "--name", "df"]
EPOCHS_PER_TRIAL = 5  # one warm-up and four main epochs


def wait_mid_sweep(storage: str, proc, timeout: float) -> None:
    """Waits until two trials have written rows and one is at least two checkpoints in (so
    Tune's experiment state knows a checkpoint of it) but not finished."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the sweep ended before it could be interrupted"
        sizes = read_table(storage, "df", "epochs").to_pandas().groupby("trial_id").size()
        if len(sizes) >= 2 and ((sizes >= 3) & (sizes < EPOCHS_PER_TRIAL)).any():
            return
        time.sleep(0.2)
    raise AssertionError(f"the sweep did not get mid-way in {timeout} s")


def test_sigkill_then_resume_completes_without_duplicates(short_tmp):
    storage = str(short_tmp / "res")
    # Tune snapshots its experiment state at most every TUNE_GLOBAL_CHECKPOINT_S (default: auto,
    # >= 10 s); 1 s makes "the resumed trial continues from a checkpoint" deterministic here.
    env = ray_env(short_tmp, FAKE_TRIAL_EPOCH_S="0.7", TUNE_GLOBAL_CHECKPOINT_S="1")
    cmd = [python(), "sweeps/data_fraction.py", *ARGS, "--storage", storage]
    log = open(short_tmp / "first.log", "w")
    first = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        wait_mid_sweep(storage, first, timeout=120)
    finally:
        os.kill(first.pid, signal.SIGKILL)  # the driver only: no clean shutdown of anything
        first.wait()
        log.close()
    rows_before = read_table(storage, "df", "epochs").to_pandas()
    kill_leftovers(str(short_tmp / "rt"))  # the killed driver's Ray processes, if any remain

    # Without --resume the folder is refused; with it the sweep completes.
    refused = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "pass --resume to continue it" in refused.stderr
    # A resumed run stopped with Ctrl-C (SIGINT) is recorded as interrupted, not finished.
    baseline = read_table(storage, "df", "epochs").num_rows
    log = open(short_tmp / "second.log", "w")
    second = subprocess.Popen(
        [*cmd, "--resume"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 120
        while read_table(storage, "df", "epochs").num_rows < baseline + 2:
            assert time.monotonic() < deadline and second.poll() is None
            time.sleep(0.2)
        second.send_signal(signal.SIGINT)
        assert second.wait(timeout=120) == 130
    finally:
        if second.poll() is None:
            second.kill()
        log.close()
    meta = json.loads((short_tmp / "res" / "df" / "sweep.json").read_text())
    assert meta["status"] == "interrupted" and meta["finished"] is None
    console = (short_tmp / "second.log").read_text()  # Ctrl-C: our hint, not Ray's
    outcome = re.search(r"interrupted: (\d+) ok, (\d+) failed of 8 trials; continue it", console)
    assert outcome and "--resume" in console[outcome.end() :].splitlines()[0], console[-2000:]
    assert "Tuner.restore" not in console and "Failed to fetch metrics" not in console
    # The status line counts no trial stopped at Ctrl-C as done (it may count fewer than the
    # summary: trials that ended after Tune's last snapshot before the kill are pending to Tune
    # until their restored checkpoints report).
    ok, failed = map(int, outcome.groups())
    status = [ln.split("] ", 1)[1] for ln in console.splitlines() if "trials done" in ln]
    shown = re.match(r"(\d+)/8 trials done \((\d+) failed\)", status[-1])
    assert shown and int(shown[1]) <= ok + failed and int(shown[2]) <= failed, console
    compact = [python(), "-m", "ibnn.sweep", "compact", str(short_tmp / "res" / "df")]
    epochs_dir = short_tmp / "res" / "df" / "epochs"
    before = {p: p.read_bytes() for p in sorted(epochs_dir.iterdir())}
    refused = subprocess.run(compact, cwd=REPO, env=env, capture_output=True, text=True)
    assert refused.returncode == 2 and "has not finished (status 'interrupted')" in refused.stderr
    assert {p: p.read_bytes() for p in sorted(epochs_dir.iterdir())} == before
    third = subprocess.run(
        [*cmd, "--resume"], cwd=REPO, env=env, capture_output=True, text=True, timeout=240
    )
    assert third.returncode == 0, third.stdout[-3000:] + third.stderr[-3000:]
    assert "Resuming sweep 'df'" in third.stdout

    spec = load_script("data_fraction").SPEC
    plan = build_plan(spec, parse_args(spec, ARGS))
    rows = read_table(storage, "df", "epochs").to_pandas()
    assert plan.expected_trials == 8  # train_fraction (0.5, 1) x (2 SM + 2 IBNN seeds)
    assert sorted(rows["trial_id"].unique()) == sorted(plan.trial_ids)
    assert not rows.duplicated(["trial_id", "epoch"]).any()
    assert len(rows) == 8 * EPOCHS_PER_TRIAL
    # Every row present before the kill is still there, and all numbers are those of trials
    # that were never interrupted (checkpoints restored, not restarted with other data).
    pairs = set(zip(rows.trial_id, rows.epoch, strict=True))
    assert set(zip(rows_before.trial_id, rows_before.epoch, strict=True)) <= pairs
    restored = []
    for variant, tid in zip(plan.variants, plan.trial_ids, strict=True):
        trial = Trial(TrialConfig.from_dict(flatten_config({**plan.constants, "variant": variant})))
        while not trial.done:
            trial.run_epoch()
        got = rows[rows["trial_id"] == tid].sort_values("epoch")
        assert got["val_acc"].tolist() == [r["val_acc"] for r in trial.records]
        restored.append(got["wall_s"].max() > 0)  # fake: wall_s counts checkpoint loads
    assert any(restored), "no trial continued from a checkpoint after the resume"
    meta = json.loads((short_tmp / "res" / "df" / "sweep.json").read_text())
    assert meta["counts"] == {"ok": 8, "failed": 0, "total": 8}
    assert meta["status"] == "finished" and meta["finished"] and len(meta["resumed"]) == 2

    done = subprocess.run(compact, cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert [p.name for p in epochs_dir.iterdir()] == [COMPACT_FILE]
    epochs = pd.read_parquet(epochs_dir)  # plain pandas, no ibnn reader
    trials = pd.read_parquet(short_tmp / "res" / "df" / "trials")
    assert not epochs.duplicated(["trial_id", "epoch"]).any() and len(epochs) == len(rows)
    assert epochs["trial_id"].nunique() == 8
    assert trials["trial_id"].is_unique and len(trials) == 8 and set(trials["status"]) == {"ok"}
