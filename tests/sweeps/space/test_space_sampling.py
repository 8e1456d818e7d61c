"""Search spaces: sampling (conditionals, fixed values, determinism), the samplers and the budgets as
Optuna constraints. Loading, validation and overrides are in test_space.py."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest

from sweeps.space import (ConstraintsFromUserAttrs, apply_overrides, directions, load_space, make_sampler,
                          space_from_dict, suggest)

optuna.logging.set_verbosity(optuna.logging.WARNING)

BASE = str(Path(__file__).resolve().parent / "bad_spaces" / "base.yaml")


def _study(spec, seed=None):
    sampler = make_sampler(spec) if seed is None else make_sampler(
        apply_overrides(spec, [f"sampler.seed={seed}"]))
    return optuna.create_study(directions=directions(spec), sampler=sampler)


def sample_configs(spec, n, seed=None):
    """``n`` configs from an ask/tell loop (values are arbitrary: only the sampling matters)."""
    study, out = _study(spec, seed), []
    for i in range(n):
        trial = study.ask()
        out.append(suggest(spec, trial))
        study.tell(trial, [float(i % 3)] * len(spec.objectives))
    return out


# --- sampling -----------------------------------------------------------------------------------

def test_conditionals_are_honoured():
    spec = load_space("baselines")
    configs = sample_configs(spec, 40)
    assert len({c["method"] for c in configs}) >= 4
    for c in configs:
        dyn = c.get("dynamic", {})
        assert ("alpha0" in dyn) == (c["method"] in ("disparse_dynamic", "rigl"))
        assert ("grow" in dyn) == (c["method"] == "disparse_dynamic")
        assert ("pretrain_steps" in c) == (c["method"] == "magnitude")
        assert ("score_batches" in c) == (c["method"] in ("disparse_static", "snip"))


def test_condition_on_a_conditional_parameter():
    spec = load_space("pretrained")
    for c in sample_configs(spec, 20):
        assert ("interval" in c["gradual"]) == (c["gradual"]["prune_steps"] in (3, 5))
    chain = space_from_dict({
        "parameters": {
            "method": {"values": ["snip", "rigl"]},
            "dynamic.grow": {"values": ["exact", "union"], "when": {"method": ["rigl"]}},
            "dynamic.alpha0": {"value": 0.3, "when": {"dynamic.grow": ["union"]}},
        }})
    for c in sample_configs(chain, 30):
        if c["method"] == "snip":
            assert "dynamic" not in c                 # alpha0's condition names an inactive parameter
        else:
            assert ("alpha0" in c["dynamic"]) == (c["dynamic"]["grow"] == "union")


def test_condition_on_a_fixed_key_follows_overrides():
    spec = load_space(BASE, ["parameters.method=null", "workload.method=snip"])
    assert all("dynamic" not in c for c in sample_configs(spec, 5))
    spec = apply_overrides(spec, ["workload.method=rigl"])
    assert all("alpha0" in c["dynamic"] for c in sample_configs(spec, 5))


def test_dotted_names_nest_and_merge_with_the_base():
    spec = load_space("dynamic")
    config = suggest(spec, optuna.trial.FixedTrial({
        "sparsity": 0.9, "lr": 1e-3, "cutoff": 6, "dynamic.alpha0": 0.3, "dynamic.delta_t": 25,
        "loss_weights.normal": 10.0}))
    assert config["dynamic"] == {"grow": "exact", "decay": "cosine", "t_end_frac": 0.75, "alpha0": 0.3,
                                 "delta_t": 25}
    assert config["loss_weights"] == {"normal": 10.0}
    assert config["sparsity"] == 0.9 and config["method"] == "disparse_dynamic"
    assert "dynamic.alpha0" not in config


def test_fixed_values_never_reach_optuna():
    spec = load_space(BASE, ["parameters.sparsity={value: 0.8}"])
    study = _study(spec)
    trial = study.ask()
    config = suggest(spec, trial)
    assert config["sparsity"] == 0.8 and "sparsity" not in trial.params
    assert set(trial.params) == {"method", "lr", "cutoff", "dynamic.alpha0"}


def test_suggest_does_not_modify_the_spec():
    spec = load_space("dynamic")
    before = spec.to_dict()
    sample_configs(spec, 3)
    assert spec.to_dict() == before


def test_seeded_sampling_is_deterministic():
    spec = load_space("baselines")
    assert sample_configs(spec, 15) == sample_configs(spec, 15)
    assert sample_configs(spec, 15, seed=1) != sample_configs(spec, 15)


def test_steps_and_ints():
    spec = load_space(BASE, ["parameters.sparsity.step=0.05", "parameters.cutoff.step=2"])
    for c in sample_configs(spec, 15):
        assert c["cutoff"] in (0, 2, 4, 6, 8)
        assert isinstance(c["cutoff"], int)
        assert math.isclose(round(c["sparsity"] / 0.05) * 0.05, c["sparsity"], abs_tol=1e-9)


# --- samplers and constraints ---------------------------------------------------------------------

@pytest.mark.parametrize("kind, cls", [("tpe", optuna.samplers.TPESampler),
                                       ("nsga2", optuna.samplers.NSGAIISampler),
                                       ("gp", optuna.samplers.GPSampler),
                                       ("random", optuna.samplers.RandomSampler)])
def test_make_sampler_types(kind, cls, recwarn):
    spec = load_space(BASE, [f"sampler.type={kind}"])
    assert isinstance(make_sampler(spec), cls)
    assert not [w for w in recwarn if issubclass(w.category, FutureWarning)]


def test_constraints_func_reads_user_attrs_with_an_infeasible_default():
    func = ConstraintsFromUserAttrs(2)
    done = optuna.trial.create_trial(values=[1.0], user_attrs={"constraints": [-0.1, 0.2]})
    assert func(done) == (-0.1, 0.2)
    pruned = optuna.trial.create_trial(state=optuna.trial.TrialState.PRUNED)
    assert all(v > 0 for v in func(pruned))
    nan = optuna.trial.create_trial(values=[1.0], user_attrs={"constraints": [float("nan"), 0.0]})
    assert func(nan)[0] > 0 and func(nan)[1] == 0.0


def _constrained_run(spec, use_constraints, n=40):
    """compression = sparsity; seg.miou flat to 0.55, then falling: the -2 % budget allows sparsity <= 0.61.

    The searcher's side of the contract: ``set_user_attr("constraints", constraint_values(...))``
    before ``tell``."""
    from sweeps.budgets import constraint_values
    study = optuna.create_study(directions=directions(spec), sampler=make_sampler(spec))
    baseline = {"seg.miou": 0.30}
    sparsities = []
    for _ in range(n):
        trial = study.ask()
        s = suggest(spec, trial)["sparsity"]
        metrics = {"compression": s, "seg.miou": 0.30 - 0.1 * max(0.0, s - 0.55)}
        if use_constraints:
            trial.set_user_attr("constraints", constraint_values(spec.budgets, metrics, baseline))
        study.tell(trial, [metrics[m] for m in spec.metric_names])
        sparsities.append(s)
    return study, sparsities


@pytest.mark.parametrize("objectives", ["[compression]", "[compression, seg.miou]"])
def test_budgets_reach_tpe_as_constraints(objectives):
    """Seeded, so deterministic; the margins hold for seeds 0-5 (with: >= 0.67, without: <= 0.37)."""
    spec = load_space(BASE, ["parameters={sparsity: {distribution: uniform, low: 0.5, high: 0.99}}",
                             f"objectives={objectives}", "sampler={type: tpe}"])
    near_feasible = lambda xs: sum(x <= 0.66 for x in xs[10:]) / len(xs[10:])  # noqa: E731
    with_c, without_c = [], []
    for seed in (0, 1, 2):
        seeded = apply_overrides(spec, [f"sampler.seed={seed}", "sampler.n_startup_trials=10"])
        study, xs = _constrained_run(seeded, True)
        with_c.append(near_feasible(xs))
        without_c.append(near_feasible(_constrained_run(seeded, False)[1]))
        assert all(t.constraints for t in study.trials)            # Optuna recorded them
        assert study.best_trials and all(t.params["sparsity"] <= 0.61 for t in study.best_trials)
    assert all(w > wo for w, wo in zip(with_c, without_c)), (with_c, without_c)
    assert sum(with_c) / 3 >= 0.6 and sum(without_c) / 3 <= 0.4, (with_c, without_c)


def test_budgets_reach_nsga2_and_best_trials_are_feasible():
    spec = load_space(BASE, ["parameters={sparsity: {distribution: uniform, low: 0.5, high: 0.99}}",
                             "objectives=[compression, seg.miou]", "sampler={type: nsga2, population_size: 6}"])
    study, _ = _constrained_run(spec, True, n=24)
    assert study.best_trials and all(t.params["sparsity"] <= 0.61 for t in study.best_trials)


def test_sampler_without_budgets_has_no_constraints():
    spec = load_space(BASE, ["budgets=null"])
    study = optuna.create_study(directions=directions(spec), sampler=make_sampler(spec))
    trial = study.ask()
    suggest(spec, trial)
    study.tell(trial, [0.5, 0.0])
    assert not study.trials[0].constraints
