"""Trials that fail: one sweep (``tune.py`` as a subprocess, real local Ray, Optuna and MLflow sqlite) with

* a trial that raises (``RuntimeError``, injected),
* a trial whose loss diverges (``lr: 1e12`` → non-finite loss → ``FloatingPointError`` in run_trial),
* a trial whose Ray worker is SIGKILLed once, midway (after its first report: it must be retried and
  complete, with records that agree: one clean MLflow series, the attempt apart, its reason on the run),
* a trial whose Ray worker is SIGKILLed on every attempt (retried ``max_retries`` times, then FAILED),

next to a healthy trial. The sweep must finish (exit 0); every failure is FAILED in Ray (status ERROR),
in the Optuna study (TrialState.FAIL with ``fail_reason``) and in MLflow (status FAILED, tag
``disparse.failure`` with the reason); no failed trial is on the front. Faults are injected by
fault_plugin/sitecustomize.py, selected by the trial's ``seed``.
"""

from __future__ import annotations

import math

import pytest

from rel_helpers import (attempts, fault_env, latest_by_key, load_study, mlflow_runs, ray_trial_states,
                         result_rows, run_cli, sqlite_uri, write_space)

pytestmark = pytest.mark.slow

MAX_RETRIES = 1
HEALTHY, RAISES, DIVERGES, KILLED_ONCE, KILLED_ALWAYS = 0, 101, 1, 102, 103
FAULTS = {RAISES: "raise", DIVERGES: "count", KILLED_ONCE: "sigkill_midway", KILLED_ALWAYS: "sigkill_always"}
ENQUEUED = [  # (seed, lr): the order the sweep runs them in
    (HEALTHY, 0.005), (RAISES, 0.005), (DIVERGES, 1.0e12), (KILLED_ONCE, 0.005), (KILLED_ALWAYS, 0.005)]


def test_run_trial_raises_on_non_finite_loss():
    from disparse_core.trial import run_trial

    config = {"workload": "scenes", "tasks": ["seg", "normal"], "image_size": 32, "train_size": 16,
              "test_size": 8, "width": 8, "steps": 4, "batch_size": 8, "method": "snip",
              "sparsity": 0.5, "lr": 1.0e12, "num_threads": 1}
    reports = []
    with pytest.raises(FloatingPointError, match="non-finite loss at step"):
        run_trial(config, report=reports.append)
    assert not any(r.get("final") == 1.0 for r in reports)   # never reports a final result


@pytest.fixture(scope="module")
def faulty_sweep(tmp_path_factory):
    from sweeps.run import RunOptions, make_plan, open_study

    folder = tmp_path_factory.mktemp("faults")
    space = write_space(folder, name="faults", parameters={
        "seed": {"values": sorted({s for s, _ in ENQUEUED})},
        "lr": {"values": sorted({lr for _, lr in ENQUEUED})}},
        trials=len(ENQUEUED), concurrency=2, max_retries=MAX_RETRIES)
    results_dir = folder / "results"
    uri = sqlite_uri(folder / "mlflow.db")
    plan = make_plan(RunOptions(space=str(space), results_dir=str(results_dir), tracking_uri=uri))
    results_dir.mkdir()
    study = open_study(plan)                      # the runner loads this study and asks it in order
    for seed, lr in ENQUEUED:
        study.enqueue_trial({"seed": seed, "lr": lr})
    done = run_cli(["--space", space, "--results-dir", results_dir, "--tracking-uri", uri],
                   cwd=folder, timeout=300, env=fault_env(folder, FAULTS))
    print(done.stdout, done.stderr)
    study = load_study(results_dir, plan.sweep_id)
    keys = {t.params["seed"]: t.user_attrs["trial_key"] for t in study.trials}
    return {"done": done, "folder": folder, "results": results_dir, "uri": uri, "sweep": plan.sweep_id,
            "study": study, "key": keys}


def test_sweep_completes_despite_failing_trials(faulty_sweep):
    done = faulty_sweep["done"]
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert "finished" in done.stdout and "Pareto front" in done.stdout
    assert "complete 2" in done.stdout and "fail 3" in done.stdout


