"""A trial's speed levers leave its numbers where they were (real Fashion-MNIST): per-sample
warm starts and the forward-only evaluation against cold, autograd-path solves; the
validation cap."""

from __future__ import annotations

import pytest
import torch

from ibnn.trial import Trial, TrialConfig
from ibnn.trial.data import as_float

pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same'")

SMALL = dict(dataset="fmnist", family="ibnn", max_train=384, max_val=256, max_test=256,
             warmup_epochs=1, epochs=3, batch_size=64, eval_batch_size=128, device="cpu",
             lr_peak=0.05)  # fmt: skip
METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc")
TOL = 5e-6  # the layer's float32 tolerance
REL = 1e-4  # how far a metric may move: the solves agree to TOL, SGD carries it on


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # several threads on a shared machine make small FFTs crawl
    yield
    torch.set_num_threads(n)


def _run(cfg: TrialConfig) -> tuple[list[dict], list[tuple]]:
    """The records and each main epoch's (train, val, test) solver statistics."""
    trial = Trial(cfg)
    stats = []
    while not trial.done:
        rec = trial.run_epoch()
        if rec["phase"] == "train":
            stats.append(tuple(p.solver for p in trial.passes))
    return trial.records, stats


@pytest.mark.parametrize("setting", [dict(lam=-1.0), dict(lam=-1.0, w_extent=5)],
                         ids=["global", "w5"])  # fmt: skip
def test_warm_starts_move_no_number_and_save_newton_steps(fmnist_root, setting):
    cfg = TrialConfig(data_root=fmnist_root, **SMALL, **setting)
    warm, warm_stats = _run(cfg)
    cold, cold_stats = _run(cfg.replace(warm_start=False))
    assert [r["status"] for r in warm] == ["running"] * 3 + ["ok"]
    for w, c in zip(warm, cold, strict=True):
        moved = {k: (w[k], c[k]) for k in METRICS if abs(w[k] - c[k]) > REL * max(1, abs(c[k]))}
        assert not moved, f"epoch {w['epoch']}: warm vs cold differ: {moved}"
    for passes in warm_stats:  # every batch of every pass at the tolerance
        for s in passes:
            assert s["solver_residual"] <= TOL and s["nonconverged_frac"] == 0.0
    # from the second main epoch on every pass starts warm: fewer Newton steps
    steps = lambda stats: sum(s["solver_iters"] for p in stats[1:] for s in p)  # noqa: E731
    assert steps(warm_stats) < steps(cold_stats)


def test_evaluation_equals_the_autograd_forward_and_the_validation_cap_holds(fmnist_root):
    cfg = TrialConfig(data_root=fmnist_root, **SMALL, lam=-1.0)
    trial = Trial(cfg)
    trial.run_epoch()
    trial.run_epoch()
    s = trial.splits
    assert len(s.y_val) == 256
    full = Trial(cfg.replace(max_val=None))
    assert len(full.splits.y_val) == 6000 and torch.equal(full.splits.x_train, s.x_train)
    val = trial.passes[1]
    model = trial.model.eval()
    x = as_float(s.x_val).requires_grad_()  # the autograd path: a solve with its backward ready
    out = torch.cat([model(x[i : i + 128]) for i in range(0, 256, 128)])
    loss = float(torch.nn.functional.cross_entropy(out.detach(), s.y_val))
    acc = float((out.argmax(1) == s.y_val).float().mean())
    assert val.loss == pytest.approx(loss, rel=1e-5) and val.acc == acc
