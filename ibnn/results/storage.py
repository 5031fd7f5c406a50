"""The results writer: one file per trial per table, atomic writes, in the contract's schemas.

Layout under a storage root (a local folder or a URI such as ``s3://bucket/prefix``)::

    <storage>/<sweep>/epochs/<trial_id>.parquet       one row per trial and epoch
    <storage>/<sweep>/evals/<trial_id>.parquet        one row per trial, attack and strength
    <storage>/<sweep>/boundaries/<trial_id>.parquet   toy2d decision-boundary grids
    <storage>/<sweep>/trials/<trial_id>.parquet       one row per trial: config, status, objective
    <storage>/<sweep>/sweep.json                      its record (``ibnn.results.sweep_record``)

A trial's file is rewritten after every epoch with *all* of that trial's rows so far, so a retried
or resumed trial replaces its file instead of appending to it: each ``(trial_id, epoch)`` exists
exactly once. Local files are written to a hidden temporary file in the same folder and then
renamed over the target (readers never see half a file; ``pandas.read_parquet`` skips names that
start with "."). Object stores (S3, GCS) make a single PUT visible atomically, so there the file is
written in place.

A finished sweep can be compacted (``compact_table``; ``python -m ibnn.sweep compact DIR``): each
table's files are replaced by one, ``<table>/all-trials.parquet``; readers take both layouts.

Every table has the fixed pyarrow schema of ``ibnn.results.schema`` (the contract), so
``pandas.read_parquet("<storage>/<sweep>/epochs")`` reads all files of a table at once with
consistent dtypes.
"""

from __future__ import annotations

import io
import json
import os
import time
import uuid
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ibnn.results.schema import REQUIRED, SCHEMAS, check_table

_READ_TRIES = 5  # reads of an object replaced while it was read (object storage only)
READ_THREADS = 16  # files read at once
COMPACT_FILE = "all-trials.parquet"  # a compacted table's one file (not a trial id)

__all__ = [
    "COMPACT_FILE",
    "Storage",
    "build_table",
    "compact_table",
    "conform",
    "parquet_from_bytes",
    "read_table",
    "trial_file",
]


def build_table(
    table: str, rows: Iterable[Mapping[str, Any]], context: Mapping[str, Any] | None = None
) -> pa.Table:
    """Turn row dicts into an Arrow table with the table's fixed schema.

    Args:
        table: one of ``TABLES``.
        rows: row dicts (e.g. the trial's epoch records).
        context: values for columns a row does not carry (sweep, trial_id, the trial's config);
            a row's own value always wins. Keys of ``context`` outside the schema are ignored.

    Returns:
        A ``pyarrow.Table`` with exactly ``SCHEMAS[table]``.

    Raises:
        ValueError: a row holds a key outside the schema, or lacks a required column.
    """
    check_table(table)
    schema, required = SCHEMAS[table], REQUIRED[table]
    names = set(schema.names)
    base = {k: v for k, v in (context or {}).items() if k in names}
    merged = []
    for i, row in enumerate(rows):
        unknown = sorted(set(row) - names)
        if unknown:
            raise ValueError(
                f"{table} row {i} has columns outside the {table} schema: {unknown}; "
                f"add them to ibnn.results.schema or drop them"
            )
        full = {**base, **row}
        missing = sorted(required - set(full))
        if missing:
            raise ValueError(f"{table} row {i} lacks required columns {missing}")
        merged.append(full)
    return pa.Table.from_pylist(merged, schema=schema)


def parquet_from_bytes(data: bytes) -> pa.Table:
    """A whole Parquet file held in memory, as a table (``pa.ArrowInvalid`` if it is not one).

    ``ParquetFile.read``, single-threaded (callers read many small files in parallel), costs
    about a third of ``pq.read_table``, which sets up a dataset for every file.
    """
    return pq.ParquetFile(pa.BufferReader(data)).read(use_threads=False)


def trial_file(table: str, trial_id: str) -> str:
    """Relative path of one trial's file of a table: ``<table>/<trial_id>.parquet``."""
    check_table(table)
    if not trial_id or "/" in trial_id or trial_id.startswith("."):
        raise ValueError(f"trial_id must be a plain non-hidden name, got {trial_id!r}")
    return f"{table}/{trial_id}.parquet"


