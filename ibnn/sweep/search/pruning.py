"""Early stopping of a search: Tune's ASHA scheduler, and the record of what it stopped.

ASHA (asynchronous successive halving) compares trials at rungs of ``training_iteration`` (one
per reported epoch, warm-up included) and stops those below the top ``1/REDUCTION`` at a rung.
The first rung is after the warm-up and a quarter of the main epochs: the warm-up epochs train
the same SM surrogate for every configuration of one seed, so they cannot tell configurations
apart. A stopped trial's ``trials`` row becomes "pruned" (its epochs so far are kept) and its
Optuna trial PRUNED (with its reported intermediate values).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ray import tune

from ibnn.results.schema import PRUNED, RUNNING
from ibnn.sweep.trials.identity import TrialSettings
from ibnn.sweep.trials.writer import mark_status

__all__ = ["REDUCTION", "PruneRecorder", "asha", "first_rung", "was_pruned"]

REDUCTION = 3  # ASHA keeps the top third at each rung


def first_rung(warmup_epochs: int, epochs: int) -> int:
    """Reports before a trial can be stopped: the warm-up plus max(1, epochs // 4) main epochs."""
    return warmup_epochs + max(1, epochs // 4)


def asha(warmup_epochs: int, epochs: int) -> Any:
    """Tune's ASHA scheduler on the objective (validation accuracy at the selected epoch)."""
    total = warmup_epochs + epochs
    return tune.schedulers.ASHAScheduler(
        time_attr="training_iteration",
        metric="objective",
        mode="max",
        max_t=total,
        grace_period=min(total, first_rung(warmup_epochs, epochs)),
        reduction_factor=REDUCTION,
    )


def was_pruned(last_result: Mapping[str, Any] | None, error: object = None) -> bool:
    """Whether a trial that Tune ended had been stopped early: no error, and its last report
    says it was still running."""
    return error is None and bool(last_result) and last_result.get("status") == RUNNING


class PruneRecorder(tune.Callback):
    """Marks a trial's Parquet row "pruned" as soon as the scheduler stops it.

    Args:
        settings: the sweep's trial settings (where the rows are).
    """

    def __init__(self, settings: TrialSettings) -> None:
        self.settings = settings

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if was_pruned(trial.last_result):
            mark_status(self.settings, trial.config, PRUNED)
