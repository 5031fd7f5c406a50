"""A private PostgreSQL server for tests, from Debian's ``postgresql`` package: initdb in a temp
folder, listening on 127.0.0.1 only, trust authentication, stopped and removed afterwards.
Run as the ``postgres`` user when the tests run as root (PostgreSQL refuses root)."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["postgres_server"]


def _bin(name: str) -> str:
    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))), None
    )
    if found is None:
        raise FileNotFoundError(
            f"{name} not found: install Debian's postgresql package (scripts/setup.sh does)"
        )
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def postgres_server() -> Iterator[str]:
    """Starts a server; yields its URL ``postgresql://ibnn@127.0.0.1:<port>/postgres``."""
    root = tempfile.mkdtemp(prefix="ibnn-pg-", dir="/tmp")
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = os.path.join(root, "data"), _free_port()
    run = {"check": True, "capture_output": True, "text": True, "timeout": 120}
    subprocess.run([*as_user, _bin("initdb"), "-D", data, "-U", "ibnn", "-A", "trust"], **run)
    opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    log = os.path.join(root, "log")
    subprocess.run(
        [*as_user, _bin("pg_ctl"), "-D", data, "-o", opts, "-l", log, "-w", "start"], **run
    )
    try:
        yield f"postgresql://ibnn@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*as_user, _bin("pg_ctl"), "-D", data, "-m", "immediate", "-w", "stop"],
            capture_output=True,
            timeout=120,
        )
        shutil.rmtree(root, ignore_errors=True)
