"""A replica of the production topology on one machine, in a private network namespace whose
only interface is loopback (``unshare --net``): an S3 API (moto_server), a Ray head that
advertises no CPUs (``ray start --head --num-cpus 0``), and a worker node started with
``ray start --address`` in its own HOME and a private mount namespace that hides Debian's
Fashion-MNIST files and the driver's HOME (``unshare --mount``), so the worker has no data. The
sweep script joins with ``--address`` and object storage; every trial (the real one) runs on
the worker, fetches the dataset the driver staged, and ends "ok". Every process the test starts
is stopped by its id."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from ibnn.trial.data import DEBIAN_FMNIST_DIR
from tests.sweeps.conftest import REPO, kill_leftovers, python, ray_env
from tests.sweeps.s3_server import BUCKET, CREDENTIALS

S3_PORT = 9000  # the namespace is private: no other process can hold these ports
HEAD = "127.0.0.1:6379"
URI = f"s3://{BUCKET}/replica?endpoint_override=127.0.0.1:{S3_PORT}&scheme=http"

CHECK = """
import json, sys
from ibnn.results import Storage, read_table
st = Storage(sys.argv[1])
trials = read_table(st, "df", "trials").to_pandas()
epochs = read_table(st, "df", "epochs").to_pandas()
print(json.dumps({
    "status": sorted(trials["status"]),
    "node_ids": sorted(set(epochs["node_id"])),
    "rows": len(epochs),
    "staged": st.exists("datasets", "fmnist", "manifest.json"),
}))
"""
BUCKET_CODE = """
import sys, time, boto3, botocore.exceptions
c = boto3.client("s3", endpoint_url="http://127.0.0.1:" + sys.argv[2])
for _ in range(300):
    try:
        c.create_bucket(Bucket=sys.argv[1]); break
    except botocore.exceptions.EndpointConnectionError:
        time.sleep(0.2)
else:
    sys.exit("moto_server did not answer")
"""


class Replica:
    """The processes of the replica, each started in the namespace and stopped by its pid."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[subprocess.Popen] = []
        self.logs: list = []
        self.env = ray_env(tmp, RAY_AUTH_MODE="disabled", **CREDENTIALS)
        holder = subprocess.Popen(
            ["unshare", "--net", "sh", "-c", "ip link set lo up && exec sleep 3600"]
        )
        self.procs.append(holder)
        self.netns = f"/proc/{holder.pid}/ns/net"
        deadline = time.monotonic() + 30
        while "UP" not in self.run_in(["ip", "-o", "link", "show", "lo"]).stdout:
            assert time.monotonic() < deadline, "loopback did not come up in the namespace"
            time.sleep(0.1)

    def run_in(self, cmd: list[str], env=None, timeout: float = 60, **kw):
        return subprocess.run(
            ["nsenter", f"--net={self.netns}", *cmd],
            env=env or self.env, capture_output=True, text=True, timeout=timeout, cwd=REPO, **kw,
        )  # fmt: skip

    def start(self, name: str, cmd: list[str], env=None) -> subprocess.Popen:
        log = open(self.tmp / f"{name}.log", "w")
        self.logs.append(log)
        proc = subprocess.Popen(
            ["nsenter", f"--net={self.netns}", *cmd],
            env=env or self.env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
        )  # fmt: skip
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in reversed(self.procs):  # driver side first, the namespace holder last
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait()
        kill_leftovers(str(self.tmp))  # Ray's own processes of both nodes, by pid
        for log in self.logs:
            log.close()

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text()[-3000:]


@pytest.mark.slow
def test_sweep_on_a_loopback_replica_of_the_cluster(short_tmp):
    assert DEBIAN_FMNIST_DIR.is_dir()  # the driver's copy of the data (scripts/setup.sh)
    replica = Replica(short_tmp)
    try:
        ray = str(Path(python()).with_name("ray"))
        replica.start("moto", [str(Path(python()).with_name("moto_server")), "-H", "127.0.0.1",
                               "-p", str(S3_PORT)])  # fmt: skip
        made = replica.run_in([python(), "-c", BUCKET_CODE, BUCKET, str(S3_PORT)], timeout=90)
        assert made.returncode == 0, made.stderr
        replica.start("head", [ray, "start", "--head", "--num-cpus", "0", "--port", "6379",
                               "--include-dashboard", "false", "--block"])  # fmt: skip
        # The worker: its own HOME and Ray temp dir, and a mount namespace hiding the dataset
        # and the driver's HOME.
        whome, wtmp = short_tmp / "whome", short_tmp / "wrt"
        whome.mkdir()
        wtmp.mkdir()
        driver_home = replica.env["HOME"]
        worker_env = {**replica.env, "HOME": str(whome), "RAY_TMPDIR": str(wtmp)}
        hide = (
            f"mount -t tmpfs tmpfs {DEBIAN_FMNIST_DIR} && mount -t tmpfs tmpfs {driver_home} && "
            f"exec {ray} start --address {HEAD} --num-cpus 2 --block"
        )
        deadline = time.monotonic() + 120
        worker = None
        while worker is None or worker.poll() is not None:  # until the head accepts it
            assert time.monotonic() < deadline, replica.log("head") + replica.log("worker")
            if worker is not None:
                time.sleep(1)
            worker = replica.start("worker", ["unshare", "--mount", "sh", "-c", hide], worker_env)
            time.sleep(3)
        cmd = [python(), "sweeps/data_fraction.py", "--smoke", "--families", "sm", "--epochs",
               "1", "--name", "df", "--address", HEAD, "--storage", URI]  # fmt: skip
        driver = replica.run_in(cmd, timeout=420)
        assert driver.returncode == 0, driver.stdout[-3000:] + driver.stderr[-3000:]
        assert "DatasetNotFoundError" not in driver.stdout + driver.stderr
        check = replica.run_in([python(), "-c", CHECK, URI])
        assert check.returncode == 0, check.stderr
        got = json.loads(check.stdout)
        assert got["status"] == ["ok", "ok"] and got["rows"] == 2 * 2  # warm-up + 1 epoch each
        assert got["staged"]  # the driver staged Fashion-MNIST into object storage
        assert len(got["node_ids"]) == 1  # one node ran every trial: the worker (head: 0 CPUs)
        fetched = whome / ".cache" / "ibnn" / "data"
        assert (fetched / ".ibnn-fmnist.verified.json").is_file()  # fetched, verified, there
        assert (fetched / "FashionMNIST" / "raw" / "train-images-idx3-ubyte").is_file()
    finally:
        replica.stop()
