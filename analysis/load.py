"""Reading sweeps from `<storage>/<sweep>/{epochs,evals,boundaries}/*.parquet` and sweep.json.

Files are read with pyarrow, several at once (threads: object stores answer in parallel), each
on its own, so that one corrupt file is named in a warning and the rest are still read; a
table's files are then joined as Arrow and converted to pandas once. A
compacted table (one ``all-trials.parquet``, ``python -m ibnn.sweep compact``) is read the same
way; a trial's own file, if it also has one, replaces its rows there. Temporary files (names
starting with ".") of an in-progress atomic write are ignored. Local folders and any URI that
`pyarrow.fs.FileSystem.from_uri` understands (s3://...) are accepted.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

from ibnn.results.schema import IDENTITY, REQUIRED, ROW_KEYS, TABLES
from ibnn.results.storage import COMPACT_FILE, READ_THREADS, parquet_from_bytes
from ibnn.results.sweep_record import SWEEP_JSON, SweepRecord
from ibnn.vocab import EXPERIMENTS

__all__ = [
    "KINDS",
    "TABLES",
    "REQUIRED_COLUMNS",
    "SweepData",
    "find_sweeps",
    "load_sweep",
    "load_storage",
    "sweep_kind",
]

# Sweep scripts of DESIGN section 6; a sweep's kind picks the derived result that applies.
KINDS: tuple[str, ...] = EXPERIMENTS
# Columns without which a file cannot be analysed: the contract's required columns, less the
# identity columns (sweep and trial_id are filled in from the file's location if absent).
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    table: tuple(sorted(REQUIRED[table] - set(IDENTITY))) for table in TABLES
}


@dataclass(frozen=True, eq=False)
class SweepData:
    """Everything read from one sweep folder."""

    name: str  # folder name under the storage root
    path: str  # folder path on its filesystem
    kind: str | None  # the sweep script it came from (one of KINDS), None if not recognised
    meta: dict  # contents of sweep.json ({} when absent or unreadable)
    epochs: pd.DataFrame  # one row per trial and epoch (DESIGN section 5)
    evals: pd.DataFrame  # one row per trial, attack and strength
    boundaries: pd.DataFrame  # toy2d decision-boundary grids (x0, x1, prob)
    trials: pd.DataFrame  # one row per trial with its status (the writer's registry), optional
    files: dict[str, int] = field(default_factory=dict)  # files read per table
    warnings: tuple[str, ...] = ()  # problems met while reading (corrupt files, bad json, ...)


def sweep_kind(
    name: str, meta: dict | None = None, experiments: tuple[str, ...] = ()
) -> str | None:
    """Which sweep script produced a sweep.

    Candidates, in order: sweep.json's experiment, script and sweep; the `experiment`
    column of its tables; the folder name. A candidate matches a kind when it equals it or
    starts with it followed by "_", "-" or ".": "expressivity", "expressivity_svhn" and
    "sweeps/expressivity.py" all give "expressivity".

    Args:
        name: the sweep's folder name.
        meta: sweep.json contents, if any.
        experiments: distinct values of the tables' experiment column, if any.

    Returns:
        One of KINDS, or None when nothing matches.
    """
    record = SweepRecord.from_dict(meta or {})
    candidates = []
    for value in (record.experiment, record.script, record.sweep):
        if isinstance(value, str) and value:
            candidates.append(PurePosixPath(value).name)
    candidates += [e for e in experiments if isinstance(e, str)]
    candidates.append(name)
    for cand in candidates:
        matches = [k for k in KINDS if cand == k or any(cand.startswith(k + s) for s in "_-.")]
        if matches:
            return max(matches, key=len)
    return None


def _filesystem(storage: str) -> tuple[pafs.FileSystem, str]:
    if "://" in storage:
        return pafs.FileSystem.from_uri(storage)
    return pafs.LocalFileSystem(), os.path.abspath(storage or ".")


def _is_dir(fs: pafs.FileSystem, path: str) -> bool:
    return fs.get_file_info(path).type == pafs.FileType.Directory


def find_sweeps(storage: str) -> list[str]:
    """Sweep folders under `storage`: every child folder holding an epochs/, evals/, boundaries/
    or trials/ table or a sweep.json (a sweep that started but wrote no results yet), or
    `storage` itself when it is such a folder. Sorted by name.

    Raises:
        ValueError: when `storage` is not an existing folder.
    """
    fs, root = _filesystem(storage)
    if not _is_dir(fs, root):
        raise ValueError(f"storage must be an existing folder, but got {storage!r}")

    def holds_tables(folder: str) -> bool:
        if fs.get_file_info(f"{folder}/{SWEEP_JSON}").type == pafs.FileType.File:
            return True
        return any(_is_dir(fs, f"{folder}/{t}") for t in TABLES)

    if holds_tables(root):
        return [root]
    children = fs.get_file_info(pafs.FileSelector(root, recursive=False))
    return sorted(
        c.path
        for c in children
        if c.type == pafs.FileType.Directory
        and not c.base_name.startswith(".")
        and holds_tables(c.path)
    )


def _read_file(fs: pafs.FileSystem, path: str) -> pa.Table | str:
    """One Parquet file as an Arrow table, fetched whole in one request; a message if corrupt."""
    try:
        with fs.open_input_stream(path, compression=None) as f:
            return parquet_from_bytes(f.readall())
    except (pa.ArrowException, OSError, ValueError) as exc:
        return f"skipped corrupt file {path} ({type(exc).__name__}: {exc})"


def _with_column(table: pa.Table, name: str, value: str) -> pa.Table:
    return table.append_column(name, pa.array([value] * table.num_rows, pa.string()))


def _to_pandas(parts: list[pa.Table]) -> pd.DataFrame:
    """The files' tables as one DataFrame, converted once. Files written to the contract share
    their schema; older files lacking a column get nulls there. Files whose types disagree
    beyond Arrow's promotion (a string column read as numbers elsewhere) are combined as
    pandas does, file by file."""
    try:
        return pa.concat_tables(parts, promote_options="permissive").to_pandas()
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return pd.concat([p.to_pandas() for p in parts], ignore_index=True)


def _read_table(
    fs: pafs.FileSystem, folder: str, table: str, sweep: str, warnings: list[str]
) -> tuple[pd.DataFrame, int]:
    tdir = f"{folder}/{table}"
    if not _is_dir(fs, tdir):
        return pd.DataFrame(), 0
    infos = fs.get_file_info(pafs.FileSelector(tdir, recursive=False))
    files = sorted(  # a compacted table's one file first: a trial's own file overrides it
        (
            i.path
            for i in infos
            if i.type == pafs.FileType.File
            and i.base_name.endswith(".parquet")
            and not i.base_name.startswith(".")
        ),
        key=lambda p: (PurePosixPath(p).name != COMPACT_FILE, p),
    )
    with ThreadPoolExecutor(READ_THREADS) as pool:  # many small files: read them in parallel
        read_all = list(pool.map(lambda path: _read_file(fs, path), files))
    parts, own, compacted = [], [], None
    for path, part in zip(files, read_all, strict=True):
        if isinstance(part, str):
            warnings.append(part)
            continue
        names = set(part.schema.names)
        missing = [c for c in REQUIRED_COLUMNS[table] if c not in names]
        if missing:
            warnings.append(f"skipped {path}: required columns {missing} are missing")
            continue
        if "sweep" not in names:
            part = _with_column(part, "sweep", sweep)
        if "trial_id" not in names:
            part = _with_column(part, "trial_id", PurePosixPath(path).stem)
        if PurePosixPath(path).name != COMPACT_FILE:
            own.append(PurePosixPath(path).stem)
        elif part.num_rows:
            compacted = part
            continue
        parts.append(part)
    if compacted is not None:  # its rows of trials that have their own file are stale
        ids = compacted.column("trial_id").cast(pa.string())
        stale = pc.fill_null(pc.is_in(ids, value_set=pa.array(own, pa.string())), False)
        parts.insert(0, compacted.filter(pc.invert(stale)))
    parts = [p for p in parts if p.num_rows]
    if not parts:
        return pd.DataFrame(columns=["sweep", "trial_id", *REQUIRED_COLUMNS[table]]), len(files)
    out = _to_pandas(parts)
    keys = [k for k in ROW_KEYS[table] if k in out.columns]
    dup = out.duplicated(subset=keys, keep="last")
    if dup.any():
        warnings.append(
            f"{tdir}: dropped {int(dup.sum())} duplicate rows (same {', '.join(keys)}; kept last)"
        )
        out = out[~dup].reset_index(drop=True)
    return out, len(files)


def _read_meta(fs: pafs.FileSystem, folder: str, warnings: list[str]) -> dict:
    path = f"{folder}/{SWEEP_JSON}"
    if fs.get_file_info(path).type != pafs.FileType.File:
        return {}
    try:
        with fs.open_input_stream(path) as f:
            meta = json.loads(f.read().decode("utf-8"))
    except (OSError, ValueError) as exc:
        warnings.append(f"unreadable {path} ({type(exc).__name__}: {exc})")
        return {}
    try:
        SweepRecord.from_dict(meta)  # read later through the record (ibnn.results.sweep_record)
    except ValueError as exc:  # not a JSON object
        warnings.append(f"ignored {path}: {exc}")
        return {}
    return meta


def load_sweep(folder: str, storage: str | None = None) -> SweepData:
    """Read one sweep folder (all its tables and sweep.json).

    Args:
        folder: the sweep folder, as returned by `find_sweeps`.
        storage: the storage root or URI it was found under (for the filesystem); defaults to
            `folder` itself.

    Returns:
        SweepData with one DataFrame per table (empty DataFrames for absent tables).
    """
    if storage is None:
        fs, folder = _filesystem(folder)
    else:
        fs, _ = _filesystem(storage)
    name = PurePosixPath(folder).name
    warnings: list[str] = []
    meta = _read_meta(fs, folder, warnings)
    tables, counts = {}, {}
    for table in TABLES:
        tables[table], counts[table] = _read_table(fs, folder, table, name, warnings)
    experiments = tuple(
        sorted({e for t in tables.values() if "experiment" in t for e in t["experiment"].dropna()})
    )
    return SweepData(
        name=name,
        path=folder,
        kind=sweep_kind(name, meta, experiments),
        meta=meta,
        files=counts,
        warnings=tuple(f"sweep {name!r}: {w}" for w in warnings),
        **tables,
    )


def load_storage(storage: str) -> list[SweepData]:
    """Read every sweep found under `storage` (see `find_sweeps`)."""
    return [load_sweep(folder, storage) for folder in find_sweeps(storage)]
