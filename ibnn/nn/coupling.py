"""The cross term B(z) of Eq. (16) and its Jacobian, for each interaction pattern w.

A layer's units are grouped in independent *rows*: one row is one sample of a linear layer,
or one (sample, output channel) pair of a conv layer, and w couples units of a row only.
Every coupling works on z of shape (R, D) and returns a :class:`Linearization` at z:

    B_i(z)          = sum_k w_ik tanh(p (z_k - z_i))                  (Eq. 16)
    (dB/dz v)_i     = sum_k K_ik (v_k - v_i),  K_ik = w_ik p sech^2(p (z_k - z_i))
    energy_i(z)     = sum_k w_ik S(z_k - z_i),  S(u) = log(cosh(p u)) / p   (Eq. 5, Eq. 13)

dB/dz = K - diag(K 1) is symmetric and negative semi-definite, so I + lam dB/dz is symmetric
positive definite for every lam < 1/(2p): the Newton and backward systems are solved with CG.

Three couplings:
- :class:`DenseCoupling`: exact O(D^2) pairwise sums with uniform w = 1/D (linear layers,
  small conv maps, and the reference for everything else).
- :class:`WindowCoupling`: exact sums over a k x k window of a conv map, w = 1/k^2 inside the
  window and the image.
- :class:`ibnn.nn.grid.GridCoupling`: uniform w = 1/D in O(D + M log M) per row (fast path).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ibnn.nn import compiled
from ibnn.vocab import check_w_extent

__all__ = [
    "Coupling",
    "Jacobi",
    "Linearization",
    "PreciseCoupling",
    "DenseCoupling",
    "WindowCoupling",
    "log_cosh",
    "tanh_",
    "uniform_flat",
]

_DENSE_CHUNK = 1 << 24  # elements of a (rows, D, D) block materialised at once
# windowed CG uses the spectral preconditioner from -lam * (mean row sum of K) * k^2 = 90 on:
# its cost per iteration is fixed and the matvec's grows with the window's k^2 - 1 pairs per
# unit, so it pays from a weaker coupling at wide windows. Measured on real Fashion-MNIST
# pre-activations, Jacobi against it, the crossover lay at -lam p (mean sech^2) of 9-13 for
# k = 3, about 4.2 for k = 5 and below 2.1 for k = 7 (28 x 28 maps)
_SPECTRAL_FROM = 90.0
# share of the cosine modes per axis (the lowest) that the window preconditioner gives their
# own factor; the others share their mean factor (see WindowCoupling's smoother)
_SPECTRAL_LOW = 0.5
_DIRECT_FLAT_UNITS = 1024  # largest map (H * W units) whose linear start is solved directly


def tanh_(x: Tensor) -> Tensor:
    """tanh in place. On the CPU, for a contiguous float tensor outside autograd, through
    NumPy's vectorised tanh: 1.3 ms against torch's 9.2 ms for 3.6M float32 values on the
    development machine (torch 2.14, one thread), within 6e-8 of the float64 tanh (torch's:
    3e-8; float32's spacing near 1 is 6e-8). Elsewhere ``Tensor.tanh_``."""
    fast = x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)
    if fast and x.is_contiguous() and not (x.requires_grad and torch.is_grad_enabled()):
        array = x.detach().numpy()
        np.tanh(array, out=array)
        return x
    return x.tanh_()


def log_cosh(x: Tensor) -> Tensor:
    """Numerically stable log(cosh(x)) for any finite x."""
    a = x.abs()
    return a + torch.log1p(torch.exp(-2.0 * a)) - math.log(2.0)


