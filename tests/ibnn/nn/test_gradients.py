"""Implicit differentiation against finite differences (float64 gradcheck)."""

from __future__ import annotations

import pytest
import torch

from ibnn import IBNNConv2d, IBNNLinear


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(lam=-2.0, w_extent=None),  # 5 x 5 maps: exact dense cross term
        dict(lam=0.04, w_extent=None),
        dict(lam=-0.5, w_extent=3),
        dict(lam=-1.0, w_extent=None, lite=True),
    ],
    ids=["dense-neg", "dense-pos", "window", "lite"],
)
def test_conv_gradients_match_finite_differences(kwargs):
    torch.manual_seed(0)
    layer = IBNNConv2d(1, 2, 3, p=5.0, lam_trainable=True, **kwargs).double()
    x = torch.rand(2, 1, 5, 5, dtype=torch.float64, requires_grad=True)
    params = [x, layer.weight, layer.bias, layer.neuron.lam_raw]

    # gradcheck perturbs copies of the parameters: route them through the layer
    def g(inp, weight, bias, lam_raw):
        return torch.func.functional_call(
            layer, {"weight": weight, "bias": bias, "neuron.lam_raw": lam_raw}, (inp,)
        )

    assert torch.autograd.gradcheck(g, tuple(params), eps=1e-6, atol=1e-6, rtol=1e-5)


def test_stiff_window_gradients_match_finite_differences():
    """lam = -3, p = 5 (-lam p = 15): forward and backward CG use the spectral preconditioner.
    Gradients in the input and in a trainable lam (the weights are covered above)."""
    torch.manual_seed(4)
    layer = IBNNConv2d(1, 2, 3, p=5.0, lam=-3.0, w_extent=5, lam_trainable=True).double()
    x = torch.rand(1, 1, 5, 5, dtype=torch.float64, requires_grad=True)

    def g(inp, lam_raw):
        return torch.func.functional_call(layer, {"neuron.lam_raw": lam_raw}, (inp,))

    params = (x, layer.neuron.lam_raw)
    assert torch.autograd.gradcheck(g, params, eps=1e-6, atol=1e-6, rtol=1e-5)
    with torch.no_grad():
        z = layer(x)[0, :1].reshape(1, 25)  # the point the backward pass linearises at
    assert layer.neuron.coupling(25, (5, 5)).linearize(z).smoother(-3.0)


def test_linear_gradients_match_finite_differences():
    torch.manual_seed(1)
    layer = IBNNLinear(4, 6, lam=-3.0, p=10.0, lam_trainable=True).double()
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)

    def g(inp, weight, bias, lam_raw):
        return torch.func.functional_call(
            layer, {"weight": weight, "bias": bias, "neuron.lam_raw": lam_raw}, (inp,)
        )

    params = (x, layer.weight, layer.bias, layer.neuron.lam_raw)
    assert torch.autograd.gradcheck(g, params, eps=1e-6, atol=1e-6, rtol=1e-5)
    layer(x).pow(2).sum().backward()
    stats = layer.last_stats
    assert stats.backward_iters > 0 and stats.backward_residual <= 1e-9


def test_fast_path_gradients_match_exact_ones():
    """Grid cross term (28 x 28 maps) vs the exact O(D^2) sum: same gradients."""
    torch.manual_seed(2)
    grads = {}
    for backend in ("grid", "dense"):
        torch.manual_seed(2)
        layer = IBNNConv2d(1, 2, 4, lam=-2.0, lam_trainable=True, backend=backend).double()
        x = torch.rand(2, 1, 28, 28, dtype=torch.float64, requires_grad=True)
        (
            layer(x) * torch.linspace(-1, 1, 2 * 2 * 784, dtype=torch.float64).view(2, 2, 28, 28)
        ).sum().backward()
        grads[backend] = [
            t.grad.clone() for t in (x, layer.weight, layer.bias, layer.neuron.lam_raw)
        ]
    for fast, exact in zip(grads["grid"], grads["dense"], strict=True):
        assert (fast - exact).abs().max() <= 1e-4 * max(1.0, exact.abs().max())


def test_every_parameter_gets_a_gradient():
    from ibnn import ucn

    model = ucn("ibnn", 2, 3, 1, 10, 12, lam=-0.5, lam_trainable=True)
    x = torch.rand(4, 1, 12, 12)
    torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 2, 3])).backward()
    for name, prm in model.named_parameters():
        assert prm.grad is not None and torch.isfinite(prm.grad).all(), name
        assert prm.grad.abs().sum() > 0, name
