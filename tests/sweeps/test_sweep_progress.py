"""The console: by default a status line (done / running / pending / failed, throughput, time
left) every few seconds; per-epoch lines with --verbose."""

from __future__ import annotations

from dataclasses import dataclass

import ibnn.sweep.progress as progress_mod
from ibnn.sweep import runner
from ibnn.sweep.progress import SweepProgress
from tests.sweeps.conftest import FAKE, load_script


@dataclass
class FakeTrial:
    name: str
    status: str

    def __str__(self) -> str:
        return self.name


def test_status_line_counts_and_time_left(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(progress_mod.time, "monotonic", lambda: clock[0])
    prog = SweepProgress(total=5, verbose=False)
    trials = [FakeTrial("a", "TERMINATED"), FakeTrial("b", "TERMINATED"),
              FakeTrial("c", "RUNNING"), FakeTrial("d", "PENDING")]  # fmt: skip
    results = [("a", 4, "ok"), ("b", 2, "diverged"), ("c", 1, "running")]
    for name, done, status in results:
        for k in range(1, done + 1):
            result = {"epochs_done": k, "epochs_total": 4, "status": status}
            prog.on_trial_result(0, trials, FakeTrial(name, "RUNNING"), result)
    clock[0] += 120.0  # 7 epochs in 2 minutes: 3.5 per minute
    line = prog.status_line(trials)
    # left: c 3, d 4, one trial not created yet 4 -> 11 epochs at 3.5/min = 188.57 s
    assert line == (
        "2/5 trials done (1 failed) | 1 running | 2 pending | 3.5 epochs/min | ETA 0:03:08"
    )


def test_default_console_is_status_lines_not_epoch_lines(ray_session, tmp_path, capsys):
    spec = load_script("memorization").SPEC
    argv = ["--smoke", "--trial-module", FAKE, "--epochs", "2", "--storage", str(tmp_path)]
    assert runner.main(spec, argv) == 0
    out = capsys.readouterr().out
    assert " | epoch " not in out and "finished\n" not in out
    status = [ln for ln in out.splitlines() if "trials done" in ln]
    assert status and "] 4/4 trials done (0 failed) | 0 running | 0 pending | " in status[-1]
    assert "ETA" in status[-1] and "epochs/min" in status[-1]
