"""`best`, `pareto` and `report` answer from a real MLflow sqlite store built with SweepTracker."""

from __future__ import annotations

import io
import os
import shutil
from types import SimpleNamespace

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
mlflow = pytest.importorskip("mlflow")
from mlflow.tracking import MlflowClient  # noqa: E402

from sweeps import queries  # noqa: E402
from sweeps.tracking import SweepTracker, baseline_key  # noqa: E402

EXP = "q-exp"
OBJ = ["compression", "seg.miou", "normal.mean"]
DIRS = ["maximize", "maximize", "minimize"]
BASE = {"seg.miou": 0.50, "normal.mean": 20.0}
# name: (compression, seg.miou, normal.mean) against BASE
TRIALS = {
    "A": (0.90, 0.400, 22.0),     # sparsest, seg far below
    "B": (0.80, 0.495, 20.8),     # seg -1 %, normal +4 %
    "C": (0.70, 0.500, 20.5),     # seg 0 %, normal +2.5 %
    "D": (0.85, 0.492, 21.5),     # seg -1.6 %, normal +7.5 %
    "H": (0.60, 0.450, 25.0),     # dominated by C
}


def _config(name, compression):
    return {"workload": "scenes", "tasks": ["seg", "normal"], "steps": 50, "lr": 1e-3, "seed": 0,
            "method": "disparse_dynamic", "sparsity": compression, "cutoff": 2,
            "dynamic": {"alpha0": 0.3, "decay": "cosine"}, "note": name}


def _spec():
    return SimpleNamespace(name="q", objectives=[SimpleNamespace(name=o, direction=d) for o, d in zip(OBJ, DIRS)],
                           budgets=[], to_dict=lambda: {"name": "q"})


@pytest.fixture(scope="module")
def sweep_store(tmp_path_factory, template_db):
    """One finished sweep: 5 fully trained trials, one early-stopped that beats all, one failed."""
    db = tmp_path_factory.mktemp("queries") / "mlflow.db"
    shutil.copy(template_db, db)
    uri = f"sqlite:///{db}"
    tracker = SweepTracker(uri, EXP)
    tracker.start_sweep(_spec(), sweep_id="sw1", config={"trials": 7}, code_version="test", sampler="tpe", seed=0)
    dense = _config("dense", 0.0) | {"method": "dense"}
    tracker.log_baseline(baseline_key(dense), dense, {**BASE, "compression": 0.0})
    ids = {}
    for i, (name, (comp, miou, mean)) in enumerate(TRIALS.items()):
        key = f"trial-{name}"
        ids[name] = tracker.trial_started(key, _config(name, comp), optuna_number=i)
        tracker.trial_completed(key, {"compression": comp, "sparsity": comp + 0.01, "seg.miou": miou,
                                      "normal.mean": mean, "seg.pixel_acc": 0.8})
    ids["E"] = tracker.trial_started("trial-E", _config("E", 0.95))
    tracker.trial_completed("trial-E", {"compression": 0.95, "seg.miou": 0.6, "normal.mean": 10.0},
                            early_stopped=True)
    ids["F"] = tracker.trial_started("trial-F", _config("F", 0.99))
    tracker.trial_failed("trial-F", "loss is NaN")
    tracker.finish_sweep(objectives=OBJ, directions=DIRS)
    return uri, ids


def call(fn, *args, **kw):
    out, err = io.StringIO(), io.StringIO()
    code = fn(*args, out=out, err=err, **kw)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("budgets, winner", [
    (["seg.miou=-2%", "normal.mean=+5%"], "B"),                 # relative: A and D break a budget
    (["seg.miou=-2%"], "D"),                                    # only seg: D (0.85) beats B
    (["seg.miou>=0.499", "normal.mean<=21"], "C"),              # absolute
    (["seg.miou=-2%", "compression>=0.75"], "D"),
    ([], "A"),                                                  # no budget: the sparsest
])
def test_best_picks_the_sparsest_trial_within_budgets(sweep_store, budgets, winner):
    uri, ids = sweep_store
    code, out, err = call(queries.best, uri, EXP, budgets)
    assert (code, err) == (0, "")
    assert f"run id       {ids[winner]}" in out
    assert ids["E"] not in out                                   # early-stopped never chosen
    assert f"mlflow runs describe --run-id {ids[winner]}" in out