@dataclass
class Linearization:
    """The cross term and its Jacobian at one point z of shape (R, D).

    Attributes:
        B: (R, D) cross term B(z).
        diag: (R, D) diagonal of dB/dz (non-positive).
        matvec: maps v of shape (R, D) to (dB/dz) v, shape (R, D).
        smoother: lam -> the coupling's own preconditioner for that lam, or None (Jacobi).
        subset: row indices -> the linearization of those rows (see :meth:`take`).
        merge: (row indices, part) -> the merged linearization (see :meth:`put`).
        state: the coupling's own tensors behind matvec, which ``merge`` reads from a part.
        solve: the coupling's own solver of (I + lam dB/dz) x = b, or None:
            (lam, b (R, D), target (R,), max_iter) -> (x (NaN in a row whose residual is
            not finite), CG iterations per row (R,), final ||r||_2 per row (R,)), each row
            iterated until ||r||_2 <= its target; it returns None for a b it does not take
            (then :func:`ibnn.nn.solvers.cg` solves the system).
    """

    B: Tensor
    diag: Tensor
    matvec: Callable[[Tensor], Tensor]
    smoother: Callable[[float], Callable[[Tensor], Tensor] | None] | None = None
    subset: Callable[[Tensor], Linearization] | None = None
    merge: Callable[[Tensor, Linearization, bool], Linearization] | None = None
    state: tuple = ()
    solve: Callable[[float, Tensor, Tensor, int], tuple[Tensor, Tensor, Tensor] | None] | None = (
        None
    )

    def take(self, rows: Tensor) -> Linearization | None:
        """The same linearization for the rows ``rows`` (int64 indices) alone, or None where the
        coupling cannot select rows. Solvers use it to stop working on rows that are done."""
        return None if self.subset is None else self.subset(rows)

    def put(self, rows: Tensor, part: Linearization, reuse: bool = False) -> Linearization | None:
        """A copy of this linearization whose rows ``rows`` are ``part``'s (a linearization of
        as many rows by the same coupling), or None where the coupling cannot merge. With
        ``reuse`` the copy is built in this linearization's own tensors (no copy of them): for a
        caller that does not use this one again."""
        return None if self.merge is None else self.merge(rows, part, reuse)

    def preconditioner(self, lam: float) -> Callable[[Tensor], Tensor]:
        """r -> M^-1 r for an SPD M approximating I + lam dB/dz, for CG.

        The coupling's own ``smoother(lam)`` when it has one for this lam, else Jacobi
        (the exact inverse diagonal 1 / (1 + lam diag)), exact on the constant mode
        (:class:`Jacobi`).
        """
        custom = None if self.smoother is None else self.smoother(lam)
        if custom is not None:
            return custom
        return Jacobi(1.0 / (1.0 + lam * self.diag))


class Jacobi:
    """Jacobi's preconditioner made exact on the constant mode.

    Every coupling's Jacobian sends a constant row to 0 (B depends on differences only), so
    H = I + lam dB/dz has the constant vector 1 as an eigenvector of eigenvalue 1, while
    the other eigenvalues of a stiff layer sit near 1 - lam (row sum of K): after the Jacobi
    scaling the constant mode was an outlier that cost CG iterations. With Q = I - 1 1^T / D
    (the mean-zero part of a row),

        M^-1 r = Q diag(inverse) Q r + mean(r) 1,

    SPD, Jacobi's on the mean-zero part and exact on the constant one. Measured on real
    pre-activations (global w, warm starts): forward CG iterations 297 -> 178 at lam = -1
    and 415 -> 317 at lam = -0.3, backward 96 -> 72 and 143 -> 120. :func:`ibnn.nn.solvers.cg`
    folds it into its compiled updates; a plain inverse-diagonal tensor given to ``cg`` stays
    plain Jacobi.

    Args:
        inverse: (R, D) or (1, D) inverse diagonal 1 / (1 + lam diag).
    """

    def __init__(self, inverse: Tensor) -> None:
        self.inverse = inverse

    def __call__(self, r: Tensor) -> Tensor:
        mean = r.mean(-1, keepdim=True)
        s = self.inverse * (r - mean)
        return s - s.mean(-1, keepdim=True) + mean


class Coupling(Protocol):
    """What solvers and the implicit backward need from an interaction pattern."""

    p: float

    def linearize(self, z: Tensor) -> Linearization:
        """B(z), the diagonal of dB/dz and a matvec with dB/dz, for z of shape (R, D)."""
        ...

    def linearize_flat(self, z: Tensor) -> Linearization:
        """The linearization at a constant row (every pair in tanh's linear range), for rows
        shaped like z; equal to ``linearize(zeros_like(z))`` without evaluating any tanh (its B
        and diag may be (1, D), broadcast over the rows)."""
        ...

    def cross(self, z: Tensor) -> Tensor:
        """B(z) alone, shape (R, D)."""
        ...

    def solve_flat(self, y: Tensor, lam: float) -> Tensor | None:
        """z solving (I + lam J0) z = y for the Jacobian J0 at a constant row, by a direct
        method, for lam < 0; None where the coupling has none (the solver then uses CG)."""
        ...

    def energy(self, z: Tensor) -> Tensor:
        """Per-row interaction energy sum_i sum_k w_ik S(z_k - z_i), shape (R,)."""
        ...


