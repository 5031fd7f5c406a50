"""The paper's claims, the measured effect behind each, and a stated verdict rule."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.derived import TRANSFER_MARGIN
from analysis.multiplicity import holm
from analysis.power import effective_seeds, min_detectable, min_seeds, seeds_needed
from analysis.stats import BootstrapSpec
from analysis.tidy import CONDITION_KEYS, present

__all__ = [
    "VERDICTS",
    "TOO_FEW",
    "ClaimSpec",
    "CLAIMS",
    "verdict",
    "rule_text",
    "condition_label",
    "claims_table",
    "Sensitivity",
]

TOO_FEW = "inconclusive (too few seeds)"
VERDICTS: tuple[str, ...] = ("supported", "not supported", "inconclusive", TOO_FEW, "no data")


@dataclass(frozen=True)
class ClaimSpec:
    """One claim of the paper and where its evidence lives."""

    name: str  # the claim, as the dashboard lists it
    figure: str  # the paper's figure
    kind: str  # sweep kind that holds the evidence (load.KINDS)
    source: str  # name of the comparison frame (a key of the frames given to claims_table)
    statistic: str  # the statistic of that frame that is the effect
    effect: str  # what the effect measures (positive favours IBNN)
    unit: str  # unit of the displayed effect
    scale: float = 100.0  # displayed = stored value * scale
    where: tuple[tuple[str, str], ...] = ()  # extra (column, value) filters on the frame
    margin: float | None = None  # non-inferiority margin in stored units; None: superiority


CLAIMS: tuple[ClaimSpec, ...] = (
    ClaimSpec(
        "less training data", "Fig. 3", "data_fraction", "data_fraction_match",
        "fraction_saved",
        "training fraction at which SM has its best median test accuracy minus the fraction "
        "at which IBNN's median first reaches it", "% of training set",
    ),
    ClaimSpec(
        "robustness to PGD (surrogate, paper's protocol)", "Fig. 4", "robustness", "pgd_effects",
        "mean_gap", "IBNN - SM median accuracy under PGD on the SM surrogate, mean over eps > 0",
        "pp", where=(("attack", "pgd_surrogate"),),
    ),
    ClaimSpec(
        "robustness to PGD (white-box through the implicit gradient)", "Fig. 4", "robustness",
        "pgd_effects", "mean_gap",
        "IBNN - SM median accuracy under white-box PGD, mean over eps > 0", "pp",
        where=(("attack", "pgd_whitebox"),),
    ),
    ClaimSpec(
        "robustness to Pixle", "Fig. 5", "robustness", "pixle_effects", "gap",
        "IBNN - SM median accuracy under Pixle", "pp",
    ),
    ClaimSpec(
        "expressivity", "Fig. 6", "expressivity", "expressivity_effects", "mean_gap",
        "IBNN - SM median test accuracy at equal parameter count, mean over widths C", "pp",
    ),
    ClaimSpec(
        "faster learning", "Fig. 7", "learning_speed", "learning_speed_match", "epochs_saved",
        "epoch of SM's best 3-epoch running-average median test accuracy minus the first epoch "
        "at which IBNN's reaches it", "epochs", scale=1.0,
    ),
    ClaimSpec(
        "less memorization", "Fig. 8", "memorization", "memorization_effects", "noise_gain",
        "IBNN - SM gap in median best validation accuracy, mean over label noise > 0, minus "
        "the gap without label noise", "pp",
    ),
    ClaimSpec(
        "transfer keeps accuracy", "Supp.", "transfer", "transfer_effects", "clean_gap",
        "clean accuracy of SM weights run as IBNN minus SM's own (non-inferiority, margin 1 pp)",
        "pp", margin=TRANSFER_MARGIN,
    ),
    ClaimSpec(
        "transfer adds robustness", "Supp.", "transfer", "transfer_effects", "pgd_gap",
        "accuracy under PGD (SM surrogate) of SM weights run as IBNN minus SM's, mean over "
        "eps > 0", "pp",
    ),
)  # fmt: skip

# How the other statistics of a comparison are shown next to the effect: label, scale, unit.
_DETAILS: dict[str, tuple[str, float, str]] = {
    "sm_best": ("SM best", 100.0, "%"),
    "sm_best_fraction": ("at training fraction", 100.0, "%"),
    "fraction": ("IBNN reaches it at fraction", 100.0, "%"),
    "sm_best_epoch": ("at epoch", 1.0, ""),
    "match_epoch": ("IBNN reaches it at epoch", 1.0, ""),
}


def verdict(lo: float, hi: float, n_sm: int, n_ibnn: int, margin: float | None = None) -> str:
    """Verdict from an effect's confidence interval (positive favours IBNN).

    Superiority (margin None): "supported" if lo > 0, "not supported" if hi <= 0. Non-inferiority
    (margin m > 0): "supported" if lo > -m, "not supported" if hi < -m. Otherwise
    "inconclusive"; when either arm has fewer than 2 seeds or no interval reaches the level at
    these seed counts (NaN): "inconclusive (too few seeds)".
    """
    if n_sm < 2 or n_ibnn < 2 or math.isnan(lo) or math.isnan(hi):
        return TOO_FEW
    if margin is None:
        return "supported" if lo > 0 else "not supported" if hi <= 0 else "inconclusive"
    return "supported" if lo > -margin else "not supported" if hi < -margin else "inconclusive"


def rule_text(claim: ClaimSpec, level: float) -> str:
    """The verdict rule of `claim`, in words."""
    ci = f"whole {100 * level:g}% CI"
    if claim.margin is None:
        core = f"supported if the {ci} > 0; not supported if the {ci} ≤ 0"
    else:
        m = f"-{claim.margin * claim.scale:g} {claim.unit}"
        core = f"non-inferiority: supported if the {ci} > {m}; not supported if the {ci} < {m}"
    return f"{core}; else inconclusive (no interval at these seed counts: too few seeds)"


def condition_label(row: pd.Series) -> str:
    """Short description of a comparison's condition (dataset, UCN(L, C), fraction, noise)."""
    parts = []
    if "dataset" in row and pd.notna(row["dataset"]):
        parts.append(str(row["dataset"]))
    if "L" in row and pd.notna(row["L"]):
        c = f"{int(row['C'])}" if "C" in row and pd.notna(row["C"]) else "C"
        parts.append(f"UCN({int(row['L'])}, {c})")
    if "train_fraction" in row and pd.notna(row["train_fraction"]) and row["train_fraction"] < 1:
        parts.append(f"{100 * row['train_fraction']:g}% of training data")
    if "label_noise" in row and pd.notna(row["label_noise"]) and row["label_noise"] > 0:
        parts.append(f"{100 * row['label_noise']:g}% wrong labels")
    if "lam" in row and pd.notna(row["lam"]):
        parts.append(f"λ={row['lam']:g}")
    if "selection" in row and pd.notna(row["selection"]) and row["selection"] != "val":
        parts.append(f"{row['selection']} model selection")
    return ", ".join(parts)


