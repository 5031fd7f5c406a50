"""Object storage for real: a sweep on an S3 API (moto_server on loopback) through pyarrow's URI
form with the endpoint in the query string; the driver is SIGKILLed mid-sweep, a second driver
is refused meanwhile, ``--resume`` completes it, and ``python -m analysis`` reads the same URI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
from pyarrow.fs import FileSelector, FileType

from ibnn.results import Storage, read_table
from tests.sweeps.conftest import FAKE, REPO, kill_leftovers, python, ray_env
from tests.sweeps.s3_server import s3_server

ARGS = ["--smoke", "--epochs", "4", "--seeds", "2", "--trial-module", FAKE, "--name", "df"]


def rows(uri: str, table: str = "epochs"):
    return read_table(uri, "df", table).to_pandas()


def wait_mid_sweep(uri: str, proc, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the sweep ended before it could be interrupted"
        sizes = rows(uri).groupby("trial_id").size()
        if len(sizes) >= 2 and ((sizes >= 3) & (sizes < 5)).any():
            return
        time.sleep(0.3)
    raise AssertionError(f"the sweep did not get mid-way in {timeout} s")


@pytest.mark.slow
def test_s3_sweep_killed_resumed_and_analysed(short_tmp):
    with s3_server(short_tmp / "moto.log") as server:
        uri = server.uri("team/ibnn")
        env = ray_env(short_tmp, FAKE_TRIAL_EPOCH_S="0.7", TUNE_GLOBAL_CHECKPOINT_S="1")
        cmd = [python(), "sweeps/data_fraction.py", *ARGS, "--storage", uri]
        log = open(short_tmp / "first.log", "w")
        first = subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            wait_mid_sweep(uri, first, timeout=150)
            # One driver per sweep, on object storage too.
            second = subprocess.run(
                [*cmd, "--resume"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
            )
            assert second.returncode == 2, second.stdout + second.stderr
            assert f"driver pid {first.pid} on host" in second.stderr
        finally:
            os.kill(first.pid, signal.SIGKILL)
            first.wait()
            log.close()
        kill_leftovers(str(short_tmp / "rt"))
        before = rows(uri)
        assert 0 < len(before) < 8 * 5

        third = subprocess.run(
            [*cmd, "--resume"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
        )
        assert third.returncode == 0, third.stdout[-3000:] + third.stderr[-3000:]
        assert "Took over the sweep lease" in third.stdout
        assert "Saving experiment state" not in third.stderr
        after = rows(uri)
        assert not after.duplicated(["trial_id", "epoch"]).any() and len(after) == 8 * 5
        assert set(zip(before.trial_id, before.epoch, strict=True)) <= set(
            zip(after.trial_id, after.epoch, strict=True)
        )
        st = Storage(uri)
        meta = st.read_json("df/sweep.json")
        assert meta["status"] == "finished" and meta["counts"]["ok"] == 8
        assert meta["ray_dir"].endswith(
            f"/df/ray?endpoint_override=127.0.0.1:{server.port}&scheme=http"
        )
        assert not st.exists("df", "driver.lease.json")  # released at the end
        # Ray's own state and the checkpoints went to the same server (storage_filesystem);
        # every checkpoint was kept while the sweep ran (a resume must find the one Tune's
        # state names), and the finished sweep kept each trial's last one only.
        assert st.exists("df", "ray", "tuner.pkl")
        trial_dirs = [
            i.path for i in st.fs.get_file_info(FileSelector(st.path("df", "ray")))
            if i.type == FileType.Directory
        ]  # fmt: skip
        assert len(trial_dirs) >= 8
        for d in trial_dirs:
            names = [i.base_name for i in st.fs.get_file_info(FileSelector(d))]
            assert len([n for n in names if n.startswith("checkpoint_")]) == 1, (d, names)

        out = short_tmp / "dashboard.html"
        done = subprocess.run(
            [python(), "-m", "analysis", uri, "--out", str(out)],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        html = out.read_text()
        assert "data_fraction" in html and len(html) > 100_000
    assert json.loads(json.dumps(meta))  # the record is plain JSON
