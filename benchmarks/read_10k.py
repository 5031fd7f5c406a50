"""How long ``analysis`` takes to read a sweep of 10,000 trials, in both layouts.

    python benchmarks/read_10k.py /tmp/big            # writes the sweep there once, then reads
    python benchmarks/read_10k.py URI --trials 2000   # e.g. an S3 prefix (credentials in env)
    python benchmarks/read_10k.py --s3                # on a moto S3 server started on loopback

The sweep is written by the real writer (``ibnn.results.Storage.write_rows``, several trials at
once): per trial, 10 epoch rows, 6 eval rows and its trials row (three files). It is then read
by ``analysis.load.load_sweep`` (files read in parallel threads), compacted
(``ibnn.results.compact_table``, as ``python -m ibnn.sweep compact``) and read again. A
folder that already holds the sweep is read, not written again (compacted, it is only read).
``--s3`` needs moto[server] (a dev dependency) and runs from the repository root.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

from analysis.load import load_sweep
from ibnn.results import TABLES, Storage
from ibnn.results.storage import READ_THREADS, compact_table

SWEEP = "synthetic_10k"


def write_trial(st: Storage, t: int) -> None:
    """One trial's three files, as the sweep runner writes them at its last epoch."""
    ctx = {"experiment": "expressivity", "dataset": "fmnist", "lam": -1.0, "p": 10.0}
    tid = f"{t:012x}"
    model = {"family": "ibnn" if t % 3 else "sm", "seed": t % 20, "C": 1 + t % 8}
    epochs = [
        model | {"epoch": e, "lr": 0.01, "train_loss": 1 / (e + 1), "train_acc": 0.8,
                 "val_loss": 0.5, "val_acc": 0.7 + e / 100, "test_loss": 0.5, "test_acc": 0.7,
                 "solver_iters": 3.0, "solver_residual": 1e-6, "nonconverged_frac": 0.0,
                 "wall_s": 1.0, "status": "ok", "selected": e == 9}
        for e in range(10)
    ]  # fmt: skip
    evals = [model | {"attack": "pgd_surrogate", "strength": s / 10, "acc": 0.7 - s / 20}
             for s in range(6)]  # fmt: skip
    st.write_rows(SWEEP, "epochs", tid, epochs, ctx)
    st.write_rows(SWEEP, "evals", tid, evals, ctx)
    row = {"family": model["family"], "seed": model["seed"], "status": "ok",
           "epochs_done": 10, "objective": 0.79, "config_json": "{}",
           "updated": "now"}  # fmt: skip
    st.write_rows(SWEEP, "trials", tid, [row], ctx)


def write(st: Storage, trials: int) -> None:
    with ThreadPoolExecutor(READ_THREADS) as pool:  # trials of a sweep write at the same time
        list(pool.map(lambda t: write_trial(st, t), range(trials)))
    st.write_json(f"{SWEEP}/sweep.json", {"sweep": SWEEP, "experiment": "expressivity"})


def timed_read(st: Storage, storage: str) -> float:
    start = time.perf_counter()
    data = load_sweep(f"{st.root}/{SWEEP}", storage)
    took = time.perf_counter() - start
    print(f"  {len(data.epochs)} epoch rows, {len(data.evals)} eval rows in {took:.1f} s")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("storage", nargs="?", help="a folder or URI for the synthetic sweep")
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--s3", action="store_true", help="use a moto S3 server on loopback")
    args = parser.parse_args()
    if (args.storage is None) == (not args.s3):
        parser.error("give either a storage folder or URI, or --s3")
    with ExitStack() as stack:
        storage = args.storage
        if args.s3:
            from tests.sweeps.s3_server import s3_server

            log = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "moto.log"
            storage = stack.enter_context(s3_server(log)).uri("bench")
        run(storage, args.trials)


def run(storage: str, trials: int) -> None:
    st = Storage(storage)
    if not st.exists(SWEEP, "sweep.json"):
        start = time.perf_counter()
        write(st, trials)
        print(f"wrote {trials} trials to {st.join_uri()} in {time.perf_counter() - start:.0f} s")
    print("per-trial files:")
    per_trial = timed_read(st, storage)
    start = time.perf_counter()
    for table in TABLES:
        compact_table(st, SWEEP, table)
    print(f"compacted in {time.perf_counter() - start:.1f} s; one file per table:")
    compacted = timed_read(st, storage)
    print(f"per-trial / compacted: {per_trial / compacted:.0f}x")


if __name__ == "__main__":
    main()
