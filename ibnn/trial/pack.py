"""A trial pack: K trials that share architecture, data set and recipe, trained as one model.

    from ibnn.trial.pack import run_pack
    results = run_pack([TrialConfig(seed=s, family="ibnn", lam=-1.0) for s in range(8)])

Members may differ in ``PACK_FREE`` (seed, lam, p, label noise, evaluations, model selection);
everything the epoch loop depends on must be equal (:func:`pack_key`). Each member keeps its
own :class:`ibnn.trial.Trial`: its splits, shuffling generator, records, selected epoch,
checkpoint (``Trial.save``) and status. Per epoch the members' models are packed
(:func:`ibnn.nn.pack.pack_models`), trained on their own batches with the sum of their own
losses (so every member gets exactly its own gradient), clipped per member, stepped by one SGD
over the stacked parameters (elementwise, so equal to K separate SGDs), evaluated, and
unpacked back into each member's model and optimizer. A member's records therefore equal its
solo run to float tolerance.

A member whose loss turns non-finite stops training in that batch, exactly as it would alone,
and ends "diverged" or "solver_failed" while the others go on; members that finished leave the
pack at the next epoch. A numerical exception in a packed epoch (it cannot be told which member
raised it) makes the pack rerun that epoch member by member from the epoch's start.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from ibnn.nn.pack import PackedModel, pack_models
from ibnn.trial.config import TrialConfig
from ibnn.trial.core import EpochStart, Trial, TrialResult, conclude, format_record
from ibnn.trial.data import as_float
from ibnn.trial.failures import NUMERICAL_FAILURES
from ibnn.trial.train import PassResult, SolverMeter

__all__ = ["PACK_FREE", "TrialPack", "pack_key", "run_pack"]

# TrialConfig fields in which the members of a pack may differ; all others must be equal
PACK_FREE = frozenset(
    {
        "seed",
        "lam",
        "p",
        "label_noise",
        "selection",
        "max_nonconverged",
        "evals",
        "n_eval",
        "pgd_eps",
        "pgd_steps",
        "pixle_restarts",
        "pixle_iters",
        "pixle_patch",
        "pixle_transposed",
        "curvature_h",
        "curvature_draws",
        "transfer_lams",
    }
)


def pack_key(cfg: TrialConfig) -> tuple:
    """What trials must share to be packed together (configs with equal keys can be)."""
    return tuple(
        (f.name, getattr(cfg, f.name)) for f in dataclasses.fields(cfg) if f.name not in PACK_FREE
    )


def _check_members(trials: Sequence[Trial]) -> None:
    if not trials:
        raise ValueError("a trial pack needs at least one trial, but got none")
    keys = [dict(pack_key(t.cfg)) for t in trials]
    for name, value in keys[0].items():
        values = [k[name] for k in keys]
        if any(v != value for v in values):
            raise ValueError(
                f"trials of a pack must share `{name}` (only {sorted(PACK_FREE)} may differ), "
                f"but got {name}={values}"
            )
    done = [t.epochs_done for t in trials if not t.done]  # finished members just wait
    if any(d != done[0] for d in done):
        raise ValueError(f"trials of a pack must be at the same epoch, but got epochs_done={done}")


def _join(packed: torch.Tensor, parts: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in parts]).reshape(packed.shape)


def _split(packed: torch.Tensor, like: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    flat = packed.detach().reshape(-1).split([t.numel() for t in like])
    return [f.reshape(t.shape).clone() for f, t in zip(flat, like, strict=True)]


class TrialPack:
    """K trials run epoch by epoch as one vectorized model (see the module docstring).

    Args:
        trials: built trials (``Trial(cfg)`` or restored with ``Trial.load``) with equal
            ``pack_key`` and at the same epoch.
    """

    def __init__(self, trials: Sequence[Trial]) -> None:
        _check_members(trials)
        self.trials = list(trials)
        self._data: dict[tuple[int, ...], dict[str, torch.Tensor]] = {}

    @property
    def done(self) -> bool:
        """True once every member is finished."""
        return all(t.done for t in self.trials)

    def run_epoch(self) -> list[tuple[Trial, dict[str, Any]]]:
        """Runs the next epoch of every member still running.

        Returns:
            (member, its epoch record) for each member that ran.
        """
        alive = [t for t in self.trials if not t.done]
        if len(alive) <= 1:  # nothing to share: the member's own epoch, bit for bit
            return [(t, t.run_epoch()) for t in alive]
        shuffles = [t.shuffle.get_state() for t in alive]
        starts = [t.begin_epoch() for t in alive]
        saved = [{k: v.clone() for k, v in t.model.state_dict().items()} for t in alive]
        try:
            passes = self._packed_epoch(alive, starts)
        except NUMERICAL_FAILURES:  # raised by one member, which is unknown: each alone
            for t, state, shuffle in zip(alive, saved, shuffles, strict=True):
                t.model.load_state_dict(state)
                t.shuffle.set_state(shuffle)
            return [(t, t.run_begun(s)) for t, s in zip(alive, starts, strict=True)]
        return [(t, t.finish_epoch(s, *p)) for t, s, p in zip(alive, starts, passes, strict=True)]

    # -- one packed epoch ---------------------------------------------------------------------
    def _stacked(self, alive: list[Trial]) -> dict[str, torch.Tensor]:
        """The members' splits stacked as (K, N, ...), kept while the members stay the same."""
        key = tuple(id(t) for t in alive)
        if key not in self._data:
            self._data = {
                key: {
                    name: torch.stack([getattr(t.splits, name) for t in alive])
                    for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")
                }
            }
        return self._data[key]

    def _packed_epoch(
        self, alive: list[Trial], starts: list[EpochStart]
    ) -> list[tuple[PassResult, PassResult | None, PassResult | None]]:
        cfg = alive[0].cfg
        data = self._stacked(alive)
        model = pack_models([t.model for t in alive])
        params = model.packed_parameters()
        opt = torch.optim.SGD([P for P, _, _ in params], lr=starts[0].lr, momentum=cfg.momentum)
        for P, sources, owners in params:
            buffers = [
                alive[k].optimizer.state.get(src, {}).get("momentum_buffer")
                for k, src in zip(owners, sources, strict=True)
            ]
            if all(b is not None for b in buffers):  # none before a model's first step
                opt.state[P]["momentum_buffer"] = _join(P, buffers)
        train = self._train(model, opt, params, data, cfg, alive)
        va = te = None
        if any(tr.loss == tr.loss for tr in train):  # some member's loss is not NaN
            va = _evaluate(model, data["x_val"], data["y_val"], cfg.eval_batch_size)
            te = _evaluate(model, data["x_test"], data["y_test"], cfg.eval_batch_size)
        model.unpack_into()
        for P, sources, owners in params:
            buf = opt.state.get(P, {}).get("momentum_buffer")
            if buf is not None:
                for k, src, part in zip(owners, sources, _split(buf, sources), strict=True):
                    alive[k].optimizer.state[src]["momentum_buffer"] = part
        for t in alive:
            for group in t.optimizer.param_groups:
                group["lr"] = starts[0].lr
        return [
            (tr, va[k], te[k]) if va is not None and tr.loss == tr.loss else (tr, None, None)
            for k, tr in enumerate(train)
        ]

    def _train(self, model: PackedModel, opt, params, data, cfg: TrialConfig, alive):
        """One training pass of every member; a member stops at its first non-finite loss."""
        k_all = len(alive)
        model.train()
        start = time.perf_counter()
        x, y = data["x_train"], data["y_train"]
        n = y.shape[1]
        perms = torch.stack([torch.randperm(n, generator=t.shuffle) for t in alive]).to(y.device)
        rows = torch.arange(k_all, device=y.device)[:, None]
        meters = [SolverMeter() for _ in alive]
        loss_sum = torch.zeros(k_all, dtype=torch.float64)
        correct = torch.zeros(k_all, dtype=torch.long)
        seen = [0] * k_all
        running = torch.ones(k_all, dtype=torch.bool)
        stopped: dict[int, PassResult] = {}
        for i in range(0, n, cfg.batch_size):
            idx = perms[:, i : i + cfg.batch_size]
            xb = as_float(x[rows, idx]).transpose(0, 1)  # (B, K, ...)
            yb = y[rows, idx].transpose(0, 1)  # (B, K)
            opt.zero_grad(set_to_none=True)
            out = model(xb)
            losses = F.cross_entropy(out.transpose(1, 2), yb, reduction="none").mean(0)
            bad = running & ~torch.isfinite(losses.detach()).cpu()
            for k in bad.nonzero().flatten().tolist():  # stops alone, as it would alone
                meters[k].add_stats(model.solver_stats(k), len(yb))
                summary = meters[k].summary()
                stopped[k] = PassResult(float("nan"), float("nan"), seen[k], summary, 0.0)
            running &= ~bad
            if not bool(running.any()):
                break
            keep = running.to(losses.device)
            losses.masked_fill(~keep, 0.0).sum().backward()
            for k in running.nonzero().flatten().tolist():
                meters[k].add_stats(model.solver_stats(k), len(yb))
            if cfg.grad_clip is not None:
                _clip(params, k_all, cfg.grad_clip)
            opt.step()
            loss_sum += torch.where(keep, losses.detach(), 0.0).double().cpu() * len(yb)
            hits = (out.detach().argmax(2) == yb).sum(0).cpu()
            correct += torch.where(running, hits, 0)
            for k in running.nonzero().flatten().tolist():
                seen[k] += len(yb)
        took = time.perf_counter() - start
        return [
            stopped[k]
            if k in stopped
            else PassResult(
                float(loss_sum[k]) / seen[k],
                int(correct[k]) / seen[k],
                seen[k],
                meters[k].summary(),
                took,
            )  # fmt: skip
            for k in range(k_all)
        ]


