"""``--protocol smoke|cpu|paper``: named trial sizes, seeds and epochs, overridden by flags."""

from __future__ import annotations

import dataclasses
import importlib.util
import subprocess
import sys

import pytest

from ibnn.sweep import build_plan, parse_args
from ibnn.sweep.protocols import PROTOCOLS, SIZED, get_protocol, protocol_table
from ibnn.trial import TrialConfig
from tests.sweeps.conftest import REPO, load_script

FAKE = "tests.sweeps.fake_trial"


def plan_of(script: str, *argv: str):
    spec = load_script(script).SPEC
    args = parse_args(spec, [*argv, "--trial-module", FAKE])
    return args, build_plan(spec, args)


@pytest.mark.parametrize("script", ["expressivity", "learning_speed", "search"])
def test_cpu_protocol_sizes_every_trial(script):
    cpu = PROTOCOLS["cpu"]
    args, plan = plan_of(script, "--protocol", "cpu")
    for key, value in cpu.trial.items():
        assert plan.constants[key] == value, key
    assert args.protocol == "cpu" and not args.smoke
    assert args.epochs == cpu.epochs_of.get(script, cpu.epochs)
    if plan.kind == "grid":
        seeds = {(v["family"], v["seed"]) for v in plan.variants}
        assert {s for f, s in seeds if f == "sm"} == set(range(cpu.seeds))
        assert {s for f, s in seeds if f == "ibnn"} == set(range(cpu.ibnn_seeds))
    else:
        assert plan.expected_trials == cpu.search_trials


def test_explicit_flags_win_over_the_protocol():
    args, plan = plan_of(
        "expressivity",
        "--protocol",
        "cpu",
        *("--seeds", "7", "--ibnn-seeds", "3", "--epochs", "4", "--max-train", "900"),
        *("--set", "n_eval=40", "--axis", "C=2"),
    )
    assert (args.seeds, args.ibnn_seeds, args.epochs) == (7, 3, 4)
    assert plan.constants["max_train"] == 900 and plan.constants["n_eval"] == 40
    assert plan.constants["max_val"] == PROTOCOLS["cpu"].trial["max_val"]  # the rest stays
    assert len(plan.variants) == 7 + 3


def test_smoke_flag_is_the_smoke_protocol():
    a, smoke = plan_of("memorization", "--smoke")
    b, named = plan_of("memorization", "--protocol", "smoke")
    assert a == dataclasses.replace(b, argv=a.argv)
    assert smoke.fingerprint == named.fingerprint and smoke.trial_ids == named.trial_ids
    assert a.smoke and a.protocol == "smoke"


def test_paper_protocol_is_the_default_and_the_papers_recipe():
    args, plan = plan_of("learning_speed")
    _, named = plan_of("learning_speed", "--protocol", "paper")
    assert plan.fingerprint == named.fingerprint
    assert args.protocol == "paper" and args.epochs == 80 and args.seeds == 20
    assert args.ibnn_seeds == 5
    assert "max_train" not in plan.constants and "max_val" not in plan.constants
    assert TrialConfig().p == 10.0 and TrialConfig().warmup_epochs == 2


def test_protocols_reduce_the_experiment_axes():
    plans = {name: plan_of("data_fraction", "--protocol", name)[1] for name in PROTOCOLS}
    fractions = {name: {v["train_fraction"] for v in p.variants} for name, p in plans.items()}
    assert len(fractions["smoke"]) < len(fractions["cpu"]) < len(fractions["paper"]) == 10
    assert 1.0 in fractions["cpu"] and 0.1 in fractions["cpu"]


def test_smoke_and_another_protocol_are_refused_together():
    out = subprocess.run(
        [sys.executable, str(REPO / "sweeps/expressivity.py"), "--smoke", "--protocol", "cpu"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert out.returncode == 2
    assert "--smoke means --protocol smoke, but --protocol is 'cpu'" in out.stderr
    with pytest.raises(ValueError, match="--protocol must be one of smoke, cpu, paper, got 'gpu'"):
        get_protocol("gpu")


def test_the_protocol_table_lists_each_size_and_every_experiment():
    specs = [load_script(n).SPEC for n in ("expressivity", "learning_speed", "search")]
    defaults = {f.name: f.default for f in dataclasses.fields(TrialConfig) if f.name in SIZED}
    table = protocol_table(specs, defaults).splitlines()
    assert table[0] == "| protocol | `smoke` | `cpu` | `paper` |"
    rows = {line.split(" | ")[0][2:]: line.split(" | ")[1:] for line in table[2:]}
    assert rows["`max_train`"] == ["256", "6,000", "all |"]
    assert rows["learning_speed: main epochs"] == ["2", "20", "80 |"]
    assert rows["search: Optuna trials"] == ["3", "24", "40 |"]
    assert rows["expressivity: SM / IBNN seeds"] == ["1 / 1", "5 / 5", "10 / 5 |"]


def test_docs_list_the_protocols_as_the_code_defines_them():
    path = REPO / "scripts/findings_readme.py"
    spec = importlib.util.spec_from_file_location("findings_readme", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    table = module.protocol_section([module.load_spec(n) for n in module.EXPERIMENTS])
    docs = (REPO / "docs/sweeps.md").read_text()
    start = docs.index("<!-- protocol table: generated")
    listed = docs[docs.index("\n", start) + 1 : docs.index("<!-- end of protocol table -->")]
    assert listed.strip() == table, (
        "docs/sweeps.md's protocol table differs from ibnn/sweep/protocols.py: regenerate it "
        "with python scripts/findings_readme.py --protocol-table"
    )
