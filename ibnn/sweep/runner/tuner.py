"""The Ray Tune run of a sweep: the Tuner of a grid, a search or a search's confirmation grid,
built fresh or restored from the sweep folder, and the driver's record of how its trials ended.

What one run needs travels in a ``SweepRun`` (built once by the runner); what differs between
the Tuners of one run (the search, then its confirmation grid) in a ``TunerStage``.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

from ibnn.results import Storage
from ibnn.results.schema import PRUNED
from ibnn.sweep.command_line.args import SweepArgs
from ibnn.sweep.folder import CONFIRM_DIR, RAY_DIR, tune_location
from ibnn.sweep.plan import SweepPlan
from ibnn.sweep.search.study import default_concurrency, open_storage, redact
from ibnn.sweep.spec import SEARCH_SEED, SweepSpec
from ibnn.sweep.trials.checkpoints import KEPT_WHILE_RUNNING
from ibnn.sweep.trials.identity import TrialNamer, TrialSettings, load_trial_api
from ibnn.sweep.trials.packing import PACK, pack_variants
from ibnn.sweep.trials.writer import mark_failed, mark_status

__all__ = [
    "SweepRun",
    "TunerStage",
    "build_tuner",
    "confirmation_stage",
    "fit",
    "refuse_existing_study",
]


@dataclass(frozen=True)
class SweepRun:
    """What every step of one sweep run shares, once Ray is up."""

    spec: SweepSpec  # the experiment
    args: SweepArgs  # the validated command line
    plan: SweepPlan  # the trials
    storage: Storage  # the results root
    settings: TrialSettings  # what every trial shares
    trainable: Any  # the Tune trainable, with its resources
    device: str  # the device trials name: "auto" (GPU trials) or "cpu"


@dataclass(frozen=True)
class TunerStage:
    """One Tuner of a run: the sweep's own, or a search's confirmation grid."""

    plan: SweepPlan  # its trials (a confirmation: the plan as a grid of its variants)
    restore: bool  # continue the Tune state saved in ``ray_dir`` (else start it)
    ray_dir: str = RAY_DIR  # its Tune state's folder in the sweep folder
    packs: bool = True  # grid trials may be trained in packs (``--pack``)


def _search_alg(run: SweepRun) -> Any:
    from ibnn.sweep.search.searcher import StudySearcher

    plan = run.plan
    if plan.study_storage.startswith("sqlite:///"):
        os.makedirs(os.path.dirname(plan.study_storage[len("sqlite:///") :]), exist_ok=True)
    return StudySearcher(
        space=run.spec.search_space,
        storage_url=plan.study_storage,
        study_name=plan.sweep,
        seed=run.args.search_seed,
        trials=plan.expected_trials,
        fixed=plan.space_fixed,
    )


def _schedule(run: SweepRun) -> tuple[int, int]:
    """A search trial's (warm-up epochs, main epochs)."""
    _, config_cls = load_trial_api(run.args.trial_module)
    base = {**run.plan.constants, "family": "ibnn", "seed": SEARCH_SEED, "lam": 0.0}
    cfg = config_cls.from_dict({k: v for k, v in base.items() if k != "variant"})
    return int(cfg.warmup_epochs), int(cfg.epochs)


def _packs(run: SweepRun, stage: TunerStage, constants: dict[str, Any]) -> list[list[dict]]:
    """The grid's packs (``ibnn.sweep.trials.packing``), or [] when every trial runs alone
    (``--pack 1``, a single trial per pack key, a confirmation grid, another trial module)."""
    if not stage.packs:
        return []
    gpu = run.device != "cpu"
    packs = pack_variants(stage.plan.variants, constants, run.args.pack, run.args.trial_module, gpu)
    return packs if any(len(p) > 1 for p in packs) else []


def _grid_space(run: SweepRun, stage: TunerStage) -> tuple[dict[str, Any], int, str]:
    """A grid's param space, and the number and unit of its Tune trials."""
    from ray import tune

    plan = stage.plan
    constants = plan.trial_constants(run.device)
    packs = _packs(run, stage, constants)
    if not packs:
        space = {**constants, "variant": tune.grid_search(list(plan.variants))}
        return space, plan.expected_trials, "trials"
    print(
        f"Training its {plan.expected_trials} trials in {len(packs)} packs of up to "
        f"{max(map(len, packs))} (one model and one Ray trial per pack, with the "
        f"resources above; --pack 1 trains each trial alone)",
        flush=True,
    )
    return {**constants, PACK: tune.grid_search(packs)}, len(packs), "packs"


