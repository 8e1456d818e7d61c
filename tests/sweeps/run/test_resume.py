"""Kill a running sweep (SIGKILL: hard; SIGINT: Ctrl+C), then ``--resume`` it: every trial ends exactly
once in MLflow and in the study, and trials that had completed are not run again."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from sweep_helpers import (TUNE_PY, cli_env, load_study, run_cli, sqlite_uri, sweep_run, trial_runs,
                           write_space)

pytestmark = pytest.mark.slow

TRIALS = 4


def _space(tmp_path):
    return write_space(
        tmp_path, name="resumable",
        workload={"steps": 30, "eval_every": 10},
        objectives=[{"name": "compression", "direction": "maximize"},
                    {"name": "seg.miou", "direction": "maximize"}],
        budgets={}, baseline=False, trials=TRIALS, concurrency=1)


def _completed_keys(results_dir, sweep_id):
    if not (results_dir / "optuna.journal").exists():
        return set()
    try:
        study = load_study(results_dir, sweep_id)
    except Exception:  # created but not yet written
        return set()
    return {t.user_attrs.get("trial_key") for t in study.trials if t.state.name == "COMPLETE"}


@pytest.mark.parametrize("how", ["SIGKILL", "SIGINT"])
def test_resume_after_kill_finishes_every_trial_once(tmp_path, how):
    space = _space(tmp_path)
    results_dir = tmp_path / "results"
    uri = sqlite_uri(tmp_path / "mlflow.db")
    args = [sys.executable, str(TUNE_PY), "--space", str(space), "--results-dir", str(results_dir),
            "--tracking-uri", uri]
    proc = subprocess.Popen(args, cwd=tmp_path, env=cli_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 150
        while not _completed_keys(results_dir, "results"):
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "no trial completed in time"
            time.sleep(0.5)
        if how == "SIGKILL":
            os.killpg(proc.pid, signal.SIGKILL)  # the driver and everything it started
            proc.wait(timeout=30)
        else:
            proc.send_signal(signal.SIGINT)
            output, _ = proc.communicate(timeout=90)
            assert proc.returncode == 130, output
            assert "--resume" in output
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)

    # read the study directly: _completed_keys hides a read error (seen right after a SIGKILL) as "none done"
    study = load_study(results_dir, "results")
    done_before = {t.user_attrs.get("trial_key") for t in study.trials if t.state.name == "COMPLETE"}
    assert len(done_before) < TRIALS, "the sweep finished before it could be interrupted"
    numbers_before = {t.user_attrs["trial_key"]: t.number for t in study.trials
                      if t.state.name == "COMPLETE"}
    starts_before = {r.data.tags["disparse.trial_key"]: r.info.start_time
                     for r in trial_runs(uri, "results") if r.info.status == "FINISHED"}
    # Optuna (the resume log) is told first; a SIGKILL can land before MLflow closes the trial's run,
    # which the resume then completes from the study. MLflow never has a trial Optuna lacks.
    assert set(starts_before) <= done_before

    resumed = run_cli(["--resume", "--results-dir", results_dir], cwd=tmp_path, timeout=240)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "Pareto front" in resumed.stdout

    study = load_study(results_dir, "results")
    latest = {}
    for t in sorted(study.trials, key=lambda t: t.number):
        latest[t.user_attrs["trial_key"]] = t
    assert len(latest) == TRIALS
    assert all(t.state.name == "COMPLETE" for t in latest.values())
    for key, number in numbers_before.items():  # completed before the kill: never run again
        assert [t.number for t in study.trials if t.user_attrs["trial_key"] == key] == [number]

    runs = trial_runs(uri, "results")
    keys = [r.data.tags["disparse.trial_key"] for r in runs]
    assert sorted(keys) == sorted(latest), keys          # one MLflow run per trial, no duplicates
    assert all(r.info.status == "FINISHED" for r in runs)
    for r in runs:
        key = r.data.tags["disparse.trial_key"]
        if key in starts_before:
            assert r.info.start_time == starts_before[key]
    _, parent = sweep_run(uri, "results")
    assert parent.info.status == "FINISHED"
    assert "disparse.failure" not in parent.data.tags     # the interruption's reason went with it
    # the resume drew new configurations (reseeded), not the first run's again
    params = [tuple(sorted(t.params.items())) for t in latest.values()]
    assert len(set(params)) == len(params), params
    # an interrupted attempt that was run again is not counted as a failed trial
    assert re.search(r"finished in \d+s \(complete 4(, interrupted attempts rerun \d)?\)", resumed.stdout), \
        resumed.stdout
