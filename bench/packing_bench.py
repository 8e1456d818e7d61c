"""Issue 5, benchmark 6: GPU packing — 1, 2 and 4 concurrent trials per GPU with fractional resources.

Each packing level runs the same mini sweep (the demo space, small network, fixed cutoff, the TPE
sampler's seeded start-up trials, so every level trains the same configs) through the project's real
Ray path, ``sweeps.ray.run_tuner`` + ``sweeps.searcher.StudyDriver``, with
``resources = {cpu: 1, gpu: 1/k}`` and ``concurrency = k``. No MLflow here (the GPU machine has none):
every trial's config and metrics go to the JSON, and ``bench/log_gpu_results.py`` logs them to MLflow
afterwards. Throughput = trials / tuner wall time; goal: 4 per GPU >= 2.5x the throughput of 1 per GPU.

    python bench/packing_bench.py --device cuda                 # GPU: k = 1, 2, 4
    python bench/packing_bench.py --quick                       # CPU: k = 1, 2 with 1 CPU per trial,
                                                                # tiny trials (proves the logic only)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import fresh_local_ray, write_result  # noqa: E402


def overrides(args, k: int) -> list[str]:
    gpu = f", gpu: {1.0 / k:g}" if args.device == "cuda" else ""
    return ["baseline=false", "objectives=[compression, seg.miou]", "budgets={}",
            "parameters.cutoff=8", f"workload.steps={args.steps}", f"workload.image_size={args.size}",
            f"workload.train_size={args.train_size}", f"workload.test_size={args.test_size}",
            f"workload.batch_size={args.batch}", f"workload.device={args.device}",
            f"workload.bf16={'true' if args.bf16 else 'false'}",
            f"resources={{cpu: 1{gpu}}}", f"concurrency={k}", f"trials={args.trials}"]


def one_level(args, k: int, work: Path) -> dict:
    import optuna

    from sweeps import ray as sweeps_ray
    from sweeps.searcher import METRICS, StudyDriver
    from sweeps.space import directions, load_space, make_sampler, suggest

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ov = overrides(args, k)
    spec = load_space("dynamic", ov)
    study = optuna.create_study(storage=f"sqlite:///{work / f'packing-{k}.db'}", study_name=f"pack{k}",
                                directions=directions(spec), sampler=make_sampler(spec))
    driver = StudyDriver(study, lambda tr: suggest(spec, tr), spec.metric_names, spec.trials,
                         extra_config={"num_threads": 1})
    outcome = sweeps_ray.run_tuner(driver, resources=spec.resources, concurrency=k,
                                   storage_path=str(work / "ray"), name=f"pack-{k}")
    trials = []
    for t in study.get_trials():
        trials.append({"key": t.user_attrs.get("trial_key"), "state": t.state.name,
                       "params": dict(t.params), "values": t.values,
                       "metrics": t.user_attrs.get(METRICS, {}),
                       "fail_reason": t.user_attrs.get("fail_reason")})
    done = [t for t in trials if t["state"] == "COMPLETE"]
    walls = [t["metrics"].get("wall_time_s") for t in done if "wall_time_s" in t["metrics"]]
    return {"k": k, "resources": spec.resources, "overrides": ov, "fit_s": outcome.fit_s,
            "completed": len(done), "trials": trials,
            "trials_per_hour": 3600.0 * len(done) / outcome.fit_s if outcome.fit_s else 0.0,
            "median_trial_wall_s": statistics.median(walls) if walls else None}


def run(args) -> dict:
    from sweeps import ray as sweeps_ray

    t0 = time.perf_counter()
    with fresh_local_ray():
        session = sweeps_ray.connect(num_cpus=args.cpus, num_gpus=None if args.device == "cuda" else 0)
    res = {"config": {k: v for k, v in vars(args).items() if k != "out"}, "levels": {},
           "ray_init_s": time.perf_counter() - t0, "cluster": {"cpus": session.cpus, "gpus": session.gpus},
           "goal": "throughput(4 per GPU) >= 2.5 x throughput(1 per GPU)"}
    try:
        with tempfile.TemporaryDirectory(prefix="packing-") as tmp:
            for k in args.levels:
                res["levels"][str(k)] = one_level(args, k, Path(tmp))
    finally:
        session.close()
    base = res["levels"].get("1", {}).get("trials_per_hour")
    res["speedup_vs_1"] = {k: (v["trials_per_hour"] / base if base else None)
                           for k, v in res["levels"].items()}
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--levels", default="1,2,4")
    p.add_argument("--trials", type=int, default=8)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--train-size", type=int, default=512)
    p.add_argument("--test-size", type=int, default=128)
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--cpus", type=int, default=None, help="Ray CPUs (default: all)")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default=None)
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--quick" in argv:  # tiny defaults; options given explicitly still win
        p.set_defaults(levels="1,2", trials=2, steps=2, size=32, train_size=16, test_size=16, batch=8)
    args = p.parse_args(argv)
    args.levels = [int(x) for x in str(args.levels).split(",")]
    if args.device == "cpu" and args.cpus is None:
        args.cpus = max(args.levels)
    res = run(args)
    path = write_result(f"packing_bench_{args.device}" + ("_quick" if args.quick else ""), res, args.out)
    for k, v in res["levels"].items():
        print(f"{k} per {'GPU' if args.device == 'cuda' else 'node'}: {v['completed']} trials in "
              f"{v['fit_s']:.1f}s = {v['trials_per_hour']:.0f} trials/h "
              f"(x{res['speedup_vs_1'][k] or float('nan'):.2f} vs 1)")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