def _fmt(x: float, scale: float, unit: str) -> str:
    if isinstance(x, float) and math.isnan(x):
        return "n/a"
    if math.isinf(x):
        return "never" if x > 0 else "-inf (never reached)"
    v = x * scale
    return f"{v:.3g}{unit}" if unit in ("%", "") else f"{v:.3g} {unit}"


def _same(frame: pd.DataFrame, row: pd.Series, keys: list[str]) -> pd.DataFrame:
    same = frame
    for k in keys:
        if k not in same.columns:
            return same.iloc[0:0]
        same = same[(same[k] == row[k]) | (same[k].isna() & pd.isna(row[k]))]
    return same


def _details(frame: pd.DataFrame, row: pd.Series, keys: list[str]) -> str:
    same = _same(frame, row, keys)
    out = []
    for _, r in same[same["statistic"].isin(list(_DETAILS))].iterrows():
        label, scale, unit = _DETAILS[r["statistic"]]
        text = f"{label} {_fmt(r['value'], scale, unit)}"
        if r["statistic"] in ("fraction", "match_epoch"):
            text += f" [{_fmt(r['lo'], scale, unit)}, {_fmt(r['hi'], scale, unit)}]"
        out.append(text)
    return "; ".join(out)


@dataclass(frozen=True, eq=False)
class Sensitivity:
    """What the claims' sensitivity columns are computed from (`report.compute_report`)."""

    counted: dict[str, pd.DataFrame]  # comparison frames with failed trials at chance accuracy
    without_chance: dict[str, pd.DataFrame]  # comparison frames without trials ended at chance
    chance: pd.DataFrame  # usable trials that ended at chance (`failures.at_chance`), with kind


_COLUMNS = [
    "claim",
    "kind",
    "figure",
    "condition",
    "comparison",
    "effect",
    "lo",
    "hi",
    "unit",
    "n",
    "n_sm",
    "n_ibnn",
    "n_shared",
    "verdict",
    "method",
    "coverage",
    "p",
    "p_holm",
    "verdict_holm",
    "effect_failed",
    "lo_failed",
    "hi_failed",
    "n_failed",
    "verdict_failed",
    "sensitivity",
    "n_chance_sm",
    "n_chance_ibnn",
    "verdict_nochance",
    "chance_sensitivity",
    "mde",
    "seeds_needed",
    "rule",
    "measure",
    "details",
]
# Target effect of the seeds_needed column: one displayed unit (1 pp, 1 % of the training set,
# 1 epoch).
TARGET_UNITS = 1.0


