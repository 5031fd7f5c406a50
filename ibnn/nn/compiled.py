"""Compiled CPU loops (numba) for the solver's point operations: the grid, the window, CG.

Grid (:class:`ibnn.nn.grid.GridCoupling`): stencil, deposit and read-back. In PyTorch each is
several passes over (R, D) and (4, R, D) arrays: the stencil writes 4 int64 node indices and
4 weights per point, a deposit is 4 ``scatter_add_`` calls of 4 products, a read-back 4
``gather`` calls and 4 multiply-adds; on the CPU they were 60% of a global-w solve (issue 18's
profile), memory-bound. Here each is one loop over a row's points that keeps only a base node
(int32) and the point's offset from it (float64) per point and forms the 4 cubic weights as it
goes:

- :func:`stencil`: each row's grid spacing and every point's base node and offset;
- :func:`deposit`: v / count spread onto the 4 nodes around each point (into a grid of the
  requested dtype);
- :func:`gather`: a grid read back at the points (optionally minus diag * v, the grid
  Jacobian's matvec in one pass), in the output's dtype;
- :func:`grid_cg`: the Newton and backward systems solved by CG a row at a time on small grids
  (the convolution summed directly), as :func:`window_cg` does for windows.

The weights are those of ``GridCoupling``'s PyTorch path (cubic Lagrange on the nodes
base - 1 ... base + 2), evaluated in float64 rather than in the compute dtype. Results agree
with the PyTorch path to float32 rounding (tested), not bit for bit.

Window (:class:`ibnn.nn.coupling.WindowCoupling`): in PyTorch a matvec is 2 fused
multiply-adds per half-window offset, each a pass over (R, D) maps (48 passes at
w_extent = 7), and the linearisation as many passes again. Here one loop per row keeps the
row's output in cache while its offsets' maps stream past it (laid out (R, offsets, D)):

- :func:`pair_differences`: p z_{i+o} - p z_i for every unit and half-window offset;
- :func:`window_terms`: from the tanh of those (NumPy's vectorised tanh, between the two
  loops), B, the K maps and their row sums; B's sums are formed in float64 and rounded once
  (PyTorch sums them in the layer's float32, and the solver multiplies that rounding by lam);
- :func:`window_matvec`: (dB/dz) v from the K maps;
- :func:`window_cg`: the Newton and backward systems (I + lam dB/dz) x = b solved by CG a row
  at a time, the row's K maps and vectors in cache from the first iteration to the last (the
  batched CG reads every row's maps from memory on each iteration).

CG (:func:`ibnn.nn.solvers.cg`): :func:`cg_advance` and :func:`cg_direction` do one
iteration's updates a row at a time, Jacobi's preconditioner (made exact on the constant mode,
:class:`ibnn.nn.coupling.Jacobi`) folded in.

Used for float CPU tensors outside autograd when numba imports and ``IBNN_COMPILED`` is not
``0`` (the PyTorch path stays for other devices and for comparison). Compiled on first use and
cached on disk (``ibnn/nn/__pycache__``, or numba's user cache where that is read-only);
:func:`warm_up` compiles or loads them all before a timed run.
"""

from __future__ import annotations

import math
import os

import numpy as np

try:  # an optional speed-up: without numba the grid runs its PyTorch path
    import numba
except ImportError:  # pragma: no cover - numba is a dependency; kept for minimal installs
    numba = None

__all__ = [
    "enabled",
    "stencil",
    "deposit",
    "deposit_constant",
    "gather",
    "pair_differences",
    "window_terms",
    "window_cross",
    "window_matvec",
    "window_cg",
    "grid_cg",
    "cg_advance",
    "cg_direction",
    "warm_up",
]


def enabled() -> bool:
    """Whether the compiled loops are available and switched on (``IBNN_COMPILED``)."""
    return numba is not None and os.environ.get("IBNN_COMPILED", "1") != "0"


