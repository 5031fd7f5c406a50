"""One training epoch on the full Fashion-MNIST training set: SM vs IBNN, side by side.

    python benchmarks/epoch.py [--data-root ROOT] [--lam 0.04] [--batch-size 128]
                               [--max-train N] [--device cpu] [--threads T]

Runs the trial's own epoch loop (``ibnn.trial.train.train_epoch``: data held as tensors on the
device, a seeded permutation, SGD with momentum 0.9 and gradient clipping at 1.0) for UCN(1,3)
SM and for the IBNN of the same weights (``to_ibnn``, lam = 0.04, p = 10), both from one short
SM warm-up so the pre-activations have a trained scale. Prints the seconds per epoch, the
IBNN/SM ratio, the training loss and accuracy and the solver statistics. ``--max-train`` times
a partial epoch (the default is all 60,000 images).
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from ibnn import to_ibnn, ucn
from ibnn.nn.memory import reuse_freed_memory
from ibnn.trial.data import load_raw
from ibnn.trial.train import lr_at, train_epoch


def run(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int, seed: int):
    """One epoch at the schedule's peak learning rate; returns (seconds, PassResult)."""
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    gen = torch.Generator().manual_seed(seed)
    if x.is_cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    lr = lr_at(2, 3, 0.001, 0.01)  # the schedule's peak
    res = train_epoch(model, x, y, opt, lr=lr, batch_size=batch, generator=gen, grad_clip=1.0)
    if x.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - t0, res


def solver_text(s: dict[str, float]) -> str:
    """The epoch's solver statistics, or nothing for SM (NaN statistics)."""
    if s["solver_iters"] != s["solver_iters"]:
        return ""
    return (
        f", solver iters {s['solver_iters']:.2f} (max {s['solver_iters_max']:.0f}), backward"
        f" iters {s['solver_backward_iters']:.2f}, max residual {s['solver_residual']:.1e},"
        f" non-converged {s['nonconverged_frac']:.4f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default="~/.cache/ibnn/data")
    parser.add_argument("--lam", type=float, default=0.04)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--max-train", type=int, default=None, help="images (default: all)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    args = parser.parse_args()
    reuse_freed_memory()  # as a trial does: see ibnn.nn.memory
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    raw = load_raw("fmnist", args.data_root)
    n = len(raw.y_train) if args.max_train is None else min(args.max_train, len(raw.y_train))
    x, y = raw.x_train[:n].to(device), raw.y_train[:n].to(device)

    torch.manual_seed(0)
    sm = ucn("sm", 1, 3, 1, 10, 28).to(device)
    warm_x, warm_y = raw.x_train[-5000:].to(device), raw.y_train[-5000:].to(device)
    run(sm, warm_x, warm_y, args.batch_size, seed=1)  # short warm-up: trained scale
    ibnn = to_ibnn(sm, lam=args.lam).to(device)

    cpu = platform.processor() or platform.machine()
    print(f"torch {torch.__version__}, {cpu}, device {device}, threads {torch.get_num_threads()}")
    print(f"one epoch of UCN(1,3) on {n} Fashion-MNIST images, batch {args.batch_size}")
    times = {}
    for name, model in (("sm", sm), (f"ibnn lam={args.lam:g}", ibnn)):
        seconds, res = run(model, x, y, args.batch_size, seed=2)
        times[name] = seconds
        steps = -(-n // args.batch_size)
        print(
            f"{name:>14}: {seconds:8.2f} s per epoch ({1000 * seconds / steps:.1f} ms per step),"
            f" train loss {res.loss:.4f}, acc {res.acc:.4f}{solver_text(res.solver)}"
        )
    sm_s, ibnn_s = times["sm"], times[f"ibnn lam={args.lam:g}"]
    print(f"ratio IBNN / SM: {ibnn_s / sm_s:.1f}x")


if __name__ == "__main__":
    main()
