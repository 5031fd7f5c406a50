"""Data on every node: the driver stages a dataset once, each node fetches it once, verified.

Each node of a cluster has its own disk, so a fresh GPU worker has no dataset. Before any trial
starts, the driver copies the dataset's files (``ibnn.trial.data.DATASET_FILES``, from its own
data root; it downloads them there first with ``--download``) to the results storage, under
``<storage>/datasets/<dataset>/``, with a manifest of their sizes and SHA-256 digests. Sweeps on
the same storage share it: an identical file is not copied again.

Each trial then calls ``fetch_dataset`` on its node before it loads the data: under an
exclusive file lock (``fcntl``) in the node's data root, every file whose digest differs from the
manifest is copied to a temporary name, verified and renamed into place, and a stamp records
the verified state. Of several trials starting on one node, the first fetches while the others
wait for the lock and then find the stamp: no two processes ever write the same file, and no
trial downloads anything itself.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from ibnn.results import Storage

__all__ = ["MANIFEST", "STAGE_DIR", "DataStageError", "fetch_dataset", "stage_dataset"]

STAGE_DIR = "datasets"  # under the results root
MANIFEST = "manifest.json"
_CHUNK = 1 << 22  # copy and hash in 4 MiB chunks


class DataStageError(OSError):
    """A staged file is missing or does not match its manifest digest."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _digest(manifest: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()


def stage_dataset(storage: Storage, dataset: str, data_root: str, download: bool) -> str | None:
    """Driver: copies a dataset's files to ``<storage>/datasets/<dataset>/`` with a manifest.

    Args:
        storage: the results root (shared by every node).
        dataset: a dataset name; toy2d (generated) stages nothing.
        data_root: the driver's data root (``~`` expanded here).
        download: let torchvision download missing files into it first.

    Returns:
        The URI of the staging folder (``<storage>/datasets``) to fetch from, None for toy2d.

    Raises:
        DatasetNotFoundError: the driver has no copy of the dataset (the message says how to
            get one).
    """
    from ibnn.trial.data import DATASET_FILES, load_raw

    files = DATASET_FILES[dataset]
    if not files:
        return None
    root = Path(data_root).expanduser()
    if not all((root / rel).is_file() for rel in files):
        load_raw(dataset, root, download=download)  # Debian's files or a download, else refused
    rel_manifest = f"{STAGE_DIR}/{dataset}/{MANIFEST}"
    old = storage.read_json(rel_manifest) if storage.exists(STAGE_DIR, dataset, MANIFEST) else {}
    manifest: dict[str, Any] = {"dataset": dataset, "files": {}}
    for rel in files:
        local = root / rel
        entry = {"sha256": _sha256(local), "size": local.stat().st_size}
        manifest["files"][rel] = entry
        staged = storage.exists(STAGE_DIR, dataset, rel)
        if old.get("files", {}).get(rel) == entry and staged:
            continue
        target = storage.path(STAGE_DIR, dataset, rel)
        storage.fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
        with open(local, "rb") as src, storage.fs.open_output_stream(target) as dst:
            while chunk := src.read(_CHUNK):
                dst.write(chunk)
    storage.write_json(rel_manifest, manifest)  # last: a manifest names only copied files
    return storage.join_uri(STAGE_DIR)


def fetch_dataset(stage_uri: str, dataset: str, data_root: str) -> bool:
    """Node: makes ``data_root`` hold the staged files of ``dataset``, verified by SHA-256.

    Args:
        stage_uri: what ``stage_dataset`` returned.
        dataset: the dataset name.
        data_root: this node's data root (``~`` expanded here).

    Returns:
        True if this call copied any file, False if the node already had them all.

    Raises:
        DataStageError: a staged file does not match its manifest (nothing is renamed into place).
    """
    root = Path(data_root).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".ibnn-{dataset}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        st = Storage(stage_uri)
        manifest = st.read_json(f"{dataset}/{MANIFEST}")
        stamp = root / f".ibnn-{dataset}.verified.json"
        if _stamp_holds(stamp, manifest, root):
            return False
        copied = False
        for rel, want in manifest["files"].items():
            local = root / rel
            if local.is_file() and local.stat().st_size == want["size"]:
                if _sha256(local) == want["sha256"]:
                    continue
            _copy_verified(st, f"{dataset}/{rel}", local, want["sha256"])
            copied = True
        state = {rel: _state(root / rel) for rel in manifest["files"]}
        tmp = stamp.with_name(f"{stamp.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"manifest": _digest(manifest), "files": state}))
        os.replace(tmp, stamp)
        return copied


def _state(path: Path) -> list[int]:
    info = path.stat()
    return [info.st_size, info.st_mtime_ns]


def _stamp_holds(stamp: Path, manifest: dict[str, Any], root: Path) -> bool:
    """The files were verified against this manifest and have not changed since."""
    try:
        record = json.loads(stamp.read_text())
        return record["manifest"] == _digest(manifest) and all(
            _state(root / rel) == record["files"][rel] for rel in manifest["files"]
        )
    except (OSError, ValueError, KeyError):
        return False


def _copy_verified(st: Storage, rel: str, local: Path, sha256: str) -> None:
    local.parent.mkdir(parents=True, exist_ok=True)
    tmp = local.with_name(f".{local.name}.{os.getpid()}.tmp")
    h = hashlib.sha256()
    try:
        with st.fs.open_input_stream(st.path(rel)) as src, open(tmp, "wb") as dst:
            while chunk := src.read(_CHUNK):
                h.update(chunk)
                dst.write(chunk)
        if h.hexdigest() != sha256:
            raise DataStageError(
                f"staged file {st.join_uri(rel)} has SHA-256 {h.hexdigest()}, but its manifest "
                f"says {sha256}: the staged copy is damaged; rerun the driver to stage it again"
            )
        os.replace(tmp, local)
    finally:
        tmp.unlink(missing_ok=True)
