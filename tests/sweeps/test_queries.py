"""`best`, `pareto` and `report` answer from a real MLflow sqlite store built with SweepTracker."""

from __future__ import annotations

import io
import os
import shutil
from types import SimpleNamespace

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

from sweeps import choice, queries  # noqa: E402
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


def _store(folder, template_db):
    """A fresh MLflow store (a copy of the empty template) in ``folder``: its URI and a tracker on it."""
    db = folder / "mlflow.db"
    shutil.copy(template_db, db)
    uri = f"sqlite:///{db}"
    return uri, SweepTracker(uri, EXP)


def _baseline_and_trials(tracker):
    """The dense baseline (BASE) and the fully trained TRIALS, logged to the tracker's sweep; their run ids."""
    dense = _config("dense", 0.0) | {"method": "dense"}
    tracker.log_baseline(baseline_key(dense), dense, {**BASE, "compression": 0.0})
    ids = {}
    for i, (name, (comp, miou, mean)) in enumerate(TRIALS.items()):
        key = f"trial-{name}"
        ids[name] = tracker.trial_started(key, _config(name, comp), optuna_number=i)
        tracker.trial_completed(key, {"compression": comp, "sparsity": comp + 0.01, "seg.miou": miou,
                                      "normal.mean": mean, "seg.pixel_acc": 0.8})
    return ids


@pytest.fixture(scope="module")
def sweep_store(tmp_path_factory, template_db):
    """One finished sweep: 5 fully trained trials, one early-stopped that beats all, one failed."""
    uri, tracker = _store(tmp_path_factory.mktemp("queries"), template_db)
    tracker.start_sweep(_spec(), sweep_id="sw1", config={"trials": 7}, code_version="test", sampler="tpe", seed=0)
    ids = _baseline_and_trials(tracker)
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


def best(uri, budgets, **kw):
    """``queries.best`` as the command line calls it: the ``--budget`` texts parsed first (None: none given)."""
    from sweeps.budgets import parse_budgets
    return call(queries.best, uri, EXP, None if budgets is None else parse_budgets(budgets), **kw)


@pytest.mark.parametrize("budgets, winner", [
    (["seg.miou=-2%", "normal.mean=+5%"], "B"),                 # relative: A and D break a budget
    (["seg.miou=-2%"], "D"),                                    # only seg: D (0.85) beats B
    (["seg.miou>=0.499", "normal.mean<=21"], "C"),              # absolute
    (["seg.miou=-2%", "compression>=0.75"], "D"),
    ([], "A"),                                                  # no budget: the sparsest
])
def test_best_picks_the_sparsest_trial_within_budgets(sweep_store, budgets, winner):
    uri, ids = sweep_store
    code, out, err = best(uri, budgets)
    assert (code, err) == (0, "")
    assert f"run id       {ids[winner]}" in out
    assert ids["E"] not in out                                   # early-stopped never chosen
    assert f"mlflow runs describe --run-id {ids[winner]}" in out


@pytest.fixture(scope="module")
def budgeted_store(tmp_path_factory, template_db):
    """The trials of ``sweep_store`` in a sweep whose space declared budgets (seg -2 %, normal +5 %)."""
    from sweeps.budgets import parse_budgets

    uri, tracker = _store(tmp_path_factory.mktemp("budgeted"), template_db)
    spec = _spec()
    spec.budgets = parse_budgets({"seg.miou": "-2%", "normal.mean": "+5%"})
    tracker.start_sweep(spec, sweep_id="budgeted", config={"trials": 5}, code_version="test")
    ids = _baseline_and_trials(tracker)
    tracker.finish_sweep(objectives=OBJ, directions=DIRS)
    return uri, ids


