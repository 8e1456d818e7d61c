"""Multi-objective ASHA: the decisions of sweeps/ray/mo_asha.py pinned on hand-made points (Ray-free,
milliseconds), and one end-to-end sweep through sweeps/ray/scheduler.py on the shared local Ray."""

from __future__ import annotations

import signal

import math
import random

import numpy as np
import pytest

from sweeps.ray import (CONTINUE, STOP, MOAshaRungs, crowding_distance, decide, non_dominated_fronts, rank_order,
                        rung_milestones)

MAXMAX = ["maximize", "maximize"]     # (compression, delta_m)
NAN = float("nan")


def test_rungs_are_grace_times_powers_of_the_factor_below_max_t():
    assert rung_milestones(5, 45, 3) == [5, 15]
    assert rung_milestones(15, 45, 3) == [15]          # 45 is the last step: nothing left to stop there
    assert rung_milestones(2, 8, 2) == [2, 4]
    assert rung_milestones(10, 10, 2) == []
    assert rung_milestones(22, 200, 3) == [22, 66]     # not 198: 2 steps before the end saves nothing
    assert rung_milestones(50, 200, 3) == [50, 150]    # the default grace (a quarter) of a 200-step trial
    assert rung_milestones(5, 45, 2) == [5, 10, 20, 40]
    assert rung_milestones(150, 200, 3) == [150]       # the first rung is the user's: always there
    assert rung_milestones(10, 45, 2) == [10, 20]      # 40 would leave 5 < 10 steps
    with pytest.raises(ValueError, match="reduction_factor"):
        rung_milestones(5, 45, 1)


def test_fronts_and_crowding():
    pts = [(1, 1), (2, 0), (0, 2), (0.5, 0.5), (0.1, 0.1)]
    assert non_dominated_fronts(pts) == [[0, 1, 2], [3], [4]]
    cd = crowding_distance([(0, 3), (1, 2), (2, 1), (3, 0), (1.5, 1.5)])
    assert cd[0] == cd[3] == math.inf
    assert all(math.isfinite(d) for d in (cd[1], cd[2], cd[4]))
    assert crowding_distance([(1, 1), (2, 0)]) == [math.inf, math.inf]


def test_rank_order_follows_directions_and_puts_nan_last():
    # minimising the second objective turns the order around
    order, fronts = rank_order([(1, 5), (1, 1), (NAN, 0)], ["maximize", "minimize"])
    assert order == [1, 0, 2] and fronts == [1, 0, -1]
    order, _ = rank_order([(1, 5), (1, 1), (NAN, 0)], MAXMAX)
    assert order == [0, 1, 2]
    order, fronts = rank_order([None, (0.0, 0.0)], MAXMAX)      # a missing point is ranked last too
    assert order == [1, 0] and fronts == [-1, 0]


# --- the decision at one rung ---------------------------------------------------------------------------

# moderate-sparsity trials recorded first at the rung: (compression, delta_m %)
MODERATE = [(0.50, -5.0), (0.55, -6.0), (0.60, -8.0), (0.52, -7.0), (0.58, -9.0)]


def test_high_compression_low_delta_m_is_kept_where_single_metric_asha_stops_it():
    sparse = (0.95, -40.0)                 # worst delta_m of all, best compression: on the front
    d = decide(MODERATE, sparse, MAXMAX, 3)
    assert d.action == CONTINUE and d.front == 0
    # ASHA on delta_m alone (Ray's cutoff: the (1 - 1/rf) percentile of the recorded values) stops it
    cutoff = np.nanpercentile([p[1] for p in MODERATE], (1 - 1 / 3) * 100)
    assert sparse[1] < cutoff
    assert decide([(p[1],) for p in MODERATE], (sparse[1],), ["maximize"], 3).action == STOP


def test_a_dominated_trial_is_stopped():
    d = decide(MODERATE, (0.50, -10.0), MAXMAX, 3)        # dominated by every moderate trial
    assert d.action == STOP and d.front >= 1 and d.position == d.n == 6


def test_the_first_trial_at_a_rung_continues_whatever_its_values():
    assert decide([], (0.1, -90.0), MAXMAX, 3).action == CONTINUE
    assert decide([], (NAN, NAN), MAXMAX, 3).action == CONTINUE


