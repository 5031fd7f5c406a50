"""Trial packs through the sweep runner: a packed grid writes what an unpacked one writes."""

from __future__ import annotations

import json

import pytest

from ibnn.results import read_table
from ibnn.sweep import runner
from ibnn.sweep.packing import _chunks, member_configs, pack_variants
from tests.sweeps.conftest import load_script

SEEDS = ["--seeds", "3", "--ibnn-seeds", "3"]


def test_chunks_are_balanced_and_packs_only_join_trials_that_share_the_loop():
    assert [len(c) for c in _chunks(list(range(10)), 8)] == [5, 5]
    assert [len(c) for c in _chunks(list(range(17)), 8)] == [6, 5, 6]
    variants = [{"family": f, "lam": lam, "seed": s, "label_noise": n, "C": c}
                for f, lam in (("sm", 0.0), ("ibnn", -1.0)) for c in (2, 3) for n in (0.0, 0.4)
                for s in range(3)]  # fmt: skip
    constants = {"dataset": "fmnist", "epochs": 1}
    packs = pack_variants(variants, constants, 8)
    assert sorted(len(p) for p in packs) == [6, 6, 6, 6]  # by (family, C): seeds x noise
    for p in packs:
        assert len({(v["family"], v["C"]) for v in p}) == 1
    assert pack_variants(variants, constants, 1) == [[v] for v in variants]
    assert len(pack_variants(variants, constants, 8, "tests.sweeps.fake_trial")) == 24
    config = {"dataset": "fmnist", "pack": packs[0][:2]}
    assert member_configs(config) == [{"dataset": "fmnist", "variant": v} for v in packs[0][:2]]


@pytest.mark.slow
def test_a_packed_sweep_writes_each_trial_what_an_unpacked_sweep_writes(
    ray_session, tmp_path, capsys
):
    spec = load_script("memorization").SPEC
    common = ["--smoke", *SEEDS, "--lam", "0.04", "--storage", str(tmp_path)]
    assert runner.main(spec, [*common, "--name", "packed", "--pack", "3"]) == 0
    out = capsys.readouterr().out
    assert runner.main(spec, [*common, "--name", "alone", "--pack", "1"]) == 0
    assert "packs" in out and "4/4 packs done" in out  # (sm, ibnn) x label noise (0, 0.4)
    tables = {}
    for name in ("packed", "alone"):
        tables[name] = {t: read_table(str(tmp_path), name, t).to_pandas()
                        for t in ("epochs", "evals", "trials")}  # fmt: skip
        meta = json.loads((tmp_path / name / "sweep.json").read_text())
        assert meta["counts"] == {"ok": 12, "failed": 0, "total": 12}
    packed, alone = tables["packed"], tables["alone"]
    assert set(packed["trials"]["trial_id"]) == set(alone["trials"]["trial_id"])
    assert len(packed["trials"]) == 12 and set(packed["trials"]["status"]) == {"ok"}
    keys = ["trial_id", "epoch"]
    a = packed["epochs"].sort_values(keys).reset_index(drop=True)
    b = alone["epochs"].sort_values(keys).reset_index(drop=True)
    assert len(a) == len(b) and (a[keys] == b[keys]).all().all()
    for col in ("train_loss", "val_loss", "test_loss", "val_acc", "test_acc", "solver_iters"):
        expected = pytest.approx(b[col].to_numpy(), rel=2e-4, abs=2e-4, nan_ok=True)
        assert a[col].to_numpy() == expected, col
    ea = packed["evals"].sort_values(["trial_id", "attack"])["acc"].to_numpy()
    eb = alone["evals"].sort_values(["trial_id", "attack"])["acc"].to_numpy()
    assert ea == pytest.approx(eb, abs=2e-3)
