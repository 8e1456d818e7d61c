"""What a user browsing a sweep in MLflow's UI reads: the printed links, the sweep run's description, the
metric names, run durations, the Optuna study's objective names. One real sweep (``tune.py`` in this
process: real Ray, Optuna, MLflow sqlite, run_trial), read back through ``MlflowClient`` and Optuna."""

from __future__ import annotations

import io
import re

import pytest

from sweep_helpers import load_study, sqlite_uri, sweep_run, trial_runs, write_space

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def browsed(ray_local, tmp_path_factory):
    from sweeps import cli

    folder = tmp_path_factory.mktemp("ui")
    space = write_space(folder, name="ui-demo")
    uri = sqlite_uri(folder / "mlflow.db")
    results = folder / "ui-demo"
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(["--space", str(space), "--results-dir", str(results), "--tracking-uri", uri],
                    out=out, err=err)
    printed = out.getvalue()
    print(printed, err.getvalue())
    assert code == 0, printed + err.getvalue()
    client, parent = sweep_run(uri, "ui-demo")
    return {"uri": uri, "printed": printed, "client": client, "parent": parent, "results": results,
            "runs": trial_runs(uri, "ui-demo"), "folder": folder}


def test_the_sweep_prints_the_runs_and_sweep_pages_at_start_and_end(browsed):
    parent = browsed["parent"]
    eid, rid = parent.info.experiment_id, parent.info.run_id
    printed = browsed["printed"]
    runs = f"http://127.0.0.1:5000/#/experiments/{eid}?workflowType=machine_learning"
    sweep = f"http://127.0.0.1:5000/#/experiments/{eid}/runs/{rid}?workflowType=machine_learning"
    assert printed.count(runs) == 2 and printed.count(sweep) == 2, printed
    start, end = printed.index(runs), printed.rindex(runs)
    assert start < printed.index("trials 0/4 done") < printed.index("Pareto front (") < end
    # the links use the host and port of the printed `mlflow ui` command, which turns telemetry off
    commands = [ln for ln in printed.splitlines() if "mlflow ui " in ln]
    assert len(commands) == 2
    for line in commands:
        assert "MLFLOW_DISABLE_TELEMETRY=true mlflow ui" in line
        assert "--host 127.0.0.1 --port 5000" in line and browsed["uri"] in line
    # optuna-dashboard's one-line command over the sweep's study file, beside it
    live = [ln for ln in printed.splitlines() if ln.startswith("live:")]
    assert len(live) == 2 and all("optuna-dashboard --host 127.0.0.1 --port 8080 " in ln for ln in live)
    assert str(browsed["results"] / "optuna.journal") in live[0]


def test_best_and_report_print_the_chosen_trials_page(browsed):
    from sweeps import queries

    parent, uri = browsed["parent"], browsed["uri"]
    eid = parent.info.experiment_id
    out = io.StringIO()
    assert queries.best(uri, None, None, "ui-demo", out=out, err=out) in (0, 1), out.getvalue()
    chosen = re.search(r"run id\s+([0-9a-f]{32})", out.getvalue()).group(1)
    page = f"http://127.0.0.1:5000/#/experiments/{eid}/runs/{chosen}?workflowType=machine_learning"
    assert page in out.getvalue()
    out = io.StringIO()
    assert queries.report(uri, None, "ui-demo", out=out, err=out) == 0, out.getvalue()
    text = out.getvalue()
    assert page in text                                   # the same trial `best` picks, as report's "chosen"
    assert f"#/experiments/{eid}/runs/{parent.info.run_id}?workflowType=machine_learning" in text
    assert "MLFLOW_DISABLE_TELEMETRY=true mlflow ui" in text


def test_link_builders_match_the_routes_of_the_installed_ui():
    """The addresses follow MLflow 3.17's hash routes (checked in its JS bundle and in a browser)."""
    import mlflow

    from sweeps.tracking import artifact_route, experiment_url, run_route, run_url

    assert mlflow.__version__.split(".")[:2] == ["3", "17"], "recheck the routes against this MLflow"
    assert experiment_url("7") == "http://127.0.0.1:5000/#/experiments/7?workflowType=machine_learning"
    assert run_url("7", "ab12", port=5123) == \
        "http://127.0.0.1:5123/#/experiments/7/runs/ab12?workflowType=machine_learning"
    assert run_route("7", "ab12").startswith("#/experiments/7/runs/ab12")
    assert artifact_route("7", "ab12", "pareto_front.html").startswith(
        "#/experiments/7/runs/ab12/artifacts/pareto_front.html")


def test_the_study_names_its_objectives_for_optuna_dashboard(browsed):
    study = load_study(browsed["results"], "ui-demo")
    assert study.metric_names == ["compression", "delta_m"]


def test_a_new_study_is_named_once_and_a_resumed_one_keeps_its_names(tmp_path):
    import warnings

    from sweeps.run import RunOptions, make_plan, open_study

    plan = make_plan(RunOptions(space=str(write_space(tmp_path, name="named")),
                                results_dir=str(tmp_path / "named"), tracking_uri=sqlite_uri(tmp_path / "m.db")))
    plan.results_dir.mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("error")              # no ExperimentalWarning reaches the user
        study = open_study(plan)
        assert study.metric_names == ["compression", "delta_m"]
        assert open_study(plan).metric_names == ["compression", "delta_m"]
