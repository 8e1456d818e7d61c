"""examples/own_model/ as a user runs it: their two files and the space copied into an empty folder, swept
through the real path (local Ray, Optuna, MLflow sqlite), read back through MlflowClient; then ``best``
(with a budget on the custom task's metric, whose direction is its own), ``pareto`` and ``report``."""

from __future__ import annotations

import json
import shutil

import pytest

from sweep_helpers import REPO_ROOT, run_cli, sqlite_uri, sweep_run, trial_runs

pytestmark = pytest.mark.slow

EXAMPLE = REPO_ROOT / "examples" / "own_model"
USER_FILES = ("shapes_data.py", "resnet_heads.py", "space.yaml")


def test_the_own_model_example_sweeps_from_an_empty_folder_and_reads_back(tmp_path):
    for name in USER_FILES:
        shutil.copy(EXAMPLE / name, tmp_path / name)
    uri = sqlite_uri(tmp_path / "mlflow.db")

    done = run_cli(["--space", "space.yaml", "--set", "trials=2", "--set", "workload.steps=12",
                    "--tracking-uri", uri], cwd=tmp_path, timeout=400)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "Pareto front" in done.stdout
    runs = trial_runs(uri, "own-model")
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)
    for run in runs:
        metrics = run.data.metrics
        assert {"seg.miou", "depth.abs_err", "count.miscount", "compression", "delta_m"} <= set(metrics)
        assert 0.0 <= metrics["count.miscount"] <= 1.0
        assert run.data.params["arch.factory"] == "resnet_heads:build"
        assert run.data.params["workload.factory"] == "shapes_data:build"
    client, sweep = sweep_run(uri, "own-model")
    assert json.loads(sweep.data.tags["disparse.metric_directions"]) == {"miscount": "minimize"}
    artifacts = {a.path for a in client.list_artifacts(sweep.info.run_id)}
    assert {"pareto_front.csv", "pareto_front.html", "pareto_compression_vs_count.miscount.png"} <= artifacts
    local = client.download_artifacts(runs[0].info.run_id, "trial_config.json", str(tmp_path / "dl"))
    config = json.loads(open(local).read())
    assert {k: config["arch"][k] for k in ("factory", "args")} == {"factory": "resnet_heads:build",
                                                                    "args": {"width": 8}}
    assert config["arch"]["code"].startswith("sha256:")        # which version of the user's file ran
    assert config["workload"]["factory"] == "shapes_data:build" and config["tasks"] == ["seg", "depth", "count"]

    # best under a budget on the custom metric: lower is better, so the bound is an upper one
    worst = max(r.data.metrics["count.miscount"] for r in runs)
    best_run = max((r for r in runs if r.data.metrics["count.miscount"] <= worst),
                   key=lambda r: r.data.metrics["compression"])
    chosen = run_cli(["best", "--budget", f"count.miscount<={worst}", "--tracking-uri", uri], cwd=tmp_path)
    assert chosen.returncode == 0, chosen.stdout + chosen.stderr
    assert best_run.info.run_id in chosen.stdout and "count.miscount" in chosen.stdout
    lowest = min(r.data.metrics["count.miscount"] for r in runs)
    if lowest > 0:                          # a bound below every trial: none meets it
        none = run_cli(["best", "--budget", f"count.miscount<={lowest / 2}", "--tracking-uri", uri], cwd=tmp_path)
        assert none.returncode == 1, none.stdout + none.stderr
    relative = run_cli(["best", "--budget", "count.miscount=+1000%", "--tracking-uri", uri], cwd=tmp_path)
    assert relative.returncode in (0, 1) and "count.miscount=+1000%" in relative.stdout, relative.stderr

    front = run_cli(["pareto", "--objective", "compression", "--objective", "count.miscount",
                     "--tracking-uri", uri], cwd=tmp_path)
    assert front.returncode == 0, front.stdout + front.stderr
    assert "count.miscount (min)" in front.stdout
    report = run_cli(["report", "--tracking-uri", uri], cwd=tmp_path)
    assert report.returncode == 0, report.stdout + report.stderr
