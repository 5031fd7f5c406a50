"""The compiled CPU loops (grid and window) against the PyTorch path and against exact sums."""

from __future__ import annotations

import pytest
import torch

from ibnn import IBNNConv2d
from ibnn.nn import compiled, grid, solvers
from ibnn.nn.coupling import DenseCoupling, Jacobi, WindowCoupling
from ibnn.nn.grid import GridCoupling
from ibnn.nn.solvers import cg


def test_the_compiled_loops_are_available_and_switched_by_the_environment(monkeypatch):
    """numba is a dependency: every comparison below must really run both paths."""
    assert compiled.numba is not None
    monkeypatch.setenv("IBNN_COMPILED", "0")
    assert not compiled.enabled()
    monkeypatch.setenv("IBNN_COMPILED", "1")
    assert compiled.enabled()


def _both(monkeypatch, compute):
    """compute() on the PyTorch path and on the compiled one."""
    out = {}
    for flag in ("0", "1"):
        monkeypatch.setenv("IBNN_COMPILED", flag)
        assert compiled.enabled() == (flag == "1")
        out[flag] = compute()
    return out["0"], out["1"]


# the three configurations a layer uses: float32 throughout (|lam| <= 0.25), float64 sums
# with a float32 Jacobian (stiff lam), float64 throughout
CONFIGS = [(None, False), (torch.float64, True), (torch.float64, False)]


@pytest.mark.parametrize(("dtype", "split"), CONFIGS)
def test_compiled_grid_equals_the_pytorch_grid(monkeypatch, dtype, split):
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(24, 784, generator=gen) * 0.5
    z[3] *= 8.0  # a wide row: more nodes than the others
    v = torch.randn(24, 784, generator=gen)
    rows = torch.tensor([1, 3, 7, 20])
    coupling = GridCoupling(10.0, dtype=dtype, split_jacobian=split)

    def compute():
        lin = coupling.linearize(z)
        part = lin.take(rows)
        return (lin.B, lin.diag, lin.matvec(v), part.matvec(v[rows]), part.B,
                coupling.cross(z), coupling.energy(z))  # fmt: skip

    torch_path, compiled = _both(monkeypatch, compute)
    names = ["B", "diag", "matvec", "subset matvec", "subset B", "cross", "energy"]
    for name, a, b in zip(names, torch_path, compiled, strict=True):
        assert a.dtype == b.dtype == torch.float32, name
        scale = float(a.abs().max())
        # float32 rounding of sums of ~10 terms of size ~1 (the compiled weights are formed in
        # float64, the PyTorch ones in the compute dtype)
        assert float((a - b).abs().max()) <= 2e-6 * max(scale, 1.0), name


def test_compiled_grid_matches_the_exact_sums():
    gen = torch.Generator().manual_seed(1)
    z = (torch.randn(6, 784, generator=gen) * 0.3).double()
    v = torch.randn(6, 784, generator=gen).double()
    exact = DenseCoupling(10.0).linearize(z)
    lin = GridCoupling(10.0, dtype=torch.float64).linearize(z)
    assert lin.B.dtype == torch.float64
    assert float((lin.B - exact.B).abs().max()) < 1e-5
    assert float((lin.diag - exact.diag).abs().max()) < 1e-4
    assert float((lin.matvec(v) - exact.matvec(v)).abs().max()) < 1e-4


def test_a_non_finite_point_is_refused_with_the_rule():
    z = torch.zeros(2, 784, dtype=torch.float64)
    z[1, 5] = float("nan")
    with pytest.raises(ValueError, match="finite points"):
        compiled.stencil(z.numpy(), 3, 1000, 0.005)


def test_a_layer_solves_the_same_fixed_point_on_both_paths(monkeypatch):
    torch.manual_seed(2)
    x = torch.randn(8, 1, 28, 28)

    def solve(lam: float):
        torch.manual_seed(3)
        layer = IBNNConv2d(1, 3, 4, padding="same", lam=lam, p=10.0)
        with torch.no_grad():
            z = layer(x)
        info = layer.neuron.record.forward
        return z, info.converged, info.residual

    for lam in (-0.2, -1.0, -3.0):
        (z0, conv0, _), (z1, conv1, res1) = _both(monkeypatch, lambda lam=lam: solve(lam))
        assert bool(conv0.all()) and bool(conv1.all()), lam
        assert float(res1.max()) <= 5e-6 or bool(conv1.all())
        # the same unique fixed point: residuals of 5e-6 over a well-conditioned system
        assert float((z0 - z1).abs().max()) < 2e-5, lam


