"""``python -m ibnn.sweep compact DIR``: one file per table for a finished sweep.

A sweep writes one Parquet file per trial and table; with thousands of trials, reading those
many small files dominates the analysis, on object storage above all. Compacting a sweep that
no driver is running replaces each table's files by one (``ibnn.results.compact_table``);
``analysis`` and ``ibnn.results.read_table`` read both layouts.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ibnn.results import TABLES, Storage
from ibnn.results.storage import COMPACT_FILE, compact_table
from ibnn.results.sweep_record import SWEEP_JSON, read_record
from ibnn.sweep.cluster.lease import Lease, LeaseError
from ibnn.sweep.folder import FolderError, split_sweep_path

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit status (2 for a refused folder)."""
    parser = argparse.ArgumentParser(
        prog="python -m ibnn.sweep", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    cmd = sub.add_parser("compact", help="replace a finished sweep's per-trial files per table")
    cmd.add_argument("dir", help="the sweep folder, <storage>/<sweep> (a path or URI)")
    args = parser.parse_args(argv)
    try:
        root, sweep = split_sweep_path(args.dir)
        st = Storage(root)
        if read_record(st, sweep) is None:
            raise FolderError(f"{args.dir}: no {SWEEP_JSON} there (not a sweep folder)")
        Lease(st, sweep).check()  # a driver still writing the sweep: refused, named
    except (FolderError, LeaseError) as err:
        print(f"python -m ibnn.sweep compact: error: {err}", file=sys.stderr)
        return 2
    for table in TABLES:
        rows = compact_table(st, sweep, table)
        if rows:
            print(f"{table}: {rows} rows in {st.join_uri(sweep, table, COMPACT_FILE)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