def claims_table(
    frames: dict[str, pd.DataFrame],
    kinds_present: set[str],
    level: float,
    sensitivity: Sensitivity | None = None,
    bootstrap_min_seeds: int = BootstrapSpec.bootstrap_min_seeds,
) -> pd.DataFrame:
    """One row per claim and comparison (condition x IBNN arm), effects in displayed units.

    Args:
        frames: comparison frames by name (see ClaimSpec.source), long format with columns
            statistic, value, lo, hi, n_sm, n_ibnn, n_shared, method, coverage, p, se, arm and
            condition keys (`compare.compare_arms`).
        kinds_present: sweep kinds found in the storage.
        level: confidence level of the intervals.
        sensitivity: the same frames with failed trials at chance accuracy and without the
            trials that ended at chance, and those trials; None: no sensitivity columns.
        bootstrap_min_seeds: fewest seeds per arm for a bootstrap interval (for power).

    Returns:
        Frame with columns claim, kind, figure, condition, comparison, effect, lo, hi (displayed
        units), unit, n (in words), n_sm, n_ibnn, n_shared, verdict, method, coverage, p
        (two-sided, of the rule's null value), p_holm (Holm-adjusted over every row with a
        p-value), verdict_holm, effect_failed, lo_failed, hi_failed, n_failed (failed trials
        counted at chance), verdict_failed, sensitivity (a sentence when the verdict changes),
        n_chance_sm, n_chance_ibnn (trials that ended at chance, per arm; they stay in the
        statistic), verdict_nochance (without them; "" when there are none), chance_sensitivity
        (a sentence when that verdict differs), mde (minimal detectable effect at POWER,
        displayed units; inf when no interval is possible), seeds_needed (seeds per arm to
        detect TARGET_UNITS), rule, measure, details; a claim without evidence gets one "no
        data" row saying why.
    """
    sens = sensitivity or Sensitivity({}, {}, pd.DataFrame())
    rows = []
    for c in CLAIMS:
        base = {
            "claim": c.name,
            "kind": c.kind,
            "figure": c.figure,
            "unit": c.unit,
            "rule": rule_text(c, level),
            "measure": c.effect,
        }
        frame = frames.get(c.source, pd.DataFrame())
        sel = frame[frame["statistic"] == c.statistic] if not frame.empty else frame
        for col, val in c.where:
            sel = sel[sel[col] == val] if not sel.empty else sel
        if c.kind not in kinds_present or sel.empty:
            why = (
                f"no {c.kind} sweep found"
                if c.kind not in kinds_present
                else "no condition with both an SM and an IBNN arm"
            )
            rows.append(
                {**base, "verdict": "no data", "details": why, "n": "0", "n_sm": 0, "n_ibnn": 0}
            )
            continue
        keys = [*present(sel, CONDITION_KEYS), "arm"]
        keys += [k for k in ("attack", "lam") if k in sel.columns and k not in keys]
        for _, r in sel.iterrows():
            row = _comparison_row(c, r, frame, keys, sens, (level, bootstrap_min_seeds))
            rows.append({**base, **row})
    out = pd.DataFrame(rows, columns=_COLUMNS)
    return _with_holm(out, level)


def _comparison_row(
    c: ClaimSpec,
    r: pd.Series,
    frame: pd.DataFrame,
    keys: list[str],
    sens: Sensitivity,
    settings: tuple[float, int],
) -> dict:
    """The displayed columns of one comparison row (settings: level, bootstrap minimum)."""
    level, bootstrap_min = settings
    v = verdict(r["lo"], r["hi"], r["n_sm"], r["n_ibnn"], c.margin)
    return {
        "condition": condition_label(r),
        "comparison": f"{r['arm']} vs SM",
        "effect": r["value"] * c.scale,
        "lo": r["lo"] * c.scale,
        "hi": r["hi"] * c.scale,
        "n": f"SM {r['n_sm']}, IBNN {r['n_ibnn']} ({r['n_shared']} paired)",
        "n_sm": int(r["n_sm"]),
        "n_ibnn": int(r["n_ibnn"]),
        "n_shared": int(r["n_shared"]),
        "verdict": v,
        "method": r["method"],
        "coverage": r["coverage"],
        "p": r["p"],
        "details": _details(frame, r, keys),
        **_power(r, c, level, bootstrap_min),
        **_failures(sens.counted.get(c.source), r, [*keys, "statistic"], c, v),
        **_chance(sens, r, keys, c, v),
    }


