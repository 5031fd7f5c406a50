"""The common command line of every sweep script, validated before Ray starts.

Flags (DESIGN section 6): ``--dataset``, ``--seeds``, ``--epochs``, ``--storage``, ``--resume``,
``--protocol`` (``--smoke``), ``--address``, ``--data-root``, plus resources (``--cpus-per-trial``,
``--gpus-per-trial``), fault tolerance (``--max-failures``), the chosen neuron of replication
sweeps (``--lam``, ``--p``, ``--w-extent``, ``--lam-trainable`` or ``--from-search``) and the
search budget (``--trials``). Bad values exit with status 2 and a message naming the flag, the
value and the rule. The flags themselves are declared in ``ibnn.sweep.command_line.flags``.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ibnn.sweep.command_line.flags import DEFAULT_NEURON, build_parser, default_name
from ibnn.sweep.protocols import DEFAULT_PROTOCOL, Protocol, get_protocol
from ibnn.sweep.search.confirmation import CONFIRM_SEEDS, CONFIRM_TOP
from ibnn.sweep.spec import SEARCH_SEED, SweepSpec
from ibnn.vocab import check_lam

__all__ = ["DEFAULT_NEURON", "SweepArgs", "build_parser", "parse_args"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class SweepArgs:
    """The validated command line of one sweep run."""

    dataset: str  # dataset of every trial
    seeds: int  # seeds per SM configuration
    ibnn_seeds: int  # seeds of the implicit families
    families: tuple[str, ...]  # families of a grid sweep
    epochs: int  # main epochs per trial
    storage: str  # results root (path or URI)
    name: str  # sweep folder name under the storage
    resume: bool  # continue the saved sweep
    protocol: str  # "smoke", "cpu" or "paper": trial sizes, epochs, seeds (ibnn.sweep.protocols)
    max_train: int | None  # cap on training images (None: the protocol's)
    max_test: int | None  # cap on test images (None: the protocol's)
    address: str | None  # Ray cluster address (None: find or start a local one)
    data_root: str  # datasets folder on every node
    download: bool  # let torchvision download datasets
    cpus_per_trial: float  # logical CPUs per trial
    gpus_per_trial: float | None  # logical GPUs per trial (None: 0.25 if the cluster has GPUs)
    max_failures: int  # retries of a failing trial (from its last checkpoint)
    max_concurrent: int | None  # cap on trials running at once
    pack: int | None  # grid trials per pack, trained as one model (None: auto)
    lam: float | None  # chosen lam (replication)
    p: float | None  # chosen p (replication)
    w_extent: int | None  # chosen w window (replication); None: global
    w_extent_given: bool  # whether --w-extent was given
    lam_trainable: bool  # chosen: train lam
    from_search: str | None  # search sweep folder to take the best config from
    trials: int  # Optuna trials of a search
    trial_module: str  # module providing Trial and TrialConfig
    argv: tuple[str, ...]  # the raw arguments, for sweep.json
    sets: tuple[tuple[str, Any], ...] = ()  # --set: TrialConfig fields of every trial
    axes: tuple[tuple[str, tuple[Any, ...]], ...] = ()  # --axis: a grid axis's values
    space: tuple[tuple[str, Any], ...] = ()  # --space: search parameters pinned to a value
    search_seed: int = 0  # sampler seed of a search
    study_storage: str | None = None  # --study-storage (None: SQLite in the sweep folder)
    prune: bool = True  # a search stops bad trials early (ASHA)
    confirm_top: int = CONFIRM_TOP  # a search re-runs its best configurations ...
    confirm_seeds: int = CONFIRM_SEEDS  # ... on this many fresh seeds
    verbose: bool = False  # one console line per trial epoch (default: a status line)

    @property
    def smoke(self) -> bool:
        """Whether this run uses the tiny smoke protocol."""
        return self.protocol == "smoke"


def parse_args(spec: SweepSpec, argv: Sequence[str] | None = None) -> SweepArgs:
    """Parses and validates a sweep's command line; exits with status 2 on bad input."""
    import sys

    raw = tuple(sys.argv[1:] if argv is None else argv)
    parser = build_parser(spec)
    ns = parser.parse_args(list(raw))
    try:
        return _validate(spec, ns, raw)
    except ValueError as err:
        parser.error(str(err))


