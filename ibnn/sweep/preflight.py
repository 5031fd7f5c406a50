"""Checks before a sweep joins Ray: a cluster address that no longer answers is reported at once.

``ray.init()`` without an address first tries the cluster recorded in
``<ray temp dir>/ray_current_cluster`` (or ``RAY_ADDRESS``); a head that died leaves that file
behind, and Ray then waits on it for minutes. ``check_ray_address`` resolves the address the
way Ray does and opens a TCP connection to it (a few seconds at most) before ``ray.init``.
"""

from __future__ import annotations

import os
import socket

__all__ = ["PreflightError", "check_ray_address", "resolve_ray_address"]

CONNECT_TIMEOUT_S = 3.0


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
