"""The sweep folder's rules: whether a run may use ``<storage>/<sweep>``, where Ray Tune keeps its
state there, and how a ``<storage>/<sweep>`` path splits.

The folder's record is ``sweep.json`` (``ibnn.results.sweep_record``): it names the experiment,
the arguments, the trial set (``spec``) and its fingerprint. Two runs are the same sweep when
their fingerprints agree. Ray Tune's state lives in ``ray/`` (a search's confirmation grid in
``ray_confirm/``); the Parquet tables beside it are the results.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from typing import Any

import pyarrow.fs as pafs

from ibnn.results import Storage
from ibnn.results.sweep_record import SWEEP_JSON, read_record
from ibnn.sweep.cluster.lease import LEASE_FILE

__all__ = [
    "CONFIRM_DIR",
    "RAY_DIR",
    "FolderError",
    "check_folder",
    "fingerprint",
    "split_sweep_path",
    "tune_location",
    "tune_state_exists",
]

RAY_DIR = "ray"  # Ray Tune's state of the sweep, in the sweep folder
CONFIRM_DIR = "ray_confirm"  # the confirmation grid's Tune state, beside a search's "ray"


class FolderError(ValueError):
    """The storage folder cannot be used by this run (the message says why and what to do)."""


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
    meta = read_record(storage, sweep)
    if meta is None and storage.exists(sweep):
        selector = pafs.FileSelector(storage.path(sweep), allow_not_found=True)
        if [i for i in storage.fs.get_file_info(selector) if i.base_name != LEASE_FILE]:
            raise FolderError(
                f"{where} exists and holds files but no {SWEEP_JSON}: it is not a sweep folder "
                f"of this platform. Nothing was changed; choose another --storage or --name."
            )
    if meta is not None and meta.fingerprint != fingerprint(spec_record):
        diff = _diff_keys(meta.spec, spec_record)
        raise FolderError(
            f"{where} holds another sweep's results (experiment {meta.experiment!r}, "
            f"dataset {meta.dataset!r}); its spec differs from this run's in "
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
        state = "finished" if meta and meta.finished else "started"
        raise FolderError(
            f"{where} already holds this sweep ({state} {meta.started if meta else ''}). "
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
