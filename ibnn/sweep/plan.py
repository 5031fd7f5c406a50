"""From a spec and a command line to the exact set of trials (``SweepPlan``), before Ray starts.

Every grid trial's config is built and validated here with the real ``TrialConfig``, so a bad
combination is refused with the trial named, and each trial gets its deterministic trial_id.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ibnn.sweep.command_line.args import DEFAULT_NEURON, SweepArgs
from ibnn.sweep.folder import fingerprint
from ibnn.sweep.protocols import get_protocol
from ibnn.sweep.search.choice import load_search_choice
from ibnn.sweep.search.study import STUDY_FILE, check_space_restriction, open_storage
from ibnn.sweep.spec import SweepContext, SweepSpec, expand_grid
from ibnn.sweep.trials.identity import RUNTIME_KEYS, flatten_config, load_trial_api, trial_id
from ibnn.vocab import NEURON_KEYS

__all__ = ["PlanError", "SweepPlan", "build_plan"]


class PlanError(ValueError):
    """The requested sweep cannot be built (the message names the trial and the rule)."""


@dataclass(frozen=True)
class SweepPlan:
    """The trials of one sweep run and how they are recorded."""

    sweep: str  # folder name under the storage
    experiment: str  # the spec's name
    kind: str  # "grid" or "search"
    dataset: str  # dataset of every trial
    constants: dict[str, Any]  # TrialConfig fields shared by every trial (runtime keys included)
    variants: tuple[dict[str, Any], ...]  # grid: each trial's own fields; search: empty
    trial_ids: tuple[str, ...]  # grid: the variants' deterministic ids; search: empty
    expected_trials: int  # number of trials the sweep runs
    neuron: dict[str, Any]  # the chosen neuron of the implicit families
    neuron_source: dict[str, Any]  # where it came from (flags, default, a search)
    label_keys: tuple[str, ...]  # config keys shown in progress lines
    spec_record: dict[str, Any]  # what identifies the sweep (sweep.json "spec")
    study_storage: str | None = None  # search: the Optuna study's storage URL or journal path
    space_fixed: dict[str, Any] = field(default_factory=dict)  # search: --space pins

    def trial_constants(self, device: str) -> dict[str, Any]:
        """The config every trial shares: the constants, with the device that the resources
        imply ("auto" for GPU trials, "cpu") unless ``--set device=...`` chose one
        (``--set device=cuda``: a GPU trial fails where torch cannot use CUDA)."""
        return {"device": device, **self.constants}

    @property
    def fingerprint(self) -> str:
        """Hash of the spec record: equal for runs of the same sweep."""
        return fingerprint(self.spec_record)


def _neuron(spec: SweepSpec, args: SweepArgs) -> tuple[dict[str, Any], dict[str, Any]]:
    if not spec.chosen_neuron:
        fixed = {k: v for k, v in DEFAULT_NEURON.items() if k != "lam"}
        return fixed, {"source": "spec axes"}
    if args.from_search:
        try:
            neuron, info = load_search_choice(args.from_search)
        except ValueError as err:
            raise PlanError(str(err)) from None
        if info["dataset"] != args.dataset:
            raise PlanError(
                f"--from-search {args.from_search} searched dataset {info['dataset']!r}, but "
                f"--dataset is {args.dataset!r}; search on {args.dataset!r} first or pass --lam/--p"
            )
        return neuron, {"source": "search", **info}
    neuron = {
        "lam": DEFAULT_NEURON["lam"] if args.lam is None else args.lam,
        "p": DEFAULT_NEURON["p"] if args.p is None else args.p,
        "w_extent": args.w_extent if args.w_extent_given else DEFAULT_NEURON["w_extent"],
        "lam_trainable": args.lam_trainable,
    }
    given = args.lam is not None or args.p is not None or args.w_extent_given or args.lam_trainable
    return neuron, {"source": "flags" if given else "default"}


def _identity(constants: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in constants.items() if k not in RUNTIME_KEYS}


def _constants(spec: SweepSpec, args: SweepArgs, ctx: SweepContext) -> dict[str, Any]:
    """TrialConfig fields every trial of the sweep shares."""
    constants: dict[str, Any] = {
        "dataset": args.dataset,
        "epochs": args.epochs,
        "evals": list(spec.evals),
        "data_root": args.data_root,
        "download": args.download,
    }
    constants.update(get_protocol(args.protocol).trial)
    for key in ("max_train", "max_test"):
        if getattr(args, key) is not None:
            constants[key] = getattr(args, key)
    constants.update(spec.overrides(ctx))
    constants.update(dict(args.sets))
    return constants


def _checker(
    spec: SweepSpec, args: SweepArgs, constants: dict[str, Any]
) -> Callable[[dict[str, Any], str], str]:
    """A function that validates one trial's own fields and returns its trial_id."""
    try:
        _, config_cls = load_trial_api(args.trial_module)
    except (ImportError, ValueError) as err:
        raise PlanError(f"--trial-module {args.trial_module!r}: {err}") from None

    def check(extra: dict[str, Any], what: str) -> str:
        flat = flatten_config({**constants, "variant": extra}, spec.search_only_keys)
        try:
            return trial_id(config_cls.from_dict(flat).to_dict())
        except (TypeError, ValueError) as err:
            raise PlanError(f"{spec.name}: {what} is invalid: {err}") from None

    return check


# TrialConfig fields that the common command line sets with a flag of their own.
_OWN_FLAGS = {
    "dataset": "--dataset",
    "epochs": "--epochs",
    "max_train": "--max-train",
    "max_test": "--max-test",
    "data_root": "--data-root",
    "download": "--download",
}
# TrialConfig fields every sweep varies, and the flags that set their values.
_VARIED_BY = {"family": "--families", "seed": "--seeds / --ibnn-seeds"}


