"""Fast cross term for uniform w = 1/D: each row's distribution convolved with tanh(p .).

With uniform weights, B_i(z) = g(z_i) where g(t) = mean_k tanh(p (z_k - t)) is one smooth 1-D
function per row. We put each row's points on a grid of its own (spacing h, origin at the row's
minimum), spread each point onto its 4 nearest nodes with cubic Lagrange weights, convolve the
grid with the kernel by FFT, and read g back at every point with the same cubic weights.
Both interpolations are exact for cubic polynomials, so the error is O((p h)^4): about 1e-6 at
the default p h = 0.05 (tests compare with the exact O(D^2) sum).

A row's grid depends on that row alone (its own minimum and spacing), so a sample's output does
not depend on the other samples in its batch. Cost per evaluation: O(D + M log M) per row, with
M = range(z_row) / h nodes, capped at ``max_nodes`` (beyond the cap h grows and accuracy degrades
gracefully; the solver statistics report the residual either way).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ibnn.nn import compiled
from ibnn.nn.coupling import Linearization, PreciseCoupling, log_cosh, uniform_flat

__all__ = ["GridCoupling"]

_PAD = 3  # empty nodes kept on each side of a row's range
_NUMPY = {torch.float32: np.float32, torch.float64: np.float64}
# the most grid nodes for which the Newton and backward systems are solved a row at a time with
# the convolution summed directly (the square of the nodes a row touches per matvec; above it,
# the batched CG with the FFT). 384 rows at lam = -0.3, row loop against batched, two runs:
# 176 nodes 9.6 / 11.8 and 12.2 / 16.5 ms, 246 nodes 13.5 / 12.1 and 12.5 / 14.0 ms,
# 337 nodes 20.6 / 15.3 and 16.6 / 14.9 ms, 804 nodes 71 / 29 ms
_ROW_CG_NODES = 224


def _fft_size(n: int) -> int:
    """Smallest 2^a * 3^b >= n (fast sizes for pocketfft and cuFFT)."""
    best = 1 << max(0, (n - 1).bit_length())
    three = 1
    while three < n:
        size = three * (1 << max(0, math.ceil(math.log2(n / three))))
        best = min(best, size)
        three *= 3
    return best


@dataclass(frozen=True)
class _Points:
    """Where every point of every row sits on its row's grid, and the dtype the point
    operations compute in.

    PyTorch path: ``index`` (4, R, D) int64 node indices (the nodes base - 1 ... base + 2 of
    every point) and ``weights`` (4, R, D) cubic weights in ``dtype``; the stencil's axis comes
    first so that each of its four parts is one contiguous (R, D) block (a (R, 4, D) layout
    made the float64 read-back several times slower). Compiled path
    (:mod:`ibnn.nn.compiled`): ``index`` (R, D) int32 base nodes and ``weights`` (R, D)
    float64 offsets from them, the weights formed as the loops go.
    """

    index: Tensor
    weights: Tensor
    dtype: torch.dtype

    @property
    def compiled(self) -> bool:
        return self.index.dim() == 2

    def take(self, rows: Tensor) -> _Points:
        if self.compiled:
            return _Points(self.index[rows], self.weights[rows], self.dtype)
        return _Points(self.index[:, rows], self.weights[:, rows], self.dtype)

    def to(self, dtype: torch.dtype) -> _Points:
        weights = self.weights if self.compiled else self.weights.to(dtype)
        return _Points(self.index, weights, dtype)

    def deposit(
        self, v: Tensor | None, count: int, nodes: int, dtype: torch.dtype = torch.float64
    ) -> Tensor:
        """(R, nodes) grids in ``dtype`` holding v / count (v None: 1 / count) at the points;
        the PyTorch path deposits in the points' dtype and casts."""
        if self.compiled:
            base, frac = self.index.numpy(), self.weights.numpy()
            numpy_dtype = _NUMPY[dtype]
            if v is None:
                q = compiled.deposit_constant(1.0 / count, base, frac, nodes, numpy_dtype)
            else:
                q = compiled.deposit(v.detach().numpy(), count, base, frac, nodes,
                                         numpy_dtype)  # fmt: skip
            return torch.from_numpy(q)
        if v is None:
            a = torch.full(self.index.shape[1:], 1.0 / count, dtype=self.dtype,
                           device=self.index.device)  # fmt: skip
        else:
            a = v / count
        q = a.new_zeros(a.shape[0], nodes)
        for i, w in zip(self.index, self.weights, strict=True):
            q.scatter_add_(1, i, a * w)
        return q.to(dtype)

    def gather(self, g: Tensor, nodes: int, diag: Tensor | None = None, v: Tensor | None = None):
        """(R, D) in the points' dtype: the grids g (R, >= nodes) read back at the points,
        minus diag * v where both are given."""
        if self.compiled:
            numpy_dtype = _NUMPY[self.dtype]
            extra = () if diag is None else (diag.numpy(), v.detach().numpy())
            return torch.from_numpy(
                compiled.gather(
                    g.numpy(), self.index.numpy(), self.weights.numpy(), numpy_dtype, *extra
                )  # fmt: skip
            )
        g = g[:, :nodes].to(self.dtype)
        out = g.gather(1, self.index[0]).mul_(self.weights[0])
        for i, w in zip(self.index[1:], self.weights[1:], strict=True):
            out.addcmul_(g.gather(1, i), w)
        return out if diag is None else out - diag * v


