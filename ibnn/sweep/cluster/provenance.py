"""Where a sweep's numbers came from: the code's git commit and the software versions.

``provenance()`` is recorded in ``sweep.json`` by the driver (and again for every ``--resume``,
since the code may have changed in between). Where each trial epoch ran (host, Ray node,
device) is recorded in its rows instead (columns ``node``, ``node_id``, ``device`` of the
results contract). Nothing here imports torch: the driver stays light, and torch's version and
CUDA build are read from its installed files.
"""

from __future__ import annotations

import ast
import importlib.metadata
import platform
import socket
import subprocess
from pathlib import Path
from typing import Any

__all__ = ["PACKAGES", "git_state", "package_version", "provenance", "torch_cuda"]

# Packages whose versions decide a sweep's numbers or its bookkeeping.
PACKAGES: tuple[str, ...] = ("torch", "torchvision", "ray", "optuna", "numpy", "pyarrow")
_REPO = Path(__file__).resolve().parents[3]  # the checkout holding the ibnn package


def git_state(repo: Path = _REPO) -> dict[str, Any]:
    """The checkout's commit and whether the tree differs from it (changed tracked files, or
    new files that .gitignore does not exclude).

    Returns:
        ``{"commit": sha, "dirty": bool}``; both None, with ``"reason"``, where ``repo`` is not a
        git checkout or git is missing (``ray submit`` syncs the code without ``.git``).
    """

    def git(*args: str) -> str:
        out = subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10
        )
        if out.returncode != 0:
            raise OSError(out.stderr.strip() or f"git {args[0]} exited with {out.returncode}")
        return out.stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain"))
    except (OSError, subprocess.SubprocessError) as err:
        return {"commit": None, "dirty": None, "reason": str(err).splitlines()[0][:200]}
    return {"commit": commit, "dirty": dirty}


def package_version(name: str) -> str | None:
    """The installed version of a distribution, None when it is not installed."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def torch_cuda() -> str | None:
    """The CUDA version torch was built with (``torch.version.cuda``), read without importing
    torch; None for a CPU-only build or when torch is not installed."""
    try:
        dist = importlib.metadata.distribution("torch")
    except importlib.metadata.PackageNotFoundError:
        return None
    path = Path(str(dist.locate_file("torch/version.py")))
    if not path.is_file():
        return None
    for node in ast.parse(path.read_text()).body:
        target = getattr(node, "target", None) or (getattr(node, "targets", None) or [None])[0]
        if isinstance(target, ast.Name) and target.id == "cuda" and node.value is not None:
            value = ast.literal_eval(node.value)
            return None if value is None else str(value)
    return None


def provenance() -> dict[str, Any]:
    """The driver's provenance record for ``sweep.json``.

    Returns:
        ``git`` (commit, dirty), ``python``, ``cuda`` (torch's CUDA build), one key per name in
        ``PACKAGES`` (its version, None if absent), ``host`` and ``platform`` of the driver.
    """
    return {
        "git": git_state(),
        "python": platform.python_version(),
        **{name: package_version(name) for name in PACKAGES},
        "cuda": torch_cuda(),
        "host": socket.gethostname(),
        "platform": platform.platform(),
    }