class PreciseCoupling:
    """Base of the couplings: public methods take z in any float dtype, compute the sums in
    ``self.dtype`` (None: z's own dtype) and return z's dtype.

    The cross term sums D terms of size ~1 and the solver multiplies it by lam (up to 10), so
    the exact couplings form their sums in float64 (memory-bound: no slower on the CPU).
    Subclasses implement ``_cross``, ``_energy`` and ``_linearize``.
    """

    p: float
    dtype: torch.dtype | None = torch.float64

    def _cast(self, z: Tensor) -> Tensor:
        return z if self.dtype is None else z.to(self.dtype)

    def cross(self, z: Tensor) -> Tensor:
        """B(z), shape (R, D)."""
        return self._cross(self._cast(z)).to(z.dtype)

    def energy(self, z: Tensor) -> Tensor:
        """Per-row sum_i sum_k w_ik S(z_k - z_i), shape (R,)."""
        return self._energy(self._cast(z)).to(z.dtype)

    def linearize(self, z: Tensor) -> Linearization:
        """B(z), diag(dB/dz) and v -> (dB/dz) v at z of shape (R, D)."""
        return self._wrap(self._linearize(self._cast(z)), z.dtype)

    def linearize_flat(self, z: Tensor) -> Linearization:
        """The linearization at a constant row, for rows shaped like z (no tanh evaluated)."""
        return self._wrap(self._linearize_flat(self._cast(z)), z.dtype)

    def _linearize_flat(self, z: Tensor) -> Linearization:
        return self._linearize(torch.zeros_like(z))

    def solve_flat(self, y: Tensor, lam: float) -> Tensor | None:
        """z solving (I + lam J0) z = y directly (J0: the Jacobian at a constant row), or None."""
        z = self._solve_flat(self._cast(y), lam)
        return None if z is None else z.to(y.dtype)

    def _solve_flat(self, y: Tensor, lam: float) -> Tensor | None:
        return None

    def _wrap(self, lin: Linearization, dtype: torch.dtype) -> Linearization:
        """``lin`` (computed in ``self.dtype``) taking and returning ``dtype``."""
        if lin.B.dtype == dtype:
            return lin
        inner = lin.matvec

        def matvec(v: Tensor) -> Tensor:
            return inner(self._cast(v)).to(v.dtype)

        def smoother(lam: float) -> Callable[[Tensor], Tensor] | None:
            apply = None if lin.smoother is None else lin.smoother(lam)
            if apply is None:
                return None
            return lambda r: apply(self._cast(r)).to(r.dtype)

        subset = None
        if lin.subset is not None:
            subset = lambda rows: self._wrap(lin.subset(rows), dtype)  # noqa: E731
        return Linearization(
            B=lin.B.to(dtype), diag=lin.diag.to(dtype), matvec=matvec, smoother=smoother,
            subset=subset,
        )  # fmt: skip


def uniform_flat(p: float, z: Tensor) -> Linearization:
    """Linearization of uniform w = 1/D at a constant row: K_ik = p / D for every pair, so
    (dB/dz v)_i = p (mean(v) - v_i) in O(D); B and diag are (1, D), broadcast over the rows."""
    flat = Linearization(
        B=z.new_zeros(1, z.shape[1]),
        diag=z.new_full((1, z.shape[1]), p / z.shape[1] - p),
        matvec=lambda v: p * (v.mean(-1, keepdim=True) - v),
    )
    flat.subset = lambda rows: flat  # the same for every row
    return flat


