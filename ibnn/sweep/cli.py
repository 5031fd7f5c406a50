"""The common command line of every sweep script, validated before Ray starts.

Flags (DESIGN section 6): ``--dataset``, ``--seeds``, ``--epochs``, ``--storage``, ``--resume``,
``--smoke``, ``--address``, ``--data-root``, plus resources (``--cpus-per-trial``,
``--gpus-per-trial``), fault tolerance (``--max-failures``), the chosen neuron of replication
sweeps (``--lam``, ``--p``, ``--w-extent``, ``--lam-trainable`` or ``--from-search``) and the
search budget (``--trials``). Bad values exit with status 2 and a message naming the flag, the
value and the rule.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ibnn.sweep.overrides import assignment
from ibnn.sweep.spec import SEARCH_SEED, SweepSpec
from ibnn.vocab import FAMILIES, check_lam, check_w_extent

__all__ = ["DEFAULT_NEURON", "SweepArgs", "build_parser", "parse_args"]

# Neuron of replication sweeps when neither --lam/--p/... nor --from-search is given.
DEFAULT_NEURON: dict[str, Any] = {
    "lam": -1.0,
    "p": 10.0,
    "w_extent": None,
    "lam_trainable": False,
}
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
    smoke: bool  # tiny and fast
    max_train: int | None  # cap on training images (None: all, or the smoke size)
    max_test: int | None  # cap on test images (None: all, or the smoke size)
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
    search_seed: int  # sampler seed of a search
    trial_module: str  # module providing Trial and TrialConfig
    argv: tuple[str, ...]  # the raw arguments, for sweep.json
    sets: tuple[tuple[str, Any], ...] = ()  # --set: TrialConfig fields of every trial
    axes: tuple[tuple[str, tuple[Any, ...]], ...] = ()  # --axis: a grid axis's values
    space: tuple[tuple[str, Any], ...] = ()  # --space: search parameters pinned to a value
    study_storage: str | None = None  # --study-storage (None: SQLite in the sweep folder)
    prune: bool = True  # a search stops bad trials early (ASHA)
    confirm_top: int = 3  # a search re-runs its best configurations ...
    confirm_seeds: int = 2  # ... on this many fresh seeds
    verbose: bool = False  # one console line per trial epoch (default: a status line)


def _int_at_least(flag: str, low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} must be an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{flag} must be >= {low}, got {value}")
        return value

    return parse


def _positive_int(flag: str):
    return _int_at_least(flag, 1)


def _nonneg_int(flag: str):
    return _int_at_least(flag, 0)


def _float(flag: str, low: float | None = None, strict: bool = False):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} must be a number, got {text!r}") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise argparse.ArgumentTypeError(f"{flag} must be finite, got {text!r}")
        if low is not None and (value <= low if strict else value < low):
            rule = ">" if strict else ">="
            raise argparse.ArgumentTypeError(f"{flag} must be {rule} {low:g}, got {value:g}")
        return value

    return parse


def _w_extent(text: str) -> int | None:
    if text.lower() == "none":
        return None
    try:
        value = int(text)
    except ValueError:
        value = text
    try:
        check_w_extent(value, name="--w-extent")
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{err} ('none' for None)") from None
    return value


def _families(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    bad = [n for n in names if n not in FAMILIES]
    if not names or bad:
        raise argparse.ArgumentTypeError(
            f"--families must be a comma-separated subset of {', '.join(FAMILIES)}, got {text!r}"
        )
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"--families lists a family twice: {text!r}")
    return names


def _default_name(spec: SweepSpec, dataset: str) -> str:
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
        type=_positive_int("--seeds"),
        default=None,
        help=(
            f"seeds per SM configuration (default: {spec.seeds}; --smoke: 1). A verdict needs "
            "at least 5 seeds run by both arms; detecting a 1-point effect with 80%% power "
            "needs about 6.5 (sd / 1 point)^2 seeds per arm, sd being the seed-to-seed SD of "
            "the IBNN - SM difference (the claims table estimates it; docs/statistics.md)"
        ),
    )
    g.add_argument(
        "--ibnn-seeds",
        type=_positive_int("--ibnn-seeds"),
        default=None,
        help="seeds per IBNN configuration (default: min(--seeds, 5), as in the paper)",
    )
    g.add_argument(
        "--epochs",
        type=_positive_int("--epochs"),
        default=None,
        help=f"main epochs per trial (default: {spec.epochs}; --smoke: {spec.smoke_epochs})",
    )
    g.add_argument("--smoke", action="store_true", help="tiny and fast: for tests and demos")
    g.add_argument(
        "--max-train",
        type=_positive_int("--max-train"),
        default=None,
        help="cap on training images per trial (default: all; --smoke: 256)",
    )
    g.add_argument(
        "--max-test",
        type=_positive_int("--max-test"),
        default=None,
        help="cap on test images per trial, a seeded choice (default: all; --smoke: 200)",
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
        type=_families,
        default=spec.families,
        help=f"comma-separated neuron families (default: {','.join(spec.families)})",
    )


def _search_flags(g: Any, spec: SweepSpec) -> None:
    """Flags of a search: trials, sampler seed, space pins, study storage, pruning, confirmation."""
    g.add_argument(
        "--trials",
        type=_positive_int("--trials"),
        default=None,
        help=f"Optuna trials (default: {spec.search_trials}; --smoke: 3)",
    )
    g.add_argument(
        "--search-seed",
        type=_nonneg_int("--search-seed"),
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
        type=_nonneg_int("--confirm-top"),
        default=3,
        help="re-run the best K configurations on fresh seeds after the search (default: 3)",
    )
    g.add_argument(
        "--confirm-seeds",
        type=_positive_int("--confirm-seeds"),
        default=2,
        help="fresh seeds of each re-run configuration (default: 2)",
    )


def _neuron_group(parser: argparse.ArgumentParser) -> None:
    """The chosen neuron of the IBNN families (replication sweeps)."""
    n = parser.add_argument_group(
        "chosen neuron (IBNN families)",
        f"default without these flags: lam={DEFAULT_NEURON['lam']}, p={DEFAULT_NEURON['p']}, "
        "global w, fixed lam",
    )
    n.add_argument("--lam", type=_float("--lam"), default=None, help="lam < 1/(2p)")
    n.add_argument("--p", type=_float("--p", 0.0, strict=True), default=None, help="p > 0")
    n.add_argument(
        "--w-extent",
        type=_w_extent,
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
        help=f"sweep folder under --storage (default: {_default_name(spec, '<dataset>')})",
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
        type=_float("--cpus-per-trial", 0.0, strict=True),
        default=1.0,
        help="logical CPUs per trial (default: 1)",
    )
    s.add_argument(
        "--gpus-per-trial",
        type=_float("--gpus-per-trial", 0.0),
        default=None,
        help="fractional GPUs per trial, e.g. 0.25 (default: 0.25 if the cluster has GPUs, else 0)",
    )
    s.add_argument(
        "--max-failures",
        type=_nonneg_int("--max-failures"),
        default=2,
        help="retries of a failing trial, each from its last checkpoint (default: 2)",
    )
    s.add_argument(
        "--max-concurrent",
        type=_positive_int("--max-concurrent"),
        default=None,
        help="cap on trials running at once (default: as many as resources allow; a search: "
        "ceil(trials / 10), so that TPE sees earlier results)",
    )
    s.add_argument(
        "--pack",
        type=_positive_int("--pack"),
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


def parse_args(spec: SweepSpec, argv: Sequence[str] | None = None) -> SweepArgs:
    """Parses and validates a sweep's command line; exits with status 2 on bad input."""
    import sys

    raw = tuple(sys.argv[1:] if argv is None else argv)
    parser = build_parser(spec)
    ns = parser.parse_args(list(raw))
    return _validate(parser, spec, ns, raw)


