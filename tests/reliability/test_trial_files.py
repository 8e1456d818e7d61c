"""A sweep whose space names ``checkpoint_dir`` and ``export_path`` (``tune.py`` as a subprocess, real local
Ray, Optuna and MLflow sqlite): every trial writes its own files under ``<sweep_id>/<trial_key>/``, a trial
whose Ray worker is killed after a checkpoint is retried and goes on from that checkpoint (``resume: true``),
and ``best`` names the exported weights of the trial it picks.
"""

from __future__ import annotations

import pytest

from rel_helpers import attempts, fault_env, load_study, mlflow_runs, run_cli, sqlite_uri, write_space

pytestmark = pytest.mark.slow

HEALTHY, KILLED = 0, 104


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    from sweeps.run import RunOptions, make_plan, open_study

    folder = tmp_path_factory.mktemp("files")
    space = write_space(folder, name="files", workload={
        "steps": 6, "eval_every": 1, "checkpoint_dir": "ckpt", "checkpoint_every": 2, "resume": True,
        "export_path": "models/model.pt"},
        parameters={"seed": {"values": [HEALTHY, KILLED]}}, trials=2, concurrency=1, max_retries=1)
    results_dir, uri = folder / "results", sqlite_uri(folder / "mlflow.db")
    plan = make_plan(RunOptions(space=str(space), results_dir=str(results_dir), tracking_uri=uri))
    results_dir.mkdir()
    study = open_study(plan)
    for seed in (HEALTHY, KILLED):
        study.enqueue_trial({"seed": seed})
    done = run_cli(["--space", space, "--results-dir", results_dir, "--tracking-uri", uri],
                   cwd=folder, timeout=300, env=fault_env(folder, {HEALTHY: "count",
                                                                    KILLED: "sigkill_after_checkpoint"}))
    print(done.stdout, done.stderr)
    study = load_study(results_dir, plan.sweep_id)
    keys = {t.params["seed"]: t.user_attrs["trial_key"] for t in study.trials}
    return {"done": done, "folder": folder, "uri": uri, "sweep": plan.sweep_id, "study": study, "key": keys}


def _first_steps(folder, seed):
    return [float(x) for x in (folder / "fault_markers" / f"seed{seed}.first_steps").read_text().split()]


def test_the_sweep_completes_both_trials(sweep):
    assert sweep["done"].returncode == 0, sweep["done"].stdout + sweep["done"].stderr
    assert sorted(t.state.name for t in sweep["study"].trials) == ["COMPLETE", "COMPLETE"]
    # no budgets and no dense baseline in this space: the hint is an absolute bound to fill in
    choose = next(x for x in sweep["done"].stdout.splitlines() if x.startswith("choose:"))
    assert f"tune.py best --budget 'seg.miou>=<value>' --sweep {sweep['sweep']}" in choose


def test_each_trial_has_its_own_checkpoint_and_exported_weights(sweep):
    folder, sweep_id = sweep["folder"], sweep["sweep"]
    for seed in (HEALTHY, KILLED):
        key = sweep["key"][seed]
        assert (folder / "ckpt" / sweep_id / key / "checkpoint.pt").is_file()
        assert (folder / "models" / sweep_id / key / "model.pt").is_file()
        assert (folder / "models" / sweep_id / key / "model.json").is_file()
    assert not (folder / "ckpt" / "checkpoint.pt").exists() and not (folder / "models" / "model.pt").exists()
    logged = {r.data.tags["disparse.trial_key"]: r.data.params for r in mlflow_runs(sweep["uri"], "trial", sweep_id)}
    key = sweep["key"][KILLED]
    assert logged[key]["export_path"] == str(folder / "models" / sweep_id / key / "model.pt")


def test_a_killed_trial_is_retried_from_its_checkpoint(sweep):
    folder = sweep["folder"]
    assert attempts(folder, KILLED) == 2
    first, retry = _first_steps(folder, KILLED)
    assert first == 1.0
    assert retry > 1.0            # a fresh start reports step 1 first; the retry went on from a checkpoint
    assert _first_steps(folder, HEALTHY) == [1.0]


def test_best_names_the_weights_of_the_trial_it_picks(sweep):
    folder = sweep["folder"]
    done = run_cli(["best", "--budget", "seg.miou>=0", "--tracking-uri", sweep["uri"]], cwd=folder)
    assert done.returncode == 0, done.stdout + done.stderr
    line = next(x for x in done.stdout.splitlines() if x.strip().startswith("weights"))
    path = line.split()[1]
    assert path.startswith(str(folder / "models" / sweep["sweep"])) and path.endswith("/model.pt")
    assert "not there" not in line


def test_best_exits_1_and_shows_the_closest_when_no_trial_meets_the_budget(sweep):
    done = run_cli(["best", "--budget", "compression>=1", "--tracking-uri", sweep["uri"]], cwd=sweep["folder"])
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert "no trial" in done.stdout.lower() and "compression" in done.stdout