def _jit(function=None, *, reassociate: bool = False):
    """numba.njit with the on-disk cache; ``reassociate`` lets sums be reordered (vectorised
    dot products; every other float rule, NaN and infinity included, kept)."""
    if function is None:
        return lambda f: _jit(f, reassociate=reassociate)
    if numba is None:
        return function
    flags = {"reassoc"} if reassociate else False
    return numba.njit(cache=True, nogil=True, boundscheck=False, fastmath=flags)(function)


@_jit
def _weights(f):
    """Cubic Lagrange weights of the nodes base - 1, base, base + 1, base + 2 at offset f."""
    fm1 = f - 1.0
    fm2 = f - 2.0
    fp1 = f + 1.0
    ff = f * fm1
    sixth = 1.0 / 6.0  # multiplications: a division per weight made the loops 2x slower
    return -sixth * ff * fm2, 0.5 * fp1 * fm1 * fm2, -0.5 * fp1 * f * fm2, sixth * fp1 * ff


@_jit
def _stencil(z, pad, cap, min_h, base, frac, h_out):
    rows, units = z.shape
    widest = 0.0
    for r in range(rows):
        lo = z[r, 0]
        hi = z[r, 0]
        for d in range(units):
            x = z[r, d]
            if not math.isfinite(x):
                return -1.0  # no grid holds it
            if x < lo:
                lo = x
            if x > hi:
                hi = x
        span = hi - lo
        h = max(span / cap, min_h)
        origin = lo - pad * h
        for d in range(units):
            u = (z[r, d] - origin) / h
            b = math.floor(u)
            base[r, d] = np.int32(b)
            frac[r, d] = u - b
        h_out[r] = h
        widest = max(widest, math.ceil(span / h))
    return widest


@_jit
def _spread(q, b, f, a):
    """Adds a at offset f from node b of the grid row q (its 4 nodes, cubic weights)."""
    w0, w1, w2, w3 = _weights(f)
    q[b - 1] += a * w0
    q[b] += a * w1
    q[b + 1] += a * w2
    q[b + 2] += a * w3


@_jit
def _interpolate(g, b, f):
    """The grid row g at offset f from node b (its 4 nodes, cubic weights)."""
    w0, w1, w2, w3 = _weights(f)
    return w0 * g[b - 1] + w1 * g[b] + w2 * g[b + 1] + w3 * g[b + 2]


@_jit
def _deposit(v, count, base, frac, q):
    rows, units = v.shape
    scale = 1.0 / count
    for r in range(rows):
        qr = q[r]
        for d in range(units):
            _spread(qr, base[r, d], frac[r, d], v[r, d] * scale)


@_jit
def _deposit_constant(value, base, frac, q):
    rows, units = base.shape
    for r in range(rows):
        qr = q[r]
        for d in range(units):
            _spread(qr, base[r, d], frac[r, d], value)


@_jit
def _gather(g, base, frac, out):
    rows, units = out.shape
    for r in range(rows):
        gr = g[r]
        for d in range(units):
            out[r, d] = _interpolate(gr, base[r, d], frac[r, d])


@_jit
def _gather_minus(g, base, frac, diag, v, out):
    rows, units = out.shape
    for r in range(rows):
        gr = g[r]
        for d in range(units):
            out[r, d] = _interpolate(gr, base[r, d], frac[r, d]) - diag[r, d] * v[r, d]


def stencil(z: np.ndarray, pad: int, cap: int, min_h: float):
    """Each row's spacing h = max(range / cap, min_h) and every point's base node and offset.

    Args:
        z: (R, D) float64 points.
        pad: empty nodes before a row's minimum.
        cap: nodes a row's range may span at most (beyond it h grows).
        min_h: the finest spacing.

    Returns:
        base: (R, D) int32, the node at or below each point; frac: (R, D) float64 offset from
        it in [0, 1); h: (R,) spacing; widest: the most nodes any row's range spans.

    Raises:
        ValueError: if a point is not finite (no grid can hold it).
    """
    rows, units = z.shape
    base = np.empty((rows, units), dtype=np.int32)
    frac = np.empty((rows, units), dtype=np.float64)
    h = np.empty(rows, dtype=np.float64)
    widest = _stencil(z, float(pad), float(cap), float(min_h), base, frac, h)
    if widest < 0:
        raise ValueError("the grid needs finite points, but a row holds a NaN or infinity")
    return base, frac, h, int(widest)


