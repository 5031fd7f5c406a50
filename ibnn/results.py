"""Sweep results on disk: fixed Parquet schemas, one file per trial per table, atomic writes.

Layout under a storage root (a local folder or a URI such as ``s3://bucket/prefix``)::

    <storage>/<sweep>/epochs/<trial_id>.parquet       one row per trial and epoch
    <storage>/<sweep>/evals/<trial_id>.parquet        one row per trial, attack and strength
    <storage>/<sweep>/boundaries/<trial_id>.parquet   toy2d decision-boundary grids
    <storage>/<sweep>/trials/<trial_id>.parquet       one row per trial: config, status, objective
    <storage>/<sweep>/sweep.json                      sweep metadata (see ``ibnn.sweep.meta``)

A trial's file is rewritten after every epoch with *all* of that trial's rows so far, so a retried
or resumed trial replaces its file instead of appending to it: each ``(trial_id, epoch)`` exists
exactly once. Local files are written to a hidden temporary file in the same folder and then
renamed over the target (readers never see half a file; ``pandas.read_parquet`` skips names that
start with "."). Object stores (S3, GCS) make a single PUT visible atomically, so there the file is
written in place.

Every table has a fixed pyarrow schema, so ``pandas.read_parquet("<storage>/<sweep>/epochs")``
reads all files of a table at once with consistent dtypes.
"""

from __future__ import annotations

import io
import json
import os
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

__all__ = [
    "SCHEMAS",
    "TABLES",
    "Storage",
    "build_table",
    "read_table",
    "trial_file",
]


@dataclass(frozen=True)
class _Column:
    name: str  # column name
    type: pa.DataType  # fixed Arrow type
    required: bool  # the row (after context filling) must hold this key


def _schema(columns: Iterable[_Column]) -> tuple[pa.Schema, frozenset[str]]:
    cols = list(columns)
    return pa.schema([pa.field(c.name, c.type) for c in cols]), frozenset(
        c.name for c in cols if c.required
    )


_S, _I, _F, _B = pa.string(), pa.int64(), pa.float64(), pa.bool_()

# Columns every table starts with; filled by the writer, never by the trial.
_IDENTITY = [
    _Column("sweep", _S, True),
    _Column("experiment", _S, True),
    _Column("trial_id", _S, True),
]
# Trial-level context; missing keys are filled from the trial's config.
_MODEL = [
    _Column("family", _S, True),
    _Column("dataset", _S, True),
    _Column("seed", _I, True),
    _Column("L", _I, False),
    _Column("C", _I, False),
    _Column("n_params", _I, False),
    _Column("lam", _F, True),
    _Column("p", _F, True),
    _Column("w_extent", _I, False),  # null = global w (every position of the channel)
    _Column("lam_trainable", _B, False),
]
_DATA = [
    _Column("train_fraction", _F, False),
    _Column("label_noise", _F, False),
    _Column("selection", _S, False),  # model selection: "val" or "paper" (best test loss)
    _Column("n_train", _I, False),  # training samples actually used
]

_EPOCHS = [
    *_IDENTITY,
    *_MODEL,
    *_DATA,
    _Column("epoch", _I, True),
    _Column("phase", _S, False),
    _Column("lr", _F, True),
    _Column("train_loss", _F, True),
    _Column("train_acc", _F, True),
    _Column("val_loss", _F, True),
    _Column("val_acc", _F, True),
    _Column("test_loss", _F, True),
    _Column("test_acc", _F, True),
    _Column("solver_iters", _F, True),
    _Column("solver_residual", _F, True),
    _Column("nonconverged_frac", _F, True),
    _Column("wall_s", _F, True),
    _Column("status", _S, False),  # running | ok | solver_failed | diverged
    _Column("error", _S, False),  # message of what ended a failed trial
    _Column("selected", _B, False),  # this epoch is the model-selection epoch so far
    _Column("selected_epoch", _I, False),
    _Column("lam_learned", _F, False),  # current lam (mean over IBNN layers), NaN for SM
    _Column("solver_iters_max", _F, False),
    _Column("solver_backward_iters", _F, False),
    _Column("eval_nonconverged_frac", _F, False),  # non-converged fraction on the test split
]
_EVALS = [
    *_IDENTITY,
    *_MODEL,
    *_DATA,
    _Column("epoch", _I, False),  # the selected epoch that was evaluated
    _Column("attack", _S, True),
    _Column("strength", _F, True),
    _Column("acc", _F, True),  # NaN for jacobian_norm and curvature
    _Column("value", _F, False),  # loss, or the norm / curvature
    _Column("n", _I, False),  # test samples evaluated
    _Column("nonconverged_frac", _F, False),
]
_BOUNDARIES = [
    *_IDENTITY,
    _Column("family", _S, True),
    _Column("seed", _I, True),
    _Column("lam", _F, True),
    _Column("p", _F, True),
    _Column("x0", _F, True),
    _Column("x1", _F, True),
    _Column("prob", _F, True),
]
_TRIALS = [
    *_IDENTITY,
    _Column("family", _S, True),
    _Column("dataset", _S, True),
    _Column("seed", _I, True),
    _Column("status", _S, True),  # running | ok | solver_failed | diverged
    _Column("epochs_done", _I, True),  # records written so far (warm-up epochs included)
    _Column("objective", _F, True),  # val_acc at the selected epoch so far
    _Column("config_json", _S, True),  # the full trial config, JSON
    _Column("updated", _S, True),  # ISO timestamp of the last write
    _Column("error", _S, False),  # what ended a failed trial
]

