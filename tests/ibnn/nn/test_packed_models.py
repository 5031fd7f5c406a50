"""Packed models: K models as one must compute exactly what each computes alone."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ibnn.nn.coupling import DenseCoupling
from ibnn.nn.models import solver_stats, to_ibnn, toy_net, ucn
from ibnn.nn.pack import pack_models
from ibnn.nn.solvers import FixedPointProblem, cg, newton


def _ucn(seed: int, lam: float | None, p: float = 10.0, trainable: bool = False):
    torch.manual_seed(seed)
    sm = ucn("sm", 2, 3, 1, 10, 12)
    return sm if lam is None else to_ibnn(sm, lam=lam, p=p, lam_trainable=trainable)


# two models share an equation (solved together), one has another lam, one another p,
# one learns its lam (solved alone), one is at lam = 0 (the standard neuron)
MIXED = [(0, -1.0, 10.0, False), (1, -1.0, 10.0, False), (2, 0.04, 10.0, False),
         (3, -0.5, 5.0, False), (4, -1.0, 10.0, True), (5, 0.0, 10.0, False)]  # fmt: skip


@pytest.mark.filterwarnings("ignore:Using padding='same'")
def test_a_pack_computes_what_each_model_computes_alone():
    models = [_ucn(s, lam, p, tr) for s, lam, p, tr in MIXED]
    packed = pack_models(models)
    k = len(models)
    gen = torch.Generator().manual_seed(7)
    x = torch.rand(6, k, 1, 12, 12, generator=gen)
    y = torch.randint(0, 10, (6, k), generator=gen)
    out = packed(x)
    losses = F.cross_entropy(out.transpose(1, 2), y, reduction="none").mean(0)
    losses.sum().backward()
    packed_stats = [packed.solver_stats(i) for i in range(k)]
    conv_grad = packed.layers[0].conv.weight.grad.chunk(k)
    head_grad = packed.head.weight.grad
    for i, m in enumerate(models):
        lam_grad = m.blocks[0].neuron.lam_raw.grad.clone() if MIXED[i][3] else None
        m.zero_grad(set_to_none=True)
        solo = m(x[:, i])
        torch.testing.assert_close(out[:, i], solo, rtol=0, atol=1e-6)
        F.cross_entropy(solo, y[:, i]).backward()
        torch.testing.assert_close(conv_grad[i], m.blocks[0].weight.grad, rtol=1e-3, atol=1e-5)
        torch.testing.assert_close(head_grad[i], m.head.weight.grad, rtol=1e-3, atol=1e-6)
        if lam_grad is not None:
            torch.testing.assert_close(lam_grad, m.blocks[0].neuron.lam_raw.grad, rtol=1e-3,
                                       atol=1e-6)  # fmt: skip
        alone = solver_stats(m)
        if MIXED[i][1] == 0.0:
            assert packed_stats[i] == {} == alone
            continue
        # iterations are per model (its own rows), not the pack's maximum
        assert packed_stats[i]["iters"] == alone["iters"]
        assert packed_stats[i]["backward_iters"] == pytest.approx(alone["backward_iters"], abs=1)
        # float32 residuals near the tolerance (5e-6) are rounding noise of ~1e-7 (a joint
        # grid has its own size): equal to a tenth of the tolerance
        assert packed_stats[i]["residual"] == pytest.approx(alone["residual"], rel=1e-3, abs=5e-7)
        assert packed_stats[i]["nonconverged_frac"] == alone["nonconverged_frac"]


@pytest.mark.filterwarnings("ignore:Using padding='same'")
def test_unpack_writes_each_model_its_own_weights_and_batchnorm_statistics():
    models = [_ucn(s, -1.0) for s in range(3)]
    packed = pack_models(models)
    packed.train()
    packed(torch.rand(5, 3, 1, 12, 12))  # moves the BatchNorm running statistics
    with torch.no_grad():
        packed.layers[0].conv.weight.add_(
            torch.arange(3.0).repeat_interleave(3)[:, None, None, None]
        )
        packed.head.bias.add_(torch.arange(3.0)[:, None])
    before = [m.blocks[0].weight.detach().clone() for m in models]
    bn = packed.layers[2].norm
    packed.unpack_into()
    for i, m in enumerate(models):
        torch.testing.assert_close(m.blocks[0].weight, before[i] + i)
        torch.testing.assert_close(m.blocks[2].running_mean, bn.running_mean.chunk(3)[i])
        assert int(m.blocks[2].num_batches_tracked) == 1
        torch.testing.assert_close(m.head.bias, packed.head.bias[i])


def test_toy_networks_pack_too():
    nets = [toy_net("ibnn", hidden=5, lam=lam) for lam in (-0.5, -0.5, 0.04)]
    packed = pack_models(nets)
    x = torch.randn(9, 3, 2)
    out = packed(x)
    for i, net in enumerate(nets):
        torch.testing.assert_close(out[:, i], net(x[:, i]), rtol=0, atol=1e-6)


def test_models_that_differ_in_architecture_are_refused():
    with pytest.raises(ValueError, match="architecture"):
        pack_models([ucn("sm", 1, 3, 1, 10, 12), ucn("sm", 1, 4, 1, 10, 12)])
    with pytest.raises(ValueError, match="architecture"):  # SM and IBNN layers
        pack_models([ucn("sm", 1, 3, 1, 10, 12), to_ibnn(ucn("sm", 1, 3, 1, 10, 12), lam=-1.0)])
    with pytest.raises(ValueError, match="UCN and ToyNet"):
        pack_models([torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)])


def test_per_row_counts_give_each_subset_its_own_iterations():
    """Newton's and CG's per-row counts: their maximum is the solve's count, and the rows of a
    subset solved alone take exactly the subset's maximum."""
    gen = torch.Generator().manual_seed(3)
    y = torch.randn(12, 9, generator=gen, dtype=torch.float64) * torch.linspace(0.1, 3, 12)[:, None]
    problem = FixedPointProblem(y, -2.0, DenseCoupling(10.0))
    _, info = newton(problem, y.clone(), tol=1e-10)
    assert int(info.row_iters.max()) == info.iters
    assert int(info.row_iters.min()) < info.iters  # the scales differ: so do the counts
    for part in (slice(0, 4), slice(4, 12)):
        _, alone = newton(FixedPointProblem(y[part], -2.0, DenseCoupling(10.0)), y[part].clone(),
                          tol=1e-10)  # fmt: skip
        assert alone.iters == int(info.row_iters[part].max())
    a = torch.eye(9, dtype=torch.float64) * torch.linspace(1, 50, 9)
    report: dict = {}
    _, steps = cg(lambda v: v @ a, y, torch.ones_like(y), 1e-8, 0.0, 100, report)
    assert int(report["row_steps"].max()) == steps
