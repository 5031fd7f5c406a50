"""scripts/findings.sh refuses an unknown experiment in FINDINGS_ONLY before any work."""

from __future__ import annotations

import os
import subprocess

from tests.sweeps.conftest import REPO


def test_an_unknown_experiment_is_refused_before_anything_is_set_up(tmp_path):
    env = {
        **os.environ,
        "FINDINGS_ONLY": "toy2d expresivity",
        "FINDINGS_OUT": str(tmp_path / "out"),
        "FINDINGS_WORK": str(tmp_path / "work"),
    }
    done = subprocess.run(
        ["bash", "scripts/findings.sh"], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert done.returncode == 2
    assert done.stderr.strip().startswith(
        "[findings] FINDINGS_ONLY: unknown experiment 'expresivity' (one of: search toy2d"
    )
    assert done.stdout == "" and list(tmp_path.iterdir()) == []  # no setup, no folders
