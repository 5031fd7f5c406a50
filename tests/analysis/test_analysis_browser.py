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
