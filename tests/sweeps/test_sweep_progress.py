"""The console: by default a status line (done / running / pending / failed, throughput, time
left) every few seconds; per-epoch lines with --verbose."""

from __future__ import annotations

import io
import logging
import pickle
import re
import subprocess
from dataclasses import dataclass, field

import pytest

import ibnn.sweep.trials.progress as progress_mod
from ibnn.sweep import runner
from ibnn.sweep.trials.progress import SweepProgress, ray_logging_level
from tests.sweeps.conftest import FAKE, REPO, load_script, python, ray_env

# The driver's own lines: the start, status lines ("[0:00:10] ..."), the outcome.
OURS = re.compile(r"^(Starting sweep '|\[\d+:\d\d:\d\d\] |Sweep '[^']+' finished: )")


@dataclass
class FakeTrial:
    name: str
    status: str
    last_result: dict = field(default_factory=dict)  # what Tune restored on a resume

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


def test_a_trial_past_its_last_epoch_shows_as_evaluating(monkeypatch):
    """After its last epoch a trial runs its evaluations (PGD, Pixle: minutes for an IBNN); the
    status line says so instead of an ETA of seconds that does not move."""
    clock = [1000.0]
    monkeypatch.setattr(progress_mod.time, "monotonic", lambda: clock[0])
    prog = SweepProgress(total=3, verbose=False)
    trials = [FakeTrial("a", "RUNNING"), FakeTrial("b", "RUNNING"), FakeTrial("c", "PENDING")]
    for name, done in (("a", 4), ("b", 2)):
        for k in range(1, done + 1):
            result = {"epochs_done": k, "epochs_total": 4, "status": "running"}
            prog.on_trial_result(0, trials, FakeTrial(name, "RUNNING"), result)
    clock[0] += 60.0  # 6 epochs a minute; left: b 2, c 4
    assert prog.status_line(trials) == (
        "0/3 trials done (0 failed) | 2 running (1 evaluating) | 1 pending | 6.0 epochs/min | "
        "ETA 0:01:00 + evaluations"
    )
    prog.on_trial_complete(0, trials, trials[0])
    trials[0].status = "TERMINATED"
    line = prog.status_line(trials)
    assert line.endswith("| 1 running | 1 pending | 6.0 epochs/min | ETA 0:01:00")


def test_a_callback_pickled_by_an_older_version_still_prints_on_resume(monkeypatch):
    """Tune restores the callbacks it pickled when the sweep started: one saved before packs
    existed has no ``unit``, and its clock must restart with the resumed run."""
    clock = [1000.0]
    monkeypatch.setattr(progress_mod.time, "monotonic", lambda: clock[0])
    old = SweepProgress(total=2, verbose=False)
    del old.unit  # the instance attribute; the state then lacks it, as an old pickle does
    state = old.__getstate__()
    assert "unit" not in state
    clock[0] += 9000.0  # resumed hours later
    restored = SweepProgress.__new__(SweepProgress)
    restored.__setstate__(pickle.loads(pickle.dumps(state)))
    ended = FakeTrial("a", "TERMINATED", {"status": "ok"})  # finished before the interruption
    line = restored.status_line([ended, FakeTrial("b", "PENDING")])
    assert line.startswith("1/2 trials done (0 failed) | 0 running | 1 pending")
    restored.stream = io.StringIO()
    restored._print("x")
    assert restored.stream.getvalue() == "[0:00:00] x\n"


def test_default_console_is_status_lines_not_epoch_lines(ray_session, tmp_path, capsys):
    spec = load_script("memorization").SPEC
    argv = ["--smoke", "--trial-module", FAKE, "--epochs", "2", "--storage", str(tmp_path)]
    assert runner.main(spec, argv) == 0
    out = capsys.readouterr().out
    assert " | epoch " not in out and "finished\n" not in out
    status = [ln for ln in out.splitlines() if "trials done" in ln]
    assert status and "] 4/4 trials done (0 failed) | 0 running | 0 pending | " in status[-1]
    assert "ETA" in status[-1] and "epochs/min" in status[-1]


