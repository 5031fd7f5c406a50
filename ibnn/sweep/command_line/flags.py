"""The flags of every sweep script (DESIGN section 6), grouped as ``--help`` shows them: the
sweep (dataset, seeds, epochs, sizes, ``--set``), a grid's axes and families or a search's budget,
space and confirmation, the chosen neuron of replication sweeps, and storage and cluster.
Validation across flags is ``ibnn.sweep.command_line.args``.
"""

from __future__ import annotations

import argparse
from typing import Any

from ibnn.sweep.command_line.values import (
    assignment,
    families,
    finite_float,
    nonneg_int,
    positive_int,
    w_extent,
)
from ibnn.sweep.protocols import PROTOCOLS
from ibnn.sweep.search.confirmation import CONFIRM_SEEDS, CONFIRM_TOP
from ibnn.sweep.spec import SweepSpec

__all__ = ["DEFAULT_NEURON", "build_parser", "default_name"]

# Neuron of replication sweeps when neither --lam/--p/... nor --from-search is given.
DEFAULT_NEURON: dict[str, Any] = {
    "lam": -1.0,
    "p": 10.0,
    "w_extent": None,
    "lam_trainable": False,
}


def default_name(spec: SweepSpec, dataset: str) -> str:
    """``<experiment>_<dataset>``, or the experiment alone when it has one dataset (toy2d)."""
    return spec.name if len(spec.datasets) == 1 else f"{spec.name}_{dataset}"


def build_parser(spec: SweepSpec) -> argparse.ArgumentParser:
    """The argument parser of a sweep script (its flags depend on the spec's kind)."""
    parser = argparse.ArgumentParser(
        prog=f"sweeps/{spec.name}.py",
        description=spec.description,
        allow_abbrev=False,
    )
    g = _sweep_group(parser, spec)
    if spec.kind == "grid":
        _grid_flags(g, spec)
    else:
        _search_flags(g, spec)
    if spec.chosen_neuron:
        _neuron_group(parser)
    _cluster_group(parser, spec)
    return parser


def _sweep_group(parser: argparse.ArgumentParser, spec: SweepSpec) -> Any:
    """Flags every sweep has: dataset, seeds, epochs, sizes, --set."""
    g = parser.add_argument_group("sweep")
    g.add_argument(
        "--dataset",
        choices=spec.datasets,
        default=spec.datasets[0],
        help=f"dataset (default: {spec.datasets[0]})",
    )
    g.add_argument(
        "--seeds",
        type=positive_int("--seeds"),
        default=None,
        help=(
            f"seeds per SM configuration (default: the protocol's; paper: {spec.seeds}, cpu: 5, "
            "smoke: 1). A verdict needs "
            "at least 5 seeds run by both arms; detecting a 1-point effect with 80%% power "
            "needs about 6.5 (sd / 1 point)^2 seeds per arm, sd being the seed-to-seed SD of "
            "the IBNN - SM difference (the claims table estimates it; docs/statistics.md)"
        ),
    )
    g.add_argument(
        "--ibnn-seeds",
        type=positive_int("--ibnn-seeds"),
        default=None,
        help="seeds per IBNN configuration (default: the protocol's; paper: min(--seeds, 5))",
    )
    g.add_argument(
        "--epochs",
        type=positive_int("--epochs"),
        default=None,
        help=(
            f"main epochs per trial (default: the protocol's; paper: {spec.epochs}, cpu: "
            f"{PROTOCOLS['cpu'].epochs_for(spec.name, spec.epochs, spec.smoke_epochs)}, smoke: "
            f"{spec.smoke_epochs})"
        ),
    )
    g.add_argument(
        "--protocol",
        choices=tuple(PROTOCOLS),
        default=None,
        help="trial sizes, epochs and seeds by name (default: paper): "
        + "; ".join(f"{p.name}: {p.summary}" for p in PROTOCOLS.values())
        + ". Explicit flags (--seeds, --epochs, --max-train, --set ...) win over it",
    )
    g.add_argument("--smoke", action="store_true", help="the same as --protocol smoke")
    g.add_argument(
        "--max-train",
        type=positive_int("--max-train"),
        default=None,
        help="cap on training images per trial (default: the protocol's; paper: all)",
    )
    g.add_argument(
        "--max-test",
        type=positive_int("--max-test"),
        default=None,
        help="cap on test images per trial, a seeded choice (default: the protocol's; paper: all)",
    )
    g.add_argument(
        "--set",
        dest="sets",
        action="append",
        type=assignment("--set"),
        default=[],
        metavar="KEY=VALUE",
        help="a TrialConfig field for every trial, e.g. --set lr_peak=0.02 (repeatable)",
    )
    return g


def _grid_flags(g: Any, spec: SweepSpec) -> None:
    """Flags of a grid sweep: --axis and --families."""
    g.add_argument(
        "--axis",
        dest="axes",
        action="append",
        type=assignment("--axis", many=True),
        default=[],
        metavar="NAME=V1,V2",
        help="values of a grid axis (a TrialConfig field), e.g. --axis C=3 or "
        "--axis label_noise=0,0.4 (repeatable)",
    )
    g.add_argument(
        "--families",
        type=families,
        default=spec.families,
        help=f"comma-separated neuron families (default: {','.join(spec.families)})",
    )


