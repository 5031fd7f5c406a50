"""`python -m analysis <storage> --out dashboard.html`: read every sweep, write the dashboard.

Warnings (corrupt files, unreadable sweep.json, ...) go to stderr; the path of the written
dashboard is printed on stdout (on stderr when `--markdown -` puts the Markdown there).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from analysis.dashboard import write_dashboard
from analysis.load import find_sweeps, load_sweep
from analysis.markdown import write_markdown
from analysis.report import compute_report
from analysis.stats import BootstrapSpec
from ibnn.results.errors import STORAGE_ERRORS, check_can_write_file
from ibnn.results.errors import report as storage_error

__all__ = ["main", "parse_args"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments of the dashboard builder."""
    defaults = BootstrapSpec()
    ap = argparse.ArgumentParser(
        prog="python -m analysis",
        description="Medians with exact CIs, the paper's figures and a claims table, as one "
        "self-contained HTML dashboard, from the Parquet results of the sweeps.",
    )
    ap.add_argument("storage", help="results root holding <sweep>/epochs, evals, ... (or a URI)")
    ap.add_argument("--out", default="dashboard.html", help="HTML file to write")
    ap.add_argument("--level", type=float, default=defaults.level, help="CI level (0.90)")
    ap.add_argument(
        "--resamples",
        type=int,
        default=defaults.n_resamples,
        help="bootstrap resamples (curve statistics)",
    )
    ap.add_argument("--seed", type=int, default=defaults.seed, help="bootstrap seed")
    ap.add_argument(
        "--markdown",
        metavar="FILE",
        help="also write the claims and each figure's medians as Markdown ('-': stdout)",
    )
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (2 on bad arguments, an unreadable storage or an
    output that cannot be written: one line naming it and the cause)."""
    args = parse_args(argv)
    prog = "python -m analysis"
    outputs = {"--out": args.out}
    if args.markdown not in (None, "-"):
        outputs["--markdown"] = args.markdown
    for flag, target in outputs.items():
        try:
            check_can_write_file(Path(target))  # refused before the reading and the statistics
        except OSError as err:
            return storage_error(prog, f"{flag} {target}", err)
    try:
        spec = BootstrapSpec(level=args.level, n_resamples=args.resamples, seed=args.seed)
        folders = find_sweeps(args.storage)
        sweeps = [load_sweep(f, args.storage) for f in folders]
    except STORAGE_ERRORS as err:  # an unreachable object store, a folder that cannot be read
        return storage_error(prog, args.storage, err)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not folders:
        print(f"error: no sweep folder (epochs/, evals/, trials/ or sweep.json) in {args.storage}",
              file=sys.stderr)  # fmt: skip
        return 2
    for s in sweeps:
        for w in s.warnings:
            print(f"warning: {w}", file=sys.stderr)
    report = compute_report(sweeps, spec)
    try:
        path = write_dashboard(report, args.out, args.storage)
    except OSError as err:
        return storage_error(prog, f"--out {args.out}", err)
    if args.markdown is not None:
        try:
            write_markdown(report, args.markdown)
        except OSError as err:
            return storage_error(prog, f"--markdown {args.markdown}", err)
    print(path, file=sys.stderr if args.markdown == "-" else sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
