"""The trainable outside Ray: per-epoch rewrite + report with checkpoint, continuing from a
checkpoint, and a restart from scratch when the checkpoint is gone (tune.report and
tune.get_checkpoint replaced by recorders)."""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import pytest
from ray import tune

from ibnn.results import read_table
from ibnn.sweep.spec import SMOKE
from ibnn.sweep.trials.identity import TrialSettings, flatten_config
from ibnn.sweep.trials.trainable import make_trainable
from tests.sweeps.conftest import FAKE

CONFIG = {
    "dataset": "fmnist",
    "epochs": 3,
    "warmup_epochs": 1,
    "evals": ["clean"],
    "variant": {"family": "ibnn", "seed": 2, "lam": -0.5, "C": 2},
}


class FakeTune:
    """Stands in for tune.report / tune.get_checkpoint; keeps copies of reported checkpoints."""

    def __init__(self, root, resume_from=None):
        self.root = root
        self.reports = []
        self.resume_from = resume_from

    def get_checkpoint(self):
        return (
            None
            if self.resume_from is None
            else tune.Checkpoint.from_directory(str(self.resume_from))
        )

    def report(self, metrics, checkpoint=None):
        kept = None
        if checkpoint is not None:
            kept = self.root / f"ckpt{len(self.reports)}"
            shutil.copytree(checkpoint.path, kept)
        self.reports.append((metrics, kept))


@pytest.fixture
def settings(tmp_path):
    return TrialSettings(
        storage=str(tmp_path / "st"), sweep="sw", experiment="exp", trial_module=FAKE
    )


def run(monkeypatch, tmp_path, settings, resume_from=None, name="a", config=CONFIG):
    (tmp_path / name).mkdir()
    fake = FakeTune(tmp_path / name, resume_from)
    monkeypatch.setattr(tune, "report", fake.report)
    monkeypatch.setattr(tune, "get_checkpoint", fake.get_checkpoint)
    make_trainable(settings)(config)
    return fake


def test_every_epoch_is_written_then_reported_with_a_checkpoint(monkeypatch, tmp_path, settings):
    fake = run(monkeypatch, tmp_path, settings)
    assert [m["epochs_done"] for m, _ in fake.reports] == [1, 2, 3, 4]
    assert all(
        m["epochs_total"] == 4 and m["trial_id"] == fake.reports[0][0]["trial_id"]
        for m, _ in fake.reports
    )
    assert [m["status"] for m, _ in fake.reports] == ["running"] * 3 + ["ok"]
    epochs = read_table(settings.storage, "sw", "epochs").to_pandas()
    assert epochs["epoch"].tolist() == [0, 1, 2, 3] and set(epochs["experiment"]) == {"exp"}
    assert set(epochs["C"]) == {2} and set(epochs["seed"]) == {2}
    trials = read_table(settings.storage, "sw", "trials").to_pandas()
    assert trials["status"].tolist() == ["ok"] and trials["epochs_done"].tolist() == [4]
    assert read_table(settings.storage, "sw", "evals").num_rows == 1
    assert make_trainable(settings).__name__ == "ibnn_trial"


def test_continues_from_a_checkpoint_and_rewrites_the_files(monkeypatch, tmp_path, settings):
    first = run(monkeypatch, tmp_path, settings)
    full = read_table(settings.storage, "sw", "epochs").to_pandas()
    after_epoch_1 = first.reports[1][1]  # checkpoint holding two records (epochs 0 and 1)
    second = run(monkeypatch, tmp_path, settings, resume_from=after_epoch_1, name="b")
    assert [m["epochs_done"] for m, _ in second.reports] == [3, 4]  # epochs 2 and 3 only
    again = read_table(settings.storage, "sw", "epochs").to_pandas()
    assert again["epoch"].tolist() == [0, 1, 2, 3]
    assert again["val_acc"].tolist() == full["val_acc"].tolist()
    assert again["wall_s"].tolist() == [0.0, 0.0, 1.0, 1.0]  # fake: checkpoint loads so far


def test_a_missing_checkpoint_restarts_the_trial(monkeypatch, tmp_path, settings, capsys):
    run(monkeypatch, tmp_path, settings)
    full = read_table(settings.storage, "sw", "epochs").to_pandas()
    fake = run(monkeypatch, tmp_path, settings, resume_from=tmp_path / "gone", name="b")
    assert [m["epochs_done"] for m, _ in fake.reports] == [1, 2, 3, 4]
    assert "unreadable" in capsys.readouterr().err
    again = read_table(settings.storage, "sw", "epochs").to_pandas()
    assert again["val_acc"].tolist() == full["val_acc"].tolist()


def test_restored_final_checkpoint_reports_nothing_and_keeps_files(monkeypatch, tmp_path, settings):
    first = run(monkeypatch, tmp_path, settings)
    fake = run(monkeypatch, tmp_path, settings, resume_from=first.reports[-1][1], name="b")
    assert fake.reports == []
    assert read_table(settings.storage, "sw", "epochs").num_rows == 4


