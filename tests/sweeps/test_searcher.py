"""A configuration the sampler proposes again is not trained again (sweeps.searcher, "Rules").

Real Optuna studies in a journal file (what a sweep uses), driven through the StudyDriver API the way
the Ray searcher drives it: ``ask`` for a trial to train, then ``tell_result``. "Training" here is a
deterministic function of the parameters, as CPU training is.
"""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from sweeps.run import study_storage
from sweeps.searcher import DUPLICATE_OF, FAIL_REASON, TRIAL_KEY, StudyDriver

OBJECTIVES = ["compression", "seg.miou"]
optuna.logging.set_verbosity(optuna.logging.WARNING)


def _study(path, sampler):
    return optuna.create_study(storage=study_storage(path), study_name="dup", load_if_exists=True,
                               directions=["maximize", "maximize"], sampler=sampler)


def _suggest(values):
    return lambda trial: {"method": "disparse_static", "arch": trial.suggest_categorical("arch", values)}


def _train(asked) -> dict:
    """Deterministic metrics of a configuration (identical parameters give identical metrics)."""
    score = float(len(asked.config["arch"]))
    return {"compression": score, "seg.miou": 1.0 / score, "final": 1.0}


def _run(driver, trained: list) -> None:
    """What the sweep does: train every trial ``ask`` gives until it gives none."""
    while (asked := driver.ask()) is not None:
        trained.append(dict(asked.params))
        assert driver.tell_result(asked.key, _train(asked)) == "complete"


def _check_study(study, trained_keys) -> None:
    """Each COMPLETE trial has its own parameters; each duplicate names a trained trial with its parameters."""
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    params = [tuple(sorted(t.params.items())) for t in complete]
    assert len(params) == len(set(params)), params
    by_key = {t.user_attrs[TRIAL_KEY]: t for t in complete}
    assert set(by_key) == set(trained_keys)
    for t in study.trials:
        if DUPLICATE_OF in t.user_attrs:
            assert t.state == TrialState.FAIL and "not trained again" in t.user_attrs[FAIL_REASON]
            original = by_key[t.user_attrs[DUPLICATE_OF]]
            assert t.params == original.params and t.user_attrs[TRIAL_KEY] != original.user_attrs[TRIAL_KEY]


@pytest.mark.parametrize("sampler", ["random", "nsga2"])
def test_a_two_value_space_trains_each_value_once_then_stops_as_exhausted(tmp_path, sampler):
    make = {"random": lambda: optuna.samplers.RandomSampler(seed=0),
            "nsga2": lambda: optuna.samplers.NSGAIISampler(seed=0, population_size=2)}[sampler]
    study = _study(tmp_path / "optuna.journal", make())
    notes: list[str] = []
    driver = StudyDriver(study, _suggest(["small", "deeplab_resnet34"]), OBJECTIVES, 5, note=notes.append)

    trained: list[dict] = []
    _run(driver, trained)

    assert sorted(p["arch"] for p in trained) == ["deeplab_resnet34", "small"]   # each once, not 5 trainings
    assert driver.exhausted and driver.remaining() == 0 and driver.ask() is None
    assert len(driver.done_keys()) == 2
    duplicates = driver.duplicates()
    assert len(duplicates) >= driver.max_duplicates and set(duplicates.values()) <= driver.done_keys()
    assert not set(duplicates) & driver.done_keys()
    _check_study(study, driver.done_keys())
    assert "search space looks exhausted" in notes[-1] and "2 of 5 trials" in notes[-1]
    from sweeps.run import state_counts      # the end-of-sweep summary: duplicates are no failures
    assert state_counts(study) == {"COMPLETE": 2, "DUPLICATE": len(duplicates)}


def test_the_budget_counts_trainings_only_and_a_running_trial_is_not_started_twice(tmp_path):
    """A proposal equal to a trial still running is dropped too; the sweep still trains ``n_trials``."""
    study = _study(tmp_path / "optuna.journal", optuna.samplers.RandomSampler(seed=3))
    notes: list[str] = []
    driver = StudyDriver(study, _suggest(["a", "bb", "ccc", "dddd"]), OBJECTIVES, 3, note=notes.append)
    running = driver.ask()
    study.enqueue_trial(dict(running.params))          # the sampler's next proposal repeats it
    second = driver.ask()
    assert second.params != running.params and driver.remaining() == 1
    dropped = driver.duplicates()                      # the enqueued one, and any random repeat of it
    assert "t0001" in dropped and set(dropped.values()) == {running.key} and second.key not in dropped
    assert len(notes) == 1 and notes[0].startswith("not trained again (same parameters as an earlier "
                                                   f"trial): t0001 = {running.key}")

    trained = [dict(running.params), dict(second.params)]
    for asked in (running, second):
        driver.tell_result(asked.key, _train(asked))
    _run(driver, trained)
    assert len(trained) == 3 and len({p["arch"] for p in trained}) == 3
    assert len(driver.done_keys()) == 3 and not driver.exhausted
    _check_study(study, driver.done_keys())