_BUILT = {
    "epochs": _schema(_EPOCHS),
    "evals": _schema(_EVALS),
    "boundaries": _schema(_BOUNDARIES),
    "trials": _schema(_TRIALS),
}
TABLES: tuple[str, ...] = tuple(_BUILT)
SCHEMAS: dict[str, pa.Schema] = {name: built[0] for name, built in _BUILT.items()}


def _check_table_name(table: str) -> None:
    if table not in _BUILT:
        raise ValueError(f"unknown results table {table!r}; valid tables: {', '.join(TABLES)}")


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
    _check_table_name(table)
    schema, required = _BUILT[table]
    names = set(schema.names)
    base = {k: v for k, v in (context or {}).items() if k in names}
    merged = []
    for i, row in enumerate(rows):
        unknown = sorted(set(row) - names)
        if unknown:
            raise ValueError(
                f"{table} row {i} has columns outside the {table} schema: {unknown}; "
                f"add them to ibnn.results or drop them"
            )
        full = {**base, **row}
        missing = sorted(required - set(full))
        if missing:
            raise ValueError(f"{table} row {i} lacks required columns {missing}")
        merged.append(full)
    return pa.Table.from_pylist(merged, schema=schema)


def trial_file(table: str, trial_id: str) -> str:
    """Relative path of one trial's file of a table: ``<table>/<trial_id>.parquet``."""
    _check_table_name(table)
    if not trial_id or "/" in trial_id or trial_id.startswith("."):
        raise ValueError(f"trial_id must be a plain non-hidden name, got {trial_id!r}")
    return f"{table}/{trial_id}.parquet"


class Storage:
    """A results root (local folder or URI) with atomic file writes.

    Args:
        uri: a local path (``~`` expanded, made absolute) or any URI pyarrow understands
            (``s3://bucket/prefix``, ``gs://...``, ``file:///abs/path``).
    """

    def __init__(self, uri: str) -> None:
        if not uri:
            raise ValueError("storage must be a non-empty path or URI")
        if "://" in uri:
            self.fs, root = pafs.FileSystem.from_uri(uri)
            self.uri = uri.rstrip("/")
        else:
            self.fs = pafs.LocalFileSystem()
            root = os.path.abspath(os.path.expanduser(uri))
            self.uri = root
        self.root = root.rstrip("/") or "/"
        self.is_local = self.fs.type_name == "local"

    def __repr__(self) -> str:
        return f"Storage({self.uri!r})"

    def path(self, *parts: str) -> str:
        """Filesystem path (for ``self.fs``) of a location under the root."""
        return "/".join([self.root, *parts])

    def join_uri(self, *parts: str) -> str:
        """URI (or absolute local path) of a location under the root, e.g. for Ray's storage."""
        return "/".join([self.uri, *parts])

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
        """One trial's file of a table, read in one go (whole before or after a rewrite)."""
        data = self.read_bytes(f"{sweep}/{trial_file(table, trial_id)}")
        return pq.read_table(pa.BufferReader(data))

    def list_trial_ids(self, sweep: str, table: str) -> list[str]:
        """Trial ids that have a file in a table (sorted)."""
        _check_table_name(table)
        if not self.exists(sweep, table):
            return []
        infos = self.fs.get_file_info(pafs.FileSelector(self.path(sweep, table)))
        return sorted(
            i.base_name[: -len(".parquet")]
            for i in infos
            if i.base_name.endswith(".parquet") and not i.base_name.startswith(".")
        )


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
    _check_table_name(table)
    st = storage if isinstance(storage, Storage) else Storage(storage)
    schema = SCHEMAS[table]
    parts = [st.read_trial(sweep, table, tid) for tid in st.list_trial_ids(sweep, table)]
    if not parts:
        return schema.empty_table()
    return pa.concat_tables([t.select(schema.names).cast(schema) for t in parts])
