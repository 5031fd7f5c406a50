"""The cluster-launcher files validate against Ray's own schema and install the project.

Everything here runs offline: the files go through the same preparation `ray up` applies before
it contacts a cloud (Ray's `prepare_config`, which merges the provider's defaults.yaml, then
Ray's `validate_config`, which checks them against the ray-schema.json shipped with Ray).
"""

from __future__ import annotations

import copy
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import jsonschema
import pytest
import ray
import ray.autoscaler
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

REPO = Path(__file__).resolve().parents[2]
CLUSTER_FILES = ("cluster/cluster.yaml", "cluster/local.yaml")
SCHEMA_PATH = Path(ray.autoscaler.__file__).parent / "ray-schema.json"
EDITABLE = re.compile(r"\bpip install -e (\S+)")
RAY_PIN = re.compile(r'^"?ray\[[a-z,]+\]==([^"]+)"?$')
COMMAND_LISTS = (
    "initialization_commands",
    "setup_commands",
    "head_setup_commands",
    "worker_setup_commands",
    "head_start_ray_commands",
    "worker_start_ray_commands",
)


def _load(name: str) -> dict:
    with open(REPO / name) as f:
        return yaml.safe_load(f)


def _schema_errors(config: dict) -> list[str]:
    """Messages of every violation of Ray's ray-schema.json (empty when valid)."""
    with open(SCHEMA_PATH) as f:
        schema = json.load(f)
    validator = jsonschema.Draft7Validator(schema)
    return [error.message for error in validator.iter_errors(config)]


def _ray_up_config(config: dict) -> dict:
    """The config as `ray up` holds it before any cloud call: defaults merged, then validated."""
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def _pip_tokens(commands: list[str]) -> list[tuple[int, str]]:
    """(command index, argument) for every argument of every `pip install` command."""
    tokens = []
    for i, command in enumerate(commands):
        if command.startswith("pip install"):
            tokens += [(i, token) for token in command.split()[2:]]
    return tokens


def _install_problems(config: dict) -> list[str]:
    """Why the setup would not install this repository on a node (empty when it would).

    Checks that an editable pip install targets a mounted path whose local side is the
    repository root (`ray up` runs from there), that torch and torchvision carry the pins of
    pyproject.toml, and that Ray is pinned to the launcher's version before the project install.
    """
    problems = []
    commands = config.get("setup_commands", [])
    targets = [(i, m.group(1)) for i, c in enumerate(commands) if (m := EDITABLE.search(c))]
    if not targets:
        return ["no `pip install -e <path>` in setup_commands"]
    editable_index, target = targets[-1]
    mounts = config.get("file_mounts", {})
    if target not in mounts:
        problems.append(f"`pip install -e {target}`: {target} is not a file_mounts key")
    elif (REPO / mounts[target]).resolve() != REPO:
        problems.append(f"file_mounts[{target!r}] = {mounts[target]!r} is not the repository root")
    with open(REPO / "pyproject.toml", "rb") as f:
        dependencies = tomllib.load(f)["project"]["dependencies"]
    tokens = _pip_tokens(commands)
    for name in ("torch", "torchvision"):
        pins = [d for d in dependencies if d.startswith(f"{name}==")]
        if pins and pins[0] not in {token for _, token in tokens}:
            problems.append(f"setup_commands do not install {pins[0]} (pyproject.toml's pin)")
    ray_pins = [(i, m.group(1)) for i, token in tokens if (m := RAY_PIN.match(token))]
    if not ray_pins or ray_pins[0][1] != ray.__version__:
        problems.append(f"Ray must be pinned to the launcher's {ray.__version__}, got {ray_pins}")
    elif ray_pins[0][0] > editable_index:
        problems.append("Ray must be pinned before `pip install -e` (else pip picks the newest)")
    return problems


def _rsync_excluded(rel_path: str, patterns: list[str]) -> bool:
    """Whether rsync's --exclude patterns drop this repository-relative path.

    A pattern starting with "/" is anchored at the transfer root; one without a slash matches a
    path component at any depth (the subset of rsync's rules that the cluster files use).
    """
    for pattern in patterns:
        if pattern.startswith("/"):
            if fnmatch.fnmatch(rel_path, pattern[1:]):
                return True
        elif any(fnmatch.fnmatch(part, pattern) for part in rel_path.split("/")):
            return True
    return False


