"""The shared runner: a sweep spec and a command line become a ``tune.Tuner`` run.

Order of work: parse and validate the command line, expand the trials (``build_plan``), check
the storage folder (``check_folder``) -- all before Ray starts -- then join or start Ray, write
``sweep.json``, build a fresh Tuner or restore the saved one, run it, and record the outcome in
``sweep.json``. The Parquet tables under ``<storage>/<sweep>/`` are the results; Ray's own
folders live under ``<storage>/<sweep>/ray/``.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Sequence
from typing import Any

from ibnn.results import Storage, read_table
from ibnn.results.schema import OK, PRUNED, RUNNING
from ibnn.sweep.checkpoints import KEPT_WHILE_RUNNING, prune_checkpoints
from ibnn.sweep.cli import SweepArgs, parse_args
from ibnn.sweep.datastage import stage_dataset
from ibnn.sweep.lease import Lease, LeaseError, took_over
from ibnn.sweep.meta import (
    RAY_DIR,
    SWEEP_JSON,
    FolderError,
    check_folder,
    now,
    tune_location,
    tune_state_exists,
)
from ibnn.sweep.packing import PACK, pack_variants
from ibnn.sweep.placement import DEFAULT_GPU_FRACTION, default_gpu_share
from ibnn.sweep.plan import PlanError, SweepPlan, build_plan
from ibnn.sweep.preflight import (
    PreflightError,
    check_ray_address,
    check_workers,
    driver_versions,
    resolve_ray_address,
)
from ibnn.sweep.provenance import provenance
from ibnn.sweep.resume_flags import check_resume_flags
from ibnn.sweep.spec import SEARCH_SEED, SweepSpec
from ibnn.sweep.study import default_concurrency, redact
from ibnn.sweep.trainable import (
    TrialNamer,
    TrialSettings,
    load_trial_api,
    make_trainable,
    mark_failed,
    mark_status,
)

__all__ = ["DEFAULT_GPU_FRACTION", "main", "run", "trial_constants"]


def main(spec: SweepSpec, argv: Sequence[str] | None = None) -> int:
    """Entry point of a sweep script: ``sys.exit(main(SPEC))``.

    Returns:
        0 when every trial finished (as ok, solver_failed or diverged), 1 when some crashed on
        every retry, 130 when the run was interrupted (Ctrl-C; resume it with --resume), 2 for
        bad input (refused before Ray starts).
    """
    args = parse_args(spec, argv)
    try:
        plan = build_plan(spec, args)
        storage = Storage(args.storage)
        lease = Lease(storage, plan.sweep)
        lease.check()  # another live driver on this folder: refused, named
        applied = check_resume_flags(spec, storage, plan.sweep, args)
        mode = check_folder(storage, plan.sweep, plan.spec_record, args.resume)
        lease.acquire()
    except (PlanError, FolderError, LeaseError) as err:
        print(f"sweeps/{spec.name}.py: error: {err}", file=sys.stderr)
        return 2
    for line in applied + took_over(lease):
        print(line, flush=True)
    lease.start_heartbeat()
    try:
        return run(spec, args, plan, storage, mode)
    finally:
        lease.release()


def _init_ray(address: str | None, verbose: bool = False) -> bool:
    """Joins the cluster at ``address`` (or this machine's, or a new local one); True if started.
    Ray's own informational lines reach the console only with ``verbose``."""
    import ray

    from ibnn.sweep.progress import ray_logging_level

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if ray.is_initialized():
        return False
    try:
        check_ray_address(address)  # a dead head is reported in seconds, not waited on
    except PreflightError as err:
        raise SystemExit(f"error: {err}") from None
    try:
        ray.init(
            address=address,
            include_dashboard=False,
            log_to_driver=True,
            logging_level=ray_logging_level(verbose),
        )
    except ConnectionError as err:
        hint = ""
        if address not in (None, "auto", "local") and os.environ.get("RAY_AUTH_MODE") != "token":
            hint = (
                " If that cluster uses token authentication (Ray >= 2.59 enables it for clusters "
                "started where ~/.ray/auth_token exists), export RAY_AUTH_MODE=token and make the "
                "cluster's token available (~/.ray/auth_token, RAY_AUTH_TOKEN_PATH or "
                "RAY_AUTH_TOKEN) before running the sweep."
            )
        raise SystemExit(f"error: cannot connect to Ray at {address!r}: {err}.{hint}") from None
    return True


def _resources(args: SweepArgs) -> tuple[dict[str, float], str]:
    import ray

    gpus = args.gpus_per_trial
    if gpus is None:  # what the cluster can provide, not only what is up now
        gpus = default_gpu_share(ray.cluster_resources())
    request = {"cpu": args.cpus_per_trial}
    if gpus > 0:
        request["gpu"] = gpus
    # "auto": the GPU Ray assigned (CUDA_VISIBLE_DEVICES holds it, so it is cuda:0), or the CPU
    # where torch cannot use CUDA (the trial says so and its rows record device "cpu").
    return request, ("auto" if gpus > 0 else "cpu")


def trial_constants(plan: SweepPlan, device: str) -> dict[str, Any]:
    """The config every trial of a grid or search shares: the plan's constants, with the device
    that the resources imply ("auto" for GPU trials, "cpu") unless ``--set device=...`` chose
    one (``--set device=cuda``: a GPU trial fails where torch cannot use CUDA)."""
    return {"device": device, **plan.constants}


def _write_start(
    storage: Storage,
    spec: SweepSpec,
    args: SweepArgs,
    plan: SweepPlan,
    mode: str,
    resources: dict[str, float],
) -> dict[str, Any]:
    import ray

    rel = f"{plan.sweep}/{SWEEP_JSON}"
    old = storage.read_json(rel) if storage.exists(plan.sweep, SWEEP_JSON) else {}
    origin = provenance()
    meta = {
        **old,
        "sweep": plan.sweep,
        "experiment": plan.experiment,
        "kind": plan.kind,
        "dataset": plan.dataset,
        "description": spec.description,
        "script": f"sweeps/{spec.name}.py",
        "args": list(args.argv),
        "spec": plan.spec_record,
        "fingerprint": plan.fingerprint,
        "expected_trials": plan.expected_trials,
        "neuron": plan.neuron,
        "neuron_source": plan.neuron_source,
        "resources_per_trial": resources,
        "ray_version": ray.__version__,
        "provenance": origin,
        "ray_dir": storage.join_uri(plan.sweep, RAY_DIR),
        "status": "running",
        "finished": None,
    }
    if plan.study_storage:
        meta["study"] = {"name": plan.sweep, "storage": redact(plan.study_storage)}
    if mode == "restore" and old.get("started"):
        meta["args"] = old.get("args", meta["args"])  # the arguments that started the sweep
        meta["provenance"] = old.get("provenance", origin)  # the code that started it
        resumed = {"at": now(), "args": list(args.argv), "provenance": origin}
        meta["resumed"] = [*old.get("resumed", []), resumed]
    else:
        meta["started"] = now()
        meta.pop("resumed", None)
    storage.write_json(rel, meta)
    return meta


def _search_alg(spec: SweepSpec, args: SweepArgs, plan: SweepPlan, storage: Storage) -> Any:
    from ibnn.sweep.searcher import StudySearcher

    if plan.study_storage.startswith("sqlite:///"):
        os.makedirs(os.path.dirname(plan.study_storage[len("sqlite:///") :]), exist_ok=True)
    return StudySearcher(
        space=spec.search_space,
        storage_url=plan.study_storage,
        study_name=plan.sweep,
        seed=args.search_seed,
        trials=plan.expected_trials,
        fixed=plan.space_fixed,
    )


def _schedule(plan: SweepPlan, args: SweepArgs) -> tuple[int, int]:
    """A search trial's (warm-up epochs, main epochs)."""
    _, config_cls = load_trial_api(args.trial_module)
    base = {**plan.constants, "family": "ibnn", "seed": SEARCH_SEED, "lam": 0.0}
    cfg = config_cls.from_dict({k: v for k, v in base.items() if k != "variant"})
    return int(cfg.warmup_epochs), int(cfg.epochs)


def _build_tuner(
    spec: SweepSpec,
    args: SweepArgs,
    plan: SweepPlan,
    storage: Storage,
    mode: str,
    trainable: Any,
    settings: TrialSettings,
    device: str,
    ray_dir: str = RAY_DIR,
) -> Any:
    from ray import tune

    from ibnn.sweep.progress import SweepProgress

    if mode == "restore":
        path, fs = tune_location(storage, plan.sweep, ray_dir)
        return tune.Tuner.restore(
            path, trainable=trainable, resume_errored=True, storage_filesystem=fs
        )
    constants = trial_constants(plan, device)
    units, unit = plan.expected_trials, "trials"
    concurrent = args.max_concurrent
    callbacks: list[Any] = []
    if plan.kind == "grid":
        packs = _packs(args, plan, constants, device, ray_dir)
        if packs:  # several trials per Tune trial, trained as one model
            param_space = {**constants, PACK: tune.grid_search(packs)}
            units, unit = len(packs), "packs"
            print(
                f"Training its {plan.expected_trials} trials in {len(packs)} packs of up to "
                f"{max(map(len, packs))} (one model and one Ray trial per pack, with the "
                f"resources above; --pack 1 trains each trial alone)",
                flush=True,
            )
        else:
            param_space = {**constants, "variant": tune.grid_search(list(plan.variants))}
        search: dict[str, Any] = {"num_samples": 1}
    else:
        from ibnn.sweep.pruning import PruneRecorder, asha

        param_space = {**constants, "family": spec.search_family, "seed": SEARCH_SEED}
        search = {
            "search_alg": _search_alg(spec, args, plan, storage),
            "num_samples": plan.expected_trials,
        }
        if args.prune:
            search["scheduler"] = asha(*_schedule(plan, args))
            callbacks.append(PruneRecorder(settings))
        if concurrent is None:
            concurrent = default_concurrency(plan.expected_trials)
    callbacks.insert(0, SweepProgress(units, plan.label_keys, verbose=args.verbose, unit=unit))
    tune_config = tune.TuneConfig(
        **search,
        max_concurrent_trials=concurrent,
        reuse_actors=True,
        trial_name_creator=TrialNamer(settings),
        trial_dirname_creator=TrialNamer(settings, folder=True),
    )
    storage_path, storage_fs = tune_location(storage, plan.sweep)
    run_config = tune.RunConfig(
        name=ray_dir,
        storage_path=storage_path,
        storage_filesystem=storage_fs,
        failure_config=tune.FailureConfig(max_failures=args.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=KEPT_WHILE_RUNNING),
        callbacks=callbacks,
        verbose=0,
    )
    return tune.Tuner(
        trainable, param_space=param_space, tune_config=tune_config, run_config=run_config
    )


def _packs(
    args: SweepArgs, plan: SweepPlan, constants: dict[str, Any], device: str, ray_dir: str
) -> list[list[dict[str, Any]]]:
    """The grid's packs (``ibnn.sweep.packing``), or [] when every trial runs alone (``--pack
    1``, a single trial per pack key, a confirmation run, another trial module)."""
    if ray_dir != RAY_DIR:  # a search's confirmation runs: a few trials, each alone
        return []
    gpu = device != "cpu"
    packs = pack_variants(plan.variants, constants, args.pack, args.trial_module, gpu)
    return packs if any(len(p) > 1 for p in packs) else []


def _refuse_existing_study(plan: SweepPlan) -> None:
    """A fresh search must not add trials to an existing study of the same name."""
    import optuna

    from ibnn.sweep.study import open_storage

    names = optuna.get_all_study_names(open_storage(plan.study_storage))
    if plan.sweep in names:
        raise SystemExit(
            f"error: the study {plan.sweep!r} already exists in {redact(plan.study_storage)} but "
            f"there is no Tune state to resume it with. Nothing was changed; choose another "
            f"--name, or delete it (optuna delete-study --study-name {plan.sweep} --storage ...)."
        )


def _fit(tuner: Any, settings: TrialSettings, kind: str) -> None:
    """Runs a Tuner and records in the trials table what only the driver knows: trials that
    failed on every retry ("error") and trials the scheduler stopped ("pruned")."""
    from ibnn.sweep.pruning import was_pruned

    for result in tuner.fit():
        if result.error is not None:
            # The trial's own exception, not Ray's wrapper (whose text starts with a traceback
            # and would cut the message off at 2000 characters).
            cause = getattr(result.error, "cause", None) or result.error
            error = f"{type(cause).__name__}: {str(cause)[:2000]}"
            mark_failed(settings, result.config, error)
        elif kind == "search" and was_pruned(result.metrics):
            mark_status(settings, result.config, PRUNED)  # its driver died before it was marked


def _all_ended(storage: Storage, plan: SweepPlan, expected: int) -> bool:
    status = _statuses(storage, plan.sweep)
    return sum(status.values()) >= expected and not status.get(RUNNING)


def _confirm(
    spec: SweepSpec,
    args: SweepArgs,
    plan: SweepPlan,
    storage: Storage,
    meta: dict[str, Any],
    trainable: Any,
    settings: TrialSettings,
    device: str,
) -> int:
    """Re-runs the search's best configurations on fresh seeds (``ibnn.sweep.confirm``) as a
    grid in ``<sweep>/ray_confirm``; returns the number of confirmation trials."""
    import dataclasses

    from ibnn.sweep.confirm import CONFIRM_DIR, confirm_variants
    from ibnn.sweep.meta import tune_state_exists

    if "confirm" in meta:  # chosen once, when the search had ended; a resume keeps the choice
        variants = meta["confirm"]["variants"]
    else:
        rows = read_table(storage, plan.sweep, "trials").to_pylist()
        variants = confirm_variants(rows, args.confirm_top, args.confirm_seeds)
        meta["confirm"] = {"top": args.confirm_top, "seeds": args.confirm_seeds}
        meta["confirm"]["variants"] = variants
        storage.write_json(f"{plan.sweep}/{SWEEP_JSON}", meta)
    if not variants:
        return 0
    grid = dataclasses.replace(
        plan, kind="grid", variants=tuple(variants), expected_trials=len(variants)
    )
    mode = "restore" if tune_state_exists(storage, plan.sweep, CONFIRM_DIR) else "fresh"
    print(
        f"Confirming the best {len(variants) // args.confirm_seeds} configurations of "
        f"{plan.sweep!r} on {args.confirm_seeds} fresh seeds ({len(variants)} trials)",
        flush=True,
    )
    tuner = _build_tuner(spec, args, grid, storage, mode, trainable, settings, device, CONFIRM_DIR)
    _fit(tuner, settings, "grid")
    return len(variants)


def _stage(storage: Storage, args: SweepArgs, plan: SweepPlan) -> str:
    """Stages the sweep's dataset for the cluster's nodes; stops with one message if the driver
    has no copy of it (before anything is written into the sweep folder)."""
    from ibnn.trial.data import DatasetNotFoundError

    try:
        return stage_dataset(storage, plan.dataset, args.data_root, args.download) or ""
    except DatasetNotFoundError as err:
        raise SystemExit(
            f"error: cannot stage the dataset for the cluster's nodes: {err}"
        ) from None


def _statuses(storage: Storage, sweep: str) -> dict[str, int]:
    """Trials per status in the sweep's trials table (ok, running, solver_failed, error, ...)."""
    rows = read_table(storage, sweep, "trials").column("status").to_pylist()
    return dict(sorted(Counter(rows).items()))


def run(spec: SweepSpec, args: SweepArgs, plan: SweepPlan, storage: Storage, mode: str) -> int:
    """Runs (or resumes) a planned sweep on Ray and records the outcome; returns the exit code."""
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # with verbose=0: no status tables
    started = False
    try:
        joins = resolve_ray_address(args.address)[0] is not None  # an existing cluster
        started = _init_ray(args.address, args.verbose)
        return _execute(spec, args, plan, storage, mode, stage_data=joins or not started)
    except KeyboardInterrupt:  # Ctrl-C before Tune took over its handling
        return _interrupted(storage, plan)
    finally:
        if started:
            import ray

            ray.shutdown()


def _interrupted(storage: Storage, plan: SweepPlan) -> int:
    """Records an interruption in sweep.json and says how to continue; returns 130."""
    rel = f"{plan.sweep}/{SWEEP_JSON}"
    if storage.exists(plan.sweep, SWEEP_JSON):
        storage.write_json(
            rel, {**storage.read_json(rel), "status": "interrupted", "finished": None}
        )
    how = "--resume" if tune_state_exists(storage, plan.sweep) else "the same command"
    print(f"Sweep {plan.sweep!r} interrupted; continue it with {how}", file=sys.stderr, flush=True)
    return 130


def _prepare(
    spec: SweepSpec,
    args: SweepArgs,
    plan: SweepPlan,
    storage: Storage,
    mode: str,
    stage_data: bool,
) -> tuple[dict[str, Any], TrialSettings, Any, str]:
    """Stages the dataset and checks the nodes (on a joined cluster), records the start in
    sweep.json and builds the trainable; returns (meta, settings, trainable, device)."""
    from ray import tune

    data_stage = _stage(storage, args, plan) if stage_data else ""
    resources, device = _resources(args)
    try:  # other machines: storage writable there, same versions (one machine: it is this one)
        if stage_data:
            check_workers(storage.join_uri(), resources, driver_versions())
    except PreflightError as err:
        raise SystemExit(f"error: {err}") from None
    meta = _write_start(storage, spec, args, plan, mode, resources)
    settings = TrialSettings(
        storage=storage.join_uri(),
        sweep=plan.sweep,
        experiment=plan.experiment,
        trial_module=args.trial_module,
        drop_keys=spec.search_only_keys,
        boundaries=spec.boundaries,
        data_stage=data_stage,
        driver_versions=driver_versions() if stage_data else None,
    )
    trainable = tune.with_resources(make_trainable(settings), resources)
    verb = "Resuming" if mode == "restore" else "Starting"
    print(
        f"{verb} sweep {plan.sweep!r} ({plan.experiment}, {plan.dataset}): "
        f"{plan.expected_trials} trials, {resources} per trial, results in "
        f"{storage.join_uri(plan.sweep)}",
        flush=True,
    )
    return meta, settings, trainable, device


def _tuner(spec, args, plan, storage, mode, trainable, settings, device) -> Any:
    """``_build_tuner``, with a damaged Tune state on restore reported as one message."""
    try:
        return _build_tuner(spec, args, plan, storage, mode, trainable, settings, device)
    except Exception as err:  # a damaged Tune state (e.g. a truncated tuner.pkl, ray #58179)
        if mode != "restore":
            raise
        raise SystemExit(
            f"error: cannot restore the Tune state in {storage.join_uri(plan.sweep, RAY_DIR)}:"
            f" {type(err).__name__}: {err}. The Parquet results there are intact; start a "
            f"new sweep folder (--name) to rerun."
        ) from None


def _outcome(
    args: SweepArgs, plan: SweepPlan, storage: Storage, meta: dict[str, Any], expected: int
) -> int:
    """Records the sweep's outcome in sweep.json and on the console; returns the exit code.

    The trials table decides, not Tune's states (after Ctrl-C Tune reports stopped trials as
    terminated): a sweep is finished when every trial has a final status. Counts: "ok" trials
    finished their schedule, "pruned" ones were stopped by a search's scheduler, "failed" ones
    ended as solver_failed, diverged (results too) or error (crashed on every retry).
    """
    status = _statuses(storage, plan.sweep)
    ok = status.get(OK, 0)
    pruned = status.get(PRUNED, 0)
    failed = sum(n for s, n in status.items() if s not in (OK, RUNNING, PRUNED))
    done = ok + pruned + failed >= expected and not status.get(RUNNING)
    if plan.kind == "search" and args.confirm_top > 0 and "confirm" not in meta:
        done = False  # the search ended but its confirmation has not started
    if done:  # no trial will be restored any more: keep each one's last checkpoint only
        prune_checkpoints(storage, f"{plan.sweep}/{RAY_DIR}")
    meta.update(
        status="finished" if done else "interrupted",
        finished=now() if done else None,
        counts={"ok": ok, "failed": failed, "total": expected}
        | ({"pruned": pruned} if plan.kind == "search" else {}),
        trial_status=status,
    )
    storage.write_json(f"{plan.sweep}/{SWEEP_JSON}", meta)
    summary = f"{ok} ok, {failed} failed of {expected} trials"
    if plan.kind == "search":
        summary = f"{ok} ok, {pruned} pruned, {failed} failed of {expected} trials"
    if not done:
        print(
            f"Sweep {plan.sweep!r} interrupted: {summary}; continue it with the same "
            f"arguments and --resume",
            flush=True,
        )
        return 130
    print(
        f"Sweep {plan.sweep!r} finished: {summary}; trial status {status}; results in "
        f"{storage.join_uri(plan.sweep)}",
        flush=True,
    )
    return 1 if status.get("error", 0) else 0


def _execute(
    spec: SweepSpec,
    args: SweepArgs,
    plan: SweepPlan,
    storage: Storage,
    mode: str,
    stage_data: bool = False,
) -> int:
    """Builds or restores the Tuner, runs it and records the outcome; returns the exit code.

    ``stage_data``: the sweep runs on a cluster it joined (other nodes may lack the dataset):
    stage it first (``ibnn.sweep.datastage``) and check the nodes (``preflight.check_workers``).
    """
    meta, settings, trainable, device = _prepare(spec, args, plan, storage, mode, stage_data)
    tuner = _tuner(spec, args, plan, storage, mode, trainable, settings, device)
    if plan.kind == "search" and mode != "restore":
        _refuse_existing_study(plan)
    _fit(tuner, settings, plan.kind)
    expected = plan.expected_trials
    if plan.kind == "search" and args.confirm_top > 0 and _all_ended(storage, plan, expected):
        expected += _confirm(spec, args, plan, storage, meta, trainable, settings, device)
    return _outcome(args, plan, storage, meta, expected)
