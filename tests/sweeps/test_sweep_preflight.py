"""Preflight: a Ray address that no longer answers (a dead head's ray_current_cluster, or an
explicit --address) stops the sweep within seconds with one message, writing nothing; every
node that can run trials writes to the storage and runs the driver's versions."""

from __future__ import annotations

import socket
import subprocess
import time

import pytest

from ibnn.sweep.preflight import PreflightError, check_workers, driver_versions
from tests.sweeps.conftest import FAKE, REPO, python, ray_env


def dead_address() -> str:
    with socket.socket() as s:  # a port nobody listens on once closed
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def test_a_dead_head_is_reported_within_seconds(short_tmp):
    env = ray_env(short_tmp)
    address = dead_address()
    recorded = short_tmp / "rt" / "ray" / "ray_current_cluster"  # what a head that died leaves
    recorded.parent.mkdir(parents=True)
    recorded.write_text(address)
    storage = short_tmp / "res"
    base = [python(), "sweeps/transfer.py", "--smoke", "--trial-module", FAKE]
    for extra, source in (([], str(recorded)), (["--address", address], "--address")):
        start = time.monotonic()
        out = subprocess.run(
            [*base, "--storage", str(storage), *extra],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        took = time.monotonic() - start
        assert out.returncode != 0
        assert f"the Ray cluster at {address} (from {source}) does not answer" in out.stderr
        assert out.stderr.count("error:") == 1 and "Traceback" not in out.stderr
        assert took < 60, took  # python and imports included; Ray would wait for minutes
        assert not storage.exists() or not any(storage.iterdir())  # nothing written


def test_each_node_writes_to_storage_and_runs_the_drivers_versions(ray_session, tmp_path):
    expected = driver_versions()
    (record,) = check_workers(str(tmp_path), {"cpu": 1.0}, expected)
    assert record["host"] == socket.gethostname() and record["error"] == ""
    assert record["node_id"] == ray_session.get_runtime_context().get_node_id()
    assert list((tmp_path / ".preflight").iterdir()) == []  # the probe file was removed
    other = {**expected, "ray": "0.0.1"}
    with pytest.raises(
        PreflightError, match=rf"runs ray {ray_session.__version__} \(driver: 0.0.1\)"
    ):
        check_workers(str(tmp_path), {"cpu": 1.0}, other)
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the results root should be")
    with pytest.raises(PreflightError, match=f"cannot write to {blocked}"):
        check_workers(str(blocked), {"cpu": 1.0}, expected)