class DenseCoupling(PreciseCoupling):
    """Exact pairwise cross term with uniform weights w_ik = 1/D over all D units of a row.

    Args:
        p: slope of sigma(u) = tanh(p u).
    """

    def __init__(self, p: float) -> None:
        self.p = float(p)

    def _chunks(self, z: Tensor):
        rows, d = z.shape
        step = max(1, _DENSE_CHUNK // max(1, d * d))
        for start in range(0, rows, step):
            yield slice(start, min(rows, start + step))

    def _diff(self, z: Tensor) -> Tensor:
        # diff[r, i, k] = z_k - z_i
        return z[:, None, :] - z[:, :, None]

    def _cross(self, z: Tensor) -> Tensor:
        out = torch.empty_like(z)
        for s in self._chunks(z):
            out[s] = tanh_(self.p * self._diff(z[s])).mean(-1)
        return out

    def _energy(self, z: Tensor) -> Tensor:
        out = z.new_empty(z.shape[0])
        for s in self._chunks(z):
            out[s] = (log_cosh(self.p * self._diff(z[s])) / self.p).mean(-1).sum(-1)
        return out

    def _linearize(self, z: Tensor) -> Linearization:
        d_units = z.shape[1]
        B = torch.empty_like(z)
        row_sum = torch.empty_like(z)
        kernels = []
        for s in self._chunks(z):
            t = tanh_(self.p * self._diff(z[s]))
            k = (self.p / d_units) * (1.0 - t * t)
            B[s] = t.mean(-1)
            row_sum[s] = k.sum(-1)
            kernels.append((s, k))

        return self._assemble(B, row_sum, kernels, self.p / d_units)

    def _assemble(self, B: Tensor, row_sum: Tensor, kernels: list, w_p: float) -> Linearization:
        """The linearization from B, the row sums of K and K's blocks [(row slice, (r, D, D))]."""

        def matvec(v: Tensor) -> Tensor:
            out = torch.empty_like(v)
            for s, k in kernels:
                out[s] = torch.bmm(k, v[s].unsqueeze(-1)).squeeze(-1) - row_sum[s] * v[s]
            return out

        def subset(rows: Tensor) -> Linearization:
            k = kernels[0][1][rows]
            return self._assemble(B[rows], row_sum[rows], [(slice(None), k)], w_p)

        diag = w_p - row_sum
        # rows are selected from a single block only (several: memory was the limit)
        return Linearization(
            B=B, diag=diag, matvec=matvec, subset=subset if len(kernels) == 1 else None
        )

    def _linearize_flat(self, z: Tensor) -> Linearization:
        return uniform_flat(self.p, z)


class WindowCoupling(PreciseCoupling):
    """Exact cross term over a k x k window of each conv map, by shifted copies of the map.

    w_ik = 1/k^2 when unit k lies in the k x k window centred on unit i and inside the image,
    0 otherwise. The pattern is symmetric (w_ik = w_ki); rows near the border sum to less than 1.

    Each pair (i, i + o) is visited once, for the (k^2 - 1) / 2 offsets o of one half-window:
    tanh(p (z_{i+o} - z_i)) counts +1 at unit i and -1 at unit i + o, and its sech^2 is the
    Jacobian entry K_{i,i+o} = K_{i+o,i}. :meth:`linearize` evaluates tanh once per pair and
    stores the (k^2 - 1) / 2 maps of K, so every matvec is 2 fused multiply-adds per offset on
    shifted views of the flat (R, D) rows, with no (R, k^2, D) tensor formed.

    Preconditioner: for stiff lam Jacobi leaves CG with the smooth modes of a
    graph Laplacian (iterations growing with |lam| p). There the linearization offers the
    inverse of I - lam s L, with s the row's mean sech^2 and L the window Laplacian at
    K = p / k^2 in the DCT-II basis (the cosine modes of a map with reflecting borders:
    p / k^2 sum_{o != 0} (1 - cos(theta . o)) at theta = pi (j_y / H, j_x / W)), applied by two
    small dense transforms per map between two Jacobi scalings: an SPD approximation that is
    close where the stiff solution has pulled neighbours within 1/p of each other (s near 1).
    The cosine modes fit the image's borders better than the periodic (FFT) modes used before
    and need fewer CG iterations (e.g. 55 -> 33 forward and 20 -> 12 backward at lam = -10,
    p = 20, w_extent = 5). CG's stopping test is on the true residual, so the preconditioner
    changes speed, not accuracy. It is used where it pays for its fixed cost per iteration
    (two transforms per map) against the matvec's ((k^2 - 1) / 2 offsets): from
    -lam * (mean row sum of K) * k^2 >= 90, i.e. from -lam p (mean sech^2) of about 12 at
    k = 3, 4 at k = 5 and 2 at k = 7 on 28 x 28 maps.

    Linear start: the system at a constant row, (I + lam J0) z = y, is one matrix for every
    row; :meth:`solve_flat` solves it directly in J0's eigenbasis (maps up to 1024 units).

    Precision: the sums run in ``dtype`` (None: z's own). In float32 B is off by ~1e-7 (sums
    of at most k^2 terms of size 1/k^2), below the solver's rounding floor for every lam
    (see :meth:`ibnn.nn.solvers.FixedPointProblem.row_tol`); pass dtype=torch.float64 for
    the reference.

    Args:
        p: slope of sigma(u) = tanh(p u).
        extent: odd window side k.
        height: map height H (rows have D = H * W units, row-major).
        width: map width W.
        dtype: compute dtype (None: z's dtype).
    """

    def __init__(
        self, p: float, extent: int, height: int, width: int, dtype: torch.dtype | None = None
    ) -> None:
        if extent is None:
            raise ValueError("a window coupling needs an odd `w_extent`, but got None")
        check_w_extent(extent)
        self.p = float(p)
        self.extent = int(extent)
        self.height = int(height)
        self.width = int(width)
        self.dtype = dtype
        r = self.extent // 2
        self.offsets = [
            (dy, dx) for dy in range(r + 1) for dx in range(-r, r + 1) if dy > 0 or dx > 0
        ]
        self._cache: dict[tuple, Tensor] = {}
        self._flat_lam: float | None = None  # lam of the last direct flat solve

    # -- shifted views ---------------------------------------------------------------------
    # Maps are kept flat (row-major) with a zero margin of r W + r units at each end, so that a
    # shift by (dy, dx) is the flat offset dy W + dx and every fused multiply-add runs over
    # whole rows of D units (1.75x faster here than over the 28-unit lines of (R, H, W) views).
    # Where i + (dy, dx) leaves the image such a view reads a unit of the next or previous line
    # (or the margin); every use multiplies that entry by a mask or a K that is 0 there.
    def _margin(self) -> int:
        r = self.extent // 2
        return r * self.width + r

    def _pad(self, v: Tensor) -> Tensor:
        """(R, D) -> (R, D + 2 (r W + r)) flat rows with zero margins."""
        m = self._margin()
        return F.pad(v.reshape(-1, self.height * self.width), (m, m))

    def _at(self, padded: Tensor, dy: int, dx: int) -> Tensor:
        """(R, D) view whose entry at unit i is the padded rows' entry at i + (dy, dx) (another
        unit or the margin where that leaves the image: masked by the caller)."""
        start = self._margin() + dy * self.width + dx
        return padded[:, start : start + self.height * self.width]

    def masks(self, like: Tensor) -> Tensor:
        """(n_offsets, 1, D): 1 where unit i + o lies inside the image, else 0."""
        key = (like.device, like.dtype)
        if key not in self._cache:
            ys = torch.arange(self.height, device=like.device).repeat_interleave(self.width)
            xs = torch.arange(self.width, device=like.device).repeat(self.height)
            inside = [
                (ys + dy >= 0) & (ys + dy < self.height) & (xs + dx >= 0) & (xs + dx < self.width)
                for dy, dx in self.offsets
            ]
            self._cache[key] = torch.stack(inside)[:, None, :].to(like.dtype)
        return self._cache[key]

    def _pair_diffs(self, z: Tensor) -> Tensor:
        """(n_offsets, R, D): z_{i+o} - z_i for every unit i and half-window offset o (any
        finite value where i + o leaves the image)."""
        padded = self._pad(z)
        z = z.reshape(-1, self.height * self.width)
        if z.requires_grad and torch.is_grad_enabled():  # out= is not differentiable
            return torch.stack([self._at(padded, *o) for o in self.offsets]) - z
        out = z.new_empty(len(self.offsets), *z.shape)
        for diff, o in zip(out, self.offsets, strict=True):
            torch.sub(self._at(padded, *o), z, out=diff)
        return out

    # -- compiled loops (CPU; see ibnn.nn.compiled) -------------------------------------------
    def _compiled(self, *tensors: Tensor) -> bool:
        """Whether ``tensors`` go through the compiled loops: float CPU tensors outside
        autograd, with the loops available."""
        return compiled.enabled() and all(
            t.device.type == "cpu"
            and t.dtype in (torch.float32, torch.float64)
            and not (t.requires_grad and torch.is_grad_enabled())
            for t in tensors
        )

    def _shifts(self) -> np.ndarray:
        """(n_offsets,) int64 flat shifts dy W + dx of the half-window offsets."""
        if "shifts" not in self._cache:
            shifts = [dy * self.width + dx for dy, dx in self.offsets]
            self._cache["shifts"] = np.asarray(shifts, dtype=np.int64)
        return self._cache["shifts"]

    def _compiled_pair_tanh(self, z: Tensor) -> np.ndarray:
        """(R, n_offsets, D) tanh(p z_{i+o} - p z_i), unmasked."""
        zn = z.detach().reshape(-1, self.height * self.width).contiguous().numpy()
        t = compiled.pair_differences(zn, self.p, self._shifts())
        np.tanh(t, out=t)
        return t

    def _symmetric_sum(self, pairs: Tensor) -> Tensor:
        """sum_o pairs_o(i) + pairs_o(i - o): each pair value added at both of its units."""
        return self._paired_sum(pairs, Tensor.add_)

    def _antisymmetric_sum(self, pairs: Tensor) -> Tensor:
        """sum_o pairs_o(i) - pairs_o(i - o): each pair value added at i, subtracted at i + o."""
        return self._paired_sum(pairs, Tensor.sub_)

    def _paired_sum(self, pairs: Tensor, at_partner) -> Tensor:
        """Each pair value at its first unit i, and ``at_partner`` (add or subtract) at i + o.

        Args:
            pairs: (n_offsets, R, D), zero where i + o lies outside the image.
            at_partner: ``Tensor.add_`` or ``Tensor.sub_``.
        Returns:
            (R, D).
        """
        out = self._pad(pairs.sum(0))
        for o, value in zip(self.offsets, pairs, strict=True):
            at_partner(self._at(out, *o), value)
        return self._at(out, 0, 0).contiguous()

    # -- protocol ----------------------------------------------------------------------------
    def _cross(self, z: Tensor) -> Tensor:
        if self._compiled(z):
            t, masks = self._compiled_pair_tanh(z), self.masks(z)[:, 0].numpy()
            B = compiled.window_cross(t, masks, self._shifts(), 1.0 / self.extent**2)
            return torch.from_numpy(B)
        t = tanh_(self._pair_diffs(self.p * z)).mul_(self.masks(z))
        return self._antisymmetric_sum(t).mul_(1.0 / self.extent**2)

    def _energy(self, z: Tensor) -> Tensor:
        s = log_cosh(self.p * self._pair_diffs(z)) * self.masks(z)
        return 2.0 * s.sum(dim=(0, 2)) / (self.p * self.extent**2)  # S is even

    def _linearize(self, z: Tensor) -> Linearization:
        w = 1.0 / self.extent**2
        masks = self.masks(z)
        if self._compiled(z):
            t = self._compiled_pair_tanh(z)
            shifts, mask_rows = self._shifts(), masks[:, 0].numpy()
            B, k, row_sum = compiled.window_terms(t, mask_rows, shifts, w, w * self.p)
            # K laid out (R, n_offsets, D), handed on as its (n_offsets, R, D) view
            k = torch.from_numpy(k).transpose(0, 1)
            return self._assemble(torch.from_numpy(B), k, torch.from_numpy(row_sum))
        t = tanh_(self._pair_diffs(self.p * z)).mul_(masks)
        B = self._antisymmetric_sum(t) * w
        k = torch.addcmul(masks, t, t, value=-1.0).mul_(w * self.p)  # K_{i,i+o}, 0 outside
        return self._assemble(B, k, self._symmetric_sum(k))

    def _linearize_flat(self, z: Tensor) -> Linearization:
        # sech^2 = 1 for every pair: K is the masks, the same for every row (broadcast)
        k = self.masks(z) * (self.p / self.extent**2)
        flat = self._assemble(z.new_zeros(1, z.shape[1]), k, self._symmetric_sum(k))
        flat.subset = lambda rows: flat
        return flat

    def _solve_flat(self, y: Tensor, lam: float) -> Tensor | None:
        """The linear start's system (I + lam J0) z = y, the same matrix for every row, solved
        in J0's eigenbasis: J0 = Q diag(mu) Q^T once per map size (eigh in float64), then
        z = y Q diag(1 / (1 + lam mu)) Q^T, two (R, D) x (D, D) products; from the second call
        with the same lam on (a fixed lam), the inverse itself is kept and applied in one.
        For 28 x 28 maps and k = 5 to 7 this replaced 7-9 preconditioned CG iterations (40-80 ms
        at 384 rows here) by 5-15 ms, and solves exactly where CG stopped at 1e-3. None for
        maps of more than 1024 units (the eigendecomposition grows as D^3)."""
        d = y.shape[-1]
        if d > _DIRECT_FLAT_UNITS or lam >= 0:
            return None
        key = ("flat_eigh", y.device, y.dtype)
        if key not in self._cache:
            eye = torch.eye(d, device=y.device, dtype=torch.float64)
            j0 = self._linearize_flat(eye).matvec(eye)  # row i: J0 e_i (J0 is symmetric)
            mu, q = torch.linalg.eigh(0.5 * (j0 + j0.T))
            self._cache[key] = q.to(y.dtype)
            self._cache[("flat_mu", y.device, y.dtype)] = mu
        q = self._cache[key]
        scale = (1.0 / (1.0 + lam * self._cache[("flat_mu", y.device, y.dtype)])).to(y.dtype)
        inverse_key = ("flat_inverse", float(lam), y.device, y.dtype)
        if inverse_key not in self._cache and self._flat_lam == float(lam):
            for old in [k for k in self._cache if k[0] == "flat_inverse"]:
                del self._cache[old]
            self._cache[inverse_key] = (q * scale) @ q.T
        self._flat_lam = float(lam)
        if inverse_key in self._cache:
            return y @ self._cache[inverse_key]
        return ((y @ q) * scale) @ q.T

    def _assemble(self, B: Tensor, k: Tensor, row_sum: Tensor) -> Linearization:
        """The linearization from B (R, D), the pair maps K_{i,i+o} (n_offsets, R, D) and
        their row sums (R, D); R may be 1 for maps shared by every row."""
        w = 1.0 / self.extent**2
        masks = self.masks(k)
        offsets = self.offsets

        def matvec(v: Tensor) -> Tensor:
            if k.shape[1] == v.shape[0] == row_sum.shape[0] and self._compiled(v, k):
                by_row = k.transpose(0, 1).contiguous()  # no copy where K came from the loops
                out = compiled.window_matvec(
                    by_row.numpy(), self._shifts(), row_sum.contiguous().numpy(),
                    v.detach().contiguous().numpy(),
                )  # fmt: skip
                return torch.from_numpy(out)
            padded = self._pad(v)
            out = self._pad(-row_sum * v)
            centre = self._at(out, 0, 0)
            for o, k_o in zip(offsets, k, strict=True):
                centre.addcmul_(k_o, self._at(padded, *o))  # K_{i,i+o} v_{i+o} at i
                self._at(out, *o).addcmul_(k_o, v)  # K_{i+o,i} v_i at i + o
            return centre.contiguous()

        pairs = 2.0 * masks.sum()  # ordered pairs (i, k != i) inside the image
        scale = row_sum.sum(1) / (pairs * w * self.p)  # (R,) mean sech^2 over the row's pairs
        symbol = self._laplacian_symbol(k)
        c_y, c_x = self._dct(self.height, k), self._dct(self.width, k)
        c_yt, c_xt = c_y.T.contiguous(), c_x.T.contiguous()

        def smoother(lam: float) -> Callable[[Tensor], Tensor] | None:
            if -lam * float(row_sum.mean()) * self.extent**2 < _SPECTRAL_FROM:
                return None
            inverse = 1.0 / (1.0 - lam * scale[:, None, None] * symbol)
            # Jacobi scaling around it: exact diagonal, spectral shape of the smooth modes
            level = 1.0 - lam * scale[:, None] * (w * self.p * (self.extent**2 - 1))
            half = (level / (1.0 + lam * (-row_sum))).sqrt()

            # the lower half of the cosine modes per axis get their own factor, the others
            # the mean of theirs: M^-1 = S (c I + C_l^T (inverse_l - c) C_l) S (SPD: its
            # eigenvalues are inverse_l and c). The same CG iterations (477 -> 473 forward at
            # lam = -1, 479 -> 483 at lam = -3, w_extent = 5, real pre-activations) for 37%
            # of the transforms' products
            m_y = math.ceil(self.height * _SPECTRAL_LOW)
            m_x = math.ceil(self.width * _SPECTRAL_LOW)
            if m_y * m_x == self.height * self.width:  # every mode its own factor

                def apply(r: Tensor) -> Tensor:
                    maps = (half * r).reshape(-1, self.height, self.width)
                    spectrum = (c_y @ maps @ c_xt).mul_(inverse)
                    return half * (c_yt @ spectrum @ c_x).reshape(r.shape)

                return apply
            low_y, low_x = c_y[:m_y], c_x[:m_x]
            low_yt, low_xt = low_y.T.contiguous(), low_x.T.contiguous()
            low = inverse[:, :m_y, :m_x]
            n_high = self.height * self.width - m_y * m_x
            # the mean over the other modes, as the total less the low block's (a boolean
            # selection of them copied them out: 0.5 ms of a 0.9 ms setup at 384 rows)
            level_high = ((inverse.sum((1, 2)) - low.sum((1, 2))) / n_high)[:, None, None]
            low_factor = (low - level_high).contiguous()

            def apply_low(r: Tensor) -> Tensor:
                maps = (half * r).reshape(-1, self.height, self.width)
                coarse = (low_y @ maps @ low_xt).mul_(low_factor)
                out = torch.addcmul(low_yt @ coarse @ low_x, level_high, maps)
                return half * out.reshape(r.shape)

            return apply_low

        def subset(rows: Tensor) -> Linearization:
            if k.stride(1) > k.stride(0):  # laid out by row (the compiled loops): keep it so
                return self._assemble(B[rows], k.transpose(0, 1)[rows].transpose(0, 1),
                                      row_sum[rows])  # fmt: skip
            return self._assemble(B[rows], k[:, rows], row_sum[rows])

        def merge(rows: Tensor, part: Linearization, reuse: bool) -> Linearization:
            p_b, p_k, p_sum = part.state
            if reuse:
                return self._assemble(
                    B.index_copy_(0, rows, p_b), k.index_copy_(1, rows, p_k),
                    row_sum.index_copy_(0, rows, p_sum),
                )  # fmt: skip
            return self._assemble(
                B.index_copy(0, rows, p_b), k.index_copy(1, rows, p_k),
                row_sum.index_copy(0, rows, p_sum),
            )  # fmt: skip

        def solve(lam: float, b: Tensor, target: Tensor, max_iter: int):
            # CG a row at a time while the row's K maps stay in cache (compiled.window_cg):
            # with Jacobi, at 1.7-3x the iterations of the batched CG with the DCT
            # preconditioner, and still faster per solve (docs/performance.md, "A fifth round")
            if not (k.shape[1] == b.shape[0] == row_sum.shape[0] and self._compiled(b, k)):
                return None
            x, steps, r_norm = compiled.window_cg(
                k.transpose(0, 1).contiguous().numpy(), self._shifts(),
                row_sum.contiguous().numpy(), lam, b.contiguous().numpy(),
                target.double().contiguous().numpy(), max_iter,
            )  # fmt: skip
            return torch.from_numpy(x), torch.from_numpy(steps), torch.from_numpy(r_norm)

        return Linearization(
            B=B, diag=-row_sum, matvec=matvec, smoother=smoother, subset=subset, merge=merge,
            state=(B, k, row_sum), solve=solve,
        )  # fmt: skip

    def _laplacian_symbol(self, like: Tensor) -> Tensor:
        """(H, W) eigenvalue estimates of the window Laplacian with K = p / k^2 for the DCT-II
        modes: p / k^2 sum_{o != 0} (1 - cos(theta . o)) at theta = pi (j_y / H, j_x / W)
        (exact for the interior of the map; the borders make it an approximation)."""
        key = ("symbol", like.device, like.dtype)
        if key not in self._cache:
            fy = torch.arange(self.height, device=like.device, dtype=torch.float64) / self.height
            fx = torch.arange(self.width, device=like.device, dtype=torch.float64) / self.width
            r = self.extent // 2
            total = torch.zeros(len(fy), len(fx), device=like.device, dtype=torch.float64)
            for dy in range(-r, r + 1):
                for dx in range(-r, r + 1):
                    total += 1.0 - torch.cos(math.pi * (fy[:, None] * dy + fx[None, :] * dx))
            self._cache[key] = (total * self.p / self.extent**2).to(like.dtype)
        return self._cache[key]

    def _dct(self, n: int, like: Tensor) -> Tensor:
        """(n, n) orthonormal DCT-II matrix: row j is the cosine mode j sampled at the units."""
        key = ("dct", n, like.device, like.dtype)
        if key not in self._cache:
            j = torch.arange(n, device=like.device, dtype=torch.float64)
            c = torch.cos(math.pi * (j[None, :] + 0.5) * j[:, None] / n) * math.sqrt(2.0 / n)
            c[0] /= math.sqrt(2.0)
            self._cache[key] = c.to(like.dtype)
        return self._cache[key]
