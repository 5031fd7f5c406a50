"""Per-sample warm starts and the forward-only solve, each against the exact (cold) solve."""

from __future__ import annotations

import pytest
import torch

from ibnn import get_solver
from ibnn.nn import solvers
from ibnn.nn.coupling import DenseCoupling, WindowCoupling
from ibnn.nn.grid import GridCoupling
from ibnn.nn.neuron import ImplicitBias
from ibnn.nn.solvers import FixedPointProblem
from ibnn.nn.warm import WarmStarts

NEWTON = get_solver("newton")
CASES = [  # (coupling, lam): global w (grid), a window, the exact sum, three lam
    (GridCoupling(10.0, dtype=torch.float64, split_jacobian=True), -1.0),
    (GridCoupling(10.0), -0.3),
    (WindowCoupling(10.0, 5, 8, 8), -1.0),
    (DenseCoupling(10.0), -3.0),
]
IDS = ["grid-1", "grid-0.3", "window5-1", "dense-3"]


def _rows(seed: int) -> torch.Tensor:
    torch.manual_seed(seed)
    return torch.randn(48, 64) * torch.linspace(0.05, 1.0, 48)[:, None]


@pytest.mark.parametrize("coupling, lam", CASES, ids=IDS)
def test_a_warm_start_reaches_the_cold_fixed_point_in_fewer_steps(coupling, lam):
    """z of a nearby problem (y moved by 1%, as an epoch of SGD moves it) as the start: the
    same fixed point to the tolerance's reach, every row converged, fewer Newton steps."""
    y0 = _rows(0)
    y1 = y0 + 0.01 * torch.randn_like(y0)
    tol = 5e-6
    z0, _ = NEWTON(FixedPointProblem(y0, lam, coupling), y0.clone(), tol=tol)
    problem = FixedPointProblem(y1, lam, coupling)
    z_cold, cold = NEWTON(problem, y1.clone(), tol=tol)
    z_warm, warm = NEWTON(problem, z0, tol=tol, warm=True)
    assert bool(warm.converged.all()) and bool(cold.converged.all())
    assert float(warm.residual.max()) <= tol
    assert torch.allclose(z_warm, z_cold, rtol=0, atol=2e-5)
    assert warm.row_iters.float().mean() < cold.row_iters.float().mean()
    # not warm, the same start is replaced by the linear start for lam < 0 (stiff: alone)
    _, ignored = NEWTON(problem, z0, tol=tol)
    if -lam * coupling.p >= solvers._LINEAR_START_ALONE:
        assert torch.equal(ignored.row_iters, cold.row_iters)


@pytest.mark.parametrize("coupling, lam", CASES, ids=IDS)
def test_a_forward_only_solve_drops_rows_and_keeps_no_linearization(coupling, lam):
    y = _rows(1)
    z, info = NEWTON(FixedPointProblem(y, lam, coupling), y.clone(), tol=5e-6)
    z_f, fwd = NEWTON(FixedPointProblem(y, lam, coupling), y.clone(), tol=5e-6, linearization=False)
    assert info.linearization is not None and fwd.linearization is None
    assert bool(fwd.converged.all()) and torch.equal(fwd.row_iters, info.row_iters)
    assert torch.allclose(z_f, z, rtol=0, atol=1e-5)


@pytest.mark.parametrize("kw", [dict(lam=-1.0), dict(lam=-1.0, w_extent=5), dict(lam=0.04)])
def test_a_layer_under_no_grad_gives_the_autograd_solution(kw):
    torch.manual_seed(2)
    layer = ImplicitBias(**kw)
    y = torch.randn(4, 3, 10, 10)
    with torch.no_grad():
        z_eval = layer(y, spatial=(10, 10))
    assert layer.record.forward.linearization is None  # nothing kept for a backward
    y_grad = y.clone().requires_grad_()
    z = layer(y_grad, spatial=(10, 10))
    z.sum().backward()  # the autograd path still has its backward
    assert y_grad.grad is not None and torch.isfinite(y_grad.grad).all()
    assert torch.allclose(z_eval, z.detach(), rtol=0, atol=1e-5)


def _layer_rows(layer: ImplicitBias, x: torch.Tensor) -> torch.Tensor:
    return layer(x, spatial=(x.shape[-2], x.shape[-1]))


def test_warm_starts_store_each_samples_z_and_start_from_it():
    torch.manual_seed(3)
    layer = ImplicitBias(lam=-1.0)
    model = torch.nn.ModuleDict({"neuron": layer})
    x = torch.randn(10, 2, 8, 8)
    cache = WarmStarts(10)
    with pytest.raises(ValueError, match=r"`n >= 1` must hold, but got n=0"):
        WarmStarts(0)
    order = torch.tensor([7, 2, 9, 0, 4, 1, 8, 3, 6, 5])
    with cache.use(model, order[:5]):
        assert layer.warm_start is not None
        with torch.no_grad():
            z_first = _layer_rows(layer, x[order[:5]])
    assert layer.warm_start is None  # left after the block
    cold_iters = layer.record.forward.iters
    assert cache.nbytes == 10 * 2 * 64 * 2  # float16, every sample's slot allocated
    stored = cache._z[0][order[:5]].float().reshape(z_first.shape)
    assert torch.allclose(stored, z_first, rtol=1e-3, atol=1e-3)  # in the samples' order
    # a batch with a sample never solved starts cold; a batch of known samples starts warm
    mixed = order[3:7]
    with cache.use(model, mixed):
        assert layer.warm_start.start(torch.zeros(8, 64)) is None
    known = order[:4]
    with cache.use(model, known), torch.no_grad():
        start = layer.warm_start.start(torch.zeros(8, 64))
        assert start is not None and start.dtype == torch.float32
        z_warm = _layer_rows(layer, x[known])
    # the stored z is the fixed point rounded to float16: one step from it
    assert layer.record.forward.iters == 1 < cold_iters
    assert torch.allclose(z_warm, z_first[:4], rtol=0, atol=1e-3)
    assert float(layer.record.forward.residual.max()) <= 5e-6


def test_a_non_finite_stored_row_starts_cold_and_unsafe_lam_never_warm_starts():
    torch.manual_seed(4)
    x = torch.randn(3, 2, 8, 8)
    layer = ImplicitBias(lam=-1.0)
    cache = WarmStarts(3)
    index = torch.arange(3)
    with cache.use(layer, index), torch.no_grad():
        z = _layer_rows(layer, x)
    cache._z[0][1, :5] = float("inf")  # beyond float16's range, say
    with cache.use(layer, index), torch.no_grad():
        z_again = _layer_rows(layer, x)
    assert bool(layer.record.forward.converged.all())
    assert torch.allclose(z_again, z, rtol=0, atol=2e-5)
    unsafe = ImplicitBias(lam=0.2, allow_unsafe_lam=True)
    other = WarmStarts(3)
    with other.use(unsafe, index), torch.no_grad():
        _layer_rows(unsafe, x)
    assert other.nbytes == 0  # nothing stored, nothing started from
