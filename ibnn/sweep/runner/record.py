"""What the runner writes into the sweep folder's record (``sweep.json``,
``ibnn.results.sweep_record``): the start of a run, a resume, an interruption and the outcome.

The trials table decides the outcome, not Tune's states (after Ctrl-C Tune reports stopped
trials as terminated): a sweep is finished when every trial has a terminal status.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from ibnn.results import Storage, read_table
from ibnn.results.schema import ERROR, FAILED_STATUSES, OK, PRUNED, RUNNING
from ibnn.results.sweep_record import SweepRecord, read_record, write_record
from ibnn.sweep.clock import now
from ibnn.sweep.cluster.provenance import provenance
from ibnn.sweep.command_line.args import SweepArgs
from ibnn.sweep.folder import RAY_DIR
from ibnn.sweep.plan import SweepPlan
from ibnn.sweep.search.study import redact
from ibnn.sweep.spec import SweepSpec

__all__ = [
    "all_ended",
    "exit_code",
    "record_interruption",
    "record_outcome",
    "record_start",
    "statuses",
]


def record_start(
    storage: Storage,
    spec: SweepSpec,
    args: SweepArgs,
    plan: SweepPlan,
    restore: bool,
    resources: dict[str, float],
) -> SweepRecord:
    """Writes the record of a run that starts (or, ``restore``, resumes) the sweep."""
    import ray

    old = read_record(storage, plan.sweep) or SweepRecord()
    origin = provenance()
    record = SweepRecord(
        sweep=plan.sweep,
        experiment=plan.experiment,
        kind=plan.kind,
        dataset=plan.dataset,
        description=spec.description,
        script=f"sweeps/{spec.name}.py",
        args=list(args.argv),
        spec=plan.spec_record,
        fingerprint=plan.fingerprint,
        expected_trials=plan.expected_trials,
        neuron=plan.neuron,
        neuron_source=plan.neuron_source,
        resources_per_trial=resources,
        ray_version=ray.__version__,
        provenance=origin,
        ray_dir=storage.join_uri(plan.sweep, RAY_DIR),
        status="running",
        finished=None,
        study={"name": plan.sweep, "storage": redact(plan.study_storage)}
        if plan.study_storage
        else old.study,
        confirm=old.confirm,
        counts=old.counts,
        trial_status=old.trial_status,
        extra=old.extra,
    )
    if restore and old.started:
        record.args = old.args or record.args  # the arguments that started the sweep
        record.provenance = old.provenance or origin  # the code that started it
        record.started = old.started
        resumed = {"at": now(), "args": list(args.argv), "provenance": origin}
        record.resumed = [*old.resumed, resumed]
    else:
        record.started = now()
    write_record(storage, record)
    return record


def record_interruption(storage: Storage, sweep: str) -> None:
    """Records in sweep.json that the run was interrupted (when the folder has a record)."""
    record = read_record(storage, sweep)
    if record is not None:
        record.status, record.finished = "interrupted", None
        write_record(storage, record)


def statuses(storage: Storage, sweep: str) -> dict[str, int]:
    """Trials per status in the sweep's trials table (ok, running, solver_failed, error, ...)."""
    rows = read_table(storage, sweep, "trials").column("status").to_pylist()
    return dict(sorted(Counter(rows).items()))


def all_ended(storage: Storage, sweep: str, expected: int) -> bool:
    """Whether ``expected`` trials have rows and none is still running."""
    status = statuses(storage, sweep)
    return sum(status.values()) >= expected and not status.get(RUNNING)


def record_outcome(
    storage: Storage, record: SweepRecord, expected: int, confirming: bool
) -> tuple[bool, dict[str, Any]]:
    """Records the run's outcome in sweep.json.

    Args:
        storage: the results root.
        record: the record written at the start of this run.
        expected: the trials the sweep has (a search's confirmation trials included).
        confirming: a search whose confirmation has not started yet (so not finished).

    Returns:
        ``(finished, trials per status)``. Counts: "ok" trials finished their schedule,
        "pruned" ones were stopped by a search's scheduler, "failed" ones ended as
        solver_failed, diverged (results too) or error (crashed on every retry).
    """
    status = statuses(storage, record.sweep)
    ok, pruned = status.get(OK, 0), status.get(PRUNED, 0)
    failed = sum(status.get(s, 0) for s in FAILED_STATUSES)
    done = ok + pruned + failed >= expected and not status.get(RUNNING) and not confirming
    record.status = "finished" if done else "interrupted"
    record.finished = now() if done else None
    record.counts = {"ok": ok, "failed": failed, "total": expected}
    if record.kind == "search":
        record.counts["pruned"] = pruned
    record.trial_status = status
    write_record(storage, record)
    return done, status


def exit_code(status: dict[str, int]) -> int:
    """A finished sweep's exit code: 1 when some trial crashed on every retry, else 0."""
    return 1 if status.get(ERROR, 0) else 0