def test_failed_trials_are_fail_in_optuna_with_the_reason(faulty_sweep):
    latest = latest_by_key(faulty_sweep["study"])
    key = faulty_sweep["key"]
    assert len(latest) == len(ENQUEUED)
    state = {k: t.state.name for k, t in latest.items()}
    assert state == {key[HEALTHY]: "COMPLETE", key[KILLED_ONCE]: "COMPLETE", key[RAISES]: "FAIL",
                     key[DIVERGES]: "FAIL", key[KILLED_ALWAYS]: "FAIL"}
    reason = {k: t.user_attrs.get("fail_reason", "") for k, t in latest.items()}
    assert "injected fault" in reason[key[RAISES]]
    assert "non-finite loss" in reason[key[DIVERGES]]
    assert reason[key[KILLED_ALWAYS]]                      # Ray's actor-died error, one line
    assert "\n" not in reason[key[KILLED_ALWAYS]]
    best = {t.user_attrs["trial_key"] for t in faulty_sweep["study"].best_trials}
    assert best <= {key[HEALTHY], key[KILLED_ONCE]}


def test_killed_worker_is_retried_up_to_max_retries(faulty_sweep):
    folder = faulty_sweep["folder"]
    assert attempts(folder, KILLED_ONCE) == 2              # killed, retried, completed
    assert attempts(folder, KILLED_ALWAYS) == 1 + MAX_RETRIES
    # an error the trial code raises would happen again: it is not retried (sweeps/ray/trainable.py)
    assert attempts(folder, RAISES) == 1
    assert attempts(folder, DIVERGES) == 1


def test_failed_trials_are_error_in_ray(faulty_sweep):
    states = ray_trial_states(faulty_sweep["results"])
    key = faulty_sweep["key"]
    for seed in (RAISES, DIVERGES, KILLED_ALWAYS):
        # Ray persists its experiment state on a throttle, so the last transition of the final trial can
        # be missing from the file (seen as RUNNING); a failed trial must never read as TERMINATED.
        assert states[key[seed]] in ("ERROR", "RUNNING"), states
        assert states[key[seed]] != "TERMINATED", states
    for seed in (HEALTHY, KILLED_ONCE):
        assert states[key[seed]] in ("TERMINATED", "RUNNING"), states
        assert states[key[seed]] != "ERROR", states
    # only the trial that ended last can be caught unwritten: the others read as what they ended as
    ours = [states[key[seed]] for seed, _ in ENQUEUED]
    assert ours.count("RUNNING") <= 1, states
    assert "ERROR" in ours and "TERMINATED" in ours, states


def test_failed_trials_are_failed_in_mlflow_and_off_the_front(faulty_sweep):
    uri, key = faulty_sweep["uri"], faulty_sweep["key"]
    runs = mlflow_runs(uri, "trial", faulty_sweep["sweep"])
    by_key = {r.data.tags["disparse.trial_key"]: r for r in runs}
    assert len(runs) == len(by_key) == len(ENQUEUED)      # a retried trial keeps its one run
    for seed in (RAISES, DIVERGES, KILLED_ALWAYS):
        run = by_key[key[seed]]
        assert run.info.status == "FAILED"
        assert run.data.tags.get("disparse.failure")
        assert run.data.tags.get("disparse.pareto") != "true"
    assert "injected fault" in by_key[key[RAISES]].data.tags["disparse.failure"]
    assert "non-finite" in by_key[key[DIVERGES]].data.tags["disparse.failure"]
    for seed in (HEALTHY, KILLED_ONCE):
        run = by_key[key[seed]]
        assert run.info.status == "FINISHED" and "disparse.failure" not in run.data.tags
        assert math.isfinite(run.data.metrics["seg.miou"])
    front = {k for k, r in by_key.items() if r.data.tags.get("disparse.pareto") == "true"}
    assert front and front <= {key[HEALTHY], key[KILLED_ONCE]}
    csv = (faulty_sweep["results"] / "pareto_front.csv").read_text()
    for seed in (RAISES, DIVERGES, KILLED_ALWAYS):
        assert key[seed] not in csv
    (parent,) = mlflow_runs(uri, "sweep", faulty_sweep["sweep"])
    assert parent.info.status == "FINISHED"


def _whole_sentences_naming_the_signal(reason: str) -> None:
    assert reason.endswith(".") and "..." not in reason and "\n" not in reason, reason
    assert "SIGKILL" in reason and "worker process" in reason, reason