@pytest.fixture(params=CLUSTER_FILES)
def cluster_file(request) -> tuple[str, dict]:
    return request.param, _load(request.param)


def test_schema_ships_with_ray_and_rejects_unknown_keys():
    """The schema is inside the installed ray package and closes the top level."""
    with open(SCHEMA_PATH) as f:
        schema = json.load(f)
    assert schema["$schema"].startswith("http://json-schema.org/draft-07")
    assert schema["additionalProperties"] is False
    assert {"cluster_name", "provider"} <= set(schema["required"])


def test_file_validates_against_ray_schema(cluster_file):
    """The file as written satisfies Ray's ray-schema.json."""
    name, config = cluster_file
    assert _schema_errors(config) == [], name


def test_file_survives_ray_up_preparation(cluster_file):
    """Ray's prepare_config + validate_config accept it, and every node type installs ibnn."""
    name, config = cluster_file
    prepared = _ray_up_config(config)
    assert prepared["head_node_type"] in prepared["available_node_types"]
    # prepare_config prepends setup_commands to the head's and the workers' own lists.
    for key in ("head_setup_commands", "worker_setup_commands"):
        assert any(EDITABLE.search(c) for c in prepared[key]), (name, key)


def test_cloud_file_has_cpu_head_and_gpu_workers():
    """cluster.yaml: AWS, a head without GPUs and a GPU worker type with sane bounds."""
    config = _load("cluster/cluster.yaml")
    assert config["provider"]["type"] == "aws"
    types = config["available_node_types"]
    head = config["head_node_type"]
    assert types[head]["resources"] == {"CPU": 0}  # the head runs the driver only, no trials
    gpu_types = [t for name, t in types.items() if name != head and t["resources"].get("GPU", 0)]
    assert gpu_types, "no worker node type with GPUs"
    for node_type in gpu_types:
        assert 0 <= node_type["min_workers"] <= node_type["max_workers"] <= config["max_workers"]
    prepared = _ray_up_config(config)
    assert any("boto3" in c for c in prepared["head_setup_commands"])
    # Workers write to S3: Ray's default instance profile, by name (no account-specific edit).
    for node_type in gpu_types:
        assert node_type["node_config"]["IamInstanceProfile"] == {"Name": "ray-autoscaler-v1"}


def test_local_file_is_the_on_premise_variant():
    """local.yaml: provider local with a head and workers, and cluster.yaml's setup."""
    config = _load("cluster/local.yaml")
    provider = config["provider"]
    assert provider["type"] == "local"
    assert provider["head_ip"] and provider["worker_ips"]
    assert config["auth"]["ssh_user"]
    prepared = _ray_up_config(config)
    (node_type,) = prepared["available_node_types"].values()
    assert node_type["max_workers"] == len(provider["worker_ips"])
    cloud = _load("cluster/cluster.yaml")
    assert config["setup_commands"] == cloud["setup_commands"]
    assert config["rsync_exclude"] == cloud["rsync_exclude"]
    assert config["file_mounts"] == cloud["file_mounts"]
    (head_start,) = [c for c in config["head_start_ray_commands"] if "ray start" in c]
    assert "--num-cpus=0" in head_start  # the head runs the driver only, no trials


def test_setup_commands_install_the_project(cluster_file):
    """An editable install of the mounted repository root, with pyproject's pins and Ray's."""
    name, config = cluster_file
    assert _install_problems(config) == [], name


def test_start_commands_enable_token_auth(cluster_file):
    """Every `ray start` runs with RAY_AUTH_MODE=token and the token is mounted on the nodes."""
    name, config = cluster_file
    starts = [
        c
        for key in ("head_start_ray_commands", "worker_start_ray_commands")
        for c in config[key]
        if "ray start" in c
    ]
    assert len(starts) == 2, name
    assert all("RAY_AUTH_MODE=token ray start" in c for c in starts), name
    assert "~/.ray/auth_token" in config["file_mounts"], name


