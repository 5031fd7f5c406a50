"""The dashboard in headless Chromium: every figure rendered to SVG, no JavaScript error.

Chromium is required (CI installs it): without it this test fails with a message, it does not
skip. The screenshot is kept under artifacts/ (ignored by git). Set IBNN_CHROMIUM to use
another binary.
"""

from __future__ import annotations

import html as htmlmod
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from analysis_synthetic import REPO

from analysis.dashboard import ERROR_RECORDER
from analysis.figures import FIGURES

CHROMIUM = os.environ.get("IBNN_CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _chromium(page: Path, profile: Path, *extra: str) -> str:
    """Load `page`, let it run (virtual time), and return the rendered DOM."""
    if not Path(CHROMIUM).is_file():
        pytest.fail(
            f"chromium not found at {CHROMIUM}: install it (Debian: apt-get install chromium) "
            "or set IBNN_CHROMIUM; the dashboard test needs a browser and does not skip"
        )
    proc = subprocess.run(
        [
            CHROMIUM,
            *FLAGS,
            f"--user-data-dir={profile}",
            "--virtual-time-budget=15000",
            *extra,
            "--dump-dom",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def _js_errors(dom: str) -> list[str]:
    m = re.search(r'<pre id="js-errors"[^>]*>(.*?)</pre>', dom, flags=re.S)
    assert m, "the page's error recorder element is missing"
    return json.loads(htmlmod.unescape(m.group(1)))


def _plot_blocks(dom: str) -> dict[str, str]:
    """DOM text of each plot element, up to the next plot element."""
    starts = [(m.start(), m.group(1)) for m in re.finditer(r'id="plot-([\w-]+)"', dom)]
    ends = [s for s, _ in starts[1:]] + [len(dom)]
    return {key: dom[s:e] for (s, key), e in zip(starts, ends, strict=True)}


def test_error_recorder_catches_errors(tmp_path: Path):
    """Control: a page with a deliberate error reports it, so an empty list means something."""
    page = tmp_path / "broken.html"
    page.write_text(
        f"<html><head><script>{ERROR_RECORDER}</script></head><body>"
        "<pre id='js-errors' hidden>[]</pre>"
        "<script>console.error('boom'); notDefinedAnywhere();</script></body></html>"
    )
    errors = _js_errors(_chromium(page, tmp_path / "profile"))
    assert any("boom" in e for e in errors), errors
    assert any("notDefinedAnywhere" in e for e in errors), errors


def test_dashboard_renders_every_figure_without_js_errors(dashboard, tmp_path: Path):
    out, proc = dashboard
    assert proc.returncode == 0, proc.stderr
    shot = REPO / "artifacts" / "dashboard.png"
    shot.parent.mkdir(exist_ok=True)
    shot.unlink(missing_ok=True)
    dom = _chromium(out, tmp_path / "profile", "--window-size=1400,9000", f"--screenshot={shot}")
    assert _js_errors(dom) == []
    blocks = _plot_blocks(dom)
    assert set(blocks) == {spec.key for spec in FIGURES}
    for key, block in blocks.items():
        assert 'class="main-svg"' in block, f"figure {key} has no rendered SVG"
        assert re.search(r'class="(scatterlayer|barlayer)', block), f"figure {key} has no traces"
    assert shot.is_file() and shot.stat().st_size > 50_000
    print(f"dashboard screenshot: {shot}")


# Runs in the page after layout: measures the claims table as rendered, clicks one row's
# details open, and writes the numbers as JSON into <pre id="measure">.
MEASURE = """
window.addEventListener("load", function () {
  setTimeout(function () {
    var doc = document.documentElement, table = document.getElementById("claims");
    var rows = Array.prototype.slice.call(table.tBodies[0].rows);
    var closed = rows.map(function (r) { return r.getBoundingClientRect().height; });
    var details = rows.map(function (r) { return r.querySelector("details"); });
    var first = details[0], dl = first.querySelector("dl");
    var hiddenBefore = dl.checkVisibility();
    first.querySelector("summary").click();
    var openHeight = rows[0].getBoundingClientRect().height;
    var shownAfter = dl.checkVisibility();
    var text = dl.innerText;
    first.querySelector("summary").click();
    var out = {
      viewport: [window.innerWidth, window.innerHeight],
      scrollWidth: doc.scrollWidth, clientWidth: doc.clientWidth,
      tableRight: table.getBoundingClientRect().right,
      tableBottom: table.getBoundingClientRect().bottom + window.scrollY,
      rowHeights: closed,
      cells: rows.map(function (r) { return r.cells.length; }),
      openByDefault: details.filter(function (d) { return d.open; }).length,
      hiddenBefore: hiddenBefore, shownAfter: shownAfter, openHeight: openHeight,
      closedAgain: rows[0].getBoundingClientRect().height,
      detailsText: text,
      methodsTop: document.getElementById("methods").getBoundingClientRect().top + window.scrollY,
      rulesCount: document.querySelectorAll("#rules").length
    };
    var pre = document.createElement("pre");
    pre.id = "measure";
    pre.textContent = JSON.stringify(out);
    document.body.appendChild(pre);
  }, 100);
});
"""


def _measure(html: str, tmp_path: Path, extra_css: str = "") -> dict:
    page = tmp_path / "measured.html"
    html = html.replace("</head>", f"<style>{extra_css}</style></head>", 1)
    page.write_text(html.replace("</body>", f"<script>{MEASURE}</script></body>"), "utf-8")
    dom = _chromium(page, tmp_path / "profile", "--window-size=1366,768")
    assert _js_errors(dom) == []
    m = re.search(r'<pre id="measure">(.*?)</pre>', dom, flags=re.S)
    assert m, "the measuring script did not run"
    return json.loads(htmlmod.unescape(m.group(1)))


def test_measurement_catches_a_wide_and_tall_table(dashboard, tmp_path: Path):
    """Control: with the old habit (long text in every row, no wrapping) the measures fail."""
    out, _ = dashboard
    css = "#claims td.claim { white-space: nowrap; } #claims dl { display: block !important; }"
    css += " #claims details > dl { content-visibility: visible; } #claims td { padding: 2rem; }"
    got = _measure(out.read_text(encoding="utf-8"), tmp_path, css)
    assert got["scrollWidth"] > got["clientWidth"] or got["tableRight"] > got["clientWidth"]
    assert max(got["rowHeights"]) > 60 and got["tableBottom"] > 1000


def test_claims_table_at_a_glance_at_1366x768(dashboard, tmp_path: Path):
    """Criterion 1, measured in the rendered page at 1366 x 768: no sideways scroll, one row of
    at most 60 px per claim, the table ends within 1,000 px of the top, details open on a
    click, the statistics and rules stand once below the table."""
    out, proc = dashboard
    assert proc.returncode == 0, proc.stderr
    got = _measure(out.read_text(encoding="utf-8"), tmp_path)
    assert got["viewport"][0] == 1366, got["viewport"]
    assert got["scrollWidth"] <= got["clientWidth"], got  # no horizontal scroll
    assert got["tableRight"] <= got["clientWidth"], got
    assert len(got["rowHeights"]) == 13 and set(got["cells"]) == {6}
    assert max(got["rowHeights"]) <= 60, got["rowHeights"]
    assert got["tableBottom"] <= 1000, got["tableBottom"]
    assert got["openByDefault"] == 0 and got["hiddenBefore"] is False
    assert got["shownAfter"] is True and got["openHeight"] > max(got["rowHeights"])
    assert got["closedAgain"] == got["rowHeights"][0]
    for label in ("Method", "Rule", "Power", "Failed trials", "Trials at chance accuracy"):
        assert label in got["detailsText"], label
    assert got["methodsTop"] > got["tableBottom"] and got["rulesCount"] == 1
    print(
        f"claims table: rows {min(got['rowHeights']):.0f}-{max(got['rowHeights']):.0f} px, "
        f"ends at {got['tableBottom']:.0f} px"
    )