def test_a_retried_trials_records_agree_in_mlflow_and_optuna(faulty_sweep):
    """The trial killed midway: its run holds one clean series (the attempt that finished), the killed
    attempt is a run of its own under it, the retry and its reason are on the trial's run, and the
    Optuna number, the front and the study point to the attempt that counts."""
    from mlflow.tracking import MlflowClient

    uri, key, study = faulty_sweep["uri"], faulty_sweep["key"][KILLED_ONCE], faulty_sweep["study"]
    client = MlflowClient(uri)
    (run,) = [r for r in mlflow_runs(uri, "trial", faulty_sweep["sweep"]) if r.data.tags["disparse.trial_key"] == key]
    assert run.info.status == "FINISHED" and run.info.run_name == key
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "seg.miou")]
    assert steps == sorted(set(steps)) and steps[-1] == 6, steps           # one series, never going back
    assert run.data.tags["disparse.retries"] == "1"
    _whole_sentences_naming_the_signal(run.data.tags["disparse.attempt_1"])
    (attempt,) = [r for r in mlflow_runs(uri, "attempt", faulty_sweep["sweep"])
                  if r.data.tags["disparse.trial_key"] == key]
    assert attempt.info.status == "FAILED" and attempt.info.run_name == f"{key}-attempt1"
    assert attempt.data.tags["mlflow.parentRunId"] == run.info.run_id   # under the trial, not the sweep
    assert attempt.data.tags["disparse.failure"] == run.data.tags["disparse.attempt_1"]
    assert [m.step for m in client.get_metric_history(attempt.info.run_id, "seg.miou")] == [3]
    assert "disparse.pareto" not in attempt.data.tags
    # the Optuna trial the run names is the one that completed, with the values the run holds
    counted = latest_by_key(study)[key]
    assert counted.state.name == "COMPLETE"
    assert run.data.tags["disparse.optuna_number"] == str(counted.number)
    assert counted.values[0] == pytest.approx(run.data.metrics["compression"])
    assert counted.values[1] == pytest.approx(run.data.metrics["seg.miou"])
    # the front (tags, CSV) names runs that count only
    csv = (faulty_sweep["results"] / "pareto_front.csv").read_text()
    assert attempt.info.run_id not in csv
    front_ids = {r.info.run_id for r in mlflow_runs(uri, "trial", faulty_sweep["sweep"])
                 if r.data.tags.get("disparse.pareto") == "true"}
    assert front_ids and all(rid in csv for rid in front_ids)


def test_a_trial_killed_on_every_attempt_says_so_in_whole_sentences(faulty_sweep):
    uri, key = faulty_sweep["uri"], faulty_sweep["key"][KILLED_ALWAYS]
    (run,) = [r for r in mlflow_runs(uri, "trial", faulty_sweep["sweep"]) if r.data.tags["disparse.trial_key"] == key]
    assert run.info.status == "FAILED"
    assert run.data.tags["disparse.retries"] == str(MAX_RETRIES)
    for n in range(1, MAX_RETRIES + 1):
        _whole_sentences_naming_the_signal(run.data.tags[f"disparse.attempt_{n}"])
    _whole_sentences_naming_the_signal(run.data.tags["disparse.failure"])
    _whole_sentences_naming_the_signal(latest_by_key(faulty_sweep["study"])[key].user_attrs["fail_reason"])
    assert len([r for r in mlflow_runs(uri, "attempt", faulty_sweep["sweep"])
                if r.data.tags["disparse.trial_key"] == key]) == MAX_RETRIES


def test_trials_ran_on_loopback_only(faulty_sweep):
    rows = result_rows(faulty_sweep["results"])
    assert rows and {r.get("node_ip") for r in rows} == {"127.0.0.1"}


def test_only_memory_failures_count_as_retryable():
    import torch

    from sweeps.ray import is_retryable

    assert is_retryable(MemoryError())
    assert is_retryable(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    for err in (RuntimeError("injected fault"), FloatingPointError("non-finite loss at step 3"),
                ValueError("sparsity: 1.5"), KeyError("seg"), OSError("No such file")):
        assert not is_retryable(err), err
