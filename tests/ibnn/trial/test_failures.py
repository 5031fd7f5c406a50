"""Failure classes: out-of-memory and device errors leave the trial (so a scheduler retries it
from its checkpoint); only numerical failures end it as solver_failed or diverged."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import ibnn.trial.core as trial_mod
from ibnn.nn.neuron import ImplicitBias
from ibnn.trial import Trial, TrialConfig, run_trial


def toy(**kw) -> TrialConfig:
    return TrialConfig(**({"dataset": "toy2d", "epochs": 3, "batch_size": 64} | kw))


def infrastructure_errors() -> list[BaseException]:
    """What a GPU node raises when it runs out of memory or its device fails."""
    return [
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        torch.AcceleratorError("CUDA error: an illegal memory access was encountered"),
        RuntimeError("CUDA error: device-side assert triggered"),  # older torch's plain type
    ]


def fail_once(module: nn.Module, error: BaseException) -> list[int]:
    """Makes ``module``'s next forward raise ``error`` (once); returns the list of raises."""
    raised: list[int] = []

    def hook(mod, args):
        if not raised:
            raised.append(1)
            raise error

    module.register_forward_pre_hook(hook)
    return raised


def first_linear(model: nn.Module) -> nn.Module:
    return next(m for m in model.modules() if isinstance(m, nn.Linear))


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("error", infrastructure_errors(), ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("family", ["ibnn", "sm"])
def test_device_errors_leave_run_epoch_and_the_checkpoint_continues(family, error, tmp_path):
    cfg = toy(family=family, lam=-0.5 if family == "ibnn" else 0.0, warmup_epochs=1)
    clean = Trial(cfg)
    while not clean.done:
        clean.run_epoch()

    trial = Trial(cfg)
    trial.run_epoch()  # the warm-up epoch
    trial.run_epoch()  # main epoch 1 (the IBNN model exists from here on)
    ckpt = str(tmp_path / "trial.pt")
    trial.save(ckpt)
    raised = fail_once(first_linear(trial.model), error)
    with pytest.raises(type(error), match="CUDA"):
        trial.run_epoch()
    assert raised and trial.status == "running" and trial.error == ""
    assert len(trial.records) == 2  # the failed epoch left no record

    retried = Trial(cfg)  # what Tune does: a fresh trial from the last checkpoint
    retried.load(ckpt)
    while not retried.done:
        retried.run_epoch()
    assert retried.status == "ok"
    got = [(r["epoch"], r["val_acc"], r["train_loss"]) for r in retried.records]
    # IBNN: the retried epochs start their solves cold (warm starts are not checkpointed), so
    # they agree to the solver's tolerance
    want = [(r["epoch"], r["val_acc"], pytest.approx(r["train_loss"], rel=1e-5))
            for r in clean.records]  # fmt: skip
    assert got == want


def test_out_of_memory_inside_the_solver_is_not_a_solver_failure():
    trial = Trial(toy(family="ibnn", lam=0.04, warmup_epochs=0))

    def oom(*args, **kw):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB")

    layers = [m for m in trial.model.modules() if isinstance(m, ImplicitBias)]
    assert layers
    for m in layers:
        m.solve_fn = oom
    with pytest.raises(torch.OutOfMemoryError):
        trial.run_epoch()
    assert trial.status == "running" and not trial.records


@pytest.mark.parametrize("error", infrastructure_errors(), ids=lambda e: type(e).__name__)
def test_device_errors_in_the_evaluation_leave_run_trial(error, monkeypatch):
    def failing(*args, **kw):
        raise error

    monkeypatch.setattr(trial_mod, "evaluate_model", failing)
    with pytest.raises(type(error)):
        run_trial(toy(epochs=1), progress=False)


def test_a_singular_system_in_the_evaluation_is_a_solver_failure(monkeypatch):
    """The negative control: a numerical exception is still recorded, not raised."""

    def singular(*args, **kw):
        raise torch.linalg.LinAlgError("singular system")

    monkeypatch.setattr(trial_mod, "evaluate_model", singular)
    res = run_trial(toy(epochs=1), progress=False)
    assert res.status == "solver_failed" and res.evals == []
    assert res.epochs[-1]["status"] == "ok"  # training itself finished


def test_a_non_finite_loss_is_still_diverged(monkeypatch):
    real = trial_mod.make_splits

    def poisoned(*args, **kw):
        s = real(*args, **kw)
        s.x_train[3] = float("inf")
        return s

    monkeypatch.setattr(trial_mod, "make_splits", poisoned)
    res = run_trial(toy(family="sm", warmup_epochs=0), progress=False)
    assert res.status == "diverged" and math.isnan(res.epochs[-1]["val_loss"])


def test_a_singular_system_in_an_epochs_validation_keeps_its_training_numbers(monkeypatch):
    """Training finished, then validation raised: the record keeps the training pass."""

    def singular(*args, **kw):
        raise torch.linalg.LinAlgError("singular system")

    trial = Trial(toy(epochs=1, warmup_epochs=0))
    monkeypatch.setattr(trial_mod, "evaluate_split", singular)
    rec = trial.run_epoch()
    assert trial.status == rec["status"] in ("solver_failed", "diverged")
    assert math.isfinite(rec["train_loss"]) and 0 <= rec["train_acc"] <= 1
    assert math.isnan(rec["val_loss"]) and "singular system" in rec["error"]
