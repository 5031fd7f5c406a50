"""Compaction: a finished sweep's per-trial files become one file per table; both layouts read
the same (ibnn.results.read_table and analysis), on local disk and on an S3 API."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd

from analysis.load import load_sweep
from ibnn.results import Storage, read_table
from ibnn.results.storage import COMPACT_FILE, compact_table
from ibnn.sweep.cluster.lease import Lease
from tests.sweeps.s3_server import CREDENTIALS, s3_server

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))


def epoch_rows(tid: int, epochs: int = 3) -> list[dict]:
    return [
        {"family": "sm" if tid % 2 else "ibnn", "dataset": "fmnist", "seed": tid, "lam": -1.0,
         "p": 10.0, "epoch": e, "lr": 0.01, "train_loss": 1.0 / (e + 1), "train_acc": 0.5,
         "val_loss": 0.5, "val_acc": 0.6 + 0.01 * e + 0.001 * tid, "test_loss": 0.5,
         "test_acc": 0.6, "solver_iters": 3.0, "solver_residual": 1e-6,
         "nonconverged_frac": 0.0, "wall_s": 1.0, "status": "ok"}
        for e in range(epochs)
    ]  # fmt: skip


def write_sweep(st: Storage, sweep: str, n: int) -> None:
    ctx = {"experiment": "expressivity"}
    for tid in range(n):
        st.write_rows(sweep, "epochs", f"t{tid:04d}", epoch_rows(tid), ctx)
    meta = {"sweep": sweep, "experiment": "expressivity", "status": "finished"}
    st.write_json(f"{sweep}/sweep.json", {**meta, "finished": "2026-12-07T05:00:00+00:00"})


def frame(st: Storage, sweep: str) -> pd.DataFrame:
    df = read_table(st, sweep, "epochs").to_pandas()
    return df.sort_values(["trial_id", "epoch"]).reset_index(drop=True)


def analysed(path: str, storage: str) -> pd.DataFrame:
    df = load_sweep(path, storage).epochs
    return df.sort_values(["trial_id", "epoch"]).reset_index(drop=True)[["trial_id", "val_acc"]]


def test_both_layouts_read_the_same_and_a_rewritten_trial_wins(tmp_path):
    st = Storage(str(tmp_path))
    write_sweep(st, "sw", 40)
    before, seen = frame(st, "sw"), analysed(str(tmp_path / "sw"), str(tmp_path))
    assert compact_table(st, "sw", "epochs") == 40 * 3
    assert sorted(os.listdir(tmp_path / "sw" / "epochs")) == [COMPACT_FILE]
    pd.testing.assert_frame_equal(frame(st, "sw"), before)
    pd.testing.assert_frame_equal(analysed(str(tmp_path / "sw"), str(tmp_path)), seen)
    # A trial rewritten after compaction (a resumed sweep): its own file replaces its rows.
    st.write_rows("sw", "epochs", "t0007", epoch_rows(7, epochs=5), {"experiment": "e"})
    after = frame(st, "sw")
    assert len(after) == 40 * 3 + 2 and (after["trial_id"] == "t0007").sum() == 5
    got = analysed(str(tmp_path / "sw"), str(tmp_path))
    assert len(got) == 40 * 3 + 2 and (got["trial_id"] == "t0007").sum() == 5


def test_the_command_compacts_and_refuses_a_running_sweep(tmp_path):
    st = Storage(str(tmp_path))
    write_sweep(st, "sw", 5)
    env = dict(os.environ, PYTHONPATH=REPO)
    cmd = [sys.executable, "-m", "ibnn.sweep", "compact", str(tmp_path / "sw")]
    lease = Lease(st, "sw", settle_s=0)
    lease.acquire()  # a driver is running this sweep
    refused = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "being run by another driver" in refused.stderr
    assert len(os.listdir(tmp_path / "sw" / "epochs")) == 5
    lease.release()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"epochs: 15 rows in {tmp_path}/sw/epochs/{COMPACT_FILE}" in done.stdout
    assert json.loads((tmp_path / "sw" / "sweep.json").read_text())["sweep"] == "sw"


def test_compaction_on_object_storage(tmp_path):
    with s3_server(tmp_path / "moto.log") as server:
        uri = server.uri("res")
        st = Storage(uri)
        write_sweep(st, "sw", 30)
        before = frame(st, "sw")
        seen = analysed(f"{st.root}/sw", uri)
        assert compact_table(st, "sw", "epochs") == 90
        assert st.list_trial_ids("sw", "epochs") == [] and st.exists("sw", "epochs", COMPACT_FILE)
        pd.testing.assert_frame_equal(frame(st, "sw"), before)
        pd.testing.assert_frame_equal(analysed(f"{st.root}/sw", uri), seen)


def compact(folder, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=REPO, **CREDENTIALS)
    cmd = [sys.executable, "-m", "ibnn.sweep", "compact", str(folder), *extra]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)


def files(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.*"))}


def one_line_refusal(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    return proc.stderr


def test_an_unfinished_sweep_is_refused_and_left_as_it_is(tmp_path):
    st = Storage(str(tmp_path))
    write_sweep(st, "sw", 4)
    meta = st.read_json("sw/sweep.json")
    st.write_json("sw/sweep.json", {**meta, "status": "interrupted", "finished": None})
    before = files(tmp_path / "sw")
    err = one_line_refusal(compact(tmp_path / "sw"))
    assert f"{tmp_path}/sw: the sweep has not finished (status 'interrupted')" in err
    assert "--resume" in err and files(tmp_path / "sw") == before


def test_a_truncated_file_is_one_line_and_nothing_is_touched(tmp_path):
    st = Storage(str(tmp_path))
    write_sweep(st, "sw", 4)
    victim = tmp_path / "sw" / "epochs" / "t0002.parquet"
    victim.write_bytes(victim.read_bytes()[:-40])  # cut off the footer
    before = files(tmp_path / "sw")
    proc = compact(tmp_path / "sw")
    err = one_line_refusal(proc)
    assert f"{tmp_path}/sw/epochs: " in err and "Parquet" in err, err
    assert files(tmp_path / "sw") == before
    verbose = compact(tmp_path / "sw", "--verbose")
    assert verbose.returncode == 2 and "Traceback" in verbose.stderr


def test_an_unreachable_object_store_is_one_line(tmp_path):
    with s3_server(tmp_path / "moto.log") as server:
        uri = server.uri("res")
        write_sweep(Storage(uri), "sw", 2)
    where = uri.replace("/res?", "/res/sw?")  # the server has stopped: nothing answers there
    err = one_line_refusal(compact(where))
    assert f"{where}: " in err and "AWS Error NETWORK_CONNECTION" in err
