"""Implicit-bias neurons (IBNN): layers, the paper's models, trials and sweeps.

from ibnn import IBNNConv2d, IBNNLinear, ucn, toy_net, to_ibnn
"""

from __future__ import annotations

from ibnn.layers import IBNNConv2d, IBNNLinear
from ibnn.models import FAMILIES, solver_stats, to_ibnn, to_sm, toy_net, ucn
from ibnn.neuron import ImplicitBias, NeuronStats, lam_bound
from ibnn.solvers import SOLVERS, get_solver

__all__ = [
    "FAMILIES",
    "IBNNConv2d",
    "IBNNLinear",
    "ImplicitBias",
    "NeuronStats",
    "SOLVERS",
    "get_solver",
    "lam_bound",
    "solver_stats",
    "to_ibnn",
    "to_sm",
    "toy_net",
    "ucn",
]
