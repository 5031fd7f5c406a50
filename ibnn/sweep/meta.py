"""The sweep folder's ``sweep.json``: what a folder holds, whether a run may use it, and the best
configuration of a finished search.

``sweep.json`` records the sweep name, the experiment, the script and its arguments, the spec
(the trial set: constants and variants, or the search settings) with its fingerprint, the expected
trial count, timestamps (started, resumed, finished) and, once the Tuner returns, the counts of ok
and failed trials. Two runs are the same sweep when their fingerprints agree.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from collections.abc import Mapping
from typing import Any

import pyarrow.fs as pafs

from ibnn.results import Storage, read_table
from ibnn.sweep.lease import LEASE_FILE

__all__ = [
    "FolderError",
    "check_folder",
    "fingerprint",
    "load_search_choice",
    "now",
    "split_sweep_path",
    "tune_location",
    "tune_state_exists",
]

SWEEP_JSON = "sweep.json"
RAY_DIR = "ray"


class FolderError(ValueError):
    """The storage folder cannot be used by this run (the message says why and what to do)."""


def now() -> str:
    """The current UTC time, ISO 8601 with seconds."""
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def fingerprint(spec_record: Mapping[str, Any]) -> str:
    """A short stable hash of a sweep's spec record (its trial set)."""
    text = json.dumps(spec_record, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _diff_keys(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    keys = sorted(set(a) | set(b))
    return [
        k
        for k in keys
        if json.dumps(a.get(k), sort_keys=True, default=str)
        != json.dumps(b.get(k), sort_keys=True, default=str)
    ]


def tune_location(storage: Storage, *parts: str) -> tuple[str, pafs.FileSystem | None]:
    """Where Ray Tune finds a location under the results root: ``(storage_path,
    storage_filesystem)`` for ``tune.RunConfig`` and ``Tuner.restore``/``can_restore``.

    A local folder is given as its path. Anything else is given as the path on the results'
    own pyarrow filesystem, with that filesystem: Ray would otherwise rebuild one from the URI
    and lose its options (an ``endpoint_override`` of an S3-compatible server, say).
    """
    if storage.is_local:
        return storage.join_uri(*parts), None
    return storage.path(*parts), storage.fs


def tune_state_exists(storage: Storage, sweep: str, ray_dir: str = RAY_DIR) -> bool:
    """Whether the sweep folder holds a Ray Tune state that ``Tuner.restore`` can continue."""
    from ray import tune

    path, fs = tune_location(storage, sweep, ray_dir)
    try:
        return bool(tune.Tuner.can_restore(path, storage_filesystem=fs))
    except Exception:  # an unreachable or malformed location: nothing restorable there
        return False


def check_folder(storage: Storage, sweep: str, spec_record: Mapping[str, Any], resume: bool) -> str:
    """Decides how a run may use ``<storage>/<sweep>``; never changes anything there.

    Args:
        storage: the results root.
        sweep: the sweep folder name.
        spec_record: this run's spec record (``sweep.json``'s ``spec``).
        resume: whether ``--resume`` was given.

    Returns:
        "fresh" to start a new Tuner, or "restore" to continue the saved one.

    Raises:
        FolderError: the folder holds another sweep, holds files but no sweep.json, already holds
            this sweep's state without ``--resume``, or has nothing to resume with ``--resume``.
    """
    where = storage.join_uri(sweep)
    meta = storage.read_json(f"{sweep}/{SWEEP_JSON}") if storage.exists(sweep, SWEEP_JSON) else None
    if meta is None and storage.exists(sweep):
        selector = pafs.FileSelector(storage.path(sweep), allow_not_found=True)
        if [i for i in storage.fs.get_file_info(selector) if i.base_name != LEASE_FILE]:
            raise FolderError(
                f"{where} exists and holds files but no {SWEEP_JSON}: it is not a sweep folder "
                f"of this platform. Nothing was changed; choose another --storage or --name."
            )
    if meta is not None and meta.get("fingerprint") != fingerprint(spec_record):
        diff = _diff_keys(meta.get("spec", {}), spec_record)
        raise FolderError(
            f"{where} holds another sweep's results (experiment {meta.get('experiment')!r}, "
            f"dataset {meta.get('dataset')!r}); its spec differs from this run's in "
            f"{diff or ['fingerprint']}. Nothing was changed; choose another --storage or "
            f"--name, or rerun with the original arguments."
        )
    restorable = tune_state_exists(storage, sweep)
    if resume:
        if not restorable:
            raise FolderError(
                f"--resume: nothing to resume in {where} (no Ray Tune state under "
                f"{where}/{RAY_DIR}). Run without --resume to start the sweep."
            )
        return "restore"
    if restorable:
        state = "finished" if meta and meta.get("finished") else "started"
        raise FolderError(
            f"{where} already holds this sweep ({state} {meta.get('started') if meta else ''}). "
            f"Nothing was changed; pass --resume to continue it, or choose another --storage "
            f"or --name for a new run."
        )
    return "fresh"


def split_sweep_path(path: str) -> tuple[str, str]:
    """Splits ``<storage>/<sweep>`` (path or URI) into the storage root and the sweep name."""
    p, _, query = path.partition("?")  # a URI's options stay with the root
    p = p.rstrip("/")
    if "://" not in p:
        p = os.path.abspath(os.path.expanduser(p))
    root, _, name = p.rpartition("/")
    if not name or not root or root.endswith(":/"):
        raise FolderError(f"expected a sweep folder <storage>/<sweep>, got {path!r}")
    return (f"{root}?{query}" if query else root), name


def load_search_choice(path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The best confirmed configuration of a search sweep, read from its Parquet ``trials`` table.

    Best = highest median objective (validation accuracy at the selected epoch) over the seeds of
    a configuration, among configurations with "ok" trials on at least two seeds (the search's
    seed and its confirmation seeds, see ``ibnn.sweep.confirm``).

    Args:
        path: the search's sweep folder, ``<storage>/<sweep>``.

    Returns:
        ``(neuron, info)``: neuron is {lam, p, w_extent, lam_trainable}; info names the source,
        the search trial that found it (trial_id, Optuna number), the seeds and objectives that
        chose it, their median and the dataset.

    Raises:
        FolderError: no search sweep there, or no configuration confirmed on two seeds yet.
    """
    from ibnn.sweep.confirm import MIN_SEEDS, best_confirmed

    root, name = split_sweep_path(path)
    st = Storage(root)
    if not st.exists(name, SWEEP_JSON):
        raise FolderError(f"--from-search {path}: no {SWEEP_JSON} there (not a sweep folder)")
    meta = st.read_json(f"{name}/{SWEEP_JSON}")
    if meta.get("kind") != "search":
        raise FolderError(
            f"--from-search {path}: that sweep is {meta.get('experiment')!r} (kind "
            f"{meta.get('kind')!r}), not a search"
        )
    rows = read_table(st, name, "trials").to_pylist()
    best = best_confirmed(rows)
    if best is None:
        ok = sum(1 for r in rows if r["status"] == "ok")
        raise FolderError(
            f"--from-search {path}: no configuration has finished with status 'ok' on "
            f"{MIN_SEEDS} or more seeds yet ({len(rows)} trial files, {ok} ok); resume the "
            f"search (with --confirm-top >= 1) until its confirmation runs have finished"
        )
    cfg = best["config"]
    neuron = {k: cfg[k] for k in ("lam", "p", "w_extent", "lam_trainable")}
    info = {
        "path": path,
        "trial_id": best["trial_id"],
        "search_number": best["search_number"],
        "seeds": best["seeds"],
        "objectives": best["objectives"],
        "objective": best["objective"],
        "dataset": cfg.get("dataset"),
        "finished_trials": sum(1 for r in rows if r["status"] == "ok"),
    }
    return neuron, info