def _search_flags(g: Any, spec: SweepSpec) -> None:
    """Flags of a search: trials, sampler seed, space pins, study storage, pruning, confirmation."""
    g.add_argument(
        "--trials",
        type=positive_int("--trials"),
        default=None,
        help=f"Optuna trials (default: the protocol's; paper: {spec.search_trials}, cpu: "
        f"{PROTOCOLS['cpu'].search_trials}, smoke: 3)",
    )
    g.add_argument(
        "--search-seed",
        type=nonneg_int("--search-seed"),
        default=0,
        help="seed of Optuna's TPE sampler (default: 0)",
    )
    g.add_argument(
        "--space",
        action="append",
        type=assignment("--space"),
        default=[],
        metavar="PARAM=VALUE",
        help="pin a search parameter, e.g. --space w_extent=none (global w only) or "
        "--space lam_sign=negative (repeatable)",
    )
    g.add_argument(
        "--study-storage",
        default=None,
        metavar="URL_OR_FILE",
        help="where the Optuna study lives: postgresql://user:pass@host/db (clusters), "
        "a journal file on a shared file system, or sqlite:///file (default: "
        "<storage>/<sweep>/optuna.db when --storage is a local folder)",
    )
    g.add_argument(
        "--no-prune",
        dest="prune",
        action="store_false",
        help="train every search trial to its last epoch (default: ASHA stops bad ones)",
    )
    g.add_argument(
        "--confirm-top",
        type=nonneg_int("--confirm-top"),
        default=CONFIRM_TOP,
        help="re-run the best K configurations on fresh seeds after the search "
        f"(default: {CONFIRM_TOP})",
    )
    g.add_argument(
        "--confirm-seeds",
        type=positive_int("--confirm-seeds"),
        default=CONFIRM_SEEDS,
        help=f"fresh seeds of each re-run configuration (default: {CONFIRM_SEEDS})",
    )


def _neuron_group(parser: argparse.ArgumentParser) -> None:
    """The chosen neuron of the IBNN families (replication sweeps)."""
    n = parser.add_argument_group(
        "chosen neuron (IBNN families)",
        f"default without these flags: lam={DEFAULT_NEURON['lam']}, p={DEFAULT_NEURON['p']}, "
        "global w, fixed lam",
    )
    n.add_argument("--lam", type=finite_float("--lam"), default=None, help="lam < 1/(2p)")
    n.add_argument("--p", type=finite_float("--p", 0.0, strict=True), default=None, help="p > 0")
    n.add_argument(
        "--w-extent",
        type=w_extent,
        default=argparse.SUPPRESS,
        help="'none' (global w) or an odd window side",
    )
    n.add_argument("--lam-trainable", action="store_true", help="train lam")
    n.add_argument(
        "--from-search",
        default=None,
        metavar="SWEEP_DIR",
        help="take lam, p, w_extent, lam_trainable from the best trial of a finished search "
        "sweep, e.g. results/search_fmnist",
    )


def _cluster_group(parser: argparse.ArgumentParser, spec: SweepSpec) -> None:
    """Where results go and how trials use the cluster."""
    s = parser.add_argument_group("storage and cluster")
    s.add_argument(
        "--storage",
        default="results",
        help="results root: a folder, s3://... or NFS (default: results)",
    )
    s.add_argument(
        "--name",
        default=None,
        help=f"sweep folder under --storage (default: {default_name(spec, '<dataset>')})",
    )
    s.add_argument("--resume", action="store_true", help="continue the sweep saved in the folder")
    s.add_argument(
        "--address",
        default=None,
        help="Ray cluster to join (host:port or auto); default: the cluster this machine "
        "belongs to, else a new local Ray instance",
    )
    s.add_argument(
        "--data-root",
        default="~/.cache/ibnn/data",
        help="datasets folder on every node (default: ~/.cache/ibnn/data)",
    )
    s.add_argument("--download", action="store_true", help="let torchvision download datasets")
    s.add_argument(
        "--cpus-per-trial",
        type=finite_float("--cpus-per-trial", 0.0, strict=True),
        default=1.0,
        help="logical CPUs per trial (default: 1)",
    )
    s.add_argument(
        "--gpus-per-trial",
        type=finite_float("--gpus-per-trial", 0.0),
        default=None,
        help="fractional GPUs per trial, e.g. 0.25 (default: 0.25 if the cluster has GPUs, else 0)",
    )
    s.add_argument(
        "--max-failures",
        type=nonneg_int("--max-failures"),
        default=2,
        help="retries of a failing trial, each from its last checkpoint (default: 2)",
    )
    s.add_argument(
        "--max-concurrent",
        type=positive_int("--max-concurrent"),
        default=None,
        help="cap on trials running at once (default: as many as resources allow; a search: "
        "ceil(trials / 10), so that TPE sees earlier results)",
    )
    s.add_argument(
        "--pack",
        type=positive_int("--pack"),
        default=None,
        help="grid trials trained together as one vectorized model per Ray trial, when they "
        "differ only in seed, lam, p or label noise (default: up to 32 with GPUs; on CPU up to "
        "8 SM or IBNN-lite trials and IBNN trials alone; 1: every trial alone; searches never "
        "pack)",
    )
    s.add_argument(
        "--verbose",
        action="store_true",
        help="print one line per finished trial epoch (default: a status line every 10 s)",
    )
    s.add_argument(
        "--trial-module",
        default="ibnn.trial",
        help="module providing Trial and TrialConfig (default: ibnn.trial; tests use a fake)",
    )