class Storage:
    """A results root (local folder or URI) with atomic file writes.

    Args:
        uri: a local path (``~`` expanded, made absolute) or any URI pyarrow understands
            (``s3://bucket/prefix``, ``gs://...``, ``file:///abs/path``), with its options in
            the query string (``s3://bucket/prefix?endpoint_override=host:port&scheme=http``
            for MinIO, Ceph or another S3-compatible server).
    """

    def __init__(self, uri: str) -> None:
        if not uri:
            raise ValueError("storage must be a non-empty path or URI")
        self.query = ""  # a URI's options (``endpoint_override=host:port&scheme=http``)
        if "://" in uri:
            self.fs, root = pafs.FileSystem.from_uri(uri)
            base, _, self.query = uri.partition("?")
            self.uri = base.rstrip("/")
        else:
            self.fs = pafs.LocalFileSystem()
            root = os.path.abspath(os.path.expanduser(uri))
            self.uri = root
        self.root = root.rstrip("/") or "/"
        self.is_local = self.fs.type_name == "local"

    def __repr__(self) -> str:
        return f"Storage({self.join_uri()!r})"

    def path(self, *parts: str) -> str:
        """Filesystem path (for ``self.fs``) of a location under the root."""
        return "/".join([self.root, *parts])

    def join_uri(self, *parts: str) -> str:
        """URI (or absolute local path) of a location under the root, its options kept at the
        end (``s3://b/root/sweep?endpoint_override=...``): what another process can open."""
        joined = "/".join([self.uri, *parts])
        return f"{joined}?{self.query}" if self.query else joined

    def exists(self, *parts: str) -> bool:
        """Whether a file or folder exists under the root."""
        return self.fs.get_file_info(self.path(*parts)).type != pafs.FileType.NotFound

    def write_bytes(self, rel: str, data: bytes) -> None:
        """Write a file atomically (hidden temp file + rename on local disks)."""
        target = self.path(rel)
        folder = target.rsplit("/", 1)[0]
        self.fs.create_dir(folder, recursive=True)
        if not self.is_local:
            with self.fs.open_output_stream(target) as out:
                out.write(data)
            return
        tmp = f"{folder}/.{target.rsplit('/', 1)[1]}.{uuid.uuid4().hex}.tmp"
        try:
            with open(tmp, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def read_bytes(self, rel: str) -> bytes:
        """Read a whole file under the root."""
        with self.fs.open_input_stream(self.path(rel)) as src:
            return src.read()

    def write_json(self, rel: str, obj: Any) -> None:
        """Write JSON atomically (sorted keys, indented)."""
        self.write_bytes(rel, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())

    def read_json(self, rel: str) -> Any:
        """Read a JSON file under the root."""
        return json.loads(self.read_bytes(rel))

    def write_rows(
        self,
        sweep: str,
        table: str,
        trial_id: str,
        rows: Iterable[Mapping[str, Any]],
        context: Mapping[str, Any] | None = None,
    ) -> str:
        """Replace one trial's file of a table with ``rows`` (see ``build_table``).

        Returns:
            The relative path written, ``<sweep>/<table>/<trial_id>.parquet``.
        """
        ctx = {**(context or {}), "sweep": sweep, "trial_id": trial_id}
        arrow = build_table(table, rows, ctx)
        buf = io.BytesIO()
        pq.write_table(arrow, buf)
        rel = f"{sweep}/{trial_file(table, trial_id)}"
        self.write_bytes(rel, buf.getvalue())
        return rel

    def read_trial(self, sweep: str, table: str, trial_id: str) -> pa.Table:
        """One trial's file of a table, read in one go (whole before or after a rewrite).

        On object storage a read is a HEAD (the size) then a GET of that many bytes: an object
        replaced in between (a running trial rewrites its files every epoch) reads as a
        truncated file. Such a read is retried (up to ``_READ_TRIES`` times).
        """
        rel = f"{sweep}/{trial_file(table, trial_id)}"
        for attempt in range(1, 1 if self.is_local else _READ_TRIES):
            try:
                return parquet_from_bytes(self.read_bytes(rel))
            except pa.ArrowInvalid:
                time.sleep(0.05 * attempt)
        return parquet_from_bytes(self.read_bytes(rel))

    def list_trial_ids(self, sweep: str, table: str) -> list[str]:
        """Trial ids that have a file of their own in a table (sorted)."""
        check_table(table)
        if not self.exists(sweep, table):
            return []
        infos = self.fs.get_file_info(pafs.FileSelector(self.path(sweep, table)))
        return sorted(
            i.base_name[: -len(".parquet")]
            for i in infos
            if i.base_name.endswith(".parquet")
            and not i.base_name.startswith(".")
            and i.base_name != COMPACT_FILE
        )

    def read_compacted(self, sweep: str, table: str) -> pa.Table | None:
        """A table's compacted file (``compact_table``), None if it has none."""
        if not self.exists(sweep, table, COMPACT_FILE):
            return None
        return parquet_from_bytes(self.read_bytes(f"{sweep}/{table}/{COMPACT_FILE}"))


def read_table(storage: str | Storage, sweep: str, table: str) -> pa.Table:
    """Read every trial file of one table of a sweep (empty table with the schema if none).

    Each file is read in one go (a single open), so a file being replaced by a running sweep is
    seen either whole before or whole after the replacement. (A dataset scan, as in
    ``pandas.read_parquet(folder)``, opens each file twice and can trip over a replacement made
    in between; read a running sweep's tables with this function.)

    Args:
        storage: the results root (path, URI or ``Storage``).
        sweep: the sweep's folder name.
        table: one of ``TABLES``.

    Returns:
        A ``pyarrow.Table`` with ``SCHEMAS[table]`` (``.to_pandas()`` for a DataFrame).
    """
    check_table(table)
    st = storage if isinstance(storage, Storage) else Storage(storage)
    schema = SCHEMAS[table]
    tids = st.list_trial_ids(sweep, table)
    with ThreadPoolExecutor(READ_THREADS) as pool:  # object stores answer in parallel
        parts = list(pool.map(lambda tid: st.read_trial(sweep, table, tid), tids))
    compacted = st.read_compacted(sweep, table)
    if compacted is not None:  # a trial's own file (rewritten whole) replaces its old rows
        mine = pc.is_in(compacted.column("trial_id"), value_set=pa.array(tids, pa.string()))
        parts.insert(0, compacted.filter(pc.invert(mine)))
    if not parts:
        return schema.empty_table()
    return pa.concat_tables([conform(t, schema) for t in parts])


def compact_table(storage: Storage, sweep: str, table: str) -> int:
    """Replaces a finished sweep's per-trial files of one table by one file, ``COMPACT_FILE``.

    The compacted file is written (atomically) before the trial files are deleted; a reader
    that meets both keeps a trial's own file (see ``read_table``), so an interruption anywhere
    loses nothing. Run it only on a sweep that no driver is writing.

    Returns:
        The number of rows in the compacted file.
    """
    tids = storage.list_trial_ids(sweep, table)
    if not tids:  # nothing to do (no files, or compacted already)
        done = storage.read_compacted(sweep, table)
        return 0 if done is None else done.num_rows
    merged = read_table(storage, sweep, table)
    buf = io.BytesIO()
    pq.write_table(merged, buf)
    storage.write_bytes(f"{sweep}/{table}/{COMPACT_FILE}", buf.getvalue())
    paths = [storage.path(sweep, trial_file(table, tid)) for tid in tids]
    with ThreadPoolExecutor(READ_THREADS) as pool:  # object stores delete in parallel
        list(pool.map(storage.fs.delete_file, paths))
    return merged.num_rows


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """A table read from a file, with exactly ``schema``: columns the file predates (optional
    ones added to the contract later, e.g. ``node``) become nulls, extra columns are dropped."""
    columns = [
        table.column(f.name) if f.name in table.column_names else pa.nulls(len(table), f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(columns, names=schema.names).cast(schema)