def _search_setup(run: SweepRun, stage: TunerStage, callbacks: list[Any]) -> dict[str, Any]:
    """A search's param space, searcher, scheduler and concurrency (its pruning recorder is
    appended to ``callbacks``)."""
    from ibnn.sweep.search.pruning import PruneRecorder, asha

    plan = stage.plan
    setup: dict[str, Any] = {
        "param_space": {
            **plan.trial_constants(run.device),
            "family": run.spec.search_family,
            "seed": SEARCH_SEED,
        },
        "search_alg": _search_alg(run),
        "num_samples": plan.expected_trials,
        "max_concurrent_trials": run.args.max_concurrent
        or default_concurrency(plan.expected_trials),
    }
    if run.args.prune:
        setup["scheduler"] = asha(*_schedule(run))
        callbacks.append(PruneRecorder(run.settings))
    return setup


def _fresh_tuner(run: SweepRun, stage: TunerStage) -> Any:
    from ray import tune

    from ibnn.sweep.trials.progress import SweepProgress

    callbacks: list[Any] = []
    if stage.plan.kind == "grid":
        space, units, unit = _grid_space(run, stage)
        search = {"num_samples": 1, "max_concurrent_trials": run.args.max_concurrent}
    else:
        search = _search_setup(run, stage, callbacks)
        space, units, unit = search.pop("param_space"), stage.plan.expected_trials, "trials"
    progress = SweepProgress(units, stage.plan.label_keys, verbose=run.args.verbose, unit=unit)
    tune_config = tune.TuneConfig(
        **search,
        reuse_actors=True,
        trial_name_creator=TrialNamer(run.settings),
        trial_dirname_creator=TrialNamer(run.settings, folder=True),
    )
    storage_path, storage_fs = tune_location(run.storage, stage.plan.sweep)
    run_config = tune.RunConfig(
        name=stage.ray_dir,
        storage_path=storage_path,
        storage_filesystem=storage_fs,
        failure_config=tune.FailureConfig(max_failures=run.args.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=KEPT_WHILE_RUNNING),
        callbacks=[progress, *callbacks],
        verbose=0,
    )
    return tune.Tuner(
        run.trainable, param_space=space, tune_config=tune_config, run_config=run_config
    )


def build_tuner(run: SweepRun, stage: TunerStage) -> Any:
    """The stage's Tuner: restored from its saved state, or built fresh. A damaged Tune state on
    restore stops the run with one message."""
    from ray import tune

    if not stage.restore:
        return _fresh_tuner(run, stage)
    path, fs = tune_location(run.storage, stage.plan.sweep, stage.ray_dir)
    try:
        return tune.Tuner.restore(
            path, trainable=run.trainable, resume_errored=True, storage_filesystem=fs
        )
    except Exception as err:  # a damaged Tune state (e.g. a truncated tuner.pkl, ray #58179)
        where = run.storage.join_uri(stage.plan.sweep, stage.ray_dir)
        raise SystemExit(
            f"error: cannot restore the Tune state in {where}: {type(err).__name__}: {err}. "
            f"The Parquet results there are intact; start a new sweep folder (--name) to rerun."
        ) from None


def refuse_existing_study(plan: SweepPlan) -> None:
    """A fresh search must not add trials to an existing study of the same name."""
    import optuna

    names = optuna.get_all_study_names(open_storage(plan.study_storage))
    if plan.sweep in names:
        raise SystemExit(
            f"error: the study {plan.sweep!r} already exists in {redact(plan.study_storage)} but "
            f"there is no Tune state to resume it with. Nothing was changed; choose another "
            f"--name, or delete it (optuna delete-study --study-name {plan.sweep} --storage ...)."
        )


def fit(tuner: Any, settings: TrialSettings, search: bool) -> None:
    """Runs a Tuner and records in the trials table what only the driver knows: trials that
    failed on every retry ("error") and, in a search, trials the scheduler stopped ("pruned")."""
    from ibnn.sweep.search.pruning import was_pruned

    for result in tuner.fit():
        if result.error is not None:
            # The trial's own exception, not Ray's wrapper (whose text starts with a traceback
            # and would cut the message off at 2000 characters).
            cause = getattr(result.error, "cause", None) or result.error
            error = f"{type(cause).__name__}: {str(cause)[:2000]}"
            mark_failed(settings, result.config, error)
        elif search and was_pruned(result.metrics):
            mark_status(settings, result.config, PRUNED)  # its driver died before it was marked


def confirmation_stage(
    plan: SweepPlan, variants: list[dict[str, Any]], restore: bool
) -> TunerStage:
    """The stage of a search's confirmation grid: its variants, each trial alone."""
    grid = dataclasses.replace(
        plan, kind="grid", variants=tuple(variants), expected_trials=len(variants)
    )
    return TunerStage(plan=grid, restore=restore, ray_dir=CONFIRM_DIR, packs=False)
