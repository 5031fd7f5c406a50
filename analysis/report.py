"""All numbers of the dashboard, computed from loaded sweeps (no drawing here)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

from analysis import derived, seeds, toy
from analysis.claims import Sensitivity, claims_table
from analysis.failures import (
    at_chance,
    chance_trials,
    epochs_at_chance,
    evals_at_chance,
    trials_at_chance,
)
from analysis.load import SweepData
from analysis.stats import BootstrapSpec
from analysis.status import status_table
from analysis.tidy import add_arm, drop_failed, trial_table

__all__ = [
    "Report",
    "combine",
    "compute_report",
    "claim_frames",
    "failures_counted",
    "chance_table",
    "AT_CHANCE",
    "WITHOUT_CHANCE",
]


@dataclass(frozen=True, eq=False)
class Report:
    """Tidy frames behind every table and figure of the dashboard."""

    spec: BootstrapSpec  # how the intervals were computed
    kinds: frozenset[str]  # sweep kinds found
    status: pd.DataFrame  # one row per sweep (status.STATUS_COLUMNS)
    claims: pd.DataFrame  # claims.claims_table
    frames: dict[str, pd.DataFrame] = field(default_factory=dict)  # derived frames by name
    # the claims' comparison frames recomputed with failed trials at chance accuracy
    counted: dict[str, pd.DataFrame] = field(default_factory=dict)
    chance: pd.DataFrame = field(default_factory=pd.DataFrame)  # usable trials ended at chance
    warnings: tuple[str, ...] = ()  # problems met while reading


def combine(sweeps: list[SweepData], kind: str, table: str) -> pd.DataFrame:
    """One table of all sweeps of one kind, concatenated."""
    frames = [getattr(s, table) for s in sweeps if s.kind == kind]
    frames = [f for f in frames if not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _usable_trials(sweeps: list[SweepData], kind: str) -> pd.DataFrame:
    epochs = combine(sweeps, kind, "epochs")
    if epochs.empty:
        return pd.DataFrame()
    return drop_failed(trial_table(epochs, combine(sweeps, kind, "trials")))


def _usable(sweeps: list[SweepData], kind: str, table: str) -> pd.DataFrame:
    rows = combine(sweeps, kind, table)
    return drop_failed(rows, combine(sweeps, kind, "epochs"), combine(sweeps, kind, "trials"))


def _all_trials(sweeps: list[SweepData], kind: str) -> pd.DataFrame:
    epochs = combine(sweeps, kind, "epochs")
    if epochs.empty:
        return pd.DataFrame()
    return trial_table(epochs, combine(sweeps, kind, "trials"))


@dataclass(frozen=True)
class _Rows:
    """How the claims' input rows are changed before their comparisons are recomputed."""

    trials: Callable[[pd.DataFrame, pd.DataFrame], pd.DataFrame]  # (all, usable) trials -> trials
    epochs: Callable[[pd.DataFrame, pd.DataFrame], pd.DataFrame]  # (epochs, all trials) -> epochs
    evals: Callable[[pd.DataFrame, pd.DataFrame], pd.DataFrame]  # (usable evals, all trials)


def _not_at_chance(trials: pd.DataFrame) -> pd.DataFrame:
    return trials[~at_chance(trials)]


def _evals_not_at_chance(evals: pd.DataFrame, trials: pd.DataFrame) -> pd.DataFrame:
    gone = chance_trials(drop_failed(trials)) if not trials.empty else trials
    if evals.empty or gone.empty:
        return evals
    keys = ["sweep", "trial_id"]
    return evals[~evals.set_index(keys).index.isin(gone.set_index(keys).index)]


# Failed trials counted at chance accuracy (`analysis.failures`).
AT_CHANCE = _Rows(
    lambda all_, usable: trials_at_chance(all_),
    epochs_at_chance,
    evals_at_chance,
)
# Trials that ended at chance accuracy left out (failed trials are out as everywhere).
WITHOUT_CHANCE = _Rows(
    lambda all_, usable: _not_at_chance(usable),
    lambda epochs, trials: epochs,
    _evals_not_at_chance,
)


def claim_frames(
    sweeps: list[SweepData], kinds: frozenset[str], spec: BootstrapSpec, rows: _Rows
) -> dict[str, pd.DataFrame]:
    """The comparison frames behind the claims, recomputed from rows changed by `rows`.

    Returns:
        Frames named as in `compute_report` (data_fraction_match, pgd_effects, ...).
    """
    f: dict[str, pd.DataFrame] = {}

    def trials(kind: str) -> pd.DataFrame:
        all_ = _all_trials(sweeps, kind)
        return rows.trials(all_, drop_failed(all_)) if not all_.empty else all_

    for kind, name, fn in (
        ("data_fraction", "data_fraction_match", derived.data_fraction_match),
        ("expressivity", "expressivity_effects", derived.expressivity_effects),
        ("memorization", "memorization_effects", derived.memorization_effects),
    ):
        if kind in kinds:
            f[name] = fn(trials(kind), spec)
    if "learning_speed" in kinds:
        t = _all_trials(sweeps, "learning_speed")
        ep = rows.epochs(combine(sweeps, "learning_speed", "epochs"), t)
        f["learning_speed_match"] = derived.learning_speed_match(ep, trials("learning_speed"), spec)
    for kind in ("robustness", "transfer"):
        if kind not in kinds:
            continue
        ev = add_arm(rows.evals(_usable(sweeps, kind, "evals"), _all_trials(sweeps, kind)))
        if kind == "robustness":
            f["pgd_effects"] = derived.pgd_effects(ev, spec)
            f["pixle_effects"] = derived.pixle_effects(ev, spec)
        else:
            f["transfer_effects"] = derived.transfer_effects(ev, spec)
    return f


