"""A trial's rows in the sweep folder: its epochs, evaluations, boundary and its one row of the
``trials`` table (status, objective, cost), written by the trial itself or, for a trial whose
process is gone, by the driver (``mark_status``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ibnn.results import Storage
from ibnn.results.schema import ERROR, OK, TERMINAL_STATUSES
from ibnn.sweep.clock import now
from ibnn.sweep.trials.identity import TrialSettings, resolve, search_number
from ibnn.sweep.trials.packing import PACK, member_configs

__all__ = ["TrialWriter", "cost", "mark_failed", "mark_status", "objective"]

# Statuses a re-run trial keeps instead of training again (an "error" trial is retried).
KEPT_STATUSES = tuple(s for s in TERMINAL_STATUSES if s != ERROR)


def objective(records: list[Mapping[str, Any]]) -> float:
    """A trial's objective so far: the validation accuracy of its model-selection epoch (its last
    record if none is selected yet). What a search maximises, and each trial's ``objective``.
    ``analysis.tidy.trial_table`` reports a finished trial's selected epoch by the same
    ``selected`` flag (its fallbacks differ only for a trial with no selected epoch)."""
    if not records:
        return float("nan")
    chosen = [r for r in records if r.get("selected")]
    value = (chosen[-1] if chosen else records[-1]).get("val_acc")
    return float("nan") if value is None else float(value)


def cost(records: list[Mapping[str, Any]]) -> dict[str, float]:
    """A trial's cost so far: total wall time (s) and mean solver iterations per main epoch
    (NaN for SM and IBNN-lite, which run no solver)."""
    wall = sum(float(r.get("wall_s") or 0.0) for r in records)
    iters = [
        float(r["solver_iters"])
        for r in records
        if r.get("phase", "train") == "train" and _number(r.get("solver_iters"))
    ]
    return {"wall_s": wall, "solver_iters": sum(iters) / len(iters) if iters else float("nan")}


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and x == x


class TrialWriter:
    """Writes one trial's tables under the sweep folder."""

    def __init__(
        self,
        settings: TrialSettings,
        tid: str,
        cfg_dict: dict[str, Any],
        search_number: int | None = None,
    ) -> None:
        self.st = Storage(settings.storage)
        self.search_number = search_number
        self.settings = settings
        self.tid = tid
        self.cfg_dict = cfg_dict
        self.context = {**cfg_dict, "experiment": settings.experiment}
        self.error = ""  # why the trial failed, if the driver knows it

    def rows(self, table: str, rows: list[Mapping[str, Any]]) -> None:
        self.st.write_rows(self.settings.sweep, table, self.tid, rows, self.context)

    def has(self, table: str) -> bool:
        return self.st.exists(self.settings.sweep, table, f"{self.tid}.parquet")

    def trial_row(self, status: str, records: list[Mapping[str, Any]]) -> None:
        """Writes the trial's row of the ``trials`` table (its error: the writer's, else the
        last record's)."""
        last_error = str(records[-1].get("error") or "") if records else ""
        row = {
            "status": status,
            "epochs_done": len(records),
            "objective": objective(records),
            "config_json": json.dumps(self.cfg_dict, sort_keys=True),
            "updated": now(),
            "error": self.error or last_error,
            **cost(records),
            "search_number": self.search_number,
        }
        self.rows("trials", [row])

    def kept(self) -> dict[str, Any] | None:
        """The trial's row if it already ended with a status a re-run keeps, else None."""
        if not self.has("trials"):
            return None
        row = self.st.read_trial(self.settings.sweep, "trials", self.tid).to_pylist()[0]
        if row["status"] not in KEPT_STATUSES or (row["status"] == OK and not self.has("evals")):
            return None
        return row


def mark_status(
    settings: TrialSettings, config: Mapping[str, Any], status: str, error: str = ""
) -> None:
    """Records a trial's final status in the trials table from the driver (the trial's process
    is gone): "error" after its last retry, "pruned" when the scheduler stopped it. For a pack:
    every member that had not ended by itself."""
    if PACK in config:
        for member in member_configs(config):
            tid, cfg_dict = resolve(member, settings)
            if TrialWriter(settings, tid, cfg_dict).kept() is None:
                mark_status(settings, member, status, error)
        return
    tid, cfg_dict = resolve(config, settings)
    writer = TrialWriter(settings, tid, cfg_dict, search_number(config))
    records = []
    if writer.has("epochs"):
        records = writer.st.read_trial(settings.sweep, "epochs", tid).to_pylist()
    writer.error = error
    writer.trial_row(status, records)


def mark_failed(settings: TrialSettings, config: Mapping[str, Any], error: str) -> None:
    """Records in the trials table that a trial failed for good (after its retries)."""
    mark_status(settings, config, ERROR, error)
