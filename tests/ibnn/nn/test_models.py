"""The paper's models: UCN(L, C), the Fig. 2 toy network, SM <-> IBNN transfer."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ibnn import IBNNConv2d, IBNNLinear, solver_stats, to_ibnn, to_sm, toy_net, ucn


def n_trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("L,C,channels,size", [(1, 3, 1, 28), (2, 3, 3, 32), (3, 8, 3, 32)])
def test_ucn_shapes_and_equal_parameter_counts(L, C, channels, size):
    models = {f: ucn(f, L, C, channels, 10, size, lam=-0.5) for f in ("sm", "ibnn", "ibnn_lite")}
    counts = {f: n_trainable(m) for f, m in models.items()}
    assert len(set(counts.values())) == 1, counts
    k = round(0.15 * size)
    conv = models["ibnn"].blocks[0]
    assert isinstance(conv, IBNNConv2d) and conv.kernel_size == (k, k)
    assert [type(m).__name__ for m in models["sm"].blocks[:3]] == ["Conv2d", "ReLU", "BatchNorm2d"]
    x = torch.rand(2, channels, size, size)
    for model in models.values():
        out = model(x)
        assert out.shape == (2, 10) and torch.isfinite(out).all()


def test_ucn_refuses_bad_arguments():
    with pytest.raises(ValueError, match=r"valid names: \['sm', 'ibnn', 'ibnn_lite'\]"):
        ucn("resnet", 1, 3, 1, 10, 28)
    with pytest.raises(ValueError, match=r"`C >= 1` must hold, but got C=0"):
        ucn("sm", 1, 0, 1, 10, 28)
    with pytest.raises(ValueError, match="lam < 1/"):
        ucn("ibnn", 1, 3, 1, 10, 28, lam=0.2)


def test_to_ibnn_with_small_lam_reproduces_the_sm_model():
    torch.manual_seed(0)
    sm = ucn("sm", 2, 3, 1, 10, 16).eval()
    x = torch.rand(8, 1, 16, 16)
    with torch.no_grad():
        ref = sm(x)
        for lam in (1e-3, 1e-5):
            out = to_ibnn(sm, lam=lam).eval()(x)
            assert (out - ref).abs().max() <= 200 * lam  # |z - y| <= lam per unit (Eq. S8)
        same = to_ibnn(sm, lam=0.0).eval()(x)
    assert (same - ref).abs().max() <= 1e-6
    back = to_sm(to_ibnn(sm, lam=-1.0)).eval()
    with torch.no_grad():
        assert torch.equal(back(x), ref)
    assert n_trainable(to_ibnn(sm, lam=-1.0)) == n_trainable(sm)


def test_to_ibnn_keeps_the_head_standard():
    model = to_ibnn(toy_net("sm"), lam=-0.5)
    assert isinstance(model.hidden, IBNNLinear) and type(model.head) is nn.Linear


def test_toy_net_bound_s9():
    """||relu(z) - relu(y)||_2 <= |lam| sqrt(D) on the hidden layer (Supplementary Eq. S9)."""
    torch.manual_seed(3)
    for lam in (-10.0, -1.0, 0.04):
        net = toy_net("ibnn", hidden=3, lam=lam)
        x = torch.randn(500, 2) * 3
        with torch.no_grad():
            z = net.hidden(x)
            y = nn.functional.linear(x, net.hidden.weight, net.hidden.bias)
        gap = (torch.relu(z) - torch.relu(y)).norm(dim=1)
        assert gap.max() <= abs(lam) * 3**0.5 + 1e-5
        assert gap.max() > 0.1 * abs(lam)  # the implicit term does act
    assert n_trainable(toy_net("sm")) == n_trainable(toy_net("ibnn", lam=-1.0))
    assert toy_net("ibnn", lam=-1.0)(torch.randn(4, 2)).shape == (4, 2)


def test_solver_stats_aggregates_layers():
    model = ucn("ibnn", 2, 3, 1, 10, 12, lam=-2.0)
    assert solver_stats(model) == {}
    model(torch.rand(3, 1, 12, 12))
    stats = solver_stats(model)
    assert stats["iters"] >= 1 and stats["residual"] <= 1e-4 and stats["converged"]
    assert stats["nonconverged_frac"] == 0.0
    assert solver_stats(ucn("sm", 1, 3, 1, 10, 12)) == {}


def test_to_ibnn_and_to_sm_pass_every_conv_argument_through():
    torch.manual_seed(1)
    sm = nn.Sequential(
        nn.Conv2d(4, 6, 3, 2, 1, 2, 2, False, "circular", dtype=torch.float64),
        nn.Linear(5, 3, bias=False, dtype=torch.float64),
    )
    ib = to_ibnn(sm, lam=-0.5)
    back = to_sm(ib)
    keys = ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation")
    keys += ("groups", "padding_mode")
    for model in (ib, back):
        conv, lin = model[0], model[1]
        assert all(getattr(conv, k) == getattr(sm[0], k) for k in keys)
        assert conv.bias is None and lin.bias is None and conv.weight.dtype == torch.float64
        assert (lin.in_features, lin.out_features) == (5, 3)
    assert isinstance(ib[0], IBNNConv2d) and type(back[0]) is nn.Conv2d
    x = torch.rand(2, 4, 9, 9, dtype=torch.float64)
    with torch.no_grad():
        assert torch.equal(back[0](x), sm[0](x))
        assert torch.equal(to_ibnn(sm, lam=0.0)[0](x), sm[0](x))
