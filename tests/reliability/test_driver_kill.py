"""The driver dies mid-sweep; ``--resume`` finishes the sweep, every trial ends exactly once in MLflow and
nothing that finished runs again.

tests/sweeps/run/test_resume.py already kills a one-at-a-time sweep (SIGKILL of the process group, SIGINT)
after a trial completed and resumes once. This file covers the rest:

* SIGKILL while the dense baseline trains (no trial started yet): the resume trains the baseline once;
* two trials in flight (concurrency 2), the driver killed twice in a row: SIGTERM to the driver process
  alone (what ``kill PID``, ``docker stop`` or a batch scheduler send), then SIGINT to the resumed
  driver, then a second ``--resume``;
* ``--resume`` of a finished sweep runs nothing and logs nothing new;
* while the driver runs, every socket its process tree listens on is on loopback.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from rel_helpers import (LOOPBACK_ENV, alive, cli_env, latest_by_key, listening_ips, load_study, mlflow_runs,
                         popen_cli, process_tree, run_cli, sqlite_uri, study_keys, write_space)

pytestmark = pytest.mark.slow


def _wait_for(predicate, proc, log: Path, what: str, timeout: float = 150) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, f"the driver exited before {what}:\n{log.read_text()}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{log.read_text()}"
        time.sleep(0.3)


def _start(args, folder: Path, name: str, env: dict | None = None):
    log = folder / f"{name}.log"
    proc = popen_cli(args, cwd=folder, env=env)
    # stdout is a pipe: drain it into a file from a thread so the driver never blocks on a full pipe
    import threading

    def drain():
        with open(log, "a") as fh:
            for line in proc.stdout:
                fh.write(line)
                fh.flush()
    threading.Thread(target=drain, daemon=True).start()
    log.touch()
    return proc, log


def _kill_group(proc) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=30)
    except Exception:
        pass


def _assert_each_trial_once(uri: str, results_dir: Path, sweep_id: str, trials: int) -> dict:
    study = load_study(results_dir, sweep_id)
    latest = latest_by_key(study)
    assert len(latest) == trials and all(t.state.name == "COMPLETE" for t in latest.values()), \
        {k: t.state.name for k, t in latest.items()}
    complete = [t.user_attrs["trial_key"] for t in study.trials if t.state.name == "COMPLETE"]
    assert sorted(complete) == sorted(set(complete)), complete       # no key completed twice
    runs = mlflow_runs(uri, "trial", sweep_id)
    keys = [r.data.tags["disparse.trial_key"] for r in runs]
    assert sorted(keys) == sorted(latest), keys                      # one MLflow run per trial
    assert all(r.info.status == "FINISHED" for r in runs)
    (parent,) = mlflow_runs(uri, "sweep", sweep_id)
    assert parent.info.status == "FINISHED"
    _assert_records_agree(uri, study, runs, sweep_id)
    return {t.user_attrs["trial_key"]: t.number for t in study.trials if t.state.name == "COMPLETE"}


def _assert_records_agree(uri: str, study, runs, sweep_id: str) -> None:
    """After interruptions and resumes: each trial's run names the Optuna trial that completed it and
    holds one series of steps; an attempt an interruption stopped is a run of its own, under it, with
    its reason on the trial's run."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    tried: dict = {}
    for t in study.trials:
        tried.setdefault(t.user_attrs["trial_key"], []).append(t)
    attempts = mlflow_runs(uri, "attempt", sweep_id)
    for run in runs:
        key = run.data.tags["disparse.trial_key"]
        counted = max(tried[key], key=lambda t: t.number)
        assert counted.state.name == "COMPLETE"
        assert run.data.tags["disparse.optuna_number"] == str(counted.number), key
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "seg.miou")]
        assert steps == sorted(set(steps)), (key, steps)
        mine = [a for a in attempts if a.data.tags["disparse.trial_key"] == key]
        assert all(a.data.tags["mlflow.parentRunId"] == run.info.run_id for a in mine)
        assert run.data.tags.get("disparse.retries", "0") == str(len(mine))
        for a in mine:
            reason = run.data.tags[f"disparse.attempt_{a.data.tags['disparse.attempt']}"]
            assert reason and "\n" not in reason
        if len(tried[key]) > 1:                # rerun after an interruption: the stopped attempt is apart
            assert mine, key


def _front_table(stdout: str) -> str:
    """The ``Pareto front (...)`` header and table a finished sweep prints (up to the ``results:`` line)."""
    assert "Pareto front (" in stdout, stdout
    return "Pareto front (" + stdout.split("Pareto front (", 1)[1].split("\nresults:", 1)[0]


@pytest.fixture(scope="module")
def killed_in_baseline(tmp_path_factory):
    """A sweep SIGKILLed while its dense baseline trains, then resumed (shared with the resume-again test)."""
    folder = tmp_path_factory.mktemp("kill_baseline")
    space = write_space(folder, name="kb", trials=2, baseline=True,
                        objectives=[{"name": "compression", "direction": "maximize"},
                                    {"name": "delta_m", "direction": "maximize"}])
    results_dir, uri = folder / "results", sqlite_uri(folder / "mlflow.db")
    # started without the loopback settings in its environment (the tests' own helpers set them): the
    # project must keep its Ray on 127.0.0.1 by itself, as for a user who never heard of them
    bare = {k: v for k, v in cli_env().items() if k not in LOOPBACK_ENV}
    assert "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER" not in bare and "RAY_AUTH_MODE" not in bare
    proc, log = _start(["--space", space, "--results-dir", results_dir, "--tracking-uri", uri], folder,
                       "first", env=bare)
    try:
        _wait_for(lambda: "dense baseline: training" in log.read_text(), proc, log, "the baseline")
        listening = listening_ips(process_tree(proc.pid))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        _kill_group(proc)
    baselines_before = mlflow_runs(uri, "baseline")
    resumed = run_cli(["--resume", "--results-dir", results_dir], cwd=folder, timeout=240)
    return {"folder": folder, "results": results_dir, "uri": uri, "resumed": resumed,
            "baselines_before": baselines_before, "listening": listening}


