"""Out of memory in a real trial under Ray Tune: retried from the trial's last checkpoint, and
the trial ends "ok" (never "solver_failed"), with the numbers of a run that never failed."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

from ibnn.results import read_table
from ibnn.sweep import runner
from ibnn.sweep.command_line.args import parse_args
from ibnn.sweep.plan import build_plan
from ibnn.sweep.trials.identity import flatten_config, trial_id
from ibnn.trial import Trial, TrialConfig
from ibnn.trial.core import conclude
from tests.sweeps import fake_trial
from tests.sweeps.conftest import load_script

OOM = "tests.sweeps.oom_trial"
SWEEP = "toy2d"  # the folder of a dataset-less (toy2d) sweep


@pytest.mark.slow
def test_out_of_memory_is_retried_from_the_checkpoint_and_ends_ok(ray_session, tmp_path, capsys):
    base = load_script("toy2d").SPEC
    faults = tmp_path / "faults"
    inject = {"fail_after_epoch": 1, "fault_dir": str(faults)}
    spec = dataclasses.replace(base, overrides=lambda ctx: {**base.overrides(ctx), **inject})
    argv = ["--smoke", "--trial-module", OOM, "--epochs", "2", "--max-failures", "1"]
    assert runner.main(spec, [*argv, "--storage", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    trials = read_table(str(tmp_path), SWEEP, "trials").to_pandas()
    n = len(trials)
    assert n >= 2 and set(trials["status"]) == {"ok"}  # SM and IBNN: none "solver_failed"
    assert out.count("failed; retrying from its last checkpoint") == n
    assert len(list(faults.glob("*.oom"))) == n  # each trial ran out of memory once
    # Each trial logged the epochs it ran: the retry went on at epoch 2, it did not start over
    # (smoke: warm-up epoch 0, then 1; out of memory struck when asked for 2).
    logs = [log.read_text().split() for log in faults.glob("*.log")]
    assert logs == [["0", "1", "2"]] * n
    rows = read_table(str(tmp_path), SWEEP, "epochs").to_pandas()
    assert not rows.duplicated(["trial_id", "epoch"]).any() and len(rows) == 3 * n
    assert set(rows["device"]) == {"cpu"}  # the device the trial ran on, recorded per row
    evals = read_table(str(tmp_path), SWEEP, "evals").to_pandas()
    assert set(evals["trial_id"]) == set(trials["trial_id"])
    # The numbers equal those of the same trials run without failure and without Ray.
    plan = build_plan(spec, parse_args(spec, argv))
    for variant in plan.variants:
        config = flatten_config({**plan.constants, "variant": variant})
        clean = Trial(TrialConfig.from_dict({k: v for k, v in config.items() if k not in inject}))
        while not clean.done:
            clean.run_epoch()
        tid = trial_id({**clean.cfg.to_dict(), **inject})
        got = rows[rows["trial_id"] == tid].sort_values("epoch")
        assert got["epoch"].tolist() == [r["epoch"] for r in clean.records]
        for a, b in zip(got["val_loss"], [r["val_loss"] for r in clean.records], strict=True):
            assert math.isclose(a, b, rel_tol=1e-4), (a, b)
    meta = json.loads((tmp_path / SWEEP / "sweep.json").read_text())
    assert meta["counts"] == {"ok": n, "failed": 0, "total": n}


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (torch.OutOfMemoryError("CUDA out of memory"), None),  # raised: Tune retries
        (torch.AcceleratorError("CUDA error: unspecified launch failure"), None),
        (torch.linalg.LinAlgError("singular system"), "solver_failed"),  # recorded
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
)
def test_the_trial_conclusion_lets_device_errors_through(error, status):
    """The one rule every trial (solo, packed, or run_trial's) ends by: ``conclude``."""
    cfg = fake_trial.TrialConfig(dataset="fmnist", epochs=1, warmup_epochs=0)
    trial = fake_trial.Trial(cfg)
    trial.run_epoch()
    assert trial.status == "ok"

    def failing() -> list:
        raise error

    trial.evaluate = failing
    if status is None:
        with pytest.raises(type(error)):  # nothing concluded: Tune's retry evaluates again
            conclude(trial, boundary=False)
    else:
        result = conclude(trial, boundary=False)
        assert result.status == status and result.evals == []
        assert "singular system" in result.error and "singular system" in trial.error