@pytest.mark.parametrize("extent", [3, 5, 7])
@pytest.mark.parametrize(("height", "width"), [(28, 28), (9, 11)])
def test_compiled_window_equals_the_pytorch_window(monkeypatch, extent, height, width):
    gen = torch.Generator().manual_seed(extent)
    z = torch.randn(10, height * width, generator=gen) * 0.3
    v = torch.randn(10, height * width, generator=gen)
    rows = torch.tensor([0, 4, 9])
    coupling = WindowCoupling(10.0, extent, height, width)

    def compute():
        lin = coupling.linearize(z)
        part = lin.take(rows)
        merged = lin.put(rows, coupling.linearize(2.0 * z[rows]))
        return (lin.B, lin.diag, lin.matvec(v), part.matvec(v[rows]), merged.matvec(v),
                coupling.cross(z))  # fmt: skip

    torch_path, compiled_path = _both(monkeypatch, compute)
    names = ["B", "diag", "matvec", "subset matvec", "merged matvec", "cross"]
    for name, a, b in zip(names, torch_path, compiled_path, strict=True):
        assert a.dtype == b.dtype == torch.float32, name
        # float32 sums of at most k^2 - 1 terms of size p / k^2 in another order
        assert float((a - b).abs().max()) <= 4e-6 * max(float(a.abs().max()), 1.0), name


def _dense_window(height: int, width: int, extent: int) -> torch.Tensor:
    """(D, D) float64 w_ik = 1/k^2 for units i != k within the k x k window (brute force)."""
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    ys, xs = ys.reshape(-1), xs.reshape(-1)
    r = extent // 2
    w = ((ys[:, None] - ys[None, :]).abs() <= r) & ((xs[:, None] - xs[None, :]).abs() <= r)
    w = w.double() / extent**2
    return w.fill_diagonal_(0.0)


def test_compiled_window_matches_the_dense_window_matrix():
    height, width, extent = 9, 11, 5
    gen = torch.Generator().manual_seed(5)
    z = (torch.randn(3, height * width, generator=gen) * 0.3).double()
    v = torch.randn(3, height * width, generator=gen).double()
    w = _dense_window(height, width, extent)
    diff = z[:, None, :] - z[:, :, None]  # (R, i, k): z_k - z_i
    B = (w * torch.tanh(10.0 * diff)).sum(-1)
    K = w * 10.0 / torch.cosh(10.0 * diff) ** 2
    Jv = (K * v[:, None, :]).sum(-1) - K.sum(-1) * v
    lin = WindowCoupling(10.0, extent, height, width, dtype=torch.float64).linearize(z)
    assert float((lin.B - B).abs().max()) < 1e-12
    assert float((lin.matvec(v) - Jv).abs().max()) < 1e-12


def _spd_rows(n: int, d: int, dtype: torch.dtype, seed: int):
    """n SPD systems of size d, conditioning from near I to hard, and right-hand sides."""
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(n, d, d, generator=gen, dtype=torch.float64)
    spread = torch.logspace(-3, 1, n, dtype=torch.float64)
    spd = torch.eye(d, dtype=torch.float64) + spread[:, None, None] * (a @ a.transpose(1, 2))
    b = torch.randn(n, d, generator=gen, dtype=torch.float64)
    return spd.to(dtype), b.to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", ["tensor", "jacobi", "callable"])