def test_a_dominated_trial_in_the_top_fraction_continues():
    # 3 recorded on the front; the new one is dominated by one of them (front 1), rank 4 of 4: 4 > 4/3
    recorded = [(0.9, -30.0), (0.5, -2.0), (0.7, -10.0)]
    new = (0.6, -11.0)                      # dominated by (0.7, -10) only
    assert decide(recorded, new, MAXMAX, 3).action == STOP
    # with 8 trials below it recorded, rank 4 of 12 is within the top third (4 * 3 <= 12)
    worse = [(0.3, -50.0 - i) for i in range(8)]
    d = decide(recorded + worse, new, MAXMAX, 3)
    assert d.front == 1 and d.position == 4 and d.n == 12 and d.action == CONTINUE
    worse.append((0.2, -70.0))
    d = decide(recorded + worse, new, MAXMAX, 3)     # rank 4 of 13: 4 * 3 = 12 <= 13 -> continue
    assert d.action == CONTINUE
    d = decide(recorded + worse[:7], new, MAXMAX, 3)  # rank 4 of 11: 12 > 11 -> stop
    assert d.action == STOP


def test_without_keep_non_dominated_only_the_rank_counts_but_a_new_extreme_still_continues():
    # six recorded trials all on one front (a trade-off curve); the new one lands between two of them
    curve = [(0.50, -1.0), (0.60, -2.0), (0.70, -4.0), (0.80, -8.0), (0.90, -16.0), (0.95, -32.0)]
    interior = (0.75, -5.9)                 # non-dominated, but crowded: rank 7 of 7
    assert decide(curve, interior, MAXMAX, 3).action == CONTINUE
    strict = decide(curve, interior, MAXMAX, 3, keep_non_dominated=False)
    assert strict.action == STOP and strict.front == 0 and strict.position > 7 / 3
    for extreme in ((0.97, -60.0), (0.45, -0.5)):    # best so far on one objective: ranks first
        d = decide(curve, extreme, MAXMAX, 3, keep_non_dominated=False)
        assert d.action == CONTINUE and d.position == 1
    r = MOAshaRungs(["compression", "delta_m"], MAXMAX, grace=5, max_t=45, keep_non_dominated=False)
    r.restore([(f"c{i}", 5, p) for i, p in enumerate(curve)])
    assert r.on_result("new", 5, {"compression": 0.75, "delta_m": -5.9}) == STOP


def test_crowding_breaks_ties_within_a_front_boundary_first():
    # recorded: a front-0 point that dominates the whole second front
    recorded = [(1.0, 1.0), (0.2, 0.8), (0.8, 0.2), (0.5, 0.5), (0.45, 0.55)]
    # front 1 = the four others + the new one; a new boundary point (most compression in front 1) ranks 2nd
    d = decide(recorded + [(0.0, 0.0)] * 6, (0.9, 0.1), MAXMAX, 3)
    assert d.front == 1 and d.position == 2
    # a crowded interior point of the same front ranks after the boundary points
    d = decide(recorded + [(0.0, 0.0)] * 6, (0.48, 0.52), MAXMAX, 3)
    assert d.front == 1 and d.position > 3


def test_nan_objective_is_ranked_last():
    d = decide(MODERATE, (0.99, NAN), MAXMAX, 3)
    assert d.front == -1 and d.position == d.n and d.action == STOP
    # a NaN already recorded is ranked below a new dominated trial
    d = decide(MODERATE + [(NAN, NAN)] * 3, (0.40, -20.0), MAXMAX, 3)
    assert d.position == 6 and d.n == 9


def test_single_objective_reduces_to_asha():
    """One objective: the best continues; for rf=2 and an odd number recorded the decision is exactly
    Ray ASHA's (value >= the median of the recorded); for rf >= 2 it never keeps what ASHA stops."""
    rng = random.Random(0)
    for rf in (2, 3, 4):
        for _ in range(300):
            m = rng.randint(1, 12)
            recorded = [rng.random() for _ in range(m)]
            new = rng.random()
            ours = decide([(v,) for v in recorded], (new,), ["maximize"], rf).action
            asha = STOP if new < np.nanpercentile(recorded, (1 - 1 / rf) * 100) else CONTINUE
            if rf == 2 and m % 2 == 1:
                assert ours == asha, (recorded, new)
            if ours == CONTINUE:
                assert asha == CONTINUE, (rf, recorded, new)
            if new > max(recorded):
                assert ours == CONTINUE
    # minimising: the direction is honoured
    assert decide([(1.0,), (2.0,), (3.0,)], (0.5,), ["minimize"], 2).action == CONTINUE
    assert decide([(1.0,), (2.0,), (3.0,)], (3.5,), ["minimize"], 2).action == STOP


# --- the state across rungs --------------------------------------------------------------------------