def console(tmp, *extra: str, script: str = "memorization", code: int = 0) -> list[str]:
    """Everything a sweep driver prints (stdout and stderr, interleaved), line by line."""
    argv = [f"sweeps/{script}.py", "--smoke", "--epochs", "2", "--storage", str(tmp / "res")]
    out = subprocess.run(
        [python(), *argv, "--trial-module", FAKE, *extra],
        cwd=REPO, env=ray_env(tmp), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == code, out.stdout
    return out.stdout.splitlines()


@pytest.mark.slow  # a sweep driver with its own Ray, end to end
def test_a_normal_run_prints_only_the_drivers_lines(short_tmp):
    lines = console(short_tmp)
    assert [ln for ln in lines if not OURS.match(ln)] == []
    assert any(" 4/4 trials done (0 failed) " in ln for ln in lines)
    assert lines[-1].startswith("Sweep 'memorization_fmnist' finished: 4 ok, 0 failed")


@pytest.mark.slow
def test_verbose_keeps_rays_own_lines(short_tmp):
    """The negative control: the same capture sees Ray's start-up and Tune's lines."""
    foreign = [ln for ln in console(short_tmp, "--verbose") if not OURS.match(ln)]
    assert any("Started a local Ray instance" in ln for ln in foreign), foreign
    assert any("Token authentication is enabled" in ln for ln in foreign), foreign
    assert any("Wrote the latest version of all result files" in ln for ln in foreign), foreign


@pytest.mark.parametrize(
    "name, notice, danger",
    [
        (
            "ray._private.authentication.authentication_token_setup",
            "Token authentication is enabled for this Ray cluster. Set RAY_AUTH_MODE=...",
            "Token authentication is disabled for this Ray cluster. Anyone with ...",
        ),
        (
            "ray.tune.tune",
            "Experiment has been interrupted, but the most recent state was saved.\nResume "
            'experiment with: Tuner.restore(path="/x", trainable=...)',
            "Trial t1 errored after 2 iterations",
        ),
        (
            "ray.tune.analysis.experiment_analysis",
            "Failed to fetch metrics for 2 trial(s):\n- t1: FileNotFoundError()",
            "Could not find best trial",
        ),
    ],
    ids=["token", "restore-hint", "fetch-metrics"],
)
def test_without_verbose_rays_warnings_stay_and_only_its_notices_go(name, notice, danger):
    logger = logging.getLogger(name)

    def record(msg: str) -> logging.LogRecord:
        return logger.makeRecord(logger.name, logging.WARNING, __file__, 1, msg, (), None)

    assert ray_logging_level(verbose=False) == logging.WARNING  # Ray's warnings still shown
    assert not logger.filter(record(notice)) and logger.filter(record(danger))
    assert ray_logging_level(verbose=True) == logging.INFO and logger.filter(record(notice))


@pytest.mark.slow
def test_a_failing_trial_still_shows_rays_error_and_traceback(short_tmp):
    faulty = ["--trial-module", "tests.sweeps.faulty_trial", "--max-failures", "0"]
    inject = ["--set", "fail_after_epoch=0", "--set", f"fault_dir={short_tmp / 'faults'}"]
    lines = console(short_tmp, *faulty, *inject, script="transfer", code=1)
    text = "\n".join(lines)
    assert "ERROR" in text and "Traceback" in text
    assert "InjectedFailure: injected failure after epoch 0" in text
    assert any(ln.endswith("FAILED (see the error above)") for ln in lines)


def test_status_line_after_ctrl_c_counts_no_stopped_trial_as_done_or_failed():
    """At Ctrl-C Tune marks its running trials TERMINATED without completing them: they are
    neither done nor failed (they wait to be resumed). A trial a search's scheduler stopped
    (completed by Tune, its last status still "running") is done, and not failed."""
    prog = SweepProgress(total=6, verbose=False)
    trials = [FakeTrial(name, "RUNNING") for name in "abcd"]
    for t in trials:
        prog.on_trial_result(
            0, trials, t, {"epochs_done": 1, "epochs_total": 4, "status": "running"}
        )
    prog.on_trial_complete(0, trials, trials[0])  # pruned by the scheduler
    for t in trials:
        t.status = "TERMINATED"  # the pruned one, and the three stopped at Ctrl-C
    trials += [FakeTrial("e", "TERMINATED"), FakeTrial("f", "TERMINATED")]  # never started
    assert prog.status_line(trials).startswith("1/6 trials done (0 failed) | 0 running | 5 pending")
