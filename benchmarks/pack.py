"""Trials per hour: K trials packed into one model against the same K trials one at a time.

    python benchmarks/pack.py                 # K = 8 on real Fashion-MNIST, CPU, one thread
    python benchmarks/pack.py --k 32 --device cuda --max-train 60000

Both sides run the trial's own epoch loop (``ibnn.trial.run_trial`` vs
``ibnn.trial.pack.run_pack``), side by side in one process, on the same K configs (seeds
0..K-1): data loading, warm-up, training, validation, test and the clean evaluation. The solo
side runs its trials one after another in this process, so it pays no process start-up or
Ray overhead: the speedup over one trial per Ray process is at least the one printed.
IBNN is global w at lam = -1, p = 10. The last line reads
``pack speedup K=<K>: sm <X>x ibnn <Y>x``.
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch

from ibnn.trial import TrialConfig, run_trial
from ibnn.trial.pack import run_pack

warnings.filterwarnings("ignore", "Using padding='same' with even kernel", UserWarning)


def measure(cfgs: list[TrialConfig]) -> tuple[float, float, float]:
    """Seconds for the configs one at a time and packed, and the largest test-acc gap."""
    start = time.perf_counter()
    solo = [run_trial(cfg, progress=False) for cfg in cfgs]
    t_solo = time.perf_counter() - start
    start = time.perf_counter()
    packed = run_pack(cfgs, progress=False)
    t_pack = time.perf_counter() - start
    gap = max(
        abs(a.epochs[-1]["test_acc"] - b.epochs[-1]["test_acc"])
        for a, b in zip(solo, packed, strict=True)
    )
    return t_solo, t_pack, gap


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--k", type=int, default=8, help="trials per pack (default 8)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--max-train", type=int, default=2000, help="training images per trial")
    parser.add_argument("--max-test", type=int, default=1000, help="test images per trial")
    parser.add_argument("--epochs", type=int, default=2, help="main epochs (plus 1 warm-up)")
    parser.add_argument(
        "--val-fraction", type=float, default=0.02,
        help="validation share of the training set (default 0.02: 1,200 images, evaluated "
        "every epoch; the trial's default 0.1 is 6,000)",
    )  # fmt: skip
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--data-root", default="~/.cache/ibnn/data", help="datasets folder")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    base = dict(dataset="fmnist", data_root=args.data_root, max_train=args.max_train,
                max_test=args.max_test, epochs=args.epochs, warmup_epochs=1, device=args.device,
                n_eval=200, val_fraction=args.val_fraction)  # fmt: skip
    arms = {"sm": dict(family="sm"), "ibnn": dict(family="ibnn", lam=-1.0, p=10.0)}
    print(f"K={args.k} trials, UCN(1,3) on {args.max_train} Fashion-MNIST images "
          f"(validation share {args.val_fraction}, {args.max_test} test images), 1 + "
          f"{args.epochs} epochs, device {args.device}, {args.threads} thread(s)",
          flush=True)  # fmt: skip
    print(f"{'arm':<6} {'one at a time':>14} {'packed':>10} {'trials/h solo':>14} "
          f"{'trials/h packed':>16} {'speedup':>8} {'max test-acc gap':>17}")  # fmt: skip
    speedup = {}
    for arm, kw in arms.items():
        cfgs = [TrialConfig(seed=s, **base, **kw) for s in range(args.k)]
        t_solo, t_pack, gap = measure(cfgs)
        speedup[arm] = t_solo / t_pack
        print(f"{arm:<6} {t_solo:>13.1f}s {t_pack:>9.1f}s {3600 * args.k / t_solo:>14.0f} "
              f"{3600 * args.k / t_pack:>16.0f} {speedup[arm]:>7.2f}x {gap:>17.4f}",
              flush=True)  # fmt: skip
    print(f"pack speedup K={args.k}: sm {speedup['sm']:.2f}x ibnn {speedup['ibnn']:.2f}x")


if __name__ == "__main__":
    main()