def _clip(params, k_all: int, max_norm: float) -> None:
    """``clip_grad_norm_`` of each member's own gradients (its slices of every parameter)."""
    sq = None
    for P, _, owners in params:
        if P.grad is None:
            continue
        part = P.grad.detach().reshape(len(owners), -1).double().pow(2).sum(1)
        if sq is None:
            sq = torch.zeros(k_all, dtype=torch.float64, device=P.grad.device)
        sq.index_add_(0, torch.tensor(owners, device=sq.device), part)
    if sq is None:
        return
    coef = (max_norm / (sq.sqrt() + 1e-6)).clamp(max=1.0)
    for P, _, owners in params:
        if P.grad is not None:
            P.grad.view(len(owners), -1).mul_(coef[owners][:, None].to(P.grad.dtype))


@torch.no_grad()
def _evaluate(
    model: PackedModel, x: torch.Tensor, y: torch.Tensor, batch_size: int
) -> list[PassResult]:
    """``evaluate_split`` of every member on its own split, (K, N, ...) inputs."""
    model.eval()
    start = time.perf_counter()
    k_all, n = y.shape
    meters = [SolverMeter() for _ in range(k_all)]
    loss_sum = torch.zeros(k_all, dtype=torch.float64)
    correct = torch.zeros(k_all, dtype=torch.long)
    for i in range(0, n, batch_size):
        xb = as_float(x[:, i : i + batch_size]).transpose(0, 1)
        yb = y[:, i : i + batch_size].transpose(0, 1)
        out = model(xb)
        for k in range(k_all):
            meters[k].add_stats(model.solver_stats(k), len(yb))
        ce = F.cross_entropy(out.transpose(1, 2), yb, reduction="none").sum(0)
        loss_sum += ce.double().cpu()
        correct += (out.argmax(2) == yb).sum(0).cpu()
    took = time.perf_counter() - start
    return [
        PassResult(float(loss_sum[k]) / n, int(correct[k]) / n, n, meters[k].summary(), took)
        for k in range(k_all)
    ]


def run_pack(cfgs: Sequence[TrialConfig], progress: bool = True) -> list[TrialResult]:
    """``run_trial`` for K configs with equal ``pack_key``, trained as one pack.

    Args:
        cfgs: the members' configurations.
        progress: print one line per member and epoch to stderr.

    Returns:
        One :class:`TrialResult` per config, in order.
    """
    threads = torch.get_num_threads()
    try:
        pack = TrialPack([Trial(cfg) for cfg in cfgs])
        while not pack.done:
            for _, rec in pack.run_epoch():
                if progress:
                    print(format_record(rec), file=sys.stderr, flush=True)
        return [conclude(t) for t in pack.trials]
    finally:
        torch.set_num_threads(threads)
