"""The search's Optuna study: where it lives (``--study-storage``), how TPE is set up, how many
trials run at once, and the check of a ``--space`` restriction. Imports no Ray: the command line
is validated with it before Ray starts. The Tune searcher that drives the study is
``ibnn.sweep.search.searcher``.

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

__all__ = [
    "RDB_SCHEMES",
    "STUDY_FILE",
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
