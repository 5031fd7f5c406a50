"""The implicit-bias neuron: maps linear pre-activations y to the fixed point z of Eq. (4).

:class:`ImplicitBias` holds everything that is not the linear filter: lam, p, the interaction
pattern w, the solver and its statistics. IBNN layers are standard torch layers followed by
this module; with a fixed ``lam = 0`` it returns y unchanged (the standard neuron).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ibnn.nn.coupling import Coupling, DenseCoupling, WindowCoupling
from ibnn.nn.grid import GridCoupling
from ibnn.nn.implicit import SolveRecord, cross_term, fixed_point
from ibnn.nn.solvers import default_tol, get_solver
from ibnn.vocab import check_lam, check_w_extent, lam_bound

__all__ = ["BACKENDS", "ImplicitBias", "NeuronStats", "record_stats"]

BACKENDS = ("auto", "dense", "grid", "window")
_GRID_MIN_UNITS = 64  # below this many units per row the exact O(D^2) sum is cheaper
_MIN_GAP = 1e-4  # a trainable lam stays <= (1 - _MIN_GAP) / (2p)
_STIFF_LAM = 0.25  # above this |lam| the fast path sums in float64 (its noise is scaled by lam)


@dataclass(frozen=True)
class NeuronStats:
    """Solver statistics of a layer's last forward (and backward) pass.

    Attributes:
        iters: forward solver iterations (Newton steps, ...).
        inner_iters: inner iterations of the forward solve (CG matvecs).
        residual: max over rows of the max-norm fixed-point residual.
        nonconverged_frac: fraction of samples with a row above the tolerance.
        converged: every row reached the tolerance.
        tol: the tolerance used.
        backward_iters: CG iterations of the last backward solve.
        backward_residual: relative residual of the last backward solve.
    """

    iters: int
    inner_iters: int
    residual: float
    nonconverged_frac: float
    converged: bool
    tol: float
    backward_iters: int = 0
    backward_residual: float = 0.0


def record_stats(
    record: SolveRecord, tol: float, samples: int, part: tuple[int, int] | None = None
) -> NeuronStats:
    """:class:`NeuronStats` of a solve's record, for all its rows or for one part of them.

    Args:
        record: a forward solve's record (``record.forward`` set).
        tol: the forward tolerance.
        samples: samples of the batch (the rows are ``samples`` equal blocks).
        part: ``(j, g)``: only the rows of the j-th of g equal parts of every sample's block
            (one trial of a pack of g trials solved together); None: every row.
    """
    info = record.forward

    def rows(t: Tensor) -> Tensor:
        t = t.reshape(samples, -1)
        if part is not None:
            j, g = part
            t = t.reshape(samples, g, -1)[:, j]
        return t

    def most(count: Tensor | None, whole: int) -> int:
        if part is None or count is None:
            return int(whole)
        return int(rows(count).max()) if count.numel() else 0

    per_sample = rows(info.converged).all(dim=1)
    return NeuronStats(
        iters=most(info.row_iters, info.iters),
        inner_iters=int(info.inner_iters),
        residual=float(rows(info.residual).max()),
        nonconverged_frac=float((~per_sample).float().mean()),
        converged=bool(per_sample.all()),
        tol=float(tol),
        backward_iters=most(record.backward_row_iters, record.backward_iters),
        backward_residual=float(record.backward_residual),
    )


class ImplicitBias(nn.Module):
    """z = y - lam * B(z) for the units of each row (Eq. 4 with y = W x + bias).

    Args:
        lam: weight of the implicit term; must satisfy lam < 1/(2p) unless allow_unsafe_lam.
        p: slope of sigma(u) = tanh(p u), p > 0.
        w_extent: None for uniform w over all units of a row; an odd k for a k x k window
            (conv maps only).
        lam_trainable: learn lam; it is parametrised as 1/(2p) - softplus(raw), so it stays
            below 1/(2p) (at most (1 - 1e-4)/(2p)) whatever the optimiser does.
        allow_unsafe_lam: opt in to lam >= 1/(2p) (no uniqueness guarantee).
        lite: IBNN-lite, one explicit step z = y - lam B(y) instead of the fixed point.
        solver: forward solver name (see :mod:`ibnn.nn.solvers`).
        tol: forward max-norm residual tolerance (None: by dtype).
        max_iter: solver iteration cap (None: the solver's default).
        backend: "auto", "dense" (exact O(D^2)), "grid" (fast, uniform w) or "window".
    """

    def __init__(
        self,
        *,
        lam: float = 0.0,
        p: float = 10.0,
        w_extent: int | None = None,
        lam_trainable: bool = False,
        allow_unsafe_lam: bool = False,
        lite: bool = False,
        solver: str = "newton",
        tol: float | None = None,
        max_iter: int | None = None,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        if not (isinstance(p, (int, float)) and math.isfinite(p) and p > 0):
            raise ValueError(f"`p > 0` must hold, but got p={p!r}")
        check_w_extent(w_extent)
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; valid names: {list(BACKENDS)}")
        if not allow_unsafe_lam:
            check_lam(float(lam), float(p), hint="pass allow_unsafe_lam=True to opt in")
        self.solve_fn = get_solver(solver)
        self.p = float(p)
        self.w_extent = None if w_extent is None else int(w_extent)
        self.lam_trainable = bool(lam_trainable)
        self.allow_unsafe_lam = bool(allow_unsafe_lam)
        self.lite = bool(lite)
        self.solver = solver
        self.tol = tol
        self.max_iter = max_iter
        self.backend = backend
        if lam_trainable:
            self.lam_raw = nn.Parameter(torch.tensor(self._to_raw(float(lam))))
        else:
            self.register_buffer("lam_fixed", torch.tensor(float(lam)))
        self.record = SolveRecord()
        self._couplings: dict[tuple, Coupling] = {}
        # where the rows of the next solves start from and leave their z (per-sample warm
        # starts, set by ibnn.nn.warm.WarmStarts.use); None: cold starts
        self.warm_start = None

    # -- lam ---------------------------------------------------------------------------------
    def _to_raw(self, lam: float) -> float:
        if self.allow_unsafe_lam:
            return lam
        gap = lam_bound(self.p) - lam  # softplus(raw) = gap > 0
        return gap + math.log(-math.expm1(-gap))

    @property
    def lam(self) -> Tensor:
        """Current lam as a 0-dim tensor (differentiable when trainable)."""
        if not self.lam_trainable:
            return self.lam_fixed
        if self.allow_unsafe_lam:
            return self.lam_raw
        # the gap to the bound never drops below 1e-4 of it: float32 cannot tell 0.05 - 1e-9
        # from 0.05, and lam must stay strictly inside the range
        gap = F.softplus(self.lam_raw).clamp_min(_MIN_GAP * lam_bound(self.p))
        return lam_bound(self.p) - gap

    @property
    def is_standard(self) -> bool:
        """True when this neuron is exactly the standard one (fixed lam = 0)."""
        return not self.lam_trainable and float(self.lam_fixed) == 0.0

    # -- interaction pattern -------------------------------------------------------------------
    def coupling(self, units: int, spatial: tuple[int, int] | None) -> Coupling:
        """The coupling for rows of ``units`` units (``spatial`` = (H, W) for conv maps)."""
        stiff = abs(float(self.lam.detach())) > _STIFF_LAM
        key = (units, spatial, stiff)
        if key not in self._couplings:
            self._couplings[key] = self._make_coupling(units, spatial, stiff)
        return self._couplings[key]

    def _make_coupling(self, units: int, spatial: tuple[int, int] | None, stiff: bool) -> Coupling:
        if self.w_extent is not None:
            if spatial is None:
                raise ValueError(
                    f"`w_extent` needs a conv map, but got w_extent={self.w_extent} "
                    "on a linear layer"
                )
            if self.backend not in ("auto", "window"):
                raise ValueError(
                    f"w_extent={self.w_extent} needs backend 'window', not {self.backend!r}"
                )
            return WindowCoupling(self.p, self.w_extent, *spatial)
        if self.backend == "window":
            raise ValueError("backend 'window' needs an odd `w_extent`, but got w_extent=None")
        if self.backend == "grid" or (self.backend == "auto" and units >= _GRID_MIN_UNITS):
            # stiff: B in float64, the Jacobian's matvecs in the layer's dtype (see GridCoupling)
            return GridCoupling(
                self.p, dtype=torch.float64 if stiff else None, split_jacobian=stiff
            )
        return DenseCoupling(self.p)

    # -- forward -------------------------------------------------------------------------------
    def forward(self, y: Tensor, spatial: tuple[int, int] | None = None) -> Tensor:
        """Solve for z.

        Args:
            y: (N, C, H, W) conv pre-activations with ``spatial=(H, W)`` (rows are (n, c)
                maps), or (..., D) linear pre-activations with ``spatial=None``.
            spatial: the map size for conv layers.

        Returns:
            z with the shape of y.
        """
        if self.is_standard:
            return y
        rows = y.reshape(-1, y.shape[-1] * y.shape[-2]) if spatial else y.reshape(-1, y.shape[-1])
        z = self.solve_rows(rows, spatial)
        self._samples = y.shape[0] if y.dim() > 1 else 1
        return z.reshape(y.shape)

    def solve_rows(
        self,
        rows: Tensor,
        spatial: tuple[int, int] | None = None,
        record: SolveRecord | None = None,
    ) -> Tensor:
        """z for independent rows (R, D): (n, c) maps of a conv layer (``spatial`` = (H, W)) or
        samples of a linear layer. The statistics go to ``record`` (default ``self.record``)."""
        coupling = self.coupling(rows.shape[-1], spatial)
        lam = self.lam.to(rows.dtype)
        if self.lite:
            return rows - lam * cross_term(rows, coupling)
        bwd_rtol = 1e-10 if rows.dtype == torch.float64 else 1e-5
        # a warm start only where the fixed point is unique (it must not pick a solution)
        warm = None if self.allow_unsafe_lam else self.warm_start
        z = fixed_point(
            rows, lam, coupling, self.solve_fn, self.tol_for(rows.dtype), self.max_iter,
            bwd_rtol, self.record if record is None else record,
            None if warm is None else warm.start(rows),
        )  # fmt: skip
        if warm is not None:
            warm.keep(z)
        return z

    def tol_for(self, dtype: torch.dtype) -> float:
        """The forward tolerance used for rows of ``dtype``."""
        return self.tol if self.tol is not None else default_tol(dtype)

    @property
    def last_stats(self) -> NeuronStats | None:
        """Statistics of the last forward (and backward) solve; None for lite/SM or before any."""
        if self.record.forward is None:
            return None
        tol = self.tol_for(self.record.forward.residual.dtype)
        return record_stats(self.record, tol, self._samples)

    def extra_repr(self) -> str:
        lam = float(self.lam.detach())
        return (
            f"lam={lam:.4g}, p={self.p:g}, w_extent={self.w_extent}, "
            f"trainable={self.lam_trainable}, lite={self.lite}, solver={self.solver!r}"
        )
