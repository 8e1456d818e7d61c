"""Issue 5, benchmark 7: search efficiency on the built-in workload (demo space, scenes, small net).

Three sweeps through the real path (``sweeps.runner.make_plan`` + ``run_sweep``; one MLflow store, so
the dense baseline is trained once and reused), all at the same small budget per trial:

* ``random``: random sampler, every trial trained ``steps`` steps;
* ``tpe``: the demo's TPE sampler (5 start-up trials at 16 trials), same budget;
* ``asha``: random sampler + ASHA on ``delta_m`` (grace ``steps/3``, reduction factor 3), more trials.

Objectives: the demo's (compression, delta_m), both maximised; hypervolume (``sweeps.pareto``) over the
fully trained COMPLETE trials under one fixed reference point, (0, -100 %), for every sweep.
Reported: hypervolume after each trial for random vs TPE; for ASHA, the trial-steps (Σ steps each trial
really trained, in completion order) spent when its hypervolume first reaches the full random sweep's,
over the random sweep's total trial-steps (goal <= 1/3). One seed on a loaded 2-core machine: read the
figures as indicative, not as a significant difference.

    python bench/search_bench.py                 # ~10-20 min on 2 idle cores
    python bench/search_bench.py --quick         # 3 + 3 + 4 trials of 4 steps (the smoke test)
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from pathlib import Path

from _common import fresh_local_ray, write_result  # noqa: E402


REFERENCE = (0.0, -100.0)  # (compression, delta_m %): worse than any trial can be
DIRECTIONS = ("maximize", "maximize")


def base_overrides(args) -> list[str]:
    return [f"workload.steps={args.steps}", f"workload.image_size={args.size}",
            f"workload.train_size={args.train_size}", f"workload.test_size={args.test_size}",
            f"workload.eval_every={max(1, args.steps // 3)}", f"concurrency={args.concurrency}"]


def run_one(args, work: Path, name: str, extra: list[str], trials: int) -> dict:
    from optuna import load_study
    from optuna.trial import TrialState

    from sweeps.pareto import hypervolume
    from sweeps.runner import RunOptions, make_plan, run_sweep
    from sweeps.searcher import METRICS

    opts = RunOptions(space="dynamic", overrides=base_overrides(args) + extra, trials=trials,
                      results_dir=str(work / name), tracking_uri=f"sqlite:///{work / 'mlflow.db'}",
                      experiment="search-bench")
    t0 = time.perf_counter()
    summary = run_sweep(make_plan(opts), out=io.StringIO())
    wall = time.perf_counter() - t0
    study = load_study(study_name=summary.sweep_id, storage=f"sqlite:///{work / name / 'optuna.db'}")
    done = [t for t in study.get_trials() if t.datetime_complete is not None]
    done.sort(key=lambda t: t.datetime_complete)
    steps_total, points, history = 0, [], []
    for t in done:
        m = t.user_attrs.get(METRICS, {})
        steps_total += int(m.get("step", args.steps if t.state == TrialState.COMPLETE else 0))
        if t.state == TrialState.COMPLETE and t.values is not None:
            points.append(tuple(t.values))
        hv = hypervolume(points, DIRECTIONS, REFERENCE) if points else 0.0
        history.append({"trial": t.user_attrs.get("trial_key"), "state": t.state.name,
                        "steps": int(m.get("step", 0)), "cum_steps": steps_total, "hv": hv,
                        "values": list(t.values) if t.values else None})
    return {"name": name, "overrides": extra, "trials": trials, "wall_s": wall,
            "states": summary.states, "timings": summary.timings, "history": history,
            "final_hv": history[-1]["hv"] if history else 0.0, "total_trial_steps": steps_total}


def run(args) -> dict:
    res = {"config": {k: v for k, v in vars(args).items() if k != "out"}, "reference_point": REFERENCE,
           "objectives": ["compression", "delta_m"], "load_before": os.getloadavg()}
    grace = max(1, args.steps // 3)
    with fresh_local_ray(), tempfile.TemporaryDirectory(prefix="search-bench-") as tmp:
        work = Path(tmp)
        sweeps = {
            "random": run_one(args, work, "random", [f"sampler={{type: random, seed: {args.seed}}}"],
                              args.trials),
            "tpe": run_one(args, work, "tpe", [f"sampler={{type: tpe, seed: {args.seed}}}"], args.trials),
            "asha": run_one(args, work, "asha", [
                f"sampler={{type: random, seed: {args.seed}}}",
                f"early_stopping={{type: asha, metric: delta_m, grace_steps: {grace}, reduction_factor: 3}}"],
                args.asha_trials),
        }
    res["sweeps"] = sweeps
    res["load_after"] = os.getloadavg()
    target = sweeps["random"]["final_hv"]
    reached = next((h["cum_steps"] for h in sweeps["asha"]["history"] if h["hv"] >= target > 0), None)
    res["tpe_vs_random_hv"] = {"random": target, "tpe": sweeps["tpe"]["final_hv"],
                               "ratio": sweeps["tpe"]["final_hv"] / target if target else None}
    res["asha"] = {"target_hv": target, "steps_to_reach": reached,
                   "random_total_steps": sweeps["random"]["total_trial_steps"],
                   "fraction": reached / sweeps["random"]["total_trial_steps"] if reached else None,
                   "asha_final_hv": sweeps["asha"]["final_hv"],
                   "asha_total_steps": sweeps["asha"]["total_trial_steps"], "goal": "<= 1/3"}
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=16)
    p.add_argument("--asha-trials", type=int, default=24)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--train-size", type=int, default=256)
    p.add_argument("--test-size", type=int, default=64)
    p.add_argument("--concurrency", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default=None)
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--quick" in argv:  # tiny defaults; options given explicitly still win
        p.set_defaults(trials=3, asha_trials=4, steps=6, train_size=32, test_size=16)
    args = p.parse_args(argv)
    res = run(args)
    path = write_result("search_bench" + ("_quick" if args.quick else ""), res, args.out)
    tv, a = res["tpe_vs_random_hv"], res["asha"]
    print(f"hypervolume after {args.trials} trials: random {tv['random']:.3f}, tpe {tv['tpe']:.3f}")
    print(f"ASHA: reached the random sweep's hypervolume after {a['steps_to_reach']} trial-steps of "
          f"{a['random_total_steps']} ({a['fraction'] if a['fraction'] is not None else 'not reached'}); "
          f"ASHA final hv {a['asha_final_hv']:.3f} with {a['asha_total_steps']} trial-steps")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