def _validate(
    parser: argparse.ArgumentParser,
    spec: SweepSpec,
    ns: argparse.Namespace,
    raw: tuple[str, ...],
) -> SweepArgs:
    chosen = getattr(ns, "lam", None), getattr(ns, "p", None)
    w_given = hasattr(ns, "w_extent")
    lam_trainable = bool(getattr(ns, "lam_trainable", False))
    from_search = getattr(ns, "from_search", None)
    if from_search and (chosen != (None, None) or w_given or lam_trainable):
        parser.error(
            "--from-search cannot be combined with --lam, --p, --w-extent or "
            "--lam-trainable (it supplies all four)"
        )
    if spec.chosen_neuron and not from_search:
        lam = DEFAULT_NEURON["lam"] if chosen[0] is None else chosen[0]
        p = DEFAULT_NEURON["p"] if chosen[1] is None else chosen[1]
        try:
            check_lam(lam, p, name="--lam")
        except ValueError as err:
            parser.error(str(err))
    name = ns.name or _default_name(spec, ns.dataset)
    if not _NAME.match(name):
        parser.error(f"--name must match {_NAME.pattern} (a folder name), got {name!r}")
    if not ns.storage.strip():
        parser.error("--storage must be a non-empty folder or URI")
    if ns.address is not None and not ns.address.strip():
        parser.error("--address must be host:port, auto or local, got an empty string")
    seeds = ns.seeds or (1 if ns.smoke else spec.seeds)
    ibnn_seeds = ns.ibnn_seeds if ns.ibnn_seeds is not None else min(seeds, 5)
    if max(seeds, ibnn_seeds) > SEARCH_SEED:
        parser.error(
            f"--seeds and --ibnn-seeds must be <= {SEARCH_SEED} (seeds {SEARCH_SEED} and up are "
            f"reserved for searches), got {max(seeds, ibnn_seeds)}"
        )
    for flag, pairs in (
        ("--set", ns.sets),
        ("--axis", getattr(ns, "axes", [])),
        ("--space", getattr(ns, "space", [])),
    ):
        keys = [k for k, _ in pairs]
        twice = sorted({k for k in keys if keys.count(k) > 1})
        if twice:
            parser.error(f"{flag} gives {twice} more than once")
    if ns.smoke:
        epochs = ns.epochs or spec.smoke_epochs
    else:
        epochs = ns.epochs or spec.epochs
    trials = getattr(ns, "trials", None) or (3 if ns.smoke else spec.search_trials)
    return SweepArgs(
        dataset=ns.dataset,
        seeds=seeds,
        ibnn_seeds=ibnn_seeds,
        families=tuple(getattr(ns, "families", spec.families)),
        epochs=epochs,
        storage=ns.storage,
        name=name,
        resume=ns.resume,
        smoke=ns.smoke,
        max_train=ns.max_train,
        max_test=ns.max_test,
        address=ns.address,
        data_root=ns.data_root,
        download=ns.download,
        cpus_per_trial=ns.cpus_per_trial,
        gpus_per_trial=ns.gpus_per_trial,
        max_failures=ns.max_failures,
        max_concurrent=ns.max_concurrent,
        pack=ns.pack,
        lam=chosen[0],
        p=chosen[1],
        w_extent=getattr(ns, "w_extent", None),
        w_extent_given=w_given,
        lam_trainable=lam_trainable,
        from_search=from_search,
        trials=trials,
        search_seed=getattr(ns, "search_seed", 0),
        trial_module=ns.trial_module,
        argv=raw,
        sets=tuple(ns.sets),
        axes=tuple(getattr(ns, "axes", ())),
        space=tuple(getattr(ns, "space", ())),
        study_storage=getattr(ns, "study_storage", None),
        prune=getattr(ns, "prune", True),
        confirm_top=getattr(ns, "confirm_top", 0),
        confirm_seeds=getattr(ns, "confirm_seeds", 1),
        verbose=ns.verbose,
    )
