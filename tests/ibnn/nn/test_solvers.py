"""The solver registry, CG, the energy descent of Eq. (12) and agreement between solvers."""

from __future__ import annotations

import pytest
import torch

from ibnn import get_solver
from ibnn.nn.coupling import DenseCoupling, WindowCoupling
from ibnn.nn.grid import GridCoupling
from ibnn.nn.solvers import FixedPointProblem, cg


def test_unknown_solver_lists_the_valid_names():
    with pytest.raises(ValueError, match=r"unknown solver 'lbfgs'; valid names: \["):
        get_solver("lbfgs")


def test_cg_solves_batched_spd_systems():
    torch.manual_seed(0)
    a = torch.randn(4, 6, 6, dtype=torch.float64)
    spd = a @ a.transpose(1, 2) + 6 * torch.eye(6, dtype=torch.float64)
    b = torch.randn(4, 6, dtype=torch.float64)
    report: dict = {}
    x, steps = cg(
        lambda v: (spd @ v[..., None])[..., 0], b, torch.ones_like(b), 1e-12, 0.0, 50, report
    )
    assert torch.allclose(x, torch.linalg.solve(spd, b), atol=1e-10) and steps <= 7
    true_rel = float(((spd @ x[..., None])[..., 0] - b).norm() / b.norm())
    assert report["relative_residual"] <= 1e-12 and true_rel <= 1e-11
    x4, _ = cg(lambda v: (spd @ v[..., None])[..., 0], b, torch.ones_like(b), 0.0, 0.0, 3, report)
    true_rel = float(((spd @ x4[..., None])[..., 0] - b).norm() / b.norm())
    assert report["relative_residual"] == pytest.approx(true_rel, rel=1e-6)  # 3 steps: not done


@pytest.mark.parametrize("lam", [-5.0, -0.5, 0.04])
def test_energy_descent_never_increases_the_energy(lam):
    """Eq. (12) with its fixed step is gradient descent on the convex energy of Eq. (5)."""
    torch.manual_seed(1)
    y = torch.randn(5, 16, dtype=torch.float64)
    problem = FixedPointProblem(y, lam, DenseCoupling(10.0))
    descent = get_solver("descent")
    z, energies = y.clone(), [problem.energy(y)]
    for _ in range(60):
        z, _ = descent(problem, z, tol=0.0, max_iter=1)
        energies.append(problem.energy(z))
    e = torch.stack(energies)
    assert (e[1:] <= e[:-1] + 1e-12).all()
    assert (e[-1] < e[0]).all()


@pytest.mark.parametrize(
    "coupling",
    [DenseCoupling(10.0), WindowCoupling(10.0, 3, 6, 6), GridCoupling(10.0)],
    ids=["dense", "window", "grid"],
)
def test_solvers_agree_and_newton_handles_stiff_lam(coupling):
    torch.manual_seed(2)
    y = torch.randn(4, 36, dtype=torch.float64)
    problem = FixedPointProblem(y, -2.0, coupling)
    z_newton, info = get_solver("newton")(problem, y.clone(), tol=1e-10)
    z_descent, info_d = get_solver("descent")(problem, y.clone(), tol=1e-10, max_iter=20000)
    assert bool(info.converged.all()) and bool(info_d.converged.all())
    assert info.iters < 20 < info_d.iters
    assert (z_newton - z_descent).abs().max() <= 1e-8


def test_plain_iteration_diverges_where_newton_converges():
    torch.manual_seed(3)
    y = torch.randn(3, 100) * 2
    problem = FixedPointProblem(y, -2.0, GridCoupling(10.0))
    _, picard = get_solver("picard")(problem, y.clone(), tol=1e-5, max_iter=50)
    _, newton = get_solver("newton")(problem, y.clone(), tol=1e-5)
    assert not bool(picard.converged.any()) and bool(newton.converged.all())


def test_torchdeq_solvers_are_available_by_name():
    y = torch.randn(3, 20, dtype=torch.float64)
    problem = FixedPointProblem(y, 0.02, DenseCoupling(10.0))
    for name in ("anderson", "broyden"):
        z, info = get_solver(name)(problem, y.clone(), tol=1e-9, max_iter=100)
        assert bool(info.converged.all()), name
