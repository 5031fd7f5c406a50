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
from ibnn.results.errors import STORAGE_ERRORS, report
from ibnn.results.storage import COMPACT_FILE, compact_table
from ibnn.results.sweep_record import SWEEP_JSON, SweepRecord, read_record
from ibnn.sweep.cluster.lease import Lease, LeaseError
from ibnn.sweep.folder import FolderError, split_sweep_path

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit status (2 for a refused folder or a storage
    problem, in one line: an unfinished sweep, a truncated file, an unreachable store)."""
    parser = argparse.ArgumentParser(
        prog="python -m ibnn.sweep", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    cmd = sub.add_parser("compact", help="replace a finished sweep's per-trial files per table")
    cmd.add_argument("dir", help="the sweep folder, <storage>/<sweep> (a path or URI)")
    cmd.add_argument("--verbose", action="store_true", help="a storage error's traceback too")
    args = parser.parse_args(argv)
    prog = "python -m ibnn.sweep compact"
    try:
        root, sweep = split_sweep_path(args.dir)
        st = Storage(root)
        record = read_record(st, sweep)
        if record is None:
            raise FolderError(f"{args.dir}: no {SWEEP_JSON} there (not a sweep folder)")
        Lease(st, sweep).check()  # a driver still writing the sweep: refused, named
        _check_finished(args.dir, record)
    except (FolderError, LeaseError) as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    except STORAGE_ERRORS as err:
        return report(prog, args.dir, err, args.verbose)
    for table in TABLES:
        try:
            rows = compact_table(st, sweep, table)
        except STORAGE_ERRORS as err:  # e.g. a truncated file: this table is left as it was
            return report(prog, st.join_uri(sweep, table), err, args.verbose)
        if rows:
            print(f"{table}: {rows} rows in {st.join_uri(sweep, table, COMPACT_FILE)}")
    return 0


def _check_finished(where: str, record: SweepRecord) -> None:
    """Refuses a sweep that has not finished: a resumed trial rewrites its own file beside the
    compacted one, and ``pandas.read_parquet(<sweep>/epochs)`` would read its rows twice."""
    if not record.finished:
        raise FolderError(
            f"{where}: the sweep has not finished (status {record.status or 'running'!r}); "
            "compacting it now would leave a resumed trial's rows twice in the table files. "
            "Finish it with --resume first; nothing was changed"
        )


if __name__ == "__main__":
    raise SystemExit(main())