def test_commands_are_valid_bash(cluster_file):
    """Every command (after YAML folding) parses as a bash command line."""
    name, config = cluster_file
    for key in COMMAND_LISTS:
        for command in config.get(key, []):
            result = subprocess.run(["bash", "-n", "-c", command], capture_output=True, text=True)
            assert result.returncode == 0, (name, key, command, result.stderr)


def test_venv_line_in_bashrc_is_added_once_and_activates_the_venv(tmp_path):
    """The ~/.bashrc step is idempotent and puts ~/venv/bin first on PATH with token auth on."""
    config = _load("cluster/cluster.yaml")
    (command,) = [c for c in config["setup_commands"] if ".bashrc" in c]
    env = {"HOME": str(tmp_path), "PATH": os.environ["PATH"]}
    for _ in range(2):
        subprocess.run(["bash", "-c", command], env=env, check=True)
    lines = (tmp_path / ".bashrc").read_text().splitlines()
    assert len(lines) == 1
    probe = 'source ~/.bashrc; printf "%s|%s" "${PATH%%:*}" "$RAY_AUTH_MODE"'
    out = subprocess.run(["bash", "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert out.stdout == f"{tmp_path}/venv/bin|token"


def test_synced_copy_is_pip_installable(tmp_path):
    """What file_mounts + rsync_exclude carry to a node installs with `pip install -e`."""
    config = _load("cluster/cluster.yaml")
    patterns = config["rsync_exclude"]

    def ignore(directory: str, names: list[str]) -> set[str]:
        rel_dir = os.path.relpath(directory, REPO)
        rel = (lambda n: n) if rel_dir == "." else (lambda n: f"{rel_dir}/{n}")
        return {n for n in names if _rsync_excluded(rel(n), patterns)}

    assert _rsync_excluded(".venv", patterns) and _rsync_excluded(".git", patterns)
    assert not _rsync_excluded("ibnn/results.py", patterns)
    copy_root = tmp_path / "ibnn"
    shutil.copytree(REPO, copy_root, ignore=ignore, symlinks=True)
    assert not (copy_root / ".venv").exists()
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--no-index"]
        + ["--no-build-isolation", "--disable-pip-version-check", "-e", str(copy_root)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "Would install ibnn-" in result.stdout


# Negative cases: corrupted copies must fail, so the checks above can fail.


def test_unknown_top_level_key_fails_validation():
    """A misspelt section name is rejected by the schema and by Ray's validate_config."""
    config = _load("cluster/cluster.yaml")
    config["setup_comands"] = config.pop("setup_commands")
    errors = _schema_errors(config)
    assert any("setup_comands" in e for e in errors), errors
    with pytest.raises(jsonschema.ValidationError, match="setup_comands"):
        _ray_up_config(config)


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda c: c.__setitem__("max_workers", "eight"),
        lambda c: c["available_node_types"]["ray.worker.gpu"]["resources"].__setitem__("GPU", 0.25),
        lambda c: c["available_node_types"]["ray.worker.gpu"].pop("resources"),
        lambda c: c.__setitem__("setup_commands", "pip install -e ~/ibnn"),
    ],
    ids=["max_workers_str", "fractional_node_gpu", "no_resources", "commands_not_list"],
)
def test_wrong_type_fails_validation(corrupt):
    """Wrong types and missing required fields are schema errors."""
    config = _load("cluster/cluster.yaml")
    corrupt(config)
    assert _schema_errors(config)


@pytest.mark.parametrize(
    ("corrupt", "expected"),
    [
        (lambda c: c["setup_commands"].pop(), "no `pip install -e"),
        (lambda c: c["file_mounts"].__setitem__("~/ibnn", "./ibnn"), "not the repository root"),
        (lambda c: c["file_mounts"].pop("~/ibnn"), "not a file_mounts key"),
        (
            lambda c: c.update(setup_commands=[x for x in c["setup_commands"] if "torch" not in x]),
            "torch",
        ),
        (lambda c: c["setup_commands"].reverse(), "pinned before"),
    ],
    ids=["no_editable_install", "mount_not_root", "mount_missing", "torch_unpinned", "ray_after"],
)
def test_broken_install_is_detected(corrupt, expected):
    """The install check reports a setup that would not install this repository."""
    config = _load("cluster/cluster.yaml")
    corrupt(config)
    problems = _install_problems(config)
    assert any(expected in p for p in problems), problems
