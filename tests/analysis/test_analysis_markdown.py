"""`--markdown`: the claims table and each figure's medians as clean, deterministic Markdown."""

from __future__ import annotations

import html as htmlmod
import re

from analysis_synthetic import FAST, build_noisy_expressivity
from test_analysis_cli import _run

from analysis.dashboard import render_dashboard
from analysis.figures import FIGURES
from analysis.load import load_storage
from analysis.markdown import render_markdown
from analysis.report import compute_report


def _tables(md: str) -> list[list[list[str]]]:
    """Every Markdown table as rows of cells (separator rows dropped)."""
    tables, cur = [], []
    for line in [*md.splitlines(), ""]:
        if line.startswith("|"):
            cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line)[1:-1]]
            if not all(re.fullmatch(r"-+:?", c) for c in cells):
                cur.append(cells)
        elif cur:
            tables.append(cur)
            cur = []
    return tables


def _page_rows(page: str) -> list[list[str]]:
    """The claims rows of the page: claim, condition, figure, verdict, effect, interval, seeds,
    verdict after Holm, p (read from the HTML, not from the code that formats it)."""
    body = page[page.index("id='claims'") :]
    body = body[: body.index("</table>")]
    out = []
    for tr in re.findall(r"<tr>(.*?)</tr>", body.split("<tbody>")[1], flags=re.S):
        text = [htmlmod.unescape(t) for t in re.findall(r">([^<>]+)<", tr)]
        claim, cond = text[0], text[1]
        rest = [t for t in text if t.strip() and t != "partial data"]
        tail = rest[rest.index(cond) + 1 :]
        dd_end = len(tail) - 7  # the details (dt/dd pairs) come before the last 7 texts
        figure, verdict, effect, interval, seeds, holm, p = tail[dd_end:]
        out.append([claim, cond, figure, verdict, effect, interval, seeds, holm, p[2:]])
    return out


def test_markdown_claims_are_the_page_rows(report, storage):
    md = render_markdown(report)
    page = render_dashboard(report, str(storage))
    claims = _tables(md)[0]
    assert claims[0][:4] == ["Claim", "Condition", "Figure", "Verdict"]
    assert claims[1:] == _page_rows(page)
    assert len(claims) - 1 == len(report.claims)


def test_markdown_is_deterministic_and_renderable(report, sweeps):
    md = render_markdown(report)
    assert md == render_markdown(compute_report(sweeps, FAST))  # same results, same bytes
    assert not re.search(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}", md)  # no timestamp anywhere
    for table in _tables(md):
        assert len({len(row) for row in table}) == 1, table[0]  # every row as wide as its header
    for line in md.splitlines():
        if line.startswith("|"):
            assert line.endswith("|") and "\n" not in line
    # one table per figure with data, each a median and an interval per plotted point
    for spec in FIGURES:
        assert f"### {spec.title}" in md
    fig3 = md[md.index("### Fig. 3") :]
    fig3 = _tables(fig3)[0]
    assert fig3[0][-3:] == ["median (%)", "90% interval (%)", "seeds"]
    sm_full = [r for r in fig3 if r[fig3[0].index("arm")] == "SM" and r[-4] == "100%"]
    assert sm_full[0][-3:] == ["85.00", "[84.70, 85.30]", "10"]  # EXPECTED sm_best 0.85


def test_markdown_lists_a_flipped_verdict(tmp_path):
    build_noisy_expressivity(tmp_path, n=8, gap=0.03, sd=0.002, chance=(0, 1))
    md = render_markdown(compute_report(load_storage(str(tmp_path)), FAST))
    assert "verdict changes to “supported” without the 8 trials at chance" in md


def test_cli_writes_markdown_to_a_file_and_to_stdout(storage, tmp_path):
    out, md = tmp_path / "d.html", tmp_path / "notes" / "claims.md"
    proc = _run(str(storage), "--out", str(out), "--resamples", "400", "--markdown", str(md))
    assert proc.returncode == 0, proc.stderr
    text = md.read_text(encoding="utf-8")
    assert text.startswith("## Claims of the paper") and out.is_file()
    proc = _run(str(storage), "--out", str(out), "--resamples", "400", "--markdown", "-")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == text  # the same bytes; the dashboard's path went to stderr
    assert str(out.resolve()) in proc.stderr
