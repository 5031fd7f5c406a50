"""What each sweep holds and what is missing: running sweeps, unwritten and failed trials."""

from __future__ import annotations

import pandas as pd

from analysis.load import SweepData
from analysis.tidy import trial_states
from ibnn.results.sweep_record import SweepRecord

__all__ = ["STATUS_COLUMNS", "meta_value", "sweep_status", "status_table", "partial_notes"]

STATUS_COLUMNS = [
    "sweep",
    "kind",
    "started",
    "finished",
    "expected",
    "found",
    "ok",
    "running",
    "pruned",
    "failed",
    "files",
    "complete",
    "notes",
]
# What each piece of metadata is in sweep.json's record (ibnn.results.sweep_record).
_META_FIELDS: dict[str, str] = {
    "started": "started",
    "finished": "finished",
    "expected": "expected_trials",
}


def meta_value(meta: dict, what: str) -> object:
    """sweep.json's value for "started", "finished" or "expected" (None when absent)."""
    value = getattr(SweepRecord.from_dict(meta), _META_FIELDS[what])
    return None if value in (None, "") else value


def _as_int(value: object) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def sweep_status(sweep: SweepData) -> dict:
    """One row of the sweep table: counts of trials by state and notes on what is missing.

    A trial is found when any of its tables has a row; its state comes from
    `tidy.trial_states` ("ok", "running", "pruned", anything else = failed); a trial with eval or
    boundary rows but no known status counts as ok.
    """
    ids: set[str] = set()
    for table in (sweep.epochs, sweep.evals, sweep.boundaries, sweep.trials):
        if not table.empty:
            ids |= set(table["trial_id"].astype(str))
    states = trial_states(sweep.epochs, sweep.trials)
    by_state = states["state"].value_counts() if not states.empty else pd.Series(dtype=int)
    n_running = int(by_state.get("running", 0))
    n_failed = int(by_state.get("failed", 0))
    n_pruned = int(by_state.get("pruned", 0))
    n_ok = len(ids) - n_running - n_failed - n_pruned
    started = meta_value(sweep.meta, "started")
    finished = meta_value(sweep.meta, "finished")
    expected = _as_int(meta_value(sweep.meta, "expected"))
    notes = []
    if not sweep.meta:
        notes.append("no sweep.json: start, end and expected trial count unknown")
    elif finished is None:
        notes.append("sweep still running or interrupted (sweep.json has no finished time)")
    if expected is not None and expected > len(ids):
        notes.append(f"{expected - len(ids)} of {expected} expected trials not written")
    if n_running:
        notes.append(f"{n_running} trials still running: their numbers are partial")
    if n_failed:
        failed = states[states["state"] == "failed"]
        shown = ", ".join(
            f"{t} ({s})" for t, s in zip(failed["trial_id"], failed["status"], strict=True)
        )
        notes.append(f"{n_failed} failed trials left out of the statistics: {shown}")
    if n_pruned:
        notes.append(
            f"{n_pruned} trials stopped early by the search's scheduler (pruned): left out of "
            f"the statistics, not failures"
        )
    if sweep.kind is None:
        notes.append("name matches no sweep script: used by no figure")
    notes.extend(sweep.warnings)
    complete = (
        finished is not None
        and (expected is None or expected <= len(ids))
        and not (n_running or n_failed or sweep.warnings)
    )
    return {
        "sweep": sweep.name,
        "kind": sweep.kind or "",
        "started": "" if started is None else str(started),
        "finished": "" if finished is None else str(finished),
        "expected": expected,
        "found": len(ids),
        "ok": n_ok,
        "running": n_running,
        "pruned": n_pruned,
        "failed": n_failed,
        "files": ", ".join(f"{k} {v}" for k, v in sweep.files.items() if v),
        "complete": complete,
        "notes": notes,
    }


def status_table(sweeps: list[SweepData]) -> pd.DataFrame:
    """`sweep_status` of every sweep, one row each (columns STATUS_COLUMNS)."""
    return pd.DataFrame([sweep_status(s) for s in sweeps], columns=STATUS_COLUMNS)


def partial_notes(status: pd.DataFrame, kind: str) -> list[str]:
    """Why the sweeps of one kind are incomplete ("<sweep>: <note>"); empty when complete."""
    if status.empty:
        return []
    rows = status[(status["kind"] == kind) & ~status["complete"].astype(bool)]
    return [f"{r['sweep']}: {n}" for _, r in rows.iterrows() for n in r["notes"]]