def deposit(v: np.ndarray, count: int, base, frac, nodes: int, dtype) -> np.ndarray:
    """(R, nodes) grids in ``dtype`` holding v / count spread onto each point's 4 nodes."""
    q = np.zeros((v.shape[0], nodes), dtype=dtype)
    _deposit(v, float(count), base, frac, q)
    return q


def deposit_constant(value: float, base, frac, nodes: int, dtype) -> np.ndarray:
    """(R, nodes) grids in ``dtype`` holding ``value`` at every point."""
    q = np.zeros((base.shape[0], nodes), dtype=dtype)
    _deposit_constant(float(value), base, frac, q)
    return q


def gather(g: np.ndarray, base, frac, dtype, diag=None, v=None) -> np.ndarray:
    """(R, D) in ``dtype``: the grids g (R, >= nodes) read back at the points, minus diag * v
    where both are given."""
    out = np.empty(base.shape, dtype=dtype)
    if diag is None:
        _gather(g, base, frac, out)
    else:
        _gather_minus(g, base, frac, diag, v, out)
    return out


# -- window -------------------------------------------------------------------------------------
# Rows are flat (row-major) maps of D units; a half-window offset (dy, dx) is the flat shift
# s = dy W + dx > 0. Where unit i + s is not the unit i + (dy, dx) of the image (it leaves the
# map or wraps to the next line) the pair is masked: its tanh and its K are 0.


# Loops index row slices with non-negative loop counters only (a shifted slice instead of i + s):
# a possibly negative index makes numba check for wrap-around at every access, which kept LLVM
# from vectorising the loops (3x slower than PyTorch's passes).


@_jit
def _pair_differences(z, scale, shifts, out):
    rows, n_off, units = out.shape
    for r in range(rows):
        zr = z[r]
        for o in range(n_off):
            s = shifts[o]
            n = units - s
            ahead = zr[s:]
            row = out[r, o]
            for i in range(n):
                row[i] = scale * ahead[i] - scale * zr[i]
            row[n:] = 0.0


@_jit
def _window_terms(t, masks, shifts, weight, slope, B, k, row_sum):
    rows, n_off, units = t.shape
    acc = np.empty(units, dtype=np.float64)  # B's sums in float64, rounded once (see below)
    for r in range(rows):
        total = row_sum[r]
        acc[:] = 0.0
        total[:] = 0.0
        for o in range(n_off):
            s = shifts[o]
            n = units - s
            m = masks[o]
            tr = t[r, o]
            kr = k[r, o]
            for i in range(units):  # each pair's K, and its terms at unit i
                value = tr[i] * m[i]
                kr[i] = (m[i] - value * value) * slope
                acc[i] += value
                total[i] += kr[i]
            acc_ahead = acc[s:]
            total_ahead = total[s:]
            for i in range(n):  # and at unit i + o (beyond n the pair is masked: 0)
                acc_ahead[i] -= tr[i] * m[i]
                total_ahead[i] += kr[i]
        b = B[r]
        for i in range(units):
            b[i] = acc[i] * weight


@_jit
def _window_cross(t, masks, shifts, weight, B):
    rows, n_off, units = t.shape
    acc = np.empty(units, dtype=np.float64)
    for r in range(rows):
        acc[:] = 0.0
        for o in range(n_off):
            s = shifts[o]
            n = units - s
            m = masks[o]
            tr = t[r, o]
            for i in range(n):
                acc[i] += tr[i] * m[i]
            acc_ahead = acc[s:]
            for i in range(n):
                acc_ahead[i] -= tr[i] * m[i]
        b = B[r]
        for i in range(units):
            b[i] = acc[i] * weight