def test_rungs_record_once_and_decide_asynchronously():
    r = MOAshaRungs(["compression", "delta_m"], MAXMAX, grace=5, max_t=45, reduction_factor=3)
    res = lambda c, d: {"compression": c, "delta_m": d}   # noqa: E731
    assert r.on_result("a", 3, res(0.5, -5)) == CONTINUE            # below the first rung: no record
    assert r.recorded[5.0] == {}
    assert r.on_result("a", 5, res(0.5, -5)) == CONTINUE            # first at rung 5
    assert r.on_result("b", 5, res(0.4, -9)) == STOP                # dominated, rank 2 of 2
    assert r.on_result("c", 5, res(0.95, -40)) == CONTINUE          # sparse, non-dominated
    assert r.on_result("a", 10, res(0.5, -4)) == CONTINUE           # no rung at 10: nothing recorded
    assert r.on_result("a", 5, res(0.5, -5)) == CONTINUE            # already recorded there
    assert set(r.recorded[5.0]) == {"a", "b", "c"}
    assert r.on_result("c", 15, res(0.95, -30)) == CONTINUE         # first at rung 15
    assert r.on_result("a", 15, res(0.5, -3)) == CONTINUE           # non-dominated against c
    # a report that jumps past a rung is recorded at the highest reached only (as Ray's ASHA)
    assert r.on_result("d", 20, res(0.3, -50)) == STOP
    assert "d" in r.recorded[15.0] and "d" not in r.recorded[5.0]
    assert r.stopped == ["b", "d"]
    # a report missing an objective is not a decision point
    assert r.on_result("e", 5, {"compression": 0.1}) == CONTINUE and "e" not in r.recorded[5.0]
    # a completed trial's last result is recorded without a decision
    r.on_complete("f", 5, res(0.1, -60))
    assert "f" in r.recorded[5.0] and r.stopped == ["b", "d"]
    assert "step 5: 4 recorded" in r.debug_string() and "stopped 2" in r.debug_string()


def test_records_are_reported_and_restored_rung_by_rung():
    seen = []
    r = MOAshaRungs(["compression", "delta_m"], MAXMAX, grace=5, max_t=45, reduction_factor=3,
                    on_record=lambda *rec: seen.append(rec))
    res = lambda c, d: {"compression": c, "delta_m": d}   # noqa: E731
    r.on_result("a", 5, res(0.9, -5))
    r.on_result("b", 5, res(0.95, -4))
    r.on_result("a", 15, res(0.9, -3))
    r.on_complete("c", 7, res(0.2, NAN))
    assert seen[:3] == [("a", 5.0, (0.9, -5.0)), ("b", 5.0, (0.95, -4.0)), ("a", 15.0, (0.9, -3.0))]
    assert seen[3][:2] == ("c", 5.0) and seen[3][2][0] == 0.2 and math.isnan(seen[3][2][1])

    # a restarted scheduler given those records ranks a newcomer against them, as if never restarted
    again = MOAshaRungs(["compression", "delta_m"], MAXMAX, grace=5, max_t=45, reduction_factor=3)
    stored = [("e", 15.0, (0.1, None))]                         # a non-finite value, as the study keeps it
    assert again.restore(seen + stored + [("x", 10.0, (1.0, 0.0)), ("y", 5.0, (1.0,)), ("z", 5.0, None)]) == 5
    assert set(again.recorded[5.0]) == {"a", "b", "c"} and set(again.recorded[15.0]) == {"a", "e"}
    assert math.isnan(again.recorded[15.0]["e"][1])
    assert again.on_result("d", 5, res(0.5, -9)) == STOP          # dominated by a and b: rank 3 of 4
    fresh = MOAshaRungs(["compression", "delta_m"], MAXMAX, grace=5, max_t=45, reduction_factor=3)
    assert fresh.on_result("d", 5, res(0.5, -9)) == CONTINUE      # what a resume without them decided
    assert again.on_result("a", 5, res(0.9, -5)) == CONTINUE and again.stopped == ["d"]  # a: recorded already


