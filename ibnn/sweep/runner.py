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
from ibnn.sweep.spec import SweepSpec
from ibnn.sweep.trainable import TrialNamer, TrialSettings, make_trainable, mark_failed

__all__ = ["DEFAULT_GPU_FRACTION", "main", "run"]

OPTUNA_DB = "optuna.db"  # a search's study, beside its Parquet tables


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


def _init_ray(address: str | None) -> bool:
    """Joins the cluster at ``address`` (or this machine's, or a new local one); True if started."""
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if ray.is_initialized():
        return False
    try:
        check_ray_address(address)  # a dead head is reported in seconds, not waited on
    except PreflightError as err:
        raise SystemExit(f"error: {err}") from None
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=True)
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
    return request, ("cuda" if gpus > 0 else "cpu")


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


def _optuna_db(storage: Storage, sweep: str) -> str:
    """Local path of a search's SQLite study: in the sweep folder, or (object storage) beside the
    driver in ~/.cache/ibnn/optuna/, copied to the sweep folder when the search ends."""
    if storage.is_local:
        return storage.path(sweep, OPTUNA_DB)
    return os.path.expanduser(f"~/.cache/ibnn/optuna/{sweep}.db")


def _search_alg(spec: SweepSpec, args: SweepArgs, plan: SweepPlan, storage: Storage) -> Any:
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    db = _optuna_db(storage, plan.sweep)
    os.makedirs(os.path.dirname(db), exist_ok=True)
    return OptunaSearch(
        space=spec.search_space,
        metric="objective",
        mode="max",
        seed=args.search_seed,
        study_name=plan.sweep,
        storage=optuna.storages.RDBStorage(f"sqlite:///{db}"),
    )


def _build_tuner(
    spec: SweepSpec,
    args: SweepArgs,
    plan: SweepPlan,
    storage: Storage,
    mode: str,
    trainable: Any,
    settings: TrialSettings,
    device: str,
) -> Any:
    from ray import tune

    from ibnn.sweep.progress import SweepProgress

    if mode == "restore":
        path, fs = tune_location(storage, plan.sweep, RAY_DIR)
        return tune.Tuner.restore(
            path, trainable=trainable, resume_errored=True, storage_filesystem=fs
        )
    constants = {**plan.constants, "device": device}
    if plan.kind == "grid":
        param_space = {**constants, "variant": tune.grid_search(list(plan.variants))}
        search: dict[str, Any] = {"num_samples": 1}
    else:
        param_space = {**constants, "family": spec.search_family, "seed": 0}
        search = {
            "search_alg": _search_alg(spec, args, plan, storage),
            "num_samples": plan.expected_trials,
        }
    tune_config = tune.TuneConfig(
        **search,
        max_concurrent_trials=args.max_concurrent,
        reuse_actors=True,
        trial_name_creator=TrialNamer(settings),
        trial_dirname_creator=TrialNamer(settings, folder=True),
    )
    storage_path, storage_fs = tune_location(storage, plan.sweep)
    run_config = tune.RunConfig(
        name=RAY_DIR,
        storage_path=storage_path,
        storage_filesystem=storage_fs,
        failure_config=tune.FailureConfig(max_failures=args.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=KEPT_WHILE_RUNNING),
        callbacks=[SweepProgress(plan.expected_trials, plan.label_keys, verbose=args.verbose)],
        verbose=0,
    )
    return tune.Tuner(
        trainable, param_space=param_space, tune_config=tune_config, run_config=run_config
    )


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
        started = _init_ray(args.address)
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
    )
    trainable = tune.with_resources(make_trainable(settings), resources)
    verb = "Resuming" if mode == "restore" else "Starting"
    print(
        f"{verb} sweep {plan.sweep!r} ({plan.experiment}, {plan.dataset}): "
        f"{plan.expected_trials} trials, {resources} per trial, results in "
        f"{storage.join_uri(plan.sweep)}",
        flush=True,
    )
    try:
        tuner = _build_tuner(spec, args, plan, storage, mode, trainable, settings, device)
    except Exception as err:  # a damaged Tune state (e.g. a truncated tuner.pkl, ray #58179)
        if mode != "restore":
            raise
        raise SystemExit(
            f"error: cannot restore the Tune state in {storage.join_uri(plan.sweep, RAY_DIR)}:"
            f" {type(err).__name__}: {err}. The Parquet results there are intact; start a "
            f"new sweep folder (--name) to rerun."
        ) from None
    grid = tuner.fit()
    for result in grid:
        if result.error is not None:
            error = f"{type(result.error).__name__}: {str(result.error)[:2000]}"
            mark_failed(settings, result.config, error)
    if plan.kind == "search" and not storage.is_local:
        with open(_optuna_db(storage, plan.sweep), "rb") as f:
            storage.write_bytes(f"{plan.sweep}/{OPTUNA_DB}", f.read())
    # The trials table decides, not Tune's states (after Ctrl-C Tune reports stopped trials
    # as terminated): a sweep is finished when every trial has a final status.
    # counts: "ok" trials finished with status ok; "failed" ones ended as solver_failed,
    # diverged (results too) or error (the trial crashed on every retry).
    status = _statuses(storage, plan.sweep)
    ok = status.get("ok", 0)
    failed = sum(n for s, n in status.items() if s not in ("ok", "running"))
    done = ok + failed >= plan.expected_trials
    if done:  # no trial will be restored any more: keep each one's last checkpoint only
        prune_checkpoints(storage, f"{plan.sweep}/{RAY_DIR}")
    meta.update(
        status="finished" if done else "interrupted",
        finished=now() if done else None,
        counts={"ok": ok, "failed": failed, "total": plan.expected_trials},
        trial_status=status,
    )
    storage.write_json(f"{plan.sweep}/{SWEEP_JSON}", meta)
    summary = f"{ok} ok, {failed} failed of {plan.expected_trials} trials"
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