@_jit
def _window_matvec(k, shifts, row_sum, v, out):
    rows, n_off, units = k.shape
    for r in range(rows):
        vr = v[r]
        o_r = out[r]
        total = row_sum[r]
        for i in range(units):
            o_r[i] = -total[i] * vr[i]
        for o in range(n_off):
            s = shifts[o]
            n = units - s
            kr = k[r, o]
            v_ahead = vr[s:]
            for i in range(n):
                o_r[i] += kr[i] * v_ahead[i]  # K_{i,i+o} v_{i+o} at i
            o_ahead = o_r[s:]
            for i in range(n):
                o_ahead[i] += kr[i] * vr[i]  # K_{i+o,i} v_i at i + o


def pair_differences(z: np.ndarray, scale: float, shifts: np.ndarray) -> np.ndarray:
    """(R, n_offsets, D): scale * z_{i+s} - scale * z_i for each flat shift s (0 where i + s
    leaves the row); a row's offsets side by side, as the loops below read them."""
    out = np.empty((z.shape[0], len(shifts), z.shape[1]), dtype=z.dtype)
    _pair_differences(z, z.dtype.type(scale), shifts, out)
    return out


def window_terms(t: np.ndarray, masks: np.ndarray, shifts: np.ndarray, weight: float,
                 slope: float):  # fmt: skip
    """B, the K maps and their row sums from t = tanh(p (z_{i+o} - z_i)) (R, n_offsets, D).

    K_{i,i+o} = slope (mask - t^2), B_i = weight (sum_o t_o(i) -
    t_o(i - o)), row sums sum_o K_o(i) + K_o(i - o).

    Returns:
        B (R, D), K (R, n_offsets, D): a row's maps side by side, so that the matvec streams
        one block per row (laid out (n_offsets, R, D), its loop was slower than PyTorch's
        passes: 24 streams 1.2 MB apart), row sums (R, D), in t's dtype.
    """
    rows, n_off, units = t.shape
    B = np.empty((rows, units), dtype=t.dtype)
    row_sum = np.empty((rows, units), dtype=t.dtype)
    k = np.empty((rows, n_off, units), dtype=t.dtype)
    _window_terms(t, masks, shifts, float(weight), t.dtype.type(slope), B, k, row_sum)
    return B, k, row_sum


def window_cross(t: np.ndarray, masks: np.ndarray, shifts: np.ndarray, weight: float):
    """B (R, D) from t = tanh(p (z_{i+o} - z_i)) (R, n_offsets, D), unmasked."""
    B = np.empty((t.shape[0], t.shape[2]), dtype=t.dtype)
    _window_cross(t, masks, shifts, float(weight), B)
    return B


def window_matvec(k: np.ndarray, shifts: np.ndarray, row_sum: np.ndarray, v: np.ndarray):
    """(dB/dz) v (R, D) from the K maps (R, n_offsets, D) and their row sums (R, D)."""
    out = np.empty(v.shape, dtype=v.dtype)
    _window_matvec(k, shifts, row_sum, v, out)
    return out


# -- conjugate gradients --------------------------------------------------------------------------
# One CG iteration in PyTorch is about ten passes over (R, D) (two dot products, three
# multiply-adds, the norm, Jacobi's product, masks). These two loops do a row's updates while
# its data is in cache, and skip the rows that are done (whose iterates no longer change). The
# dot products are summed in float64.


@_jit(reassociate=True)
def _step(xr, rr, dr, ar, rs):
    """One row's step: alpha = rs / (d.a) (0 where d.a <= 0), x += alpha d, r -= alpha a;
    returns ||r||."""
    units = xr.shape[0]
    curv = 0.0
    for i in range(units):
        curv += dr[i] * ar[i]
    alpha = rs / curv if curv > 0.0 else 0.0
    total = 0.0
    for i in range(units):
        xr[i] += alpha * dr[i]
        rr[i] -= alpha * ar[i]
        total += rr[i] * rr[i]
    return math.sqrt(total)


@_jit(reassociate=True)
def _turn(sr, dr, rs_new, rs):
    """One row's new direction: d = s + (rs_new / rs) d (d = s where rs <= 0)."""
    beta = rs_new / rs if rs > 0.0 else 0.0
    for i in range(sr.shape[0]):
        dr[i] = sr[i] + beta * dr[i]


