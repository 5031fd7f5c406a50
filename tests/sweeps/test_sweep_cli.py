"""Bad input is refused before Ray starts; plans, trial ids and the search space (no Ray)."""

from __future__ import annotations

import json
import math
import os

import optuna
import pytest

from ibnn.results import Storage
from ibnn.sweep import runner
from ibnn.sweep.cluster.resources import trial_resources
from ibnn.sweep.command_line.args import parse_args
from ibnn.sweep.plan import build_plan
from ibnn.sweep.search.choice import load_search_choice
from ibnn.sweep.spec import SweepContext, SweepSpec, expand_grid
from ibnn.sweep.trials.identity import flatten_config, trial_id
from ibnn.trial.config import TrialConfig
from tests.sweeps.conftest import FAKE, REPO, SCRIPTS, load_script


@pytest.fixture
def no_ray(monkeypatch):
    """Fails the test if the runner gets as far as starting or joining Ray."""

    def refuse(*_):
        raise AssertionError("Ray was started although the input should have been refused")

    monkeypatch.setattr(runner.ray_session, "init_ray", refuse)


def run_main(name, argv, capsys):
    spec = load_script(name).SPEC
    code = None
    try:
        code = runner.main(spec, [*argv, "--trial-module", FAKE])
    except SystemExit as exit_:
        code = exit_.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["--seeds", "0"], "--seeds must be >= 1, got 0"),
        (["--dataset", "mnist"], "invalid choice: 'mnist'"),
        (["--epochs", "two"], "--epochs must be an integer, got 'two'"),
        (["--lam", "0.06"], "the bound is 0.05, but got --lam=0.06"),
        (["--lam", "0.2", "--p", "5"], "the bound is 0.1, but got --lam=0.2"),
        (["--p", "0"], "--p must be > 0, got 0"),
        (["--w-extent", "4"], "positive odd int, but got --w-extent=4"),
        (["--families", "sm,foo"], "--families must be a comma-separated subset"),
        (["--from-search", "x", "--lam", "-1"], "--from-search cannot be combined"),
        (["--gpus-per-trial", "-0.5"], "--gpus-per-trial must be >= 0"),
        (["--name", "a/b"], "--name must match"),
        (["--max-train", "0"], "--max-train must be >= 1, got 0"),
    ],
)
def test_bad_flags_exit_2_with_a_clear_message(argv, message, capsys, no_ray, tmp_path):
    code, err = run_main("expressivity", [*argv, "--storage", str(tmp_path)], capsys)
    assert code == 2
    assert message in err
    assert not any(tmp_path.iterdir())  # nothing written


def test_search_and_toy2d_have_their_own_flags(capsys, no_ray, tmp_path):
    code, err = run_main("search", ["--lam", "-1", "--storage", str(tmp_path)], capsys)
    assert code == 2 and "unrecognized arguments: --lam" in err
    code, err = run_main("toy2d", ["--dataset", "fmnist", "--storage", str(tmp_path)], capsys)
    assert code == 2 and "invalid choice: 'fmnist'" in err


def test_a_folder_of_another_sweep_is_refused_and_untouched(capsys, no_ray, tmp_path):
    folder = tmp_path / "expressivity_fmnist"
    folder.mkdir()
    other = {
        "sweep": "expressivity_fmnist",
        "experiment": "memorization",
        "dataset": "fmnist",
        "fingerprint": "0123456789abcdef",
        "spec": {"experiment": "memorization"},
    }
    (folder / "sweep.json").write_text(json.dumps(other))
    (folder / "epochs").mkdir()
    (folder / "epochs" / "t.parquet").write_bytes(b"data")
    before = {p: p.stat().st_mtime_ns for p in folder.rglob("*")}
    for extra in ([], ["--resume"]):
        code, err = run_main(
            "expressivity", ["--smoke", "--storage", str(tmp_path), *extra], capsys
        )
        assert code == 2
        assert "holds another sweep's results (experiment 'memorization'" in err
        assert "Nothing was changed" in err
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*")} == before
    assert (folder / "epochs" / "t.parquet").read_bytes() == b"data"


