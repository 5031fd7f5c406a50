"""IBNN over the search space: training steps of UCN(1,3) against SM, side by side in one run.

    python benchmarks/search_space.py [--quick] [--batch 128] [--repeats 5] [--device cpu]
                                      [--threads 1] [--warm-steps 200] [--data-root ROOT]

For two starting points, an untrained UCN(1,3) and the same model after a short SM warm-up on
real Fashion-MNIST (the paper's surrogate warm-up), times one SGD step (forward, backward,
update, batch 128) of SM and of the IBNN holding the same weights (``to_ibnn``), interleaved
step by step so that both see the same machine load, and prints per setting the median
IBNN/SM ratio, the solver's Newton steps, CG iterations (forward total and backward), the
largest forward residual against the layer's tolerance, whether every row converged (to that
tolerance or to its rounding floor, see ``FixedPointProblem.row_tol``), and ``|fast-exact|``:
the largest difference between the layer's fixed point and one solved in float64 to 1e-10 with the
reference cross term (O(D^2) sums for global w, the window sums for a window), on 16 images.

The settings cover lam in {0.04, -0.3, -1, -3, -10}, p in {5, 10, 20}, w_extent in
{global, 3, 5, 7} and fixed and trainable lam, each value at least once, plus the stiff-and-wide
corners (lam = -10 with every window and p = 20) and lam = -0.3 with the widest window; not
the whole product. ``--quick`` times a
smaller set with fewer repeats.
"""

from __future__ import annotations

import argparse
import copy
import platform
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ibnn import solver_stats, to_ibnn, ucn
from ibnn.nn import compiled
from ibnn.nn.layers import IBNNConv2d
from ibnn.nn.memory import reuse_freed_memory
from ibnn.trial.data import as_float, load_raw


@dataclass(frozen=True)
class Setting:
    """One IBNN configuration of the search space."""

    lam: float
    p: float
    w_extent: int | None
    trainable: bool

    @property
    def label(self) -> str:
        w = "global" if self.w_extent is None else str(self.w_extent)
        return f"{self.lam:g} {self.p:g} {w} {'train' if self.trainable else 'fixed'}"


# (lam, p, w_extent, trainable): every value of each axis at least once, plus the corners
SETTINGS = [
    Setting(0.04, 10.0, None, False),
    Setting(-0.3, 10.0, None, False),
    Setting(-1.0, 10.0, None, True),
    Setting(-3.0, 5.0, None, False),
    Setting(-10.0, 10.0, None, False),
    Setting(-10.0, 20.0, None, True),
    Setting(0.04, 10.0, 3, True),
    Setting(-0.3, 20.0, 3, False),
    Setting(-3.0, 10.0, 3, False),
    Setting(-10.0, 10.0, 3, False),
    Setting(-0.3, 10.0, 5, False),
    Setting(-1.0, 5.0, 5, False),
    Setting(-3.0, 10.0, 5, True),
    Setting(-10.0, 10.0, 5, False),
    Setting(-10.0, 20.0, 5, False),
    Setting(0.04, 10.0, 7, False),
    Setting(-0.3, 10.0, 7, False),  # mild lam at the widest window: Jacobi, 3-4 Newton steps
    Setting(-1.0, 10.0, 7, False),
    Setting(-3.0, 10.0, 7, True),
    Setting(-10.0, 10.0, 7, False),
    Setting(-10.0, 20.0, 7, True),
]
QUICK = [
    Setting(-0.3, 10.0, None, False),
    Setting(-10.0, 20.0, None, True),
    Setting(-3.0, 10.0, 3, False),
    Setting(-1.0, 5.0, 5, False),
    Setting(-10.0, 20.0, 5, False),
    Setting(-10.0, 10.0, 7, True),
]


def sgd_step(model: torch.nn.Module, opt: torch.optim.Optimizer, x, y) -> float:
    """Seconds of one SGD step (forward, backward, update)."""
    if x.is_cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    opt.step()
    if x.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def side_by_side(sm, ibnn, x, y, repeats: int) -> tuple[float, float, dict]:
    """Median step seconds of SM and IBNN, interleaved; the IBNN's statistics of its last step.

    Both models train with their own SGD (lr 1e-3, momentum 0.9) from their given weights; one
    untimed step each first.
    """
    opts = [torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9) for m in (sm, ibnn)]
    times: list[list[float]] = [[], []]
    for _ in range(repeats + 1):
        for i, (model, opt) in enumerate(zip((sm, ibnn), opts, strict=True)):
            times[i].append(sgd_step(model, opt, x, y))
    stats = solver_stats(ibnn)
    return float(np.median(times[0][1:])), float(np.median(times[1][1:])), stats


