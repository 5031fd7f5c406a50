"""Sweep results: the contract (``schema``: tables, columns, status values) and the writer
(``storage``: one Parquet file per trial per table, atomic writes, local or object storage).

Imports neither torch nor ray: ``analysis`` reads results through this contract.
"""

from __future__ import annotations

from ibnn.results.schema import (
    FAILED_STATUSES,
    REQUIRED,
    ROW_KEYS,
    SCHEMAS,
    STATUSES,
    TABLES,
    TERMINAL_STATUSES,
)
from ibnn.results.storage import Storage, build_table, read_table, trial_file

__all__ = [
    "FAILED_STATUSES",
    "REQUIRED",
    "ROW_KEYS",
    "SCHEMAS",
    "STATUSES",
    "TABLES",
    "TERMINAL_STATUSES",
    "Storage",
    "build_table",
    "read_table",
    "trial_file",
]
