"""Data on every node: the driver stages a dataset once (manifest of SHA-256 digests), and trials
on a node fetch it under a file lock, verified; concurrent fetches never write the same file."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest

from ibnn.results import Storage
from ibnn.sweep.cluster.datastage import (
    MANIFEST,
    STAGE_DIR,
    DataStageError,
    fetch_dataset,
    stage_dataset,
)
from ibnn.trial.data import DATASET_FILES, DEBIAN_FMNIST_DIR, load_raw
from tests.sweeps.conftest import REPO

SVHN = DATASET_FILES["svhn"]


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fake_svhn(root, size: int = 1 << 20) -> None:
    """Stand-ins for the two SVHN files (staging copies bytes; it does not parse them)."""
    root.mkdir(parents=True, exist_ok=True)
    for i, rel in enumerate(SVHN):
        (root / rel).write_bytes(os.urandom(size) + bytes([i]))


def test_staging_records_digests_and_copies_each_file_once(tmp_path):
    driver = tmp_path / "driver-data"
    fake_svhn(driver)
    st = Storage(str(tmp_path / "results"))
    uri = stage_dataset(st, "svhn", str(driver), download=False)
    assert uri == st.join_uri(STAGE_DIR)
    manifest = json.loads((tmp_path / "results" / STAGE_DIR / "svhn" / MANIFEST).read_text())
    for rel in SVHN:
        staged = tmp_path / "results" / STAGE_DIR / "svhn" / rel
        assert manifest["files"][rel] == {
            "sha256": sha(driver / rel),
            "size": staged.stat().st_size,
        }
        assert staged.read_bytes() == (driver / rel).read_bytes()
    before = {
        rel: (tmp_path / "results" / STAGE_DIR / "svhn" / rel).stat().st_mtime_ns for rel in SVHN
    }
    stage_dataset(st, "svhn", str(driver), download=False)  # a second sweep on the same storage
    after = {
        rel: (tmp_path / "results" / STAGE_DIR / "svhn" / rel).stat().st_mtime_ns for rel in SVHN
    }
    assert before == after
    assert stage_dataset(st, "toy2d", str(driver), download=False) is None  # generated


def test_concurrent_trials_on_one_node_fetch_once(tmp_path):
    driver = tmp_path / "driver-data"
    fake_svhn(driver, size=16 << 20)
    uri = stage_dataset(Storage(str(tmp_path / "results")), "svhn", str(driver), download=False)
    node = tmp_path / "node-data"  # a fresh worker: nothing there
    code = (
        "import sys; from ibnn.sweep.cluster.datastage import fetch_dataset; "
        "print(fetch_dataset(sys.argv[1], 'svhn', sys.argv[2]))"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    procs = [
        subprocess.Popen([sys.executable, "-c", code, uri, str(node)], env=env,
                         stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]  # fmt: skip
    outs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sorted(outs) == ["False", "False", "False", "True"]  # one copied; three found it
    assert all(sha(node / rel) == sha(driver / rel) for rel in SVHN)
    assert not [p for p in node.iterdir() if p.name.endswith(".tmp")]


def test_a_changed_local_file_is_fetched_again_and_a_damaged_stage_refused(tmp_path):
    driver = tmp_path / "driver-data"
    fake_svhn(driver)
    results = tmp_path / "results"
    uri = stage_dataset(Storage(str(results)), "svhn", str(driver), download=False)
    node = tmp_path / "node-data"
    assert fetch_dataset(uri, "svhn", str(node)) is True
    assert fetch_dataset(uri, "svhn", str(node)) is False  # the stamp holds
    (node / SVHN[0]).write_bytes(b"x" * (driver / SVHN[0]).stat().st_size)  # same size, damaged
    assert fetch_dataset(uri, "svhn", str(node)) is True
    assert sha(node / SVHN[0]) == sha(driver / SVHN[0])
    (results / STAGE_DIR / "svhn" / SVHN[1]).write_bytes(b"damaged in storage")
    fresh = tmp_path / "other-node"
    with pytest.raises(DataStageError, match=f"{SVHN[1]} has SHA-256"):
        fetch_dataset(uri, "svhn", str(fresh))
    assert not (fresh / SVHN[1]).exists()  # nothing unverified was put in place


def test_fmnist_is_staged_from_the_driver_and_loads_on_a_node(tmp_path):
    """The driver's copy comes from Debian's dataset-fashion-mnist (scripts/setup.sh)."""
    assert DEBIAN_FMNIST_DIR.is_dir()
    st = Storage(str(tmp_path / "results"))
    uri = stage_dataset(st, "fmnist", str(tmp_path / "driver-data"), download=False)
    node = tmp_path / "node-data"
    assert fetch_dataset(uri, "fmnist", str(node)) is True
    raw = load_raw("fmnist", node, download=False)
    assert raw.x_train.shape == (60000, 1, 28, 28) and raw.x_test.shape == (10000, 1, 28, 28)
