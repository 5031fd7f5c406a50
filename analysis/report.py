"""All numbers of the dashboard, computed from loaded sweeps (no drawing here)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from analysis import derived, toy
from analysis.claims import claims_table
from analysis.failures import epochs_at_chance, evals_at_chance, trials_at_chance
from analysis.load import SweepData
from analysis.stats import BootstrapSpec
from analysis.status import status_table
from analysis.tidy import add_arm, drop_failed, trial_table

__all__ = ["Report", "combine", "compute_report"]


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


def failures_counted(sweeps: list[SweepData], kinds: frozenset[str], spec: BootstrapSpec):
    """The comparison frames behind the claims, with failed trials at chance accuracy.

    Returns:
        Frames named as in `compute_report` (data_fraction_match, pgd_effects, ...), computed
        from `failures.trials_at_chance` / `evals_at_chance` / `epochs_at_chance` rows.
    """
    f: dict[str, pd.DataFrame] = {}
    if "data_fraction" in kinds:
        t = trials_at_chance(_all_trials(sweeps, "data_fraction"))
        f["data_fraction_match"] = derived.data_fraction_match(t, spec)
    if "expressivity" in kinds:
        t = trials_at_chance(_all_trials(sweeps, "expressivity"))
        f["expressivity_effects"] = derived.expressivity_effects(t, spec)
    if "memorization" in kinds:
        t = trials_at_chance(_all_trials(sweeps, "memorization"))
        f["memorization_effects"] = derived.memorization_effects(t, spec)
    if "learning_speed" in kinds:
        t = _all_trials(sweeps, "learning_speed")
        ep = epochs_at_chance(combine(sweeps, "learning_speed", "epochs"), t)
        f["learning_speed_match"] = derived.learning_speed_match(ep, t, spec)
    for kind in ("robustness", "transfer"):
        if kind not in kinds:
            continue
        ev = add_arm(evals_at_chance(_usable(sweeps, kind, "evals"), _all_trials(sweeps, kind)))
        if kind == "robustness":
            f["pgd_effects"] = derived.pgd_effects(ev, spec)
            f["pixle_effects"] = derived.pixle_effects(ev, spec)
        else:
            f["transfer_effects"] = derived.transfer_effects(ev, spec)
    return f


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
    if "data_fraction" in kinds:
        t = trials_of("data_fraction")
        f["data_fraction_curves"] = derived.data_fraction_curves(t, spec)
        f["data_fraction_match"] = derived.data_fraction_match(t, spec)
    if "robustness" in kinds:
        ev = add_arm(_usable(sweeps, "robustness", "evals"))
        f["pgd_curves"] = derived.pgd_curves(ev, spec)
        f["pgd_effects"] = derived.pgd_effects(ev, spec)
        f["pixle_bars"] = derived.pixle_bars(ev, spec)
        f["pixle_effects"] = derived.pixle_effects(ev, spec)
    if "expressivity" in kinds:
        t = trials_of("expressivity")
        f["expressivity_curves"] = derived.expressivity_curves(t, spec)
        f["expressivity_effects"] = derived.expressivity_effects(t, spec)
    if "learning_speed" in kinds:
        ep = combine(sweeps, "learning_speed", "epochs")
        t = trials_of("learning_speed")
        f["learning_curves"] = derived.learning_curves(ep, t, spec)
        f["learning_speed_match"] = derived.learning_speed_match(ep, t, spec)
    if "memorization" in kinds:
        t = trials_of("memorization")
        f["memorization_curves"] = derived.memorization_curves(t, spec)
        f["memorization_gaps"] = derived.memorization_gaps(t, spec)
        f["memorization_effects"] = derived.memorization_effects(t, spec)
    if "transfer" in kinds:
        ev = add_arm(_usable(sweeps, "transfer", "evals"))
        f["transfer_curves"] = derived.transfer_curves(ev, spec)
        f["transfer_effects"] = derived.transfer_effects(ev, spec)
    if "search" in kinds:
        f["search_best"] = derived.search_best(trials_of("search"), spec)
    warnings = tuple(w for s in sweeps for w in s.warnings)
    counted = failures_counted(sweeps, kinds, spec)
    return Report(
        spec=spec,
        kinds=kinds,
        status=status_table(sweeps),
        claims=claims_table(f, set(kinds), spec.level, counted, spec.bootstrap_min_seeds),
        frames=f,
        counted=counted,
        warnings=warnings,
    )
