"""An S3-compatible server on loopback for the object-storage tests: moto's ``moto_server`` (a
real HTTP S3 API) on a free port of 127.0.0.1, with dummy credentials in the environment."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

BUCKET = "ibnn-results"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",  # never ask a cloud metadata service
}


@dataclass(frozen=True)
class S3Server:
    """A running server: its port and the pyarrow URI of a prefix in its bucket."""

    port: int
    pid: int

    def uri(self, prefix: str) -> str:
        """``s3://bucket/prefix?endpoint_override=127.0.0.1:PORT&scheme=http``."""
        return f"s3://{BUCKET}/{prefix}?endpoint_override=127.0.0.1:{self.port}&scheme=http"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def s3_server(log: Path) -> Iterator[S3Server]:
    """Starts ``moto_server`` with one bucket; sets the dummy credentials in os.environ (so
    pyarrow in this process and in subprocesses finds them); stops the server by its pid."""
    saved = {k: os.environ.get(k) for k in CREDENTIALS}
    os.environ.update(CREDENTIALS)
    exe = Path(sys.executable).with_name("moto_server")
    port = _free_port()
    out = open(log, "w")
    proc = subprocess.Popen(
        [str(exe), "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=subprocess.STDOUT
    )
    try:
        _create_bucket(port, proc)
        yield S3Server(port, proc.pid)
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        out.close()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _create_bucket(port: int, proc: subprocess.Popen) -> None:
    import boto3
    import botocore.exceptions

    client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, "moto_server exited at start"
        try:
            client.create_bucket(Bucket=BUCKET)
            return
        except botocore.exceptions.EndpointConnectionError:
            assert time.monotonic() < deadline, "moto_server did not answer within 60 s"
            time.sleep(0.2)