def test_a_foreign_folder_without_sweep_json_is_refused(capsys, no_ray, tmp_path):
    (tmp_path / "memorization_fmnist").mkdir()
    (tmp_path / "memorization_fmnist" / "notes.txt").write_text("mine")
    code, err = run_main("memorization", ["--smoke", "--storage", str(tmp_path)], capsys)
    assert code == 2 and "holds files but no sweep.json" in err
    assert os.listdir(tmp_path / "memorization_fmnist") == ["notes.txt"]


def test_resume_with_nothing_to_resume_is_refused(capsys, no_ray, tmp_path):
    code, err = run_main("robustness", ["--smoke", "--storage", str(tmp_path), "--resume"], capsys)
    assert code == 2 and "--resume: nothing to resume in" in err
    assert not any(tmp_path.iterdir())


def test_from_search_needs_a_finished_search(capsys, no_ray, tmp_path):
    code, err = run_main("expressivity", ["--from-search", str(tmp_path / "nope")], capsys)
    assert code == 2 and "no sweep.json there" in err


def fabricate_search(root, dataset, entries):
    """A search folder (sweep.json + trials table) without running one; entries are
    (configuration index, seed, objective, status)."""
    st = Storage(str(root))
    st.write_json("search_x/sweep.json", {"kind": "search", "experiment": "search"})
    for c, seed, objective, status in entries:
        cfg = TrialConfig(
            dataset=dataset,
            family="ibnn",
            seed=seed,
            lam=-0.1 * (c + 1),
            p=10.0,
            w_extent=3 if c % 2 else None,
            lam_trainable=bool(c % 2),
        ).to_dict()
        row = {
            "family": "ibnn",
            "dataset": dataset,
            "seed": seed,
            "status": status,
            "epochs_done": 3,
            "objective": objective,
            "config_json": json.dumps(cfg),
            "updated": "now",
            "search_number": c,
        }
        st.write_rows("search_x", "trials", f"t{c}s{seed}", [row], {"experiment": "search"})
    return str(root / "search_x")


def test_from_search_picks_the_best_median_among_configurations_judged_on_two_seeds(tmp_path):
    path = fabricate_search(
        tmp_path,
        "fmnist",
        [
            (0, 1000, 0.9, "ok"),  # best single draw, never confirmed: not eligible
            (1, 1000, 0.8, "ok"),
            (1, 1001, 0.7, "ok"),
            (1, 1002, 0.75, "ok"),  # median 0.75
            (2, 1000, 0.85, "ok"),
            (2, 1001, 0.6, "ok"),
            (2, 1002, 0.65, "ok"),  # median 0.65
            (3, 1000, 0.95, "diverged"),
            (3, 1001, 0.99, "ok"),  # one ok seed
            (4, 1000, math.nan, "ok"),
            (4, 1001, 0.99, "ok"),  # one finite seed
        ],
    )
    neuron, info = load_search_choice(path)
    assert neuron == {"lam": -0.2, "p": 10.0, "w_extent": 3, "lam_trainable": True}
    assert info["trial_id"] == "t1s1000" and info["search_number"] == 1
    assert info["seeds"] == [1000, 1001, 1002] and info["objective"] == 0.75
    assert info["objectives"] == [0.8, 0.7, 0.75]


