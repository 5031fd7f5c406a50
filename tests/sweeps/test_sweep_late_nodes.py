"""Placement and the late node check, end to end on the loopback replica (test_sweep_replica.py):
a Ray head with neither CPUs nor GPUs (``ray start --head --num-cpus 0 --num-gpus 0``), a sweep
driver that joins it with ``--address``, and GPU workers that join only while its trials wait,
as an autoscaler adds them. A worker declares a GPU (``--num-gpus 1``) that this machine does
not have: Ray assigns it to trials (``CUDA_VISIBLE_DEVICES``) and torch cannot use CUDA there.

- The GPU share comes from the autoscaler's node types in the driver's
  ``~/ray_bootstrap_config.yaml``; the sweep waits (its preflight task asks for a trial's
  resources; the head runs nothing) until a GPU worker joins; the trials then run there, use the
  CPU (torch has no CUDA here), say so, and record device "cpu".
- With ``--gpus-per-trial 1`` and a CPU-only worker up (it passes the preflight), the trials
  themselves wait for a GPU worker. One that joins with another torch version (its Python
  path holds a ``torch-9.9.9.dist-info``: metadata only, torch itself is the same) fails every
  trial placed on it with one message naming the node, the versions and the rule, recorded as
  "error"; no trial trains there.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from ibnn.sweep.cluster.provenance import package_version
from ibnn.sweep.cluster.resources import BOOTSTRAP_CONFIG as BOOTSTRAP
from tests.sweeps.conftest import REPO, python
from tests.sweeps.test_sweep_replica import HEAD, Replica

SWEEP = [
    "sweeps/data_fraction.py", "--smoke", "--families", "sm", "--epochs", "1", "--name", "df",
    "--address", HEAD,
]  # fmt: skip
CHECK = """
import json, sys
import ray
from ibnn.results import Storage, read_table
st = Storage(sys.argv[1])
trials = read_table(st, "df", "trials").to_pandas()
epochs = read_table(st, "df", "epochs").to_pandas() if st.exists("df", "epochs") else None
ray.init(address=sys.argv[2], log_to_driver=False)
nodes = [n for n in ray.nodes() if n["Alive"]]
print(json.dumps({
    "status": sorted(trials["status"]),
    "error": sorted(trials["error"]),
    "node_ids": [] if epochs is None else sorted(set(epochs["node_id"])),
    "devices": [] if epochs is None else sorted(set(epochs["device"])),
    "gpu_nodes": sorted(n["NodeID"] for n in nodes if n["Resources"].get("GPU")),
    "head": [n["NodeID"] for n in nodes if "node:__internal_head__" in n["Resources"]],
}))
"""


def ray_cli() -> str:
    return str(Path(python()).with_name("ray"))


def start_head(replica: Replica) -> None:
    cmd = [ray_cli(), "start", "--head", "--num-cpus", "0", "--num-gpus", "0", "--port", "6379",
           "--include-dashboard", "false", "--block"]  # fmt: skip
    replica.start("head", cmd)


def start_worker(replica: Replica, name: str, args: list[str], **env: str) -> None:
    """A worker node in its own HOME and Ray temp dir, started again until the head accepts it."""
    home, tmp = replica.tmp / f"{name}-home", replica.tmp / f"{name}-rt"
    home.mkdir()
    tmp.mkdir()
    worker_env = {**replica.env, "HOME": str(home), "RAY_TMPDIR": str(tmp), **env}
    cmd = [ray_cli(), "start", "--address", HEAD, *args, "--block"]
    deadline = time.monotonic() + 120
    proc = None
    while proc is None or proc.poll() is not None:
        assert time.monotonic() < deadline, replica.log("head") + replica.log(name)
        if proc is not None:
            time.sleep(1)
        proc = replica.start(name, cmd, worker_env)
        time.sleep(3)


def wait_for_pending_gpu_demand(replica: Replica, driver, timeout: float = 180) -> str:
    """``ray status`` once it shows a request for a GPU that no node can serve yet."""
    deadline = time.monotonic() + timeout
    while True:
        assert driver.poll() is None, replica.log("driver")
        out = replica.run_in([ray_cli(), "status", "--address", HEAD]).stdout
        demands = out.partition("Demands:")[2]
        if "GPU" in demands:
            return out
        assert time.monotonic() < deadline, out + replica.log("driver")
        time.sleep(2)


def check(replica: Replica, storage: Path) -> dict:
    out = replica.run_in([python(), "-c", CHECK, str(storage), HEAD], timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_trials_wait_for_a_gpu_worker_and_never_run_on_the_head(short_tmp):
    replica = Replica(short_tmp)
    storage = short_tmp / "res"
    try:
        start_head(replica)
        # What `ray up` leaves on the head: the autoscaler's node types, one with a GPU.
        shutil.copy(REPO / "cluster" / "cluster.yaml", short_tmp / "home" / BOOTSTRAP.name)
        driver = replica.start("driver", [python(), *SWEEP, "--storage", str(storage)])
        status = wait_for_pending_gpu_demand(replica, driver)
        assert "'GPU': 0.25" in status, status  # a quarter card per trial, from the node types
        time.sleep(5)
        assert driver.poll() is None and not (storage / "df" / "epochs").exists()  # none ran
        start_worker(replica, "gpu", ["--num-cpus", "2", "--num-gpus", "1"])
        assert driver.wait(timeout=420) == 0, replica.log("driver")
        got = check(replica, storage)
        assert got["status"] == ["ok", "ok"]
        assert got["node_ids"] == got["gpu_nodes"] and len(got["gpu_nodes"]) == 1
        assert got["head"] and got["head"][0] not in got["node_ids"]
        assert got["devices"] == ["cpu"]  # what the trials used: torch has no CUDA here
        passed = [p.name for p in short_tmp.rglob("node_checks/node-*.ok")]  # the late check
        assert len(passed) == 1 and passed[0].startswith(f"node-{got['gpu_nodes'][0]}-"), passed
        log = replica.log("driver")
        assert "Ray assigned it GPU [" in log and "its rows record device 'cpu'" in log
    finally:
        replica.stop()


@pytest.mark.slow
def test_a_worker_that_joins_late_with_other_versions_fails_its_trials(short_tmp):
    replica = Replica(short_tmp)
    storage = short_tmp / "res"
    fake = short_tmp / "fake-torch" / "torch-9.9.9.dist-info"  # metadata only: same torch
    fake.mkdir(parents=True)
    (fake / "METADATA").write_text("Metadata-Version: 2.1\nName: torch\nVersion: 9.9.9\n")
    try:
        start_head(replica)
        start_worker(replica, "cpu", ["--num-cpus", "1", "--num-gpus", "0"])  # checked at start
        cmd = [python(), *SWEEP, "--storage", str(storage), "--gpus-per-trial", "1",
               "--max-failures", "0"]  # fmt: skip
        driver = replica.start("driver", cmd)
        wait_for_pending_gpu_demand(replica, driver)
        assert "Starting sweep" in replica.log("driver")  # the preflight passed on "cpu"
        pythonpath = f"{fake.parent}:{replica.env['PYTHONPATH']}"
        start_worker(replica, "gpu", ["--num-cpus", "2", "--num-gpus", "1"], PYTHONPATH=pythonpath)
        assert driver.wait(timeout=420) == 1, replica.log("driver")
        got = check(replica, storage)
        assert got["status"] == ["error", "error"] and got["node_ids"] == []  # nothing trained
        for error in got["error"]:
            assert error.startswith(
                "PreflightError: this trial's node joined after the sweep's preflight and fails it"
            )  # the trial's message, not Ray's traceback
            assert f"runs torch 9.9.9 (driver: {package_version('torch')})" in error
            assert got["gpu_nodes"][0][:8] in error
    finally:
        replica.stop()