def test_compiled_cg_updates_equal_pytorchs(monkeypatch, dtype, kind):
    """CG with its updates in the compiled loops (dot products summed in float64) against
    PyTorch's: the same step counts per row and the same solutions to the dtype's rounding,
    with Jacobi as a tensor or a :class:`Jacobi`, or a general preconditioner (a callable),
    while finished rows are dropped (``restrict``) and a NaN row counts as done."""
    n, d = 12, 40
    spd, b = _spd_rows(n, d, dtype, seed=3)
    b[4] = float("nan")
    inverse = 1.0 / torch.diagonal(spd, dim1=1, dim2=2)

    def precond_of(rows):
        part = inverse if rows is None else inverse[rows]
        if kind == "tensor":
            return part
        if kind == "jacobi":
            return Jacobi(part)
        return lambda r: 0.5 * part * r + 0.5 * part * r  # not a Jacobi: called as it is

    def matvec_of(rows):
        m = spd if rows is None else spd[rows]
        return lambda v: (m @ v[..., None])[..., 0]

    def run():
        report: dict = {}
        restrict = lambda rows: (matvec_of(rows), precond_of(rows))  # noqa: E731
        x, steps = cg(matvec_of(None), b, precond_of(None), 1e-6, 0.0, 300, report, restrict)
        return x, steps, report["row_steps"]

    monkeypatch.setattr(solvers, "_FUSED_DTYPES", ())
    x_torch, steps_torch, rows_torch = run()
    monkeypatch.setattr(solvers, "_FUSED_DTYPES", (torch.float32, torch.float64))
    monkeypatch.setenv("IBNN_COMPILED", "1")
    assert compiled.enabled()
    x_fused, steps_fused, rows_fused = run()
    finite = torch.isfinite(b).all(-1)
    # the NaN row is done from the start (nothing to gain) and has no solution
    assert bool(x_fused[4].isnan().all()) and bool(x_torch[4].isnan().all())
    assert int(rows_fused[4]) == 0
    assert bool(torch.isfinite(x_fused[finite]).all())
    # CG's step counts follow from the residuals crossing 1e-6; over 80-90 float32 steps
    # the rounding of float32 against float64 dot products moves them by a step or two
    slack = 1 + 0.03 * rows_torch.float()
    assert bool(((rows_fused - rows_torch).abs() <= slack).all())
    assert abs(steps_fused - steps_torch) <= float(slack.max())
    exact = torch.linalg.solve(spd[finite].double(), b[finite].double()[..., None])[..., 0]
    scale = exact.abs().max()
    # CG's own residual stops at 1e-6; the true one of a float32 solve also holds the
    # rounding of systems with ||A|| up to ~400
    bound = 5e-5 if dtype == torch.float32 else 2e-6
    for x in (x_torch, x_fused):
        residual = (spd[finite].double() @ x[finite].double()[..., None])[..., 0] - b[finite]
        assert float(residual.norm(dim=-1).max()) <= bound * float(b[finite].norm(dim=-1).max())
    # both stop at a relative residual of 1e-6 on systems of condition up to ~400
    for x in (x_torch, x_fused):
        assert float((x[finite].double() - exact).abs().max()) <= 1e-3 * float(scale)


def test_warm_up_compiles_every_loop_for_both_dtypes(monkeypatch):
    """What the benchmarks call before their clocks start: it runs every loop on tiny inputs,
    so each signature a solve needs is compiled (or loaded) afterwards."""
    monkeypatch.setenv("IBNN_COMPILED", "1")
    compiled.warm_up()
    loops = (compiled._deposit, compiled._gather_minus, compiled._window_matvec,
             compiled._cg_advance, compiled._window_cg, compiled._grid_cg)  # fmt: skip
    signatures = [len(f.signatures) for f in loops]
    assert all(n >= 2 for n in signatures), signatures


def _window_system(dtype: torch.dtype, extent: int, lam: float, seed: int):
    """A window's Newton system on 9 x 11 maps: its linearization, the dense H = I + lam J
    (float64, from the exact sums), and right-hand sides."""
    height, width = 9, 11
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(8, height * width, generator=gen, dtype=torch.float64) * 0.3
    w = _dense_window(height, width, extent)
    K = w * 10.0 / torch.cosh(10.0 * (z[:, None, :] - z[:, :, None])) ** 2
    J = K - torch.diag_embed(K.sum(-1))
    H = torch.eye(height * width, dtype=torch.float64) + lam * J
    lin = WindowCoupling(10.0, extent, height, width, dtype=dtype).linearize(z.to(dtype))
    b = torch.randn(8, height * width, generator=gen, dtype=torch.float64)
    return lin, H, b


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("extent", "lam"), [(3, -1.0), (5, -3.0), (7, 0.04)])
def test_window_cg_solves_each_rows_system_against_the_dense_matrix(
    monkeypatch, dtype, extent, lam
):
    """The compiled row-by-row CG of a window (Jacobi exact on the constant mode): every row's
    true residual ||H x - b|| at its own target, H built densely from the exact sums; a zero
    row takes no step, a NaN row gets a NaN solution and leaves the others alone, a looser
    target stops sooner; the batched CG (PyTorch's) takes as many steps to the same x."""
    monkeypatch.setenv("IBNN_COMPILED", "1")
    lin, H, b = _window_system(dtype, extent, lam, seed=11)
    b[2] = 0.0
    b[4, 7] = float("nan")
    rtol = 1e-4 if dtype == torch.float32 else 1e-9
    target = rtol * b.norm(dim=-1)
    target[5] = 1e-2 * float(b[5].norm())
    x, row_steps, r_norm = lin.solve(lam, b.to(dtype), target.to(dtype), 500)
    assert x.dtype == dtype and row_steps.dtype == torch.int32
    ok = torch.tensor([i not in (2, 4) for i in range(8)])
    residual = (H[ok] @ x[ok].double()[..., None])[..., 0] - b[ok]
    # CG's own residual meets the target; the true one also holds the dtype's rounding
    rounding = 50 * torch.finfo(dtype).eps * b[ok].norm(dim=-1)
    assert bool((residual.norm(dim=-1) <= 1.01 * target[ok] + rounding).all())
    assert bool((r_norm[ok] <= target[ok]).all())
    assert int(row_steps[2]) == 0 and bool((x[2] == 0).all())
    assert bool(x[4].isnan().all()) and not bool(torch.isfinite(r_norm[4]))
    assert int(row_steps[5]) < int(row_steps[ok].max())
    # the batched CG with the same preconditioner: the same x, the same steps (rounding aside)
    matvec, _, _ = solvers.jacobian_system(lin, lam)
    x_b, _ = cg(matvec, b.to(dtype), Jacobi(1.0 / (1.0 + lam * lin.diag)), rtol, 0.0, 500)
    exact = torch.linalg.solve(H[ok], b[ok][..., None])[..., 0]
    keep = ok.clone()
    keep[5] = False
    scale = float(exact.abs().max())
    assert float((x[keep].double() - x_b[keep].double()).abs().max()) <= 50 * rtol * scale