def test_from_search_on_another_dataset_or_unconfirmed_is_refused(capsys, no_ray, tmp_path):
    path = fabricate_search(tmp_path / "a", "svhn", [(0, 1000, 0.7, "ok"), (0, 1001, 0.7, "ok")])
    code, err = run_main(
        "expressivity", ["--from-search", path, "--storage", str(tmp_path)], capsys
    )
    assert code == 2 and "searched dataset 'svhn', but --dataset is 'fmnist'" in err
    path = fabricate_search(tmp_path / "b", "fmnist", [(0, 1000, 0.7, "ok")])
    code, err = run_main(
        "expressivity", ["--from-search", path, "--storage", str(tmp_path)], capsys
    )
    assert code == 2 and "no configuration has finished with status 'ok' on 2 or more" in err
    assert not (tmp_path / "expressivity_fmnist").exists()


def test_an_invalid_trial_config_is_refused_naming_the_trial(capsys, no_ray, tmp_path):
    spec = SweepSpec(name="bad", description="x", axes=lambda ctx: {"train_fraction": (0.5, 2.0)})
    code = runner.main(spec, ["--smoke", "--storage", str(tmp_path), "--trial-module", FAKE])
    err = capsys.readouterr().err
    assert code == 2
    assert "train_fraction=2.0 is invalid: must lie in (0, 1]" in err and "'seed': 0" in err


def test_expand_grid_counts_seeds_per_family_and_dedupes_sm():
    axes = {"lam": (-1.0, -0.1), "p": (5.0, 10.0), "C": (1, 2)}
    v = expand_grid(("sm", "ibnn"), {"sm": 3, "ibnn": 2}, axes, {"p": 10.0, "w_extent": 3})
    sm = [x for x in v if x["family"] == "sm"]
    ibnn = [x for x in v if x["family"] == "ibnn"]
    assert len(ibnn) == 2 * 2 * 2 * 2  # seeds x lam x p x C
    assert len(sm) == 3 * 2  # seeds x C: the neuron axes do not apply to SM
    assert all(x["lam"] == 0.0 and x["w_extent"] is None and x["p"] == 10.0 for x in sm)
    assert {x["seed"] for x in sm} == {0, 1, 2} and {x["seed"] for x in ibnn} == {0, 1}
    assert v[0]["seed"] == 0 and v[-1]["seed"] == 2  # seed-major order


def test_plan_seeds_ids_and_resolved_defaults():
    spec = load_script("expressivity").SPEC
    args = parse_args(spec, ["--seeds", "7", "--trial-module", FAKE])
    plan = build_plan(spec, args)
    assert args.ibnn_seeds == 5 and args.epochs == 80 and args.name == "expressivity_fmnist"
    widths = len(spec.axes(SweepContext("fmnist"))["C"])
    assert plan.expected_trials == widths * (7 + 5) == len(set(plan.trial_ids))
    again = build_plan(spec, parse_args(spec, ["--seeds", "7", "--data-root", "/elsewhere"]))
    assert again.trial_ids == plan.trial_ids  # runtime keys do not change ids
    assert again.fingerprint == plan.fingerprint
    other = build_plan(spec, parse_args(spec, ["--seeds", "7", "--epochs", "3"]))
    assert set(other.trial_ids).isdisjoint(plan.trial_ids)
    cfg = TrialConfig.from_dict(flatten_config({**plan.constants, "variant": plan.variants[0]}))
    assert trial_id(cfg.to_dict()) == plan.trial_ids[0] and cfg.L == 1 and cfg.epochs == 80


def test_smoke_plans_of_every_replication_script_validate():
    for name in (s for s in SCRIPTS if s != "search"):
        spec = load_script(name).SPEC
        plan = build_plan(spec, parse_args(spec, ["--smoke"]))
        assert 1 <= plan.expected_trials <= 4, name
        assert plan.constants["max_train"] <= 300 and plan.constants["warmup_epochs"] == 1
    ibnn = build_plan(load_script("toy2d").SPEC, parse_args(load_script("toy2d").SPEC, []))
    assert {v["family"] for v in ibnn.variants} == {"sm", "ibnn"} and ibnn.sweep == "toy2d"


