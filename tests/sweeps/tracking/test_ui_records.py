"""What a user browsing a sweep in MLflow's UI reads: the printed links, the sweep run's description, the
metric names, run durations, the Optuna study's objective names. One real sweep (``tune.py`` in this
process: real Ray, Optuna, MLflow sqlite, run_trial), read back through ``MlflowClient`` and Optuna."""

from __future__ import annotations

import io
import re

import pytest

from sweep_helpers import load_study, sqlite_uri, sweep_run, trial_runs, write_space

pytestmark = pytest.mark.slow

BUDGETS = {"normal.mean": "+500%"}       # loose: the tiny trials are far from dense; some must meet it


@pytest.fixture(scope="module")
def browsed(ray_local, tmp_path_factory):
    from sweeps import cli

    folder = tmp_path_factory.mktemp("ui")
    space = write_space(folder, name="ui-demo", budgets=BUDGETS)
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


def _note(run) -> str:
    return run.data.tags.get("mlflow.note.content", "")


def test_the_sweep_runs_description_reports_front_choice_budgets_and_next_steps(browsed):
    from sweeps import queries

    parent, runs, uri = browsed["parent"], browsed["runs"], browsed["uri"]
    eid = parent.info.experiment_id
    note = _note(parent)
    assert note.startswith("## Sweep `ui-demo`: finished, 4 of 4 trials done"), note
    assert "space `ui-demo.yaml`" in note and "disparse_static, disparse_dynamic, snip" in note
    assert "4 trials, 2 at a time" in note and "sampler tpe (seed 3)" in note
    assert "compression ↑ (higher is better, share of the dense model's prunable weights removed)" in note
    assert "delta_m ↑ (higher is better, % vs the dense baseline)" in note
    assert "`normal.mean=+500%`" in note
    baseline_id = parent.data.tags["disparse.baseline"]
    assert f"[dense run](#/experiments/{eid}/runs/{baseline_id}?workflowType=machine_learning)" in note
    assert "| seg.miou | higher | fraction 0-1 |" in note and "| normal.mean | lower | degrees |" in note
    # the front as a table: one row per trial tagged on the front, its name linked to its run page
    front = note.split("### Pareto front", 1)[1].split("###", 1)[0]
    assert "| trial | compression ↑ | delta_m ↑ |" in front
    for run in runs:
        link = f"[{run.data.tags['disparse.trial_key']}](#/experiments/{eid}/runs/{run.info.run_id}" \
               "?workflowType=machine_learning)"
        assert (link in front) == (run.data.tags.get("disparse.pareto") == "true"), (link, front)
    # the trial `best` picks under the sweep's budgets, and how to resume or choose again
    out = io.StringIO()
    queries.best(uri, None, None, "ui-demo", out=out, err=out)
    chosen = re.search(r"run id\s+([0-9a-f]{32})", out.getvalue()).group(1)
    picks = note.split("### The trial `best` picks", 1)[1].split("###", 1)[0]
    assert f"/runs/{chosen}?" in picks
    assert f"--resume --results-dir {browsed['results']}" in note
    assert "tune.py best --sweep ui-demo --budget" in note
    assert len(note) <= 8000


def test_each_trial_run_has_a_one_line_description_and_its_name(browsed):
    for run in browsed["runs"]:
        note, tags = _note(run), run.data.tags
        assert run.info.run_name == tags["disparse.trial_key"]      # the name the tables and the CLI use
        assert "\n" not in note and note.startswith(run.data.params["method"] + " · sparsity ")
        assert " · cutoff " in note and " · Δm " in note and " %" in note
        on_front = tags.get("disparse.pareto") == "true"
        assert note.endswith("on the Pareto front") and (note.endswith("not on the Pareto front") != on_front)


def test_the_description_follows_the_trials_as_they_end(store, tmp_path):
    """Mid-sweep, the sweep run says how many trials ended and which are on the front so far."""
    from mlflow.tracking import MlflowClient

    from sweeps.run import RunOptions, make_plan
    from sweeps.tracking import SweepTracker

    plan = make_plan(RunOptions(space=str(write_space(tmp_path, name="live")), results_dir=str(tmp_path / "live"),
                                tracking_uri=store))
    client = MlflowClient(store)
    config = {"method": "snip", "sparsity": 0.5, "cutoff": None}
    with SweepTracker(store) as tracker:
        parent = tracker.start_sweep(plan.spec, sweep_id="live", config={"trials": 4, "concurrency": 2})
        assert "running, 0 of 4 trials done" in _note(client.get_run(parent))
        tracker.trial_started("t0000", config)
        tracker.trial_started("t0001", {**config, "sparsity": 0.8})
        tracker.trial_completed("t0000", {"compression": 0.5, "delta_m": -1.0, "seg.miou": 0.7, "sparsity": 0.5})
        note = _note(client.get_run(parent))
        assert "running, 1 of 4 trials done, 1 running" in note and "[t0000](" in note
        assert "Pareto front: 1 of 1 fully trained trials" in note
        first = tracker._trials["t0000"]
        assert _note(client.get_run(first)).endswith("on the Pareto front")
        tracker.trial_completed("t0001", {"compression": 0.8, "delta_m": 2.0, "seg.miou": 0.72, "sparsity": 0.8})
        note = _note(client.get_run(parent))
        assert "running, 2 of 4 trials done" in note and "Pareto front: 1 of 2 fully trained trials" in note
        # t0001 dominates t0000: the first trial leaves the front, its tag and description follow
        assert _note(client.get_run(first)).endswith("not on the Pareto front")
        assert "disparse.pareto" not in client.get_run(first).data.tags
        assert client.get_run(tracker._trials["t0001"]).data.tags["disparse.pareto"] == "true"
        tracker.abort("sweep interrupted; continue it with --resume")
    assert _note(client.get_run(parent)).startswith("## Sweep `live`: interrupted")