def test_the_study_keeps_each_trials_rung_records_for_a_resume(tmp_path):
    import optuna

    from sweeps.run import study_storage
    from sweeps.searcher import RUNGS, StudyDriver

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    path = tmp_path / "optuna.journal"

    def driver(n):
        study = optuna.create_study(storage=study_storage(path), study_name="s", directions=MAXMAX,
                                    sampler=optuna.samplers.RandomSampler(seed=0), load_if_exists=True)
        suggest = lambda trial: {"sparsity": trial.suggest_float("sparsity", 0.1, 0.9)}  # noqa: E731
        return StudyDriver(study, suggest, ["compression", "delta_m"], n)

    first = driver(4)
    done, stopped, killed, failed = (first.ask() for _ in range(4))
    first.record_rung(done.key, 5.0, (0.8, -2.0))
    first.record_rung(done.key, 15.0, (0.8, -1.0))
    first.record_rung(stopped.key, 5.0, (0.3, NAN))
    first.record_rung(killed.key, 5.0, (0.9, -1.0))
    first.record_rung(failed.key, 5.0, (0.9, -1.0))
    first.record_rung("t9999", 5.0, (1.0, 1.0))                     # not a live trial: ignored
    first.tell_result(done.key, {"compression": 0.8, "delta_m": -1.0, "final": 1.0})
    first.tell_result(stopped.key, {"compression": 0.3, "step": 5})
    first.tell_failure(failed.key, "boom")
    assert first.study.trials[done.number].user_attrs[RUNGS] == {"5": [0.8, -2.0], "15": [0.8, -1.0]}

    # another process reopens the journal: the finished trials' records come back, the killed (rerun)
    # and the failed trial's do not
    resumed = driver(4)
    assert resumed.recover_interrupted() == [killed.key]
    history = resumed.rung_history()
    assert [(k, m) for k, m, _ in history] == [(done.key, 5.0), (done.key, 15.0), (stopped.key, 5.0)]
    assert history[0][2] == (0.8, -2.0) and history[2][2] == (0.3, None)      # null as stored


def test_nan_and_non_numeric_reports_rank_last():
    r = MOAshaRungs(["compression", "delta_m"], MAXMAX, grace=2, max_t=8, reduction_factor=2)
    assert r.on_result("a", 2, {"compression": 0.5, "delta_m": -5.0}) == CONTINUE
    assert r.on_result("b", 2, {"compression": 0.9, "delta_m": NAN}) == STOP
    assert r.on_result("c", 2, {"compression": 0.9, "delta_m": "n/a"}) == STOP


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="one direction per metric"):
        MOAshaRungs(["a", "b"], ["maximize"], 1, 10)
    with pytest.raises(ValueError, match="maximize or minimize"):
        MOAshaRungs(["a"], ["up"], 1, 10)


# --- end to end: real Ray, Optuna, MLflow, run_trial ---------------------------------------------------

@pytest.mark.slow
def test_sweep_with_multi_objective_asha_stops_dominated_trials(ray_local, tmp_path):
    import io

    from sweeps.run import RunOptions, make_plan, open_study, run_sweep
    from sweeps.searcher import EARLY_STOPPED, TRIAL_KEY

    from sweep_helpers import load_study, sqlite_uri, trial_runs, write_space

    # two concordant objectives (more compression = fewer nonzero parameters), so that which trial
    # dominates which at a rung does not depend on training noise
    space = write_space(
        tmp_path, workload={"steps": 8, "eval_every": 2},
        parameters={"method": {"value": "snip"}, "sparsity": {"values": [0.3, 0.5, 0.9, 0.95]}},
        objectives=["compression", "nonzero_params"],
        early_stopping={"type": "asha", "grace_steps": 2, "reduction_factor": 2},   # metric: objectives
        budgets={}, baseline=False, trials=4, concurrency=1)
    plan = make_plan(RunOptions(space=str(space), results_dir=str(tmp_path / "mo-asha"),
                                tracking_uri=sqlite_uri(tmp_path / "mlflow.db")))
    assert plan.spec.early_stopping["metric"] == "objectives"
    plan.results_dir.mkdir(parents=True)
    study = open_study(plan)
    # one at a time, rungs at steps 2 and 4: 0.9 is first (continues); 0.3 is dominated, rank 2 of 2 (stops);
    # 0.95 is non-dominated (continues); 0.5 ranks 3 of 4 at step 2 (stops)
    for sparsity in (0.9, 0.3, 0.95, 0.5):
        study.enqueue_trial({"sparsity": sparsity})

    out = io.StringIO()
    sigint = signal.getsignal(signal.SIGINT)
    summary = run_sweep(plan, out=out)
    print(out.getvalue())

    assert not summary.interrupted
    assert signal.getsignal(signal.SIGINT) is sigint     # Tune's own Ctrl+C handler does not outlive the run
    study = load_study(plan.results_dir, plan.sweep_id)
    by_sparsity = {t.params["sparsity"]: t for t in study.trials}
    assert {s: t.state.name for s, t in by_sparsity.items()} == {
        0.9: "COMPLETE", 0.3: "PRUNED", 0.5: "PRUNED", 0.95: "COMPLETE"}
    for s in (0.3, 0.5):
        t = by_sparsity[s]
        assert t.user_attrs[EARLY_STOPPED] is True and t.user_attrs["metrics"]["step"] == 2
    assert by_sparsity[0.9].user_attrs["metrics"]["step"] == 8
    assert [t.params["sparsity"] for t in study.best_trials] == [0.95]
    runs = {r.data.tags["disparse.trial_key"]: r for r in trial_runs(plan.tracking_uri, plan.sweep_id)}
    assert len(runs) == 4
    for s, t in by_sparsity.items():
        run = runs[t.user_attrs[TRIAL_KEY]]
        assert run.info.status == "FINISHED"
        assert (run.data.tags.get("disparse.early_stopped") == "true") == (s in (0.3, 0.5))


