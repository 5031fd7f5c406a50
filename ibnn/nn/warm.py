"""Warm starts: each sample's solve starts from its own fixed point of its previous solve.

The fixed point of z = y - lam B(z) is unique for lam < 1/(2p), and between two epochs the
weights move little, so the z a sample's rows had in the previous epoch is a start one or two
Newton steps from the new fixed point (against three or more from the linear start). The result
is the same to the solver's tolerance; only the iterations change. Layers with
``allow_unsafe_lam`` (no uniqueness) and IBNN-lite layers (no solve) are left alone.

:class:`WarmStarts` keeps, for one split of N samples, every implicit layer's last z per sample
in float16 on the samples' device: N x (rows per sample x units) x 2 bytes, i.e. 4.7 KB per
image for UCN(1,3) on Fashion-MNIST (47 MB per 10,000 images), 49 KB per image for UCN(3,8)
on CIFAR-10. float16 rounds z to ~5e-4 of its size, well inside the distance the weights move
it in an epoch; a value beyond float16's range is not finite and that row starts cold.

    cache = WarmStarts(len(y))
    with cache.use(model, index):  # index: (B,) the batch's sample numbers in the split
        out = model(x[index])      # each layer starts from, then keeps, these samples' z
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

__all__ = ["WarmStarts"]


class WarmStarts:
    """Per-sample fixed points of a model's implicit layers for one split of ``n`` samples.

    Args:
        n: samples in the split (a batch's ``index`` entries lie in [0, n)).
        dtype: storage dtype (float16 by default: see the module docstring).
    """

    def __init__(self, n: int, dtype: torch.dtype = torch.float16) -> None:
        if n < 1:
            raise ValueError(f"`n >= 1` must hold, but got n={n!r}")
        self.n = int(n)
        self.dtype = dtype
        self._z: dict[int, Tensor] = {}  # layer number -> (n, values per sample)
        self._known: dict[int, Tensor] = {}  # layer number -> (n,) bool: z stored

    @property
    def nbytes(self) -> int:
        """Bytes held by the stored fixed points."""
        return sum(t.numel() * t.element_size() for t in self._z.values())

    @contextmanager
    def use(self, model: nn.Module, index: Tensor) -> Iterator[None]:
        """Within the block, every implicit layer of ``model`` starts the rows of the samples
        ``index`` (the batch's order) from their stored z where all of them have one, and
        stores the z it finds."""
        from ibnn.nn.neuron import ImplicitBias  # the neuron reads its slot: import lazily

        layers = [m for m in model.modules() if isinstance(m, ImplicitBias)]
        for key, layer in enumerate(layers):
            layer.warm_start = _Slot(self, key, index)
        try:
            yield
        finally:
            for layer in layers:
                layer.warm_start = None


class _Slot:
    """One layer's view of a :class:`WarmStarts` for one batch."""

    def __init__(self, cache: WarmStarts, key: int, index: Tensor) -> None:
        self.cache, self.key, self.index = cache, key, index

    def start(self, rows: Tensor) -> Tensor | None:
        """The stored z of the batch's rows (R, D) in their dtype, or None unless every sample
        of the batch has one of the same size."""
        store = self.cache._z.get(self.key)
        if store is None or rows.numel() != len(self.index) * store.shape[1]:
            return None
        if not bool(self.cache._known[self.key][self.index].all()):
            return None
        return store[self.index].reshape(rows.shape).to(rows.dtype)

    def keep(self, z: Tensor) -> None:
        """Stores the batch's fixed point z (R, D)."""
        cache, n = self.cache, len(self.index)
        per_sample = z.numel() // n
        store = cache._z.get(self.key)
        if store is None or store.shape[1] != per_sample or store.device != z.device:
            store = torch.zeros(cache.n, per_sample, dtype=cache.dtype, device=z.device)
            cache._z[self.key] = store
            cache._known[self.key] = torch.zeros(cache.n, dtype=torch.bool, device=z.device)
        store[self.index] = z.detach().reshape(n, per_sample).to(cache.dtype)
        cache._known[self.key][self.index] = True