def _check_keys(
    spec: SweepSpec, args: SweepArgs, axes: dict[str, list[Any]], config_cls: type
) -> None:
    """--set and --axis name TrialConfig fields that this sweep does not vary otherwise."""
    fields = {f.name for f in dataclasses.fields(config_cls)}
    varied = set(_VARIED_BY) | set(axes)
    if spec.kind == "search" or spec.chosen_neuron:
        varied |= set(NEURON_KEYS)
    how = "--space" if spec.kind == "search" else "--lam/--p/--w-extent/--lam-trainable"
    for flag, pairs in (("--set", args.sets), ("--axis", args.axes)):
        for key, _ in pairs:
            if key not in fields:
                raise PlanError(
                    f"{flag} {key}: not a field of {config_cls.__name__}; valid fields: "
                    f"{', '.join(sorted(fields))}"
                )
            if key in _OWN_FLAGS and (flag == "--set" or key == "dataset"):
                raise PlanError(f"{flag} {key}: use {_OWN_FLAGS[key]} instead")
            if flag == "--set" and key in varied:
                hint = how if key in NEURON_KEYS else "--axis" if key in axes else _VARIED_BY[key]
                raise PlanError(f"--set {key}: this sweep varies {key!r}; use {hint} instead")
            if flag == "--axis" and key in _VARIED_BY:
                raise PlanError(f"--axis {key}: use {_VARIED_BY[key]} instead")


def _study_storage(spec: SweepSpec, args: SweepArgs) -> str:
    """The study's storage: --study-storage, or SQLite in a local sweep folder."""
    if args.study_storage:
        try:
            open_storage(args.study_storage)
        except (ValueError, ImportError) as err:
            raise PlanError(f"--study-storage: {err}") from None
        return args.study_storage
    root = args.storage
    if root.startswith("file://"):
        root = root[len("file://") :]
    if "://" in root:  # object storage (s3://, gs://, ...): decided by the URI, nothing contacted
        raise PlanError(
            f"a search on object storage ({args.storage}) needs --study-storage: a "
            f"postgresql://user:pass@host/db URL that every node can reach, or an Optuna journal "
            f"file on a shared file system (a SQLite file on one driver would be lost with it)"
        )
    folder = os.path.abspath(os.path.expanduser(root))
    return f"sqlite:///{os.path.join(folder, args.name, STUDY_FILE)}"


def _grid(spec, args, axes, neuron, check) -> tuple[list[dict[str, Any]], list[str]]:
    """The grid's trials (variants) and their ids; no two may share a config."""
    seeds = {"sm": args.seeds, "ibnn": args.ibnn_seeds, "ibnn_lite": args.ibnn_seeds}
    variants = expand_grid(args.families, seeds, axes, neuron)
    ids = [check(v, f"trial {v}") for v in variants]
    if len(set(ids)) != len(ids):
        raise PlanError(f"{spec.name}: two grid trials have the same config (ids {ids})")
    return variants, ids


def _search(spec: SweepSpec, args: SweepArgs, check) -> dict[str, Any]:
    """What identifies the search (sweep.json), after checking its base config and --space."""
    check({"family": spec.search_family, "seed": 0, "lam": 0.0}, "the search's base config")
    try:
        check_space_restriction(spec.search_space, dict(args.space))
    except ValueError as err:
        raise PlanError(str(err)) from None
    return {
        "space_fixed": dict(args.space),
        "prune": args.prune,
        "confirm": {"top": args.confirm_top, "seeds": args.confirm_seeds},
        "trials": args.trials,
        "search_seed": args.search_seed,
        "family": spec.search_family,
        "space": f"{spec.search_space.__module__}.{spec.search_space.__qualname__}",
        "search_only_keys": list(spec.search_only_keys),
    }


def build_plan(spec: SweepSpec, args: SweepArgs) -> SweepPlan:
    """Expands a spec and a validated command line into the sweep's trials.

    Raises:
        PlanError: a trial config is invalid, or --from-search cannot be used.
    """
    ctx = SweepContext(dataset=args.dataset, protocol=args.protocol)
    constants = _constants(spec, args, ctx)
    axes = {k: list(v) for k, v in spec.axes(ctx).items()}
    axes.update({k: list(v) for k, v in args.axes})
    neuron, source = _neuron(spec, args)
    check = _checker(spec, args, constants)
    _check_keys(spec, args, axes, load_trial_api(args.trial_module)[1])
    if spec.kind == "grid":
        variants, ids = _grid(spec, args, axes, neuron, check)
        search: dict[str, Any] = {}
        expected = len(variants)
        labels = tuple(axes) + (("lam",) if "lam" not in axes and spec.chosen_neuron else ())
    else:
        variants, ids = [], []
        search = _search(spec, args, check)
        expected = args.trials
        labels = NEURON_KEYS
    record = {
        "experiment": spec.name,
        "kind": spec.kind,
        "dataset": args.dataset,
        "constants": _identity(constants),
        "variants": variants,
        "search": search,
    }
    return SweepPlan(
        sweep=args.name,
        experiment=spec.name,
        kind=spec.kind,
        dataset=args.dataset,
        constants=constants,
        variants=tuple(variants),
        trial_ids=tuple(ids),
        expected_trials=expected,
        neuron=neuron,
        neuron_source=source,
        label_keys=labels,
        spec_record=record,
        study_storage=_study_storage(spec, args) if spec.kind == "search" else None,
        space_fixed=dict(args.space),
    )