def failures_counted(sweeps: list[SweepData], kinds: frozenset[str], spec: BootstrapSpec):
    """The comparison frames behind the claims, with failed trials at chance accuracy."""
    return claim_frames(sweeps, kinds, spec, AT_CHANCE)


def chance_table(sweeps: list[SweepData], kinds: frozenset[str]) -> pd.DataFrame:
    """Usable trials that ended at chance accuracy, of every kind, with a `kind` column."""
    parts = []
    for kind in sorted(kinds):
        t = _usable_trials(sweeps, kind)
        if not t.empty:
            parts.append(chance_trials(t).assign(kind=kind))
    parts = [p for p in parts if not p.empty]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def compute_report(sweeps: list[SweepData], spec: BootstrapSpec) -> Report:
    """Every derived result of DESIGN section 6 for the sweeps present.

    Args:
        sweeps: loaded sweeps (any subset of kinds; several sweeps of one kind are pooled).
        spec: bootstrap settings.

    Returns:
        Report whose `frames` hold, for each kind present, its curves and comparisons
        (names as in derived.py / toy.py).
    """
    kinds = frozenset(s.kind for s in sweeps if s.kind)
    f: dict[str, pd.DataFrame] = {}
    empty = pd.DataFrame()

    def trials_of(kind: str) -> pd.DataFrame:
        return _usable_trials(sweeps, kind)

    if "toy2d" in kinds:
        t = trials_of("toy2d")
        f["toy_boundaries"] = toy.toy_boundaries(_usable(sweeps, "toy2d", "boundaries"))
        f["toy_panels"] = toy.toy_panels(f["toy_boundaries"])
        f["toy_accuracy"] = toy.toy_accuracy(t, spec) if not t.empty else empty
        f["toy_seeds"] = seeds.toy_seeds(t) if not t.empty else empty
    if "data_fraction" in kinds:
        t = trials_of("data_fraction")
        f["data_fraction_curves"] = derived.data_fraction_curves(t, spec)
        f["data_fraction_match"] = derived.data_fraction_match(t, spec)
        f["data_fraction_seeds"] = seeds.data_fraction_seeds(t)
    if "robustness" in kinds:
        ev = add_arm(_usable(sweeps, "robustness", "evals"))
        f["pgd_curves"] = derived.pgd_curves(ev, spec)
        f["pgd_effects"] = derived.pgd_effects(ev, spec)
        f["pixle_bars"] = derived.pixle_bars(ev, spec)
        f["pixle_effects"] = derived.pixle_effects(ev, spec)
        f["pgd_seeds"] = seeds.pgd_seeds(ev, trials_of("robustness"))
        f["pixle_seeds"] = seeds.pixle_seeds(ev, trials_of("robustness"))
    if "expressivity" in kinds:
        t = trials_of("expressivity")
        f["expressivity_curves"] = derived.expressivity_curves(t, spec)
        f["expressivity_effects"] = derived.expressivity_effects(t, spec)
        f["expressivity_seeds"] = seeds.expressivity_seeds(t)
    if "learning_speed" in kinds:
        ep = combine(sweeps, "learning_speed", "epochs")
        t = trials_of("learning_speed")
        f["learning_curves"] = derived.learning_curves(ep, t, spec)
        f["learning_speed_match"] = derived.learning_speed_match(ep, t, spec)
        f["learning_seeds"] = seeds.learning_seeds(ep, t)
    if "memorization" in kinds:
        t = trials_of("memorization")
        f["memorization_curves"] = derived.memorization_curves(t, spec)
        f["memorization_gaps"] = derived.memorization_gaps(t, spec)
        f["memorization_effects"] = derived.memorization_effects(t, spec)
        f["memorization_seeds"] = seeds.memorization_seeds(t)
    if "transfer" in kinds:
        ev = add_arm(_usable(sweeps, "transfer", "evals"))
        f["transfer_curves"] = derived.transfer_curves(ev, spec)
        f["transfer_effects"] = derived.transfer_effects(ev, spec)
        f["transfer_seeds"] = seeds.transfer_seeds(ev, trials_of("transfer"))
    if "search" in kinds:
        f["search_best"] = derived.search_best(trials_of("search"), spec)
    warnings = tuple(w for s in sweeps for w in s.warnings)
    counted = failures_counted(sweeps, kinds, spec)
    chance = chance_table(sweeps, kinds)
    without = claim_frames(sweeps, kinds, spec, WITHOUT_CHANCE) if not chance.empty else {}
    sensitivity = Sensitivity(counted, without, chance)
    return Report(
        spec=spec,
        kinds=kinds,
        status=status_table(sweeps),
        claims=claims_table(f, set(kinds), spec.level, sensitivity, spec.bootstrap_min_seeds),
        frames=f,
        counted=counted,
        chance=chance,
        warnings=warnings,
    )