@_jit(reassociate=True)
def _cg_advance(x, r, d, a, rs, active, r_norm):
    for row in range(x.shape[0]):
        if active[row]:
            r_norm[row] = _step(x[row], r[row], d[row], a[row], rs[row])


@_jit(reassociate=True)
def _cg_direction(r, s, d, rs, active):
    for row in range(r.shape[0]):
        if active[row]:
            total = 0.0
            for i in range(r.shape[1]):
                total += r[row, i] * s[row, i]
            _turn(s[row], d[row], total, rs[row])
            rs[row] = total


@_jit(reassociate=True)
def _cg_direction_jacobi(r, inverse, d, rs, active, deflate):
    rows, units = r.shape
    for row in range(rows):
        if not active[row]:
            continue
        rr = r[row]
        inv = inverse[row]
        dr = d[row]
        mean = 0.0
        shift = 0.0
        if deflate:  # s = Q diag(inv) Q r + mean(r) (see ibnn.nn.coupling.Jacobi)
            for i in range(units):
                mean += rr[i]
            mean /= units
            for i in range(units):
                shift += inv[i] * (rr[i] - mean)
            shift = mean - shift / units
        total = 0.0
        for i in range(units):
            total += rr[i] * (inv[i] * (rr[i] - mean) + shift)
        beta = total / rs[row] if rs[row] > 0.0 else 0.0
        for i in range(units):
            dr[i] = inv[i] * (rr[i] - mean) + shift + beta * dr[i]
        rs[row] = total


def cg_advance(x, r, d, a, rs, active, r_norm) -> None:
    """In place, for the rows ``active``: alpha = rs / (d . a) (0 where d . a <= 0),
    x += alpha d, r -= alpha a, r_norm = ||r||."""
    _cg_advance(x, r, d, a, rs, active, r_norm)


def cg_direction(r, s, d, rs, active, jacobi: bool = False, deflate: bool = False) -> None:
    """In place, for the rows ``active``: rs_new = r . s, d = s + (rs_new / rs) d, rs = rs_new;
    with ``jacobi``, s holds Jacobi's inverse diagonal and the preconditioned residual is
    formed on the way: s * r, or with ``deflate`` Q diag(s) Q r + mean(r)
    (:class:`ibnn.nn.coupling.Jacobi`)."""
    if jacobi:
        _cg_direction_jacobi(r, s, d, rs, active, deflate)
    else:
        _cg_direction(r, s, d, rs, active)


def warm_up() -> None:
    """Compiles (or loads from the on-disk cache) every loop for float32 and float64 on tiny
    inputs, so that a timed run does not pay for compilation (a few seconds the first time in
    a fresh checkout, well under one after). Does nothing where the loops are off."""
    if not enabled():
        return
    shifts = np.array([1], dtype=np.int64)
    masks = np.ones((1, 4), dtype=np.float64)
    for dtype in (np.float32, np.float64):
        z = np.linspace(0.0, 0.3, 8).reshape(2, 4)
        base, frac, _, widest = stencil(z, 3, 1000, 0.05)
        nodes = widest + 10
        v = z.astype(dtype)
        deposit(v, 4, base, frac, nodes, dtype)
        deposit_constant(0.25, base, frac, nodes, dtype)
        g = np.zeros((2, nodes), dtype=np.float64)
        gather(g, base, frac, dtype)
        gather(g, base, frac, dtype, v, v)
        gather(g.astype(np.float32), base, frac, dtype, v, v)
        grid_cg(base, frac, np.ones((1, nodes)), v, 0.1, -1.0, v, np.zeros(2), 4)
        t = pair_differences(v, 1.0, shifts)
        B, k, row_sum = window_terms(t, masks.astype(dtype), shifts, 0.5, 1.0)
        window_cross(t, masks.astype(dtype), shifts, 0.5)
        window_matvec(k, shifts, row_sum, v)
        window_cg(k, shifts, row_sum, -1.0, v, np.zeros(2), 4)
        active = np.ones(2, dtype=np.bool_)
        rs, r_norm = np.ones(2), np.ones(2)
        x, r, d = v.copy(), v.copy(), v.copy()
        cg_advance(x, r, d, v, rs, active, r_norm)
        cg_direction(r, v.copy(), d, rs, active)
        for deflate in (False, True):
            cg_direction(r, v.copy(), d, rs, active, True, deflate)


