"""`python -m analysis`: the written page, partial results, and no torch/ray imports."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from analysis_synthetic import FAST, REPO, build_transfer

from analysis.__main__ import main
from analysis.dashboard import render_dashboard
from analysis.figures import FIGURES
from analysis.load import KINDS, load_storage
from analysis.report import compute_report


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "analysis", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_analysis_imports_neither_torch_nor_ray():
    code = (
        "import importlib, pkgutil, sys, analysis\n"
        "for m in pkgutil.iter_modules(analysis.__path__):\n"
        "    importlib.import_module('analysis.' + m.name)\n"
        "bad = sorted(n for n in sys.modules if n.split('.')[0] in ('torch', 'ray'))\n"
        "assert not bad, bad\n"
        "print(len([m for m in pkgutil.iter_modules(analysis.__path__)]))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout.strip()) >= 10  # every module was imported


def test_cli_prints_path_and_warns_on_stderr(dashboard):
    out, proc = dashboard
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == str(out.resolve())
    assert out.is_file()
    assert "zz_corrupt.parquet" in proc.stderr and "warning:" in proc.stderr


def test_page_is_self_contained_with_claims_first(dashboard):
    out, _ = dashboard
    html = out.read_text(encoding="utf-8")
    assert html.count("<script type='text/javascript'>") == 1  # plotly.js inlined once
    assert not re.search(r"<script[^>]+src=", html)  # nothing fetched: works offline
    assert "Plotly.newPlot" in html
    for spec in FIGURES:
        assert f'id="plot-{spec.key}"' in html, spec.key
    assert html.index("id='claims'") < html.index("id='sweeps'") < html.index('id="plot-fig2"')
    for claim in ("less training data", "robustness to Pixle", "faster learning", "transfer"):
        assert claim in html
    # the methods, the family-wise error and the new columns are on the page
    for text in ("order-statistic", "Hodges-Lehmann", "Wilcoxon", "Mann-Whitney", "seed=0"):
        assert text in html, text
    assert "id='family-wise'" in html and "at least one false" in html
    for text in ("Holm-adjusted p", "failed trials counted at chance", "seeds per arm to detect"):
        assert text in html, text
    # the diverged IBNN trial of the expressivity sweep is counted in its claim's details
    assert "1 failed trials counted at chance accuracy" in html
    # statistics and rules are written once, below the table, not in every row
    assert html.count("order-statistic") == 1 and html.count("id='rules'") == 1
    assert html.index("id='claims'") < html.index("id='methods'")
    # partial results: the running sweep and the failed trial are reported
    assert "12 of 57 expected trials not written" in html
    assert "failed trials left out of the statistics" in html
    assert "zz_corrupt.parquet" in html
    assert "partial data" in html and "Partial data:" in html
    fig8 = html[html.index("<section id='fig8'>") :]
    assert "memorization: 12 of 57 expected trials not written" in fig8[: fig8.index("</section>")]


def test_subset_of_sweeps_shows_what_exists(tmp_path: Path):
    build_transfer(tmp_path / "store")
    out = tmp_path / "d.html"
    proc = _run(str(tmp_path / "store"), "--out", str(out), "--resamples", "200")
    assert proc.returncode == 0, proc.stderr
    html = out.read_text(encoding="utf-8")
    assert 'id="plot-transfer"' in html and 'id="plot-fig3"' not in html
    assert "no data: no data_fraction sweep found" in html
    # every claim but the two transfer ones: verdict and verdict after Holm
    assert html.count("no-data'>no data<") == 2 * 7


def test_empty_or_sweepless_folder_exits_2_with_one_line(tmp_path: Path):
    """Criterion 4: exit 2, one line on stderr naming the folder, no dashboard written."""
    empty, sweepless = tmp_path / "empty", tmp_path / "sweepless"
    empty.mkdir()
    (sweepless / "notes").mkdir(parents=True)
    (sweepless / "notes" / "readme.txt").write_text("not a sweep")
    for folder in (empty, sweepless):
        out = tmp_path / f"{folder.name}.html"
        proc = _run(str(folder), "--out", str(out))
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and str(folder) in lines[0], proc.stderr
        assert lines[0].startswith("error: no sweep folder")
        assert proc.stdout == "" and not out.exists()


def test_bad_arguments(tmp_path: Path, capsys):
    out = tmp_path / "d.html"
    assert main([str(tmp_path / "missing"), "--out", str(out)]) == 2
    assert "storage must be an existing folder" in capsys.readouterr().err
    assert main([str(tmp_path), "--level", "1.5"]) == 2
    assert "level must lie in (0, 1)" in capsys.readouterr().err


def test_every_kind_started_but_empty_renders(tmp_path: Path):
    for kind in KINDS:
        (tmp_path / kind).mkdir()
        (tmp_path / kind / "sweep.json").write_text(
            '{"started": "2025-01-01", "expected_trials": 4}'
        )
    report = compute_report(load_storage(str(tmp_path)), FAST)
    assert set(report.kinds) == set(KINDS)
    html = render_dashboard(report, str(tmp_path))
    assert "Plotly.newPlot" not in html
    assert html.count("has no usable rows yet") == len(FIGURES)
    assert set(report.claims["verdict"]) == {"no data"}
