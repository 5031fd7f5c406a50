"""One training step of UCN(1,3) at Fashion-MNIST shape: SM vs IBNN, side by side.

    python benchmarks/layer_step.py [--batch 128] [--repeats 10] [--device cpu]

Times forward + backward + SGD step of the whole model (batch 128) for SM and for IBNN at
lam = 0.04 and lam = -2 (p = 10), prints the IBNN/SM ratios, the solver statistics, and the
max difference between the fast path's fixed point and one solved with the exact O(D^2)
cross term (both to tolerance). Weights come from a short SM warm-up on real Fashion-MNIST
when the Debian files are present (else on random images, said so), so the pre-activations
have a trained scale, as in the paper's surrogate warm-up.
"""

from __future__ import annotations

import argparse
import gzip
import platform
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ibnn import solver_stats, to_ibnn, ucn
from ibnn.nn.memory import reuse_freed_memory

FMNIST = Path("/usr/share/datasets/fashion-mnist")


def load_images(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, str]:
    """n Fashion-MNIST training images in [0, 1] (N, 1, 28, 28) and labels, or random ones."""
    images, labels = FMNIST / "train-images-idx3-ubyte.gz", FMNIST / "train-labels-idx1-ubyte.gz"
    if images.exists() and labels.exists():
        x = np.frombuffer(gzip.open(images).read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)
        y = np.frombuffer(gzip.open(labels).read(), np.uint8, offset=8)
        x = torch.from_numpy(x[:n].astype(np.float32) / 255.0)
        return x, torch.from_numpy(y[:n].astype(np.int64)), "real Fashion-MNIST"
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g), "random"


def time_step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, repeats: int) -> float:
    """Median seconds of one SGD step (forward, backward, update)."""
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    times = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
        if x.is_cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return float(np.median(times[1:]))


def exact_gap(model: torch.nn.Module, x: torch.Tensor) -> float:
    """Max |z_fast - z_exact| for the first block's fixed point (exact O(D^2) cross term)."""
    conv = model.blocks[0]
    with torch.no_grad():
        z_fast = conv(x)
        neuron = conv.neuron
        saved = neuron.backend, neuron._couplings
        neuron.backend, neuron._couplings = "dense", {}
        z_exact = conv(x)
        neuron.backend, neuron._couplings = saved
    return float((z_fast - z_exact).abs().max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warm-steps", type=int, default=200, help="SM warm-up SGD steps")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--lams", type=float, nargs="+", default=[0.04, -2.0])
    args = parser.parse_args()
    reuse_freed_memory()  # as a trial does: see ibnn.nn.memory
    torch.manual_seed(0)
    dev = torch.device(args.device)
    x_all, y_all, source = load_images(max(args.batch, 4096), seed=0)
    sm = ucn("sm", 1, 3, 1, 10, 28).to(dev)
    opt = torch.optim.SGD(sm.parameters(), lr=0.01, momentum=0.9)
    for _ in range(args.warm_steps):
        i = torch.randint(0, len(x_all), (args.batch,))
        opt.zero_grad()
        F.cross_entropy(sm(x_all[i].to(dev)), y_all[i].to(dev)).backward()
        opt.step()
    x, y = x_all[: args.batch].to(dev), y_all[: args.batch].to(dev)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu"
    print(
        f"UCN(1,3), batch {args.batch}, {source} images, device {dev} ({name}), "
        f"{torch.get_num_threads()} threads, SM warm-up {args.warm_steps} steps"
    )
    t_sm = time_step(sm, x, y, args.repeats)
    print(
        f"{'model':<16}{'step ms':>10}{'x SM':>8}{'fwd it':>8}{'cg':>6}{'bwd cg':>8}"
        f"{'residual':>11}{'|fast-exact|':>14}"
    )
    print(f"{'sm':<16}{t_sm * 1e3:>10.2f}{1.0:>8.1f}")
    for lam in args.lams:
        model = to_ibnn(sm, lam=lam, p=10.0)
        t = time_step(model, x, y, args.repeats)
        s = solver_stats(model)
        gap = exact_gap(model, x[: min(32, args.batch)])
        print(
            f"{'ibnn lam=' + format(lam, 'g'):<16}{t * 1e3:>10.2f}{t / t_sm:>8.1f}{s['iters']:>8}"
            f"{s['inner_iters']:>6}{s['backward_iters']:>8}{s['residual']:>11.2e}{gap:>14.2e}"
        )


if __name__ == "__main__":
    main()