def test_best_prints_metrics_against_the_baseline_and_the_config(sweep_store):
    uri, ids = sweep_store
    code, out, _ = call(queries.best, uri, EXP, ["seg.miou=-2%", "normal.mean=+5%"])
    assert code == 0
    lines = {ln.split()[0]: ln for ln in out.splitlines() if ln.strip().startswith(("seg.", "normal."))}
    assert "-1.00%" in lines["seg.miou"] and "ok" in lines["seg.miou"]
    assert "+4.00%" in lines["normal.mean"] and "normal.mean=+5%" in lines["normal.mean"]
    assert "compression  0.8000" in out and "achieved sparsity 0.8100" in out
    assert "method=disparse_dynamic" in out and "sparsity=0.8 " in out and "dynamic.alpha0=0.3 " in out
    assert "dense run" in out


def test_best_reports_none_meets_with_the_closest(sweep_store):
    uri, ids = sweep_store
    code, out, err = call(queries.best, uri, EXP, ["seg.miou=-0.1%", "normal.mean=+1%"])
    assert code == 1 and err == ""
    assert "NO TRIAL MEETS EVERY BUDGET" in out
    assert f"run id       {ids['C']}" in out                     # smallest total shortfall
    assert "violations   normal.mean=+1%: 20.5 > 20.2" in out


@pytest.mark.parametrize("budget, words", [
    ("seg.miou=abc", "cannot parse"),
    ("seg.miou=+2%", "demand an improvement"),
    ("seg.mIoU=-2%", "unknown metric"),
])
def test_bad_budget_is_one_line_exit_2(sweep_store, budget, words):
    uri, _ = sweep_store
    code, out, err = call(queries.best, uri, EXP, [budget])
    assert code == 2 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1 and words in err


def test_unknown_store_experiment_or_sweep_is_exit_2(sweep_store, tmp_path):
    uri, _ = sweep_store
    for args in [(uri, "nope", []), (f"sqlite:///{tmp_path}/none.db", EXP, [])]:
        code, out, err = call(queries.best, *args)
        assert code == 2 and out == "" and err.count("\n") == 1
    code, _, err = call(queries.best, uri, EXP, [], sweep="missing")
    assert code == 2 and "no sweep 'missing'" in err
    code, _, err = call(queries.report, uri, "nope")
    assert code == 2 and "experiment 'nope' not found" in err


def test_sweep_without_trials_is_exit_2(tmp_path, template_db):
    db = tmp_path / "mlflow.db"
    shutil.copy(template_db, db)
    SweepTracker(f"sqlite:///{db}", EXP).start_sweep(_spec(), sweep_id="empty", code_version="x")
    code, out, err = call(queries.best, f"sqlite:///{db}", EXP, ["seg.miou=-2%"])
    assert code == 2 and "has no trials" in err and out == ""


def test_pareto_prints_the_front(sweep_store):
    uri, ids = sweep_store
    code, out, err = call(queries.pareto, uri, EXP)
    assert (code, err) == (0, "")
    for name in "ABCD":
        assert ids[name] in out
    for name in "EFH":
        assert ids[name] not in out
    assert "4 of 5 fully trained trials" in out
    rows = [ln for ln in out.splitlines() if ln.startswith(tuple(ids.values()))]
    assert [r.split()[0] for r in rows] == [ids[n] for n in "ADBC"]          # by compression, best first


def test_pareto_with_other_objectives_is_computed_from_mlflow(sweep_store):
    uri, ids = sweep_store
    code, out, _ = call(queries.pareto, uri, EXP, objectives=["compression", "seg.miou"])
    assert code == 0
    assert {ids[n] for n in ids if ids[n] in out} == {ids["A"], ids["D"], ids["B"], ids["C"]}


def test_report_summarises_the_sweep(sweep_store):
    uri, ids = sweep_store
    code, out, err = call(queries.report, uri, EXP)
    assert (code, err) == (0, "")
    assert "7: 5 fully trained, 1 early-stopped, 1 failed" in out
    assert "failed trial-F: loss is NaN" in out
    assert "front        4 of 5 fully trained trials; hypervolume " in out and "(auto)" in out
    assert "pareto_front.html" in out and "pareto_front.csv" in out
    assert "dense run" in out and "seg.miou" in out


def test_format_table_aligns_numbers_right():
    text = queries.format_table(["name", "value"], [["a", 0.5], ["long name", 1234.5678], ["c", None]])
    lines = text.splitlines()
    assert lines[0].startswith("name") and lines[1].startswith("---------")
    assert lines[2].endswith("0.5000") and lines[3].endswith("1234.6")
    assert len(lines[2]) == len(lines[3])
    assert queries.format_number(3) == "3" and queries.format_number(1e-5) == "1.000e-05"