def test_max_train_and_max_test_override_the_smoke_sizes():
    spec = load_script("expressivity").SPEC
    plan = build_plan(
        spec, parse_args(spec, ["--smoke", "--max-train", "3000", "--max-test", "900"])
    )
    assert plan.constants["max_train"] == 3000 and plan.constants["max_test"] == 900
    full = build_plan(spec, parse_args(spec, []))
    assert "max_train" not in full.constants or full.constants["max_train"] is None
    smoke = build_plan(spec, parse_args(spec, ["--smoke"]))
    assert set(smoke.trial_ids).isdisjoint(plan.trial_ids)  # the size is part of the trial


def test_search_space_keeps_lam_below_the_uniqueness_bound():
    mod = load_script("search")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    signs = set()
    for _ in range(300):
        trial = study.ask()
        params = {**mod.space(trial), **trial.params}
        assert -10.0 <= params["lam"] < 1.0 / (2.0 * params["p"])
        assert trial.params["lam"] == params["lam"]  # lam itself is a parameter of the study
        assert params["w_extent"] in mod.W_EXTENTS and params["lam_trainable"] in (False, True)
        signs.add(params["lam"] < 0)
        flat = flatten_config(
            {"dataset": "fmnist", "family": "ibnn", **params}, mod.SPEC.search_only_keys
        )
        TrialConfig.from_dict(flat)  # valid for the real trial
        study.tell(trial, 0.5)
    assert signs == {True, False}


def test_default_gpu_share_is_a_quarter_card_when_the_cluster_has_gpus(monkeypatch):
    import ray

    spec = load_script("expressivity").SPEC
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 16.0, "GPU": 1.0})
    assert trial_resources(1.0, None) == ({"cpu": 1.0, "gpu": 0.25}, "auto")
    args = parse_args(spec, ["--gpus-per-trial", "0.5", "--cpus-per-trial", "2"])
    assert trial_resources(args.cpus_per_trial, args.gpus_per_trial) == (
        {"cpu": 2.0, "gpu": 0.5},
        "auto",
    )
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 2.0})
    assert trial_resources(1.0, None) == ({"cpu": 1.0}, "cpu")
    args = parse_args(spec, ["--gpus-per-trial", "0"])
    assert trial_resources(args.cpus_per_trial, args.gpus_per_trial) == ({"cpu": 1.0}, "cpu")


def test_seeds_help_states_what_a_verdict_and_a_1_point_effect_need():
    from ibnn.sweep.command_line.args import build_parser

    spec = load_script("expressivity").SPEC
    text = " ".join(build_parser(spec).format_help().split())
    assert "at least 5 seeds run by both arms" in text and "80% power" in text


def test_set_and_axis_override_the_plan():
    spec = load_script("expressivity").SPEC
    base = build_plan(spec, parse_args(spec, ["--smoke", "--trial-module", FAKE]))
    argv = ["--smoke", "--set", "lr_peak=0.02", "--axis", "C=3", "--trial-module", FAKE]
    plan = build_plan(spec, parse_args(spec, argv))
    assert plan.constants["lr_peak"] == 0.02 and {v["C"] for v in plan.variants} == {3}
    assert set(plan.trial_ids).isdisjoint(base.trial_ids)  # other trials, other ids
    assert plan.fingerprint != base.fingerprint  # a resume with other overrides is refused
    two = build_plan(spec, parse_args(spec, [*argv, "--axis", "epochs=1,2"]))
    assert sorted({v["epochs"] for v in two.variants}) == [1, 2]  # any field can be an axis
    memo = load_script("memorization").SPEC
    plan = build_plan(memo, parse_args(memo, ["--axis", "label_noise=0,0.4"]))
    assert sorted({v["label_noise"] for v in plan.variants}) == [0, 0.4]


