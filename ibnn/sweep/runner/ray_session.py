"""The driver's Ray: joining the cluster (or starting a local instance), and what a joined
cluster needs before trials start there (the dataset staged, the nodes checked)."""

from __future__ import annotations

import os

from ibnn.results import Storage
from ibnn.sweep.cluster.datastage import stage_dataset
from ibnn.sweep.cluster.preflight import PreflightError, check_ray_address, check_workers

__all__ = ["check_nodes", "init_ray", "stage"]


def init_ray(address: str | None, verbose: bool = False) -> bool:
    """Joins the cluster at ``address`` (or this machine's, or a new local one); True if started.
    Ray's own informational lines reach the console only with ``verbose``."""
    import ray

    from ibnn.sweep.trials.progress import ray_logging_level  # imports ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if ray.is_initialized():
        return False
    try:
        check_ray_address(address)  # a dead head is reported in seconds, not waited on
    except PreflightError as err:
        raise SystemExit(f"error: {err}") from None
    try:
        ray.init(
            address=address,
            include_dashboard=False,
            log_to_driver=True,
            logging_level=ray_logging_level(verbose),
        )
    except ConnectionError as err:
        hint = ""
        if address not in (None, "auto", "local") and os.environ.get("RAY_AUTH_MODE") != "token":
            hint = (
                " If that cluster uses token authentication (Ray >= 2.59 enables it for clusters "
                "started where ~/.ray/auth_token exists), export RAY_AUTH_MODE=token and make the "
                "cluster's token available (~/.ray/auth_token, RAY_AUTH_TOKEN_PATH or "
                "RAY_AUTH_TOKEN) before running the sweep."
            )
        raise SystemExit(f"error: cannot connect to Ray at {address!r}: {err}.{hint}") from None
    return True


def stage(storage: Storage, dataset: str, data_root: str, download: bool) -> str:
    """Stages the sweep's dataset for the cluster's nodes; stops with one message if the driver
    has no copy of it (before anything is written into the sweep folder)."""
    from ibnn.trial.data import DatasetNotFoundError

    try:
        return stage_dataset(storage, dataset, data_root, download) or ""
    except DatasetNotFoundError as err:
        raise SystemExit(
            f"error: cannot stage the dataset for the cluster's nodes: {err}"
        ) from None


def check_nodes(storage: Storage, resources: dict[str, float], versions: dict) -> None:
    """Checks the other machines (storage writable there, same versions); stops with one message
    if one fails."""
    try:
        check_workers(storage.join_uri(), resources, versions)
    except PreflightError as err:
        raise SystemExit(f"error: {err}") from None
