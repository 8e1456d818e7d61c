"""Issue 5, benchmark 5: what Ray + Optuna + MLflow cost per trial, and the demo's start-up time.

Everything runs through the project's real sweep path: ``sweeps.run.make_plan`` + ``run_sweep`` on
the default demo space (``search_spaces/dynamic.yaml``) with trials shrunk to one training step on
32x32 images (run_trial needs ``steps >= 1``), one trial at a time (the dense
baseline stays on: the demo objective delta_m needs it; it is one tiny run_trial, timed apart).

* ``startup``: run_sweep's own timings (imports, ``ray.init`` overlapped with MLflow's set-up, study,
  tuner, shutdown) plus, in a fresh interpreter, the import cost of each heavy package in the order the
  demo meets them.
* ``per_trial``: ``(tuner time - Σ in-trial wall_time_s) / trials`` for a short and a long sweep, and the
  marginal overhead ``Δ(tuner - Σ wall) / Δ trials`` between them (fixed costs such as the first
  worker's ``import torch`` cancel out). Goal <= 1 s per trial.
* ``parts``: the driver-side pieces alone, no Ray: one Optuna ask + tell (the demo's TPE sampler, journal
  storage) and one trial's MLflow logging (``SweepTracker``: start, one interim result, completion).

    python bench/orchestration_bench.py              # bench/results/orchestration_bench.json
    python bench/orchestration_bench.py --quick      # 1 and 2 trials; the smoke test
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import LOOPBACK_ENV, ROOT, fresh_local_ray, write_result  # noqa: E402


#: shrinks every demo trial to (almost) no training
TINY = ["concurrency=1", "workload.steps=1", "workload.image_size=32",
        "workload.train_size=16", "workload.test_size=16", "workload.batch_size=16",
        "workload.eval_every=1"]

IMPORTS = [  # in the order the demo (tune.py -> sweeps.cli -> runner) meets them
    ("sweeps.cli + space (yaml)", "import sweeps.cli, sweeps.run, sweeps.space"),
    ("mlflow (sweeps.tracking)", "import sweeps.tracking, mlflow"),
    ("torch + disparse_core", "import torch, disparse_core.trial"),
    ("optuna", "import optuna"),
    ("ray + ray.tune (sweeps.ray)", "import sweeps.ray"),
]


def import_breakdown(repeats: int) -> dict:
    code = ("import time, json, sys; sys.path.insert(0, %r); out = []\n" % str(ROOT)
            + "".join(f"t=time.perf_counter(); {stmt}; out.append(time.perf_counter()-t)\n"
                      for _, stmt in IMPORTS)
            + "print(json.dumps(out))")
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        text = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                              env={**os.environ, **LOOPBACK_ENV}, cwd=ROOT).stdout
        wall = time.perf_counter() - t0
        runs.append((json.loads(text.strip().splitlines()[-1]), wall))
    med = {name: statistics.median(r[0][i] for r in runs) for i, (name, _) in enumerate(IMPORTS)}
    return {"seconds": med, "total_imports_s": sum(med.values()),
            "process_wall_s": statistics.median(r[1] for r in runs), "repeats": repeats}


def one_sweep(trials: int, work: Path, tag: str) -> dict:
    from sweeps.run import RunOptions, load_sweep_study, make_plan, run_sweep
    from sweeps.searcher import METRICS

    opts = RunOptions(space="dynamic", overrides=TINY, trials=trials,
                      results_dir=str(work / f"results-{tag}"),
                      tracking_uri=f"sqlite:///{work / 'mlflow.db'}", experiment=f"orch-{tag}")
    t0 = time.perf_counter()
    plan = make_plan(opts)
    plan_s = time.perf_counter() - t0
    summary = run_sweep(plan, out=io.StringIO())
    study = load_sweep_study(plan.results_dir, plan.sweep_id)
    walls = [t.user_attrs.get(METRICS, {}).get("wall_time_s") for t in study.get_trials()]
    walls = [w for w in walls if w is not None]
    t = dict(summary.timings)
    inside = sum(walls)
    return {"trials": trials, "states": summary.states, "plan_s": plan_s, "timings": t,
            "in_trial_wall_s": walls, "sum_in_trial_s": inside,
            "overhead_per_trial_s": (t["tuner_s"] - inside) / trials,
            "tracking_errors": summary.tracking_errors}


def driver_parts(work: Path, n: int) -> dict:
    """Optuna ask/tell and MLflow logging per trial, timed on the driver without Ray."""
    import optuna

    from sweeps.run import study_storage
    from sweeps.searcher import StudyDriver
    from sweeps.space import directions, load_space, make_sampler, suggest
    from sweeps.tracking import SweepTracker

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec = load_space("dynamic", TINY + [f"trials={n}"])
    study = optuna.create_study(storage=study_storage(work / "parts-optuna.journal"), study_name="parts",
                                directions=directions(spec), sampler=make_sampler(spec))
    driver = StudyDriver(study, lambda tr: suggest(spec, tr), spec.metric_names, n)
    tracker = SweepTracker(f"sqlite:///{work / 'parts-mlflow.db'}", "parts")
    tracker.start_sweep(spec, sweep_id="parts", config={"trials": n})
    ask_tell, mlflow_s = [], []
    for i in range(n):
        t0 = time.perf_counter()
        asked = driver.ask()
        metrics = {"compression": 0.5 + i / (3 * n), "delta_m": -i / n, "seg.miou": 0.3,
                   "normal.mean": 30.0, "step": 1.0, "final": 1.0, "wall_time_s": 0.1}
        driver.tell_result(asked.key, metrics)
        t1 = time.perf_counter()
        tracker.trial_started(asked.key, asked.config, optuna_number=asked.number)
        tracker.trial_result(asked.key, {k: v for k, v in metrics.items() if k != "final"}, 1)
        tracker.trial_completed(asked.key, metrics)
        t2 = time.perf_counter()
        ask_tell.append(t1 - t0)
        mlflow_s.append(t2 - t1)
    t0 = time.perf_counter()
    tracker.finish_sweep(objectives=spec.metric_names, directions=directions(spec))
    finish = time.perf_counter() - t0
    return {"trials": n, "optuna_ask_tell_s": {"median": statistics.median(ask_tell),
                                               "max": max(ask_tell), "all": ask_tell},
            "mlflow_per_trial_s": {"median": statistics.median(mlflow_s), "max": max(mlflow_s),
                                   "all": mlflow_s},
            "mlflow_finish_sweep_s": finish}


def run(args) -> dict:
    res = {"config": {"trials_short": args.short, "trials_long": args.long, "tiny_overrides": TINY,
                      "space": "dynamic (the default demo)", "quick": args.quick},
           "goal_overhead_per_trial_s": 1.0}
    res["imports"] = import_breakdown(args.import_repeats)
    with fresh_local_ray(), tempfile.TemporaryDirectory(prefix="orch-bench-") as tmp:
        work = Path(tmp)
        res["parts"] = driver_parts(work, max(args.long, args.short, 2))
        short = one_sweep(args.short, work, "short")
        long = one_sweep(args.long, work, "long") if args.long > args.short else None
    res["sweeps"] = {"short": short, "long": long}
    res["marginal_overhead_per_trial_s"] = None
    if long is not None:
        d_over = ((long["timings"]["tuner_s"] - long["sum_in_trial_s"])
                  - (short["timings"]["tuner_s"] - short["sum_in_trial_s"]))
        res["marginal_overhead_per_trial_s"] = d_over / (long["trials"] - short["trials"])
    t = short["timings"]
    res["startup"] = {"imports_in_run_sweep_s": t.get("imports_s"), "ray_init_s": t.get("ray_init_s"),
                      "mlflow_setup_s": t.get("mlflow_s"), "study_s": t.get("study_s"),
                      "ray_shutdown_s": t.get("ray_shutdown_s"), "plan_s": short["plan_s"],
                      "fresh_process_imports_s": res["imports"]["total_imports_s"]}
    return res


def summary(res: dict) -> str:
    s, lg = res["sweeps"]["short"], res["sweeps"]["long"] or res["sweeps"]["short"]
    st, parts = res["startup"], res["parts"]
    lines = ["imports (fresh process): " + ", ".join(f"{k} {v:.2f}s" for k, v in res["imports"]["seconds"].items())
             + f"; total {res['imports']['total_imports_s']:.2f}s",
             f"start-up in run_sweep: ray.init {st['ray_init_s']:.2f}s (MLflow set-up {st['mlflow_setup_s']:.2f}s "
             f"in parallel), study {st['study_s']:.2f}s, shutdown {st['ray_shutdown_s']:.2f}s",
             f"overhead per trial: {s['trials']} trials {s['overhead_per_trial_s']:.2f}s, {lg['trials']} trials "
             f"{lg['overhead_per_trial_s']:.2f}s, marginal {res['marginal_overhead_per_trial_s'] or float('nan'):.2f}s "
             f"(goal <= 1 s)",
             f"driver parts per trial: Optuna ask+tell {parts['optuna_ask_tell_s']['median'] * 1e3:.0f} ms, "
             f"MLflow logging {parts['mlflow_per_trial_s']['median'] * 1e3:.0f} ms"]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--short", type=int, default=2)
    p.add_argument("--long", type=int, default=10)
    p.add_argument("--import-repeats", type=int, default=3)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default=None)
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--quick" in argv:  # one sweep of one trial; options given explicitly still win
        p.set_defaults(short=1, long=0, import_repeats=1)
    args = p.parse_args(argv)
    res = run(args)
    path = write_result("orchestration_bench" + ("_quick" if args.quick else ""), res, args.out)
    print(summary(res))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
