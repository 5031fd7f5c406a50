"""The claims table as text: one set of display strings per row, shared by the page and Markdown.

`claim_cells` turns each row of `claims.claims_table` into the strings a reader sees: the
short row (claim, condition, figure, verdict, effect with its interval, seeds per arm, the
verdict after Holm) and the details that open on demand (measure, method, rule, power, failed
trials, trials at chance). The dashboard and `analysis.markdown` both format from here, so the
two always show the same numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from analysis.claims import TARGET_UNITS
from analysis.power import POWER

__all__ = [
    "NONE",
    "ClaimCells",
    "claim_cells",
    "signed",
    "interval_text",
    "p_text",
    "VERDICT_CLASS",
]

NONE = "—"  # a cell without a value (a claim without data)
# CSS class of each verdict's badge (anything else, the "inconclusive" ones, is "inconclusive").
VERDICT_CLASS: dict[str, str] = {
    "supported": "supported",
    "not supported": "not-supported",
    "no data": "no-data",
}


@dataclass(frozen=True)
class ClaimCells:
    """One claims row as displayed."""

    claim: str  # the claim
    kind: str  # its sweep kind (for the partial-data flag)
    condition: str  # "fmnist, UCN(1, 3) · IBNN (λ=-1, p=10) vs SM", or why there are no data
    figure: str  # "Fig. 3"
    verdict: str  # the verdict (claims.VERDICTS)
    effect: str  # "+5.00 pp", or "—"
    interval: str  # "[+4.80, +5.20]", "none (too few seeds)" or "—"
    seeds: str  # "SM 10 · IBNN 5 (5 paired)", or "—"
    verdict_holm: str  # the verdict after Holm's adjustment
    p: str  # "0.004 → 0.031" (p, Holm-adjusted p), or "—"
    details: tuple[tuple[str, str], ...]  # (label, text) shown on demand


def signed(x: float, digits: int = 2) -> str:
    """A signed number; "n/a" for NaN; "never" for +inf."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if math.isinf(x):
        return "never" if x > 0 else "−∞ (never reached)"
    return f"{x:+.{digits}f}"


def interval_text(lo: float, hi: float) -> str:
    if math.isnan(lo) or math.isnan(hi):
        return "none (too few seeds)"
    return f"[{signed(lo)}, {signed(hi)}]"


def p_text(x: float) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{x:.3f}"


def _with_unit(x: float, unit: str) -> str:
    text = signed(x)
    return f"{text} {unit}" if math.isfinite(x) else text


def _sentence(note: str) -> str:
    return note[:1].upper() + note[1:] + "."


def _failed_text(r: pd.Series) -> str:
    if not r["n_failed"]:
        return "none failed"
    effect = _with_unit(r["effect_failed"], r["unit"])
    ci = interval_text(r["lo_failed"], r["hi_failed"])
    text = f"{int(r['n_failed'])} failed trials counted at chance accuracy: {effect} {ci}, "
    text += r["verdict_failed"]
    return (
        f"{text}. {_sentence(r['sensitivity'])}"
        if r["sensitivity"]
        else f"{text} (verdict unchanged)"
    )


def _chance_text(r: pd.Series) -> str:
    n_sm, n_ib = int(r["n_chance_sm"]), int(r["n_chance_ibnn"])
    counts = f"SM {n_sm}, IBNN {n_ib} (kept in the statistic)"
    if n_sm + n_ib == 0:
        return "SM 0, IBNN 0"
    if r["chance_sensitivity"]:
        return f"{counts}. {_sentence(r['chance_sensitivity'])}"
    return f"{counts}; without them: {r['verdict_nochance']} (verdict unchanged)"


def _power_text(r: pd.Series) -> str:
    mde = "none (too few seeds)" if math.isinf(r["mde"]) else f"{r['mde']:.3g} {r['unit']}"
    need = "n/a" if math.isnan(r["seeds_needed"]) else f"{int(r['seeds_needed'])}"
    return (
        f"smallest effect detectable with {100 * POWER:g}% power: {mde}; seeds per arm to detect "
        f"{TARGET_UNITS:g} {r['unit']}: {need}"
    )


def _details(r: pd.Series) -> tuple[tuple[str, str], ...]:
    if r["verdict"] == "no data":
        return (("Measured as", r["measure"]), ("Rule", r["rule"]))
    cov = "" if math.isnan(r["coverage"]) else f" (exact coverage {100 * r['coverage']:.1f}%)"
    out = [
        ("Measured as", r["measure"]),
        ("Method", f"{r['method']}{cov}"),
        ("p · Holm-adjusted p", f"{p_text(r['p'])} · {p_text(r['p_holm'])}"),
        ("Rule", r["rule"]),
        ("Power", _power_text(r)),
        ("Failed trials", _failed_text(r)),
        ("Trials at chance accuracy", _chance_text(r)),
    ]
    if r["details"]:
        out.append(("Also", r["details"]))
    return tuple(out)


def _seeds_text(r: pd.Series) -> str:
    return f"SM {int(r['n_sm'])} · IBNN {int(r['n_ibnn'])} ({int(r['n_shared'])} paired)"


def _cells(r: pd.Series) -> ClaimCells:
    has = r["verdict"] != "no data"
    dash = NONE
    return ClaimCells(
        claim=r["claim"],
        kind=r["kind"],
        condition=f"{r['condition']} · {r['comparison']}" if has else r["details"],
        figure=r["figure"],
        verdict=r["verdict"],
        effect=_with_unit(r["effect"], r["unit"]) if has else dash,
        interval=interval_text(r["lo"], r["hi"]) if has else dash,
        seeds=_seeds_text(r) if has else dash,
        verdict_holm=r["verdict_holm"],
        p=f"{p_text(r['p'])} → {p_text(r['p_holm'])}" if has else dash,
        details=_details(r),
    )


def claim_cells(claims: pd.DataFrame) -> list[ClaimCells]:
    """Display strings of every row of `claims.claims_table`, in its order."""
    return [_cells(r) for _, r in claims.iterrows()]
