"""The windowed cross term (shifted maps, one tanh per pair) and its spectral preconditioner,
against a dense (D, D) window weight matrix built here."""

from __future__ import annotations

import math

import pytest
import torch

from ibnn import IBNNConv2d
from ibnn.nn.coupling import WindowCoupling
from ibnn.nn.solvers import cg


def window_matrix(h: int, w: int, extent: int) -> torch.Tensor:
    """(D, D) w_ik = 1/k^2 when |row_i - row_k| and |col_i - col_k| are <= k // 2."""
    rows = torch.arange(h).repeat_interleave(w)
    cols = torch.arange(w).repeat(h)
    near = ((rows[:, None] - rows[None, :]).abs() <= extent // 2) & (
        (cols[:, None] - cols[None, :]).abs() <= extent // 2
    )
    return near.double() / extent**2


def dense_terms(z: torch.Tensor, p: float, weight: torch.Tensor):
    """B, the Jacobian dB/dz (R, D, D) and the energy by explicit sums over all pairs."""
    diff = z[:, None, :] - z[:, :, None]  # z_k - z_i
    t = torch.tanh(p * diff)
    b = (weight * t).sum(-1)
    k = weight * p * (1.0 - t * t)
    jac = k - torch.diag_embed(k.sum(-1))
    ax = (p * diff).abs()
    s = (ax + torch.log1p(torch.exp(-2 * ax)) - math.log(2.0)) / p
    return b, jac, (weight * s).sum((-1, -2))


@pytest.mark.parametrize("extent", [3, 5, 7])
def test_window_terms_match_the_dense_window_matrix(extent):
    torch.manual_seed(extent)
    h, w = 9, 11  # not square, smaller than the window in no direction
    z = 0.3 * torch.randn(4, h * w, dtype=torch.float64)
    coupling = WindowCoupling(10.0, extent, h, w)
    lin = coupling.linearize(z)
    b, jac, energy = dense_terms(z, 10.0, window_matrix(h, w, extent))
    v = torch.randn_like(z)
    assert (lin.B - b).abs().max() <= 1e-12
    assert (coupling.cross(z) - b).abs().max() <= 1e-12
    assert (lin.matvec(v) - (jac @ v[..., None])[..., 0]).abs().max() <= 1e-12
    assert (lin.diag - jac.diagonal(dim1=-2, dim2=-1)).abs().max() <= 1e-12
    assert (coupling.energy(z) - energy).abs().max() <= 1e-12


def test_float32_sums_stay_within_rounding_of_float64():
    torch.manual_seed(0)
    z = torch.randn(6, 28 * 28, dtype=torch.float64)
    v = torch.randn_like(z)
    exact = WindowCoupling(10.0, 7, 28, 28, dtype=torch.float64).linearize(z)
    single = WindowCoupling(10.0, 7, 28, 28).linearize(z.float())
    assert single.B.dtype == torch.float32
    assert (single.B.double() - exact.B).abs().max() <= 1e-6
    mv, mv_exact = single.matvec(v.float()).double(), exact.matvec(v)
    assert (mv - mv_exact).abs().max() <= 1e-5 * mv_exact.abs().max()


def preconditioner_matrix(apply, rows: int, d: int) -> torch.Tensor:
    """(rows, D, D) matrix of a row-wise linear map, column by column."""
    eye = torch.eye(d, dtype=torch.float64)
    cols = [apply(eye[j].expand(rows, d).contiguous()) for j in range(d)]
    return torch.stack(cols, dim=-1)


