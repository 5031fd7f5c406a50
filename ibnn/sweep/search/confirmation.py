"""A search's confirmation: its best configurations re-run on fresh seeds, and the choice that
``--from-search`` makes from them.

The search trains every configuration on one seed (``SEARCH_SEED``), so that configurations are
compared on the same data split and initialisation. The best ``top`` distinct configurations that
finished "ok" are then re-run on the seeds ``SEARCH_SEED + 1 .. SEARCH_SEED + seeds`` (a grid,
no pruning), and ``--from-search`` picks the configuration with the highest median objective over
all of its seeds, among those judged on at least ``MIN_SEEDS`` seeds. Replication sweeps use
seeds ``0 .. n-1`` (n <= SEARCH_SEED): disjoint from every seed that chose the configuration.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from ibnn.results.schema import OK
from ibnn.sweep.spec import SEARCH_SEED
from ibnn.sweep.trials.identity import SEARCH_NUMBER
from ibnn.vocab import NEURON_KEYS

__all__ = [
    "CONFIRM_SEEDS",
    "CONFIRM_TOP",
    "MIN_SEEDS",
    "confirmed_choice",
    "confirm_variants",
    "config_key",
]

MIN_SEEDS = 2  # seeds a configuration needs before --from-search may pick it
CONFIRM_TOP = 3  # configurations a search re-runs by default (--confirm-top; 0: none)
CONFIRM_SEEDS = 2  # fresh seeds of each by default (--confirm-seeds)


def config_key(cfg: Mapping[str, Any]) -> str:
    """A configuration without its seed (what the confirmation runs again)."""
    return json.dumps({k: v for k, v in cfg.items() if k != "seed"}, sort_keys=True, default=str)


def _ok(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    good = [r for r in rows if r["status"] == OK and r["objective"] is not None]
    return [r for r in good if math.isfinite(float(r["objective"]))]


def confirm_variants(
    rows: Sequence[Mapping[str, Any]], top: int, seeds: int
) -> list[dict[str, Any]]:
    """The confirmation grid: the ``top`` best distinct "ok" search configurations (seed
    SEARCH_SEED; ties go to the lower Optuna number) x ``seeds`` fresh seeds.

    Args:
        rows: the sweep's ``trials`` table rows.
        top: configurations re-run.
        seeds: fresh seeds per configuration.

    Returns:
        Grid variants (family, neuron keys, seed and the Optuna trial number they confirm).
    """
    search = [r for r in _ok(rows) if json.loads(r["config_json"])["seed"] == SEARCH_SEED]
    search.sort(key=lambda r: (-float(r["objective"]), r.get(SEARCH_NUMBER) or 0, r["trial_id"]))
    chosen: dict[str, Mapping[str, Any]] = {}
    for r in search:
        chosen.setdefault(config_key(json.loads(r["config_json"])), r)
    variants = []
    for r in list(chosen.values())[:top]:
        cfg = json.loads(r["config_json"])
        base = {k: cfg[k] for k in ("family", *NEURON_KEYS)}
        for s in range(SEARCH_SEED + 1, SEARCH_SEED + 1 + seeds):
            variants.append({**base, "seed": s, SEARCH_NUMBER: r.get(SEARCH_NUMBER)})
    return variants


def confirmed_choice(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The configuration ``--from-search`` picks: highest median objective over its seeds among
    configurations with "ok" trials on at least MIN_SEEDS seeds (ties: more seeds, then the
    search trial's id). None when no configuration qualifies.

    The sweep's one rule for a search's best configuration. The report's ranking of a search's
    arms (``analysis.derived.search_best``: median validation accuracy at the selected epoch
    over every trial of an arm, one seed included) is a summary for reading, not this choice.

    Returns:
        ``{"config", "trial_id" (the search trial), "search_number", "seeds", "objectives",
        "objective" (the median)}``.
    """
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for r in _ok(rows):
        groups.setdefault(config_key(json.loads(r["config_json"])), []).append(r)
    candidates = []
    for group in groups.values():
        group = sorted(group, key=lambda r: json.loads(r["config_json"])["seed"])
        seeds = [json.loads(r["config_json"])["seed"] for r in group]
        if len(set(seeds)) < MIN_SEEDS:
            continue
        first = next((r for r in group if seeds[group.index(r)] == SEARCH_SEED), group[0])
        objectives = [float(r["objective"]) for r in group]
        candidates.append(
            {
                "config": json.loads(first["config_json"]),
                "trial_id": first["trial_id"],
                "search_number": first.get(SEARCH_NUMBER),
                "seeds": seeds,
                "objectives": objectives,
                "objective": statistics.median(objectives),
            }
        )
    if not candidates:
        return None
    return max(
        candidates,
        key=lambda c: (c["objective"], len(c["seeds"]), [-ord(ch) for ch in c["trial_id"]]),
    )
