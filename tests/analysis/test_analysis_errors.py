"""`python -m analysis` on a storage it cannot read or an --out it cannot write: one line naming
the location and the cause, exit 2, no traceback, and --out checked before any reading."""

from __future__ import annotations

import sys
from pathlib import Path

from analysis.__main__ import main
from ibnn.results.errors import write_text_atomic
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


def test_an_out_that_is_a_folder_is_refused_before_any_reading(tmp_path, capsys):
    folder = tmp_path / "site"
    folder.mkdir()
    assert main([str(tmp_path / "no-such-storage"), "--out", str(folder)]) == 2
    line = one_line(capsys.readouterr().err)  # not the storage's error: --out comes first
    assert line == f"python -m analysis: error: --out {folder}: {folder} is a folder, not a file"
    args = [str(tmp_path / "no-such-storage"), "--out", str(tmp_path / "d.html")]
    assert main([*args, "--markdown", str(folder)]) == 2
    line = one_line(capsys.readouterr().err)
    assert line == (
        f"python -m analysis: error: --markdown {folder}: {folder} is a folder, not a file"
    )
    assert list(folder.iterdir()) == [] and not (tmp_path / "d.html").exists()


def test_an_interrupted_write_keeps_the_earlier_file(tmp_path, monkeypatch):
    out = tmp_path / "d.html"
    out.write_text("the earlier page\n")

    def interrupted(self, text, encoding=None):  # a Ctrl-C part-way through the write
        with open(self, "w", encoding=encoding) as f:
            f.write(text[:10])
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "write_text", interrupted)
    try:
        write_text_atomic(out, "<html>the new page</html>\n")
    except KeyboardInterrupt:
        pass
    else:
        raise AssertionError("the write was not interrupted")
    monkeypatch.undo()
    assert out.read_text() == "the earlier page\n"
    assert [p.name for p in tmp_path.iterdir()] == ["d.html"]  # no temporary file left
    assert write_text_atomic(out, "new\n") == out.resolve() and out.read_text() == "new\n"
