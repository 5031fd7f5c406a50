"""`python -m analysis` on a storage it cannot read or an --out it cannot write: one line naming
the location and the cause, exit 2, no traceback, and --out checked before any reading."""

from __future__ import annotations

import sys
from pathlib import Path

from analysis.__main__ import main
from tests.readonly import run_read_only
from tests.sweeps.s3_server import CREDENTIALS, s3_server

REPO = Path(__file__).resolve().parents[2]


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_an_unreachable_s3_storage(tmp_path, capsys, monkeypatch):
    with s3_server(tmp_path / "moto.log") as server:
        uri = server.uri("results")
    for key, value in CREDENTIALS.items():  # the server has stopped; its endpoint is dead
        monkeypatch.setenv(key, value)
    assert main([uri, "--out", str(tmp_path / "d.html")]) == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith(f"python -m analysis: error: {uri}: ")
    assert "AWS Error NETWORK_CONNECTION" in line and not (tmp_path / "d.html").exists()


def test_an_out_below_a_regular_file(tmp_path, capsys):
    f = tmp_path / "f"
    f.write_text("x\n")
    assert main([str(tmp_path / "no-such-storage"), "--out", str(f / "d.html")]) == 2
    line = one_line(capsys.readouterr().err)  # --out is checked first: the storage is not read
    assert (
        line == f"python -m analysis: error: --out {f}/d.html: {f} is a regular file, not a folder"
    )
    assert f.read_text() == "x\n"


def test_an_out_on_a_read_only_folder(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    out = ro / "d.html"
    cmd = [sys.executable, "-m", "analysis", str(tmp_path), "--out", str(out)]
    proc = run_read_only(ro, cmd, cwd=REPO)
    assert proc.returncode == 2
    line = one_line(proc.stderr)
    assert line.startswith(f"python -m analysis: error: --out {out}: cannot create entries in {ro}")
    assert "warning" not in proc.stderr  # refused before reading the storage


def test_a_markdown_file_below_a_regular_file(tmp_path, capsys):
    f = tmp_path / "f"
    f.write_text("x\n")
    args = [str(tmp_path / "no-such-storage"), "--out", str(tmp_path / "d.html")]
    assert main([*args, "--markdown", str(f / "claims.md")]) == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith(f"python -m analysis: error: --markdown {f}/claims.md: {f} is a")
    assert not (tmp_path / "d.html").exists()
