"""The results contract end to end: real trials on real Fashion-MNIST, written by the sweep's
own trainable, read back by ``analysis`` into its derived results and claims."""

from __future__ import annotations

import subprocess
import sys

import pyarrow.parquet as pq
import pytest
from ray import tune

from analysis.load import load_storage
from analysis.report import compute_report
from analysis.stats import BootstrapSpec
from ibnn.results.schema import SCHEMAS, STATUSES, TABLES
from ibnn.sweep.trials.identity import TrialSettings
from ibnn.sweep.trials.trainable import make_trainable
from tests.sweeps.test_sweep_trainable import FakeTune

SWEEP = "expressivity_fmnist"
CONSTANTS = {
    "dataset": "fmnist",
    "data_root": "~/.cache/ibnn/data",
    "epochs": 1,
    "warmup_epochs": 1,
    "max_train": 400,
    "max_val": 100,  # not the 6,000 images of the default validation split every epoch
    "max_test": 200,
    "n_eval": 100,
    "batch_size": 64,
    "evals": ["clean"],
}


@pytest.mark.slow
def test_real_trials_through_the_writer_reach_the_derived_results(monkeypatch, tmp_path):
    settings = TrialSettings(storage=str(tmp_path / "st"), sweep=SWEEP, experiment="expressivity")
    variants = [
        {"family": family, "C": c, "seed": seed, **({"lam": 0.04} if family == "ibnn" else {})}
        for family in ("sm", "ibnn")
        for c in (1, 2)
        for seed in (0, 1)
    ]
    for i, variant in enumerate(variants):
        fake = FakeTune(tmp_path / f"t{i}")
        (tmp_path / f"t{i}").mkdir()
        monkeypatch.setattr(tune, "report", fake.report)
        monkeypatch.setattr(tune, "get_checkpoint", fake.get_checkpoint)
        make_trainable(settings)({**CONSTANTS, "variant": variant})

    # Every file holds exactly the contract's schema.
    folder = tmp_path / "st" / SWEEP
    for table in ("epochs", "evals", "trials"):
        files = sorted((folder / table).glob("*.parquet"))
        assert len(files) == len(variants)
        assert all(pq.read_schema(f).remove_metadata() == SCHEMAS[table] for f in files)

    sweeps = load_storage(str(tmp_path / "st"))
    assert [s.kind for s in sweeps] == ["expressivity"] and not sweeps[0].warnings
    data = sweeps[0]
    assert set(data.trials["status"]) <= set(STATUSES) and set(data.trials["status"]) == {"ok"}
    assert len(data.epochs) == 2 * len(variants)  # one warm-up and one main epoch each
    report = compute_report(sweeps, BootstrapSpec(n_resamples=200))
    curves = report.frames["expressivity_curves"]
    assert set(curves["family"]) == {"sm", "ibnn"} and set(curves["C"]) == {1, 2}
    assert curves["median"].between(0.1, 1.0).all() and (curves["n"] == 2).all()
    claims = report.claims[report.claims["kind"] == "expressivity"]
    assert len(claims) >= 1 and claims["effect"].notna().all()
    # Two seeds per arm are too few for a calibrated interval: the verdict must say so.
    assert claims["verdict"].str.startswith("inconclusive").all()


def test_the_contract_and_vocabulary_import_neither_torch_nor_ray():
    code = (
        "import sys, ibnn.results, ibnn.vocab, analysis;"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'ray'));"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_table_has_its_row_keys_and_status_columns_in_its_schema():
    from ibnn.results.schema import REQUIRED, ROW_KEYS

    for table in TABLES:
        names = set(SCHEMAS[table].names)
        assert set(ROW_KEYS[table]) <= names and REQUIRED[table] <= names
    assert {"status"} <= set(SCHEMAS["epochs"].names) & set(SCHEMAS["trials"].names)