def _neuron_flags(spec: SweepSpec, ns: argparse.Namespace) -> dict[str, Any]:
    """The chosen-neuron fields of SweepArgs, checked (ValueError naming the rule)."""
    lam, p = getattr(ns, "lam", None), getattr(ns, "p", None)
    w_given = hasattr(ns, "w_extent")
    lam_trainable = bool(getattr(ns, "lam_trainable", False))
    from_search = getattr(ns, "from_search", None)
    if from_search and ((lam, p) != (None, None) or w_given or lam_trainable):
        raise ValueError(
            "--from-search cannot be combined with --lam, --p, --w-extent or "
            "--lam-trainable (it supplies all four)"
        )
    if spec.chosen_neuron and not from_search:
        check_lam(
            DEFAULT_NEURON["lam"] if lam is None else lam,
            DEFAULT_NEURON["p"] if p is None else p,
            name="--lam",
        )
    return {
        "lam": lam,
        "p": p,
        "w_extent": getattr(ns, "w_extent", None),
        "w_extent_given": w_given,
        "lam_trainable": lam_trainable,
        "from_search": from_search,
    }


def _where_flags(spec: SweepSpec, ns: argparse.Namespace) -> dict[str, Any]:
    """The sweep folder's name, the storage and the cluster address, checked."""
    name = ns.name or default_name(spec, ns.dataset)
    if not _NAME.match(name):
        raise ValueError(f"--name must match {_NAME.pattern} (a folder name), got {name!r}")
    if not ns.storage.strip():
        raise ValueError("--storage must be a non-empty folder or URI")
    if ns.address is not None and not ns.address.strip():
        raise ValueError("--address must be host:port, auto or local, got an empty string")
    return {"name": name, "storage": ns.storage, "address": ns.address}


def _protocol(ns: argparse.Namespace) -> Protocol:
    """--protocol, with --smoke as its other spelling (the two may not disagree)."""
    if ns.smoke and ns.protocol not in (None, "smoke"):
        raise ValueError(f"--smoke means --protocol smoke, but --protocol is {ns.protocol!r}")
    return get_protocol("smoke" if ns.smoke else ns.protocol or DEFAULT_PROTOCOL)


def _size_flags(spec: SweepSpec, ns: argparse.Namespace) -> dict[str, Any]:
    """Seeds, epochs and search trials: the flags, else the protocol's, else the spec's."""
    protocol = _protocol(ns)
    seeds = ns.seeds or protocol.seeds or spec.seeds
    ibnn_seeds = ns.ibnn_seeds or protocol.ibnn_seeds or min(seeds, 5)
    if max(seeds, ibnn_seeds) > SEARCH_SEED:
        raise ValueError(
            f"--seeds and --ibnn-seeds must be <= {SEARCH_SEED} (seeds {SEARCH_SEED} and up are "
            f"reserved for searches), got {max(seeds, ibnn_seeds)}"
        )
    epochs = ns.epochs or protocol.epochs_for(spec.name, spec.epochs, spec.smoke_epochs)
    trials = getattr(ns, "trials", None) or protocol.search_trials or spec.search_trials
    return {
        "protocol": protocol.name,
        "seeds": seeds,
        "ibnn_seeds": ibnn_seeds,
        "epochs": epochs,
        "trials": trials,
    }


def _override_flags(ns: argparse.Namespace) -> dict[str, Any]:
    """``--set``, ``--axis`` and ``--space``, each key given once."""
    out = {"sets": ns.sets, "axes": getattr(ns, "axes", []), "space": getattr(ns, "space", [])}
    for field, pairs in out.items():
        keys = [k for k, _ in pairs]
        twice = sorted({k for k in keys if keys.count(k) > 1})
        if twice:
            flag = {"sets": "--set", "axes": "--axis", "space": "--space"}[field]
            raise ValueError(f"{flag} gives {twice} more than once")
    return {k: tuple(v) for k, v in out.items()}


def _validate(spec: SweepSpec, ns: argparse.Namespace, raw: tuple[str, ...]) -> SweepArgs:
    """SweepArgs of a parsed command line (ValueError naming the flag, value and rule)."""
    search = {
        k: getattr(ns, k)
        for k in ("search_seed", "study_storage", "prune", "confirm_top", "confirm_seeds")
        if hasattr(ns, k)  # a search's flags (SweepArgs' defaults for a grid)
    }
    return SweepArgs(
        dataset=ns.dataset,
        families=tuple(getattr(ns, "families", spec.families)),
        resume=ns.resume,
        max_train=ns.max_train,
        max_test=ns.max_test,
        data_root=ns.data_root,
        download=ns.download,
        cpus_per_trial=ns.cpus_per_trial,
        gpus_per_trial=ns.gpus_per_trial,
        max_failures=ns.max_failures,
        max_concurrent=ns.max_concurrent,
        pack=ns.pack,
        trial_module=ns.trial_module,
        argv=raw,
        verbose=ns.verbose,
        **_neuron_flags(spec, ns),
        **_where_flags(spec, ns),
        **_size_flags(spec, ns),
        **_override_flags(ns),
        **search,
    )
