"""A trial's evaluations of its selected model: clean accuracy, PGD, Pixle, Jacobian, curvature.

Every evaluation runs on the same ``n_eval`` test samples (a seeded choice) and draws its
randomness from its own seeded generator, so results do not depend on which other
evaluations ran. Rows follow the contract's eval-row keys; ``value`` is the mean
cross-entropy for accuracy rows and the mean measure for ``jacobian_norm`` / ``curvature``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ibnn.nn.models import solver_stats, to_ibnn, to_sm
from ibnn.trial.attacks import pgd, pixle
from ibnn.trial.config import TrialConfig
from ibnn.trial.data import as_float
from ibnn.trial.metrics import curvature, jacobian_norm
from ibnn.vocab import EVALS

__all__ = [
    "EVALUATIONS",
    "EvalContext",
    "eval_generator",
    "eval_subset",
    "evaluate_model",
    "neuron_kwargs",
]

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


@dataclass(frozen=True)
class EvalContext:
    """What every evaluation of one trial shares."""

    model: nn.Module  # the selected model, on its device
    cfg: TrialConfig  # the trial's config
    x: torch.Tensor  # the seeded evaluation subset, floats (N, ...)
    y: torch.Tensor  # its labels (N,)

    @property
    def batch(self) -> int:
        return self.cfg.eval_batch_size

    @property
    def bounds(self) -> tuple[float, float]:
        """Valid input range: pixels in [0, 1], toy points in [-1, 1]."""
        return (-1.0, 1.0) if self.cfg.dataset == "toy2d" else (0.0, 1.0)

    def pgd_score(self, target: nn.Module, source: nn.Module, eps: float, tag: str) -> Result:
        """A result row of ``target`` on PGD examples of radius eps made through ``source``."""
        gen = eval_generator(self.cfg.seed, f"{tag}:{eps}")
        steps = self.cfg.pgd_steps

        def attack(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
            return pgd(source, xb, yb, eps, steps=steps, generator=gen, bounds=self.bounds)

        adv = _batched(attack, self.x, self.y, self.batch)
        return _result(target, eps, *_score(target, adv, self.y, self.batch))


# One result row: (strength, acc, value, nonconverged_frac of the model's last solve); acc is
# NaN for measures (jacobian_norm, curvature).
Result = tuple[float, float, float, float]


def _result(model: nn.Module, strength: float, acc: float, value: float) -> Result:
    nc = solver_stats(model).get("nonconverged_frac", math.nan)
    return (float(strength), acc, value, float(nc))


def _clean(ctx: EvalContext) -> list[Result]:
    return [_result(ctx.model, 0.0, *_score(ctx.model, ctx.x, ctx.y, ctx.batch))]


def _pgd(surrogate: bool) -> Callable[[EvalContext], list[Result]]:
    name = "pgd_surrogate" if surrogate else "pgd_whitebox"

    def run(ctx: EvalContext) -> list[Result]:
        source = to_sm(ctx.model) if surrogate else ctx.model
        return [ctx.pgd_score(ctx.model, source, eps, name) for eps in ctx.cfg.pgd_eps]

    return run


def _pixle(ctx: EvalContext) -> list[Result]:
    cfg, gen = ctx.cfg, eval_generator(ctx.cfg.seed, "pixle")

    def attack(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        return pixle(
            ctx.model,
            xb,
            yb,
            restarts=cfg.pixle_restarts,
            iterations=cfg.pixle_iters,
            patch=cfg.pixle_patch,
            transposed=cfg.pixle_transposed,
            generator=gen,
        )

    adv = _batched(attack, ctx.x, ctx.y, ctx.batch)
    return [_result(ctx.model, 0.0, *_score(ctx.model, adv, ctx.y, ctx.batch))]


def _jacobian_norm(ctx: EvalContext) -> list[Result]:
    vals = _batched(lambda xb, yb: jacobian_norm(ctx.model, xb), ctx.x, ctx.y, ctx.batch)
    return [_result(ctx.model, 0.0, math.nan, float(vals.mean()))]


def _curvature(ctx: EvalContext) -> list[Result]:
    cfg, gen = ctx.cfg, eval_generator(ctx.cfg.seed, "curvature")

    def measure(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        return curvature(
            ctx.model, xb, yb, h=cfg.curvature_h, draws=cfg.curvature_draws, generator=gen
        )

    vals = _batched(measure, ctx.x, ctx.y, ctx.batch)
    return [_result(ctx.model, 0.0, math.nan, float(vals.mean()))]


# One function per name of ``ibnn.vocab.EVALS``, in that order: each returns its result rows.
EVALUATIONS: dict[str, Callable[[EvalContext], list[Result]]] = {
    "clean": _clean,
    "pgd_surrogate": _pgd(surrogate=True),
    "pgd_whitebox": _pgd(surrogate=False),
    "pixle": _pixle,
    "jacobian_norm": _jacobian_norm,
    "curvature": _curvature,
}
if tuple(EVALUATIONS) != EVALS:
    raise ImportError(f"EVALUATIONS {list(EVALUATIONS)} must implement ibnn.vocab.EVALS {EVALS}")


def _transfer(ctx: EvalContext, lam: float) -> list[tuple[str, Result]]:
    """SM -> IBNN transfer at one lam: clean accuracy, and PGD made on the SM model (the
    transferred model's lam = 0 surrogate)."""
    moved = to_ibnn(ctx.model, **neuron_kwargs(ctx.cfg, lam=lam))
    out = [("clean", _result(moved, 0.0, *_score(moved, ctx.x, ctx.y, ctx.batch)))]
    for eps in ctx.cfg.pgd_eps:
        out.append(("pgd_surrogate", ctx.pgd_score(moved, ctx.model, eps, f"transfer:{lam}")))
    return out


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
    ctx = EvalContext(model, cfg, x, y)

    def row(attack: str, result: Result, **extra: Any) -> dict[str, Any]:
        strength, acc, value, nc = result
        return {
            **base,
            **extra,
            "attack": attack,
            "strength": strength,
            "acc": acc,
            "value": value,
            "n": len(y),
            "nonconverged_frac": nc,
        }

    rows = [row(name, r) for name in cfg.evals for r in EVALUATIONS[name](ctx)]
    for lam in cfg.transfer_lams:
        extra = {"family": "ibnn_transfer", "lam": float(lam)}
        rows += [row(name, r, **extra) for name, r in _transfer(ctx, lam)]
    return rows
