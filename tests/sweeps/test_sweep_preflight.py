"""Preflight: a Ray address that no longer answers (a dead head's ray_current_cluster, or an
explicit --address) stops the sweep within seconds with one message, writing nothing; every
node that can run trials writes to the storage and runs the driver's versions."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time

import pytest

from ibnn.sweep.cluster.preflight import (
    PreflightError,
    check_node,
    check_workers,
    driver_versions,
    node_problems,
)
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


def test_node_problems_name_the_node_and_each_difference():
    expected = {"python": "3.11", "ray": "2.60.0", "torch": "2.9.0"}
    record = {"host": "gpu-1", "node_id": "abcdef0123456789", "error": "", **expected}
    assert node_problems(record, expected, "s3://b/r") == []  # the negative control: all agree
    late = {**record, "torch": "2.8.0", "error": "PermissionError: denied"}
    assert node_problems(late, expected, "s3://b/r") == [
        "node gpu-1 (abcdef01) cannot write to s3://b/r: PermissionError: denied",
        "node gpu-1 (abcdef01) runs torch 2.8.0 (driver: 2.9.0)",
    ]


def test_a_late_node_is_checked_once_and_a_mismatch_fails_its_trial(ray_session, tmp_path):
    expected = driver_versions()
    cache = tmp_path / "node_checks"
    storage = tmp_path / "res"
    assert check_node(str(storage), expected, str(cache)) is True  # checked
    assert check_node(str(storage), expected, str(cache)) is False  # remembered: not again
    assert len(list(cache.glob("node-*.ok"))) == 1
    shutil.rmtree(storage)
    storage.write_text("a file where the results root should be")  # the check would now fail
    assert check_node(str(storage), expected, str(cache)) is False  # passed once: not rerun
    with pytest.raises(PreflightError, match=f"cannot write to {storage}"):
        check_node(str(storage), expected, None)  # without the cache it does run, and fails
    other = {**expected, "torch": "0.0.1"}  # another driver's versions: a new check, which fails
    node = ray_session.get_runtime_context().get_node_id()[:8]
    message = (
        rf"this trial's node joined after the sweep's preflight and fails it: node "
        rf"{socket.gethostname()} \({node}\) cannot write to {storage}: .*; node "
        rf"{socket.gethostname()} \({node}\) runs torch {expected['torch']} \(driver: 0.0.1\)\. "
        rf"Every node must run the driver's Ray, torch and Python"
    )
    for _ in range(2):  # a failure is not remembered
        with pytest.raises(PreflightError, match=message):
            check_node(str(storage), other, str(cache))
    assert len(list(cache.glob("node-*.ok"))) == 1
