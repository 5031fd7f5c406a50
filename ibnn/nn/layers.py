"""IBNN layers: ``nn.Conv2d`` / ``nn.Linear`` followed by the implicit-bias neuron.

Each keeps torch's signature in torch's order and adds keyword-only neuron arguments after it.
``forward`` returns z, the fixed point of Eq. (4) *before* the outer activation phi = ReLU
(the model applies ReLU), so that a layer drops in where its SM counterpart was.
With a fixed ``lam=0`` the neuron is skipped and the layer is exactly its torch parent.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ibnn.nn.neuron import ImplicitBias, NeuronStats

__all__ = ["IBNNConv2d", "IBNNLinear"]


class _NeuronMixin:
    neuron: ImplicitBias

    @property
    def lam(self) -> Tensor:
        """Weight of the implicit term (0-dim tensor)."""
        return self.neuron.lam

    @property
    def p(self) -> float:
        """Slope of sigma(u) = tanh(p u)."""
        return self.neuron.p

    @property
    def w_extent(self) -> int | None:
        """None for uniform w over the row, or the odd window side."""
        return self.neuron.w_extent

    @property
    def last_stats(self) -> NeuronStats | None:
        """Solver statistics of the last forward/backward (None for lam = 0 or IBNN-lite)."""
        return self.neuron.last_stats


class IBNNConv2d(_NeuronMixin, nn.Conv2d):
    """Conv layer of implicit-bias neurons; units interact within each output channel.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
            padding_mode, device, dtype: as ``nn.Conv2d``, in its order (padding defaults to
            "same", as in the paper's UCN blocks). They shape y = W x + bias only.
        lam: weight of the implicit term, lam < 1/(2p) (0 = the standard neuron).
        p: slope of sigma(u) = tanh(p u).
        w_extent: None (every position of the channel, w = 1/(H W)) or an odd k
            (k x k window, w = 1/k^2 inside the window and the image).
        lam_trainable: learn lam (kept below 1/(2p)).
        **neuron_kwargs: ``allow_unsafe_lam``, ``lite``, ``solver``, ``tol``, ``max_iter``,
            ``backend`` (see :class:`ibnn.nn.neuron.ImplicitBias`).

    Shapes:
        x: (N, in_channels, H_in, W_in) -> z: (N, out_channels, H_out, W_out).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: str | int | tuple[int, int] = "same",
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        lam: float = 0.0,
        p: float = 10.0,
        w_extent: int | None = None,
        lam_trainable: bool = False,
        **neuron_kwargs,
    ) -> None:
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
            dilation,
            groups,
            bias,
            padding_mode,
            device,
            dtype,
        )
        self.neuron = ImplicitBias(
            lam=lam, p=p, w_extent=w_extent, lam_trainable=lam_trainable, **neuron_kwargs
        ).to(device=device, dtype=dtype)

    def forward(self, x: Tensor) -> Tensor:
        y = self._conv_forward(x, self.weight, self.bias)
        return self.neuron(y, spatial=(y.shape[-2], y.shape[-1]))


class IBNNLinear(_NeuronMixin, nn.Linear):
    """Fully connected layer of implicit-bias neurons; all out_features units interact
    with uniform w_ik = 1/out_features (the layer size, not the input size).

    Args:
        in_features, out_features, bias, device, dtype: as ``nn.Linear``, in its order.
        lam, p, lam_trainable, **neuron_kwargs: as :class:`IBNNConv2d`.

    Shapes:
        x: (..., in_features) -> z: (..., out_features).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        lam: float = 0.0,
        p: float = 10.0,
        lam_trainable: bool = False,
        **neuron_kwargs,
    ) -> None:
        super().__init__(in_features, out_features, bias, device, dtype)
        neuron = ImplicitBias(lam=lam, p=p, lam_trainable=lam_trainable, **neuron_kwargs)
        self.neuron = neuron.to(device=device, dtype=dtype)

    def forward(self, x: Tensor) -> Tensor:
        return self.neuron(super().forward(x), spatial=None)
