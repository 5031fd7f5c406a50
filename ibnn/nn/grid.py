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

import torch
from torch import Tensor

from ibnn.nn.coupling import Linearization, PreciseCoupling, log_cosh, uniform_flat

__all__ = ["GridCoupling"]

_PAD = 3  # empty nodes kept on each side of a row's range


def _fft_size(n: int) -> int:
    """Smallest 2^a * 3^b >= n (fast sizes for pocketfft and cuFFT)."""
    best = 1 << max(0, (n - 1).bit_length())
    three = 1
    while three < n:
        size = three * (1 << max(0, math.ceil(math.log2(n / three))))
        best = min(best, size)
        three *= 3
    return best


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
    def _stencil(self, z: Tensor):
        """Per-row grids, the 4 node indices and cubic weights of every point.

        Returns:
            idx: (4, R, D) int64 node indices (the nodes base - 1 ... base + 2 of every
            point); wts: (4, R, D) weights; h: (R,) spacing; nodes: M, the number of grid
            nodes (max over rows). The stencil's axis comes first so that each of its four
            parts is one contiguous (R, D) block (a (R, 4, D) layout made the float64
            read-back several times slower).
        """
        zd = z.detach().double()  # positions on the grid in float64: see the class docstring
        lo, hi = zd.aminmax(dim=1)
        span = hi - lo
        h = torch.clamp(span / (self.max_nodes - 2 * _PAD - 4), min=self.ph / self.p)
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
        return idx, wts, h, nodes

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

    # -- the three grid operations -----------------------------------------------------------
    @staticmethod
    def _deposit(a: Tensor, idx: Tensor, wts: Tensor, nodes: int) -> Tensor:
        q = a.new_zeros(a.shape[0], nodes)
        for i, w in zip(idx, wts, strict=True):
            q.scatter_add_(1, i, a * w)
        return q

    @staticmethod
    def _gather(g: Tensor, idx: Tensor, wts: Tensor) -> Tensor:
        out = g.gather(1, idx[0]).mul_(wts[0])
        for i, w in zip(idx[1:], wts[1:], strict=True):
            out.addcmul_(g.gather(1, i), w)
        return out

    @staticmethod
    def _transform(q: Tensor, size: int) -> Tensor:
        """rfft of deposited grids, in float64 whatever the compute dtype (sums of M terms)."""
        return torch.fft.rfft(q.double(), n=size)

    @staticmethod
    def _convolve(q_hat: Tensor, kernel_hat: Tensor, size: int, nodes: int, dtype) -> Tensor:
        return torch.fft.irfft(q_hat * kernel_hat, n=size)[:, :nodes].to(dtype)

    # -- public protocol ---------------------------------------------------------------------
    def _unit_grids(self, z: Tensor, which: str):
        """Stencil of z, kernel transforms and the transform of the unit-weight deposit."""
        idx, wts, h, nodes = self._stencil(z)
        k_hat, size = self._kernels(h, nodes, torch.float64, which)
        unit = torch.full_like(z, 1.0 / z.shape[1])
        q_hat = self._transform(self._deposit(unit, idx, wts, nodes), size)
        return idx, wts, nodes, size, q_hat, k_hat

    def _read(self, q_hat, kernel_hat, size, nodes, idx, wts) -> Tensor:
        """Convolve a transformed deposit with a kernel and read it back at the points."""
        return self._gather(self._convolve(q_hat, kernel_hat, size, nodes, wts.dtype), idx, wts)

    def linearize(self, z: Tensor) -> Linearization:
        """B(z), diag(dB/dz) and v -> (dB/dz) v at z of shape (R, D)."""
        if not self.split_jacobian or self._cast(z).dtype == z.dtype:
            return super().linearize(z)
        return self._linearize(self._cast(z), jacobian=z.dtype)

    def _linearize(self, z: Tensor, jacobian: torch.dtype | None = None) -> Linearization:
        idx, wts, nodes, size, q_hat, k_hat = self._unit_grids(z, "ts")
        B = self._read(q_hat, k_hat[0], size, nodes, idx, wts)
        row_sum = self._read(q_hat, k_hat[1], size, nodes, idx, wts)
        kernel = k_hat[1]
        if jacobian is not None:  # B read in full precision, then everything in z's dtype
            B, row_sum, wts = B.to(jacobian), row_sum.to(jacobian), wts.to(jacobian)
            kernel = kernel.to(torch.promote_types(jacobian, torch.complex64))
        return self._assemble(B, row_sum, idx, wts, kernel, nodes, size, jacobian is not None)

    def _assemble(
        self, B, row_sum, idx, wts, kernel_hat, nodes: int, size: int, split: bool = False
    ) -> Linearization:
        """The linearization from B, the row sums of K, the stencil and the transformed sech^2
        kernel (one row shared by all, or one per row). Its matvec runs in ``wts``' dtype, with
        the FFT in float64 unless ``split`` (``split_jacobian``: the FFT in that dtype too)."""

        def transform(q: Tensor) -> Tensor:
            return torch.fft.rfft(q, n=size) if split else self._transform(q, size)

        def matvec(v: Tensor) -> Tensor:
            qv = transform(self._deposit(v / v.shape[1], idx, wts, nodes))
            return self._read(qv, kernel_hat, size, nodes, idx, wts) - row_sum * v

        def subset(rows: Tensor) -> Linearization:
            kernel = kernel_hat if kernel_hat.shape[0] == 1 else kernel_hat[rows]
            part = (B[rows], row_sum[rows], idx[:, rows], wts[:, rows])
            return self._assemble(*part, kernel, nodes, size, split)

        diag = self.p / B.shape[1] - row_sum
        return Linearization(B=B, diag=diag, matvec=matvec, subset=subset)

    def _linearize_flat(self, z: Tensor) -> Linearization:
        return uniform_flat(self.p, z)

    def _cross(self, z: Tensor) -> Tensor:
        idx, wts, nodes, size, q_hat, k_hat = self._unit_grids(z, "t")
        return self._read(q_hat, k_hat[0], size, nodes, idx, wts)

    def _energy(self, z: Tensor) -> Tensor:
        idx, wts, nodes, size, q_hat, k_hat = self._unit_grids(z, "e")
        return self._read(q_hat, k_hat[0], size, nodes, idx, wts).sum(-1)