# -- Newton systems, a row at a time ---------------------------------------------------------------
# The batched CG streams every row's operator from memory on each iteration (a window's K maps:
# 29 MB at 768 rows of 28 x 28 maps, k = 5). A row's system is independent of the others', so
# here CG runs a row to its end while its operator and vectors stay in cache, with Jacobi's
# preconditioner made exact on the constant mode (:class:`ibnn.nn.coupling.Jacobi`). The loop
# is shared; each coupling supplies its matvec a = H d = d + lam (dB/dz) d.


@_jit(reassociate=True)
def _row_start(br, xr, r, inv, diag, lam):
    """x = 0, r = b, Jacobi's inverse diagonal 1 / (1 + lam diag); returns ||r||."""
    norm = 0.0
    for i in range(br.shape[0]):
        inv[i] = 1.0 / (1.0 + lam * diag[i])
        xr[i] = 0.0
        r[i] = br[i]
        norm += r[i] * r[i]
    return math.sqrt(norm)


@_jit(reassociate=True)
def _row_direction(r, inv, s, d, rs, first):
    """s = Q diag(inv) Q r + mean(r) (Q removes the mean), d = s + (r.s / rs) d (d = s on the
    first iteration); returns r.s."""
    units = r.shape[0]
    mean = 0.0
    for i in range(units):
        mean += r[i]
    mean /= units
    shift = 0.0
    for i in range(units):
        s[i] = inv[i] * (r[i] - mean)
        shift += s[i]
    shift = mean - shift / units
    rs_new = 0.0
    for i in range(units):
        s[i] += shift
        rs_new += r[i] * s[i]
    if first:
        d[:] = s
    else:
        _turn(s, d, rs_new, rs)
    return rs_new


@_jit(reassociate=True)
def _row_advance(xr, r, d, a, rs, lam):
    """a = d + lam a (a held (dB/dz) d), alpha = rs / (d.a) (0 where d.a <= 0), x += alpha d,
    r -= alpha a; returns ||r||."""
    for i in range(r.shape[0]):
        a[i] = d[i] + lam * a[i]
    return _step(xr, r, d, a, rs)


@_jit
def _row_finish(xr, norm, row, steps, r_norm, n):
    if not math.isfinite(norm):  # no solution: NaN, as the batched CG gives
        xr[:] = np.nan
    steps[row] = n
    r_norm[row] = norm


@_jit(reassociate=True)
def _window_cg(k, shifts, row_sum, lam, b, target, max_iter, x, steps, r_norm):
    rows, n_off, units = k.shape
    work = np.empty((6, units), dtype=b.dtype)
    r, d, s, a, inv, diag = work[0], work[1], work[2], work[3], work[4], work[5]
    for row in range(rows):
        kr = k[row]
        total = row_sum[row]
        xr = x[row]
        for i in range(units):
            diag[i] = -total[i]
        norm = _row_start(b[row], xr, r, inv, diag, lam)
        rs = 1.0
        n = 0
        while norm > target[row] and n < max_iter:
            rs = _row_direction(r, inv, s, d, rs, n == 0)
            for i in range(units):  # a = (dB/dz) d = K d - row_sum d
                a[i] = -total[i] * d[i]
            for o in range(n_off):
                sh = shifts[o]
                m = units - sh
                ko = kr[o]
                d_ahead = d[sh:]
                for i in range(m):
                    a[i] += ko[i] * d_ahead[i]
                a_ahead = a[sh:]
                for i in range(m):
                    a_ahead[i] += ko[i] * d[i]
            norm = _row_advance(xr, r, d, a, rs, lam)
            n += 1
        _row_finish(xr, norm, row, steps, r_norm, n)


