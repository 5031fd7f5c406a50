"""Shared fixtures of the sweep tests: one in-process Ray for the whole session, helpers to load
sweep scripts and to run them as subprocesses in an isolated Ray environment."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType

import pytest

from ibnn.vocab import EXPERIMENTS

REPO = Path(__file__).resolve().parents[2]
FAKE = "tests.sweeps.fake_trial"
SCRIPTS = EXPERIMENTS  # one sweep script per experiment (sweeps/<name>.py)


def load_script(name: str) -> ModuleType:
    """Imports ``sweeps/<name>.py`` as a module (the scripts are not a package); registered in
    ``sys.modules`` so that pickle (Tune's searcher state) finds its functions."""
    module_name = f"sweep_script_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    path = REPO / "sweeps" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def ray_env(tmp: Path, **extra: str) -> dict[str, str]:
    """Environment for a subprocess driver or cluster: private Ray temp dir and HOME (so no
    ~/.ray/auth_token of the machine is picked up), no usage stats, the repo importable."""
    env = dict(os.environ)
    for key in ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE"):
        env.pop(key, None)
    home = tmp / "home"
    home.mkdir(exist_ok=True)
    env.update(
        RAY_TMPDIR=str(tmp / "rt"),
        HOME=str(home),
        RAY_USAGE_STATS_ENABLED="0",
        RAY_DEDUP_LOGS="0",
        PYTHONPATH=str(REPO),
        PYTHONUNBUFFERED="1",
    )
    (tmp / "rt").mkdir(exist_ok=True)
    env.update(extra)
    return env


def kill_leftovers(marker: str) -> None:
    """SIGKILLs processes (ours: their command line names our private temp dir) by pid."""
    out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    for line in out.splitlines():
        pid, _, args = line.strip().partition(" ")
        if marker in args and int(pid) != os.getpid():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture(scope="session")
def ray_session():
    """One Ray instance (2 CPUs) shared by every in-process sweep test."""
    import ray

    saved = {
        k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "RAY_USAGE_STATS_ENABLED", "RAY_ADDRESS")
    }
    os.environ["RAY_AUTH_MODE"] = "disabled"  # no token file written to the real HOME
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    os.environ.pop("RAY_ADDRESS", None)  # always a private instance, never someone's cluster
    tmp = tempfile.mkdtemp(prefix="ibnn-rt-", dir="/tmp")
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=tmp, log_to_driver=False)
    yield ray
    ray.shutdown()
    shutil.rmtree(tmp, ignore_errors=True)
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def short_tmp():
    """A temp dir with a short path (Ray's unix sockets must stay under 107 characters)."""
    path = Path(tempfile.mkdtemp(prefix="ibnn-sw-", dir="/tmp"))
    yield path
    kill_leftovers(str(path))
    shutil.rmtree(path, ignore_errors=True)


def python() -> str:
    """The interpreter running the tests (the project's venv)."""
    return sys.executable
