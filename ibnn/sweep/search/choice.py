"""``--from-search``: the neuron a replication sweep takes from a finished search, the best
configuration its confirmation runs confirmed (``ibnn.sweep.search.confirmation``)."""

from __future__ import annotations

from typing import Any

from ibnn.results import Storage, read_table
from ibnn.results.schema import OK
from ibnn.results.sweep_record import SWEEP_JSON, read_record
from ibnn.sweep.folder import FolderError, split_sweep_path
from ibnn.sweep.search.confirmation import MIN_SEEDS, confirmed_choice
from ibnn.vocab import NEURON_KEYS

__all__ = ["load_search_choice"]


def load_search_choice(path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The best confirmed configuration of a search sweep, read from its Parquet ``trials`` table.

    Best = highest median objective (validation accuracy at the selected epoch) over the seeds of
    a configuration, among configurations with "ok" trials on at least two seeds (the search's
    seed and its confirmation seeds, see ``ibnn.sweep.search.confirmation``).

    Args:
        path: the search's sweep folder, ``<storage>/<sweep>``.

    Returns:
        ``(neuron, info)``: neuron is {lam, p, w_extent, lam_trainable}; info names the source,
        the search trial that found it (trial_id, Optuna number), the seeds and objectives that
        chose it, their median and the dataset.

    Raises:
        FolderError: no search sweep there, or no configuration confirmed on two seeds yet.
    """
    root, name = split_sweep_path(path)
    st = Storage(root)
    meta = read_record(st, name)
    if meta is None:
        raise FolderError(f"--from-search {path}: no {SWEEP_JSON} there (not a sweep folder)")
    if meta.kind != "search":
        raise FolderError(
            f"--from-search {path}: that sweep is {meta.experiment!r} (kind "
            f"{meta.kind!r}), not a search"
        )
    rows = read_table(st, name, "trials").to_pylist()
    best = confirmed_choice(rows)
    if best is None:
        ok = sum(1 for r in rows if r["status"] == OK)
        raise FolderError(
            f"--from-search {path}: no configuration has finished with status 'ok' on "
            f"{MIN_SEEDS} or more seeds yet ({len(rows)} trial files, {ok} ok); resume the "
            f"search (with --confirm-top >= 1) until its confirmation runs have finished"
        )
    cfg = best["config"]
    neuron = {k: cfg[k] for k in NEURON_KEYS}
    info = {
        "path": path,
        "trial_id": best["trial_id"],
        "search_number": best["search_number"],
        "seeds": best["seeds"],
        "objectives": best["objectives"],
        "objective": best["objective"],
        "dataset": cfg.get("dataset"),
        "finished_trials": sum(1 for r in rows if r["status"] == OK),
    }
    return neuron, info
