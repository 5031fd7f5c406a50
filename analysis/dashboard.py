"""One self-contained HTML page: claims table, sweep status, then the paper's figures.

plotly.js is inlined once in the page head; the figures only call it, so the file works offline.
A small script first in the head records JavaScript errors (window errors, unhandled rejections,
console.error) into the element #js-errors, which becomes visible when it is not empty.
"""

from __future__ import annotations

import datetime as dt
import html
from pathlib import Path

import pandas as pd
import plotly.io as pio
import plotly.offline as po

from analysis.claims import CLAIMS, TARGET_UNITS, rule_text
from analysis.claims_view import NONE, VERDICT_CLASS, ClaimCells, claim_cells
from analysis.failures import CHANCE_MARGIN
from analysis.figures import FIGURES, FigureSpec
from analysis.multiplicity import family_wise_text
from analysis.power import POWER
from analysis.report import Report
from analysis.status import partial_notes
from ibnn.results.errors import write_text_atomic

__all__ = ["ERROR_RECORDER", "render_dashboard", "write_dashboard", "figure_divs"]

ERROR_RECORDER = """
window.__jsErrors = [];
(function () {
  var errs = window.__jsErrors;
  function show() {
    var el = document.getElementById("js-errors");
    if (el) { el.textContent = JSON.stringify(errs); el.hidden = !errs.length; }
  }
  function rec(m) { errs.push(String(m)); show(); }
  window.addEventListener("error", function (e) { rec("error: " + (e.message || e)); });
  window.addEventListener("unhandledrejection", function (e) {
    rec("unhandledrejection: " + e.reason);
  });
  var ce = console.error;
  console.error = function () {
    rec("console.error: " + Array.prototype.join.call(arguments, " "));
    ce.apply(console, arguments);
  };
  document.addEventListener("DOMContentLoaded", show);
})();
"""

_CSS = """
body { font-family: system-ui, sans-serif; margin: 1rem auto; padding: 0 1rem; max-width: 1400px;
       color: #222; box-sizing: border-box; }
h1 { font-size: 1.5rem; margin: 0 0 0.25rem; } h2 { margin: 1.25rem 0 0.5rem; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; font-size: 0.85rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.num { text-align: right; white-space: nowrap; }
#claims { width: 100%; line-height: 1.25; }
#claims th { font-size: 0.8rem; font-weight: 600; }
#claims td { white-space: nowrap; }
#claims td.claim { white-space: normal; width: 100%; }
#claims summary { cursor: pointer; }
#claims summary b { font-weight: 600; }
#claims .cond, #claims .sub { display: block; font-size: 0.75rem; color: #555; }
#claims .cond { margin-left: 1rem; }
#claims dl { display: grid; grid-template-columns: max-content 1fr; gap: 0.1rem 0.75rem;
             margin: 0.4rem 0 0.2rem 1rem; font-size: 0.8rem; white-space: normal; }
#claims dt { font-weight: 600; color: #444; } #claims dd { margin: 0; }
.badge { display: inline-block; padding: 0.05rem 0.45rem; border-radius: 0.7rem;
         font-weight: 600; font-size: 0.8rem; }
.supported { background: #d9f2d9; color: #1d5e1d; }
.not-supported { background: #f8d7d7; color: #8a1f1f; }
.inconclusive { background: #fff3cd; color: #6b5200; } .no-data { background: #eee; color: #666; }
.partial { font-size: 0.7rem; color: #8a4b00; }
.flag { color: #a00; font-weight: bold; }
.small { font-size: 0.75rem; color: #555; }
.missing { color: #8a4b00; } .warn { color: #a00; }
#js-errors { color: #fff; background: #a00; padding: 0.5rem; }
section { margin-top: 2rem; }
"""


def _e(x: object) -> str:
    return html.escape(str(x))


def _badge(verdict: str) -> str:
    cls = VERDICT_CLASS.get(verdict, "inconclusive")
    return f"<span class='badge {cls}'>{_e(verdict)}</span>"


def _sub(text: str) -> str:
    """Small second line of a cell; nothing for an empty value."""
    return "" if text == NONE else f"<span class='sub'>{_e(text)}</span>"


