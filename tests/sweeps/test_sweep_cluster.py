"""A sweep script joins an already running two-node cluster through --address (as on a head
node after ``ray submit``), with Ray's token authentication on; losing the worker node mid-sweep
still lets the sweep complete (its trial is retried from its checkpoint on the head).

The cluster listens on 127.0.0.1 only. Ray rewrites a loopback --address to the machine's
network address (ray-project/ray#59110) unless ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, which
makes every process of the test (nodes, driver, workers) use the loopback address.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from ibnn.results import read_table
from tests.sweeps.conftest import FAKE, REPO, kill_leftovers, python, ray_env

pytestmark = pytest.mark.slow  # Ray sweeps end to end (seconds to a minute each)

ARGS = ["--smoke", "--epochs", "4", "--trial-module", FAKE, "--max-failures", "2"]


@pytest.fixture(scope="module")
def cluster():
    """Two nodes (1 CPU each) on 127.0.0.1 with token authentication, shared by this module's
    tests (the last one removes the worker node); yields (process, address, env, tmp)."""
    tmp = Path(tempfile.mkdtemp(prefix="ibnn-sw-", dir="/tmp"))
    token = secrets.token_hex(32)
    env = ray_env(
        tmp,
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN=token,
        RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",  # loopback only, see the module docstring
        FAKE_TRIAL_EPOCH_S="1.0",  # trial workers get the cluster's environment, not the driver's
    )
    proc = subprocess.Popen(
        [python(), "tests/sweeps/cluster_node.py"],
        cwd=REPO,
        env=env,
        text=True,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        line = proc.stdout.readline()
        assert line, "the test cluster did not start"
        yield proc, json.loads(line)["address"], env, tmp
    finally:
        try:
            proc.stdin.write("stop\n")
            proc.stdin.flush()
            proc.wait(timeout=60)
        except (BrokenPipeError, subprocess.TimeoutExpired):
            proc.kill()
        kill_leftovers(str(tmp))
        shutil.rmtree(tmp, ignore_errors=True)


def test_address_needs_the_token_of_a_token_cluster(cluster):
    _, address, env, tmp = cluster
    plain = {k: v for k, v in env.items() if k not in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
    cmd = [
        python(),
        "sweeps/expressivity.py",
        *ARGS,
        "--address",
        address,
        "--storage",
        str(tmp / "res0"),
    ]
    out = subprocess.run(cmd, cwd=REPO, env=plain, capture_output=True, text=True, timeout=180)
    assert out.returncode != 0
    assert f"cannot connect to Ray at '{address}'" in out.stderr
    assert "export RAY_AUTH_MODE=token" in out.stderr


def test_sweep_through_address_survives_losing_the_worker_node(cluster):
    proc, address, env, tmp = cluster
    storage = str(tmp / "res")
    cmd = [python(), "sweeps/expressivity.py", *ARGS, "--address", address, "--storage", storage]
    driver = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 120
        while True:  # both nodes busy: two trials with two epochs written
            assert time.monotonic() < deadline and driver.poll() is None
            rows = read_table(storage, "expressivity_fmnist", "epochs").to_pandas()
            if (rows.groupby("trial_id").size() >= 2).sum() >= 2:
                break
            time.sleep(0.3)
        proc.stdin.write("remove\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "removed"
        out, _ = driver.communicate(timeout=240)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 0, out[-4000:]
    assert "Starting sweep 'expressivity_fmnist'" in out and "retrying from its last" in out
    rows = read_table(storage, "expressivity_fmnist", "epochs").to_pandas()
    assert rows["trial_id"].nunique() == 4 and len(rows) == 4 * 5
    assert not rows.duplicated(["trial_id", "epoch"]).any()
    meta = json.loads((tmp / "res" / "expressivity_fmnist" / "sweep.json").read_text())
    assert meta["counts"] == {"ok": 4, "failed": 0, "total": 4}
