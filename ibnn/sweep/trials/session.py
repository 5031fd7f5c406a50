"""What a trial learns from the Ray session it runs in: where its folders are, which node it runs
on, and whether it got a GPU that torch cannot use. Outside a Tune session (a unit test calling
the trainable directly) the folders are None and rows record the host name only."""

from __future__ import annotations

import os
import socket
import sys
import warnings
from typing import Any

__all__ = ["node_check_dir", "say_if_gpu_unused", "staging_dir", "stamp_node"]


def _experiment_dir() -> str | None:
    """This node's local folder of the sweep run (None outside a Tune session)."""
    from ray import tune

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # outside a session Ray warns and returns None
        trial_dir = tune.get_context().get_trial_dir()
    if trial_dir is None:
        return None
    return os.path.dirname(os.path.dirname(os.path.abspath(trial_dir)))


def node_check_dir() -> str | None:
    """Where ``check_node`` remembers that this node passed (per node and sweep run)."""
    experiment = _experiment_dir()
    return None if experiment is None else os.path.join(experiment, "node_checks")


def say_if_gpu_unused(tid: str, trial: Any) -> None:
    """Says on the console when Ray gave a trial a GPU that torch cannot use there.

    The trial then runs on the CPU (config ``device`` "auto", what GPU sweeps use) and its rows
    record ``device`` "cpu": results stay correct, but slower than the sweep planned for.
    """
    import ray

    gpus = ray.get_gpu_ids() if ray.is_initialized() else []
    device = getattr(trial, "device", None)
    if gpus and getattr(device, "type", "") == "cpu":
        print(
            f"trial {tid}: Ray assigned it GPU {gpus} on node {socket.gethostname()} "
            f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}) but torch "
            f"cannot use CUDA there (torch.cuda.is_available() is False); it runs on the CPU "
            f"and its rows record device 'cpu'",
            file=sys.stderr,
            flush=True,
        )


def staging_dir() -> str | None:
    """Where checkpoints are staged before Tune persists them (None outside a Tune session).

    Inside Ray's session folder, so a worker killed mid-epoch leaves its staging folder there
    rather than loose in /tmp, but beside the experiment's ``driver_artifacts`` rather than in
    the trial's folder there (``get_trial_dir()``): Tune uploads that folder with its
    experiment state, and a staging folder removed during the upload made it fail loudly
    ("Saving experiment state ... failed", FileNotFoundError on ``ibnn-ckpt-*/trial.pt``).
    """
    from ray import tune

    experiment = _experiment_dir()
    if experiment is None:
        return None
    trial_dir = tune.get_context().get_trial_dir()
    path = os.path.join(experiment, "checkpoint_staging", os.path.basename(trial_dir))
    os.makedirs(path, exist_ok=True)
    return path


def stamp_node(row: dict[str, Any]) -> dict[str, Any]:
    """Adds where a row was computed (columns ``node``, ``node_id``) unless the trial recorded it:
    the host name and the Ray node id. Returns the same dict."""
    import ray

    row.setdefault("node", socket.gethostname())
    row.setdefault(
        "node_id", ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""
    )
    return row
