"""Provenance: sweep.json records the code's commit and the software versions; every epochs and
evals row records the host, Ray node and device it was computed on."""

from __future__ import annotations

import json
import platform
import socket
import subprocess

import optuna
import ray
import torch

from ibnn.results import read_table
from ibnn.sweep import runner
from ibnn.sweep.cluster.provenance import git_state, package_version, provenance, torch_cuda
from ibnn.trial import Trial, TrialConfig
from tests.sweeps.conftest import FAKE, REPO, load_script


def git(repo, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_git_state_names_the_commit_and_sees_changes(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "a.py").write_text("x = 1\n")
    git(repo, "add", "a.py")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    assert git_state(repo) == {"commit": git(repo, "rev-parse", "HEAD"), "dirty": False}
    (repo / "a.py").write_text("x = 2\n")  # a changed tracked file
    assert git_state(repo)["dirty"] is True
    git(repo, "checkout", "-q", "a.py")
    (repo / "b.py").write_text("y = 1\n")  # a new file, not ignored
    assert git_state(repo)["dirty"] is True
    plain = git_state(tmp_path / "elsewhere")  # not a checkout (e.g. synced by `ray submit`)
    assert plain["commit"] is None and plain["dirty"] is None and plain["reason"]


def test_versions_agree_with_the_imported_packages():
    record = provenance()
    assert torch_cuda() == torch.version.cuda  # read from torch's files, not imported
    assert record["torch"] == torch.__version__.split("+")[0]
    assert record["ray"] == ray.__version__ and record["optuna"] == optuna.__version__
    assert record["python"] == platform.python_version() and record["cuda"] == torch.version.cuda
    assert package_version("no-such-distribution-ibnn") is None


def test_sweep_json_and_every_row_record_their_origin(ray_session, tmp_path):
    spec = load_script("transfer").SPEC
    argv = ["--smoke", "--trial-module", FAKE, "--storage", str(tmp_path)]
    assert runner.main(spec, argv) == 0
    meta = json.loads((tmp_path / "transfer_fmnist" / "sweep.json").read_text())
    origin = meta["provenance"]
    assert origin["git"]["commit"] == git(REPO, "rev-parse", "HEAD")
    assert origin["git"]["dirty"] == bool(git(REPO, "status", "--porcelain"))
    assert {"python", "torch", "cuda", "ray", "optuna"} <= set(origin)
    node_id = ray.get_runtime_context().get_node_id()  # one node: the trials ran here
    for table in ("epochs", "evals"):
        rows = read_table(str(tmp_path), "transfer_fmnist", table).to_pandas()
        assert len(rows) > 0
        assert set(rows["node"]) == {socket.gethostname()}, table
        assert set(rows["node_id"]) == {node_id}, table


def test_the_real_trial_records_its_device_and_host():
    trial = Trial(TrialConfig(dataset="toy2d", epochs=1, warmup_epochs=0, n_eval=16))
    rec = trial.run_epoch()
    assert rec["device"] == "cpu" and rec["node"] == socket.gethostname()
    assert all(r["device"] == "cpu" for r in trial.evaluate())
