"""Fixtures: synthetic sweep results on disk (see analysis_synthetic.py), loaded and analysed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from analysis_synthetic import FAST, REPO, build_storage

from analysis.load import load_storage
from analysis.report import compute_report


@pytest.fixture(scope="session")
def storage(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A storage root with every kind of sweep, a running sweep, a failed trial, a corrupt file."""
    return build_storage(tmp_path_factory.mktemp("results"))


@pytest.fixture(scope="session")
def sweeps(storage: Path):
    return load_storage(str(storage))


@pytest.fixture(scope="session")
def report(sweeps):
    return compute_report(sweeps, FAST)


@pytest.fixture(scope="session")
def dashboard(storage: Path, tmp_path_factory: pytest.TempPathFactory):
    """`python -m analysis <storage> --out ...` run once: (html path, completed process)."""
    out = tmp_path_factory.mktemp("dash") / "sub" / "dashboard.html"
    proc = subprocess.run(
        [sys.executable, "-m", "analysis", str(storage), "--out", str(out), "--resamples", "400"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return out, proc