def test_solve_jacobian_takes_the_window_row_solver_only_on_the_compiled_path(monkeypatch):
    """solve_jacobian: the window's own row CG on the compiled path, PyTorch's batched CG with
    the window's preconditioner otherwise; both solve the system to its tolerance and fill
    cg's report (relative residual, steps per row)."""
    lin, H, b = _window_system(torch.float32, 5, -1.0, seed=12)
    exact = torch.linalg.solve(H, b[..., None])[..., 0]
    for flag in ("1", "0"):
        monkeypatch.setenv("IBNN_COMPILED", flag)
        assert (lin.solve(-1.0, b.float(), torch.full((8,), 1e-4), 500) is None) == (flag == "0")
        report: dict = {}
        x, steps = solvers.solve_jacobian(lin, -1.0, b.float(), 1e-5, 0.0, 500, report)
        assert steps == int(report["row_steps"].max()) > 0
        assert report["relative_residual"] <= 1e-5
        assert float((x.double() - exact).abs().max()) <= 1e-4 * float(exact.abs().max())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("lam", [-1.0, -3.0])
def test_grid_cg_solves_each_rows_system_as_the_batched_cg(monkeypatch, dtype, lam):
    """The compiled row-by-row CG of the grid (the convolution summed directly): every row's
    residual against the grid's own (FFT) matvec at its target, the batched CG's solution, a
    zero row without a step, a NaN row NaN; grids above _ROW_CG_NODES go to the batched CG."""
    monkeypatch.setenv("IBNN_COMPILED", "1")
    gen = torch.Generator().manual_seed(13)
    z = (torch.randn(6, 300, generator=gen, dtype=torch.float64) * 0.04).to(dtype)
    z[1] *= 2.0  # a wider row: a grid of more nodes
    coupling = GridCoupling(10.0, dtype=torch.float64, split_jacobian=dtype == torch.float32)
    lin = coupling.linearize(z)
    b = torch.randn(6, 300, generator=gen, dtype=torch.float64).to(dtype)
    b[2] = 0.0
    b[4, 9] = float("nan")
    rtol = 1e-5 if dtype == torch.float32 else 1e-10
    target = rtol * b.norm(dim=-1)
    x, row_steps, r_norm = lin.solve(lam, b, target, 300)
    ok = torch.tensor([i not in (2, 4) for i in range(6)])
    true = (x + lam * lin.matvec(x) - b)[ok].norm(dim=-1)
    rounding = 50 * torch.finfo(dtype).eps * b[ok].norm(dim=-1)
    assert bool((true <= 1.01 * target[ok] + rounding).all())
    assert int(row_steps[2]) == 0 and bool((x[2] == 0).all())
    assert bool(x[4].isnan().all()) and bool(torch.isfinite(x[ok]).all())
    matvec, _, _ = solvers.jacobian_system(lin, lam)
    x_b, _ = cg(matvec, b, Jacobi(1.0 / (1.0 + lam * lin.diag)), rtol, 0.0, 300)
    scale = float(x_b[ok].abs().max())
    assert float((x[ok] - x_b[ok]).abs().max()) <= 100 * rtol * scale
    monkeypatch.setattr(grid, "_ROW_CG_NODES", 8)
    assert coupling.linearize(z).solve(lam, b, target, 300) is None
