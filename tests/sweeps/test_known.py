"""Objectives known before training (sweeps.known) and the proposals the driver skips because of them
(sweeps.searcher, "Rules"): real run_trial, real Optuna journal studies, a real sweep into MLflow."""

from __future__ import annotations

import io

import optuna
import pytest
from optuna.trial import TrialState

from sweeps.budgets import parse_budgets
from sweeps.known import TOLERANCE, known_metrics, known_violation
from sweeps.run import study_storage
from sweeps.searcher import KNOWN_METRICS, SKIPPED, TRIAL_KEY, StudyDriver

from sweep_helpers import TINY_WORKLOAD, load_study, sqlite_uri, trial_runs, write_space

optuna.logging.set_verbosity(optuna.logging.WARNING)
TINY = {**TINY_WORKLOAD, "tasks": ["seg", "normal"], "arch": "small", "width": 8, "steps": 2, "eval_every": 2}


@pytest.mark.parametrize("extra", [
    {"method": "disparse_static", "sparsity": 0.8},
    {"method": "snip", "sparsity": 0.63, "cutoff": 5},
    {"method": "disparse_dynamic", "sparsity": 0.9, "cutoff": 6, "dynamic": {"delta_t": 1, "grow": "exact"}},
    {"method": "disparse_pretrained", "sparsity": 0.7, "cutoff": 4, "pretrain_steps": 1},
])
def test_the_known_compression_is_what_training_reports(extra):
    from disparse_core.trial import run_trial

    config = {**TINY, **extra}
    known = known_metrics(config)
    result = run_trial(config)
    assert abs(known["compression"] - result["compression"]) < TOLERANCE / 10, (known, result["compression"])
    assert known["sparsity"] == extra["sparsity"]


def test_nothing_is_known_where_the_config_does_not_fix_it():
    assert known_metrics({**TINY, "method": "dense"}) == {}
    assert known_metrics({**TINY, "method": "disparse_dynamic", "sparsity": 0.9, "dynamic": {"grow": "union"}}) == {}
    assert known_metrics({**TINY, "method": "snip", "sparsity": 0.9, "workload": "no-such"}) == {}


def test_a_budget_on_a_known_metric_is_judged_beyond_the_tolerance_only():
    budgets = parse_budgets({"compression": ">=0.8", "seg.miou": "-5%"})
    assert known_violation(budgets, {"compression": 0.7}).startswith("compression>=0.8: known 0.7")
    assert known_violation(budgets, {"compression": 0.8 - TOLERANCE / 2}) is None
    assert known_violation(budgets, {"compression": 0.95}) is None
    assert known_violation(parse_budgets({"sparsity": ">=0.95"}), {"sparsity": 0.9}) is not None


def test_the_driver_skips_proposals_that_break_a_known_budget_without_spending_the_budget(tmp_path):
    budgets = parse_budgets({"compression": ">=0.8"})
    study = optuna.create_study(storage=study_storage(tmp_path / "optuna.journal"), study_name="skip",
                                directions=["maximize", "maximize"], sampler=optuna.samplers.RandomSampler(seed=1))
    skipped, lines = [], []

    def suggest(trial):
        return {**TINY, "method": "snip", "sparsity": trial.suggest_float("sparsity", 0.5, 0.95)}

    driver = StudyDriver(study, suggest, ["compression", "delta_m"], 5, known=known_metrics,
                         skip=lambda k: known_violation(budgets, k), on_skip=lambda *a: skipped.append(a),
                         note=lines.append)
    trained = []
    while (asked := driver.ask()) is not None:
        trained.append(asked)
        known = driver.study.trials[asked.number].user_attrs[KNOWN_METRICS]
        driver.tell_result(asked.key, {"compression": known["compression"], "delta_m": -1.0, "final": 1.0})
    assert len(trained) == 5 and all(a.config["sparsity"] >= 0.8 for a in trained)
    assert skipped, "seed 1 proposes sparsities below 0.8"
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    assert {t.user_attrs[TRIAL_KEY] for t in pruned} == {s[0] for s in skipped} == set(driver.skipped())
    for t in pruned:
        assert t.params["sparsity"] < 0.8 and t.user_attrs[SKIPPED].startswith("compression>=0.8: known")
    assert driver.remaining() == 0 and len(driver.done_keys()) == 5
    assert sum(line.startswith("not trained (") for line in lines) == len(skipped)


def test_a_space_whose_every_proposal_breaks_the_budget_ends_as_exhausted(tmp_path):
    study = optuna.create_study(storage=study_storage(tmp_path / "optuna.journal"), study_name="all",
                                directions=["maximize", "maximize"], sampler=optuna.samplers.RandomSampler(seed=0))
    lines = []
    driver = StudyDriver(study, lambda t: {**TINY, "method": "snip", "sparsity": t.suggest_float("sparsity", 0.5, 0.6)},
                         ["compression", "delta_m"], 3, known=known_metrics, max_skips=7, note=lines.append,
                         skip=lambda k: known_violation(parse_budgets({"compression": ">=0.9"}), k))
    assert driver.ask() is None and driver.exhausted and driver.remaining() == 0
    assert len(driver.skipped()) == 7 and "known metrics break a budget" in lines[-1]


@pytest.mark.slow
def test_a_sweep_records_skipped_trials_as_pruned_with_the_reason_in_optuna_and_mlflow(ray_local, tmp_path, store):
    from sweeps.run import TAG_SKIPPED, RunOptions, make_plan, run_sweep

    space = write_space(tmp_path, budgets={"compression": ">=0.75"}, trials=2,
                        sampler={"type": "random", "seed": 0},
                        parameters={"method": {"value": "snip"},
                                    "sparsity": {"distribution": "uniform", "low": 0.5, "high": 0.9}})
    plan = make_plan(RunOptions(space=str(space), results_dir=str(tmp_path / "r"), tracking_uri=store))
    out = io.StringIO()
    summary = run_sweep(plan, out=out)
    assert summary.states["COMPLETE"] == 2 and summary.states["SKIPPED"] >= 1, (summary.states, out.getvalue())
    study = load_study(tmp_path / "r", plan.sweep_id)
    skipped = {t.user_attrs[TRIAL_KEY]: t for t in study.trials if SKIPPED in t.user_attrs}
    runs = {r.data.tags["disparse.trial_key"]: r for r in trial_runs(store, plan.sweep_id)}
    for key, t in skipped.items():
        assert t.state == TrialState.PRUNED
        run = runs[key]
        assert run.info.status == "FINISHED" and run.data.tags[TAG_SKIPPED] == t.user_attrs[SKIPPED]
        assert run.data.tags["disparse.early_stopped"] == "true"
        assert run.data.metrics["compression"] < 0.75
    assert all(runs[k].data.metrics["compression"] >= 0.75 - TOLERANCE for k in runs if k not in skipped)
    assert "not trained (" in out.getvalue()
