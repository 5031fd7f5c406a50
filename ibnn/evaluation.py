"""A trial's evaluations of its selected model: clean accuracy, PGD, Pixle, Jacobian, curvature.

Every evaluation runs on the same ``n_eval`` test samples (a seeded choice) and draws its
randomness from its own seeded generator, so results do not depend on which other
evaluations ran. Rows follow the contract's eval-row keys; ``value`` is the mean
cross-entropy for accuracy rows and the mean measure for ``jacobian_norm`` / ``curvature``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ibnn.attacks import pgd, pixle
from ibnn.config import TrialConfig
from ibnn.data import as_float
from ibnn.metrics import curvature, jacobian_norm
from ibnn.models import solver_stats, to_ibnn, to_sm

__all__ = ["eval_generator", "eval_subset", "evaluate_model", "neuron_kwargs"]

_EVAL_STREAM = 11  # seed stream of the evaluation sample choice


def neuron_kwargs(cfg: TrialConfig, lam: float | None = None) -> dict[str, Any]:
    """Keyword arguments of the IBNN layers for ``cfg`` (optionally another lam)."""
    kw: dict[str, Any] = {
        "lam": cfg.lam if lam is None else lam,
        "p": cfg.p,
        "w_extent": cfg.w_extent,
        "lam_trainable": cfg.lam_trainable and lam is None,
        "allow_unsafe_lam": cfg.allow_unsafe_lam,
        "solver": cfg.solver,
        "tol": cfg.tol,
        "max_iter": cfg.max_iter,
        "backend": cfg.backend,
    }
    if cfg.family == "ibnn_lite" and lam is None:
        kw["lite"] = True
    return kw


def eval_generator(seed: int, name: str) -> torch.Generator:
    """A CPU generator seeded from the trial seed and the evaluation's name."""
    tag = sum((i + 1) * ord(ch) for i, ch in enumerate(name))
    state = np.random.SeedSequence([seed, _EVAL_STREAM, tag]).generate_state(1)[0]
    return torch.Generator().manual_seed(int(state))


def eval_subset(
    x: torch.Tensor, y: torch.Tensor, n_eval: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The seeded choice of at most ``n_eval`` samples (as floats) that every evaluation uses."""
    n = len(y)
    if n_eval >= n:
        idx = np.arange(n)
    else:
        idx = np.sort(np.random.default_rng([seed, _EVAL_STREAM]).choice(n, n_eval, replace=False))
    index = torch.from_numpy(idx).to(y.device)
    return as_float(x[index]), y[index]


def _batched(
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    batch: int,
) -> torch.Tensor:
    return torch.cat([fn(x[i : i + batch], y[i : i + batch]) for i in range(0, len(y), batch)])


@torch.no_grad()
def _score(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int) -> tuple[float, float]:
    """Accuracy and mean cross-entropy of ``model`` (eval mode) on ``(x, y)``."""
    model.eval()
    correct, loss = 0, 0.0
    for i in range(0, len(y), batch):
        out = model(x[i : i + batch])
        correct += int((out.argmax(1) == y[i : i + batch]).sum())
        loss += float(F.cross_entropy(out, y[i : i + batch], reduction="sum"))
    return correct / len(y), loss / len(y)


def evaluate_model(
    model: nn.Module,
    cfg: TrialConfig,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    base: dict[str, Any],
) -> list[dict[str, Any]]:
    """Runs ``cfg.evals`` (and SM transfer evaluations) on the selected model.

    Args:
        model: the trained model (IBNN or SM), on its device.
        cfg: the trial's config.
        x_test: stored test inputs ``(N, ...)``.
        y_test: test labels ``(N,)``.
        base: identity columns copied into every row (family, dataset, seed, L, C, ...).

    Returns:
        Eval rows: base columns plus attack, strength, acc, value, n, nonconverged_frac.
    """
    x, y = eval_subset(x_test, y_test, cfg.n_eval, cfg.seed)
    bounds = (-1.0, 1.0) if cfg.dataset == "toy2d" else (0.0, 1.0)
    b = cfg.eval_batch_size
    rows: list[dict[str, Any]] = []

    def row(attack: str, strength: float, acc: float, value: float, m: nn.Module, **extra) -> None:
        nc = solver_stats(m).get("nonconverged_frac", math.nan)
        rows.append(
            {
                **base,
                **extra,
                "attack": attack,
                "strength": float(strength),
                "acc": acc,
                "value": value,
                "n": len(y),
                "nonconverged_frac": float(nc),
            }
        )

    def attacked(target: nn.Module, source: nn.Module, eps: float, name: str) -> tuple[float, ...]:
        gen = eval_generator(cfg.seed, f"{name}:{eps}")
        adv = _batched(
            lambda xb, yb: pgd(
                source, xb, yb, eps, steps=cfg.pgd_steps, generator=gen, bounds=bounds
            ),
            x,
            y,
            b,
        )
        return _score(target, adv, y, b)

    for name in cfg.evals:
        if name == "clean":
            acc, loss = _score(model, x, y, b)
            row("clean", 0.0, acc, loss, model)
        elif name in ("pgd_surrogate", "pgd_whitebox"):
            source = to_sm(model) if name == "pgd_surrogate" else model
            for eps in cfg.pgd_eps:
                acc, loss = attacked(model, source, eps, name)
                row(name, eps, acc, loss, model)
        elif name == "pixle":
            gen = eval_generator(cfg.seed, "pixle")
            adv = _batched(
                lambda xb, yb, gen=gen: pixle(
                    model,
                    xb,
                    yb,
                    restarts=cfg.pixle_restarts,
                    iterations=cfg.pixle_iters,
                    patch=cfg.pixle_patch,
                    transposed=cfg.pixle_transposed,
                    generator=gen,
                ),
                x,
                y,
                b,
            )
            acc, loss = _score(model, adv, y, b)
            row("pixle", 0.0, acc, loss, model)
        elif name == "jacobian_norm":
            vals = _batched(lambda xb, yb: jacobian_norm(model, xb), x, y, b)
            row("jacobian_norm", 0.0, math.nan, float(vals.mean()), model)
        elif name == "curvature":
            gen = eval_generator(cfg.seed, "curvature")
            vals = _batched(
                lambda xb, yb, gen=gen: curvature(
                    model, xb, yb, h=cfg.curvature_h, draws=cfg.curvature_draws, generator=gen
                ),
                x,
                y,
                b,
            )
            row("curvature", 0.0, math.nan, float(vals.mean()), model)
    for lam in cfg.transfer_lams:
        moved = to_ibnn(model, **neuron_kwargs(cfg, lam=lam))
        extra = {"family": "ibnn_transfer", "lam": float(lam)}
        acc, loss = _score(moved, x, y, b)
        row("clean", 0.0, acc, loss, moved, **extra)
        for eps in cfg.pgd_eps:  # the SM model is the transferred model's lam = 0 surrogate
            acc, loss = attacked(moved, model, eps, f"transfer:{lam}")
            row("pgd_surrogate", eps, acc, loss, moved, **extra)
    return rows
