"""Trial packs in a sweep: several grid trials as one Ray Tune trial, trained as one model.

A grid sweep's trials that may share a pack (equal ``ibnn.trial.pack.pack_key``: same
architecture, data set and recipe; seeds, lam and p may differ) are cut into packs of at most
``--pack K`` trials, of nearly equal sizes. Each pack is one Tune trial whose config holds its
members under ``"pack"``; its trainable (:func:`run_pack_trial`) builds one
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
import os
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "AUTO_PACK_CPU",
    "AUTO_PACK_GPU",
    "PACK",
    "auto_pack",
    "member_configs",
    "pack_variants",
    "run_pack_trial",
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


def run_pack_trial(config: dict[str, Any], settings: Any) -> None:
    """The trainable's body for a pack (see the module docstring)."""
    from ray import tune

    from ibnn.sweep.trainable import (
        _finish,
        _metrics,
        _say_if_gpu_unused,
        _staging_dir,
        _where,
        _Writer,
        prepared_config,
    )
    from ibnn.trial import Trial
    from ibnn.trial.pack import TrialPack

    members = []
    for member in member_configs(config):
        cfg, tid = prepared_config(member, settings)
        members.append((Trial(cfg), _Writer(settings, tid, cfg.to_dict()), tid, cfg))
    _say_if_gpu_unused(members[0][2], members[0][0])  # the members share their device
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            for trial, _, tid, _ in members:
                trial.load(os.path.join(d, f"{tid}.pt"))
    for trial, writer, _, _ in members:  # restored from the final checkpoint, not evaluated
        if trial.done and not writer.has("evals"):
            writer.trial_row(_finish(writer, trial), trial.records)
    pack = TrialPack([trial for trial, _, _, _ in members])
    scratch = _staging_dir()
    by_trial = {id(trial): (writer, tid, cfg) for trial, writer, tid, cfg in members}
    while not pack.done:
        metrics = []
        for trial, rec in pack.run_epoch():
            writer, tid, cfg = by_trial[id(trial)]
            _where(rec)
            writer.rows("epochs", trial.records)
            status = _finish(writer, trial) if trial.done else trial.status
            writer.trial_row(status, trial.records)
            metrics.append(_metrics(tid, trial, cfg, status))
        with tempfile.TemporaryDirectory(prefix="ibnn-ckpt-", dir=scratch) as d:
            for trial, _, tid, _ in members:
                trial.save(os.path.join(d, f"{tid}.pt"))
            tune.report(_pack_metrics(metrics), checkpoint=tune.Checkpoint.from_directory(d))


def _pack_metrics(members: list[dict[str, Any]]) -> dict[str, Any]:
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
    if "running" in statuses:
        return "running"
    return next((s for s in statuses if s != "ok"), "ok")