def test_a_rerun_search_trial_keeps_its_ending_and_records_its_cost(
    monkeypatch, tmp_path, settings
):
    search = {**CONFIG, "search_number": 7}
    first = run(monkeypatch, tmp_path, settings, config=search)
    trials = read_table(settings.storage, "sw", "trials").to_pandas()
    assert trials["search_number"].tolist() == [7] and trials["status"].tolist() == ["ok"]
    assert trials["solver_iters"].iloc[0] > 0 and trials["wall_s"].iloc[0] >= 0
    assert {"wall_s", "solver_iters", "seed"} <= set(first.reports[-1][0])
    # Tune re-runs it from an older checkpoint (its snapshot predates the ending): no training,
    # one report of the recorded ending, files untouched.
    again = run(
        monkeypatch, tmp_path, settings, resume_from=first.reports[1][1], name="b", config=search
    )
    assert [(m["status"], m["epochs_done"], c) for m, c in again.reports] == [("ok", 4, None)]
    assert again.reports[0][0]["objective"] == trials["objective"].iloc[0]
    assert read_table(settings.storage, "sw", "epochs").num_rows == 4


def test_flatten_config_merges_the_variant_and_drops_search_helpers():
    flat = flatten_config({**CONFIG, "lam_sign": "x", "search_number": 3}, ("lam_sign",))
    assert "variant" not in flat and "lam_sign" not in flat and "search_number" not in flat
    assert flat["family"] == "ibnn" and flat["C"] == 2


def test_a_config_key_outside_the_trial_config_is_refused(settings):
    bad = {**CONFIG, "_fail_at_epoch": 1}
    with pytest.raises(ValueError, match=r"unknown TrialConfig keys \['_fail_at_epoch'\]"):
        make_trainable(settings)(bad)


def test_a_gpu_that_torch_cannot_use_is_said_on_the_console(monkeypatch, capsys):
    import ray
    import torch

    from ibnn.sweep.trials import session

    on_cpu = SimpleNamespace(device=torch.device("cpu"))  # a Trial's device, as it chose it
    on_gpu = SimpleNamespace(device=torch.device("cuda"))
    monkeypatch.setattr(ray, "is_initialized", lambda: True)
    monkeypatch.setattr(ray, "get_gpu_ids", lambda: [0])  # Ray assigned a card
    session.say_if_gpu_unused("t1", on_cpu)
    assert "trial t1: Ray assigned it GPU [0]" in capsys.readouterr().err
    session.say_if_gpu_unused("t1", on_gpu)  # torch uses the card: nothing to say
    monkeypatch.setattr(ray, "get_gpu_ids", lambda: [])  # a CPU trial on the CPU
    session.say_if_gpu_unused("t1", on_cpu)
    assert capsys.readouterr().err == ""


PACK_CONFIG = {
    **SMOKE,
    "dataset": "fmnist",
    "epochs": 2,
    "device": "cpu",
    "evals": ["clean"],
    "lam": 0.0,
    "pack": [{"family": "sm", "seed": 0}, {"family": "sm", "seed": 1}],
}


def test_a_packed_trial_with_an_unreadable_checkpoint_restarts_as_a_solo_one_does(
    monkeypatch, tmp_path, capsys
):
    """The one epoch loop: a pack (real ibnn.trial members) continues from its checkpoint,
    and restarts from its first epoch, with the same rows, when that checkpoint is gone."""
    settings = TrialSettings(storage=str(tmp_path / "st"), sweep="sw", experiment="exp")
    first = run(monkeypatch, tmp_path, settings, config=PACK_CONFIG)
    assert [m["epochs_done"] for m, _ in first.reports] == [1, 2, 3]
    assert all(m["members"] == 2 for m, _ in first.reports)
    full = read_table(settings.storage, "sw", "epochs").to_pandas()
    assert len(full) == 6 and full.groupby("trial_id").size().tolist() == [3, 3]
    resumed = run(
        monkeypatch,
        tmp_path,
        settings,
        resume_from=first.reports[0][1],
        name="b",
        config=PACK_CONFIG,
    )
    assert [m["epochs_done"] for m, _ in resumed.reports] == [2, 3]  # from its checkpoint
    capsys.readouterr()
    gone = run(
        monkeypatch, tmp_path, settings, resume_from=tmp_path / "gone", name="c", config=PACK_CONFIG
    )
    assert [m["epochs_done"] for m, _ in gone.reports] == [1, 2, 3]  # from its first epoch
    assert "unreadable" in capsys.readouterr().err
    again = read_table(settings.storage, "sw", "epochs").to_pandas()
    key = ["trial_id", "epoch"]
    assert again.sort_values(key)["train_loss"].tolist() == pytest.approx(
        full.sort_values(key)["train_loss"].tolist(), rel=1e-6
    )
    trials = read_table(settings.storage, "sw", "trials").to_pandas()
    assert trials["status"].tolist() == ["ok", "ok"] and trials["epochs_done"].tolist() == [3, 3]


def test_trial_ids_ignore_runtime_fields_and_added_fields_at_their_old_meaning():
    from ibnn.sweep.trials.identity import trial_id
    from ibnn.trial import TrialConfig

    cfg = TrialConfig(family="ibnn", lam=-1.0, seed=3).to_dict()
    older = {k: v for k, v in cfg.items() if k not in ("warm_start", "max_val")}
    assert trial_id(older) == trial_id(cfg)  # as a sweep started before those fields recorded it
    assert trial_id({**cfg, "warm_start": False, "eval_batch_size": 7}) == trial_id(cfg)
    assert trial_id({**cfg, "max_val": 2000}) != trial_id(cfg)  # a capped validation set
    assert trial_id({**cfg, "seed": 4}) != trial_id(cfg)
