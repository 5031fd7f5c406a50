"""Where trials run: the GPU share per trial, from what the cluster can provide.

On an autoscaling cluster only the head is up when the driver starts, and the head has no GPU:
``ray.cluster_resources()`` then shows none, although GPU workers start as soon as trials ask for
GPUs. What the cluster can provide is in the autoscaler's node types: on the head of a cluster
started by ``ray up`` they are in ``~/ray_bootstrap_config.yaml`` (``available_node_types``,
each with its ``resources``). A sweep therefore asks for a GPU share when a node that is up has
GPUs or a node type the autoscaler may start has them; ``--gpus-per-trial`` overrides both.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "BOOTSTRAP_CONFIG",
    "DEFAULT_GPU_FRACTION",
    "autoscaler_gpus",
    "default_gpu_share",
    "trial_resources",
]

DEFAULT_GPU_FRACTION = 0.25  # a small model takes a quarter of a card by default
BOOTSTRAP_CONFIG = Path("~/ray_bootstrap_config.yaml")  # written by `ray up` on the head


def autoscaler_gpus(config_path: Path = BOOTSTRAP_CONFIG) -> float:
    """The most GPUs of any node type the autoscaler may start (0 without a launcher config)."""
    import yaml

    path = config_path.expanduser()
    if not path.is_file():
        return 0.0
    with open(path) as f:
        config: Any = yaml.safe_load(f) or {}
    types = config.get("available_node_types") or {}
    return max(
        (float((t.get("resources") or {}).get("GPU", 0)) for t in types.values()), default=0.0
    )


def default_gpu_share(
    cluster_resources: Mapping[str, float], config_path: Path = BOOTSTRAP_CONFIG
) -> float:
    """GPUs per trial when ``--gpus-per-trial`` is not given: ``DEFAULT_GPU_FRACTION`` if a node
    that is up or a node type of the autoscaler has a GPU, else 0 (CPU trials).

    Args:
        cluster_resources: ``ray.cluster_resources()`` (the nodes that are up).
        config_path: the autoscaler's config on the head.
    """
    if cluster_resources.get("GPU", 0) > 0 or autoscaler_gpus(config_path) > 0:
        return DEFAULT_GPU_FRACTION
    return 0.0


def trial_resources(
    cpus_per_trial: float, gpus_per_trial: float | None
) -> tuple[dict[str, float], str]:
    """The Ray resources of one trial and the device its config names.

    Args:
        cpus_per_trial: ``--cpus-per-trial``.
        gpus_per_trial: ``--gpus-per-trial``; None: ``default_gpu_share`` of the cluster that
            Ray is connected to (what it can provide, not only what is up now).

    Returns:
        ``({"cpu": ..., ["gpu": ...]}, device)``: device "auto" for GPU trials (the GPU Ray
        assigned: CUDA_VISIBLE_DEVICES holds it, so it is cuda:0; or the CPU where torch cannot
        use CUDA, which the trial says), else "cpu".
    """
    import ray

    gpus = gpus_per_trial
    if gpus is None:
        gpus = default_gpu_share(ray.cluster_resources())
    request = {"cpu": cpus_per_trial}
    if gpus > 0:
        request["gpu"] = gpus
    return request, ("auto" if gpus > 0 else "cpu")
