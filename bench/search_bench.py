"""Issue 5, benchmark 7: search efficiency on the built-in workload (demo space, scenes, small net).

Four sweeps through the real path (``sweeps.run.make_plan`` + ``run_sweep``; one MLflow store, so
the dense baseline is trained once and reused), all at the same small budget per trial:

* ``random``: random sampler, every trial trained ``steps`` steps;
* ``tpe``: the demo's TPE sampler (5 start-up trials at 16 trials), same budget;
* ``asha``: random sampler + single-metric ASHA on ``delta_m`` (grace ``steps/3``, reduction factor 3),
  more trials (Ray's ``ASHAScheduler`` in the results recorded before 2026-11-26 21:30, the project's
  scheduler with one objective since: bench/RESULTS.md);
* ``mo_asha``: random sampler + multi-objective ASHA (``early_stopping: {type: asha, metric: objectives}``,
  ranked on compression and delta_m: sweeps/ray/mo_asha.py), same grace, factor and trials as ``asha``;
* ``mo_asha_tpe`` (only with ``--sweeps``): the same with the demo's TPE sampler instead of random;
* ``gp``, ``mo_asha_gp`` (only with ``--sweeps``): Optuna's GP sampler, trained in full / with
  multi-objective ASHA (bench/sampler_bench.py compares the samplers on a surrogate, many seeds).

Objectives: the demo's (compression, delta_m), both maximised; hypervolume (``sweeps.pareto``) over the
fully trained COMPLETE trials under one fixed reference point, (0, -100 %), for every sweep.
Reported: hypervolume after each trial for random vs TPE; for each early-stopping sweep, the trial-steps
(Σ steps each trial really trained, in completion order) spent when its hypervolume first reaches the
full random sweep's, over the random sweep's total trial-steps (goal <= 1/3), its hypervolume at the
random sweep's budget of trial-steps, and how many trials it stopped. One seed per run on a loaded
2-core machine: read the figures as indicative, not as a significant difference.

    python bench/search_bench.py                 # 16 + 16 + 24 + 24 trials of 60 steps; not timed
    python bench/search_bench.py --trials 24 --asha-trials 48 --steps 45   # 7-14 min per seed at load 2-4
    python bench/search_bench.py --quick         # 3 + 3 + 4 + 4 trials of 6 steps (the smoke test)
    python bench/search_bench.py --sweeps random mo_asha   # a subset (the comparisons need random)
    python bench/search_bench.py --grace 5 --sweeps mo_asha_tpe --random-from R.json   # random sweep of R
    python bench/search_bench.py --summarize bench/results/search_bench.json bench/results/search_bench_seed*.json
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


def grace_of(config) -> int:
    """The first rung (and the evaluation interval): ``--grace``, else a third of the steps."""
    config = config if isinstance(config, dict) else vars(config)
    return int(config.get("grace") or max(1, config["steps"] // 3))


def base_overrides(args) -> list[str]:
    return [f"workload.steps={args.steps}", f"workload.image_size={args.size}",
            f"workload.train_size={args.train_size}", f"workload.test_size={args.test_size}",
            f"workload.eval_every={grace_of(args)}", f"concurrency={args.concurrency}"]


def run_one(args, work: Path, name: str, extra: list[str], trials: int) -> dict:
    from optuna.trial import TrialState

    from sweeps.pareto import hypervolume
    from sweeps.run import RunOptions, load_sweep_study, make_plan, run_sweep
    from sweeps.searcher import METRICS

    opts = RunOptions(space="dynamic", overrides=base_overrides(args) + extra, trials=trials,
                      results_dir=str(work / name), tracking_uri=f"sqlite:///{work / 'mlflow.db'}",
                      experiment="search-bench")
    t0 = time.perf_counter()
    summary = run_sweep(make_plan(opts), out=io.StringIO())
    wall = time.perf_counter() - t0
    study = load_sweep_study(work / name, summary.sweep_id)
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
                        "values": list(t.values) if t.values else None,
                        "last": {k: m.get(k) for k in ("compression", "delta_m")},
                        "params": dict(t.params)})
    return {"name": name, "overrides": extra, "trials": trials, "wall_s": wall,
            "states": summary.states, "timings": summary.timings, "history": history,
            "final_hv": history[-1]["hv"] if history else 0.0, "total_trial_steps": steps_total}


SWEEPS = ("random", "tpe", "asha", "mo_asha")      # a full run; summarize() needs these four
EXTRA_SWEEPS = ("mo_asha_tpe", "gp", "mo_asha_gp")  # on request (--sweeps)
STOPPING_SWEEPS = ("asha", "mo_asha", "mo_asha_tpe", "gp", "mo_asha_gp")  # compared with the random budget


def sweep_overrides(args, name: str) -> tuple[list[str], int]:
    grace = grace_of(args)
    random = f"sampler={{type: random, seed: {args.seed}}}"
    mo_asha = f"early_stopping={{type: asha, metric: objectives, grace_steps: {grace}, reduction_factor: 3}}"
    return {
        "random": ([random], args.trials),
        "tpe": ([f"sampler={{type: tpe, seed: {args.seed}}}"], args.trials),
        "asha": ([random, f"early_stopping={{type: asha, metric: delta_m, grace_steps: {grace}, "
                          f"reduction_factor: 3}}"], args.asha_trials),
        "mo_asha": ([random, mo_asha], args.asha_trials),
        # the demo's own sampler with multi-objective ASHA (a stopped trial is PRUNED for TPE)
        "mo_asha_tpe": ([f"sampler={{type: tpe, seed: {args.seed}}}", mo_asha], args.asha_trials),
        "gp": ([f"sampler={{type: gp, seed: {args.seed}}}"], args.trials),
        "mo_asha_gp": ([f"sampler={{type: gp, seed: {args.seed}}}", mo_asha], args.asha_trials),
    }[name]


def early_stopping_figures(sweep: dict, target: float, budget: int | None) -> dict:
    """Trial-steps to reach ``target`` (the random sweep's final hypervolume), the hypervolume at the
    random sweep's ``budget`` of trial-steps, and the trials stopped early."""
    hist = sweep["history"]
    reached = next((h["cum_steps"] for h in hist if h["hv"] >= target > 0), None)
    at_budget = max((h["hv"] for h in hist if budget is not None and h["cum_steps"] <= budget), default=0.0)
    stopped = [h for h in hist if h["state"] == "PRUNED"]
    return {"target_hv": target, "steps_to_reach": reached, "random_total_steps": budget,
            "fraction": reached / budget if reached and budget else None,
            "hv_at_random_budget": at_budget, "final_hv": sweep["final_hv"],
            "total_steps": sweep["total_trial_steps"], "trials": len(hist), "stopped": len(stopped),
            "stopped_compression": sorted(round(h["last"]["compression"], 3) for h in stopped
                                          if h["last"].get("compression") is not None),
            "goal": "<= 1/3"}


def _earlier_random(args, config: dict) -> dict | None:
    """``--random-from``: the random sweep of an earlier result with the same seed and sizes (the random
    sweep is deterministic given them), checked before anything runs."""
    if not getattr(args, "random_from", None):
        return None
    import json

    earlier = json.loads(Path(args.random_from).read_text())
    same = ("seed", "steps", "trials", "size", "train_size", "test_size")
    if "random" not in earlier.get("sweeps", {}) or any(earlier["config"].get(k) != config.get(k) for k in same):
        raise SystemExit(f"--random-from: {args.random_from!r} holds no random sweep run with these settings; "
                         f"expected one with the same {', '.join(same)}")
    return earlier["sweeps"]["random"]


def run(args, checkpoint=None) -> dict:
    """The sweeps in ``args.sweeps`` order; ``checkpoint(partial result)`` after each (a long run that is
    cut short keeps what it finished)."""
    res = {"config": {k: v for k, v in vars(args).items() if k != "out"}, "reference_point": REFERENCE,
           "objectives": ["compression", "delta_m"], "load_before": os.getloadavg()}
    sweeps = {}
    earlier = _earlier_random(args, res["config"]) if "random" not in args.sweeps else None
    with fresh_local_ray(), tempfile.TemporaryDirectory(prefix="search-bench-") as tmp:
        work = Path(tmp)
        for name in args.sweeps:
            extra, trials = sweep_overrides(args, name)
            sweeps[name] = run_one(args, work, name, extra, trials)
            print(f"{name}: {trials} trials, final hv {sweeps[name]['final_hv']:.3f}, "
                  f"{sweeps[name]['total_trial_steps']} trial-steps, {sweeps[name]['wall_s']:.0f} s", flush=True)
            if checkpoint is not None:
                checkpoint({**res, "sweeps": dict(sweeps), "partial": True})
    res["sweeps"] = sweeps
    res["load_after"] = os.getloadavg()
    if "random" not in sweeps and earlier is not None:
        sweeps = res["sweeps"] = dict(sweeps, random=earlier)
        res["random_from"] = str(args.random_from)
    if "random" not in sweeps:
        return res
    target = sweeps["random"]["final_hv"]
    budget = sweeps["random"]["total_trial_steps"]
    if "tpe" in sweeps:
        res["tpe_vs_random_hv"] = {"random": target, "tpe": sweeps["tpe"]["final_hv"],
                                   "ratio": sweeps["tpe"]["final_hv"] / target if target else None}
    for name in STOPPING_SWEEPS:
        if name in sweeps:
            res[name] = early_stopping_figures(sweeps[name], target, budget)
    return res


def summarize(paths: list[str]) -> dict:
    """Across seeds (result files of full runs with all four sweeps): per seed and in all, the figures of
    bench/results/search_bench.md, plus an oracle fraction: the trial-steps, over the random sweep's, that
    a one-rung stopper would need with the random sweep's configurations in the same order if it fully
    trained exactly the ones on that sweep's final front and stopped every other one at the rung."""
    import json

    from sweeps.pareto import pareto_front

    rows = []
    for path in paths:
        d = json.loads(Path(path).read_text())
        sw = d.get("sweeps", {})
        if d.get("partial") or not set(SWEEPS) <= set(sw):
            continue
        steps = d["config"]["steps"]
        grace = grace_of(d["config"])
        rnd = sw["random"]
        front = set(pareto_front([tuple(h["values"]) for h in rnd["history"]], DIRECTIONS))
        oracle = sum(steps if i in front else grace for i in range(max(front) + 1))
        row = {"file": Path(path).name, "seed": d["config"]["seed"], "config": d["config"],
               "load_average": d["machine"]["load_average"], "random_hv": rnd["final_hv"],
               "tpe_hv": sw["tpe"]["final_hv"], "tpe_ratio": sw["tpe"]["final_hv"] / rnd["final_hv"],
               "random_steps": rnd["total_trial_steps"], "random_front": len(front),
               "oracle_fraction": oracle / rnd["total_trial_steps"],
               "wall_s": {n: round(sw[n]["wall_s"]) for n in sw}}
        for name in ("asha", "mo_asha"):
            a = d[name]
            row[name] = {k: a[k] for k in ("fraction", "steps_to_reach", "hv_at_random_budget", "final_hv",
                                           "total_steps", "stopped", "trials")}
            row[name]["hv_at_random_budget_vs_random"] = a["hv_at_random_budget"] / rnd["final_hv"] - 1
            row[name]["stopped_compression_ge_0.75"] = sum(c >= 0.75 for c in a["stopped_compression"])
            row[name]["complete_compression_ge_0.75"] = sum(
                1 for h in sw[name]["history"] if h["state"] == "COMPLETE" and h["values"][0] >= 0.75)
        rows.append(row)
    rows.sort(key=lambda r: r["seed"])
    return {"seeds": [r["seed"] for r in rows], "rows": rows,
            "tpe_beats_random": sum(r["tpe_ratio"] > 1 for r in rows),
            "reached": {n: sum(r[n]["fraction"] is not None for r in rows) for n in ("asha", "mo_asha")},
            "goal_met": {n: sum(r[n]["fraction"] is not None and r[n]["fraction"] <= 1 / 3 for r in rows)
                         for n in ("asha", "mo_asha")}}


def methods_table(paths: list[str]) -> dict:
    """Per method, over every result file that has it (any seeds, any mix of sweeps; grace in the name):
    the trial-steps to the full random sweep's hypervolume over that sweep's (median, range, seeds reached,
    seeds at <= 1/3 and <= 1/2) and the final hypervolume over the random sweep's (median, range)."""
    import json
    import math

    by: dict[str, dict] = {}
    for path in paths:
        d = json.loads(Path(path).read_text())
        if d.get("partial") or "random" not in d.get("sweeps", {}):
            continue
        grace = grace_of(d["config"])
        random_hv = d["sweeps"]["random"]["final_hv"]
        for name in STOPPING_SWEEPS:
            if name not in d:
                continue
            key = f"{name} (grace {grace})" if "asha" in name else name
            row = by.setdefault(key, {"seeds": [], "fraction": [], "final_vs_random": []})
            if d["config"]["seed"] in row["seeds"]:
                continue                      # one result per seed and method (the first file given)
            row["seeds"].append(d["config"]["seed"])
            row["fraction"].append(d[name]["fraction"])
            row["final_vs_random"].append(d[name]["final_hv"] / random_hv - 1 if random_hv else None)
    for row in by.values():
        fr = sorted(math.inf if f is None else f for f in row["fraction"])
        n = len(fr)
        med = fr[n // 2] if n % 2 else (fr[n // 2 - 1] + fr[n // 2]) / 2
        fin = lambda x: None if not math.isfinite(x) else x  # noqa: E731
        gain = sorted(g for g in row["final_vs_random"] if g is not None)
        row.update(median=fin(med), min=fin(fr[0]), max=fin(fr[-1]), reached=sum(math.isfinite(f) for f in fr),
                   third=sum(f <= 1 / 3 for f in fr), half=sum(f <= 1 / 2 for f in fr),
                   final_median=gain[len(gain) // 2] if gain else None)
    return by


def print_methods(table: dict) -> None:
    def frac(x):
        return "not reached" if x is None else f"{x:.2f}"

    print("| method | seeds | to random hv: median | range | reached | ≤ 1/3 | ≤ 1/2 | final hv vs random (median) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in table.items():
        fm = "—" if r["final_median"] is None else f"{r['final_median']:+.1%}"
        print(f"| {name} | {len(r['seeds'])} | {frac(r['median'])} | {frac(r['min'])}–{frac(r['max'])} "
              f"| {r['reached']}/{len(r['seeds'])} | {r['third']} | {r['half']} | {fm} |")


def print_summary(summary: dict) -> None:
    def frac(x):
        return "not reached" if x is None else f"{x:.2f}"

    print("| seed | random hv | TPE hv (ratio) | ASHA on Δm: to random hv | hv at random budget | stopped (≥0.75) "
          "| MO-ASHA: to random hv | hv at random budget | stopped (≥0.75) | oracle |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in summary["rows"]:
        a, m = r["asha"], r["mo_asha"]
        print(f"| {r['seed']} | {r['random_hv']:.2f} | {r['tpe_hv']:.2f} ({r['tpe_ratio']:.3f}) "
              f"| {frac(a['fraction'])} | {a['hv_at_random_budget']:.2f} | {a['stopped']}/{a['trials']} "
              f"({a['stopped_compression_ge_0.75']}) | {frac(m['fraction'])} | {m['hv_at_random_budget']:.2f} "
              f"| {m['stopped']}/{m['trials']} ({m['stopped_compression_ge_0.75']}) | {r['oracle_fraction']:.2f} |")


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
    p.add_argument("--grace", type=int, default=None,
                   help="first ASHA rung and evaluation interval, in steps (default: steps // 3)")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--sweeps", nargs="+", choices=SWEEPS + EXTRA_SWEEPS, default=list(SWEEPS))
    p.add_argument("--out", default=None)
    p.add_argument("--random-from", metavar="RESULT.json", default=None,
                   help="without a random sweep in --sweeps: compare with the random sweep of this earlier "
                        "result (same seed and sizes)")
    p.add_argument("--summarize", nargs="+", metavar="RESULT.json",
                   help="no sweeps: summarise result files of full runs (one per seed) into --out "
                        "(default bench/results/search_bench_summary.json) and print the table")
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--quick" in argv:  # tiny defaults; options given explicitly still win
        p.set_defaults(trials=3, asha_trials=4, steps=6, train_size=32, test_size=16)
    args = p.parse_args(argv)
    if args.summarize:
        summary = summarize(args.summarize)
        print_summary(summary)
        summary["methods"] = methods_table(args.summarize)
        print()
        print_methods(summary["methods"])
        print(f"wrote {write_result('search_bench_summary', summary, args.out)}")
        return 0
    name = "search_bench" + ("_quick" if args.quick else "")
    res = run(args, checkpoint=lambda partial: write_result(name, partial, args.out))
    path = write_result(name, res, args.out)
    tv = res.get("tpe_vs_random_hv")
    if tv:
        print(f"hypervolume after {args.trials} trials: random {tv['random']:.3f}, tpe {tv['tpe']:.3f}")
    for name in STOPPING_SWEEPS:
        a = res.get(name)
        if a:
            print(f"{name}: reached the random sweep's hypervolume after {a['steps_to_reach']} trial-steps of "
                  f"{a['random_total_steps']} ({a['fraction'] if a['fraction'] is not None else 'not reached'}); "
                  f"hv {a['hv_at_random_budget']:.3f} at the random budget; final hv {a['final_hv']:.3f} with "
                  f"{a['total_steps']} trial-steps; stopped {a['stopped']} of {a['trials']}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
