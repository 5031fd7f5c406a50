"""The shared runner: a sweep spec and a command line become a Ray Tune run. It composes the
other parts of ``ibnn.sweep`` and nothing imports it but the package's face (``main``).

Order of work: parse and validate the command line, expand the trials (``build_plan``), check
the storage folder (``check_folder``) and take its lease -- all before Ray starts -- then join
or start Ray, record the start in ``sweep.json``, build a fresh Tuner or restore the saved one,
run it (a search then confirms its best configurations), and record the outcome. The Parquet
tables under ``<storage>/<sweep>/`` are the results; Ray's own folders live under
``<storage>/<sweep>/ray/``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from ibnn.results import Storage, read_table
from ibnn.results.errors import STORAGE_ERRORS, report
from ibnn.results.sweep_record import SweepRecord, write_record
from ibnn.sweep.cluster.lease import Lease, LeaseError, took_over
from ibnn.sweep.cluster.preflight import driver_versions, resolve_ray_address
from ibnn.sweep.cluster.resources import trial_resources
from ibnn.sweep.command_line.args import SweepArgs, parse_args
from ibnn.sweep.command_line.resume_flags import check_resume_flags
from ibnn.sweep.folder import CONFIRM_DIR, RAY_DIR, FolderError, check_folder, tune_state_exists
from ibnn.sweep.plan import PlanError, SweepPlan, build_plan
from ibnn.sweep.runner import ray_session
from ibnn.sweep.runner.record import (
    all_ended,
    exit_code,
    record_interruption,
    record_outcome,
    record_start,
)
from ibnn.sweep.runner.tuner import (
    SweepRun,
    TunerStage,
    build_tuner,
    confirmation_stage,
    fit,
    refuse_existing_study,
)
from ibnn.sweep.search.confirmation import confirm_variants
from ibnn.sweep.spec import SweepSpec
from ibnn.sweep.trials.checkpoints import prune_checkpoints
from ibnn.sweep.trials.identity import TrialSettings
from ibnn.sweep.trials.trainable import make_trainable

__all__ = ["main", "run"]


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
    except STORAGE_ERRORS as err:  # unknown scheme, unreachable store, read-only, not a folder
        return report(f"sweeps/{spec.name}.py", f"--storage {args.storage}", err, args.verbose)
    for line in applied + took_over(lease):
        print(line, flush=True)
    lease.start_heartbeat()
    try:
        return run(spec, args, plan, storage, restore=mode == "restore")
    finally:
        lease.release()


def run(spec: SweepSpec, args: SweepArgs, plan: SweepPlan, storage: Storage, restore: bool) -> int:
    """Runs (or, ``restore``, resumes) a planned sweep on Ray and records the outcome; returns
    the exit code."""
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # with verbose=0: no status tables
    started = False
    try:
        joins = resolve_ray_address(args.address)[0] is not None  # an existing cluster
        started = ray_session.init_ray(args.address, args.verbose)
        # On a cluster it joined, other nodes may lack the dataset: stage it and check them.
        sweep_run, record = _prepare(spec, args, plan, storage, restore, joins or not started)
        return _execute(sweep_run, record, restore)
    except KeyboardInterrupt:  # Ctrl-C before Tune took over its handling
        return _interrupted(storage, plan)
    finally:
        if started:
            import ray

            ray.shutdown()


def _interrupted(storage: Storage, plan: SweepPlan) -> int:
    """Records an interruption in sweep.json and says how to continue; returns 130."""
    record_interruption(storage, plan.sweep)
    how = "--resume" if tune_state_exists(storage, plan.sweep) else "the same command"
    print(f"Sweep {plan.sweep!r} interrupted; continue it with {how}", file=sys.stderr, flush=True)
    return 130


def _prepare(
    spec: SweepSpec,
    args: SweepArgs,
    plan: SweepPlan,
    storage: Storage,
    restore: bool,
    joined: bool,
) -> tuple[SweepRun, SweepRecord]:
    """Stages the dataset and checks the nodes (``joined``: a cluster other machines share),
    records the start in sweep.json and builds the trainable."""
    from ray import tune

    data_stage = (
        ray_session.stage(storage, plan.dataset, args.data_root, args.download) if joined else ""
    )
    resources, device = trial_resources(args.cpus_per_trial, args.gpus_per_trial)
    if joined:  # other machines: storage writable there, same versions
        ray_session.check_nodes(storage, resources, driver_versions())
    record = record_start(storage, spec, args, plan, restore, resources)
    settings = TrialSettings(
        storage=storage.join_uri(),
        sweep=plan.sweep,
        experiment=plan.experiment,
        trial_module=args.trial_module,
        drop_keys=spec.search_only_keys,
        boundaries=spec.boundaries,
        data_stage=data_stage,
        driver_versions=driver_versions() if joined else None,
    )
    trainable = tune.with_resources(make_trainable(settings), resources)
    print(
        f"{'Resuming' if restore else 'Starting'} sweep {plan.sweep!r} ({plan.experiment}, "
        f"{plan.dataset}): {plan.expected_trials} trials, {resources} per trial, results in "
        f"{storage.join_uri(plan.sweep)}",
        flush=True,
    )
    return SweepRun(spec, args, plan, storage, settings, trainable, device), record


def _confirm(run: SweepRun, record: SweepRecord) -> int:
    """Re-runs the search's best configurations on fresh seeds
    (``ibnn.sweep.search.confirmation``) as a grid in ``<sweep>/ray_confirm``; returns the
    number of confirmation trials."""
    args, plan, storage = run.args, run.plan, run.storage
    if record.confirm is None:  # chosen once, when the search had ended; a resume keeps it
        rows = read_table(storage, plan.sweep, "trials").to_pylist()
        variants = confirm_variants(rows, args.confirm_top, args.confirm_seeds)
        record.confirm = {"top": args.confirm_top, "seeds": args.confirm_seeds}
        record.confirm["variants"] = variants
        write_record(storage, record)
    variants = record.confirm["variants"]
    if not variants:
        return 0
    print(
        f"Confirming the best {len(variants) // args.confirm_seeds} configurations of "
        f"{plan.sweep!r} on {args.confirm_seeds} fresh seeds ({len(variants)} trials)",
        flush=True,
    )
    restore = tune_state_exists(storage, plan.sweep, CONFIRM_DIR)
    fit(build_tuner(run, confirmation_stage(plan, variants, restore)), run.settings, False)
    return len(variants)


def _execute(run: SweepRun, record: SweepRecord, restore: bool) -> int:
    """Builds or restores the Tuner, runs it (then a search's confirmation) and records the
    outcome; returns the exit code."""
    plan, args, storage = run.plan, run.args, run.storage
    tuner = build_tuner(run, TunerStage(plan=plan, restore=restore))
    search = plan.kind == "search"
    if search and not restore:
        refuse_existing_study(plan)
    fit(tuner, run.settings, search)
    expected = plan.expected_trials
    confirms = search and args.confirm_top > 0
    if confirms and all_ended(storage, plan.sweep, expected):
        expected += _confirm(run, record)
    done, status = record_outcome(
        storage, record, expected, confirming=confirms and record.confirm is None
    )
    ok, pruned, failed = (record.counts.get(k, 0) for k in ("ok", "pruned", "failed"))
    summary = f"{ok} ok, {failed} failed of {expected} trials"
    if search:
        summary = f"{ok} ok, {pruned} pruned, {failed} failed of {expected} trials"
    if not done:
        print(
            f"Sweep {plan.sweep!r} interrupted: {summary}; continue it with the same "
            f"arguments and --resume",
            flush=True,
        )
        return 130
    prune_checkpoints(storage, f"{plan.sweep}/{RAY_DIR}")  # no trial will be restored any more
    print(
        f"Sweep {plan.sweep!r} finished: {summary}; trial status {status}; results in "
        f"{storage.join_uri(plan.sweep)}",
        flush=True,
    )
    return exit_code(status)
