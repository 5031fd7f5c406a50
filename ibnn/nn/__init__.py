"""The layer library: the implicit-bias neuron, its solvers, the layers and the paper's models.

- ``neuron``: :class:`ImplicitBias`, the map y -> z of Eq. (4) with its statistics;
- ``coupling`` / ``grid``: the cross term B(z) exactly (dense, window) and fast (grid);
- ``solvers`` / ``implicit``: forward solvers by name and the implicit backward pass;
- ``layers``: :class:`IBNNConv2d` and :class:`IBNNLinear`, torch's layers plus the neuron;
- ``models``: UCN(L, C), the toy network, ``to_ibnn`` / ``to_sm``.
"""

from __future__ import annotations

from ibnn.nn.layers import IBNNConv2d, IBNNLinear
from ibnn.nn.models import UCN, ToyNet, solver_stats, to_ibnn, to_sm, toy_net, ucn
from ibnn.nn.neuron import BACKENDS, ImplicitBias, NeuronStats
from ibnn.nn.solvers import SOLVERS, get_solver

__all__ = [
    "BACKENDS",
    "SOLVERS",
    "UCN",
    "IBNNConv2d",
    "IBNNLinear",
    "ImplicitBias",
    "NeuronStats",
    "ToyNet",
    "get_solver",
    "solver_stats",
    "to_ibnn",
    "to_sm",
    "toy_net",
    "ucn",
]
