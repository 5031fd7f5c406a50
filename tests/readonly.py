"""Running a command with one folder read-only, for the tests of path errors.

As root, permission bits do not stop writes, so the folder becomes a read-only tmpfs mount in a
private mount namespace of the command (``unshare -m``; the mount vanishes with the command).
Otherwise the folder's write permission is removed for the command's duration.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


def run_read_only(folder: Path, cmd: list[str], **kw) -> subprocess.CompletedProcess:
    """Runs ``cmd`` (``subprocess.run`` keyword arguments ``kw``) with ``folder`` read-only.

    ``folder`` must exist; as root it appears empty to the command (a fresh read-only mount).
    """
    kw = {"capture_output": True, "text": True, "timeout": 300} | kw
    if os.geteuid() == 0:
        script = 'mount -t tmpfs -o ro tmpfs "$1" && shift && exec "$@"'
        return subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", str(folder), *cmd], **kw)
    mode = folder.stat().st_mode
    folder.chmod(0o555)
    try:
        return subprocess.run(cmd, **kw)
    finally:
        folder.chmod(mode)
