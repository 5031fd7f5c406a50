"""Checks before any trial starts, each failing with one message and nothing in the sweep folder.

- ``check_ray_address``: a cluster address that no longer answers is reported at once;
- ``check_workers``: from each node that can run trials, the results storage is writable and
  Ray, torch and Python are the driver's versions;
- ``check_node``: the same check, from inside a trial, for a node that joined after the start
  (an autoscaler adds workers while trials wait): run once per node, before its first trial.

``ray.init()`` without an address first tries the cluster recorded in
``<ray temp dir>/ray_current_cluster`` (or ``RAY_ADDRESS``); a head that died leaves that file
behind, and Ray then waits on it for minutes. ``check_ray_address`` resolves the address the
way Ray does and opens a TCP connection to it (a few seconds at most) before ``ray.init``.
"""

from __future__ import annotations

import os
import socket
from typing import Any

__all__ = [
    "PreflightError",
    "check_node",
    "check_ray_address",
    "check_workers",
    "driver_versions",
    "node_problems",
    "resolve_ray_address",
]

CONNECT_TIMEOUT_S = 3.0
PROBE_DIR = ".preflight"  # under the results root, never in a sweep folder


class PreflightError(Exception):
    """The sweep cannot start (the message says why and what to do)."""


def resolve_ray_address(address: str | None) -> tuple[str | None, str]:
    """The ``host:port`` that ``ray.init(address)`` would join, and where it came from.

    Returns:
        ``(None, "")`` when Ray would start a new local instance; else the address and its
        source ("--address", "RAY_ADDRESS" or the path of Ray's ``ray_current_cluster`` file).
    """
    from ray._common.utils import get_ray_address_file
    from ray._private.services import find_bootstrap_address

    if address == "local":
        return None, ""
    env = os.environ.get("RAY_ADDRESS") or None
    if env is not None:
        return (None, "") if env == "local" else (env, "RAY_ADDRESS")
    if address not in (None, "auto"):
        return address, "--address"
    recorded = find_bootstrap_address(None)
    return (recorded, get_ray_address_file(None)) if recorded else (None, "")


def check_ray_address(address: str | None) -> None:
    """Raises PreflightError within seconds when the cluster ``ray.init(address)`` would join
    does not accept connections."""
    target, source = resolve_ray_address(address)
    if target is None or "://" in target:  # a new local instance, or a Ray Client URI
        return
    host, _, port = target.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), CONNECT_TIMEOUT_S):
            return
    except (OSError, ValueError) as err:
        why = f"{type(err).__name__}: {err}"
    hint = (
        f" A head that stopped or died leaves its address in {source}: remove that file, start "
        f"the cluster again, or pass --address local for a new local Ray instance."
        if source not in ("--address", "RAY_ADDRESS")
        else " Check that the cluster is up (`ray status` on its head) and the address is right."
    )
    raise PreflightError(
        f"the Ray cluster at {target} (from {source}) does not answer ({why}).{hint}"
    )


def _probe(storage_uri: str) -> dict[str, Any]:
    """On a worker node: write and delete a file in the results storage; report versions."""
    import platform
    import uuid

    import ray

    from ibnn.results import Storage
    from ibnn.sweep.cluster.provenance import package_version

    host = socket.gethostname()
    out = {
        "host": host,
        "node_id": ray.get_runtime_context().get_node_id(),
        "python": ".".join(platform.python_version_tuple()[:2]),
        "ray": ray.__version__,
        "torch": package_version("torch"),
        "error": "",
    }
    st = Storage(storage_uri)
    rel = f"{PROBE_DIR}/{host}-{uuid.uuid4().hex}"
    try:
        st.write_bytes(rel, b"ibnn preflight\n")
        st.fs.delete_file(st.path(rel))
    except OSError as err:
        out["error"] = f"{type(err).__name__}: {err}"
    return out


def node_problems(record: dict[str, Any], expected: dict[str, Any], storage_uri: str) -> list[str]:
    """What is wrong with a node, one sentence each ([] when nothing is).

    Args:
        record: what ``_probe`` reported from the node.
        expected: the driver's versions (``driver_versions``).
        storage_uri: the results root the probe wrote to.
    """
    where = f"node {record['host']} ({record['node_id'][:8]})"
    problems = []
    if record["error"]:
        problems.append(f"{where} cannot write to {storage_uri}: {record['error']}")
    differ = [
        f"{k} {record[k]} (driver: {expected[k]})" for k in expected if record[k] != expected[k]
    ]
    if differ:
        problems.append(f"{where} runs {', '.join(differ)}")
    return problems


