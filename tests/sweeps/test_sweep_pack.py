"""Trial packs through the sweep runner: a packed grid writes what an unpacked one writes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from ibnn.results import read_table
from ibnn.sweep import runner
from ibnn.sweep.trials.packing import _chunks, _pack_status, member_configs, pack_variants
from tests.sweeps.conftest import REPO, kill_leftovers, load_script, python, ray_env

SEEDS = ["--seeds", "3", "--ibnn-seeds", "3"]


def test_chunks_are_balanced_and_packs_only_join_trials_that_share_the_loop():
    assert [len(c) for c in _chunks(list(range(10)), 8)] == [5, 5]
    assert [len(c) for c in _chunks(list(range(17)), 8)] == [6, 5, 6]
    variants = [{"family": f, "lam": lam, "seed": s, "label_noise": n, "C": c}
                for f, lam in (("sm", 0.0), ("ibnn", -1.0)) for c in (2, 3) for n in (0.0, 0.4)
                for s in range(3)]  # fmt: skip
    constants = {"dataset": "fmnist", "epochs": 1}
    packs = pack_variants(variants, constants, 8)
    assert sorted(len(p) for p in packs) == [6, 6, 6, 6]  # by (family, C): seeds x noise
    for p in packs:
        assert len({(v["family"], v["C"]) for v in p}) == 1
    assert pack_variants(variants, constants, 1) == [[v] for v in variants]
    # automatic: on CPU SM trials pack by 8 and IBNN trials run alone; on GPUs all by 32
    auto = pack_variants(variants, constants, None)
    assert sorted(len(p) for p in auto) == [1] * 12 + [6, 6]
    assert all(p[0]["family"] == "sm" for p in auto if len(p) > 1)
    assert sorted(len(p) for p in pack_variants(variants, constants, None, gpu=True)) == [6] * 4
    assert len(pack_variants(variants, constants, 8, "tests.sweeps.fake_trial")) == 24
    assert _pack_status(["ok", "running"]) == "running" and _pack_status(["ok", "ok"]) == "ok"
    assert _pack_status(["ok", "diverged", "solver_failed"]) == "diverged"
    config = {"dataset": "fmnist", "pack": packs[0][:2]}
    assert member_configs(config) == [{"dataset": "fmnist", "variant": v} for v in packs[0][:2]]


@pytest.mark.slow
def test_a_packed_sweep_writes_each_trial_what_an_unpacked_sweep_writes(
    ray_session, tmp_path, capsys
):
    spec = load_script("memorization").SPEC
    common = ["--smoke", *SEEDS, "--lam", "0.04", "--storage", str(tmp_path)]
    assert runner.main(spec, [*common, "--name", "packed", "--pack", "3"]) == 0
    out = capsys.readouterr().out
    assert runner.main(spec, [*common, "--name", "alone", "--pack", "1"]) == 0
    assert "4/4 packs done (0 failed)" in out  # (sm, ibnn) x label noise (0, 0.4)
    tables = {}
    for name in ("packed", "alone"):
        tables[name] = {t: read_table(str(tmp_path), name, t).to_pandas()
                        for t in ("epochs", "evals", "trials")}  # fmt: skip
        meta = json.loads((tmp_path / name / "sweep.json").read_text())
        assert meta["counts"] == {"ok": 12, "failed": 0, "total": 12}
    packed, alone = tables["packed"], tables["alone"]
    assert set(packed["trials"]["trial_id"]) == set(alone["trials"]["trial_id"])
    assert len(packed["trials"]) == 12 and set(packed["trials"]["status"]) == {"ok"}
    keys = ["trial_id", "epoch"]
    a = packed["epochs"].sort_values(keys).reset_index(drop=True)
    b = alone["epochs"].sort_values(keys).reset_index(drop=True)
    assert len(a) == len(b) and (a[keys] == b[keys]).all().all()
    for col in ("train_loss", "val_loss", "test_loss", "val_acc", "test_acc", "solver_iters"):
        expected = pytest.approx(b[col].to_numpy(), rel=2e-4, abs=2e-4, nan_ok=True)
        assert a[col].to_numpy() == expected, col
    ea = packed["evals"].sort_values(["trial_id", "attack"])["acc"].to_numpy()
    eb = alone["evals"].sort_values(["trial_id", "attack"])["acc"].to_numpy()
    assert ea == pytest.approx(eb, abs=2e-3)


@pytest.mark.slow
def test_a_killed_packed_sweep_resumes_each_trial_from_its_own_checkpoint(short_tmp):
    """SIGKILL the driver while packs are mid-way, then --resume: every trial ends ok with each
    epoch written once, and the rows written before the kill are unchanged."""
    storage = str(short_tmp / "res")
    env = ray_env(short_tmp, TUNE_GLOBAL_CHECKPOINT_S="1")
    args = [
        "--smoke",
        "--seeds",
        "2",
        "--epochs",
        "4",
        "--lam",
        "-1",
        "--pack",
        "2",
        "--name",
        "pk",
    ]
    cmd = [python(), "sweeps/data_fraction.py", *args, "--storage", storage]
    per_trial = 5  # one warm-up and four main epochs
    with open(short_tmp / "first.log", "w") as log:
        first = subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            deadline = time.monotonic() + 300
            while True:  # an IBNN pack two checkpoints in, not finished
                assert time.monotonic() < deadline and first.poll() is None
                rows = read_table(storage, "pk", "epochs").to_pandas()
                sizes = rows[rows["family"] == "ibnn"].groupby("trial_id").size()
                if ((sizes >= 3) & (sizes < per_trial)).any():
                    break
                time.sleep(0.2)
        finally:
            os.kill(first.pid, signal.SIGKILL)
            first.wait()
    before = read_table(storage, "pk", "epochs").to_pandas()
    kill_leftovers(str(short_tmp / "rt"))
    resumed = subprocess.run(
        [*cmd, "--resume"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    rows = read_table(storage, "pk", "epochs").to_pandas()
    trials = read_table(storage, "pk", "trials").to_pandas()
    assert len(trials) == 8 and set(trials["status"]) == {"ok"}  # 2 fractions x 2 x 2 seeds
    assert not rows.duplicated(["trial_id", "epoch"]).any() and len(rows) == 8 * per_trial
    assert "in 4 packs of up to 2" in (short_tmp / "first.log").read_text()
    merged = before.merge(rows, on=["trial_id", "epoch"], suffixes=("_before", ""))
    assert len(merged) == len(before)
    for col in ("train_loss", "val_acc", "test_acc"):
        assert (merged[f"{col}_before"] == merged[col]).all(), col
