"""Trial packs in a sweep: several grid trials as one Ray Tune trial, trained as one model.

A grid sweep's trials that may share a pack (equal ``ibnn.trial.pack.pack_key``: same
architecture, data set and recipe; seeds, lam and p may differ) are cut into packs of at most
``--pack K`` trials, of nearly equal sizes. Each pack is one Tune trial whose config holds its
members under ``"pack"``; the trainable (``ibnn.sweep.trials.trainable``) builds one
:class:`ibnn.trial.Trial` per member, trains them as a :class:`ibnn.trial.pack.TrialPack`, and
writes every member's own rows (its ``trial_id``, epochs, evals and trials row) exactly as a
solo trial would, checkpointing every member (``<trial_id>.pt``) in the pack's checkpoint.

``--pack`` defaults to ``auto`` (:func:`auto_pack`): packs of up to 32 trials when trials get a
GPU share; on CPU, packs of up to 8 for SM and IBNN-lite trials and none for IBNN trials,
whose packs were slower than solo runs there (``benchmarks/pack.py``). ``--pack 1`` runs one
trial per Tune trial, as do searches (each Optuna trial is its own) and trial modules other
than ``ibnn.trial``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from ibnn.results.schema import OK, RUNNING

__all__ = [
    "AUTO_PACK_CPU",
    "AUTO_PACK_GPU",
    "PACK",
    "auto_pack",
    "member_configs",
    "pack_variants",
    "pack_metrics",
]

PACK = "pack"  # config key of a pack's members (their grid variants)
AUTO_PACK_CPU = 8  # trials per pack by default on CPU
AUTO_PACK_GPU = 32  # ... and when trials get a GPU share
PACKING_MODULE = "ibnn.trial"  # the trial module whose trials can be packed


def auto_pack(size: int | None, gpu: bool, family: str) -> int:
    """Trials per pack: ``--pack`` if given; else 32 on GPUs, and on CPU 8 for families without
    an implicit solve (SM, IBNN-lite) and 1 for "ibnn", whose packs are slower there
    (``benchmarks/pack.py``: the solve's work grows with the pack, and its iterations are the
    slowest member's)."""
    if size is not None:
        return size
    if gpu:
        return AUTO_PACK_GPU
    return 1 if family == "ibnn" else AUTO_PACK_CPU


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    """``items`` cut into ceil(n / size) consecutive chunks whose sizes differ by one at most."""
    n = len(items)
    parts = math.ceil(n / size)
    bounds = [round(i * n / parts) for i in range(parts + 1)]
    return [items[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


def pack_variants(
    variants: Sequence[Mapping[str, Any]],
    constants: Mapping[str, Any],
    size: int | None,
    trial_module: str = PACKING_MODULE,
    gpu: bool = False,
) -> list[list[dict[str, Any]]]:
    """A grid's variants cut into packs: trials that may share one, at most ``size`` per pack.

    Args:
        variants: each trial's own config values (``plan.variants``).
        constants: the values every trial shares.
        size: most trials per pack (1: every trial alone; None: :func:`auto_pack`).
        trial_module: packs only for ``ibnn.trial`` (other modules: every trial alone).
        gpu: trials get a GPU share (for the automatic size).

    Returns:
        The packs, each a list of variants, in the grid's order of first appearance.
    """
    if size == 1 or trial_module != PACKING_MODULE:
        return [[dict(v)] for v in variants]
    from ibnn.trial.config import TrialConfig
    from ibnn.trial.pack import pack_key

    groups: dict[tuple, list[dict[str, Any]]] = {}
    family: dict[tuple, str] = {}
    for v in variants:
        cfg = TrialConfig.from_dict({**constants, **v})
        key = pack_key(cfg)
        groups.setdefault(key, []).append(dict(v))
        family[key] = cfg.family
    return [
        chunk
        for key, group in groups.items()
        for chunk in _chunks(group, auto_pack(size, gpu, family[key]))
    ]


def member_configs(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The solo Tune configs of a pack's members (a solo trial's config: itself)."""
    if PACK not in config:
        return [dict(config)]
    shared = {k: v for k, v in config.items() if k != PACK}
    return [{**shared, "variant": v} for v in config[PACK]]


def pack_metrics(members: list[dict[str, Any]]) -> dict[str, Any]:
    """One report for a pack: the most advanced member's progress, the best objective."""
    first = max(members, key=lambda m: m["epochs_done"])
    objectives = [m["objective"] for m in members if m["objective"] == m["objective"]]
    return {
        **first,
        "trial_id": "+".join(m["trial_id"] for m in members),
        "objective": max(objectives) if objectives else float("nan"),
        "status": _pack_status([m["status"] for m in members]),
        "members": len(members),
    }


def _pack_status(statuses: list[str]) -> str:
    """A pack's status for the console: "running" while a member runs, "ok" when every member
    ended ok, else the first other ending (the members' own rows say which)."""
    if RUNNING in statuses:
        return RUNNING
    return next((s for s in statuses if s != OK), OK)
