"""Forward solvers for z = y - lam * B(z), chosen by name from one registry.

Every solver has the signature ``solve(problem, z0, *, tol, max_iter, warm=False,
linearization=True) -> (z, SolveInfo)`` and works on rows (R, D) that are independent
problems. ``warm``: z0 is the fixed point of a nearby problem (the same sample's solve in the
previous epoch), to be started from as it is; ``linearization``: return the linearization at
z for the backward pass (False: a forward-only solve). Only Newton reads the two (the other
solvers always start from z0 and return no linearization). Convergence is judged per row by
the max-norm residual ||z - y + lam B(z)||_inf <= tol, or, below float64, by a rounding floor
that a float64 solution confirms: a row above ``tol`` counts as converged only within 2.5x of the
residual of its float64 solution rounded to its dtype (:func:`confirmed_floor`). Rows that do
not converge are reported in :class:`SolveInfo`, never raised.

Solvers:
- ``"newton"`` (default): Newton's method on F(z) = z - y + lam B(z). Each step solves
  (I + lam dB/dz) d = -F with preconditioned CG (the matrix is symmetric positive
  definite for lam < 1/(2p); Jacobi, or the coupling's own preconditioner, see
  :meth:`ibnn.nn.coupling.Linearization.preconditioner`; on the CPU a window's and a small
  grid's systems a row at a time, :func:`solve_jacobian`) and backtracks per row on ||F||_2
  (the Newton direction is a descent direction of ||F||^2), so it converges across lam in
  [-10, 1/(2p)). The line search starts from a full step, or, for windows, where that lands
  more than 10% away from the energy's minimum along the step, from one secant step on the
  energy's slope (F is the energy's gradient). A row whose line search finds no decrease, or
  that stops halving its residual within 10x of its estimated rounding floor
  (:meth:`FixedPointProblem.row_tol`), stops there; above its tolerance it is then judged
  against its confirmed floor.
- ``"descent"``: the energy descent of Eq. (12), z <- z - tau F(z) with the fixed step
  tau = 1 / (1 + 2 p max(0, -lam)) that makes the energy of Eq. (5) non-increasing.
- ``"picard"``: plain fixed-point iteration z <- y - lam B(z); contracts only for |lam| < 1/(2p).
- ``"anderson"``, ``"broyden"``: TorchDEQ's solvers on the same map (for comparison).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ibnn.nn import compiled
from ibnn.nn.coupling import Coupling, Jacobi, Linearization

__all__ = [
    "FixedPointProblem",
    "SolveInfo",
    "get_solver",
    "SOLVERS",
    "cg",
    "confirmed_floor",
    "default_tol",
    "jacobian_system",
    "solve_jacobian",
]


def default_tol(dtype: torch.dtype) -> float:
    """Default max-norm residual tolerance of the forward solve for a floating dtype."""
    return 1e-10 if dtype == torch.float64 else 5e-6


@dataclass
class FixedPointProblem:
    """z = y - lam * B(z) on independent rows.

    Attributes:
        y: (R, D) linear pre-activations.
        lam: scalar weight of the implicit term.
        coupling: the cross term B and its Jacobian.
    """

    y: Tensor
    lam: float
    coupling: Coupling

    def residual(self, z: Tensor, B: Tensor) -> Tensor:
        """F(z) = z - y + lam B(z), shape (R, D)."""
        return z - self.y + self.lam * B

    def row_tol(self, z: Tensor, tol: float) -> Tensor:
        """Per-row stopping threshold: ``tol``, or an estimate of z's rounding floor if larger.

        Rounding z to its dtype moves F_i by about ulp(z_i)/2 (1 + |lam| sum_k w_ik S'), at
        most eps |z| (1 + p |lam|) / 2, and evaluating z - y + lam B adds about eps (|y| + |z|)
        (lam B = y - z at the solution). Solvers stop a row there; whether it counts as
        converged above ``tol`` is decided by :func:`confirmed_floor`, against a float64
        solution rounded to z's dtype.

        Args:
            z: (R, D) iterate of this problem's rows (``self.y``'s rows).
            tol: the tolerance.

        Returns:
            (R,) thresholds.
        """
        eps = torch.finfo(z.dtype).eps
        stiff = 1.0 + self.coupling.p * max(0.0, -self.lam)
        size = z.detach().abs().amax(dim=-1).nan_to_num(0.0, 0.0, 0.0)
        y_size = self.y.abs().amax(dim=-1).nan_to_num(0.0, 0.0, 0.0)
        floor = eps * (0.5 * stiff * size + size + y_size)
        return torch.clamp(floor, min=tol)

    def energy(self, z: Tensor) -> Tensor:
        """Per-row energy of Eq. (5): 0.5 ||z - y||^2 - lam/2 sum_ik w_ik S(z_k - z_i), (R,)."""
        return 0.5 * ((z - self.y) ** 2).sum(-1) - 0.5 * self.lam * self.coupling.energy(z)


@dataclass
class SolveInfo:
    """Statistics of one forward solve.

    Attributes:
        iters: outer iterations taken (Newton steps, descent steps, ...).
        inner_iters: total inner iterations (CG matvecs for Newton; 0 otherwise).
        residual: (R,) final max-norm residual per row (inf where not finite).
        converged: (R,) bool, residual <= tol, or within 2.5x of the row's confirmed rounding
            floor (see :func:`confirmed_floor`).
        linearization: the coupling linearised at the returned z, when the solver has it
            (the backward pass reuses it).
        row_iters: (R,) outer iterations in which each row was still being solved, when the
            solver counts them (Newton); ``iters`` is their maximum, so the rows of a subset
            (one trial of a pack) give that subset's own count.
    """

    iters: int
    inner_iters: int
    residual: Tensor
    converged: Tensor
    linearization: Linearization | None = None
    row_iters: Tensor | None = None


_FUSED_DTYPES = (torch.float32, torch.float64)  # CG's updates through ibnn.nn.compiled
_COMPACT = 0.5  # share of the rows worked on that are done from which CG and Newton drop them


def cg(
    matvec: Callable[[Tensor], Tensor],
    b: Tensor,
    precond: Tensor | Callable[[Tensor], Tensor],
    rtol: Tensor | float,
    atol: float,
    max_iter: int,
    report: dict | None = None,
    restrict: Callable[[Tensor], tuple[Callable, Callable]] | None = None,
) -> tuple[Tensor, int]:
    """Batched preconditioned conjugate gradients, one independent SPD system per row.

    Args:
        matvec: v (R, D) -> A v (R, D), A symmetric positive definite per row.
        b: (R, D) right-hand sides.
        precond: r -> M^-1 r for an SPD preconditioner M acting row by row, or an (R, D)
            tensor: the inverse of a diagonal M.
        rtol: relative tolerance on ||r||_2 per row, scalar or (R,).
        atol: absolute floor on ||r||_2.
        max_iter: cap on iterations.
        report: if given, receives "relative_residual": ||r|| / ||b|| over all rows, from
            CG's own residual recursion (no extra matvec), and "row_steps": (R,) iterations
            each row took (the returned count is their maximum).
        restrict: optional ``rows -> (matvec, precond)``: the same systems for the rows
            ``rows`` (int64 indices into b) alone. Given it, once at least half of the rows
            still iterated are done, CG drops them and goes on with the others' systems only,
            so that a finished row costs nothing; every row's iterates are unchanged.

    Returns:
        x: (R, D) approximate solution (NaN in a row whose residual is not finite); the
        number of matvecs performed.
    """
    fused = compiled.enabled() and b.device.type == "cpu" and b.dtype in _FUSED_DTYPES
    deflate = False
    if fused:
        b = b.contiguous()
        precond, deflate = _diagonal(precond, b)
    apply = _applier(precond, deflate)
    x_out = torch.zeros_like(b)
    r_out = torch.zeros(b.shape[:-1], dtype=b.dtype, device=b.device)  # final ||r|| per row
    rows: Tensor | None = None  # indices of the rows still iterated; None: all of them
    x = torch.zeros_like(b)
    r = b.clone()
    s = apply(r)
    direction = s.clone()
    rs = torch.linalg.vecdot(r, s)
    target = torch.clamp(rtol * b.norm(dim=-1), min=atol)
    tiny = torch.finfo(b.dtype).tiny
    steps = 0
    row_steps = torch.zeros(b.shape[:-1], dtype=torch.int32, device=b.device)
    r_norm = r.norm(dim=-1)
    if fused:  # the loops keep r_norm and rs (float64 sums) up to date in place
        r_norm, rs = r_norm.double(), rs.double()
    for steps in range(max_iter + 1):
        if not fused:
            r_norm = r.norm(dim=-1)
        done = ~(r_norm > target)  # NaN counts as done: nothing to gain
        n_done = int(done.sum())
        if n_done == done.shape[0] or steps == max_iter:
            break
        if restrict is not None and n_done >= _COMPACT * done.shape[0]:
            keep, leave = (~done).nonzero()[:, 0], done.nonzero()[:, 0]
            left = leave if rows is None else rows[leave]
            x_out.index_copy_(0, left, x[leave])
            r_out.index_copy_(0, left, r_norm[leave].to(r_out.dtype))
            rows = keep if rows is None else rows[keep]
            x, r, direction, rs, target = x[keep], r[keep], direction[keep], rs[keep], target[keep]
            done, r_norm = done[keep], r_norm[keep]
            matvec, precond = restrict(rows)
            if fused:
                precond, deflate = _diagonal(precond, r)
            apply = _applier(precond, deflate)
        if rows is None:
            row_steps += ~done
        else:
            row_steps.index_add_(0, rows, (~done).to(torch.int32))
        a_dir = matvec(direction)
        if fused:  # the same updates, a row at a time (ibnn.nn.compiled)
            active = (~done).numpy()
            arrays = [t.numpy() for t in (x, r, direction)]
            compiled.cg_advance(*arrays, a_dir.contiguous().numpy(), rs.numpy(), active,
                                r_norm.numpy())  # fmt: skip
            jacobi = not callable(precond)
            s = precond if jacobi else apply(r).contiguous()
            compiled.cg_direction(arrays[1], s.numpy(), arrays[2], rs.numpy(), active, jacobi,
                                  deflate)  # fmt: skip
            continue
        curv = torch.linalg.vecdot(direction, a_dir)
        alpha = torch.where(done | (curv <= 0), 0.0, rs / curv.clamp_min(tiny))[:, None]
        # fused row scalings: a (R, 1) factor times an (R, D) map is ~20x slower on the CPU
        x = torch.addcmul(x, alpha, direction)
        r = torch.addcmul(r, alpha, a_dir, value=-1.0)
        s = apply(r)
        rs_new = torch.linalg.vecdot(r, s)
        beta = torch.where(done, 0.0, rs_new / rs.clamp_min(tiny))
        direction = torch.addcmul(s, beta[:, None], direction)
        rs = rs_new
    if rows is None:
        x_out, r_out = x, r.norm(dim=-1)
    else:
        x_out.index_copy_(0, rows, x)
        r_out.index_copy_(0, rows, r.norm(dim=-1))
    if not bool(r_out.isfinite().all()):  # a row without a finite residual has no solution
        x_out = torch.where(r_out.isfinite()[:, None], x_out, float("nan"))
    if report is not None:
        report["relative_residual"] = float(r_out.norm() / b.norm().clamp_min(tiny))
        report["row_steps"] = row_steps
    return x_out, steps


def _diagonal(precond, like: Tensor):
    """A diagonal preconditioner as the compiled CG loops read it: (inverse diagonal shaped
    like ``like``, deflated: whether it is a :class:`Jacobi`), or (precond, False) for any other
    callable."""
    deflate = isinstance(precond, Jacobi)
    inverse = precond.inverse if deflate else precond
    if callable(inverse):
        return inverse, False
    return inverse.to(like.dtype).expand_as(like).contiguous(), deflate


def _applier(precond, deflate: bool) -> Callable[[Tensor], Tensor]:
    """r -> M^-1 r for cg's preconditioner argument (a deflated inverse diagonal as
    :class:`Jacobi` where ``deflate``)."""
    if deflate:
        return Jacobi(precond)
    return precond if callable(precond) else precond.__mul__


def solve_jacobian(
    lin: Linearization,
    lam: float,
    b: Tensor,
    rtol: Tensor | float,
    atol: float,
    max_iter: int,
    report: dict | None = None,
) -> tuple[Tensor, int]:
    """x solving (I + lam dB/dz) x = b at ``lin`` (a Newton step's system, the implicit
    backward's) by preconditioned CG: the coupling's own row-by-row CG where it has one for b
    (:attr:`Linearization.solve`: a window's or a small grid's compiled loop), else :func:`cg` with
    :func:`jacobian_system`'s operators. Arguments and returns as :func:`cg`'s; each row stops
    once ||r||_2 <= max(rtol ||b||_2, atol)."""
    if lin.solve is not None:
        target = torch.clamp(rtol * b.norm(dim=-1), min=atol)
        out = lin.solve(lam, b, target, max_iter)
        if out is not None:
            x, row_steps, r_norm = out
            if report is not None:
                tiny = torch.finfo(b.dtype).tiny
                report["relative_residual"] = float(r_norm.norm() / b.norm().clamp_min(tiny))
                report["row_steps"] = row_steps
            return x, int(row_steps.max()) if row_steps.numel() else 0
    matvec, precond, restrict = jacobian_system(lin, lam)
    return cg(matvec, b, precond, rtol, atol, max_iter, report, restrict)


def jacobian_system(lin: Linearization, lam: float):
    """(matvec, precond, restrict) of H = I + lam dB/dz at ``lin``, as :func:`cg` takes them;
    ``restrict`` is None where the linearization cannot select rows."""

    def restrict(rows: Tensor):
        part = lin.take(rows)
        return (lambda v: v + lam * part.matvec(v)), part.preconditioner(lam)

    matvec = lambda v: v + lam * lin.matvec(v)  # noqa: E731
    return matvec, lin.preconditioner(lam), restrict if lin.subset is not None else None


def _info(
    problem: FixedPointProblem,
    z: Tensor,
    tol: float,
    iters: int,
    inner: int,
    res: Tensor,
    lin: Linearization | None = None,
    row_iters: Tensor | None = None,
) -> SolveInfo:
    converged = res <= tol
    near = ~converged & (res <= _NEAR_FLOOR * problem.row_tol(z, tol))
    if z.dtype != torch.float64 and bool(near.any()):
        rows = near.nonzero()[:, 0]
        converged[rows] = res[rows] <= _FLOOR_MARGIN * confirmed_floor(problem, z, rows)
    return SolveInfo(iters, inner, res, converged, lin, row_iters)


_NEAR_FLOOR = 10.0  # rows above tol within this factor of row_tol's estimate get confirmed
# a float32 solver's residual against the rounded float64 solution's, both at the floor: up to
# 1.3x where that floor is above the tolerance (window k = 3, lam = -10, y of size 3-6); up to
# 2.2x where float32 Newton steps stall at their last rounding (global w, lam = -10, p = 20,
# warm Fashion-MNIST pre-activations: 2.04x and 2.24x for 2 of 384 rows, whose z then lie
# within about an ulp of the rounded float64 solution; 1.5-2% of window rows at lam = -10
# stall at 2.4x, PyTorch's float32 path included)
_FLOOR_MARGIN = 2.5


def confirmed_floor(problem: FixedPointProblem, z: Tensor, rows: Tensor) -> Tensor:
    """The rounding floor of ``rows`` as a float64 solution confirms it.

    Two full Newton steps in float64 from the rows' z (each linear system solved by CG to
    1e-6 relative) take a residual near the floor (~1e-5) below 1e-10, far below the dtype's
    rounding; the solution is rounded to z's dtype and its residual evaluated there: no solver
    working in that dtype can be expected to do better (within :data:`_FLOOR_MARGIN`). On
    window rows at lam = -10 this matched a float64 solve from scratch exactly.

    Args:
        problem: the problem in z's dtype.
        z: (R, D) solution in a dtype below float64.
        rows: (K,) indices of the rows to confirm.

    Returns:
        (K,) max-norm residuals of the rounded float64 solutions.
    """
    sub = FixedPointProblem(problem.y[rows], problem.lam, problem.coupling)
    reference = FixedPointProblem(sub.y.double(), sub.lam, sub.coupling)
    z64 = z[rows].detach().double()
    cap = 4 * z64.shape[-1] if z64.shape[-1] < 64 else 200
    for _ in range(2):
        lin = reference.coupling.linearize(z64)
        f = reference.residual(z64, lin.B)
        step, _ = solve_jacobian(lin, reference.lam, -f, 1e-6, 0.0, cap)
        z64 = z64 + step
    rounded = z64.to(z.dtype)
    return _max_abs(sub.residual(rounded, sub.coupling.cross(rounded)))


def _max_abs(f: Tensor) -> Tensor:
    res = f.abs().amax(dim=-1)
    return torch.where(torch.isfinite(res), res, torch.full_like(res, float("inf")))


def linear_start(problem: FixedPointProblem) -> tuple[Tensor, int]:
    """Solution of the problem linearised at a constant z (every pair in tanh's linear range).

    Near a constant vector B(z) ~ J0 z with J0 = dB/dz at z = 0, so z solves the SPD system
    (I + lam J0) z = y. For lam << 0 the true fixed point collapses into that regime (units
    pulled within 1/p of each other), where starting from y costs Newton dozens of steps.

    Returns:
        (R, D) starting point; CG matvecs used.
    """
    direct = problem.coupling.solve_flat(problem.y, problem.lam)
    if direct is not None:
        return direct, 0
    matvec, precond, restrict = jacobian_system(
        problem.coupling.linearize_flat(problem.y), problem.lam
    )
    return cg(matvec, problem.y, precond, 1e-3, 0.0, 50, restrict=restrict)


_MAX_HALVINGS = 20  # line-search step halvings before a row counts as stalled
# -lam p from which Newton starts from the linear start without comparing it with z0: from
# -lam p = 3 on it had the smaller residual for 80-100% of the rows of real Fashion-MNIST
# pre-activations (at 2: 12-46%), and skipping the two cross terms of the comparison left every
# Newton and CG count unchanged or lower while saving 5-22% of a step
_LINEAR_START_ALONE = 2.5


# how far from 1 the secant's step length must be to be taken: closer, it did not save the
# linearisation it costs (stiff lam: 1.001-1.006 on most rows)
_SECANT_FROM = 0.1


def _secant_length(
    problem: FixedPointProblem,
    f: Tensor,
    z_one: Tensor,
    f_one: Tensor,
    step: Tensor,
    active: Tensor,
    tol: float,
) -> Tensor | None:
    """Step lengths towards the energy's minimum along the Newton step s, for the rows that a
    full step leaves unconverged and far from it; None where there is no such row.

    F is the gradient of the energy of Eq. (5), so phi'(t) = F(z + t s).s is the energy's slope
    along s: negative at t = 0 and increasing in t where the energy is convex (lam < 0, and
    lam >= 0 while I + lam dB/dz stays positive definite). The secant of phi' through t = 0 and
    t = 1 (``f`` and ``f_one``: F at z and at z + s) lands near the minimum where a full step
    overshoots it (t < 1) or falls short (t > 1, at most 4). Rows of real pre-activations whose
    pairs cross tanh's narrow transition (lam = -0.3, p = 20) took up to 11 Newton steps with
    full steps, each lowering ||F|| by a few percent; with the secant length, 5.

    Returns:
        (R,) step lengths (1 for the other rows), or None.
    """
    g0 = torch.linalg.vecdot(f, step)
    g1 = torch.linalg.vecdot(f_one, step)
    t = (g0 / (g0 - g1)).clamp(0.05, 4.0)
    far = active & (g0 < 0) & (g1 > g0) & ((t - 1.0).abs() > _SECANT_FROM)
    far &= _max_abs(f_one) > problem.row_tol(z_one, tol)
    if not bool(far.any()):
        return None
    return torch.where(far, t, torch.ones_like(t))


def newton(
    problem: FixedPointProblem,
    z0: Tensor,
    *,
    tol: float,
    max_iter: int = 50,
    warm: bool = False,
    linearization: bool = True,
) -> tuple[Tensor, SolveInfo]:
    """Globalised inexact Newton-CG (see the module docstring).

    For lam < 0 each row starts from whichever of z0 and :func:`linear_start` has the
    smaller residual, or from the linear start alone once -lam p >= 2.5 (where it wins almost
    always); a ``warm`` z0 (the fixed point of a nearby problem: the same sample's solve in
    the previous epoch) is taken as it is. Rows that are done leave the iteration once at
    least half are (see :func:`cg`): where the coupling can merge linearizations back, or
    always without ``linearization`` (a forward-only solve: no linearization is returned).
    """
    lam, y = problem.lam, problem.y
    coupling = problem.coupling
    z = z0
    inner = 0
    if lam < 0 and not warm and -lam * coupling.p >= _LINEAR_START_ALONE:
        z, inner = linear_start(problem)
    elif lam < 0 and not warm:  # compare the two starts by their residuals, linearise one
        z_lin, inner = linear_start(problem)
        f0 = problem.residual(z0, coupling.cross(z0)).norm(dim=-1)
        f_l = problem.residual(z_lin, coupling.cross(z_lin)).norm(dim=-1)
        z = torch.where((f_l < f0)[:, None], z_lin, z0)
    lin = coupling.linearize(z)
    f = problem.residual(z, lin.B)
    res = _max_abs(f)
    stalled = torch.zeros_like(res, dtype=torch.bool)
    previous = torch.full_like(res, float("inf"))
    row_iters = torch.zeros_like(res, dtype=torch.int32)
    # once most rows are done, Newton goes on with the others alone (``rows``: their indices;
    # None: every row); the finished rows' z and residual wait in z_all, res_all and their
    # linearization in lin_all, for the backward pass
    rows: Tensor | None = None
    z_all, res_all, lin_all, work = z, res, lin, problem
    it = 0
    for it in range(max_iter + 1):
        row_tol = work.row_tol(z, tol)
        # near its rounding floor a row that no longer halves its residual has nothing to gain
        stalled |= (res <= 10.0 * row_tol) & (res > 0.5 * previous)
        active = (res > tol) & ~stalled
        if not bool(active.any()) or it == max_iter:
            break
        # only where rows can be merged back: linearising every row once more at the end
        # (the grid, float64 sums) cost more than the dropped rows saved
        can_drop = lin.subset is not None and (lin.merge is not None or not linearization)
        if can_drop and int(active.sum()) <= _COMPACT * active.shape[0]:
            keep = active.nonzero()[:, 0]
            if rows is None:
                z_all, res_all, lin_all = z.clone(), res.clone(), lin
            else:
                z_all.index_copy_(0, rows, z)
                res_all.index_copy_(0, rows, res)
                if linearization:
                    lin_all = lin_all.put(rows, lin, reuse=True)
            rows = keep if rows is None else rows[keep]
            z, f, res, lin = z[keep], f[keep], res[keep], lin.take(keep)
            stalled, previous, active = stalled[keep], previous[keep], active[keep]
            work = FixedPointProblem(y[rows], lam, coupling)
        if rows is None:
            row_iters += active  # a row once inactive stays so: its z no longer moves
        else:
            row_iters.index_add_(0, rows, active.to(torch.int32))
        fnorm = f.norm(dim=-1)
        rhs = torch.where(active[:, None], -f, torch.zeros_like(f))
        forcing = torch.clamp(fnorm, max=1e-3)  # tight early: saves Newton steps
        cap = 4 * y.shape[-1] if y.shape[-1] < 64 else 200
        step, n = solve_jacobian(lin, lam, rhs, forcing, 0.1 * tol, cap)
        inner += n
        t = torch.ones_like(fnorm)
        z_try = z + step
        lin_try = coupling.linearize(z_try)
        f_try = work.residual(z_try, lin_try.B)
        # only where the rows that move can be relinearised alone (windows): relinearising
        # every row for a few far ones cost more than it saved (a pack's thousands of rows)
        secant = (
            _secant_length(work, f, z_try, f_try, step, active, tol)
            if lin_try.merge is not None
            else None
        )
        accepted = ~active
        if secant is not None:
            # relinearise only the rows that move (a few percent of them, often)
            t, moved = secant, (secant != 1.0).nonzero()[:, 0]
            z_moved = torch.addcmul(z[moved], t[moved, None], step[moved])
            lin_moved = coupling.linearize(z_moved)
            z_try = z_try.index_copy(0, moved, z_moved)
            lin_try = lin_try.put(moved, lin_moved, reuse=True)
            f_moved = FixedPointProblem(work.y[moved], lam, coupling).residual(z_moved, lin_moved.B)
            f_try = f_try.index_copy(0, moved, f_moved)
        for halving in range(_MAX_HALVINGS + 1):
            if halving:
                t = torch.where(accepted, t, 0.5 * t)
                z_try = torch.addcmul(z, t[:, None], step)
                lin_try = coupling.linearize(z_try)
                f_try = work.residual(z_try, lin_try.B)
            accepted = accepted | (f_try.norm(dim=-1) <= (1.0 - 1e-4 * t) * fnorm)
            if bool(accepted.all()):
                break
        if not bool(accepted.all()):
            # no decrease along the Newton direction: the row sits on its rounding floor
            # (or the direction is useless); keep its iterate and stop working on it
            stalled |= ~accepted
            z_try = torch.addcmul(z, torch.where(accepted, t, 0.0)[:, None], step)
            lin_try = coupling.linearize(z_try)
            f_try = work.residual(z_try, lin_try.B)
        z, lin, f = z_try, lin_try, f_try
        previous, res = res, _max_abs(f)
    if rows is not None:
        z_all.index_copy_(0, rows, z)
        res_all.index_copy_(0, rows, res)
        z, res = z_all, res_all
        lin = lin_all.put(rows, lin, reuse=True) if linearization else None
    return z, _info(problem, z, tol, it, inner, res, lin if linearization else None, row_iters)


def _damped_iteration(
    problem: FixedPointProblem, z0: Tensor, tau: float, tol: float, max_iter: int
) -> tuple[Tensor, SolveInfo]:
    """z <- z - tau F(z) until every row is within tolerance or max_iter steps."""
    z = z0
    it = 0
    for it in range(max_iter + 1):
        f = problem.residual(z, problem.coupling.cross(z))
        res = _max_abs(f)
        if not bool((res > problem.row_tol(z, tol)).any()) or it == max_iter:
            break
        z = z - tau * f
    return z, _info(problem, z, tol, it, 0, res)


def descent(
    problem: FixedPointProblem, z0: Tensor, *, tol: float, max_iter: int = 5000, **_: bool
) -> tuple[Tensor, SolveInfo]:
    """Energy descent of Eq. (12) with the fixed step that guarantees monotone energy."""
    tau = 1.0 / (1.0 + 2.0 * problem.coupling.p * max(0.0, -problem.lam))
    return _damped_iteration(problem, z0, tau, tol, max_iter)


def picard(
    problem: FixedPointProblem, z0: Tensor, *, tol: float, max_iter: int = 200, **_: bool
) -> tuple[Tensor, SolveInfo]:
    """Plain fixed-point iteration z <- y - lam B(z) (the step tau = 1 of Eq. 12)."""
    return _damped_iteration(problem, z0, 1.0, tol, max_iter)


def _torchdeq(name: str):
    def solve(
        problem: FixedPointProblem, z0: Tensor, *, tol: float, max_iter: int = 50, **_: bool
    ) -> tuple[Tensor, SolveInfo]:
        from torchdeq.solver import get_solver as deq_solver

        def g(z: Tensor) -> Tensor:
            return problem.y - problem.lam * problem.coupling.cross(z)

        z, _, info = deq_solver(name)(g, z0, max_iter=max_iter, tol=tol, stop_mode="abs")
        res = _max_abs(problem.residual(z, problem.coupling.cross(z)))
        steps = int(info["nstep"].max().item()) if "nstep" in info else max_iter
        return z, _info(problem, z, tol, steps, 0, res)

    solve.__name__ = f"torchdeq_{name}"
    solve.__doc__ = f"TorchDEQ's {name} solver on g(z) = y - lam B(z)."
    return solve


SOLVERS: dict[str, Callable[..., tuple[Tensor, SolveInfo]]] = {
    "newton": newton,
    "descent": descent,
    "picard": picard,
    "anderson": _torchdeq("anderson"),
    "broyden": _torchdeq("broyden"),
}


def get_solver(name: str) -> Callable[..., tuple[Tensor, SolveInfo]]:
    """The solver registered under ``name``.

    Raises:
        ValueError: for an unknown name, listing the valid ones.
    """
    if name not in SOLVERS:
        raise ValueError(f"unknown solver {name!r}; valid names: {sorted(SOLVERS)}")
    return SOLVERS[name]
