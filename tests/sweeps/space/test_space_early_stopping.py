"""``early_stopping`` in a space: multi-objective ASHA (the default with several objectives) vs
single-metric ASHA, its validation errors, and what the runner builds from it. Ray-free."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sweeps.errors import SpaceError
from sweeps.run import early_stopping, watched_metrics
from sweeps.space import load_space, space_from_dict

BASE = str(Path(__file__).resolve().parent / "bad_spaces" / "base.yaml")   # objectives [compression, delta_m]


def test_asha_defaults_to_all_objectives_in_a_multi_objective_sweep():
    spec = load_space(BASE, ["early_stopping={type: asha}"])
    assert spec.early_stopping == {"type": "asha", "metric": "objectives", "grace_steps": 50,
                                   "reduction_factor": 3, "keep_non_dominated": True, "max_steps": 200}
    spec = load_space(BASE, ["early_stopping={type: asha, metric: objectives, grace_steps: 20, "
                             "reduction_factor: 2}"])
    assert spec.early_stopping["metric"] == "objectives" and spec.early_stopping["grace_steps"] == 20
    spec = load_space(BASE, ["early_stopping={type: asha, keep_non_dominated: false}"])
    assert spec.early_stopping["keep_non_dominated"] is False


def test_one_metric_keeps_single_metric_asha():
    spec = load_space(BASE, ["early_stopping={type: asha, metric: normal.mean, grace_steps: 20}"])
    assert spec.early_stopping == {"type": "asha", "metric": "normal.mean", "mode": "min", "grace_steps": 20,
                                   "reduction_factor": 3, "max_steps": 200}
    # a one-objective sweep: the old default (delta_m with a baseline)
    spec = load_space(BASE, ["objectives=[compression]", "early_stopping={type: asha}"])
    assert spec.early_stopping["metric"] == "delta_m" and spec.early_stopping["mode"] == "max"
    spec = load_space(BASE, ["objectives=[compression]", "baseline=false", "budgets=null",
                             "early_stopping={type: asha}"])
    assert spec.early_stopping["metric"] == "seg.miou"


@pytest.mark.parametrize("setting, message", [
    ("{type: asha, metric: objective}",
     "early_stopping.metric: 'objective' is not a metric of this workload (did you mean 'objectives'?); "
     "expected objectives (rank on every objective) or one of "),
    ("{type: asha, metric: 3}", "early_stopping.metric: 3 is not a metric of this workload"),
    ("{type: asha, metric: [compression, delta_m]}",
     "early_stopping.metric: [compression, delta_m] is not a metric of this workload"),
    ("{type: none, metric: objectives}", "early_stopping.metric: given with type none; expected type: asha"),
    ("{type: asha, metric: objectives, reduction_factor: 1}",
     "early_stopping.reduction_factor: 1 is out of range; expected a number > 1"),
    ("{type: asha, metric: objectives, grace_steps: 200}",
     "early_stopping.grace_steps: 200 is not below the trial length (200 steps)"),
    ("{type: asha, keep_non_dominated: maybe}",
     "early_stopping.keep_non_dominated: 'maybe' is not a boolean; expected true or false"),
    ("{type: asha, metric: seg.miou, keep_non_dominated: false}",
     "early_stopping.keep_non_dominated: given with metric 'seg.miou'; expected metric: objectives"),
    ("{type: asha, metrics: objectives}",
     "early_stopping.metrics: unknown key (did you mean 'metric'?); expected one of grace_steps, keep_non_dominated, metric"),
])
def test_errors_name_key_value_and_expectation(setting, message):
    with pytest.raises(SpaceError) as err:
        load_space(BASE, [f"early_stopping={setting}"])
    text = str(err.value)
    assert message in text and "\n" not in text, text


def test_delta_m_without_baseline_is_refused_as_before():
    with pytest.raises(SpaceError, match=r"early_stopping\.metric: 'delta_m' needs the dense baseline"):
        load_space(BASE, ["objectives=[compression, seg.miou]", "baseline=false", "budgets=null",
                          "early_stopping={type: asha, metric: delta_m}"])


def test_to_dict_loads_back_with_early_stopping():
    for setting in ("{type: asha}", "{type: asha, metric: seg.miou, grace_steps: 10}",
                    "{type: asha, keep_non_dominated: false}"):
        spec = load_space(BASE, [f"early_stopping={setting}"])
        again = space_from_dict(yaml.safe_load(yaml.safe_dump(spec.to_dict())))
        assert again.early_stopping == spec.early_stopping
        assert again.to_dict() == spec.to_dict()


def test_the_runner_builds_multi_objective_or_single_metric_early_stopping():
    spec = load_space(BASE, ["objectives=[compression, {name: normal.mean, direction: minimize}]",
                             "early_stopping={type: asha, grace_steps: 25}"])
    es = early_stopping(spec)
    assert es.objectives == (("compression", "maximize"), ("normal.mean", "minimize"))
    assert (es.grace_period, es.reduction_factor, es.max_t, es.time_attr) == (25, 3.0, 200, "step")
    assert es.keep_non_dominated is True
    strict = load_space(BASE, ["early_stopping={type: asha, keep_non_dominated: false}"])
    assert early_stopping(strict).keep_non_dominated is False
    assert watched_metrics(spec) == ["compression", "normal.mean"]       # "objectives" is not a metric
    single = early_stopping(load_space(BASE, ["early_stopping={type: asha, metric: seg.miou}"]))
    assert single.objectives == (("seg.miou", "maximize"),) and (single.metric, single.mode) == ("seg.miou", "max")
    lower = early_stopping(load_space(BASE, ["early_stopping={type: asha, metric: normal.mean}"]))
    assert lower.objectives == (("normal.mean", "minimize"),)
    assert early_stopping(load_space(BASE)) is None


def test_trials_evaluate_at_every_rung_unless_the_space_says_when():
    # rungs at 50 and 150 of 200 steps: the trial's default (every steps // 3 = 66) would report first at
    # step 66 and never between 150 and the end, so the second rung would never decide anything
    spec = load_space(BASE, ["early_stopping={type: asha}"])
    assert spec.workload["eval_every"] == 50
    spec = load_space(BASE, ["early_stopping={type: asha, grace_steps: 20, reduction_factor: 2}"])
    assert spec.workload["eval_every"] == 20
    assert load_space(BASE, ["early_stopping={type: asha}", "workload.eval_every=25"]).workload["eval_every"] == 25
    assert "eval_every" not in load_space(BASE, []).workload
    assert "eval_every" not in load_space(BASE, ["early_stopping={type: asha}",
                                                 "parameters.eval_every=[10, 40]"]).workload
