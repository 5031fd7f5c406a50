"""A sweep's --storage that cannot be used is one line naming it and the cause, exit 2, no
traceback (--verbose adds it), and nothing there is touched: a regular file, a path below one,
a read-only mount, an unknown URI scheme, an S3 endpoint that no longer answers."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.readonly import run_read_only
from tests.sweeps.conftest import FAKE, REPO, python, ray_env
from tests.sweeps.s3_server import CREDENTIALS, s3_server

pytestmark = pytest.mark.slow  # a sweep driver's start-up each (about 15 s here)

SWEEP = ["sweeps/data_fraction.py", "--smoke", "--trial-module", FAKE]
PROG = "sweeps/data_fraction.py: error: --storage"


def sweep_command(storage: str, *extra: str) -> list[str]:
    return [python(), *SWEEP, "--storage", storage, *extra]


def refused(proc: subprocess.CompletedProcess, storage: str) -> str:
    """The one stderr line of a refused sweep, which names the storage."""
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith(f"{PROG} {storage}: "), lines[0]
    return lines[0]


def run_sweep(tmp: Path, storage: str, *extra: str) -> subprocess.CompletedProcess:
    cmd = sweep_command(storage, *extra)
    env = ray_env(tmp, **CREDENTIALS)
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_a_regular_file_as_storage_and_below_it(short_tmp):
    f = short_tmp / "f"
    f.write_text("x\n")
    line = refused(run_sweep(short_tmp, str(f)), str(f))
    assert "Not a directory" in line
    below = f"{f}/results"
    line = refused(run_sweep(short_tmp, below), below)
    assert "Not a directory" in line
    assert f.read_text() == "x\n"
    verbose = run_sweep(short_tmp, str(f), "--verbose")
    assert verbose.returncode == 2 and "Traceback" in verbose.stderr
    assert verbose.stderr.strip().splitlines()[-1].startswith(f"{PROG} {f}: ")


def test_a_read_only_storage(short_tmp):
    ro = short_tmp / "ro"
    ro.mkdir()
    storage = str(ro / "results")
    env = ray_env(short_tmp)
    proc = run_read_only(ro, sweep_command(storage), cwd=REPO, env=env)
    line = refused(proc, storage)  # root: a read-only mount; otherwise: no write permission
    assert "Read-only file system" in line or "Permission denied" in line


def test_an_unknown_uri_scheme(short_tmp):
    line = refused(run_sweep(short_tmp, "foo://x"), "foo://x")
    assert "Unrecognized filesystem type in URI: foo://x" in line


def test_an_s3_endpoint_that_does_not_answer(short_tmp):
    with s3_server(short_tmp / "moto.log") as server:
        uri = server.uri("res")
    line = refused(run_sweep(short_tmp, uri), uri)  # the server has stopped
    assert "AWS Error NETWORK_CONNECTION" in line and f"127.0.0.1:{server.port}" in line