class GridCoupling(PreciseCoupling):
    """Uniform-weight cross term B_i(z) = (1/D) sum_k tanh(p (z_k - z_i)) on a per-row grid.

    Precision: a point's grid coordinate (z - origin) / h is formed in float64, since in
    float32 its rounding (~1e-7 of up to M nodes) would move the point by ~1e-7 and B by p times
    that; the interpolation weights, deposits and read-back then run in ``dtype`` (None: z's
    own; float32 halves the memory traffic of these memory-bound steps, at ~1e-7 noise on B)
    and the FFT convolution, a sum of M terms, in float64. Stiff layers (|lam| > 1, where
    the solver multiplies that noise by |lam|) should pass dtype=torch.float64.

    With ``split_jacobian``, only B (what the solver's residual and its stopping test read) is
    computed in ``dtype``; the Jacobian's matvecs, which only steer Newton's direction (solved
    to 1e-3 anyway) and the backward CG, run in z's own dtype, FFT included. For float32 z and
    dtype=torch.float64 that halves the matvec's memory traffic while the residual keeps its
    float64 accuracy.

    Args:
        p: slope of sigma(u) = tanh(p u).
        ph: grid spacing in units of 1/p (h = ph / p); 0.05 gives errors of about 1e-6 on B
            and its Jacobian, also for rows packed within 1/p.
        max_nodes: cap on grid nodes per row.
        dtype: compute dtype of weights, deposits and read-back (None: z's dtype).
        split_jacobian: the Jacobian's matvecs in z's own dtype (see above).
    """

    def __init__(
        self,
        p: float,
        ph: float = 0.05,
        max_nodes: int = 16384,
        dtype: torch.dtype | None = None,
        split_jacobian: bool = False,
    ) -> None:
        if not 0 < ph <= 0.5:
            raise ValueError(f"`0 < ph <= 0.5` must hold, but got ph={ph!r}")
        self.dtype = dtype
        self.split_jacobian = bool(split_jacobian)
        self.p = float(p)
        self.ph = float(ph)
        self.max_nodes = int(max_nodes)

    # -- grid construction -------------------------------------------------------------------
    def _stencil(self, z: Tensor) -> tuple[_Points, Tensor, int]:
        """Per-row grids and where every point sits on its row's grid.

        Returns:
            points: the stencil (:class:`_Points`); h: (R,) spacing; nodes: M, the number of
            grid nodes (max over rows).
        """
        zd = z.detach().double()  # positions on the grid in float64: see the class docstring
        min_h = self.ph / self.p
        cap = self.max_nodes - 2 * _PAD - 4
        if zd.device.type == "cpu" and compiled.enabled():
            base, frac, h, widest = compiled.stencil(zd.numpy(), _PAD, cap, min_h)
            nodes = widest + 2 * _PAD + 4
            points = _Points(torch.from_numpy(base), torch.from_numpy(frac), z.dtype)
            return points, torch.from_numpy(h), nodes
        lo, hi = zd.aminmax(dim=1)
        span = hi - lo
        h = torch.clamp(span / cap, min=min_h)
        u = (zd - (lo - _PAD * h)[:, None]) / h[:, None]
        base = torch.floor(u)
        f = (u - base).to(z.dtype)
        # cubic Lagrange weights of the nodes base-1, base, base+1, base+2 at offset f, each
        # written in place into its part of one (4, R, D) block (a stack of four temporaries
        # took 3x as long; same products in the same order, so the same bits)
        fm1, fm2, fp1 = f - 1.0, f - 2.0, f + 1.0
        ff = f * fm1
        wts = f.new_empty((4, *f.shape))
        torch.mul(ff, fm2, out=wts[0]).mul_(-1.0 / 6.0)
        torch.mul(fp1, fm1, out=wts[1]).mul_(fm2).mul_(0.5)
        torch.mul(fp1, f, out=wts[2]).mul_(fm2).mul_(-0.5)
        torch.mul(fp1, ff, out=wts[3]).div_(6.0)
        idx = base.long() + torch.arange(-1, 3, device=z.device)[:, None, None]
        nodes = int(torch.ceil(span / h).max().item()) + 2 * _PAD + 4
        return _Points(idx, wts, z.dtype), h, nodes

    def _kernels(self, h: Tensor, nodes: int, dtype: torch.dtype, which: str):
        """FFTs of the kernels named in ``which`` on a circular grid of size L >= 2 M.

        "t": c[m] = -tanh(p h m) (cross term), "s": p sech^2(p h m) (Jacobian),
        "e": S(h m) (energy). Returns a (len(which), R, L // 2 + 1) tensor and L.
        """
        size = _fft_size(2 * nodes)
        m = torch.arange(size, device=h.device, dtype=torch.float64)
        m = torch.where(m < size // 2, m, m - size)
        if bool((h == h[0]).all()):
            h = h[:1]  # one spacing for every row (the usual case): one kernel, broadcast
        x = self.p * h[:, None] * m  # (R or 1, L)
        t = torch.tanh(x)
        make = {
            "t": lambda: -t,
            "s": lambda: self.p * (1.0 - t * t),
            "e": lambda: log_cosh(x) / self.p,
        }
        kernels = torch.stack([make[c]() for c in which])
        return torch.fft.rfft(kernels.to(dtype), n=size), size

    # -- public protocol ---------------------------------------------------------------------
    def _unit_grids(self, z: Tensor, which: str):
        """Stencil of z, kernel transforms and the transform of the unit-weight deposit."""
        points, h, nodes = self._stencil(z)
        k_hat, size = self._kernels(h, nodes, torch.float64, which)
        q_hat = torch.fft.rfft(points.deposit(None, z.shape[1], nodes), n=size)
        return points, nodes, size, q_hat, k_hat, h

    @staticmethod
    def _read(q_hat, kernel_hat, size, nodes, points, diag=None, v=None) -> Tensor:
        """Convolve a transformed deposit with a kernel and read it back at the points (minus
        diag * v where given), in the points' dtype."""
        return points.gather(torch.fft.irfft(q_hat * kernel_hat, n=size), nodes, diag, v)

    def linearize(self, z: Tensor) -> Linearization:
        """B(z), diag(dB/dz) and v -> (dB/dz) v at z of shape (R, D)."""
        if not self.split_jacobian or self._cast(z).dtype == z.dtype:
            return super().linearize(z)
        return self._linearize(self._cast(z), jacobian=z.dtype)

    def _linearize(self, z: Tensor, jacobian: torch.dtype | None = None) -> Linearization:
        points, nodes, size, q_hat, k_hat, h = self._unit_grids(z, "ts")
        B = self._read(q_hat, k_hat[0], size, nodes, points)
        row_sum = self._read(q_hat, k_hat[1], size, nodes, points)
        kernel = k_hat[1]
        if jacobian is not None:  # B read in full precision, then everything in z's dtype
            B, row_sum, points = B.to(jacobian), row_sum.to(jacobian), points.to(jacobian)
            kernel = kernel.to(torch.promote_types(jacobian, torch.complex64))
        return self._assemble(B, row_sum, points, kernel, nodes, size, jacobian is not None, h)

    def _assemble(
        self,
        B,
        row_sum,
        points: _Points,
        kernel_hat,
        nodes: int,
        size: int,
        split: bool = False,
        h: Tensor | None = None,
    ) -> Linearization:
        """The linearization from B, the row sums of K, the stencil and the transformed sech^2
        kernel (one row shared by all, or one per row). Its matvec runs in the points' dtype,
        with the deposit and FFT in float64 unless ``split`` (``split_jacobian``: in that
        dtype too)."""
        deposit_dtype = points.dtype if split else torch.float64

        def matvec(v: Tensor) -> Tensor:
            q = points.deposit(v, v.shape[1], nodes, deposit_dtype)
            return self._read(torch.fft.rfft(q, n=size), kernel_hat, size, nodes, points,
                              row_sum, v)  # fmt: skip

        def subset(rows: Tensor) -> Linearization:
            kernel = kernel_hat if kernel_hat.shape[0] == 1 else kernel_hat[rows]
            part = (B[rows], row_sum[rows], points.take(rows))
            return self._assemble(*part, kernel, nodes, size, split, spacing(rows))

        def spacing(rows: Tensor) -> Tensor | None:
            return h if h is None or h.shape[0] == 1 else h[rows]

        def solve(lam: float, b: Tensor, target: Tensor, max_iter: int):
            # CG a row at a time, the convolution summed directly on grids of up to
            # _ROW_CG_NODES nodes (compiled.grid_cg; docs/performance.md, "A fifth round")
            if h is None or nodes > _ROW_CG_NODES or not points.compiled:
                return None
            if b.dtype not in _NUMPY or not compiled.enabled() or b.device.type != "cpu":
                return None
            m = torch.arange(nodes, dtype=torch.float64)
            spacings = h[:1] if bool((h == h[0]).all()) else h  # one kernel where it is shared
            kernel_s = self.p * (1.0 - torch.tanh(self.p * spacings[:, None] * m) ** 2)
            x, steps, r_norm = compiled.grid_cg(
                points.index.numpy(), points.weights.numpy(), kernel_s.numpy(),
                row_sum.to(b.dtype).contiguous().numpy(), self.p / B.shape[1], lam,
                b.contiguous().numpy(), target.double().contiguous().numpy(), max_iter,
            )  # fmt: skip
            return torch.from_numpy(x), torch.from_numpy(steps), torch.from_numpy(r_norm)

        diag = self.p / B.shape[1] - row_sum
        return Linearization(B=B, diag=diag, matvec=matvec, subset=subset, solve=solve)

    def _linearize_flat(self, z: Tensor) -> Linearization:
        return uniform_flat(self.p, z)

    def _cross(self, z: Tensor) -> Tensor:
        points, nodes, size, q_hat, k_hat, _ = self._unit_grids(z, "t")
        return self._read(q_hat, k_hat[0], size, nodes, points)

    def _energy(self, z: Tensor) -> Tensor:
        points, nodes, size, q_hat, k_hat, _ = self._unit_grids(z, "e")
        return self._read(q_hat, k_hat[0], size, nodes, points).sum(-1)