def test_choose_best_is_a_pure_choice_with_margins_and_the_trials_left_out():
    """No store, no printing: the records and the parsed budgets in, the decision out."""
    from sweeps.budgets import parse_budgets

    def rec(key, status="FINISHED", **metrics):
        return {"run_id": f"run-{key}", "trial_key": key, "status": status, "metrics": metrics}

    records = [rec("a", compression=0.9, **{"seg.miou": 0.49}),
               rec("b", compression=0.8, **{"seg.miou": 0.5, "normal.mean": float("nan")}),   # lost a task
               rec("c", compression=0.7, **{"seg.miou": 0.5}),
               rec("d", "FAILED"),
               {**rec("e", compression=0.99, **{"seg.miou": 0.6}), "early_stopped": True}]
    choice = queries.choose_best(records, parse_budgets(["seg.miou=-1%"]), {"seg.miou": 0.5})
    assert choice.meets and choice.chosen["trial_key"] == "c"            # a is 2 % short
    assert [(m.budget.text, m.violation) for m in choice.margins] == [("seg.miou=-1%", None)]
    assert choice.margins[0].shortfall == pytest.approx((0.495 - 0.5) / 0.5)     # 1 % of slack
    assert choice.unfinished == ("d", "e") and dict(choice.lost) == {"b": ["normal.mean"]}
    assert choice.considered == 2
    choice = queries.choose_best(records, parse_budgets(["seg.miou>=0.55"]), None)
    assert not choice.meets and choice.chosen["trial_key"] == "c"        # the closest
    assert choice.margins[0].violation.value == 0.5
    assert choice.margins[0].shortfall == pytest.approx(0.05 / 0.55)             # 9.1 % short
    assert choice.shortfalls() == "seg.miou>=0.55: 0.5 < 0.55 (short by 9.1%)"


def test_best_without_budgets_uses_the_ones_the_sweep_declared(budgeted_store):
    uri, ids = budgeted_store
    code, out, err = best(uri, None)
    assert (code, err) == (0, "")
    assert "budgets: seg.miou=-2%, normal.mean=+5% (the sweep's own, from its space" in out
    assert f"run id       {ids['B']}" in out                    # as with both budgets given by hand
    code, out, err = best(uri, ["seg.miou=-2%"])   # given budgets replace them
    assert (code, err) == (0, "") and f"run id       {ids['D']}" in out and "sweep's own" not in out


def test_best_without_budgets_on_a_sweep_that_declared_none_is_one_line(sweep_store):
    uri, _ = sweep_store
    code, out, err = best(uri, None)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "sweep 'sw1' declares no budgets" in err and "--budget METRIC=LIMIT" in err


def test_the_choose_hint_fits_the_sweep():
    from sweeps.cli import _budget_hint

    def hint(budgets, baseline, metrics):
        spec = SimpleNamespace(budgets=budgets, metric_names=["compression", "delta_m"])
        record = {"metrics": metrics, "config": {"tasks": [k.split(".")[0] for k in metrics if "." in k]}}
        return _budget_hint(spec, SimpleNamespace(baseline=baseline, eligible=[record]))

    assert hint(["seg.miou=-5%"], BASE, {"seg.miou": 0.5}) == ""       # best uses the space's budgets
    assert hint([], BASE, {"depth.abs_err": 0.3, "compression": 0.8}) == "--budget depth.abs_err=+2% "
    assert hint([], BASE, {"seg.miou": 0.5, "normal.mean": 20}) == "--budget seg.miou=-2% "
    assert hint([], None, {"normal.mean": 20}) == "--budget 'normal.mean<=<value>' "   # no baseline


def test_best_prints_metrics_against_the_baseline_and_the_config(sweep_store):
    uri, ids = sweep_store
    code, out, _ = best(uri, ["seg.miou=-2%", "normal.mean=+5%"])
    assert code == 0
    lines = {ln.split()[0]: ln for ln in out.splitlines() if ln.strip().startswith(("seg.", "normal."))}
    assert "-1.00%" in lines["seg.miou"] and "ok" in lines["seg.miou"]
    assert "+4.00%" in lines["normal.mean"] and "normal.mean=+5%" in lines["normal.mean"]
    assert "compression  0.8000" in out and "achieved sparsity 0.8100" in out
    assert "method=disparse_dynamic" in out and "sparsity=0.8 " in out and "dynamic.alpha0=0.3 " in out
    assert "dense run" in out