@pytest.mark.parametrize(
    ("name", "argv", "message"),
    [
        ("expressivity", ["--set", "lr_peak"], "--set must be KEY=VALUE, got 'lr_peak'"),
        ("expressivity", ["--set", "widht=3"], "--set widht: not a field of TrialConfig"),
        ("expressivity", ["--set", "lr_peak=-1"], "TrialConfig.lr_peak=-1 is invalid"),
        ("expressivity", ["--set", "lam=0.01"], "varies 'lam'; use --lam/--p/--w-extent"),
        ("expressivity", ["--set", "C=2"], "this sweep varies 'C'; use --axis instead"),
        ("expressivity", ["--axis", "C=1,1"], "--axis C lists a value twice"),
        ("expressivity", ["--axis", "C=two"], "TrialConfig.C='two' is invalid"),
        ("expressivity", ["--axis", "seed=1,2"], "--axis seed: use --seeds / --ibnn-seeds"),
        ("expressivity", ["--set", "seed=1"], "varies 'seed'; use --seeds / --ibnn-seeds"),
        ("expressivity", ["--set", "family=ibnn"], "varies 'family'; use --families instead"),
        ("expressivity", ["--set", "dataset=svhn"], "--set dataset: use --dataset instead"),
        ("expressivity", ["--set", "epochs=2"], "--set epochs: use --epochs instead"),
        ("expressivity", ["--axis", "dataset=svhn"], "--axis dataset: use --dataset instead"),
        ("memorization", ["--axis", "label_noise=0,1.5"], "label_noise=1.5 is invalid"),
        ("search", ["--set", "p=5"], "this sweep varies 'p'; use --space instead"),
        ("search", ["--space", "w_extent=4"], "--space w_extent=4: '4' not in"),
        ("search", ["--space", "width=3"], "--space names ['width'], which the search space"),
        ("search", ["--storage", "s3://b/x"], "a search on object storage (s3://b/x) needs"),
        ("search", ["--study-storage", "redis://h/0"], "--study-storage: --study-storage must"),
        ("search", ["--seeds", "1001"], "--seeds and --ibnn-seeds must be <= 1000"),
    ],
)
def test_overrides_are_refused_with_the_rule(capsys, no_ray, tmp_path, name, argv, message):
    storage = [] if "--storage" in argv else ["--storage", str(tmp_path)]
    code, err = run_main(name, [*argv, *storage], capsys)
    assert code == 2 and message in err, err


def test_space_pins_a_search_parameter(tmp_path):
    spec = load_script("search").SPEC
    argv = ["--space", "w_extent=none", "--storage", str(tmp_path), "--trial-module", FAKE]
    plan = build_plan(spec, parse_args(spec, argv))
    assert plan.space_fixed == {"w_extent": None}
    assert plan.spec_record["search"]["space_fixed"] == {"w_extent": None}
    assert plan.study_storage == f"sqlite:///{tmp_path}/search_fmnist/optuna.db"


def test_every_experiment_of_the_vocabulary_has_its_script_and_no_other():
    names = {p.stem for p in (REPO / "sweeps").glob("*.py")}
    assert names == set(SCRIPTS)


def test_resume_names_a_changed_set_as_typed_and_another_experiments_folder(
    capsys, no_ray, tmp_path
):
    storage = ["--storage", str(tmp_path)]
    folder = tmp_path / "expressivity_fmnist"
    folder.mkdir()
    started = ["--smoke", *storage, "--trial-module", FAKE]
    (folder / "sweep.json").write_text(json.dumps({"experiment": "expressivity", "args": started}))
    code, err = run_main(
        "expressivity", ["--smoke", *storage, "--resume", "--set", "lr_peak=0.02"], capsys
    )
    assert (
        code == 2 and "these changed flags would be ignored: --set (none -> lr_peak=0.02)." in err
    )
    into = ["--smoke", *storage, "--name", "expressivity_fmnist", "--resume"]
    code, err = run_main("memorization", into, capsys)
    assert code == 2 and "--name (" not in err  # not a flag change: another experiment
    assert f"{folder} holds another sweep's results (experiment 'expressivity'" in err
