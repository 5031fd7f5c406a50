"""The search's Optuna study: where it lives, how TPE is set up, and the Tune searcher that
drives it without ever holding it in a pickle.

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

Storage (``--study-storage``): an SQLAlchemy URL (``sqlite:///...``, ``postgresql://...``,
``mysql://...``) is an RDB storage; anything else is a path to an Optuna journal file (for a
shared file system such as NFS). Default for a local results folder: SQLite beside the Parquet.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import optuna
from ray.tune.search import Searcher

from ibnn.sweep.trainable import SEARCH_NUMBER

__all__ = [
    "RDB_SCHEMES",
    "STUDY_FILE",
    "StudySearcher",
    "check_space_restriction",
    "default_concurrency",
    "make_sampler",
    "open_storage",
    "redact",
    "startup_trials",
]

STUDY_FILE = "optuna.db"  # the default SQLite study, in the sweep folder
RDB_SCHEMES = ("sqlite", "postgresql", "mysql")  # URL schemes of Optuna's RDB storage
_SCHEME = re.compile(r"^([a-z0-9]+)(\+[a-z0-9_]+)?://")
Space = Callable[[optuna.Trial], Mapping[str, Any] | None]


def redact(url: str) -> str:
    """A storage URL with its password replaced by ``***`` (for sweep.json and messages)."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """Optuna storage of a ``--study-storage`` value (RDB URL or journal file path).

    Raises:
        ValueError: a URL whose scheme Optuna cannot store a study in.
    """
    m = _SCHEME.match(url)
    if m is None:
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        return JournalStorage(JournalFileBackend(url))
    if m.group(1) not in RDB_SCHEMES:
        raise ValueError(
            f"--study-storage must be an RDB URL ({', '.join(s + '://' for s in RDB_SCHEMES)}) "
            f"or a journal file path, got {redact(url)!r}"
        )
    # pool_pre_ping: survive a database restart between two reports of a long search.
    return optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True})


def startup_trials(trials: int) -> int:
    """TPE's random start: min(10, max(2, trials // 4)) trials (Optuna's default is 10)."""
    return min(10, max(2, trials // 4))


def default_concurrency(trials: int) -> int:
    """Trials run at once by default: ceil(trials / 10), so that every proposal after TPE's
    random start sees the results of all earlier trials but at most a tenth of the budget."""
    return max(1, math.ceil(trials / 10))


def make_sampler(seed: int, trials: int, fixed: Mapping[str, Any]) -> optuna.samplers.BaseSampler:
    """Seeded TPE; ``fixed`` parameters (``--space``) pinned by Optuna's PartialFixedSampler."""
    tpe = optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup_trials(trials))
    if not fixed:
        return tpe
    return _pin(fixed, tpe)


def _pin(
    fixed: Mapping[str, Any], base: optuna.samplers.BaseSampler
) -> optuna.samplers.BaseSampler:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # stable since 2.4
        return optuna.samplers.PartialFixedSampler(dict(fixed), base)


def check_space_restriction(space: Space, fixed: Mapping[str, Any], draws: int = 64) -> None:
    """Checks ``--space`` values against the space by asking ``draws`` trials of a throw-away
    in-memory study: every name must be a parameter of the space and every value inside its
    distribution.

    Raises:
        ValueError: naming the parameter, the value and the valid names or choices.
    """
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "study created in memory" line
    try:
        study = optuna.create_study(sampler=_pin(fixed, optuna.samplers.RandomSampler(seed=0)))
    finally:
        optuna.logging.set_verbosity(verbosity)
    seen: dict[str, optuna.distributions.BaseDistribution] = {}
    for _ in range(draws):
        trial = study.ask()
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # "fixed parameter ... out of range" is an error here
            try:
                space(trial)
            except (ValueError, UserWarning) as err:
                raise ValueError(f"--space {_show(fixed)}: {err}") from None
        seen.update(trial.distributions)
        study.tell(trial, 0.0)
    unknown = sorted(set(fixed) - set(seen))
    if unknown:
        raise ValueError(
            f"--space names {unknown}, which the search space never suggests; its parameters: "
            f"{sorted(seen)}"
        )


def _show(fixed: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in fixed.items())


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
        import json

        with open(checkpoint_path, "w") as f:
            json.dump(self.get_state(), f)

    def restore(self, checkpoint_path: str) -> None:
        import json

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
        status = "error" if error else str(result.get("status", "running"))
        state, values = optuna.trial.TrialState.FAIL, None
        if status == "ok" and _finite(result.get(self.metric)):
            state, values = optuna.trial.TrialState.COMPLETE, float(result[self.metric])
        elif status in ("running", "pruned"):  # stopped by the scheduler before its last epoch
            state = optuna.trial.TrialState.PRUNED
        trial = optuna.Trial(self.study, internal)
        try:
            for key in ("trial_id", "epochs_done", "wall_s", "solver_iters", "seed"):
                if key in result:
                    trial.set_user_attr(key, result[key])
            trial.set_user_attr("status", "pruned" if status == "running" else status)
        except optuna.exceptions.UpdateFinishedTrialError:
            return  # finished before Tune's snapshot was taken; that result stands
        self.study.tell(number, values, state=state, skip_if_finished=True)


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