def test_best_reports_none_meets_with_the_closest(sweep_store):
    uri, ids = sweep_store
    code, out, err = best(uri, ["seg.miou=-0.1%", "normal.mean=+1%"])
    assert code == 1 and err == ""
    assert "NO TRIAL MEETS EVERY BUDGET" in out
    assert f"run id       {ids['C']}" in out                     # smallest total shortfall
    assert "violations   normal.mean=+1%: 20.5 > 20.2" in out


@pytest.mark.parametrize("budget, words", [
    ("seg.miou=abc", "cannot parse"),
    ("seg.miou=+2%", "demand an improvement"),
    ("seg.mIoU=-2%", "unknown metric"),
    ("depth.abs_err<=0.5", "unknown metric 'depth.abs_err'"),      # a metric, but not of this sweep
])
def test_bad_budget_is_one_line_exit_2(sweep_store, budget, words):
    uri, _ = sweep_store
    from sweeps.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = main(["best", "--tracking-uri", uri, "--experiment", EXP, "--budget", budget], out=out, err=err)
    out, err = out.getvalue(), err.getvalue()
    assert code == 2 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1 and words in err


def test_unknown_store_experiment_or_sweep_is_exit_2(sweep_store, tmp_path):
    uri, _ = sweep_store
    missing_db = tmp_path / "none.db"
    for args, named in [((uri, "nope", []), "experiment 'nope' not found"),
                        ((f"sqlite:///{missing_db}", EXP, []), f"no MLflow database at '{missing_db}'")]:
        code, out, err = call(queries.best, *args)
        assert code == 2 and out == "" and err.count("\n") == 1, err
        assert err.startswith("error: ") and named in err, err
    assert not missing_db.exists()                       # asking did not create an empty store
    code, _, err = best(uri, [], sweep="missing")
    assert code == 2 and "no sweep 'missing'" in err
    code, _, err = call(queries.report, uri, "nope")
    assert code == 2 and "experiment 'nope' not found" in err


def test_sweep_without_trials_is_exit_2(tmp_path, template_db):
    uri, tracker = _store(tmp_path, template_db)
    tracker.start_sweep(_spec(), sweep_id="empty", code_version="x")
    code, out, err = best(uri, ["seg.miou=-2%"])
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


def test_pareto_objective_flag_gives_a_task_front_and_names_a_typo(sweep_store):
    from sweeps.cli import main

    uri, ids = sweep_store
    out, err = io.StringIO(), io.StringIO()
    assert main(["pareto", "--tracking-uri", uri, "--experiment", EXP, "--objective", "compression",
                 "--objective", "normal.mean"], out=out, err=err) == 0
    assert "compression (max), normal.mean (min)" in out.getvalue()
    # normal.mean is lower-is-better: C (0.70, 20.5) is on this front, H (0.60, 25.0) is not
    assert ids["C"] in out.getvalue() and ids["H"] not in out.getvalue()
    out, err = io.StringIO(), io.StringIO()
    assert main(["pareto", "--tracking-uri", uri, "--experiment", EXP, "--objective", "seg.mio"],
                out=out, err=err) == 2
    line = err.getvalue().strip()
    assert "\n" not in line and "'seg.mio'" in line and "did you mean 'seg.miou'" in line


def test_report_summarises_the_sweep(sweep_store):
    uri, ids = sweep_store
    code, out, err = call(queries.report, uri, EXP)
    assert (code, err) == (0, "")
    assert "7: 5 fully trained, 1 early-stopped, 1 failed" in out
    assert "failed trial-F: loss is NaN" in out
    assert "front        4 of 5 fully trained trials; hypervolume " in out and "(auto)" in out
    assert "pareto_front.html" in out and "pareto_front.csv" in out
    assert "dense run" in out and "seg.miou" in out


# -- sampled settings: what the sweep chose is shown, not only the usual keys -------------------------------

