"""Tiny sweep spaces and readers shared by the sweep tests (real run_trial, seconds per trial)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
TUNE_PY = REPO_ROOT / "tune.py"

TINY_WORKLOAD = {"workload": "scenes", "image_size": 32, "train_size": 32, "test_size": 16,
                 "steps": 6, "batch_size": 8, "eval_every": 3}


def write_space(folder: Path, name: str = "tiny", **sections) -> Path:
    """A tiny space file: 3 methods x sparsity, objectives compression + delta_m, one budget."""
    space = {
        "name": name,
        "workload": dict(TINY_WORKLOAD),
        "parameters": {
            "method": {"values": ["disparse_static", "disparse_dynamic", "snip"]},
            "sparsity": {"distribution": "uniform", "low": 0.5, "high": 0.9},
        },
        "objectives": [{"name": "compression", "direction": "maximize"},
                       {"name": "delta_m", "direction": "maximize"}],
        "budgets": {"seg.miou": "-50%"},
        "sampler": {"type": "tpe", "seed": 3},
        "trials": 4,
        "concurrency": 2,
        "resources": {"cpu": 1},
        "max_retries": 0,
    }
    for key, value in sections.items():
        if key == "workload":
            space[key] = {**space[key], **value}
        else:
            space[key] = value
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(space, sort_keys=False))
    return path


def sqlite_uri(path: Path) -> str:
    return f"sqlite:///{path.resolve()}"


def trial_runs(tracking_uri: str, sweep_id: str, experiment: str = "disparse-tune"):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id],
                              filter_string=f"tags.`disparse.role` = 'trial' and "
                                            f"tags.`disparse.sweep_id` = '{sweep_id}'",
                              max_results=1000)


def sweep_run(tracking_uri: str, sweep_id: str, experiment: str = "disparse-tune"):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id],
                              filter_string=f"tags.`disparse.role` = 'sweep' and "
                                            f"tags.`disparse.sweep_id` = '{sweep_id}'")
    assert len(runs) == 1, [r.info.run_id for r in runs]
    return client, runs[0]


def load_study(results_dir: Path, sweep_id: str):
    from sweeps.run import load_sweep_study

    return load_sweep_study(results_dir, sweep_id)


def cli_env() -> dict:
    env = dict(os.environ)
    env.update(RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_AUTH_MODE="disabled",
               RAY_USAGE_STATS_ENABLED="0", MLFLOW_DISABLE_TELEMETRY="true",
               PYTHONPATH=str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", ""))
    return env


def run_cli(args, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TUNE_PY), *map(str, args)], cwd=cwd, env=cli_env(),
                          capture_output=True, text=True, timeout=timeout)
