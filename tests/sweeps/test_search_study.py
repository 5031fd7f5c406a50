"""The search's study without Ray: a restored searcher re-runs orphans and ignores trials that
already ended, the budget is exact, storages and --space restrictions are checked."""

from __future__ import annotations

import pickle

import optuna
import pytest

from ibnn.sweep.search.searcher import StudySearcher
from ibnn.sweep.search.study import (
    check_space_restriction,
    default_concurrency,
    open_storage,
    redact,
    startup_trials,
)
from tests.sweeps.conftest import load_script

SPACE = load_script("search").space


def searcher(tmp_path, trials=4):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    return StudySearcher(SPACE, url, "s", seed=3, trials=trials)


def result(value, status="ok", step=2):
    return {"objective": value, "status": status, "training_iteration": step, "epochs_done": step}


def test_a_restored_searcher_reruns_orphans_and_keeps_finished_results(tmp_path):
    live = searcher(tmp_path)
    a = live.suggest("a")
    live.suggest("b")
    live.on_trial_result("a", result(0.6, "running", 1))
    snapshot = pickle.dumps(live)  # what Tune saved: a and b handed out, nothing finished
    state = live.get_state()
    live.on_trial_complete("a", result(0.7))
    c = live.suggest("c")  # asked after the snapshot; then the driver is SIGKILLed
    live.on_trial_complete("b", result(0.5, "running"))  # b pruned after the snapshot

    restored = pickle.loads(snapshot)
    assert restored._study is None  # the study itself is never pickled
    restored.set_state(state)
    # Tune re-runs a and b from older checkpoints: their first results stand, nothing raises.
    restored.on_trial_result("a", result(0.1, "running", 1))
    restored.on_trial_complete("a", result(0.2))
    restored.on_trial_complete("b", result(0.9))
    assert [t.number for t in restored.orphans()] == [2]
    again = restored.suggest("c2")  # the orphan, with its parameters, before any new trial
    assert again == c
    d = restored.suggest("d")
    assert d["search_number"] == 3 and d != a
    assert restored.suggest("e") == StudySearcher.FINISHED  # the budget of 4 is spent
    restored.on_trial_complete("c2", result(0.8))
    restored.on_trial_complete("d", result(0.3, "solver_failed"))

    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'study.db'}")
    states = [t.state.name for t in study.trials]
    assert states == ["COMPLETE", "PRUNED", "COMPLETE", "FAIL"]
    assert [t.value for t in study.trials[:1]] == [0.7]
    assert study.trials[1].intermediate_values == {}  # b only reported after its snapshot
    assert study.trials[0].intermediate_values == {1: 0.6}
    assert study.trials[3].user_attrs["status"] == "solver_failed"
    assert {"lam", "p", "w_extent", "lam_trainable"} <= set(study.trials[0].params)


def test_journal_and_rdb_storages_and_redaction(tmp_path):
    from optuna.storages import JournalStorage, RDBStorage

    assert isinstance(open_storage(str(tmp_path / "s.journal")), JournalStorage)
    assert isinstance(open_storage(f"sqlite:///{tmp_path / 's.db'}"), RDBStorage)
    with pytest.raises(ValueError, match="must be an RDB URL .* got 'redis://u:\\*\\*\\*@h/0'"):
        open_storage("redis://u:secret@h/0")
    assert redact("postgresql://ibnn:pw@db:5432/x") == "postgresql://ibnn:***@db:5432/x"
    # A journal study is shared by two handles, as two drivers on NFS would share it.
    one = optuna.create_study(study_name="j", storage=open_storage(str(tmp_path / "j.log")))
    one.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    two = optuna.load_study(study_name="j", storage=open_storage(str(tmp_path / "j.log")))
    assert len(two.trials) == 2


def test_default_concurrency_lets_tpe_see_most_results():
    for trials in (1, 6, 12, 40, 200):
        c, start = default_concurrency(trials), startup_trials(trials)
        assert 1 <= c <= max(1, -(-trials // 10)) and start <= 10
        # Proposals after the random start see all but at most c - 1 earlier trials.
        assert trials - start >= 0.7 * trials or trials < 10
    assert default_concurrency(40) == 4 and startup_trials(40) == 10


def test_space_restriction_pins_values_and_refuses_bad_ones():
    check_space_restriction(SPACE, {"w_extent": None, "lam_sign": "negative"})
    with pytest.raises(ValueError, match=r"never suggests; its parameters: \['lam', 'lam_frac"):
        check_space_restriction(SPACE, {"width": 3})
    with pytest.raises(ValueError, match="--space w_extent=4: '4' not in"):
        check_space_restriction(SPACE, {"w_extent": 4})
    bad = "lam_magnitude=50.0: Fixed parameter 'lam_magnitude' with value 50.0 is out of range"
    with pytest.raises(ValueError, match=bad):
        check_space_restriction(SPACE, {"lam_sign": "negative", "lam_magnitude": 50.0})
