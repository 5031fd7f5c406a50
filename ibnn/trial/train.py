"""The paper's training recipe: learning-rate schedule, epoch loop and split evaluation.

Data are tensors held on the model's device (no DataLoader workers); an epoch visits the
training set in the order of one seeded permutation. Training metrics are averaged over the
whole epoch (every batch, weighted by its size), not taken from the last batch.
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ibnn.nn.models import solver_stats
from ibnn.nn.warm import WarmStarts
from ibnn.trial.data import as_float

__all__ = ["PassResult", "SolverMeter", "evaluate_split", "lr_at", "train_epoch"]


def lr_at(epoch: int, epochs: int, lr_start: float, lr_peak: float) -> float:
    """Learning rate of main epoch ``epoch`` (1-based) of ``epochs``.

    Linear warm-up from ``lr_start`` (epoch 1) to ``lr_peak`` (epoch ceil(E/2)), then the
    mirror image back down to ``lr_start`` (epoch E): lr(e) = lr(E + 1 - e). With 80 epochs:
    40 up and 40 down, as in the paper. One or two epochs stay at ``lr_start``.
    """
    if not 1 <= epoch <= epochs:
        raise ValueError(
            f"`1 <= epoch <= epochs` must hold, but got epoch={epoch}, epochs={epochs}"
        )
    steps = max(math.ceil(epochs / 2) - 1, 1)
    frac = min(epoch - 1, epochs - epoch) / steps
    return lr_start + (lr_peak - lr_start) * frac


@dataclass
class SolverMeter:
    """Accumulates ``solver_stats`` over the batches of one pass (sample-weighted means)."""

    n: int = 0  # samples seen with solver statistics
    iters: float = 0.0  # sum of batch iterations (max over layers) times batch size
    iters_max: int = 0  # largest iteration count of any batch
    backward_iters: float = 0.0  # sum of backward iterations times batch size
    residual: float = 0.0  # largest residual of any batch (NaN if any was NaN)
    nonconverged: float = 0.0  # sum of non-converged fractions times batch size
    seen: bool = field(default=False)  # any IBNN statistics at all

    def add(self, model: nn.Module, batch: int) -> None:
        """Adds the statistics of the model's last forward (and backward)."""
        self.add_stats(solver_stats(model), batch)

    def add_stats(self, s: dict, batch: int) -> None:
        """Adds one batch's ``solver_stats`` dict ({} without an implicit solve)."""
        if not s:
            return
        self.seen = True
        self.n += batch
        self.iters += s["iters"] * batch
        self.iters_max = max(self.iters_max, int(s["iters"]))
        self.backward_iters += s.get("backward_iters", 0) * batch
        res = float(s["residual"])
        self.residual = (
            res if (math.isnan(res) or math.isnan(self.residual)) else max(self.residual, res)
        )
        nc = float(s["nonconverged_frac"])
        self.nonconverged += (1.0 if math.isnan(nc) else nc) * batch

    def summary(self) -> dict[str, float]:
        """Mean iterations, max residual and mean non-converged fraction (NaN without IBNN)."""
        if not self.seen:
            nan = float("nan")
            return {
                "solver_iters": nan,
                "solver_iters_max": nan,
                "solver_backward_iters": nan,
                "solver_residual": nan,
                "nonconverged_frac": nan,
            }
        return {
            "solver_iters": self.iters / self.n,
            "solver_iters_max": float(self.iters_max),
            "solver_backward_iters": self.backward_iters / self.n,
            "solver_residual": self.residual,
            "nonconverged_frac": self.nonconverged / self.n,
        }


@dataclass(frozen=True)
class PassResult:
    """Loss, accuracy and solver statistics of one pass over a split."""

    loss: float  # mean cross-entropy (NaN if any batch was not finite)
    acc: float  # fraction of correct predictions
    n: int  # samples
    solver: dict[str, float]  # SolverMeter.summary()
    seconds: float  # wall time of the pass


def train_epoch(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    *,
    lr: float,
    batch_size: int,
    generator: torch.Generator,
    grad_clip: float | None,
    warm: WarmStarts | None = None,
) -> PassResult:
    """One epoch of SGD over ``(x, y)`` in a seeded random order.

    Args:
        model: the model (put in train mode here).
        x: stored inputs ``(N, ...)`` on the model's device (uint8 images or float points).
        y: labels ``(N,)``.
        optimizer: its learning rate is set to ``lr`` for the whole epoch.
        lr: learning rate of this epoch.
        batch_size: samples per step (the last batch may be smaller).
        generator: CPU generator for the permutation (its state advances).
        grad_clip: clip the gradient norm to this (None: no clipping).
        warm: per-sample warm starts of the implicit layers over ``(x, y)`` (None: cold).

    Returns:
        Mean training loss and accuracy over every batch of the epoch. A non-finite loss stops
        the epoch early (no step is taken with it) and is reported as NaN.
    """
    for group in optimizer.param_groups:
        group["lr"] = lr
    model.train()
    start = time.perf_counter()
    perm = torch.randperm(len(y), generator=generator).to(y.device)
    meter = SolverMeter()
    loss_sum, correct, seen = 0.0, 0, 0
    for i in range(0, len(y), batch_size):
        idx = perm[i : i + batch_size]
        xb, yb = as_float(x[idx]), y[idx]
        optimizer.zero_grad(set_to_none=True)
        with _warm(warm, model, idx):
            out = model(xb)
        loss = F.cross_entropy(out, yb)
        if not torch.isfinite(loss):
            meter.add(model, len(yb))
            return PassResult(float("nan"), float("nan"), seen, meter.summary(), _since(start))
        loss.backward()
        meter.add(model, len(yb))
        if grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        loss_sum += float(loss.detach()) * len(yb)
        correct += int((out.detach().argmax(1) == yb).sum())
        seen += len(yb)
    return PassResult(loss_sum / seen, correct / seen, seen, meter.summary(), _since(start))


@torch.no_grad()
def evaluate_split(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    warm: WarmStarts | None = None,
) -> PassResult:
    """Mean loss and accuracy of ``model`` (eval mode) on ``(x, y)``, batch by batch.

    Args:
        model: the model (put in eval mode here).
        x: stored inputs ``(N, ...)`` on the model's device.
        y: labels ``(N,)``.
        batch_size: samples per forward.
        warm: per-sample warm starts of the implicit layers over ``(x, y)`` (None: cold).
    """
    model.eval()
    start = time.perf_counter()
    meter = SolverMeter()
    loss_sum, correct = 0.0, 0
    for i in range(0, len(y), batch_size):
        xb, yb = as_float(x[i : i + batch_size]), y[i : i + batch_size]
        with _warm(warm, model, torch.arange(i, i + len(yb), device=y.device)):
            out = model(xb)
        meter.add(model, len(yb))
        loss_sum += float(F.cross_entropy(out, yb, reduction="sum"))
        correct += int((out.argmax(1) == yb).sum())
    n = len(y)
    return PassResult(loss_sum / n, correct / n, n, meter.summary(), _since(start))


def _warm(warm: WarmStarts | None, model: nn.Module, index: torch.Tensor):
    return nullcontext() if warm is None else warm.use(model, index)


def _since(start: float) -> float:
    return time.perf_counter() - start
