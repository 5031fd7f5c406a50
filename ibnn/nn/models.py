"""The paper's models, chosen by family name: UCN(L, C) and the 2-D toy network of Fig. 2.

Families: "sm" (standard neurons), "ibnn" (implicit-bias neurons, fixed point), "ibnn_lite"
(one explicit step). SM and IBNN versions have the same trainable parameters when lam is fixed.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

from ibnn.nn.layers import IBNNConv2d, IBNNLinear
from ibnn.nn.neuron import ImplicitBias
from ibnn.vocab import check_family

__all__ = ["UCN", "ToyNet", "ucn", "toy_net", "to_ibnn", "to_sm", "solver_stats", "aggregate_stats"]


def _conv(family: str, c_in: int, c_out: int, k: int, neuron_kwargs: dict) -> nn.Module:
    if family == "sm":
        return nn.Conv2d(c_in, c_out, k, padding="same")
    return IBNNConv2d(c_in, c_out, k, lite=family == "ibnn_lite", **neuron_kwargs)


def _linear(family: str, n_in: int, n_out: int, neuron_kwargs: dict) -> nn.Module:
    if family == "sm":
        return nn.Linear(n_in, n_out)
    return IBNNLinear(n_in, n_out, lite=family == "ibnn_lite", **neuron_kwargs)


class UCN(nn.Module):
    """Uniform convolutional network UCN(L, C): L blocks (conv -> ReLU -> BatchNorm2d), then
    one SM Linear head.

    Shapes:
        x: (N, in_channels, S, S) -> logits (N, num_classes).
    """

    def __init__(self, blocks: nn.Sequential, head: nn.Linear) -> None:
        super().__init__()
        self.blocks = blocks
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(x).flatten(1))


def ucn(
    family: str,
    L: int,
    C: int,
    in_channels: int,
    num_classes: int,
    image_size: int,
    **neuron_kwargs,
) -> UCN:
    """The paper's UCN(L, C) (Methods, "Network architectures").

    Args:
        family: "sm", "ibnn" or "ibnn_lite".
        L: number of blocks, >= 1.
        C: channels of every block, >= 1.
        in_channels: image channels.
        num_classes: outputs of the head.
        image_size: side S of the square input; the conv kernel side is round(0.15 * S).
        **neuron_kwargs: lam, p, w_extent, lam_trainable, solver, ... (unknown keys are an
            error for the IBNN families; all are ignored for "sm").
    """
    check_family(family)
    for name, value in (
        ("L", L),
        ("C", C),
        ("in_channels", in_channels),
        ("num_classes", num_classes),
    ):
        if int(value) != value or value < 1:
            raise ValueError(f"`{name} >= 1` must hold, but got {name}={value!r}")
    k = max(1, round(0.15 * image_size))
    layers: list[nn.Module] = []
    for block in range(L):
        layers += [
            _conv(family, in_channels if block == 0 else C, C, k, neuron_kwargs),
            nn.ReLU(),
            nn.BatchNorm2d(C),
        ]
    return UCN(nn.Sequential(*layers), nn.Linear(C * image_size * image_size, num_classes))


class ToyNet(nn.Module):
    """Fig. 2 network: Linear(2, hidden) neurons -> ReLU -> BatchNorm1d -> Linear(hidden, 2).

    Shapes:
        x: (N, 2) -> logits (N, 2).
    """

    def __init__(self, hidden_layer: nn.Linear, hidden: int) -> None:
        super().__init__()
        self.hidden = hidden_layer
        self.act = nn.ReLU()
        self.norm = nn.BatchNorm1d(hidden)
        self.head = nn.Linear(hidden, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.act(self.hidden(x))))


def toy_net(family: str, hidden: int = 3, **neuron_kwargs) -> ToyNet:
    """The one-hidden-layer network of Fig. 2 on 2-D points (binary classification)."""
    check_family(family)
    if int(hidden) != hidden or hidden < 1:
        raise ValueError(f"`hidden >= 1` must hold, but got hidden={hidden!r}")
    return ToyNet(_linear(family, 2, hidden, neuron_kwargs), hidden)


def _replace(model: nn.Module, convert: Callable[[nn.Module], nn.Module | None]) -> nn.Module:
    """Deep-copy ``model`` and swap every module for which ``convert`` returns a new one.
    The model's ``head`` (its SM classifier) is never converted."""
    out = copy.deepcopy(model)

    def walk(parent: nn.Module) -> None:
        for name, child in parent.named_children():
            if parent is out and name == "head":
                continue
            new = convert(child)
            if new is not None:
                setattr(parent, name, new)
            else:
                walk(child)

    walk(out)
    return out