def test_of_two_equal_enqueued_trials_the_first_trains_and_the_second_is_dropped(tmp_path):
    study = _study(tmp_path / "optuna.journal", optuna.samplers.RandomSampler(seed=0))
    driver = StudyDriver(study, _suggest(["a", "bb", "ccc"]), OBJECTIVES, 2, note=lambda line: None)
    for arch in ("ccc", "a", "ccc"):
        study.enqueue_trial({"arch": arch})
    first, second = driver.ask(), driver.ask()        # a copy waiting behind t0000 does not drop t0000
    assert (first.key, first.params) == ("t0000", {"arch": "ccc"})
    assert (second.key, second.params) == ("t0001", {"arch": "a"})
    for asked in (first, second):
        driver.tell_result(asked.key, _train(asked))
    assert driver.ask() is None and driver.duplicates() == {}       # the budget is spent: t0002 never asked

    more = StudyDriver(study, _suggest(["a", "bb", "ccc"]), OBJECTIVES, 3, note=lambda line: None)
    third = more.ask()                                 # t0002 (the copy) first: dropped, then the sampler
    assert more.duplicates()["t0002"] == "t0000" and third.params == {"arch": "bb"}
    assert more.done_keys() == {"t0000", "t0001"} and more.remaining() == 0


def test_a_resumed_driver_keeps_the_rule(tmp_path):
    """After a kill: a new driver on the reopened study reruns the interrupted trial (same key, same
    parameters: not a duplicate) but never a configuration that finished before the kill."""
    path = tmp_path / "optuna.journal"
    values = ["a", "bb", "ccc"]
    first = StudyDriver(_study(path, optuna.samplers.RandomSampler(seed=0)), _suggest(values), OBJECTIVES, 5,
                        note=lambda line: None)
    done = first.ask()
    first.tell_result(done.key, _train(done))
    killed = first.ask()                               # left RUNNING: the driver dies here

    study = _study(path, optuna.samplers.RandomSampler(seed=1))   # what --resume opens (reseeded)
    notes: list[str] = []
    resumed = StudyDriver(study, _suggest(values), OBJECTIVES, 5, note=notes.append)
    assert resumed.recover_interrupted() == [killed.key]
    rerun = resumed.ask()
    assert (rerun.key, rerun.params) == (killed.key, killed.params)
    resumed.tell_result(rerun.key, _train(rerun))
    trained: list[dict] = []
    _run(resumed, trained)

    assert [p["arch"] for p in trained] == sorted(set(values) - {done.params["arch"], killed.params["arch"]})
    assert resumed.exhausted and resumed.done_keys() == {done.key, killed.key} | set(_keys_of(study, trained))
    assert resumed.duplicates() and set(resumed.duplicates().values()) <= resumed.done_keys()
    _check_study(study, resumed.done_keys())

    again = StudyDriver(_study(path, optuna.samplers.RandomSampler(seed=2)), _suggest(values), OBJECTIVES, 5,
                        note=notes.append)
    assert again.recover_interrupted() == [] and again.remaining() == 2    # duplicates count for nothing
    assert again.ask() is None and again.exhausted


def test_a_driver_killed_while_dropping_a_duplicate_does_not_rerun_it(tmp_path):
    study = _study(tmp_path / "optuna.journal", optuna.samplers.RandomSampler(seed=0))
    driver = StudyDriver(study, _suggest(["a", "bb"]), OBJECTIVES, 2, note=lambda line: None)
    done = driver.ask()
    driver.tell_result(done.key, _train(done))
    bare = study.ask({"arch": optuna.distributions.CategoricalDistribution(["a", "bb"])})
    bare.set_user_attr(TRIAL_KEY, "t0001")
    bare.set_user_attr(DUPLICATE_OF, done.key)         # marked, then the driver died before telling FAIL

    resumed = StudyDriver(study, _suggest(["a", "bb"]), OBJECTIVES, 2, note=lambda line: None)
    assert resumed.recover_interrupted() == []
    assert study.trials[bare.number].state == TrialState.FAIL
    assert not [t for t in study.trials if t.state == TrialState.WAITING]
    assert resumed.done_keys() == {done.key} and resumed.remaining() == 1


def _keys_of(study, trained: list[dict]) -> list[str]:
    return [t.user_attrs[TRIAL_KEY] for t in study.trials
            if t.state == TrialState.COMPLETE and dict(t.params) in trained]
