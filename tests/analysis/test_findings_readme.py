"""scripts/findings_readme.py: the findings README from generated tables only."""

from __future__ import annotations

import importlib.util
import shutil
from types import SimpleNamespace

import pandas as pd
import pytest
from analysis_synthetic import REPO, build_expressivity, build_robustness
from test_analysis_cli import _run

from ibnn.sweep import build_plan, parse_args


@pytest.fixture(scope="module")
def readme_module():
    spec = importlib.util.spec_from_file_location(
        "findings_readme", REPO / "scripts/findings_readme.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _section(text: str, title: str) -> str:
    body = text.split(f"## {title}\n\n", 1)[1]
    return body.split("\n## ", 1)[0].strip()


def test_the_readme_quotes_the_generated_tables_and_counts_each_sweep(tmp_path, readme_module):
    out = tmp_path / "cpu"
    build_expressivity(out)
    build_robustness(out)
    names = sorted(p.name for p in out.iterdir() if (p / "sweep.json").exists())
    (out / "wall_times.tsv").write_text(
        "sweep\tstarted_utc\tseconds\texit\n"
        f"{names[0]}\t2026-01-01T00:00:00Z\t600\t130\n"
        f"{names[0]}\t2026-01-01T01:00:00Z\t1200\t0\n"
    )
    (out / "reading.md").write_text("A hand-written reading.")
    done = _run(str(out), "--out", str(tmp_path / "d.html"), "--markdown", str(out / "tables.md"))
    assert done.returncode == 0, done.stderr
    assert readme_module.main([str(out)]) == 0
    text = (out / "README.md").read_text()

    # the claims and figures exactly as python -m analysis --markdown wrote them
    assert (out / "tables.md").read_text().strip() in text
    assert _section(text, "The reading") == "A hand-written reading."
    protocol = _section(text, "The protocol")
    assert protocol.startswith("| protocol | `smoke` | `cpu` | `paper` |")
    # one row per sweep, its trials counted from the Parquet tables
    rows = [r for r in _section(text, "The experiments").splitlines()[2:]]
    order = readme_module.EXPERIMENTS
    expected = sorted(names, key=lambda n: [e in n for e in order].index(True))
    assert [r.split(" | ")[0][2:] for r in rows] == expected
    first = next(r for r in rows if r.startswith(f"| {names[0]} |"))
    assert first.endswith("| 30 min (2 runs) |")
    # the paper-size plan: the paper protocol's own trial counts
    plan = _section(text, "The paper-size plan")
    spec = readme_module.load_spec("expressivity")
    paper = build_plan(spec, parse_args(spec, ["--protocol", "paper"]))
    n_sm = sum(v["family"] == "sm" for v in paper.variants)
    row = next(r for r in plan.splitlines() if r.startswith("| expressivity |"))
    assert f"ibnn {len(paper.variants) - n_sm}, sm {n_sm}" in row and "| 82 |" in row


def test_a_missing_folder_is_refused_in_one_line(tmp_path, readme_module, capsys):
    assert readme_module.main([str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err.strip().endswith("nowhere is not a folder")
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_packed_trials_cost_their_share_of_the_packs_epoch(readme_module):
    args = ["--protocol", "cpu", "--storage", "/nowhere", "--name", "r", "--dataset", "fmnist"]
    args += ["--axis", "lam=-0.3,-1,-3"]
    spec = readme_module.load_spec("robustness")
    plan = build_plan(spec, parse_args(spec, args))
    sweep = SimpleNamespace(kind="robustness", meta={"args": args})
    sizes = readme_module.pack_sizes(sweep)
    # on CPU the 5 SM trials share one pack; every IBNN trial runs alone
    family = {tid: v["family"] for v, tid in zip(plan.variants, plan.trial_ids, strict=True)}
    assert sorted(sizes) == sorted(plan.trial_ids)
    assert {sizes[t] for t in sizes if family[t] == "sm"} == {5}
    assert {sizes[t] for t in sizes if family[t] == "ibnn"} == {1}
    # every member records the pack's epoch time: 5 s for the pack is 1 s per SM trial
    rows = [{"trial_id": t, "family": family[t], "epoch": 1, "wall_s": 5.0} for t in sizes]
    sweep.epochs = pd.DataFrame(rows)
    sweep.meta["spec"] = {"constants": {"max_train": 600, "max_val": 200, "max_test": 200}}
    cost = readme_module.cost_per_epoch([sweep])
    assert cost.keys() == {"robustness"}
    assert cost["robustness"] == pytest.approx({"sm": 1.0 / 1000, "ibnn": 5.0 / 1000})
    # the paper-size plan takes an experiment's own cost where its neuron is fixed, else the
    # highest measured per family
    both = {**cost, "learning_speed": {"sm": 0.5 / 1000, "ibnn": 9.0 / 1000}}
    assert readme_module.cost_for("robustness", both, searched=False) == cost["robustness"]
    assert readme_module.cost_for("robustness", both, searched=True) == {"sm": 1e-3, "ibnn": 9e-3}
    assert readme_module.cost_for("data_fraction", both, searched=False)["ibnn"] == 9e-3


def test_the_paper_plan_keeps_a_campaign_sweeps_axes_not_its_storage(readme_module):
    args = ["--protocol", "cpu", "--storage", "/nowhere", "--name", "d", "--dataset", "fmnist"]
    args += ["--from-search", "findings/cpu/search_fmnist", "--axis", "lam=-0.3,-1", "--resume"]
    kept, searched = readme_module.paper_args(SimpleNamespace(meta={"args": args}))
    assert kept == ["--dataset", "fmnist", "--axis", "lam=-0.3,-1"] and searched
    assert readme_module.paper_args(None) == ([], False)
    # the recorded search folder is the repository's, whichever folder this script runs from
    resolved = readme_module._from_repo(args)
    assert resolved[resolved.index("--from-search") + 1] == str(REPO / "findings/cpu/search_fmnist")
    assert readme_module._from_repo(["--from-search", "s3://b/s"]) == ["--from-search", "s3://b/s"]


def test_the_confirmed_choice_against_sm_takes_each_arms_base_condition(readme_module, monkeypatch):
    rows = []
    for arm, accs in (("SM", (0.80, 0.82, 0.84)), ("IBNN (λ=0.01, p=20)", (0.81, 0.83, 0.85))):
        for seed, acc in enumerate(accs):
            base = {"arm": arm, "status": "ok", "dataset": "fmnist", "seed": seed, "C": 3}
            rows.append({**base, "train_fraction": 1.0, "val_acc": acc, "test_acc": acc - 0.01})
            rows.append({**base, "train_fraction": 0.1, "val_acc": 0.1, "test_acc": 0.1})
    searched = SimpleNamespace(
        name="df", kind="data_fraction", meta={"neuron_source": {"source": "search"}}
    )
    default = SimpleNamespace(
        name="rb", kind="robustness", meta={"neuron_source": {"source": "default"}}
    )
    monkeypatch.setattr(readme_module, "_trials", lambda s: pd.DataFrame(rows))
    table = readme_module.against_sm_section([default, searched]).splitlines()
    assert table[2:] == [
        "| df | IBNN (λ=0.01, p=20) | 3 | 83.00 | 82.00 |",
        "| df | SM | 3 | 82.00 | 81.00 |",
    ]
    assert "No replication sweep" in readme_module.against_sm_section([default])