@pytest.mark.parametrize("smooth", [True, False], ids=["smooth", "rough"])
def test_spectral_preconditioner_is_spd_and_cuts_cg_iterations(smooth):
    """SPD, same solution as Jacobi; fewer iterations, at least twice fewer on a smooth z
    (a stiff solution: neighbours pulled within 1/p of each other)."""
    torch.manual_seed(1)
    h = w = 28
    coarse = torch.randn(2, 1, 4, 4, dtype=torch.float64)
    field = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear")
    z = 0.05 * (field if smooth else torch.randn_like(field)).reshape(2, h * w)
    lam, coupling = -10.0, WindowCoupling(20.0, 5, h, w)
    lin = coupling.linearize(z)
    assert lin.smoother(-0.1) is None  # mild lam: Jacobi
    m_inv = preconditioner_matrix(lin.preconditioner(lam), 2, h * w)
    assert (m_inv - m_inv.transpose(1, 2)).abs().max() <= 1e-12
    assert torch.linalg.eigvalsh(m_inv).min() > 0

    def a(v):
        return v + lam * lin.matvec(v)

    b = torch.randn_like(z)
    x_jac, n_jac = cg(a, b, 1.0 / (1.0 + lam * lin.diag), 1e-10, 0.0, 1000)
    x_spec, n_spec = cg(a, b, lin.preconditioner(lam), 1e-10, 0.0, 1000)
    assert (x_spec - x_jac).abs().max() <= 1e-8
    assert (a(x_spec) - b).norm() <= 1e-9 * b.norm()
    assert (2 * n_spec if smooth else n_spec) <= n_jac


@pytest.mark.parametrize("lam,p,extent", [(-10.0, 10.0, 7), (-1.0, 5.0, 5), (0.04, 10.0, 5)])
def test_windowed_fast_path_at_fashion_mnist_shape(lam, p, extent):
    """float32 layer on 28 x 28 maps: residual against the dense window matrix, and within
    1e-4 of the float64 fixed point solved to 1e-10."""
    torch.manual_seed(3)
    layer = IBNNConv2d(1, 3, 4, lam=lam, p=p, w_extent=extent)
    with torch.no_grad():
        layer.weight.mul_(3.0)
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        z = layer(x).reshape(6, -1).double()
        y = layer._conv_forward(x, layer.weight, layer.bias).reshape(6, -1).double()
    assert layer.last_stats.converged
    b, _, _ = dense_terms(z, p, window_matrix(28, 28, extent))
    assert (z - y + lam * b).abs().max() <= 1e-4
    exact = IBNNConv2d(1, 3, 4, lam=lam, p=p, w_extent=extent, tol=1e-10).double()
    exact.load_state_dict(layer.state_dict())
    with torch.no_grad():
        z_exact = exact(x.double()).reshape(6, -1)
    assert exact.last_stats.converged
    assert (z - z_exact).abs().max() <= 1e-4


def test_the_direct_flat_solve_equals_a_dense_solve():
    """(I + lam J0) z = y with J0 the Jacobian at a constant row, against torch.linalg.solve
    on the dense window matrix's Jacobian; the same through the inverse kept from the second
    call with one lam; None for lam >= 0 and for maps of more than 1024 units."""
    torch.manual_seed(5)
    h, w, extent, p = 9, 11, 5, 10.0
    coupling = WindowCoupling(p, extent, h, w)
    y = torch.randn(4, h * w, dtype=torch.float64)
    flat = torch.zeros(1, h * w, dtype=torch.float64)
    _, jac, _ = dense_terms(flat, p, window_matrix(h, w, extent))
    for lam in (-3.0, -3.0, -3.0, -0.5):  # eigenbasis, inverse built, inverse reused, new lam
        a = torch.eye(h * w, dtype=torch.float64) + lam * jac[0]
        z_ref = torch.linalg.solve(a, y.T).T
        assert (coupling.solve_flat(y, lam) - z_ref).abs().max() <= 1e-10
    z32 = WindowCoupling(p, extent, h, w).solve_flat(y.float(), -3.0)
    assert z32.dtype == torch.float32
    assert (z32.double() - coupling.solve_flat(y, -3.0)).abs().max() <= 1e-5
    assert coupling.solve_flat(y, 0.04) is None
    assert WindowCoupling(p, 3, 33, 33).solve_flat(torch.randn(2, 33 * 33), -1.0) is None
