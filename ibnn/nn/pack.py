"""K models of one architecture as one vectorized model (a *pack*), and back.

The paper's models are tiny (UCN(1, 3) has 3 channels): one per process leaves a GPU idle and
pays Python and kernel-launch overheads per model. :func:`pack_models` stacks K models of the
same architecture (different weights, lam and p allowed) into one module whose every layer
runs the K models at once:

- conv layers become one grouped convolution (group k holds model k's filters);
- linear layers one batched matrix product; BatchNorm one BatchNorm over K x C channels;
- IBNN neurons are solved together wherever their equations are the same (equal fixed lam and
  p and the same options): their rows are independent problems, so one solve serves the group.
  A trainable lam is its own group (each model keeps its own lam parameter).

Activations are laid out ``(B, K, ...)``: sample b of model k is ``x[b, k]``. Every model keeps
its own parameters, gradients and BatchNorm statistics: nothing mixes across k, so a packed
model trained with a per-model loss sum follows each model's own training to float tolerance.
:meth:`PackedModel.unpack_into` writes the weights back into the K original models.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ibnn.nn.implicit import SolveRecord
from ibnn.nn.layers import IBNNConv2d, IBNNLinear
from ibnn.nn.models import UCN, ToyNet, aggregate_stats
from ibnn.nn.neuron import ImplicitBias, record_stats

__all__ = ["PackedModel", "pack_models", "packable"]


def _same(models: Sequence[nn.Module], what: str, get) -> None:
    values = [get(m) for m in models]
    if any(v != values[0] for v in values):
        raise ValueError(f"models of a pack must share their {what}, but got {values}")


def _cat(tensors: Sequence[Tensor | None]) -> Tensor | None:
    return None if tensors[0] is None else torch.cat([t.detach() for t in tensors])


class PackedNeurons(nn.Module):
    """The K neurons of one layer position; rows of models with equal equations solved at once.

    Args:
        neurons: one :class:`ImplicitBias` per model (kept, not copied: a trainable lam stays
            the model's own parameter).
    """

    def __init__(self, neurons: Sequence[ImplicitBias]) -> None:
        super().__init__()
        self.neurons = nn.ModuleList(neurons)
        # per model: the record of the solve its rows were in, its tolerance, its part (j, g)
        self._where: list[tuple[SolveRecord, float, int, int] | None] = [None] * len(neurons)
        self._samples = 0

    def _groups(self) -> list[list[int]]:
        """Models whose solves are the same equation, in order of first appearance."""
        groups: dict[tuple, list[int]] = {}
        for k, n in enumerate(self.neurons):
            key: tuple = (id(n),) if n.lam_trainable else (float(n.lam_fixed),)
            key += (n.p, n.w_extent, n.lite, n.solver, n.tol, n.max_iter, n.backend)
            groups.setdefault(key, []).append(k)
        return list(groups.values())

    def forward(self, y: Tensor, spatial: tuple[int, int] | None) -> Tensor:
        """z for y of shape (B, K, C, H, W) (conv, ``spatial`` = (H, W)) or (B, K, D)."""
        groups = self._groups()
        self._samples = y.shape[0]
        parts = []
        for idx in groups:
            lead = self.neurons[idx[0]]
            part = y if len(groups) == 1 else y[:, idx]
            if lead.is_standard:  # lam = 0: the standard neuron
                parts.append(part)
                for k in idx:
                    self._where[k] = None
                continue
            # rows in (sample, model, channel) order: (n, c) maps of a conv, samples of a linear
            rows = part.reshape(-1, spatial[0] * spatial[1] if spatial else part.shape[-1])
            record = SolveRecord()  # the pack's own: the models' neurons keep their records
            parts.append(lead.solve_rows(rows, spatial, record).reshape(part.shape))
            for j, k in enumerate(idx):
                self._where[k] = (record, lead.tol_for(rows.dtype), j, len(idx))
        if len(groups) == 1:
            return parts[0]
        order = [k for idx in groups for k in idx]
        inverse = torch.argsort(torch.tensor(order, device=y.device))
        return torch.cat(parts, dim=1).index_select(1, inverse)

    def stats(self, k: int):
        """:class:`ibnn.nn.neuron.NeuronStats` of model k's rows in the last solve (or None)."""
        where = self._where[k]
        if where is None:
            return None
        record, tol, j, g = where
        if record.forward is None:  # IBNN-lite: no solve
            return None
        return record_stats(record, tol, self._samples, (j, g))


class PackedConv2d(nn.Module):
    """K conv layers (``nn.Conv2d`` or ``IBNNConv2d``) as one grouped convolution."""

    def __init__(self, convs: Sequence[nn.Conv2d]) -> None:
        super().__init__()
        first = convs[0]
        for attr in ("in_channels", "out_channels", "kernel_size", "stride", "padding"):
            _same(convs, attr, lambda m, a=attr: getattr(m, a))
        _same(convs, "dilation, groups and padding mode",
              lambda m: (m.dilation, m.groups, m.padding_mode))  # fmt: skip
        k = len(convs)
        w = first.weight
        self.conv = nn.Conv2d(
            k * first.in_channels, k * first.out_channels, first.kernel_size, first.stride,
            first.padding, first.dilation, k * first.groups, first.bias is not None,
            first.padding_mode, w.device, w.dtype,
        )  # fmt: skip
        with torch.no_grad():
            self.conv.weight.copy_(_cat([c.weight for c in convs]))
            if first.bias is not None:
                self.conv.bias.copy_(_cat([c.bias for c in convs]))
        ibnn = [isinstance(c, IBNNConv2d) for c in convs]
        _same(convs, "neuron kind (SM or IBNN)", lambda m: isinstance(m, IBNNConv2d))
        self.neurons = PackedNeurons([c.neuron for c in convs]) if ibnn[0] else None

    def forward(self, x: Tensor) -> Tensor:
        b, k = x.shape[:2]
        y = self.conv(x.reshape(b, -1, *x.shape[-2:]))
        y = y.reshape(b, k, -1, *y.shape[-2:])
        return y if self.neurons is None else self.neurons(y, spatial=tuple(y.shape[-2:]))

    def unpack_into(self, convs: Sequence[nn.Conv2d]) -> None:
        _unpack(self.conv.weight, [c.weight for c in convs])
        if self.conv.bias is not None:
            _unpack(self.conv.bias, [c.bias for c in convs])


class PackedLinear(nn.Module):
    """K linear layers (``nn.Linear`` or ``IBNNLinear``) as one batched product on (B, K, F)."""

    def __init__(self, linears: Sequence[nn.Linear]) -> None:
        super().__init__()
        _same(linears, "shape", lambda m: (m.in_features, m.out_features, m.bias is not None))
        _same(linears, "neuron kind (SM or IBNN)", lambda m: isinstance(m, IBNNLinear))
        self.weight = nn.Parameter(torch.stack([m.weight.detach() for m in linears]))
        bias = [m.bias for m in linears]
        self.bias = (
            None if bias[0] is None else nn.Parameter(torch.stack([t.detach() for t in bias]))
        )
        ibnn = isinstance(linears[0], IBNNLinear)
        self.neurons = PackedNeurons([m.neuron for m in linears]) if ibnn else None

    def forward(self, x: Tensor) -> Tensor:
        y = torch.einsum("bki,koi->bko", x, self.weight)
        if self.bias is not None:
            y = y + self.bias
        return y if self.neurons is None else self.neurons(y, spatial=None)

    def unpack_into(self, linears: Sequence[nn.Linear]) -> None:
        _unpack(self.weight, [m.weight for m in linears], stacked=True)
        if self.bias is not None:
            _unpack(self.bias, [m.bias for m in linears], stacked=True)


class PackedBatchNorm(nn.Module):
    """K BatchNorm layers as one over K x C channels (statistics stay per model and channel)."""

    def __init__(self, norms: Sequence[nn.modules.batchnorm._BatchNorm]) -> None:
        super().__init__()
        first = norms[0]
        _same(norms, "settings", lambda m: (type(m), m.num_features, m.eps, m.momentum,
                                            m.affine, m.track_running_stats))  # fmt: skip
        w = first.running_mean if first.running_mean is not None else first.weight
        self.norm = type(first)(
            len(norms) * first.num_features, first.eps, first.momentum, first.affine,
            first.track_running_stats, w.device, w.dtype,
        )  # fmt: skip
        with torch.no_grad():
            for name in ("weight", "bias", "running_mean", "running_var"):
                if getattr(first, name) is not None:
                    getattr(self.norm, name).copy_(_cat([getattr(m, name) for m in norms]))
            if first.num_batches_tracked is not None:
                self.norm.num_batches_tracked.copy_(first.num_batches_tracked)

    def forward(self, x: Tensor) -> Tensor:
        b, k = x.shape[:2]
        return self.norm(x.reshape(b, k * x.shape[2], *x.shape[3:])).reshape(x.shape)

    def unpack_into(self, norms: Sequence[nn.modules.batchnorm._BatchNorm]) -> None:
        for name in ("weight", "bias", "running_mean", "running_var"):
            if getattr(self.norm, name) is not None:
                _unpack(getattr(self.norm, name), [getattr(m, name) for m in norms])
        if self.norm.num_batches_tracked is not None:
            for m in norms:
                m.num_batches_tracked.copy_(self.norm.num_batches_tracked)


def _unpack(packed: Tensor, targets: Sequence[Tensor], stacked: bool = False) -> None:
    with torch.no_grad():
        parts = packed.unbind(0) if stacked else packed.chunk(len(targets))
        for src, dst in zip(parts, targets, strict=True):
            dst.copy_(src.reshape(dst.shape))


def _layers(model: nn.Module) -> list[nn.Module]:
    """The layers of a UCN or ToyNet in order, its head last."""
    if isinstance(model, UCN):
        return [*model.blocks, model.head]
    if isinstance(model, ToyNet):
        return [model.hidden, model.act, model.norm, model.head]
    raise ValueError(f"packing supports UCN and ToyNet models, but got {type(model).__name__}")


def packable(models: Sequence[nn.Module]) -> str:
    """Why these models cannot be packed ('' if they can)."""
    try:
        _same(models, "type", type)
        shapes = [[(type(m), tuple(p.shape for p in m.parameters(recurse=False)))
                   for m in _layers(x)] for x in models]  # fmt: skip
        if any(s != shapes[0] for s in shapes):
            raise ValueError("models of a pack must share their architecture")
    except ValueError as err:
        return str(err)
    return ""


class PackedModel(nn.Module):
    """K UCN or ToyNet models of one architecture as one module.

    Shapes:
        x: (B, K, *input) -> logits (B, K, num_classes).
    """

    def __init__(self, models: Sequence[nn.Module]) -> None:
        super().__init__()
        reason = packable(models)
        if reason:
            raise ValueError(reason)
        self.size = len(models)
        columns = list(zip(*[_layers(m) for m in models], strict=True))
        layers = [_pack_layer(list(col)) for col in columns]
        self.layers = nn.ModuleList(layers[:-1])
        self.head = layers[-1]
        self._columns = columns  # the original layers, for unpack_into

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return self.head(x.flatten(2))

    def unpack_into(self) -> None:
        """Writes every packed weight and BatchNorm statistic back into the original models."""
        for layer, col in zip([*self.layers, self.head], self._columns, strict=True):
            if hasattr(layer, "unpack_into"):
                layer.unpack_into(col)

    def solver_stats(self, k: int) -> dict:
        """``ibnn.nn.models.solver_stats`` of model k's part of the last forward/backward."""
        stats = [m.stats(k) for m in self.modules() if isinstance(m, PackedNeurons) and m.stats(k)]
        return aggregate_stats(stats)

    def packed_parameters(self) -> list[tuple[Tensor, list[Tensor], list[int]]]:
        """Each parameter of the pack, the models' tensors it stands for, and their models.

        A stacked parameter stands for one tensor of every model (``P.reshape(K, -1)[k]`` is
        model k's); the lam of a trainable neuron is the model's own parameter and stands for
        itself only.
        """
        out: list[tuple[Tensor, list[Tensor], list[int]]] = []
        every = list(range(self.size))
        for layer, col in zip([*self.layers, self.head], self._columns, strict=True):
            if isinstance(layer, PackedConv2d):
                owned = [(layer.conv.weight, "weight"), (layer.conv.bias, "bias")]
            elif isinstance(layer, PackedLinear):
                owned = [(layer.weight, "weight"), (layer.bias, "bias")]
            elif isinstance(layer, PackedBatchNorm):
                owned = [(layer.norm.weight, "weight"), (layer.norm.bias, "bias")]
            else:
                owned = []
            out += [
                (P, [getattr(m, name) for m in col], every) for P, name in owned if P is not None
            ]
            neurons = getattr(layer, "neurons", None)
            if neurons is not None:
                out += [
                    (n.lam_raw, [n.lam_raw], [k])
                    for k, n in enumerate(neurons.neurons)
                    if n.lam_trainable
                ]
        return out


def _pack_layer(col: list[nn.Module]) -> nn.Module:
    first = col[0]
    if isinstance(first, nn.Conv2d):
        return PackedConv2d(col)
    if isinstance(first, nn.Linear):
        return PackedLinear(col)
    if isinstance(first, nn.modules.batchnorm._BatchNorm):
        return PackedBatchNorm(col)
    if isinstance(first, nn.ReLU):
        return first
    raise ValueError(f"packing does not support the layer {type(first).__name__}")


def pack_models(models: Sequence[nn.Module]) -> PackedModel:
    """One :class:`PackedModel` running ``models`` (same architecture) at once."""
    return PackedModel(models)