def _sampled_config(i):
    """The demo space's shape (search_spaces/dynamic.yaml): constants, sampled values, bookkeeping."""
    return {"workload": "scenes", "tasks": ["seg", "normal"], "arch": "small", "width": 16, "batch_size": 16,
            "steps": 200, "lr": 1e-3, "seed": 0, "method": "disparse_dynamic", "sparsity": 0.6 + i / 10,
            "cutoff": 8, "dynamic": {"alpha0": 0.3, "decay": "cosine", "grow": "exact", "t_end_frac": 0.75},
            "loss_weights": {"normal": 1.5 + i}, "score_batches": 2 + i % 2, "num_threads": 1,
            "checkpoint_dir": f"/tmp/ck{i}", "baseline_metrics": BASE}


@pytest.fixture(scope="module")
def sampled_store(tmp_path_factory, template_db):
    """A finished sweep of 4 trials whose loss weight and score_batches were sampled; the sparsest trial
    beats every other on every objective (a front of one); a failed trial whose params never came."""
    uri, tracker = _store(tmp_path_factory.mktemp("sampled"), template_db)
    tracker.start_sweep(_spec(), sweep_id="sampled", config={"trials": 5}, code_version="test")
    ids = {}
    for i in range(4):
        ids[i] = tracker.trial_started(f"s{i}", _sampled_config(i), optuna_number=i)
        tracker.trial_completed(f"s{i}", {"compression": 0.6 + i / 10, "seg.miou": 0.45 + i / 100,
                                          "normal.mean": 22.0 - i})
    tracker.trial_started("bare", {})
    tracker.trial_failed("bare", "crashed before its config was logged")
    tracker.finish_sweep(objectives=OBJ, directions=DIRS)
    return uri, ids


def test_best_config_line_shows_the_sampled_settings(sampled_store):
    uri, ids = sampled_store
    code, out, err = best(uri, [], sweep="sampled")
    assert (code, err) == (0, "") and f"run id       {ids[3]}" in out
    (line,) = [ln for ln in out.splitlines() if ln.startswith("  config ")]
    assert line.split(None, 1)[1] == (
        "method=disparse_dynamic sparsity=0.9 cutoff=8 dynamic.alpha0=0.3 dynamic.decay=cosine "
        "dynamic.grow=exact dynamic.t_end_frac=0.75 arch=small width=16 workload=scenes "
        'tasks=["seg","normal"] steps=200 lr=0.001 seed=0 loss_weights.normal=4.5 score_batches=3')


def test_pareto_of_one_trial_shows_what_the_sweep_sampled_first(sampled_store):
    uri, ids = sampled_store
    code, out, err = call(queries.pareto, uri, EXP, sweep="sampled")
    assert (code, err) == (0, "") and "1 of 4 fully trained trials" in out
    header = next(ln for ln in out.splitlines() if ln.startswith("run id"))
    assert header.split()[6:10] == ["sparsity", "loss_weights.normal", "score_batches", "method"]
    assert "checkpoint_dir" not in header and "seed" not in header


def test_config_summary_skips_bookkeeping_and_runs_without_a_config():
    rec = {"config": {"method": "snip", "sparsity": 0.8, "finetune_lr": 0.01, "pretrain_steps": 50,
                      "batch_size": 8, "export_path": "/tmp/a", "gradual": {"prune_steps": 3}}}
    other = {"config": {"method": "snip", "sparsity": 0.7, "finetune_lr": 0.02, "pretrain_steps": 40,
                        "batch_size": 8, "export_path": "/tmp/b", "gradual": {"prune_steps": 3}}}
    assert choice._config_summary(rec, [rec, other, {"config": {}}]) == \
        "method=snip sparsity=0.8 gradual.prune_steps=3 finetune_lr=0.01 pretrain_steps=50"
    assert choice._config_summary(rec) == "method=snip sparsity=0.8 gradual.prune_steps=3"


