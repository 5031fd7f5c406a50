"""Trial packs on real Fashion-MNIST: each member's records equal its solo run."""

from __future__ import annotations

import dataclasses
import math

import pytest

from ibnn.trial import Trial, TrialConfig, run_trial
from ibnn.trial.pack import TrialPack, run_pack

pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same'")

# packs solve cold (no per-sample warm starts), so their solo runs do too here
SMALL = dict(dataset="fmnist", max_train=192, max_test=64, val_fraction=0.002, epochs=2,
             warmup_epochs=1, batch_size=64, eval_batch_size=64, device="cpu",
             lr_peak=0.05, warm_start=False)  # fmt: skip
METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc",
           "solver_iters", "solver_iters_max", "solver_residual", "nonconverged_frac",
           "lam_learned")  # fmt: skip


def _same(a: float, b: float, key: str) -> bool:
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    if key == "solver_residual":  # a residual below the tolerance, known to ~1e-6
        return abs(a - b) <= 2e-6
    return abs(a - b) <= 2e-4 * max(1.0, abs(b))


def _assert_records_equal(packed: list[dict], solo: list[dict]) -> None:
    assert len(packed) == len(solo)
    for p, s in zip(packed, solo, strict=True):
        assert (p["epoch"], p["phase"], p["status"], p["selected"]) == (
            s["epoch"], s["phase"], s["status"], s["selected"])  # fmt: skip
        bad = {k: (p[k], s[k]) for k in METRICS if not _same(p[k], s[k], k)}
        assert not bad, f"epoch {s['epoch']}: packed vs solo differ: {bad}"


@pytest.mark.parametrize(
    "family, members",
    [
        ("sm", [(0, 0.0, 10.0), (1, 0.0, 10.0), (2, 0.0, 10.0)]),
        # two members share an equation (one solve), one has its own lam and p
        ("ibnn", [(0, -0.5, 10.0), (1, -0.5, 10.0), (2, 0.04, 5.0)]),
    ],
)
def test_each_packed_trial_equals_its_solo_run(fmnist_root, family, members):
    cfgs = [TrialConfig(family=family, seed=s, lam=lam, p=p, data_root=fmnist_root, **SMALL)
            for s, lam, p in members]  # fmt: skip
    packed = run_pack(cfgs, progress=False)
    for cfg, res in zip(cfgs, packed, strict=True):
        solo = run_trial(cfg, progress=False)
        assert res.status == solo.status == "ok"
        _assert_records_equal(res.epochs, solo.epochs)
        assert [e["acc"] for e in res.evals] == pytest.approx([e["acc"] for e in solo.evals])


def test_trainable_lam_members_learn_their_own_lam(fmnist_root):
    cfgs = [TrialConfig(family="ibnn", seed=s, lam=-0.3, lam_trainable=True,
                        data_root=fmnist_root, **SMALL) for s in (3, 4)]  # fmt: skip
    packed = run_pack(cfgs, progress=False)
    learned = []
    for cfg, res in zip(cfgs, packed, strict=True):
        solo = run_trial(cfg, progress=False)
        _assert_records_equal(res.epochs, solo.epochs)
        learned.append(res.epochs[-1]["lam_learned"])
    assert learned[0] != learned[1] and all(lam != -0.3 for lam in learned)


def _float_images(trial: Trial) -> None:
    x = trial.splits.x_train.float() / 255.0
    trial.splits = dataclasses.replace(trial.splits, x_train=x)


def test_a_diverging_member_leaves_the_pack_and_the_others_go_on(fmnist_root):
    cfgs = [TrialConfig(family="sm", seed=s, data_root=fmnist_root, **SMALL) for s in (0, 1, 2)]
    trials = [Trial(cfg) for cfg in cfgs]
    for t in trials:  # float inputs for all; member 1 gets a NaN image: its loss turns NaN
        _float_images(t)
    trials[1].splits.x_train[5] = float("nan")
    pack = TrialPack(trials)
    while not pack.done:
        pack.run_epoch()
    assert trials[1].status == "diverged" and len(trials[1].records) == 1
    assert math.isnan(trials[1].records[0]["train_loss"])
    for k in (0, 2):
        alone = Trial(cfgs[k])
        _float_images(alone)
        while not alone.done:
            alone.run_epoch()
        assert trials[k].status == "ok"
        _assert_records_equal(trials[k].records, alone.records)


def test_members_checkpoint_and_resume_alone_or_packed(fmnist_root, tmp_path):
    cfgs = [TrialConfig(family="ibnn", seed=s, lam=0.04, data_root=fmnist_root, **SMALL)
            for s in (5, 6)]  # fmt: skip
    pack = TrialPack([Trial(cfg) for cfg in cfgs])
    pack.run_epoch()
    pack.run_epoch()  # warm-up and the first main epoch
    paths = [tmp_path / f"{k}.pt" for k in range(2)]
    for t, path in zip(pack.trials, paths, strict=True):
        t.save(str(path))  # a member's checkpoint is a solo trial's checkpoint
    resumed = [Trial(cfg) for cfg in cfgs]
    for t, path in zip(resumed, paths, strict=True):
        t.load(str(path))
    solo = resumed[1]  # member 1 continues alone, member 0 in a pack of one
    rest = TrialPack(resumed[:1])
    while not rest.done:
        rest.run_epoch()
    while not solo.done:
        solo.run_epoch()
    while not pack.done:
        pack.run_epoch()
    for k, t in enumerate(resumed):
        _assert_records_equal(t.records, pack.trials[k].records)
    optimizer = pack.trials[0].optimizer.state_dict()["state"]
    assert optimizer and all("momentum_buffer" in s for s in optimizer.values())


def test_trials_that_differ_in_the_epoch_loop_are_refused(fmnist_root):
    a = TrialConfig(family="sm", seed=0, data_root=fmnist_root, **SMALL)
    with pytest.raises(ValueError, match=r"share `batch_size`.*batch_size=\[64, 32\]"):
        TrialPack([Trial(a), Trial(a.replace(seed=1, batch_size=32))])
    b = Trial(a.replace(seed=1))
    b.run_epoch()
    with pytest.raises(ValueError, match=r"same epoch.*epochs_done=\[0, 1\]"):
        TrialPack([Trial(a), b])