def test_sigkill_during_baseline_then_resume(killed_in_baseline):
    k = killed_in_baseline
    assert k["baselines_before"] == [], "the baseline finished before the kill: scenario not exercised"
    assert k["resumed"].returncode == 0, k["resumed"].stdout + k["resumed"].stderr
    assert "dense baseline: training" in k["resumed"].stdout
    _assert_each_trial_once(k["uri"], k["results"], "results", trials=2)
    baselines = mlflow_runs(k["uri"], "baseline")
    assert len(baselines) == 1 and baselines[0].info.status == "FINISHED"


def test_driver_listens_on_loopback_only(killed_in_baseline):
    listening = killed_in_baseline["listening"]
    assert listening, "found no listening socket of the sweep's processes"
    assert listening <= {"127.0.0.1", "::1"}, listening


def test_resume_of_a_finished_sweep_runs_nothing(killed_in_baseline):
    k = killed_in_baseline
    study_before = [(t.number, t.state.name) for t in load_study(k["results"], "results").trials]
    runs_before = {r.info.run_id: r.info.end_time for r in mlflow_runs(k["uri"], "trial", "results")}
    again = run_cli(["--resume", "--results-dir", k["results"]], cwd=k["folder"], timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "0 of 2 trials to run" in again.stdout
    assert "dense baseline: reusing" in again.stdout
    # it prints the finished sweep's front again, the same table as when the sweep finished
    front = _front_table(again.stdout)
    assert front == _front_table(k["resumed"].stdout), again.stdout
    assert "(empty Pareto front" not in front
    assert any(key in front for key in study_keys(k["results"], "results")), front
    assert [(t.number, t.state.name) for t in load_study(k["results"], "results").trials] == study_before
    assert {r.info.run_id: r.info.end_time for r in mlflow_runs(k["uri"], "trial", "results")} == runs_before
    assert len(mlflow_runs(k["uri"], "baseline")) == 1


def test_sigterm_then_sigint_then_resume_with_two_trials_in_flight(tmp_path):
    # 2 at a time; SIGTERM once 1 trial completed (<= 3 complete when its 2 in flight finish too), SIGINT
    # as soon as one more completes (<= 5): the SIGINT always lands on trials still to run
    trials = 6
    space = write_space(tmp_path, name="tt", trials=trials, concurrency=2,
                        workload={"steps": 12, "eval_every": 4})
    results_dir, uri = tmp_path / "results", sqlite_uri(tmp_path / "mlflow.db")

    # 1. SIGTERM to the driver process only, with trials running and one done
    proc, log = _start(["--space", space, "--results-dir", results_dir, "--tracking-uri", uri], tmp_path,
                       "first")
    try:
        _wait_for(lambda: study_keys(results_dir, "results"), proc, log, "a completed trial")
        done_1 = study_keys(results_dir, "results")
        tree = process_tree(proc.pid) - {proc.pid}
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        time.sleep(3)
        orphans = alive(tree)
    finally:
        _kill_group(proc)
    assert len(done_1) < trials, "the sweep finished before it could be interrupted"
    first = log.read_text()                        # SIGTERM is handled like Ctrl+C: resume hint, 143
    assert proc.returncode == 143 and "--resume" in first and "Traceback" not in first, (proc.returncode, first)
    numbers_1 = {t.user_attrs["trial_key"]: t.number for t in load_study(results_dir, "results").trials
                 if t.state.name == "COMPLETE"}

    # 2. resume, then Ctrl+C once a further trial completed
    proc, log = _start(["--resume", "--results-dir", results_dir], tmp_path, "second")
    try:
        _wait_for(lambda: len(study_keys(results_dir, "results")) > len(numbers_1), proc, log,
                  "a further completed trial")
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=90)
    finally:
        _kill_group(proc)
    second = log.read_text()
    numbers_2 = {t.user_attrs["trial_key"]: t.number for t in load_study(results_dir, "results").trials
                 if t.state.name == "COMPLETE"}
    assert len(numbers_2) < trials, "the resumed sweep finished before it could be interrupted"
    assert proc.returncode == 130 and "--resume" in second and "Traceback" not in second, second

    # 3. resume to the end
    final = run_cli(["--resume", "--results-dir", results_dir], cwd=tmp_path, timeout=240)
    assert final.returncode == 0, final.stdout + final.stderr
    numbers = _assert_each_trial_once(uri, results_dir, "results", trials)
    for before in (numbers_1, numbers_2):          # finished before a kill: never run again
        assert {k: numbers[k] for k in before} == before
    assert not orphans, f"SIGTERM left {len(orphans)} processes of the sweep running: {orphans}"
