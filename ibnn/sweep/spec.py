"""What a sweep script declares: ``SweepSpec``, and how it expands into trial configs.

A sweep script (``sweeps/*.py``) builds one ``SweepSpec`` and calls ``ibnn.sweep.main``. The
spec says which families run, what varies (the experiment's axes, per dataset and per protocol),
which evaluations run, and for the Optuna search its define-by-run space. Everything else (seeds,
epochs, storage, resources, the chosen lam/p/w_extent) comes from the common command line.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ibnn.sweep.protocols import DEFAULT_PROTOCOL, SMOKE

__all__ = [
    "IMAGE_DATASETS",
    "KINDS",
    "SEARCH_SEED",
    "SMOKE",
    "SweepContext",
    "SweepSpec",
    "expand_grid",
]

IMAGE_DATASETS = ("fmnist", "svhn", "cifar10")
KINDS = ("grid", "search")
# Seed of every search trial; its confirmation re-runs use the next seeds. Replication seeds are
# 0 .. n-1 with n <= SEARCH_SEED: a configuration is never confirmed on the seed that chose it.
SEARCH_SEED = 1000


@dataclass(frozen=True)
class SweepContext:
    """What a spec's callables may depend on."""

    dataset: str  # the dataset of this run
    protocol: str = DEFAULT_PROTOCOL  # "smoke", "cpu" or "paper" (ibnn.sweep.protocols)

    @property
    def smoke(self) -> bool:
        """Whether this is the tiny smoke protocol."""
        return self.protocol == "smoke"


Axes = Callable[[SweepContext], Mapping[str, Sequence[Any]]]
Overrides = Callable[[SweepContext], Mapping[str, Any]]


def _no_axes(ctx: SweepContext) -> dict[str, Sequence[Any]]:
    return {}


def _no_overrides(ctx: SweepContext) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class SweepSpec:
    """One experiment of the paper as a sweep.

    ``axes`` and ``overrides`` are small functions of the dataset and the protocol, so a
    script can give per-dataset values (e.g. PGD radii) and reduced grids (smoke, cpu).
    """

    name: str  # experiment name; also the default sweep folder prefix ("expressivity")
    description: str  # one line for --help, naming the paper's figure
    kind: str = "grid"  # "grid": families x seeds x axes; "search": Optuna over the space
    axes: Axes = _no_axes  # the experiment's variables -> values (cartesian product)
    overrides: Overrides = _no_overrides  # fixed TrialConfig fields of this experiment
    families: tuple[str, ...] = ("sm", "ibnn")  # neuron families compared
    datasets: tuple[str, ...] = IMAGE_DATASETS  # --dataset choices (first is the default)
    evals: tuple[str, ...] = ("clean",)  # evaluations run on the selected model
    seeds: int = 10  # default --seeds (SM seeds; IBNN seeds default to min(seeds, 5))
    epochs: int = 80  # default --epochs (the paper: 80)
    smoke_epochs: int = 1  # main epochs under --protocol smoke
    chosen_neuron: bool = True  # offers --lam/--p/--w-extent/--lam-trainable/--from-search
    boundaries: bool = False  # write the trial's decision-boundary grid (toy2d)
    search_space: Callable[[Any], Mapping[str, Any] | None] | None = None  # Optuna define-by-run
    search_only_keys: tuple[str, ...] = ()  # keys the space suggests that are not config fields
    search_trials: int = 40  # default --trials of a search
    search_family: str = "ibnn"  # family of every search trial

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"SweepSpec.kind must be one of {list(KINDS)}, got {self.kind!r}")
        if not self.name or not self.name.replace("_", "").isalnum():
            raise ValueError(f"SweepSpec.name must be a word ([A-Za-z0-9_]), got {self.name!r}")
        if not self.datasets:
            raise ValueError("SweepSpec.datasets must name at least one dataset")
        if self.kind == "search" and self.search_space is None:
            raise ValueError(f"SweepSpec {self.name!r}: kind 'search' needs a search_space")
        if self.kind == "grid" and self.search_space is not None:
            raise ValueError(f"SweepSpec {self.name!r}: a search_space needs kind 'search'")
        if self.seeds < 1 or self.epochs < 1 or self.smoke_epochs < 1:
            raise ValueError(
                f"SweepSpec {self.name!r}: seeds, epochs and smoke_epochs must be >= 1, got "
                f"{self.seeds}, {self.epochs}, {self.smoke_epochs}"
            )


def expand_grid(
    families: Sequence[str],
    seeds: Mapping[str, int],
    axes: Mapping[str, Sequence[Any]],
    neuron: Mapping[str, Any],
) -> list[dict[str, Any]]:
    """The replication grid: every family x its seeds x the axes' cartesian product.

    SM trials ignore the neuron axes (lam, p, w_extent, lam_trainable): they get lam 0, no
    trainable lam and no w window, and duplicates are dropped, so an SM baseline is trained
    once per seed and per non-neuron axis value.

    Args:
        families: neuron families ("sm", "ibnn", "ibnn_lite").
        seeds: number of seeds per family (seeds 0..n-1).
        axes: experiment variables -> values (e.g. {"C": [1, 2, 4]}).
        neuron: the chosen neuron configuration for the implicit families.

    Returns:
        One dict of config overrides per trial (family, seed, axes, neuron keys), in a stable
        order: seed-major, so the first trials already cover every configuration once.
    """
    names = list(axes)
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for seed in range(max((seeds[f] for f in families), default=0)):
        for combo in itertools.product(*(axes[n] for n in names)):
            for family in families:
                if seed >= seeds[family]:
                    continue
                v = {**neuron, **dict(zip(names, combo, strict=True)), "family": family}
                v["seed"] = seed
                if family == "sm":
                    v.update(lam=0.0, lam_trainable=False, w_extent=None, p=neuron.get("p", 10.0))
                key = json.dumps(v, sort_keys=True, default=str)
                if key not in seen:
                    seen.add(key)
                    out.append(v)
    return out
