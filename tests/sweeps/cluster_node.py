"""A two-node Ray cluster on 127.0.0.1 for the sweep tests, driven through stdin.

Prints one JSON line ``{"address": ...}`` once both nodes are up, then reads commands:
``remove`` (kill the worker node abruptly, as a lost machine), ``stop`` (shut everything down).
Run with the environment of ``conftest.ray_env`` (private temp dir; optionally token auth).
"""

from __future__ import annotations

import json
import sys

from ray.cluster_utils import Cluster


def main() -> None:
    node = {"node_ip_address": "127.0.0.1", "num_cpus": 1, "include_dashboard": False}
    cluster = Cluster(initialize_head=True, head_node_args=node)
    worker = cluster.add_node(node_ip_address="127.0.0.1", num_cpus=1)
    cluster.wait_for_nodes()
    print(json.dumps({"address": cluster.address}), flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "remove":
            cluster.remove_node(worker, allow_graceful=False)
            print("removed", flush=True)
        elif command == "stop":
            break
    cluster.shutdown()


if __name__ == "__main__":
    main()