def _claim_row(c: ClaimCells, partial: list[str]) -> str:
    """One claim: a short row; its method, rule, power and sensitivities open on a click."""
    flag = (
        f" <span class='partial' title='{_e('; '.join(partial))}'>partial data</span>"
        if partial
        else ""
    )
    details = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in c.details)
    return (
        "<tr>"
        f"<td class='claim'><details><summary><b>{_e(c.claim)}</b>"
        f"<span class='cond'>{_e(c.condition)}</span></summary><dl>{details}</dl></details></td>"
        f"<td>{_e(c.figure)}</td><td>{_badge(c.verdict)}{flag}</td>"
        f"<td class='num'>{_e(c.effect)}{_sub(c.interval)}</td>"
        f"<td class='seeds'>{_e(c.seeds)}</td>"
        f"<td>{_badge(c.verdict_holm)}{_sub(f'p {c.p}' if c.p != NONE else NONE)}</td>"
        "</tr>"
    )


def _claims_html(claims: pd.DataFrame, level: float, status: pd.DataFrame) -> str:
    lvl = f"{100 * level:g}%"
    head = (
        "<thead><tr><th>Claim (click for method, rule, power, sensitivity)</th><th>Figure</th>"
        f"<th>Verdict</th><th>Effect ({lvl} interval)</th><th>Seeds per arm</th>"
        "<th>After Holm (p → adjusted p)</th></tr></thead>"
    )
    rows = [
        _claim_row(c, partial_notes(status, c.kind) if c.verdict != "no data" else [])
        for c in claim_cells(claims)
    ]
    return f"<table id='claims'>{head}<tbody>{''.join(rows)}</tbody></table>"


def _rules_html(level: float) -> str:
    """Each distinct verdict rule once, with the claims it applies to."""
    by_rule: dict[str, list[str]] = {}
    for c in CLAIMS:
        by_rule.setdefault(rule_text(c, level), []).append(c.name)
    items = "".join(
        f"<li>{_e(rule[0].upper() + rule[1:])} ({_e(', '.join(names))}).</li>"
        for rule, names in by_rule.items()
    )
    return f"<ul class='small' id='rules'>{items}</ul>"


def _claims_notes(report: Report) -> str:
    """Once, below the claims table: rules, statistics, family-wise error, power, failures."""
    claims, level = report.claims, report.spec.level
    m = int(claims["p_holm"].notna().sum()) if "p_holm" in claims else 0
    return (
        "<div id='claims-notes'><h3>How to read the claims</h3>"
        "<p class='small'>Effect: positive favours IBNN, in the unit shown; the interval is the "
        f"{100 * level:g}% confidence interval. Verdict rules:</p>{_rules_html(level)}"
        f"<p class='small' id='methods'>Statistics: {_e(report.spec.describe())} Each trial's "
        "accuracy is taken at its selected epoch (validation-based model selection); running "
        "trials count with their numbers so far.</p>"
        f"<p class='small' id='family-wise'>{_e(family_wise_text(m, level))}</p>"
        "<p class='small' id='power-note'>Power: the smallest effect detectable with "
        f"{100 * POWER:g}% power by a two-sided test at {100 * (1 - level):g}%, by the normal "
        "approximation with the noise SD estimated from these seeds (SD of the per-seed "
        "differences, or the bootstrap SD) and the rank test's efficiency 3/π; seeds per arm to "
        f"detect {TARGET_UNITS:g} displayed unit (1 pp, 1% of the training set, 1 epoch) "
        "assume the SD stays as estimated. “none (too few seeds)”: no interval, so no "
        "verdict, is possible at these seed counts.</p>"
        "<p class='small' id='failures-note'>Failed trials (failed, diverged, solver_failed) "
        "are left out of every statistic; each claim's details recompute the effect with them "
        "counted at chance accuracy (1/number of classes: 10% for fmnist, svhn, cifar10; 50% "
        "for toy2d) and say whether the verdict changes. Trials that finished at chance "
        f"accuracy (within {100 * CHANCE_MARGIN:g} pp of it) are results and stay in; the "
        "details count them per arm and say whether the verdict changes without them; the "
        "figures mark them.</p>"
        "<p class='small'>“partial data”: a sweep behind the claim is still running, misses "
        "trials, had failed trials or unreadable files (see Sweeps).</p></div>"
    )