def check_workers(
    storage_uri: str, resources: dict[str, float], expected: dict[str, Any]
) -> list[dict[str, Any]]:
    """Before any trial: from every node that can run trials (one task each), the results
    storage is writable and Ray, torch and Python match the driver's.

    On an autoscaling cluster where no such node is up yet, one task with a trial's resources
    makes the autoscaler start one, and that node is checked.

    Args:
        storage_uri: the results root, as trials open it.
        resources: a trial's ``{"cpu": ..., "gpu": ...}``.
        expected: the driver's ``{"python": "3.11", "ray": ..., "torch": ...}``.

    Returns:
        One record per node checked (host, node_id, versions).

    Raises:
        PreflightError: naming each node that cannot write or runs other versions.
    """
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    probe = ray.remote(num_cpus=0)(_probe)
    nodes = [
        n["NodeID"]
        for n in ray.nodes()
        if n.get("Alive") and (n["Resources"].get("CPU", 0) > 0 or n["Resources"].get("GPU", 0))
    ]
    if nodes:
        refs = [
            probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n, soft=False)).remote(
                storage_uri
            )
            for n in nodes
        ]
    else:
        gpus = resources.get("gpu", 0.0)
        refs = [
            probe.options(num_cpus=resources.get("cpu", 1.0), num_gpus=gpus).remote(storage_uri)
        ]
    records = ray.get(refs)
    problems = [p for r in records for p in node_problems(r, expected, storage_uri)]
    if problems:
        raise PreflightError(
            "preflight failed before any trial started: "
            + "; ".join(problems)
            + ". Nothing was written into the sweep folder."
        )
    return records


def driver_versions() -> dict[str, Any]:
    """The driver's versions that every node must match (``check_workers``)."""
    import platform

    import ray

    from ibnn.sweep.cluster.provenance import package_version

    return {
        "python": ".".join(platform.python_version_tuple()[:2]),
        "ray": ray.__version__,
        "torch": package_version("torch"),
    }


def check_node(storage_uri: str, expected: dict[str, Any], cache_dir: str | None) -> bool:
    """In a trial, before it trains: the node it runs on passes ``check_workers``'s checks.

    A node the autoscaler started after the sweep's preflight (while trials waited for GPUs) was
    never checked; this checks it before its first trial. A pass is remembered in ``cache_dir``
    (a folder on the node, per sweep run), so the check runs once per node: trials starting
    together on a new node wait on a file lock, and one of them checks. A failure is not
    remembered (a storage error may pass on the next try).

    Args:
        storage_uri: the results root, as trials open it.
        expected: the driver's versions (``driver_versions``).
        cache_dir: where passes are remembered (None: check every time).

    Returns:
        True if this call ran the check, False if the node had passed it before.

    Raises:
        PreflightError: naming the node, what differs from the driver, and the rule.
    """
    import fcntl
    import hashlib
    import json

    import ray

    if cache_dir is None:
        _raise_late(_probe(storage_uri), expected, storage_uri)
        return True
    key = json.dumps([storage_uri, expected], sort_keys=True).encode()
    node = ray.get_runtime_context().get_node_id()
    passed = os.path.join(cache_dir, f"node-{node}-{hashlib.sha256(key).hexdigest()[:12]}.ok")
    os.makedirs(cache_dir, exist_ok=True)
    with open(os.path.join(cache_dir, "node-check.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if os.path.exists(passed):
            return False
        record = _probe(storage_uri)
        _raise_late(record, expected, storage_uri)
        with open(passed, "w") as f:
            json.dump(record, f)
    return True


def _raise_late(record: dict[str, Any], expected: dict[str, Any], storage_uri: str) -> None:
    problems = node_problems(record, expected, storage_uri)
    if problems:
        raise PreflightError(
            "this trial's node joined after the sweep's preflight and fails it: "
            + "; ".join(problems)
            + ". Every node must run the driver's Ray, torch and Python and be able to write "
            "the results storage; fix or remove that node (a trial failing there is retried, "
            "on whichever node has room, up to --max-failures times, then recorded as 'error')."
        )
