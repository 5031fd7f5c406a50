"""The Tune searcher of a search: drives a durable Optuna study without ever holding it in a
pickle.

The study is written to its storage as the search runs (one row per ask, report and tell), so
``optuna-dashboard`` can watch it live and a new driver can reopen it. Tune pickles only this
searcher's settings and the map "Tune trial -> Optuna trial"; the study is reopened from its
storage after a restore. What a driver SIGKILL leaves behind is handled here:

- an Optuna trial that Tune re-runs after it had already finished (Tune's snapshot was older)
  keeps its first result: later reports and tells for it are ignored;
- an Optuna trial asked after Tune's last snapshot (an *orphan*: RUNNING, and no Tune trial of
  the restored state refers to it) is handed out again, with the same parameters, before any new
  one is asked;
- trials that ended after that snapshot count against the budget: no new trial is asked once the
  study holds the requested number. So the study ends with exactly that many trials, none
  RUNNING.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping
from typing import Any

import optuna
from ray.tune.search import Searcher

from ibnn.results.schema import ERROR, OK, PRUNED, RUNNING
from ibnn.sweep.search.study import Space, make_sampler, open_storage
from ibnn.sweep.trials.identity import SEARCH_NUMBER

__all__ = ["StudySearcher"]


class StudySearcher(Searcher):
    """A Tune searcher over a durable Optuna study (see the module docstring).

    Args:
        space: define-by-run function; its return value (extra config keys) is merged over the
            trial's parameters.
        storage_url: ``--study-storage`` value (RDB URL or journal path).
        study_name: the study's name (the sweep name).
        seed: TPE's seed.
        trials: the search budget (sets TPE's random start).
        fixed: parameters pinned with ``--space``.
        extra: config keys added to every trial (e.g. the search seed).
        metric: the result key maximised.
    """

    def __init__(
        self,
        space: Space,
        storage_url: str,
        study_name: str,
        seed: int,
        trials: int,
        fixed: Mapping[str, Any] | None = None,
        extra: Mapping[str, Any] | None = None,
        metric: str = "objective",
    ) -> None:
        super().__init__(metric=metric, mode="max")
        self.space = space
        self.storage_url = storage_url
        self.study_name = study_name
        self.seed = seed
        self.trials = trials
        self.fixed = dict(fixed or {})
        self.extra = dict(extra or {})
        self.given: dict[str, tuple[int, int]] = {}  # Tune trial -> (number, Optuna trial id)
        self._study: optuna.Study | None = None

    # -- the study, reopened from its storage (never pickled) ----------------------------------
    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_study": None}

    @property
    def study(self) -> optuna.Study:
        """The study, created on first use (or loaded when it exists)."""
        if self._study is None:
            self._study = optuna.create_study(
                storage=open_storage(self.storage_url),
                study_name=self.study_name,
                sampler=make_sampler(self.seed, self.trials, self.fixed),
                direction="maximize",
                load_if_exists=True,
            )
        return self._study

    def get_state(self) -> dict[str, Any]:
        return {"given": dict(self.given)}

    def set_state(self, state: dict[str, Any]) -> None:
        self.given = {k: tuple(v) for k, v in state["given"].items()}

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "w") as f:
            json.dump(self.get_state(), f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path) as f:
            self.set_state(json.load(f))

    # -- Tune's calls ---------------------------------------------------------------------------
    def orphans(self) -> list[optuna.trial.FrozenTrial]:
        """RUNNING Optuna trials that no Tune trial of this run (or its restored state) holds."""
        held = {number for number, _ in self.given.values()}
        running = self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        return [t for t in running if t.number not in held]

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        study = self.study
        orphans = self.orphans()
        if orphans:  # asked after Tune's last snapshot: run it again, same parameters
            trial = optuna.Trial(study, orphans[0]._trial_id)
        elif len(study.get_trials(deepcopy=False)) >= self.trials:
            # The budget is spent: trials that ended after Tune's last snapshot are in the study
            # (and in the Parquet tables) though the restored Tune state does not know them.
            return Searcher.FINISHED
        else:
            trial = study.ask()
        trial.set_user_attr("tune_trial_id", trial_id)
        config = {**(self.space(trial) or {})}
        self.given[trial_id] = (trial.number, trial._trial_id)
        return {**trial.params, **config, **self.extra, SEARCH_NUMBER: trial.number}

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        if trial_id not in self.given or not _finite(result.get(self.metric)):
            return
        _, internal = self.given[trial_id]
        trial = optuna.Trial(self.study, internal)
        try:
            with warnings.catch_warnings():
                # A re-run epoch's step is already reported: Optuna keeps the first value.
                warnings.filterwarnings("ignore", "The reported value is ignored", UserWarning)
                trial.report(float(result[self.metric]), int(result.get("training_iteration", 0)))
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # a trial Tune re-runs from an older checkpoint: its first result stands

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        if trial_id not in self.given:
            return
        number, internal = self.given[trial_id]
        result = result or {}
        status = ERROR if error else str(result.get("status", RUNNING))
        state, values = optuna.trial.TrialState.FAIL, None
        if status == OK and _finite(result.get(self.metric)):
            state, values = optuna.trial.TrialState.COMPLETE, float(result[self.metric])
        elif status in (RUNNING, PRUNED):  # stopped by the scheduler before its last epoch
            state = optuna.trial.TrialState.PRUNED
        trial = optuna.Trial(self.study, internal)
        try:
            for key in ("trial_id", "epochs_done", "wall_s", "solver_iters", "seed"):
                if key in result:
                    trial.set_user_attr(key, result[key])
            trial.set_user_attr("status", PRUNED if status == RUNNING else status)
        except optuna.exceptions.UpdateFinishedTrialError:
            return  # finished before Tune's snapshot was taken; that result stands
        self.study.tell(number, values, state=state, skip_if_finished=True)


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