def _conv_args(m: nn.Conv2d) -> tuple:
    """Every constructor argument of a conv layer, in ``nn.Conv2d``'s order."""
    w = m.weight
    return (
        m.in_channels,
        m.out_channels,
        m.kernel_size,
        m.stride,
        m.padding,
        m.dilation,
        m.groups,
        m.bias is not None,
        m.padding_mode,
        w.device,
        w.dtype,
    )


def _linear_args(m: nn.Linear) -> tuple:
    """Every constructor argument of a linear layer, in ``nn.Linear``'s order."""
    w = m.weight
    return (m.in_features, m.out_features, m.bias is not None, w.device, w.dtype)


def _copy_params(src: nn.Module, dst: nn.Module) -> nn.Module:
    dst = dst.to(device=src.weight.device, dtype=src.weight.dtype)
    with torch.no_grad():
        dst.weight.copy_(src.weight)
        if src.bias is not None:
            dst.bias.copy_(src.bias)
    return dst


def to_ibnn(sm_model: nn.Module, lam: float, p: float = 10.0, **neuron_kwargs) -> nn.Module:
    """An IBNN copy of an SM model holding the same weights (Supplementary: transfer).

    Every ``nn.Conv2d`` / ``nn.Linear`` outside the model's ``head`` becomes an IBNN layer
    with the same weights and bias; everything else (BatchNorm statistics included) is copied.
    """

    def convert(m: nn.Module) -> nn.Module | None:
        if isinstance(m, (IBNNConv2d, IBNNLinear)):
            raise ValueError(f"to_ibnn expects an SM model, but it holds an IBNN layer {m}")
        if type(m) is nn.Conv2d:
            new = IBNNConv2d(*_conv_args(m), lam=lam, p=p, **neuron_kwargs)
            return _copy_params(m, new)
        if type(m) is nn.Linear:
            new = IBNNLinear(*_linear_args(m), lam=lam, p=p, **neuron_kwargs)
            return _copy_params(m, new)
        return None

    return _replace(sm_model, convert)


def to_sm(model: nn.Module) -> nn.Module:
    """The SM surrogate of an IBNN model: every IBNN layer with lam = 0, same weights."""

    def convert(m: nn.Module) -> nn.Module | None:
        if isinstance(m, IBNNConv2d):
            return _copy_params(m, nn.Conv2d(*_conv_args(m)))
        if isinstance(m, IBNNLinear):
            return _copy_params(m, nn.Linear(*_linear_args(m)))
        return None

    return _replace(model, convert)


def solver_stats(model: nn.Module) -> dict:
    """Solver statistics of the model's last forward/backward, aggregated over IBNN layers.

    Returns:
        {} for models without an implicit solve; else iters and backward_iters (max over
        layers), residual (max), nonconverged_frac (max over layers), converged (all).
    """
    stats = [m.last_stats for m in model.modules() if isinstance(m, ImplicitBias) and m.last_stats]
    return aggregate_stats(stats)


def aggregate_stats(stats: list) -> dict:
    """The dict of :func:`solver_stats` from the ``NeuronStats`` of a model's layers."""
    if not stats:
        return {}
    return {
        "iters": max(s.iters for s in stats),
        "inner_iters": max(s.inner_iters for s in stats),
        "residual": max(s.residual for s in stats),
        "nonconverged_frac": max(s.nonconverged_frac for s in stats),
        "converged": all(s.converged for s in stats),
        "backward_iters": max(s.backward_iters for s in stats),
    }