def test_format_table_aligns_numbers_right():
    text = queries.format_table(["name", "value"], [["a", 0.5], ["long name", 1234.5678], ["c", None]])
    lines = text.splitlines()
    assert lines[0].startswith("name") and lines[1].startswith("---------")
    assert lines[2].endswith("0.5000") and lines[3].endswith("1234.6")
    assert len(lines[2]) == len(lines[3])
    assert queries.format_number(3) == "3" and queries.format_number(1e-5) == "1.000e-05"


def test_a_closed_pipe_ends_a_query_quietly(sweep_store):
    """`tune.py report | head -1`: the reader leaves early (here before anything is written: `| true`);
    no BrokenPipeError traceback, exit 0."""
    import subprocess
    import sys

    from sweep_helpers import TUNE_PY, cli_env

    uri, _ = sweep_store
    cmd = (f"{sys.executable} {TUNE_PY} report --tracking-uri {uri} --experiment {EXP} --sweep sw1 "
           f"| true; echo rc=${{PIPESTATUS[0]}}")
    done = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, env=cli_env(), timeout=120)
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr
    assert done.stdout.rstrip().endswith("rc=0"), done.stdout


# -- the read-only commands need no torch ---------------------------------------------------------------------

# Runs a script (argv[1]) with its arguments where `import torch` raises ImportError, as without torch installed.
_WITHOUT_TORCH = """
import runpy, sys
class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "torch":
            raise ImportError(f"No module named {name!r} (made unimportable by the test)")
sys.meta_path.insert(0, NoTorch())
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _without_torch(script, *args):
    import subprocess
    import sys

    from sweep_helpers import cli_env

    return subprocess.run([sys.executable, "-c", _WITHOUT_TORCH, str(script), *map(str, args)],
                          capture_output=True, text=True, env=cli_env(), timeout=300)


def test_best_pareto_and_report_run_without_torch(sweep_store, budgeted_store, tmp_path):
    """``tune.py best/pareto/report`` in a process where torch cannot be imported print what they print
    with torch (the sweep's own budgets parsed, --budget flags, the front, the summary)."""
    from sweep_helpers import TUNE_PY

    probe = tmp_path / "probe.py"
    probe.write_text("import torch\n")
    done = _without_torch(probe)
    assert done.returncode != 0 and "made unimportable by the test" in done.stderr   # the guard holds
    (uri, _), (own_uri, _) = sweep_store, budgeted_store
    store = ["--tracking-uri", uri, "--experiment", EXP]
    cases = [(["best", "--tracking-uri", own_uri, "--experiment", EXP], best(own_uri, None)),
             (["best", *store, "--budget", "seg.miou=-0.1%", "--budget", "normal.mean=+1%"],
              best(uri, ["seg.miou=-0.1%", "normal.mean=+1%"])),
             (["pareto", *store], call(queries.pareto, uri, EXP)),
             (["report", *store], call(queries.report, uri, EXP))]
    for argv, (code, out, err) in cases:
        done = _without_torch(TUNE_PY, *argv)
        assert (done.returncode, done.stdout) == (code, out), (argv, done.stderr[-2000:])
        assert "torch" not in done.stderr, done.stderr[-2000:]
    assert "Sparsest trial within every budget" in cases[0][1][1] and "NO TRIAL MEETS" in cases[1][1][1]


def _new_sweep(tmp_path, template_db, sweep_id):
    """A fresh store with a started sweep ``sweep_id`` and the dense baseline BASE logged."""
    uri, tracker = _store(tmp_path, template_db)
    tracker.start_sweep(_spec(), sweep_id=sweep_id, config={"trials": 2}, code_version="test", sampler="tpe",
                        seed=0)
    dense = _config("dense", 0.0) | {"method": "dense"}
    tracker.log_baseline(baseline_key(dense), dense, {**BASE, "compression": 0.0})
    return uri, tracker


def test_a_final_nan_metric_is_not_replaced_by_an_earlier_evaluation(tmp_path, template_db):
    """MLflow keeps no NaN: without care, a trial whose seg.miou went NaN at the end would be judged on
    its step-3 value. It must count as missing (a budget on it is violated), as it does for Optuna."""
    uri, tracker = _new_sweep(tmp_path, template_db, "nan")
    tracker.trial_started("t-nan", _config("nan", 0.9), optuna_number=0)
    tracker.trial_result("t-nan", {"compression": 0.9, "seg.miou": 0.55, "normal.mean": 19.0, "step": 3}, 3)
    tracker.trial_completed("t-nan", {"compression": 0.9, "seg.miou": float("nan"), "normal.mean": 19.0,
                                      "step": 6})
    tracker.trial_started("t-ok", _config("ok", 0.6), optuna_number=1)
    tracker.trial_completed("t-ok", {"compression": 0.6, "seg.miou": 0.52, "normal.mean": 19.5, "step": 6})
    tracker.finish_sweep(objectives=["compression", "normal.mean"], directions=["maximize", "minimize"])
    code, out, _ = best(uri, ["seg.miou>=0.5"], sweep="nan")
    assert code == 0
    assert "(trial t-ok)" in out and "(trial t-nan)" not in out


def test_a_trial_that_lost_an_unbudgeted_task_is_never_the_answer(tmp_path, template_db):
    """Budgets on seg only: the sparsest trial, whose normals went NaN, meets them, but it lost a task."""
    uri, tracker = _new_sweep(tmp_path, template_db, "lost")
    tracker.trial_started("t-lost", _config("lost", 0.9), optuna_number=0)
    tracker.trial_completed("t-lost", {"compression": 0.9, "seg.miou": 0.55, "normal.mean": float("nan")})
    tracker.trial_started("t-ok", _config("ok", 0.6), optuna_number=1)
    tracker.trial_completed("t-ok", {"compression": 0.6, "seg.miou": 0.52, "normal.mean": 19.5})
    tracker.finish_sweep(objectives=OBJ, directions=DIRS)
    code, out, _ = best(uri, ["seg.miou>=0.5"], sweep="lost")
    assert code == 0 and "(trial t-ok)" in out and "(trial t-lost)" not in out
    assert "1 fully trained trials considered" in out
    assert "1 fully trained trial(s) skipped: a task metric is not finite (the task is lost): t-lost: normal.mean" in out
    code, out, _ = best(uri, ["seg.miou>=0.54"], sweep="lost")   # not even as the closest
    assert code == 1 and "(trial t-ok)" in out and "(trial t-lost)" not in out


def test_best_of_a_sweep_whose_trials_all_failed_is_none_meets_not_bad_input(tmp_path, template_db):
    uri, tracker = _new_sweep(tmp_path, template_db, "allfail")
    tracker.trial_started("t0", _config("t0", 0.9), optuna_number=0)
    tracker.trial_failed("t0", "loss is NaN")
    tracker.finish_sweep(objectives=OBJ, directions=DIRS)
    code, out, err = best(uri, ["seg.miou=-2%"], sweep="allfail")
    assert code == 1 and err == ""
    assert "NO TRIAL MEETS EVERY BUDGET" in out and "1 failed" in out


def test_report_and_best_print_numbers_as_the_tables_do(budgeted_store):
    from sweeps.tables import pct_change

    uri, ids = budgeted_store
    code, out, _ = call(queries.report, uri, EXP)
    assert code == 0 and "  budgets      seg.miou=-2%, normal.mean=+5%\n" in out
    assert queries._reference_text("[0.12575773195876291, -43.91148198757421]") == "[0.1258, -43.911]"
    assert pct_change(0.99999, 1.0) == "+0.00%" and pct_change(0.5, 1.0) == "-50.00%"
    rows = choice._metric_rows({"seg.miou": 0.5, "min_layer_density": 0.2}, {"seg.miou": 0.5,
                                "min_layer_density": 1.0}, [])
    assert ["min_layer_density", 0.2, None, "", "", ""] in rows       # no "-80 %" against the dense net
