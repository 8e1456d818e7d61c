"""Shared by the SweepTracker tests (the ``store`` fixture is in conftest.py): a started sweep, readers."""

from __future__ import annotations

from types import SimpleNamespace

from mlflow.tracking import MlflowClient

from sweeps.tracking import SweepTracker

EXP = "test-exp"
OBJECTIVES = ["compression", "seg.miou", "normal.mean"]
DIRECTIONS = ["maximize", "maximize", "minimize"]


def make_spec(path=None):
    return SimpleNamespace(name="unit", objectives=[SimpleNamespace(name=o, direction=d)
                                                    for o, d in zip(OBJECTIVES, DIRECTIONS)],
                           budgets=["seg.miou=-2%"], path=path, raw_text="",
                           to_dict=lambda: {"name": "unit", "trials": 4})


def start(store, sweep_id="s1", resume=False, tmp_path=None):
    tracker = SweepTracker(store, EXP)
    space = None
    if tmp_path is not None:
        space = tmp_path / "unit.yaml"
        space.write_text("name: unit\ntrials: 4\n")
    tracker.start_sweep(make_spec(), sweep_id=sweep_id, config={"trials": 4, "concurrency": 2},
                        code_version={"git_commit": "abc123", "dirty": True}, space_path=space,
                        space_text=None, sampler="tpe", seed=7, resume=resume)
    return tracker


def runs(store, role=None):
    client = MlflowClient(store)
    exp = client.get_experiment_by_name(EXP)
    filt = f"tags.`disparse.role` = '{role}'" if role else ""
    return client.search_runs([exp.experiment_id], filter_string=filt, max_results=1000)


def config(**over):
    base = {"workload": "scenes", "arch": "small", "width": 16, "tasks": ["seg", "normal"], "steps": 100,
            "batch_size": 8, "lr": 1e-3, "optimizer": "adam", "seed": 0, "method": "disparse_dynamic",
            "sparsity": 0.8, "dynamic": {"alpha0": 0.3, "delta_t": 10, "decay": "cosine"},
            "gradual": None, "criterion": "snip"}
    base.update(over)
    return base