@_jit(reassociate=True)
def _grid_cg(base, frac, kernel, row_sum, self_weight, lam, b, target, max_iter, x, steps,
             r_norm):  # fmt: skip
    rows, units = b.shape
    nodes = kernel.shape[1]
    work = np.empty((6, units), dtype=b.dtype)
    r, d, s, a, inv, diag = work[0], work[1], work[2], work[3], work[4], work[5]
    q = np.empty(nodes + 3, dtype=np.float64)
    g = np.empty(nodes + 3, dtype=np.float64)
    wide = np.empty(2 * nodes - 1, dtype=np.float64)  # the kernel at offsets -(M-1) .. M-1
    scale = 1.0 / units
    for row in range(rows):
        kr = kernel[row if kernel.shape[0] > 1 else 0]
        for m in range(nodes):
            wide[nodes - 1 + m] = kr[m]
            wide[nodes - 1 - m] = kr[m]
        total = row_sum[row]
        xr = x[row]
        br_base = base[row]
        br_frac = frac[row]
        lo = nodes
        hi = 0
        for i in range(units):
            diag[i] = self_weight - total[i]
            lo = min(lo, br_base[i] - 1)
            hi = max(hi, br_base[i] + 3)
        norm = _row_start(b[row], xr, r, inv, diag, lam)
        rs = 1.0
        n = 0
        while norm > target[row] and n < max_iter:
            rs = _row_direction(r, inv, s, d, rs, n == 0)
            # a = (dB/dz) d: d / D deposited on the grid, convolved with the kernel (direct
            # sums over the nodes lo .. hi - 1 that the row's points touch), read back at the
            # points, minus row_sum d
            q[lo:hi] = 0.0
            for i in range(units):
                _spread(q, br_base[i], br_frac[i], d[i] * scale)
            touched = g[lo:hi]  # slices from 0: a loop from lo kept LLVM from vectorising
            touched[:] = 0.0
            for j in range(lo, hi):
                qj = q[j]
                if qj != 0.0:
                    w = wide[nodes - 1 - j + lo :]
                    for i in range(hi - lo):
                        touched[i] += qj * w[i]
            for i in range(units):
                a[i] = _interpolate(g, br_base[i], br_frac[i]) - total[i] * d[i]
            norm = _row_advance(xr, r, d, a, rs, lam)
            n += 1
        _row_finish(xr, norm, row, steps, r_norm, n)


def window_cg(k, shifts, row_sum, lam: float, b, target, max_iter: int):
    """Solve (I + lam dB/dz) x = b row by row by CG (Jacobi exact on the constant mode), from
    the K maps (R, n_offsets, D) and their row sums; each row stops once ||r||_2 <= its
    ``target`` (float64, (R,)) or after ``max_iter`` iterations.

    Returns:
        x (R, D) in b's dtype (NaN in a row whose residual is not finite: it stops there),
        iterations per row (int32, (R,)), final ||r||_2 per row (float64, (R,)).
    """
    x, steps, r_norm = _row_outputs(b)
    _window_cg(k, shifts, row_sum, b.dtype.type(lam), b, target, int(max_iter), x, steps, r_norm)
    return x, steps, r_norm


def grid_cg(base, frac, kernel, row_sum, self_weight: float, lam: float, b, target,
            max_iter: int):  # fmt: skip
    """Solve (I + lam dB/dz) x = b row by row by CG (Jacobi exact on the constant mode) for the
    grid: the stencil (``base``, ``frac``, as :func:`stencil` gives them), the sech^2 kernel
    at node offsets 0 .. M-1 (float64, (R or 1, M)), the row sums of K and the Jacobian's
    diagonal offset p / D (``self_weight``: diag = self_weight - row_sum). The convolution is
    summed directly over the nodes a row's points touch (their number squared per matvec):
    for small grids. Stops and returns as :func:`window_cg`."""
    x, steps, r_norm = _row_outputs(b)
    _grid_cg(base, frac, kernel, row_sum, float(self_weight), b.dtype.type(lam), b, target,
             int(max_iter), x, steps, r_norm)  # fmt: skip
    return x, steps, r_norm


def _row_outputs(b):
    rows = b.shape[0]
    return np.empty_like(b), np.zeros(rows, dtype=np.int32), np.zeros(rows, dtype=np.float64)
