"""What the sweep runner costs: an empty trial through Ray Tune vs a direct call, per trial and
per epoch, and how many real --smoke trials per hour this machine runs.

    python benchmarks/sweep_overhead.py            # from the repository root
    python benchmarks/sweep_overhead.py --trials 6 --epochs 2 32 --no-real

The empty trial (defined here) does no work; through the runner each of its epochs still costs a
Parquet rewrite of the trial's rows, a checkpoint (save, persist, register) and a Tune report,
and each trial costs an actor task, config validation and its files. Trials run one at a time
(--max-concurrent 1) so the numbers are serial costs; the smoke sweep uses every CPU.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ibnn.trial.config import TrialConfig

__all__ = ["Trial", "TrialConfig", "main"]

REPO = Path(__file__).resolve().parents[1]


class Trial:
    """A trial that does nothing: the runner's interface with constant records."""

    def __init__(self, cfg: TrialConfig) -> None:
        self.cfg = cfg
        self.records: list[dict[str, Any]] = []
        self.status = "running"

    @property
    def done(self) -> bool:
        return self.status != "running"

    def run_epoch(self) -> dict[str, Any]:
        cfg = self.cfg
        k = len(self.records)
        if k + 1 == cfg.warmup_epochs + cfg.epochs:
            self.status = "ok"
        rec = {
            "family": cfg.family,
            "dataset": cfg.dataset,
            "seed": cfg.seed,
            "L": cfg.L,
            "C": cfg.C,
            "lam": cfg.lam,
            "p": cfg.p,
            "epoch": k - cfg.warmup_epochs + 1,
        }
        rec |= {
            k: 0.5
            for k in (
                "lr",
                "train_loss",
                "train_acc",
                "val_loss",
                "val_acc",
                "test_loss",
                "test_acc",
                "solver_iters",
                "solver_residual",
                "nonconverged_frac",
                "wall_s",
            )
        }
        rec |= {"status": self.status, "selected": True}
        self.records.append(rec)
        return rec

    def evaluate(self) -> list[dict[str, Any]]:
        return []

    def boundary(self) -> list[dict[str, Any]]:
        return []

    def save(self, path: str) -> None:
        with open(path, "w") as f:
            f.write(f"{len(self.records)} {self.status}")

    def load(self, path: str) -> None:
        n = int(open(path).read().split()[0])
        self.records = []
        for _ in range(n):
            self.run_epoch()


def _spec(trials: int):
    from ibnn.sweep import SweepSpec

    return SweepSpec(
        name="overhead",
        description="empty trials",
        axes=lambda ctx: {"C": tuple(range(1, trials + 1))},
        families=("sm",),
        seeds=1,
        chosen_neuron=False,
    )


def _direct(trials: int, epochs: int) -> tuple[float, float]:
    """Seconds per trial to build (config + trial) and per epoch to run, called directly."""
    build = run = 0.0
    for c in range(1, trials + 1):
        t0 = time.perf_counter()
        trial = Trial(TrialConfig(epochs=epochs, warmup_epochs=1, C=c))
        t1 = time.perf_counter()
        while not trial.done:
            trial.run_epoch()
        build, run = build + t1 - t0, run + time.perf_counter() - t1
    return build / trials, run / (trials * (epochs + 1))


def _through_ray(trials: int, epochs: int, storage: str) -> float:
    from ibnn.sweep import runner

    argv = [
        "--epochs",
        str(epochs),
        "--storage",
        storage,
        "--name",
        f"e{epochs}",
        "--trial-module",
        "benchmarks.sweep_overhead",
        "--max-concurrent",
        "1",
    ]
    spec = _spec(trials)
    start = time.perf_counter()
    with open(os.devnull, "w") as quiet:
        saved, sys.stdout = sys.stdout, quiet
        try:
            code = runner.main(spec, [*argv, "--smoke"])
        finally:
            sys.stdout = saved
    if code != 0:
        raise SystemExit(f"the empty sweep failed (exit {code})")
    return time.perf_counter() - start


def _smoke(storage: str) -> tuple[int, float]:
    from ibnn.sweep import runner

    path = REPO / "sweeps" / "expressivity.py"
    spec_obj = importlib.util.spec_from_file_location("sweep_expressivity", path)
    module = importlib.util.module_from_spec(spec_obj)
    spec_obj.loader.exec_module(module)
    start = time.perf_counter()
    with open(os.devnull, "w") as quiet:
        saved, sys.stdout = sys.stdout, quiet
        try:
            code = runner.main(module.SPEC, ["--smoke", "--lam", "0.04", "--storage", storage])
        finally:
            sys.stdout = saved
    if code != 0:
        raise SystemExit(f"the smoke sweep failed (exit {code})")
    return 4, time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=6, help="empty trials per sweep")
    parser.add_argument("--epochs", type=int, nargs=2, default=(2, 32), help="two epoch counts")
    parser.add_argument("--no-real", action="store_true", help="skip the real smoke sweep")
    args = parser.parse_args(argv)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    t0 = time.perf_counter()
    ray.init(include_dashboard=False, log_to_driver=False)
    init_s = time.perf_counter() - t0
    n, (e1, e2) = args.trials, args.epochs
    with tempfile.TemporaryDirectory(prefix="ibnn-bench-") as tmp:
        build, epoch = _direct(n, e2)
        tune_s = {e: _through_ray(n, e, tmp) for e in (e1, e2)}
        per_epoch = (tune_s[e2] - tune_s[e1]) / (n * (e2 - e1))
        per_trial = tune_s[e1] / n - (e1 + 1) * per_epoch
        print(
            f"Ray started in {init_s:.1f} s ({ray.cluster_resources().get('CPU', 0):g} CPUs); "
            f"{n} empty trials per sweep, one at a time, {e1} and {e2} epochs (+1 warm-up)"
        )
        print(f"{'':20s}{'direct call':>14s}{'through Ray':>14s}{'ratio':>10s}")
        print(
            f"{'per trial (fixed)':20s}{build * 1e3:11.2f} ms{per_trial * 1e3:11.0f} ms"
            f"{per_trial / build:9.0f}x"
        )
        print(
            f"{'per epoch':20s}{epoch * 1e6:11.1f} us{per_epoch * 1e3:11.1f} ms"
            f"{per_epoch / epoch:9.0f}x"
        )
        if not args.no_real:
            count, wall = _smoke(tmp)
            print(
                f"real --smoke sweep (expressivity, lam 0.04): {count} trials in {wall:.1f} s"
                f" = {3600 * count / wall:.0f} trials per hour on this machine"
            )
    ray.shutdown()


if __name__ == "__main__":
    main()
