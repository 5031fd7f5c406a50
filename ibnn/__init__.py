"""Implicit-bias neurons (IBNN): layers, the paper's models, trials, sweeps and their results.

    from ibnn import IBNNConv2d, IBNNLinear, ucn, toy_net, to_ibnn

The package has four parts, one subpackage each:

- ``ibnn.nn``: the layer library (the neuron, its solvers, the layers and the paper's models);
- ``ibnn.trial``: one seeded trial (config, data, training, evaluations; ``python -m ibnn.trial``);
- ``ibnn.sweep``: the Ray Tune sweep runner (one script per experiment in ``sweeps/``);
- ``ibnn.results``: the results contract (Parquet schemas and status values) and its writer.

``ibnn.vocab`` holds the names and rules they share. The layer names below are loaded on first
use, so that ``ibnn.results`` and ``ibnn.vocab`` can be imported without torch (``analysis``
does so).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ibnn.vocab import FAMILIES, lam_bound

if TYPE_CHECKING:
    from ibnn.nn.layers import IBNNConv2d, IBNNLinear
    from ibnn.nn.models import solver_stats, to_ibnn, to_sm, toy_net, ucn
    from ibnn.nn.neuron import ImplicitBias, NeuronStats
    from ibnn.nn.solvers import SOLVERS, get_solver

_LAZY = {
    "IBNNConv2d": "ibnn.nn.layers",
    "IBNNLinear": "ibnn.nn.layers",
    "ImplicitBias": "ibnn.nn.neuron",
    "NeuronStats": "ibnn.nn.neuron",
    "SOLVERS": "ibnn.nn.solvers",
    "get_solver": "ibnn.nn.solvers",
    "solver_stats": "ibnn.nn.models",
    "to_ibnn": "ibnn.nn.models",
    "to_sm": "ibnn.nn.models",
    "toy_net": "ibnn.nn.models",
    "ucn": "ibnn.nn.models",
}

__all__ = [
    "FAMILIES",
    "SOLVERS",
    "IBNNConv2d",
    "IBNNLinear",
    "ImplicitBias",
    "NeuronStats",
    "get_solver",
    "lam_bound",
    "solver_stats",
    "to_ibnn",
    "to_sm",
    "toy_net",
    "ucn",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ibnn' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
