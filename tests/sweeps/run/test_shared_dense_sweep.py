"""The plan says what a sweep's pretrained trials share with its dense baseline (sweeps.run.baseline.
shared_dense), and a real sweep starts them from the baseline's snapshots (Ray, Optuna, MLflow, run_trial)."""

from __future__ import annotations

import io

import pytest

from sweeps.run import RunOptions, make_plan, run_sweep, shared_dense
from sweeps.space import load_space

from sweep_helpers import sqlite_uri, trial_runs, write_space

PRETRAINED = {"method": {"value": "magnitude"}, "sparsity": {"distribution": "uniform", "low": 0.5, "high": 0.9},
              "pretrain_steps": {"values": [2, 3]}}


def _spec(tmp_path, **sections):
    return load_space(str(write_space(tmp_path, **sections)))


def test_the_plan_names_the_shared_steps_or_why_nothing_is_shared(tmp_path):
    shared = shared_dense(_spec(tmp_path, parameters=PRETRAINED), tmp_path)
    assert shared.steps == (2, 3) and shared.folder.parent == (tmp_path / ".dense").resolve()
    assert "step(s) 2, 3" in shared.reason
    with_lr = {**PRETRAINED, "lr": {"distribution": "log_uniform", "low": 1e-4, "high": 1e-3}}
    assert shared_dense(_spec(tmp_path, parameters=with_lr), tmp_path).reason.startswith(
        "nothing: the space samples lr")
    ranged = {**PRETRAINED, "pretrain_steps": {"distribution": "int_uniform", "low": 1, "high": 4}}
    assert shared_dense(_spec(tmp_path, parameters=ranged), tmp_path).folder is None
    assert shared_dense(_spec(tmp_path), tmp_path).steps == ()        # static, dynamic and snip only
    no_baseline = _spec(tmp_path, parameters=PRETRAINED, baseline=False, budgets={},
                        objectives=[{"name": "compression", "direction": "maximize"},
                                    {"name": "seg.miou", "direction": "maximize"}])
    assert shared_dense(no_baseline, tmp_path).steps == ()


@pytest.mark.slow
def test_pretrained_trials_of_a_sweep_start_from_the_baselines_snapshot(ray_local, tmp_path, store):
    space = write_space(tmp_path, parameters=PRETRAINED, trials=3, sampler={"type": "random", "seed": 1})
    plan = make_plan(RunOptions(space=str(space), results_dir=str(tmp_path / "r"), tracking_uri=store))
    out = io.StringIO()
    summary = run_sweep(plan, out=out)
    assert summary.states == {"COMPLETE": 3}, out.getvalue()
    runs = trial_runs(store, plan.sweep_id)
    assert len(runs) == 3
    for run in runs:
        assert run.data.metrics["dense_steps_reused"] == float(run.data.params["pretrain_steps"])
    folder = shared_dense(plan.spec, tmp_path).folder
    assert sorted(p.name for p in folder.iterdir()) == ["step2.pt", "step3.pt"]