def _status_html(status: pd.DataFrame) -> str:
    head = (
        "<tr><th>Sweep</th><th>Experiment</th><th>Started</th><th>Finished</th>"
        "<th>Expected</th><th>Found</th><th>ok</th><th>Running</th><th>Failed</th>"
        "<th>Files</th><th>What is missing / notes</th></tr>"
    )
    rows = []
    for _, r in status.iterrows():
        notes = "".join(f"<li>{_e(n)}</li>" for n in r["notes"])
        exp = "?" if pd.isna(r["expected"]) else int(r["expected"])
        rows.append(
            f"<tr><td>{_e(r['sweep'])}</td><td>{_e(r['kind'] or '—')}</td>"
            f"<td>{_e(r['started'] or '?')}</td><td>{_e(r['finished'] or 'not finished')}</td>"
            f"<td class='num'>{exp}</td><td class='num'>{r['found']}</td>"
            f"<td class='num'>{r['ok']}</td><td class='num'>{r['running']}</td>"
            f"<td class='num'>{r['failed']}</td><td>{_e(r['files'])}</td>"
            f"<td><ul class='small'>{notes}</ul></td></tr>"
        )
    return f"<table id='sweeps'>{head}{''.join(rows)}</table>"


def _frame_html(df: pd.DataFrame, table_id: str) -> str:
    shown = df.copy()
    for col in ("median", "lo", "hi", "min", "max"):
        if col in shown:
            shown[col] = (100 * shown[col]).map(lambda v: f"{v:.2f}")
    for col, digits in (("wall_s", 1), ("solver_iters", 1)):
        if col in shown:
            shown[col] = shown[col].map(lambda v, d=digits: "" if pd.isna(v) else f"{v:.{d}f}")
    return shown.to_html(index=False, table_id=table_id, border=0, na_rep="")


def figure_divs(report: Report) -> list[tuple[FigureSpec, str | None, str]]:
    """(spec, figure HTML or None, note) for every figure of FIGURES.

    The note says why a figure is missing ("no data: ...") or what its statistics are.
    """
    out = []
    for spec in FIGURES:
        frames = [report.frames.get(name, pd.DataFrame()) for name in spec.frames]
        if spec.kind not in report.kinds:
            out.append((spec, None, f"no data: no {spec.kind} sweep found"))
            continue
        if frames[0].empty:
            out.append((spec, None, f"no data: the {spec.kind} sweep has no usable rows yet"))
            continue
        fig = spec.draw(*frames)
        div = pio.to_html(
            fig,
            full_html=False,
            include_plotlyjs=False,
            div_id=f"plot-{spec.key}",
            config={"displaylogo": False, "responsive": True},
        )
        out.append((spec, div, ""))
    return out


def render_dashboard(report: Report, storage: str) -> str:
    """The whole page as an HTML string."""
    when = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<title>IBNN vs SM: results dashboard</title>",
        f"<script>{ERROR_RECORDER}</script>",
        f"<script type='text/javascript'>{po.get_plotlyjs()}</script>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>Implicit-bias neurons (IBNN) vs the standard model (SM)</h1>",
        "<pre id='js-errors' hidden>[]</pre>",
        f"<p class='small'>Results read from <code>{_e(storage)}</code> at {when}; methods and "
        "rules below the table.</p>",
        "<h2>Claims of the paper</h2>",
        _claims_html(report.claims, report.spec.level, report.status),
        _claims_notes(report),
        "<h2>Sweeps</h2>",
        _status_html(report.status) if not report.status.empty else "<p>No sweeps found.</p>",
    ]
    if report.warnings:
        items = "".join(f"<li>{_e(w)}</li>" for w in report.warnings)
        parts.append(f"<div class='warn'><b>Warnings</b><ul id='warnings'>{items}</ul></div>")
    for spec, div, note in figure_divs(report):
        parts.append(f"<section id='{spec.key}'><h2>{_e(spec.title)}</h2>")
        parts.append(f"<p class='small'>{_e(spec.caption)}</p>")
        partial = partial_notes(report.status, spec.kind)
        if partial and div is not None:
            items = "".join(f"<li>{_e(n)}</li>" for n in partial)
            parts.append(f"<div class='missing'>Partial data:<ul class='small'>{items}</ul></div>")
        parts.append(div if div is not None else f"<p class='missing'>{_e(note)}</p>")
        parts.append("</section>")
    best = report.frames.get("search_best")
    if best is not None and not best.empty:
        parts.append("<section id='search'><h2>Search · best configurations</h2>")
        parts.append(
            "<p class='small'>Top arms per dataset by median validation accuracy at the "
            "selected epoch (%), with CI, next to their cost: median wall time per trial "
            "(wall_s, seconds) and solver iterations per epoch (solver_iters). Trials the "
            "search stopped early (pruned) are left out.</p>"
        )
        parts.append(_frame_html(best, "search-best"))
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_dashboard(report: Report, out: str | Path, storage: str) -> Path:
    """Write the page to `out` (folders created; atomically: an interrupted write keeps the
    earlier page) and return its absolute path."""
    return write_text_atomic(Path(out), render_dashboard(report, storage))
