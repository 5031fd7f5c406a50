"""The claims table and each figure's medians and intervals as GitHub-flavoured Markdown.

`python -m analysis DIR --markdown FILE` (or `-` for standard output) writes this next to the
dashboard. It holds the same rows and numbers as the page's claims table (both format through
`analysis.claims_view`) and, per figure, the medians with their intervals behind the plotted
lines. Nothing in it depends on the time or the machine: the same results give the same bytes,
so it can be pasted into a README or an issue and compared with a later run.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from analysis.claims_view import ClaimCells, claim_cells
from analysis.figures import FIGURES, FigureSpec
from analysis.report import Report
from ibnn.results.errors import write_text_atomic

__all__ = [
    "markdown_table",
    "claims_markdown",
    "figure_markdown",
    "render_markdown",
    "write_markdown",
]

# The frame whose medians a figure's table lists, where it is not the figure's first frame.
_TABLE_FRAME = {"fig2": "toy_accuracy"}
# Columns of a curve frame that are statistics (the rest label the row).
_STATS = ("median", "lo", "hi", "n", "min", "max")
# Label columns shown in percent (fractions in the frames).
_PERCENT = ("train_fraction", "label_noise")


def _cell(x: object) -> str:
    return str(x).replace("|", "\\|").replace("\n", " ")


def markdown_table(header: list[str], rows: list[list[str]], right: set[int] = frozenset()) -> str:
    """A Markdown table; columns whose index is in `right` are right-aligned."""
    align = ["---:" if i in right else "---" for i in range(len(header))]
    lines = [header, align, *rows]
    return "\n".join("| " + " | ".join(_cell(c) for c in line) + " |" for line in lines)


def _claim_row(c: ClaimCells) -> list[str]:
    return [
        c.claim,
        c.condition,
        c.figure,
        c.verdict,
        c.effect,
        c.interval,
        c.seeds,
        c.verdict_holm,
        c.p,
    ]


def claims_markdown(claims: pd.DataFrame, level: float) -> str:
    """The page's claims rows and numbers, then any sensitivity that flips a verdict."""
    cells = claim_cells(claims)
    header = [
        "Claim",
        "Condition",
        "Figure",
        "Verdict",
        "Effect",
        f"{100 * level:g}% interval",
        "Seeds per arm",
        "After Holm",
        "p → Holm p",
    ]
    out = [markdown_table(header, [_claim_row(c) for c in cells], right={4, 5})]
    notes = []
    for c, (_, r) in zip(cells, claims.iterrows(), strict=True):
        for note in (r.get("sensitivity", ""), r.get("chance_sensitivity", "")):
            if isinstance(note, str) and note:
                notes.append(f"- {c.claim} ({c.condition}): {note}.")
    if notes:
        out.append("Sensitivity (the verdict above stands; this is what would change it):\n")
        out.append("\n".join(notes))
    return "\n\n".join(out)


def _label(col: str, v: object) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if col in _PERCENT:
        return f"{100 * float(v):g}%"
    if col == "n_params":
        return f"{float(v):.0f}"
    return f"{v:g}" if isinstance(v, float) else str(v)


def _pct(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{100 * x:.2f}"


def figure_markdown(spec: FigureSpec, frame: pd.DataFrame, level: float) -> str:
    """Median (%) and its interval per plotted point of one figure."""
    labels = [c for c in frame.columns if c not in _STATS and c != "family"]
    rows = []
    for _, r in frame.iterrows():
        interval = (
            "none (too few seeds)"
            if math.isnan(r["lo"])
            else (f"[{_pct(r['lo'])}, {_pct(r['hi'])}]")
        )
        rows.append([*(_label(c, r[c]) for c in labels), _pct(r["median"]), interval, str(r["n"])])
    header = [*labels, "median (%)", f"{100 * level:g}% interval (%)", "seeds"]
    n = len(labels)
    return markdown_table(header, rows, right={n, n + 1, n + 2})


def _figure_section(report: Report, spec: FigureSpec) -> str:
    name = _TABLE_FRAME.get(spec.key, spec.frames[0])
    frame = report.frames.get(name, pd.DataFrame())
    title = f"### {spec.title}"
    if spec.kind not in report.kinds:
        return f"{title}\n\nNo data: no {spec.kind} sweep found."
    if frame.empty or "median" not in frame.columns:
        return f"{title}\n\nNo data: the {spec.kind} sweep has no usable rows yet."
    return f"{title}\n\n{figure_markdown(spec, frame, report.spec.level)}"


def render_markdown(report: Report) -> str:
    """The whole Markdown text: claims, then one table per figure."""
    level = report.spec.level
    parts = [
        "## Claims of the paper",
        "Effect: positive favours IBNN. Intervals: exact rank / order-statistic intervals, or "
        f"the percentile bootstrap for where a curve reaches another, at {100 * level:g}%.",
        claims_markdown(report.claims, level),
        "## Figures: medians over seeds and their intervals",
        *(_figure_section(report, spec) for spec in FIGURES),
    ]
    return "\n\n".join(parts) + "\n"


def write_markdown(report: Report, out: str) -> Path | None:
    """Write the Markdown to `out` (folders created), or to standard output when `out` is "-"."""
    text = render_markdown(report)
    if out == "-":
        print(text, end="")
        return None
    return write_text_atomic(Path(out), text)  # an interrupted write keeps the earlier file
