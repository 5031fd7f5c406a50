"""IBNN layers against torch's layers and against a brute-force cross term written here."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from ibnn import IBNNConv2d, IBNNLinear, lam_bound

LAMS = (-10.0, -2.0, -0.5, -0.1, -0.04, 0.02, 0.045)
PS = (5.0, 10.0, 20.0)
EXTENTS = (None, 3, 5)


def brute_cross(z: torch.Tensor, p: float, extent: int | None) -> torch.Tensor:
    """B_i = sum_k w_ik tanh(p (z_k - z_i)) by an explicit (D, D) weight matrix.

    Args:
        z: (R, H, W) maps (a linear layer's rows: H = 1).
    Returns:
        (R, H, W), computed in float64.
    """
    r, h, w = z.shape
    zf = z.reshape(r, h * w).double()
    rows = torch.arange(h).repeat_interleave(w)
    cols = torch.arange(w).repeat(h)
    if extent is None:
        weight = torch.full((h * w, h * w), 1.0 / (h * w), dtype=torch.float64)
    else:
        near = ((rows[:, None] - rows[None, :]).abs() <= extent // 2) & (
            (cols[:, None] - cols[None, :]).abs() <= extent // 2
        )
        weight = near.double() / extent**2
    assert torch.equal(weight, weight.T)
    b = (weight * torch.tanh(p * (zf[:, None, :] - zf[:, :, None]))).sum(-1)
    return b.reshape(r, h, w)


def conv_case(lam, p, extent, size=12, batch=3, seed=0, **kw):
    torch.manual_seed(seed)
    layer = IBNNConv2d(2, 3, 3, lam=lam, p=p, w_extent=extent, **kw)
    with torch.no_grad():
        layer.weight.mul_(3.0)  # pre-activations spread over a few units, as after training
    x = torch.rand(batch, 2, size, size)
    return layer, x


VALID = [(lam, p, e) for lam, p, e in itertools.product(LAMS, PS, EXTENTS) if lam < lam_bound(p)]


@pytest.mark.parametrize("lam,p,extent", VALID)
def test_fixed_point_matches_brute_force(lam, p, extent):
    layer, x = conv_case(lam, p, extent)
    z = layer(x)
    y = layer._conv_forward(x, layer.weight, layer.bias)
    z_rows = z.reshape(-1, *z.shape[-2:])
    residual = (
        z_rows.double() - y.reshape_as(z_rows).double() + lam * brute_cross(z_rows, p, extent)
    )
    assert residual.abs().max().item() <= 1e-4
    stats = layer.last_stats
    assert stats.converged and stats.nonconverged_frac == 0.0
    assert stats.iters >= 1 and stats.residual <= 1e-4


@pytest.mark.parametrize("lam", [-10.0, -2.0, 0.04])
def test_fast_path_at_fashion_mnist_shape(lam):
    """The grid cross term (28 x 28 maps, uniform w) against the brute force."""
    layer, x = conv_case(lam, 10.0, None, size=28, batch=2)
    z = layer(x)
    assert type(layer.neuron.coupling(784, (28, 28))).__name__ == "GridCoupling"
    y = layer._conv_forward(x, layer.weight, layer.bias)
    z_rows = z.reshape(-1, 28, 28)
    residual = (
        z_rows.double() - y.reshape_as(z_rows).double() + lam * brute_cross(z_rows, 10.0, None)
    )
    assert residual.abs().max().item() <= 1e-4


def test_linear_fixed_point_uses_layer_size_weights():
    torch.manual_seed(1)
    layer = IBNNLinear(7, 5, lam=-0.3, p=10.0)
    x = torch.randn(6, 7)
    z = layer(x)
    y = nn.functional.linear(x, layer.weight, layer.bias)
    b = brute_cross(z[:, None, :], 10.0, None)[:, 0]  # w = 1/out_features
    assert (z.double() - y.double() - 0.3 * b).abs().max().item() <= 1e-4


def test_lam_zero_is_exactly_the_torch_layer():
    torch.manual_seed(0)
    ib = IBNNConv2d(2, 4, 5, lam=0.0)
    sm = nn.Conv2d(2, 4, 5, padding="same")
    sm.load_state_dict({k: v for k, v in ib.state_dict().items() if k in ("weight", "bias")})
    x = torch.randn(3, 2, 11, 11)
    assert (ib(x) - sm(x)).abs().max().item() <= 1e-6
    lin = IBNNLinear(6, 4, lam=0.0)
    ref = nn.Linear(6, 4)
    ref.load_state_dict({"weight": lin.weight, "bias": lin.bias})
    v = torch.randn(5, 6)
    assert (lin(v) - ref(v)).abs().max().item() <= 1e-6
    assert ib.neuron.is_standard and ib.last_stats is None


def test_lite_is_one_explicit_step():
    layer, x = conv_case(-0.5, 10.0, 3, lite=True)
    z = layer(x)
    y = layer._conv_forward(x, layer.weight, layer.bias)
    y_rows = y.reshape(-1, *y.shape[-2:])
    expected = y_rows.double() + 0.5 * brute_cross(y_rows, 10.0, 3)
    assert (z.reshape_as(y_rows).double() - expected).abs().max().item() <= 1e-5


def test_nonconvergence_is_reported_not_raised():
    layer, x = conv_case(-2.0, 10.0, None, solver="picard", max_iter=5)
    z = layer(x)
    stats = layer.last_stats
    assert not stats.converged and stats.nonconverged_frac > 0 and stats.residual > stats.tol
    assert z.shape == (3, 3, 12, 12)


def test_nan_input_gives_nan_rows_and_is_reported():
    layer, x = conv_case(-0.5, 10.0, None)
    x[1] = float("nan")
    z = layer(x)
    assert torch.isnan(z[1]).all() and torch.isfinite(z[[0, 2]]).all()
    assert layer.last_stats.nonconverged_frac == pytest.approx(1 / 3)


@pytest.mark.parametrize("extent,size", [(None, 28), (3, 12), (None, 6)])
def test_batch_independence(extent, size):
    layer, x = conv_case(-2.0, 10.0, extent, size=size, batch=5)
    x[3] *= 4.0  # an outlier sample (wider range, bigger grid) must not change the others
    with torch.no_grad():
        together = layer(x)
        alone = torch.cat([layer(x[i : i + 1]) for i in range(5)])
    assert (together - alone).abs().max().item() <= 1e-5


def test_linear_batch_independence():
    torch.manual_seed(2)
    layer = IBNNLinear(10, 300, lam=-1.0)  # 300 units: fast path
    x = torch.randn(4, 10)
    x[0] *= 4
    with torch.no_grad():
        assert (layer(x) - torch.cat([layer(x[i : i + 1]) for i in range(4)])).abs().max() <= 1e-5


def test_bad_arguments_are_refused_with_the_rule():
    with pytest.raises(ValueError, match=r"lam < 1/\(2p\).*bound is 0.05, but got lam=0.06"):
        IBNNConv2d(1, 2, 3, lam=0.06, p=10.0)
    with pytest.raises(ValueError, match="lam < 1/"):
        IBNNLinear(3, 4, lam=0.05, p=10.0)
    layer = IBNNLinear(3, 4, lam=0.06, p=10.0, allow_unsafe_lam=True)
    assert float(layer.lam) == pytest.approx(0.06)
    with pytest.raises(ValueError, match="w_extent"):
        IBNNConv2d(1, 2, 3, lam=-1.0, w_extent=4)
    with pytest.raises(ValueError, match=r"p > 0"):
        IBNNConv2d(1, 2, 3, lam=-1.0, p=0.0)
    with pytest.raises(ValueError, match=r"valid names: \['anderson'"):
        IBNNLinear(3, 4, lam=-1.0, solver="gauss")


def test_trainable_lam_cannot_leave_the_range():
    torch.manual_seed(0)
    layer = IBNNLinear(4, 6, lam=0.04, p=10.0, lam_trainable=True)
    assert float(layer.lam.detach()) == pytest.approx(0.04, abs=1e-6)
    opt = torch.optim.SGD(layer.parameters(), lr=50.0)
    x = torch.randn(16, 4)
    for _ in range(30):  # push lam upwards as hard as possible
        opt.zero_grad()
        (-layer.lam * 1e3 + 0 * layer(x).sum()).backward()
        opt.step()
        assert float(layer.lam.detach()) < lam_bound(10.0)
    assert float(layer.lam.detach()) > 0.045  # it did move towards the bound


def test_eval_reaches_the_solver_and_is_deterministic():
    from ibnn import ucn

    model = ucn("ibnn", 2, 3, 1, 10, 16, lam=-1.0)
    model.eval()
    assert all(not m.training for m in model.modules())
    x = torch.rand(6, 1, 16, 16)
    with torch.no_grad():
        first, second = model(x), model(x)
        alone = model(x[2:3])
    assert torch.equal(first, second)
    assert (first[2:3] - alone).abs().max().item() <= 1e-5


def test_signatures_follow_torch_in_torch_order():
    """Every parameter of nn.Conv2d / nn.Linear, same names, same order; the neuron's after."""
    import inspect

    for ours, theirs in ((IBNNConv2d, nn.Conv2d), (IBNNLinear, nn.Linear)):
        mine = list(inspect.signature(ours.__init__).parameters.values())
        torch_params = list(inspect.signature(theirs.__init__).parameters.values())
        assert [p.name for p in mine[: len(torch_params)]] == [p.name for p in torch_params]
        rest = mine[len(torch_params) :]
        assert rest[0].name == "lam" and rest[0].kind is inspect.Parameter.KEYWORD_ONLY


@pytest.mark.parametrize("extent", [None, 3])
def test_grouped_dilated_conv_at_lam_zero_is_torch_and_solves_otherwise(extent):
    torch.manual_seed(3)
    args = (4, 6, 3, 1, "same", 2, 2, True, "reflect")  # dilation 2, groups 2, reflect padding
    ref = nn.Conv2d(*args)
    layer = IBNNConv2d(*args, lam=0.0, w_extent=extent)
    layer.load_state_dict(ref.state_dict(), strict=False)
    x = torch.rand(2, 4, 10, 10)
    with torch.no_grad():
        assert torch.equal(layer(x), ref(x))
    ibnn = IBNNConv2d(*args, lam=-2.0, w_extent=extent)
    ibnn.load_state_dict(ref.state_dict(), strict=False)
    z = ibnn(x)
    y = ref(x).detach()
    z_rows, y_rows = z.reshape(-1, 10, 10).double(), y.reshape(-1, 10, 10).double()
    residual = z_rows - y_rows - 2.0 * brute_cross(z_rows, 10.0, extent)
    assert residual.abs().max().item() <= 1e-4
    z.sum().backward()
    assert ibnn.weight.grad is not None and torch.isfinite(ibnn.weight.grad).all()


def test_device_and_dtype_reach_the_weights_and_the_neuron():
    conv = IBNNConv2d(2, 3, 3, dtype=torch.float64, device="cpu", lam=-1.0, lam_trainable=True)
    lin = IBNNLinear(3, 4, dtype=torch.float64, lam=-1.0)
    for layer in (conv, lin):
        assert {t.dtype for t in layer.state_dict().values()} == {torch.float64}
    z = conv(torch.rand(1, 2, 6, 6, dtype=torch.float64))
    assert z.dtype == torch.float64