def test_metric_names_are_clean(browsed):
    from sweeps import tracking

    parent, runs = browsed["parent"], browsed["runs"]
    # sweep-level figures under one prefix, on the sweep run only
    assert parent.data.metrics and all(k.startswith("sweep.") for k in parent.data.metrics), parent.data.metrics
    assert {"sweep.front_size", "sweep.hypervolume", "sweep.trials_finished"} <= set(parent.data.metrics)
    eid = parent.info.experiment_id
    for obj in ("compression", "delta_m"):         # short keys, naming the trial, not a run id
        value, name = re.fullmatch(r"(\S+) \((t\d{4})\)", parent.data.tags[f"best.{obj}"]).groups()
        assert name in {r.data.tags["disparse.trial_key"] for r in runs}
    for run in runs:
        names = set(run.data.metrics)
        assert "step" not in names and "final" not in names                  # no stray step metric
        assert not any(k.startswith("sweep.") for k in names)
        assert "sparsity" not in names and "achieved_sparsity" in names    # the param is the target
        assert "sparsity" in run.data.params
    # readers see the achieved sparsity under the name objectives and budgets use
    records = {r["run_id"]: r for r in tracking.load_trials(browsed["uri"], sweep_id="ui-demo")}
    for run in runs:
        assert records[run.info.run_id]["metrics"]["sparsity"] == run.data.metrics["achieved_sparsity"]
    assert eid


def test_baseline_and_trial_runs_last_as_long_as_their_training(browsed):
    client, parent = browsed["client"], browsed["parent"]
    baseline = client.get_run(parent.data.tags["disparse.baseline"])
    trained = float(re.search(r"dense baseline: done in ([\d.]+)s", browsed["printed"]).group(1))
    seconds = (baseline.info.end_time - baseline.info.start_time) / 1000
    assert seconds >= trained - 0.1, (seconds, trained)
    for run in browsed["runs"]:
        seconds = (run.info.end_time - run.info.start_time) / 1000
        assert seconds >= run.data.metrics["wall_time_s"] - 0.1, (seconds, run.data.metrics["wall_time_s"])


def test_the_documented_filters_match_the_front_and_the_trials_within_budgets(browsed):
    """The description links the runs table filtered to the front and to the trials within the budgets,
    sorted by a metric (MLflow then lists the trials as rows instead of under their collapsed sweep); each
    filter and sort key is valid MLflow search syntax that returns exactly those trials."""
    from urllib.parse import parse_qs, urlsplit

    from sweeps import tracking

    client, parent, runs = browsed["client"], browsed["parent"], browsed["runs"]
    eid = parent.info.experiment_id
    note = _note(parent)
    links = dict(re.findall(r"\[(the front|the trials within the budgets)\]\((#/experiments/[^)]+)\)", note))
    assert set(links) == {"the front", "the trials within the budgets"}, note
    records = {r["run_id"]: r for r in tracking.load_trials(browsed["uri"], sweep_id="ui-demo")}
    baseline = tracking.load_baseline_for(list(records.values()))["metrics"]
    from sweeps.budgets import parse_budgets, violations
    budgets = parse_budgets(BUDGETS)
    expected = {
        "the front": {r.info.run_id for r in runs if r.data.tags.get("disparse.pareto") == "true"},
        "the trials within the budgets": {rid for rid, rec in records.items() if rec["status"] == "FINISHED"
                                          and not violations(budgets, rec["metrics"], baseline)},
    }
    for name, link in links.items():
        route, _, query = link[1:].partition("?")
        assert route == f"/experiments/{eid}/runs"      # the runs table itself: the bare experiment redirects
        q = {k: v[0] for k, v in parse_qs(query).items()}
        assert q["workflowType"] == "machine_learning" and q["orderByKey"] == "metrics.`compression`"
        found = client.search_runs([eid], filter_string=q["searchFilter"],
                                   order_by=[q["orderByKey"] + (" ASC" if q["orderByAsc"] == "true" else " DESC")])
        assert {r.info.run_id for r in found} == expected[name] and expected[name], name
        values = [r.data.metrics["compression"] for r in found]
        assert values == sorted(values, reverse=True)


def test_the_description_says_the_baseline_is_coming_until_it_is_recorded(store, tmp_path):
    from mlflow.tracking import MlflowClient

    from sweeps.run import RunOptions, make_plan
    from sweeps.tracking import SweepTracker

    plan = make_plan(RunOptions(space=str(write_space(tmp_path, name="base")), results_dir=str(tmp_path / "b"),
                                tracking_uri=store))
    client = MlflowClient(store)
    with SweepTracker(store) as tracker:
        parent = tracker.start_sweep(plan.spec, sweep_id="base", config={"trials": 4})
        assert "the dense baseline is being trained" in _note(client.get_run(parent))
        tracker.log_baseline("k1", {"method": "dense"}, {"seg.miou": 0.8, "normal.mean": 20.0})
        note = _note(client.get_run(parent))
        baseline_id = client.get_run(parent).data.tags["disparse.baseline"]
        assert f"[dense run](#/experiments/{client.get_run(parent).info.experiment_id}/runs/{baseline_id}" in note
        assert "| seg.miou | higher | fraction 0-1 | 0.8 |" in note
        tracker.abort("stopped")
