"""The trial's --out folder: refused before any work, never replaced unasked, written whole."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

import ibnn.trial.cli as cli
from ibnn.trial.cli import main
from ibnn.trial.output import TRIAL_FILES, OutputError, check_output, write_folder
from tests.readonly import run_read_only

REPO = Path(__file__).resolve().parents[3]
TOY = "--dataset toy2d --epochs 1 --warmup-epochs 1 --max-train 100 --evals clean --n-eval 20"


def toy_main(out: Path, *extra: str) -> int:
    return main([*TOY.split(), "--quiet", *extra, "--out", str(out)])


def refusal(args: list[str], capsys) -> str:
    """The one-line stderr of a refused command line (exit 2)."""
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "usage" not in err, err
    return err


@pytest.fixture
def no_training(monkeypatch):
    """Any trial that starts fails the test: the refusals must come first."""

    def forbidden(*a, **k):
        raise AssertionError("the trial started")

    monkeypatch.setattr("ibnn.trial.core.run_trial", forbidden)


def test_a_regular_file_as_out_is_refused_before_training(tmp_path, capsys, no_training):
    f = tmp_path / "f"
    f.write_text("x\n")
    err = refusal([*TOY.split(), "--out", str(f)], capsys)
    assert str(f) in err and "not a folder" in err
    below = f / "run"  # a regular file in the path
    err = refusal([*TOY.split(), "--out", str(below)], capsys)
    assert str(below) in err and f"{f} is a regular file" in err
    assert f.read_text() == "x\n"


def test_a_read_only_out_is_refused_within_seconds_without_training(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    start = time.monotonic()
    cmd = [sys.executable, "-m", "ibnn.trial", *TOY.split(), "--out", str(ro / "run")]
    proc = run_read_only(ro, cmd, cwd=REPO)
    took = time.monotonic() - start
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert str(ro / "run") in lines[0] and f"cannot create entries in {ro}" in lines[0]
    assert "status" not in proc.stdout  # refused before training
    assert took < 60, took  # torch's import only (a loaded 2-core machine)


def test_an_earlier_trial_is_kept_unless_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    assert toy_main(out, "--seed", "0") == 0
    before = {name: (out / name).read_bytes() for name in TRIAL_FILES if (out / name).exists()}
    assert set(before) == set(TRIAL_FILES)  # toy2d writes the boundary too
    capsys.readouterr()
    err = refusal([*TOY.split(), "--seed", "1", "--out", str(out)], capsys)
    assert str(out) in err and "already holds a trial" in err and "--overwrite" in err
    assert {name: (out / name).read_bytes() for name in before} == before
    assert toy_main(out, "--seed", "1", "--overwrite") == 0
    assert json.loads((out / "config.json").read_text())["seed"] == 1
    assert set(pd.read_parquet(out / "epochs.parquet")["seed"]) == {1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no staging left over


def test_a_folder_with_other_files_is_never_replaced(tmp_path, capsys, no_training):
    out = tmp_path / "notes"
    out.mkdir()
    (out / "config.json").write_text("{}")
    (out / "paper.tex").write_text("mine")
    err = refusal([*TOY.split(), "--overwrite", "--out", str(out)], capsys)
    assert "not a trial's (paper.tex)" in err
    check_output(tmp_path / "empty", overwrite=False)  # new folders are fine
    (tmp_path / "empty").mkdir()
    check_output(tmp_path / "empty", overwrite=False)  # and empty ones


def test_an_interrupted_write_leaves_the_old_trial(tmp_path, monkeypatch):
    out = tmp_path / "run"
    assert toy_main(out, "--seed", "0") == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    written = []

    def interrupted(path: Path) -> None:
        written.append(path.name)
        raise KeyboardInterrupt

    real = cli.write_folder

    def write_then_interrupt(target, writers):  # Ctrl-C while the third file is written
        names = list(writers)
        real(target, {**writers, names[2]: interrupted})

    monkeypatch.setattr(cli, "write_folder", write_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        toy_main(out, "--seed", "1", "--overwrite")
    assert len(written) == 1
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_write_folder_creates_whole_and_replaces_whole(tmp_path):
    out = tmp_path / "a" / "b"
    write_folder(out, {"x.txt": lambda p: p.write_text("1"), "y.txt": lambda p: p.write_text("2")})
    assert {p.name: p.read_text() for p in out.iterdir()} == {"x.txt": "1", "y.txt": "2"}
    write_folder(out, {"x.txt": lambda p: p.write_text("3")})
    assert {p.name: p.read_text() for p in out.iterdir()} == {"x.txt": "3"}
    with pytest.raises(OutputError, match="already holds a trial"):
        (out / "x.txt").rename(out / "config.json")
        check_output(out)


def test_config_file_errors_name_the_file(tmp_path, capsys, no_training):
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("family: ibnn\n")
    err = refusal(["--config", str(yaml_file)], capsys)
    assert str(yaml_file) in err
    listed = tmp_path / "c.json"
    listed.write_text('[{"family": "ibnn"}]')
    err = refusal(["--config", str(listed)], capsys)
    assert str(listed) in err and "JSON list" in err and "JSON object" in err


def test_the_command_line_refusal_is_one_line_in_a_subprocess(tmp_path):
    args = "--dataset toy2d --family ibnn --lam 0.07".split()
    proc = subprocess.run(
        [sys.executable, "-m", "ibnn.trial", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "lam=0.07" in proc.stderr