def exact_gap(ibnn: torch.nn.Module, x: torch.Tensor) -> float:
    """Max |z - z_ref| of the first IBNN layer on x: its own solve against a float64 one at
    tol 1e-10 with the reference cross term (O(D^2) sums for global w, window sums else)."""
    conv = next(m for m in ibnn.modules() if isinstance(m, IBNNConv2d))
    ref = copy.deepcopy(conv).double()
    ref.neuron.tol = 1e-10
    ref.neuron.backend = "dense" if conv.w_extent is None else "window"
    ref.neuron._couplings = {}
    with torch.no_grad():
        z = conv(x)
        z_ref = ref(x.double())
    return float((z.double() - z_ref).abs().max())


def warm_up(sm: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, batch: int):
    """``steps`` SGD steps (lr 0.01, momentum 0.9) on random batches of (x, y), seeded."""
    opt = torch.optim.SGD(sm.parameters(), lr=0.01, momentum=0.9)
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        i = torch.randint(0, len(x), (batch,), generator=gen).to(x.device)
        opt.zero_grad()
        F.cross_entropy(sm(x[i]), y[i]).backward()
        opt.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer settings and repeats")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=None, help="timed steps (5; quick 3)")
    parser.add_argument("--warm-steps", type=int, default=200, help="SM warm-up SGD steps")
    parser.add_argument("--data-root", default="~/.cache/ibnn/data")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: default)")
    args = parser.parse_args()
    reuse_freed_memory()  # as a trial does: see ibnn.nn.memory
    compiled.warm_up()  # the compiled loops load (or compile) before any step is timed
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = QUICK if args.quick else SETTINGS
    repeats = args.repeats or (3 if args.quick else 5)
    dev = torch.device(args.device)
    raw = load_raw("fmnist", args.data_root)
    x_all, y_all = as_float(raw.x_train[:10000]).to(dev), raw.y_train[:10000].to(dev)
    x, y = x_all[: args.batch], y_all[: args.batch]

    torch.manual_seed(0)
    untrained = ucn("sm", 1, 3, 1, 10, 28).to(dev)
    warm = copy.deepcopy(untrained)
    warm_up(warm, x_all[args.batch :], y_all[args.batch :], args.warm_steps, args.batch)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor()
    print(
        f"UCN(1,3), batch {args.batch}, real Fashion-MNIST, device {dev} ({name or 'cpu'}), "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {repeats} timed steps"
    )
    head = (
        f"{'start':<10}{'lam p w lam':<22}{'SM ms':>8}{'IBNN ms':>9}{'x SM':>7}{'newton':>7}"
        f"{'cg':>5}{'bwd cg':>7}{'residual':>10}{'tol':>9}{'conv':>6}{'|fast-exact|':>13}"
    )
    print(head)
    ratios: dict[str, list[float]] = {"global": [], "3": [], "5": [], "7": []}
    for start, sm_model in (("untrained", untrained), (f"warm {args.warm_steps}", warm)):
        for s in settings:
            sm = copy.deepcopy(sm_model)
            kwargs = dict(w_extent=s.w_extent, lam_trainable=s.trainable)
            ibnn = to_ibnn(sm_model, lam=s.lam, p=s.p, **kwargs)
            t_sm, t_ib, st = side_by_side(sm, ibnn, x, y, repeats)
            gap = exact_gap(ibnn, x[:16])
            tol = next(m for m in ibnn.modules() if isinstance(m, IBNNConv2d)).last_stats.tol
            ratios["global" if s.w_extent is None else str(s.w_extent)].append(t_ib / t_sm)
            print(
                f"{start:<10}{s.label:<22}{t_sm * 1e3:>8.2f}{t_ib * 1e3:>9.1f}{t_ib / t_sm:>7.1f}"
                f"{st['iters']:>7}{st['inner_iters']:>5}{st['backward_iters']:>7}"
                f"{st['residual']:>10.1e}{tol:>9.0e}{'yes' if st['converged'] else 'NO':>6}"
                f"{gap:>13.1e}",
                flush=True,
            )
    worst = ", ".join(f"{w} {max(r):.1f}x" for w, r in ratios.items() if r)
    print(f"worst IBNN/SM step by w_extent: {worst}")


if __name__ == "__main__":
    main()
