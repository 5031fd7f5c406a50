"""Whole epochs of the paper's recipe, IBNN vs SM side by side: training, validation and test.

    python benchmarks/trial.py                     # the issue's sizes, one thread, then two at once
    python benchmarks/trial.py --quick             # 2,000 / 1,200 / 1,000 images, one thread
    python benchmarks/trial.py --settings global-1 w5 --modes single
    python benchmarks/trial.py --device cuda --modes single

Each setting builds an IBNN trial and an SM trial of the same seed (``ibnn.trial.Trial``: the
paper's recipe, UCN(1,3) on real Fashion-MNIST), runs the SM warm-up epochs untimed, then times
the first ``--epochs`` main epochs through ``Trial.run_epoch()``: training, validation and test
passes (the SM side ``--sm-repeats`` times, the fastest run counted: its epochs last about a
second, so load from other processes moves them most). Per setting it prints the IBNN / SM
ratio of the epoch times, each side's split into training and evaluation (validation + test)
seconds, the mean Newton steps per batch of the training, validation and test passes, and the
IBNN's cost per image of training and of evaluation. ``--modes pair`` runs two copies of
each trial at once (two processes, one thread each), as the sweep runner does on 2 cores.
``--override KEY=VALUE`` changes a TrialConfig field for both sides (JSON values), e.g.
``--override warm_start=false`` to measure a lever. The last line reads
``trial epoch ratio: global <X>x w5 <Y>x worst <Z>x`` (global: global w at lam = -1; one
thread).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import time
import warnings

import torch

warnings.filterwarnings("ignore", "Using padding='same' with even kernel", UserWarning)

# name -> the IBNN trial's settings (p = 10)
SETTINGS: dict[str, dict] = {
    "global-0.3": dict(lam=-0.3),
    "global-1": dict(lam=-1.0),
    "global-3": dict(lam=-3.0),
    "w3": dict(lam=-1.0, w_extent=3),
    "w5": dict(lam=-1.0, w_extent=5),
    "w7": dict(lam=-1.0, w_extent=7),
    "trainable": dict(lam=-1.0, lam_trainable=True),
}


def measure(cfg_dict: dict, epochs: int, threads: int) -> list[dict]:
    """Times the first ``epochs`` main epochs of one trial; per epoch its passes' seconds and
    mean solver iterations (NaN for SM)."""
    from ibnn.nn import compiled
    from ibnn.trial import Trial, TrialConfig

    torch.set_num_threads(threads)
    warnings.filterwarnings("ignore", "Using padding='same' with even kernel", UserWarning)
    compiled.warm_up()  # the compiled loops load (or compile) before the clock starts
    trial = Trial(TrialConfig.from_dict(cfg_dict))
    for _ in range(trial.cfg.warmup_epochs):
        trial.run_epoch()
    out = []
    for _ in range(epochs):
        sync(trial.device)
        start = time.perf_counter()
        rec = trial.run_epoch()
        sync(trial.device)
        wall = time.perf_counter() - start
        tr, va, te = trial.passes
        out.append(
            {
                "wall": wall,
                "train": tr.seconds,
                "eval": va.seconds + te.seconds,
                "iters": [p.solver["solver_iters"] for p in (tr, va, te)],
                "n": (tr.n, va.n + te.n),
                "status": rec["status"],
            }
        )
    return out


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_side(cfg_dict: dict, epochs: int, threads: int, pair: bool) -> list[dict]:
    """One trial's epochs, or (``pair``) two copies at once in two processes; the pair's
    epochs are averaged."""
    if not pair:
        return measure(cfg_dict, epochs, threads)
    with mp.get_context("spawn").Pool(2) as pool:
        both = pool.starmap(measure, [(cfg_dict, epochs, threads)] * 2)
    return [
        {
            "wall": (a["wall"] + b["wall"]) / 2,
            "train": (a["train"] + b["train"]) / 2,
            "eval": (a["eval"] + b["eval"]) / 2,
            "iters": a["iters"],
            "n": a["n"],
            "status": a["status"],
        }
        for a, b in zip(*both, strict=True)
    ]


def total(epochs: list[dict], key: str) -> float:
    return sum(e[key] for e in epochs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", default="~/.cache/ibnn/data", help="datasets folder")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--max-train", type=int, default=10_000, help="training images")
    parser.add_argument(
        "--max-val", type=int, default=None,
        help="validation images (default: the trial's split, 6,000 of Fashion-MNIST)",
    )  # fmt: skip
    parser.add_argument("--max-test", type=int, default=5_000, help="test images")
    parser.add_argument("--L", type=int, default=1, help="UCN blocks")
    parser.add_argument("--C", type=int, default=3, help="UCN channels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=2, help="main epochs timed (after warm-up)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per trial")
    parser.add_argument(
        "--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS),
        help="which IBNN settings (default: all)",
    )  # fmt: skip
    parser.add_argument(
        "--modes", nargs="+", default=["single", "pair"], choices=["single", "pair"],
        help="one trial at a time, and/or two at once in two processes",
    )  # fmt: skip
    parser.add_argument(
        "--override", nargs="*", default=[], metavar="KEY=VALUE",
        help="TrialConfig fields for both sides (JSON values), e.g. warm_start=false",
    )  # fmt: skip
    parser.add_argument(
        "--sm-repeats", type=int, default=3,
        help="SM runs per setting, the fastest counted (default 3)",
    )  # fmt: skip
    parser.add_argument(
        "--quick", action="store_true",
        help="2,000 training, 1,200 validation, 1,000 test images; one thread only",
    )  # fmt: skip
    args = parser.parse_args()
    if args.quick:
        args.max_train, args.max_val, args.max_test, args.modes = 2000, 1200, 1000, ["single"]
    base = dict(dataset="fmnist", data_root=args.data_root, device=args.device, seed=args.seed,
                L=args.L, C=args.C, max_train=args.max_train, max_test=args.max_test,
                )  # fmt: skip
    if args.max_val is not None:
        base["max_val"] = args.max_val
    for item in args.override:
        key, _, value = item.partition("=")
        base[key] = json.loads(value)
    cpu = platform.processor() or platform.machine()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, {cpu}, device {args.device}, {args.threads} thread(s) "
          f"per trial, load {load:.2f}; UCN({args.L},{args.C}), seed {args.seed}, "
          f"{args.max_train} train / {args.max_val or 'split'} val / {args.max_test} test "
          f"images, first {args.epochs} main epochs; overrides {args.override or 'none'}",
          flush=True)  # fmt: skip
    ratios: dict[str, dict[str, float]] = {}
    for mode in args.modes:
        pair = mode == "pair"
        print(f"-- {mode}: {'two trials at once' if pair else 'one trial at a time'}")
        print(f"{'setting':<11} {'ratio':>6} {'ibnn s':>7} {'train':>6} {'eval':>6} "
              f"{'sm s':>6} {'train':>5} {'eval':>5}  Newton steps per batch train/val/test "
              "by epoch")  # fmt: skip
        for name in args.settings:
            ibnn = run_side(base | dict(family="ibnn") | SETTINGS[name], args.epochs,
                            args.threads, pair)  # fmt: skip
            # SM epochs last about a second, so a burst of load from other processes can
            # double one: the fastest of a few runs (which only raises the ratio)
            sm = min(
                (run_side(base | dict(family="sm"), args.epochs, args.threads, pair)
                 for _ in range(args.sm_repeats)),
                key=lambda epochs: total(epochs, "wall"),
            )  # fmt: skip
            ratio = total(ibnn, "wall") / total(sm, "wall")
            ratios.setdefault(mode, {})[name] = ratio
            steps = "  ".join("/".join(f"{i:.2f}" for i in e["iters"]) for e in ibnn)
            bad = [e["status"] for e in ibnn if e["status"] not in ("running", "ok")]
            print(f"{name:<11} {ratio:>5.1f}x {total(ibnn, 'wall'):>7.2f} "
                  f"{total(ibnn, 'train'):>6.2f} {total(ibnn, 'eval'):>6.2f} "
                  f"{total(sm, 'wall'):>6.2f} {total(sm, 'train'):>5.2f} "
                  f"{total(sm, 'eval'):>5.2f}  {steps}{'  ' + bad[0] if bad else ''}",
                  flush=True)  # fmt: skip
            n_train, n_eval = ibnn[0]["n"]
            per_train = total(ibnn, "train") / n_train
            per_eval = total(ibnn, "eval") / n_eval
            print(f"{'':<11} ibnn per image: training {1e3 * per_train / args.epochs:.3f} ms, "
                  f"evaluation {1e3 * per_eval / args.epochs:.3f} ms "
                  f"({per_eval / per_train:.2f} of training)")  # fmt: skip
    if "pair" in ratios:
        print(f"two at once: {summary(ratios['pair'])}")
    if "single" in ratios:
        print(f"trial epoch ratio: {summary(ratios['single'])}")


def summary(by: dict[str, float]) -> str:
    """``global <X>x w5 <Y>x worst <Z>x`` of one mode's ratios (n/a where not run)."""

    def fmt(name: str) -> str:
        return f"{by[name]:.1f}x" if name in by else "n/a"

    return f"global {fmt('global-1')} w5 {fmt('w5')} worst {max(by.values()):.1f}x"


if __name__ == "__main__":
    main()