@pytest.mark.slow
@pytest.mark.parametrize("metric", ["objectives", "compression"])     # multi-objective / single-metric ASHA
def test_a_resumed_sweep_ranks_new_trials_against_the_rungs_of_the_first_run(ray_local, tmp_path, metric):
    """Without the records kept in the study, the first trial after --resume would be "first at the rung"
    and always continue; with them it is ranked against the trials of the first run and stopped."""
    import io

    from sweeps.run import RunOptions, make_plan, open_study, run_sweep
    from sweeps.searcher import RUNGS

    from sweep_helpers import load_study, sqlite_uri, write_space

    space = write_space(
        tmp_path, workload={"steps": 8, "eval_every": 2},
        parameters={"method": {"value": "snip"}, "sparsity": {"values": [0.3, 0.9, 0.95]}},
        objectives=["compression", "nonzero_params"],
        early_stopping={"type": "asha", "metric": metric, "grace_steps": 2, "reduction_factor": 2},  # rungs 2, 4
        budgets={}, baseline=False, trials=2, concurrency=1)
    results_dir = tmp_path / "resumable"
    uri = sqlite_uri(tmp_path / "mlflow.db")
    first = make_plan(RunOptions(space=str(space), results_dir=str(results_dir), tracking_uri=uri))
    assert first.spec.early_stopping["metric"] == metric
    first.results_dir.mkdir(parents=True)
    study = open_study(first)
    for sparsity in (0.9, 0.95):                 # both non-dominated at every rung: both fully trained
        study.enqueue_trial({"sparsity": sparsity})
    assert not run_sweep(first, out=io.StringIO()).interrupted

    again = make_plan(RunOptions(results_dir=str(results_dir), resume=True, trials=3))
    open_study(again).enqueue_trial({"sparsity": 0.3})   # dominated by both (least compression): rank 3 of 3
    out = io.StringIO()
    summary = run_sweep(again, out=out)
    print(out.getvalue())
    assert not summary.interrupted

    by_sparsity = {t.params["sparsity"]: t for t in load_study(results_dir, first.sweep_id).trials}
    assert {s: t.state.name for s, t in by_sparsity.items()} == {0.9: "COMPLETE", 0.95: "COMPLETE",
                                                                  0.3: "PRUNED"}
    assert by_sparsity[0.3].user_attrs["metrics"]["step"] == 2
    assert set(by_sparsity[0.9].user_attrs[RUNGS]) == {"2", "4"}
    assert list(by_sparsity[0.3].user_attrs[RUNGS]) == ["2"]
    assert "4 rung records of the earlier runs" in out.getvalue()


def test_best_so_far_on_one_objective_continues_without_the_non_dominated_clause():
    """keep_non_dominated=False with fewer than reduction_factor trials at the rung: rank 1 of 2 fails the
    rank test (1 * 3 > 2), yet a trial that dominates the only other one must go on, as it would in ASHA."""
    d = decide([(0.5, -10.0)], (0.9, 5.0), MAXMAX, 3, keep_non_dominated=False)
    assert d.action == CONTINUE and d.position == 1 and "best so far" in d.reason
    # best on one objective but not ranked first (the other boundary point of front 0 is)
    recorded = [(0.2, 9.0), (0.5, 1.0), (0.6, 0.0), (0.4, 2.0)]
    d = decide(recorded, (0.95, -5.0), MAXMAX, 4, keep_non_dominated=False)
    assert d.action == CONTINUE and "objective 1" in d.reason
    # neither best on an objective nor within the top 1/rf: stopped
    assert decide(recorded, (0.3, 0.5), MAXMAX, 4, keep_non_dominated=False).action == STOP
    # one objective: the best so far continues at any count (Ray's ASHA keeps it too)
    assert decide([(0.1,)], (0.2,), ["maximize"], 4).action == CONTINUE
    assert decide([(0.1,)], (0.05,), ["maximize"], 4).action == STOP
