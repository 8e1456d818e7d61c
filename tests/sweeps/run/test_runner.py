"""End-to-end sweeps in this process: real Ray (shared session), Optuna, MLflow sqlite, run_trial."""

from __future__ import annotations

import io
import json
import math
import pathlib

import pytest

from sweeps.run import RunOptions, make_plan, open_study, run_sweep
from sweeps.searcher import CONSTRAINTS, EARLY_STOPPED, FAIL_REASON, TRIAL_KEY

from sweep_helpers import load_study, sqlite_uri, sweep_run, trial_runs, write_space




@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One MLflow store for the module: the sweeps share its dense baseline."""
    return tmp_path_factory.mktemp("store")


def name_of(tmp_path):
    return "sweep-" + tmp_path.name[-24:].replace("_", "-")


def _run(plan):
    out = io.StringIO()
    try:
        return run_sweep(plan, out=out), out.getvalue()
    finally:
        print(out.getvalue())  # shown by pytest when a test fails


def _plan(space, results_dir, store, **kw):
    return make_plan(RunOptions(space=str(space), results_dir=str(results_dir),
                                tracking_uri=sqlite_uri(store / "mlflow.db"), **kw))


def _baseline_runs(uri):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("disparse-tune")
    return client.search_runs([exp.experiment_id], "tags.`disparse.role` = 'baseline'")


@pytest.mark.slow
def test_sweep_logs_parent_nested_runs_front_and_study(ray_local, tmp_path, store):
    plan = _plan(write_space(tmp_path), tmp_path / name_of(tmp_path), store)
    summary, printed = _run(plan)

    assert not summary.interrupted
    assert summary.states == {"COMPLETE": 4}
    assert summary.baseline and summary.baseline["seg.miou"] > 0
    client, parent = sweep_run(plan.tracking_uri, plan.sweep_id)
    assert parent.info.status == "FINISHED"
    runs = trial_runs(plan.tracking_uri, plan.sweep_id)
    assert len(runs) == 4
    assert sorted(r.data.tags["disparse.trial_key"] for r in runs) == ["t0000", "t0001", "t0002", "t0003"]
    for run in runs:
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.info.status == "FINISHED"
        assert run.data.params["method"] in ("disparse_static", "disparse_dynamic", "snip")
        assert 0.5 <= float(run.data.params["sparsity"]) <= 0.9
        assert json.loads(run.data.params["baseline_metrics"])["seg.miou"] == pytest.approx(
            summary.baseline["seg.miou"])
        assert math.isfinite(run.data.metrics["delta_m"])
        assert run.data.metrics["compression"] > 0.4
        assert "step" not in run.data.metrics                 # the step of each value, not a metric
        assert run.data.metrics["achieved_sparsity"] > 0       # the param `sparsity` is the target
        # per-evaluation history: the step-3 evaluation and the final one
        history = client.get_metric_history(run.info.run_id, "seg.miou")
        assert sorted(m.step for m in history) == [3, 6]
        if run.data.params["method"].startswith("disparse_"):   # the trial's watershed reaches MLflow
            where = tmp_path / run.info.run_id
            where.mkdir()
            iou = json.loads(pathlib.Path(client.download_artifacts(run.info.run_id, "mask_iou.json",
                                                                    str(where))).read_text())
            assert set(iou["watershed"]) == {"layer", "cutoff", "starved"}
            if iou["watershed"]["layer"] is not None:
                assert run.data.tags["disparse.watershed"] == iou["watershed"]["layer"]
                assert run.data.metrics["suggested_cutoff"] == iou["watershed"]["cutoff"]
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert "pareto_front.csv" in artifacts
    # the results folder's copy is the logged one: objectives, then the sampled params (method, sparsity)
    local = (plan.results_dir / "pareto_front.csv").read_text()
    logged = pathlib.Path(client.download_artifacts(parent.info.run_id, "pareto_front.csv", str(tmp_path)))
    assert local == logged.read_text()
    assert local.splitlines()[0].startswith("run_id,trial_key,compression,delta_m,method,sparsity")
    front_keys = {r.data.tags["disparse.trial_key"] for r in runs
                  if r.data.tags.get("disparse.pareto") == "true"}
    assert front_keys and front_keys == {r["trial_key"] for r in summary.front}

    study = load_study(plan.results_dir, plan.sweep_id)
    assert len(study.trials) == 4
    for t in study.trials:
        assert t.state.name == "COMPLETE"
        assert len(t.user_attrs[CONSTRAINTS]) == 1       # the one budget, told before tell()
    assert len(_baseline_runs(plan.tracking_uri)) == 1
    assert "trials 4/4 done" in printed and "pareto" in printed
    # the final hypervolume (printed, tagged) takes its reference point from all the trials at once, so
    # it is the same whatever order they finished in
    from sweeps.pareto import hypervolume
    points = [(r.data.metrics["compression"], r.data.metrics["delta_m"]) for r in runs]
    for order in (points, points[::-1]):
        assert hypervolume(order, ["maximize", "maximize"]) == pytest.approx(summary.hypervolume)
    assert float(parent.data.tags["disparse.hypervolume"]) == pytest.approx(summary.hypervolume)
    # the table printed at the end shows what the sweep sampled, as `tune.py pareto` does
    from sweeps.run import format_front
    table = format_front(summary.front, plan.spec.metric_names, among=summary.eligible)
    header = table.splitlines()[0].split()
    assert header[:3] == ["trial", "compression", "delta_m"] and {"method", "sparsity"} <= set(header[3:])
    # `best` with no --budget answers under the budget the space declared, and says so
    from sweeps import queries
    answer = io.StringIO()
    code = queries.best(plan.tracking_uri, None, None, plan.sweep_id, out=answer, err=answer)
    assert code in (0, 1), answer.getvalue()
    assert "budgets: seg.miou=-50% (the sweep's own, from its space" in answer.getvalue()


@pytest.mark.slow
def test_failing_trial_is_failed_everywhere_and_sweep_completes(ray_local, tmp_path, store):
    space = write_space(tmp_path, parameters={
        "method": {"value": "snip"},
        "sparsity": {"values": [0.5, 0.7]},
        "lr": {"values": [0.001, 1.0e12]},          # 1e12 diverges: run_trial raises
    }, trials=3, concurrency=2, max_retries=1)
    plan = _plan(space, tmp_path / name_of(tmp_path), store)
    plan.results_dir.mkdir(parents=True)
    study = open_study(plan)
    study.enqueue_trial({"sparsity": 0.5, "lr": 1.0e12})
    study.enqueue_trial({"sparsity": 0.5, "lr": 0.001})
    study.enqueue_trial({"sparsity": 0.7, "lr": 0.001})

    summary, _ = _run(plan)

    assert not summary.interrupted
    assert summary.states == {"COMPLETE": 2, "FAIL": 1}
    study = load_study(plan.results_dir, plan.sweep_id)
    failed = [t for t in study.trials if t.state.name == "FAIL"]
    assert failed[0].params["lr"] == 1.0e12
    assert "non-finite" in failed[0].user_attrs[FAIL_REASON]
    runs = {r.data.tags["disparse.trial_key"]: r for r in trial_runs(plan.tracking_uri, plan.sweep_id)}
    assert len(runs) == 3
    bad = runs[failed[0].user_attrs[TRIAL_KEY]]
    assert bad.info.status == "FAILED"
    assert "non-finite" in bad.data.tags["disparse.failure"]
    assert bad.data.tags.get("disparse.pareto") != "true"
    assert all(r.info.status == "FINISHED" for k, r in runs.items() if r is not bad)
    assert summary.front
    assert {r["trial_key"] for r in summary.front} <= set(runs) - {failed[0].user_attrs[TRIAL_KEY]}
    _, parent = sweep_run(plan.tracking_uri, plan.sweep_id)
    assert parent.info.status == "FINISHED"
    # same fixed workload as the other sweep of this module: one dense baseline, reused
    assert len(_baseline_runs(plan.tracking_uri)) == 1


@pytest.mark.slow
def test_a_space_with_fewer_configurations_than_trials_trains_each_once_and_ends(ray_local, tmp_path, store):
    """Two configurations, four trials asked for: two trainings, the repeats named and counted apart."""
    space = write_space(tmp_path, parameters={"method": {"value": "snip"}, "sparsity": {"values": [0.5, 0.9]}},
                        sampler={"type": "random", "seed": 0}, trials=4, concurrency=1)
    plan = _plan(space, tmp_path / name_of(tmp_path), store)
    summary, printed = _run(plan)
    assert not summary.interrupted
    assert summary.states["COMPLETE"] == 2 and summary.states["DUPLICATE"] >= 20 and "FAIL" not in summary.states
    assert "search space looks exhausted" in printed
    runs = trial_runs(plan.tracking_uri, plan.sweep_id)
    assert sorted(r.data.params["sparsity"] for r in runs) == ["0.5", "0.9"]   # MLflow: the two trainings


@pytest.mark.slow
def test_asha_stopped_trial_is_pruned_and_off_the_front(ray_local, tmp_path, store):
    space = write_space(
        tmp_path,
        workload={"steps": 8, "eval_every": 2},
        parameters={"method": {"values": ["snip", "random"]},
                    "sparsity": {"values": [0.3, 0.98]}},
        objectives=[{"name": "compression", "direction": "maximize"},
                    {"name": "seg.miou", "direction": "maximize"}],
        early_stopping={"type": "asha", "metric": "compression", "grace_steps": 2,
                        "reduction_factor": 2},
        budgets={}, baseline=False, trials=2, concurrency=1)
    plan = _plan(space, tmp_path / name_of(tmp_path), store)
    plan.results_dir.mkdir(parents=True)
    study = open_study(plan)
    # one at a time: a sparse trial sets the rung, then a much denser one falls below it (compression is
    # fixed by the mask from step 0 on, so the decision does not depend on how training goes); a repeat of
    # the sparse one would not be trained again (sweeps.searcher), so two trials only
    study.enqueue_trial({"method": "random", "sparsity": 0.98})
    study.enqueue_trial({"method": "snip", "sparsity": 0.3})

    summary, _ = _run(plan)

    study = load_study(plan.results_dir, plan.sweep_id)
    pruned = [t for t in study.trials if t.state.name == "PRUNED"]
    assert [t.params for t in pruned] == [{"method": "snip", "sparsity": 0.3}], [
        (t.number, t.state.name, t.user_attrs.get("metrics", {}).get("step")) for t in study.trials]
    for t in pruned:
        assert t.values is None and t.user_attrs[EARLY_STOPPED] is True
        assert t.user_attrs["metrics"]["step"] < 8
    pruned_keys = {t.user_attrs[TRIAL_KEY] for t in pruned}
    runs = {r.data.tags["disparse.trial_key"]: r for r in trial_runs(plan.tracking_uri, plan.sweep_id)}
    for key in pruned_keys:
        assert runs[key].data.tags["disparse.early_stopped"] == "true"
        assert runs[key].data.tags.get("disparse.pareto") != "true"
    assert summary.front and not pruned_keys & {r["trial_key"] for r in summary.front}
    best = {t.number for t in study.best_trials}
    assert best and all(study.trials[n].state.name == "COMPLETE" for n in best)


@pytest.mark.slow
def test_a_tracker_that_cannot_open_beside_ray_stops_the_sweep_with_ray_closed(ray_local, tmp_path,
                                                                                template_db, monkeypatch):
    """The MLflow sweep run fails to open while Ray started beside it (another sweep took the id between
    the plan and the run): that error comes out as is, Ray's session is closed, the opening's thread is
    joined, the results folder is not made and no MLflow run is left RUNNING."""
    import shutil
    import threading

    from mlflow.tracking import MlflowClient

    from sweeps.errors import UserInputError
    from sweeps.ray import RaySession
    from sweeps.tracking import SweepTracker

    shutil.copy(template_db, tmp_path / "mlflow.db")
    plan = _plan(write_space(tmp_path / "in"), tmp_path / name_of(tmp_path), tmp_path)
    assert not plan.ray_address and not plan.spec.resources.get("gpu")  # the opening runs beside ray.init
    other = SweepTracker(plan.tracking_uri, plan.experiment)
    other.start_sweep(plan.spec, sweep_id=plan.sweep_id)
    other.abort("the other sweep stopped")
    closed = []
    close = RaySession.close
    monkeypatch.setattr(RaySession, "close", lambda session: (closed.append(session), close(session))[-1])

    with pytest.raises(UserInputError, match="already exists"):
        _run(plan)

    assert len(closed) == 1
    assert not [t for t in threading.enumerate() if t.name == "mlflow-open"]
    assert not plan.results_dir.exists()
    client = MlflowClient(tracking_uri=plan.tracking_uri)
    experiment = client.get_experiment_by_name(plan.experiment)
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "KILLED"   # the other sweep's, as it left it


# --- Ray-free: the ask/tell driver and the progress line (milliseconds) ----------------------------

def _driver(n_trials=3, constraints=None):
    import optuna

    from sweeps.searcher import StudyDriver

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=["maximize", "maximize"],
                                sampler=optuna.samplers.RandomSampler(seed=0))
    suggest = lambda trial: {"sparsity": trial.suggest_float("sparsity", 0.1, 0.9)}  # noqa: E731
    return StudyDriver(study, suggest, ["compression", "seg.miou"], n_trials,
                       constraints=constraints, extra_config={"num_threads": 1})


def test_driver_tells_complete_only_for_final_results():
    driver = _driver(constraints=lambda m: [0.3 - m["seg.miou"]])
    full, stopped, nan = driver.ask(), driver.ask(), driver.ask()
    assert driver.ask() is None and driver.remaining() == 0
    assert full.config["num_threads"] == 1 and "sparsity" in full.params

    assert driver.tell_result(full.key, {"compression": 0.8, "seg.miou": 0.4, "final": 1.0}) == "complete"
    assert driver.tell_result(stopped.key, {"compression": 0.9, "seg.miou": 0.9, "step": 2}) == "pruned"
    assert driver.tell_result(nan.key, {"compression": 0.5, "seg.miou": math.nan, "final": 1.0}) == "failed"

    trials = {t.user_attrs[TRIAL_KEY]: t for t in driver.study.trials}
    assert trials[full.key].state.name == "COMPLETE" and trials[full.key].values == [0.8, 0.4]
    assert trials[full.key].user_attrs[CONSTRAINTS] == pytest.approx([-0.1])
    assert trials[stopped.key].state.name == "PRUNED" and trials[stopped.key].values is None
    assert trials[stopped.key].user_attrs[EARLY_STOPPED] is True
    assert trials[nan.key].state.name == "FAIL" and "seg.miou" in trials[nan.key].user_attrs[FAIL_REASON]
    assert [t.number for t in driver.study.best_trials] == [trials[full.key].number]


def test_recover_interrupted_reruns_the_same_key_and_params_once():
    driver = _driver(n_trials=3)
    done, killed = driver.ask(), driver.ask()
    driver.tell_result(done.key, {"compression": 0.5, "seg.miou": 0.3, "final": 1.0})
    # a new driver over the same study = a resumed process: `killed` is still RUNNING
    from sweeps.searcher import StudyDriver

    resumed = StudyDriver(driver.study, driver._suggest, driver.objectives, 3)
    assert resumed.recover_interrupted() == [killed.key]
    assert resumed.done_keys() == {done.key} and resumed.remaining() == 2
    again = resumed.ask()
    assert again.key == killed.key and again.params == killed.params
    third = resumed.ask()
    assert third.key not in (done.key, killed.key)
    assert resumed.ask() is None
    assert resumed.recover_interrupted() == [killed.key, third.key]  # killed again: still one key each
    assert resumed.remaining() == 2


def test_a_trial_killed_before_its_key_was_written_gets_one_on_resume():
    from optuna.trial import TrialState

    from sweeps.searcher import StudyDriver

    driver = _driver(n_trials=2)
    bare = driver.study.ask()                       # the driver died right after study.ask()
    assert TRIAL_KEY not in bare.user_attrs
    resumed = StudyDriver(driver.study, driver._suggest, driver.objectives, 2)
    assert resumed.recover_interrupted() == ["t0000"]
    failed = driver.study.trials[bare.number]
    assert failed.state == TrialState.FAIL and failed.user_attrs[TRIAL_KEY] == "t0000"
    again = resumed.ask()
    assert again.key == "t0000" and all(TRIAL_KEY in t.user_attrs for t in driver.study.trials)


def test_progress_prints_a_line_only_when_something_changes():
    from sweeps.run import SweepProgress

    stream = io.StringIO()
    ticks = iter(range(100))
    progress = SweepProgress(3, ["compression", "seg.miou"], ["maximize", "maximize"],
                             stream=stream, clock=lambda: float(next(ticks)),
                             hypervolume=lambda pts, dirs: float(len(pts)))
    progress.render()
    progress.render()
    progress.trial_started("t0000")
    progress.trial_finished("t0000", {"compression": 0.5, "seg.miou": 0.3})
    progress.trial_finished("t0001", {"compression": 0.9, "seg.miou": 0.1}, full=False)
    progress.trial_failed("t0002", "boom")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 6, lines
    assert lines[0].endswith("trials 0/3 done, 0 running | pareto 0")
    assert "trials 1/3 done, 0 running | pareto 1 | hv 1" in lines[2]
    assert "(1 early-stopped)" in lines[3] and "pareto 1" in lines[3]
    assert "trial t0002 failed: boom" in lines[4]
    assert "3/3 done (1 early-stopped, 1 failed)" in lines[5]
    assert progress.hv_history == [(1, 1.0)]


@pytest.mark.parametrize("sampler", ["random", "tpe"])
def test_a_resumed_study_draws_new_configurations_not_the_first_runs_again(tmp_path, sampler):
    """Reopening the study of an interrupted sweep with the space's seed would repeat the first run's
    draws (the first trial after a resume = trial 0); the sampler is reseeded from the seed and the count,
    the same way on every resume."""
    from optuna.trial import TrialState

    from sweeps.run import make_driver

    def first_and_resumed(folder):
        space = write_space(folder, sampler={"type": sampler, "seed": 7}, budgets={}, baseline=False,
                            trials=6, objectives=["compression", "nonzero_params"])
        plan = make_plan(RunOptions(space=str(space), results_dir=str(folder / "r"),
                                    tracking_uri=sqlite_uri(folder / "mlflow.db")))
        plan.results_dir.mkdir(parents=True)
        driver = make_driver(plan.spec, open_study(plan), None)
        first = [driver.ask() for _ in range(2)]
        for asked in first:
            driver.study.tell(asked.number, state=TrialState.FAIL)   # as after a kill: stopped, to be rerun
        resumed = make_driver(plan.spec, open_study(plan), None)     # what --resume does
        return [a.params for a in first], resumed.ask().params

    first, again = first_and_resumed(tmp_path / "a")
    assert again and again not in first, (again, first)
    # reproducible: the same sweep interrupted at the same point resumes with the same draw
    assert first_and_resumed(tmp_path / "b") == (first, again)
    from sweeps.space import sampler_seed
    assert sampler_seed(7, 2) != sampler_seed(7, 3) and sampler_seed(7, 0) == 7
    assert sampler_seed(None, 5) is None


def test_trial_files_go_to_one_folder_per_trial_that_a_rerun_finds_again(tmp_path):
    """``checkpoint_dir`` / ``export_path`` of the space, per trial: ``<sweep_id>/<trial_key>/``; the trial
    rerun after a kill gets the folder of the attempt that was interrupted (so ``resume: true`` goes on)."""
    from optuna.trial import TrialState

    from sweeps.run import make_driver

    space = write_space(tmp_path, budgets={}, trials=3, workload={
        "checkpoint_dir": "ck", "checkpoint_every": 2, "resume": True, "export_path": "out/net.pt"})
    plan = make_plan(RunOptions(space=str(space), results_dir=str(tmp_path / "r"),
                                tracking_uri=sqlite_uri(tmp_path / "mlflow.db")))
    plan.results_dir.mkdir(parents=True)
    driver = make_driver(plan.spec, open_study(plan), None, plan.sweep_id)
    first, killed = driver.ask(), driver.ask()
    root = pathlib.Path.cwd()
    assert first.config["checkpoint_dir"] == str(root / "ck" / plan.sweep_id / first.key)
    assert first.config["export_path"] == str(root / "out" / plan.sweep_id / first.key / "net.pt")
    assert killed.config["checkpoint_dir"] != first.config["checkpoint_dir"]
    driver.study.tell(first.number, state=TrialState.FAIL)

    resumed = make_driver(plan.spec, open_study(plan), None, plan.sweep_id)
    assert killed.key in resumed.recover_interrupted()
    again = next(a for a in (resumed.ask(), resumed.ask()) if a.key == killed.key)
    assert again.config["checkpoint_dir"] == killed.config["checkpoint_dir"]
    assert again.config["export_path"] == killed.config["export_path"]


@pytest.mark.slow
def test_a_second_sweep_with_the_same_fixed_workload_reuses_the_dense_baseline(ray_local, tmp_path):
    """Two sweeps on one fresh store: the first trains the dense baseline, the second (other sampled
    params, same fixed workload) reuses that MLflow run and compares against the same metrics."""
    fresh = tmp_path / "store"
    fresh.mkdir()
    summaries, outputs = [], []
    for name, low in (("one", 0.5), ("two", 0.6)):
        space = write_space(tmp_path / name, name=name, trials=1, concurrency=1,
                            parameters={"method": {"value": "snip"},
                                        "sparsity": {"distribution": "uniform", "low": low, "high": 0.9}})
        summary, printed = _run(_plan(space, tmp_path / name / "results", fresh))
        summaries.append(summary)
        outputs.append(printed)
    assert "dense baseline: training" in outputs[0] and "reusing" not in outputs[0]
    assert "dense baseline: reusing MLflow run" in outputs[1] and "dense baseline: training" not in outputs[1]
    assert len(_baseline_runs(sqlite_uri(fresh / "mlflow.db"))) == 1
    assert summaries[0].baseline == summaries[1].baseline
