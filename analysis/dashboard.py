"""One self-contained HTML page: claims table, sweep status, then the paper's figures.

plotly.js is inlined once in the page head; the figures only call it, so the file works offline.
A small script first in the head records JavaScript errors (window errors, unhandled rejections,
console.error) into the element #js-errors, which becomes visible when it is not empty.
"""

from __future__ import annotations

import datetime as dt
import html
import math
from pathlib import Path

import pandas as pd
import plotly.io as pio
import plotly.offline as po

from analysis.claims import TARGET_UNITS
from analysis.figures import FIGURES, FigureSpec
from analysis.multiplicity import family_wise_text
from analysis.power import POWER
from analysis.report import Report
from analysis.status import partial_notes

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
body { font-family: system-ui, sans-serif; margin: 1.5rem auto; max-width: 1400px; color: #222; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; font-size: 0.85rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.num { text-align: right; white-space: nowrap; }
.supported { background: #d9f2d9; } .not-supported { background: #f8d7d7; }
.inconclusive { background: #fff3cd; } .no-data { background: #eee; color: #666; }
.flag { color: #a00; font-weight: bold; }
.small { font-size: 0.75rem; color: #555; }
.missing { color: #8a4b00; } .warn { color: #a00; }
#js-errors { color: #fff; background: #a00; padding: 0.5rem; }
section { margin-top: 2rem; }
"""


def _e(x: object) -> str:
    return html.escape(str(x))


def _num(x: float, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if math.isinf(x):
        return "never" if x > 0 else "−∞ (never reached)"
    return f"{x:+.{digits}f}"


def _verdict_class(v: str) -> str:
    return {"supported": "supported", "not supported": "not-supported", "no data": "no-data"}.get(
        v, "inconclusive"
    )


def _p(x: float) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{x:.3f}"


def _ci(lo: float, hi: float) -> str:
    if math.isnan(lo) or math.isnan(hi):
        return "none (too few seeds)"
    return f"[{_num(lo)}, {_num(hi)}]"


def _claims_html(claims: pd.DataFrame, level: float, status: pd.DataFrame) -> str:
    lvl = f"{100 * level:g}%"
    head = (
        "<tr><th>Claim</th><th>Paper</th><th>Condition</th><th>Comparison</th>"
        f"<th>Effect</th><th>{lvl} CI</th><th>n (seeds)</th><th>Verdict</th>"
        "<th>p · Holm-adjusted p · verdict after Holm</th>"
        "<th>With failed trials at chance accuracy: effect, CI, verdict</th>"
        f"<th>Power: smallest effect detectable ({100 * POWER:g}% power) · seeds per arm for "
        f"{TARGET_UNITS:g} unit</th><th>Method (exact coverage)</th>"
        "<th>Measured as</th><th>Rule</th></tr>"
    )
    rows = []
    for _, r in claims.iterrows():
        v = r["verdict"]
        has = v != "no data"
        unit = f" {_e(r['unit'])}"
        effect = _num(r["effect"]) if has else "—"
        if has and math.isfinite(r["effect"]):
            effect += unit
        ci = _ci(r["lo"], r["hi"]) if has else "—"
        detail = f"<br><span class='small'>{_e(r['details'])}</span>" if r["details"] else ""
        partial = partial_notes(status, r["kind"]) if has else []
        flag = (
            f"<br><span class='small missing' title='{_e('; '.join(partial))}'>partial data</span>"
            if partial
            else ""
        )
        if has:
            holm = f"{_p(r['p'])} · {_p(r['p_holm'])} · {_e(r['verdict_holm'])}"
            if r["n_failed"]:
                fail = (
                    f"{_num(r['effect_failed'])}{unit} {_ci(r['lo_failed'], r['hi_failed'])}, "
                    f"{_e(r['verdict_failed'])} ({int(r['n_failed'])} failed trials counted)"
                )
            else:
                fail = "no failed trials"
            if r["sensitivity"]:
                fail += f"<br><span class='flag'>{_e(r['sensitivity'])}</span>"
            mde = "none (too few seeds)" if math.isinf(r["mde"]) else f"{r['mde']:.3g}{unit}"
            need = "n/a" if math.isnan(r["seeds_needed"]) else f"{int(r['seeds_needed'])}"
            power = f"{mde} · {need}"
            cov = "" if math.isnan(r["coverage"]) else f" ({100 * r['coverage']:.1f}%)"
            method = f"{_e(r['method'])}{cov}"
        else:
            holm = fail = power = method = "—"
        rows.append(
            f"<tr><td>{_e(r['claim'])}</td><td>{_e(r['figure'])}</td>"
            f"<td>{_e(r['condition']) if has else ''}</td>"
            f"<td>{_e(r['comparison']) if has else ''}{detail}</td>"
            f"<td class='num'>{effect}</td><td class='num'>{ci}</td><td>{_e(r['n'])}</td>"
            f"<td class='{_verdict_class(v)}'><b>{_e(v)}</b>{flag}</td>"
            f"<td class='small'>{holm}</td><td class='small'>{fail}</td>"
            f"<td class='small'>{power}</td><td class='small'>{method}</td>"
            f"<td class='small'>{_e(r['measure'])}</td><td class='small'>{_e(r['rule'])}</td></tr>"
        )
    return f"<table id='claims'>{head}{''.join(rows)}</table>"


def _claims_notes(claims: pd.DataFrame, level: float) -> str:
    """Family-wise error, power and failure-sensitivity notes under the claims table."""
    m = int(claims["p_holm"].notna().sum()) if "p_holm" in claims else 0
    return (
        f"<p class='small' id='family-wise'>{_e(family_wise_text(m, level))}</p>"
        "<p class='small' id='power-note'>Power: the smallest effect detectable with "
        f"{100 * POWER:g}% power by a two-sided test at {100 * (1 - level):g}%, by the normal "
        "approximation with the noise SD estimated from these seeds (SD of the per-seed "
        "differences, or the bootstrap SD) and the rank test's efficiency 3/π; seeds per arm to "
        f"detect {TARGET_UNITS:g} displayed unit (1 pp, 1% of the training set, 1 epoch) "
        "assume the SD stays as estimated. “none (too few seeds)”: no interval, so no "
        "verdict, is possible at these seed counts.</p>"
        "<p class='small' id='failures-note'>Failed trials (failed, diverged, solver_failed) "
        "are left out of every statistic; the sensitivity column recomputes each effect with "
        "them counted at chance accuracy (1/number of classes: 10% for fmnist, svhn, cifar10; "
        "50% for toy2d) and flags a verdict that changes.</p>"
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
        f"<p class='small'>Results read from <code>{_e(storage)}</code> at {when}. "
        f"<span id='methods'>Statistics: {_e(report.spec.describe())}</span> Each trial's "
        "accuracy is taken at its selected epoch (validation-based model selection); failed "
        "trials are left out (see the sensitivity column); running trials count with their "
        "numbers so far.</p>",
        "<h2>Claims of the paper</h2>",
        _claims_html(report.claims, report.spec.level, report.status),
        _claims_notes(report.claims, report.spec.level),
        "<p class='small'>“partial data”: a sweep behind the claim is still running, misses "
        "trials, had failed trials or unreadable files (see Sweeps).</p>",
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
    """Write the page to `out` (folders created) and return its absolute path."""
    path = Path(out).expanduser().resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_dashboard(report, storage), encoding="utf-8")
    return path