def _power(r: pd.Series, c: ClaimSpec, level: float, bootstrap_min: int) -> dict:
    """mde and seeds_needed of one comparison row, in displayed units."""
    n_min = min_seeds(r["method"], level, bootstrap_min)
    n_eff = effective_seeds(r["n_sm"], r["n_ibnn"], r["n_shared"], r["method"])
    mde = min_detectable(r["se"], level, r["method"])
    need = seeds_needed(mde, n_eff, TARGET_UNITS / c.scale, n_min)
    possible = not math.isnan(r["lo"])  # an interval exists at these seed counts
    return {"mde": mde * c.scale if possible else math.inf, "seeds_needed": need}


def _failures(
    frame: pd.DataFrame | None, r: pd.Series, keys: list[str], c: ClaimSpec, v: str
) -> dict:
    """The effect recomputed with failed trials at chance, its verdict and whether it changes."""
    nan = float("nan")
    out = {"effect_failed": nan, "lo_failed": nan, "hi_failed": nan, "n_failed": 0}
    same = _same(frame, r, keys) if frame is not None and not frame.empty else pd.DataFrame()
    if same.empty:
        return {**out, "verdict_failed": "", "sensitivity": ""}
    f = same.iloc[0]
    n_failed = int(f["n_sm"] - r["n_sm"] + f["n_ibnn"] - r["n_ibnn"])
    vf = verdict(f["lo"], f["hi"], f["n_sm"], f["n_ibnn"], c.margin)
    note = (
        f"verdict changes to “{vf}” when the {n_failed} failed trials count at chance"
        if vf != v
        else ""
    )
    return {
        "effect_failed": f["value"] * c.scale,
        "lo_failed": f["lo"] * c.scale,
        "hi_failed": f["hi"] * c.scale,
        "n_failed": n_failed,
        "verdict_failed": vf,
        "sensitivity": note,
    }


def _matching(frame: pd.DataFrame, row: pd.Series, keys: list[str]) -> pd.DataFrame:
    """Rows of `frame` equal to `row` on the keys `frame` has (NaN equal to NaN)."""
    out = frame
    for k in keys:
        if k in out.columns and k in row:
            out = out[(out[k] == row[k]) | (out[k].isna() & pd.isna(row[k]))]
    return out


def _chance(sens: Sensitivity, r: pd.Series, keys: list[str], c: ClaimSpec, v: str) -> dict:
    """Trials of this comparison that ended at chance, per arm, and the verdict without them."""
    out = {"n_chance_sm": 0, "n_chance_ibnn": 0, "verdict_nochance": "", "chance_sensitivity": ""}
    ch = sens.chance
    if ch.empty or "kind" not in ch.columns:
        return out
    ch = _matching(ch[ch["kind"] == c.kind], r, [k for k in keys if k != "arm"])
    n_sm = int((ch["family"] == "sm").sum()) if not ch.empty else 0
    n_ib = int((ch["arm"] == r["arm"]).sum()) if not ch.empty else 0
    out.update(n_chance_sm=n_sm, n_chance_ibnn=n_ib)
    frame = sens.without_chance.get(c.source)
    if n_sm + n_ib == 0 or frame is None or frame.empty:
        return out
    same = _same(frame, r, [*keys, "statistic"])
    if same.empty:
        return {**out, "verdict_nochance": TOO_FEW}
    f = same.iloc[0]
    vn = verdict(f["lo"], f["hi"], f["n_sm"], f["n_ibnn"], c.margin)
    note = (
        f"verdict changes to “{vn}” without the {n_sm + n_ib} trials at chance" if vn != v else ""
    )
    return {**out, "verdict_nochance": vn, "chance_sensitivity": note}


def _with_holm(table: pd.DataFrame, level: float) -> pd.DataFrame:
    """Add p_holm over every row that can reach a verdict and the verdict that survives it.

    Rows without an interval (too few seeds, no data) can reject nothing and are left out of
    the family.
    """
    out = table.copy()
    judged = ~out["verdict"].isin(("no data", TOO_FEW))
    out["p_holm"] = holm(out["p"].where(judged).to_numpy(dtype=float))
    keep = out["verdict"].isin(("supported", "not supported")) & (out["p_holm"] <= 1 - level)
    holm_v = np.where(keep, out["verdict"], "inconclusive")
    out["verdict_holm"] = np.where(
        out["verdict"].isin(("no data", TOO_FEW)), out["verdict"], holm_v
    )
    return out
