"""The platform's vocabulary and its rules, each defined once.

Everything that names a thing (a neuron family, an evaluation, an experiment) or states a rule
on a neuron argument (the lam bound, the kernel extent) lives here and is imported everywhere
else: the layers, the trial config, the sweep command line, the results contract and
``analysis``. This module imports neither torch nor ray, so ``analysis`` can use it.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

__all__ = [
    "EVALS",
    "EXPERIMENTS",
    "FAMILIES",
    "IBNN_FAMILIES",
    "NEURON_KEYS",
    "NUM_CLASSES",
    "SELECTIONS",
    "check_family",
    "check_lam",
    "check_w_extent",
    "lam_bound",
    "lam_rule",
    "w_extent_rule",
]

# Neuron families: standard neurons, implicit-bias neurons (fixed point), IBNN-lite (one step).
FAMILIES: tuple[str, ...] = ("sm", "ibnn", "ibnn_lite")
IBNN_FAMILIES: tuple[str, ...] = ("ibnn", "ibnn_lite")
# A trial's neuron: the config keys that only mean something for the implicit families (SM
# trials get neutral values), what a replication sweep chooses and a search tunes.
NEURON_KEYS: tuple[str, ...] = ("lam", "p", "w_extent", "lam_trainable")
# Evaluations of a trained model (DESIGN section 4), in the order a trial runs them.
EVALS: tuple[str, ...] = (
    "clean",
    "pgd_surrogate",
    "pgd_whitebox",
    "pixle",
    "jacobian_norm",
    "curvature",
)
# Model selection: best validation accuracy, or the authors' best test loss (labelled "paper").
SELECTIONS: tuple[str, ...] = ("val", "paper")
# Datasets and their number of classes (chance accuracy is 1 / classes).
NUM_CLASSES: dict[str, int] = {"fmnist": 10, "svhn": 10, "cifar10": 10, "toy2d": 2}
# One sweep script per experiment of the paper (DESIGN section 6).
EXPERIMENTS: tuple[str, ...] = (
    "toy2d",
    "data_fraction",
    "robustness",
    "expressivity",
    "learning_speed",
    "memorization",
    "transfer",
    "search",
)


def check_family(family: str) -> None:
    """Raise ValueError unless ``family`` is one of FAMILIES."""
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; valid names: {list(FAMILIES)}")


def lam_bound(p: float) -> float:
    """Upper bound on lam for existence and uniqueness: lam < 1/(2p) (Cor. 3.1, Prop. 4)."""
    return 1.0 / (2.0 * p)


def lam_rule(p: float) -> str:
    """The lam rule in words, with its bound for this p."""
    return (
        f"`lam < 1/(2p)` must hold for a unique fixed point (Corollary 3.1 with Prop. 4); "
        f"with p={p!r} the bound is {lam_bound(p):.6g}"
    )


def check_lam(lam: float, p: float, name: str = "lam", hint: str = "") -> None:
    """Raise ValueError unless lam is finite and lam < 1/(2p) (DESIGN section 2).

    Args:
        lam: the implicit-term weight.
        p: the slope of sigma(u) = tanh(p u), > 0.
        name: how the caller calls the value (a flag or a config field), for the message.
        hint: how this caller opts out of the rule, appended to the message if given.
    """
    if not (isinstance(p, (int, float)) and math.isfinite(p) and p > 0):
        raise ValueError(f"`p > 0` must hold (finite), but got p={p!r}")
    if not math.isfinite(lam) or lam >= lam_bound(p):
        raise ValueError(f"{lam_rule(p)}, but got {name}={lam!r}" + (f"; {hint}" if hint else ""))


def w_extent_rule() -> str:
    """The kernel-extent rule in words."""
    return "w_extent must be None (every position of the channel) or a positive odd int"


def check_w_extent(w_extent: Any, name: str = "w_extent") -> None:
    """Raise ValueError unless w_extent is None or a positive odd int (a centred window).

    Args:
        w_extent: the window side, or None for uniform w over the channel.
        name: how the caller calls the value (a flag or a config field), for the message.
    """
    if w_extent is None:
        return
    ok = isinstance(w_extent, numbers.Integral) and not isinstance(w_extent, bool)
    if not ok or w_extent < 1 or w_extent % 2 == 0:
        raise ValueError(f"{w_extent_rule()}, but got {name}={w_extent!r}")
