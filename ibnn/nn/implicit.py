"""Autograd for the fixed point z*(y, lam) and for the explicit cross term of IBNN-lite.

Backward by implicit differentiation: F(z, y, lam) = z - y + lam B(z) = 0 gives
dz/dy = H^-1 and dz/dlam = -H^-1 B(z) with H = I + lam dB/dz symmetric, so for an upstream
gradient g we solve H u = g once (CG) and return grad_y = u, grad_lam = -<u, B(z*)>.
No graph is kept through the solver's iterations.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ibnn.nn.coupling import Coupling
from ibnn.nn.solvers import FixedPointProblem, SolveInfo, solve_jacobian

__all__ = ["SolveRecord", "fixed_point", "cross_term"]


@dataclass
class SolveRecord:
    """Where a layer's forward and backward solves leave their statistics (never printed).

    Attributes:
        forward: the last forward solve's info, or None.
        backward_iters: CG iterations of the last backward solve (0 before any).
        backward_residual: relative residual ||H u - g|| / ||g|| of the last backward solve.
        backward_row_iters: (R,) CG iterations of each row in the last backward solve.
    """

    forward: SolveInfo | None = None
    backward_iters: int = 0
    backward_residual: float = 0.0
    backward_row_iters: Tensor | None = None


def _split_finite(y: Tensor) -> tuple[Tensor, Tensor]:
    finite = torch.isfinite(y).all(dim=-1)
    if bool(finite.all()):
        return y, finite
    return torch.where(finite[:, None], y, torch.zeros_like(y)), finite


def _solve(
    y: Tensor,
    lam: float,
    coupling: Coupling,
    solver: Callable,
    tol: float,
    max_iter,
    z0: Tensor | None = None,
    linearization: bool = True,
):
    y_safe, finite = _split_finite(y)
    kwargs = {"tol": tol, "linearization": linearization}
    if max_iter is not None:
        kwargs["max_iter"] = max_iter
    if z0 is None:
        start = y_safe.clone()
    else:  # a warm start; rows without a finite one start from y (still called warm: cheap)
        start = torch.where(torch.isfinite(z0).all(dim=-1)[:, None], z0, y_safe)
        kwargs["warm"] = True
    z, info = solver(FixedPointProblem(y_safe, lam, coupling), start, **kwargs)
    if not bool(finite.all()):
        z = torch.where(finite[:, None], z, torch.full_like(z, float("nan")))
        info.residual = torch.where(
            finite, info.residual, torch.full_like(info.residual, float("inf"))
        )
        info.converged = info.converged & finite
    return z, info


def _backward_solve(z: Tensor, lam: float, coupling: Coupling, g: Tensor, rtol: float, lin=None):
    z_safe, finite = _split_finite(z)
    if lin is None or not bool(finite.all()):
        lin = coupling.linearize(z_safe)
    g_safe = torch.where(finite[:, None], g, torch.zeros_like(g))

    report: dict = {}
    u, steps = solve_jacobian(lin, lam, g_safe, rtol, 0.0, 500, report)
    if not bool(finite.all()):
        u = torch.where(finite[:, None], u, torch.full_like(u, float("nan")))
    return u, lin.B, steps, report


class _FixedPoint(torch.autograd.Function):
    @staticmethod
    def forward(ctx, y, lam_t, coupling, solver, tol, max_iter, bwd_rtol, record, z0):
        with torch.no_grad():
            z, info = _solve(y, float(lam_t), coupling, solver, tol, max_iter, z0)
        ctx.lin = info.linearization if bool(info.residual.isfinite().all()) else None
        info.linearization = None  # the record keeps statistics only
        record.forward = info
        ctx.save_for_backward(z)
        ctx.coupling, ctx.lam, ctx.bwd_rtol, ctx.record = coupling, float(lam_t), bwd_rtol, record
        return z

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_z):
        (z,) = ctx.saved_tensors
        u, cross, steps, report = _backward_solve(
            z, ctx.lam, ctx.coupling, grad_z, ctx.bwd_rtol, ctx.lin
        )
        ctx.lin = None
        record = ctx.record
        record.backward_iters, record.backward_residual = steps, report["relative_residual"]
        record.backward_row_iters = report["row_steps"]
        grad_lam = None
        if ctx.needs_input_grad[1]:
            grad_lam = -(torch.nan_to_num(u) * cross).sum().reshape(())
        return u, grad_lam, None, None, None, None, None, None, None


def fixed_point(
    y: Tensor,
    lam: Tensor,
    coupling: Coupling,
    solver: Callable,
    tol: float,
    max_iter: int | None,
    bwd_rtol: float,
    record: SolveRecord,
    z0: Tensor | None = None,
) -> Tensor:
    """The fixed point z of z = y - lam B(z), differentiable in y and lam.

    Without a gradient to compute (``torch.no_grad()``, or neither y nor lam requiring one)
    the solve runs forward only: Newton keeps no linearization for a backward pass and lets
    finished rows leave its iteration whatever the coupling.

    Args:
        y: (R, D) rows of linear pre-activations.
        lam: 0-dim tensor (may require grad).
        coupling: the cross term.
        solver: a function from :mod:`ibnn.nn.solvers`.
        tol: forward max-norm residual tolerance.
        max_iter: solver iteration cap (None: the solver's default).
        bwd_rtol: relative tolerance of the backward CG solve.
        record: receives the solve statistics.
        z0: optional warm start (R, D), the fixed point of a nearby problem (the same rows'
            solve in the previous epoch); the fixed point is unique (lam < 1/(2p)), so it
            changes the iterations only. Rows whose start is not finite start from y.

    Returns:
        (R, D) fixed point.
    """
    if z0 is not None:
        z0 = z0.to(y.dtype)
    if not (torch.is_grad_enabled() and (y.requires_grad or lam.requires_grad)):
        # forward only (evaluation): no autograd node, no linearization kept for a backward
        z, info = _solve(y, float(lam), coupling, solver, tol, max_iter, z0, linearization=False)
        record.forward = info
        return z
    return _FixedPoint.apply(y, lam, coupling, solver, tol, max_iter, bwd_rtol, record, z0)


class _CrossTerm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, coupling):
        ctx.save_for_backward(z)
        ctx.coupling = coupling
        return coupling.cross(z)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_b):
        (z,) = ctx.saved_tensors
        return ctx.coupling.linearize(z).matvec(grad_b), None  # dB/dz is symmetric


def cross_term(z: Tensor, coupling: Coupling) -> Tensor:
    """B(z) of shape (R, D), differentiable in z (used by IBNN-lite)."""
    z_safe, finite = _split_finite(z)
    if bool(finite.all()):
        return _CrossTerm.apply(z, coupling)
    out = _CrossTerm.apply(z_safe, coupling)
    return torch.where(finite[:, None], out, torch.full_like(out, float("nan")))
