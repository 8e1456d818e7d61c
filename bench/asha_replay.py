"""Issue 5, benchmark 7 (continued): which early-stopping rule could reach the goal, replayed offline.

A real sweep of the search-efficiency benchmark gives one figure per stopping rule and seed, at minutes
each. This script separates the two costs:

* ``collect``: one full-budget random sweep through the real path (``sweeps.run``; the demo space,
  as bench/search_bench.py sizes it) of ``--trials`` trials with an evaluation every ``--every`` steps,
  and the learning curve of every trial, (compression, delta_m) at each evaluation, read back from
  MLflow. With the same seed its configurations are, in order, those of search_bench.py's ``random``
  sweep (its first ``--trials`` of them) and of its early-stopping sweeps.
* ``replay``: the rule of ``sweeps.ray.mo_asha`` (the module's own ``MOAshaRungs``), and variants of it,
  applied to those curves with ``--concurrency`` simulated workers that take the trials in order (time
  = steps trained; a stopped trial frees its worker at its rung). Reported as search_bench.py does: the
  trial-steps, in completion order, until the hypervolume of the fully trained trials reaches the one of
  the first ``--random`` trials trained fully (the random sweep), over that sweep's trial-steps.

A replay is not a sweep: Ray's real order of events differs (startup, evaluation time), so a replayed
fraction and a real one differ a little for the same rule (compared in bench/results/asha_replay.md).

    python bench/asha_replay.py collect --seed 0 --out bench/results/asha_curves_seed0.json
    python bench/asha_replay.py replay bench/results/asha_curves_seed*.json
"""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
import tempfile
import time
from pathlib import Path

from _common import fresh_local_ray, write_result  # noqa: E402
from search_bench import DIRECTIONS, REFERENCE, base_overrides  # noqa: E402  (the same sweep, sized alike)

OBJECTIVES = ("compression", "delta_m")


# ------------------------------------------------------------------------------------------- collect
def collect(args) -> dict:
    from mlflow.tracking import MlflowClient

    from sweeps.tracking import TAG_ROLE, TAG_SWEEP_ID, TAG_TRIAL_KEY
    from sweeps.run import RunOptions, load_sweep_study, make_plan, run_sweep

    overrides = base_overrides(argparse.Namespace(**vars(args), grace=args.every)) + [
        f"sampler={{type: random, seed: {args.seed}}}", "early_stopping={type: none}"]
    with fresh_local_ray(), tempfile.TemporaryDirectory(prefix="asha-replay-") as tmp:
        work = Path(tmp)
        uri = f"sqlite:///{work / 'mlflow.db'}"
        t0 = time.perf_counter()
        summary = run_sweep(make_plan(RunOptions(space="dynamic", overrides=overrides, trials=args.trials,
                                                 results_dir=str(work / "full"), tracking_uri=uri,
                                                 experiment="asha-replay")), out=io.StringIO())
        wall = time.perf_counter() - t0
        study = load_sweep_study(work / "full", summary.sweep_id)
        client = MlflowClient(tracking_uri=uri)
        exp = client.get_experiment_by_name("asha-replay")
        runs = client.search_runs([exp.experiment_id], max_results=1000,
                                  filter_string=f"tags.`{TAG_ROLE}` = 'trial' and "
                                                f"tags.`{TAG_SWEEP_ID}` = '{summary.sweep_id}'")
        run_of = {r.data.tags[TAG_TRIAL_KEY]: r.info.run_id for r in runs}
        trials = []
        for t in sorted(study.get_trials(), key=lambda t: t.number):
            key = t.user_attrs.get("trial_key")
            curve: dict[int, dict] = {}
            for name in OBJECTIVES:
                for m in client.get_metric_history(run_of[key], name):
                    curve.setdefault(int(m.step), {})[name] = m.value
            trials.append({"key": key, "state": t.state.name, "params": dict(t.params),
                           "values": list(t.values) if t.values else None,
                           "curve": {str(s): [v.get(n) for n in OBJECTIVES] for s, v in sorted(curve.items())}})
    return {"config": {k: v for k, v in vars(args).items() if k not in ("out", "func", "files")},
            "objectives": list(OBJECTIVES), "wall_s": wall, "states": summary.states, "trials": trials}


# -------------------------------------------------------------------------------------------- replay
def _point(trial: dict, step: int):
    v = trial["curve"].get(str(step))
    return None if v is None or any(x is None for x in v) else tuple(v)


def replay(trials: list[dict], steps: int, rule, concurrency: int = 2) -> list[dict]:
    """Simulate ``rule`` (an object with ``on_result(id, step, result) -> 'CONTINUE'|'STOP'``) on the
    curves, ``concurrency`` workers taking the trials in order; returns the trials in completion order as
    ``{"i", "steps", "complete", "values"}``."""
    import heapq

    evals = sorted({int(s) for t in trials for s in t["curve"]})
    # event: (time, order, trial index, eval position); a worker picks the next trial when one ends
    queue, done, nxt, seq = [], [], 0, 0

    def start(now: float) -> None:
        nonlocal nxt, seq
        if nxt < len(trials):
            heapq.heappush(queue, (now + evals[0], seq, nxt, 0, now))
            seq += 1
            nxt += 1

    for _ in range(concurrency):
        start(0.0)
    while queue:
        now, _, i, k, t_start = heapq.heappop(queue)
        step = evals[k]
        point = _point(trials[i], step)
        last = step >= steps or k + 1 >= len(evals)
        action = "CONTINUE"
        if not last and point is not None:
            action = rule.on_result(i, step, dict(zip(OBJECTIVES, point)))
        if last or action == "STOP":
            done.append({"i": i, "steps": step, "complete": last and trials[i]["values"] is not None,
                         "values": trials[i]["values"] if last else None})
            start(now)
        else:
            heapq.heappush(queue, (t_start + evals[k + 1], seq, i, k + 1, t_start))
            seq += 1
    return done


def fraction_to_reach(done: list[dict], target: float, budget: int) -> tuple[float | None, float]:
    """(trial-steps to reach ``target`` over ``budget`` or None, hypervolume at ``budget``)."""
    from sweeps.pareto import hypervolume

    cum, points, reached, at_budget = 0, [], None, 0.0
    for d in done:
        cum += d["steps"]
        if d["complete"]:
            points.append(tuple(d["values"]))
        hv = hypervolume(points, DIRECTIONS, REFERENCE) if points else 0.0
        if cum <= budget:
            at_budget = max(at_budget, hv)
        if reached is None and hv >= target > 0:
            reached = cum
    return (reached / budget if reached else None), at_budget


class _Oracle:
    """Knows the answer: stops at the first rung every trial that is not on the final front of the
    trials it is given (a bound for any rule with that first rung)."""

    def __init__(self, front: set, grace: int):
        self.front, self.grace = front, grace

    def on_result(self, trial_id, t, result):
        return "CONTINUE" if trial_id in self.front or t < self.grace else "STOP"


class _Stratum:
    """MO-ASHA's rungs with the comparison made at equal compression (issue 17): a trial reaching a rung is
    ranked on Δm alone among the trials recorded there whose (known, exact) compression is within
    ``width / 2`` of its own; it continues when first or best of that stratum or within its top
    ``1/rf``. Measured and rejected (bench/RESULTS.md): kept here, not in the sweep."""

    def __init__(self, grace: int, rf: float, steps: int, width: float):
        from sweeps.ray import MOAshaRungs

        self.rungs = MOAshaRungs(list(OBJECTIVES), list(DIRECTIONS), grace, steps, rf)
        self.rf, self.width = rf, width

    def on_result(self, trial_id, t, result):
        from sweeps.ray import decide

        rung = self.rungs._rung(trial_id, float(t))
        if rung is None:
            return "CONTINUE"
        c, d = result["compression"], result["delta_m"]
        same = [(v[1],) for v in self.rungs.recorded[rung].values() if abs(v[0] - c) <= self.width / 2]
        self.rungs.recorded[rung][trial_id] = (c, d)
        return decide(same, (d,), ["maximize"], self.rf).action


def make_rule(kind: str, grace: int, rf: float, steps: int, trials: list[dict]):
    from sweeps.ray import MOAshaRungs
    from sweeps.pareto import pareto_front

    rungs = MOAshaRungs(list(OBJECTIVES), list(DIRECTIONS), grace, steps, rf)
    if kind == "mo_asha":
        return rungs
    if kind == "strict":   # keep_non_dominated: false
        return MOAshaRungs(list(OBJECTIVES), list(DIRECTIONS), grace, steps, rf, keep_non_dominated=False)
    if kind == "delta_m":   # one objective: ASHA's rule on delta_m alone (over ranks)
        return MOAshaRungs(["delta_m"], ["maximize"], grace, steps, rf)
    if kind.startswith("stratum"):
        return _Stratum(grace, rf, steps, float(kind[len("stratum"):]))
    if kind == "oracle":
        full = [i for i, t in enumerate(trials) if t["values"] is not None]
        front = {full[j] for j in pareto_front([tuple(trials[i]["values"]) for i in full], DIRECTIONS)}
        return _Oracle(front, grace)
    raise ValueError(kind)


VARIANTS = [  # (rule, grace, reduction factor, trials); "strict": keep_non_dominated false
    ("mo_asha", 15, 3, 48), ("mo_asha", 5, 3, 48), ("mo_asha", 5, 3, 32), ("mo_asha", 5, 4, 48),
    ("mo_asha", 5, 2, 48), ("mo_asha", 10, 2, 48), ("mo_asha", 10, 3, 48),
    ("strict", 15, 3, 48), ("strict", 5, 3, 48), ("strict", 5, 3, 40), ("strict", 5, 3, 32),
    ("strict", 5, 4, 48), ("strict", 5, 2, 48), ("strict", 10, 2, 48), ("strict", 5, 9, 48),
    ("delta_m", 5, 3, 48), ("delta_m", 15, 3, 48),
    ("oracle", 5, 3, 48), ("oracle", 5, 3, 24), ("oracle", 15, 3, 24),
    ("stratum0.05", 5, 3, 48), ("stratum0.1", 5, 3, 48), ("stratum0.2", 5, 3, 48),
]


def _finite_or_none(x: float) -> float | None:
    """JSON has no infinity: a fraction never reached is null."""
    return x if math.isfinite(x) else None


def _median(xs: list[float]) -> float:
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def replay_files(paths: list[str], concurrency: int) -> dict:
    from sweeps.pareto import hypervolume, pareto_front

    rows = []
    for path in paths:
        d = json.loads(Path(path).read_text())
        cfg, trials = d["config"], d["trials"]
        steps, n_random = cfg["steps"], cfg["random"]
        base = trials[:n_random]
        target = hypervolume([tuple(t["values"]) for t in base if t["values"]], DIRECTIONS, REFERENCE)
        budget = steps * len(base)
        row = {"file": Path(path).name, "seed": cfg["seed"], "random_hv": target, "random_steps": budget,
               "variants": {}}
        for kind, grace, rf, n in VARIANTS:
            subset = trials[:n]
            done = replay(subset, steps, make_rule(kind, grace, rf, steps, subset), concurrency)
            frac, at_budget = fraction_to_reach(done, target, budget)
            # front members lost: trials on the front of the n trained in full that the rule stopped
            front = set(pareto_front([tuple(t["values"]) for t in subset], DIRECTIONS))
            lost = len(front & {d["i"] for d in done if not d["complete"]})
            row["variants"][f"{kind} g{grace} rf{rf:g} n{n}"] = {"fraction": frac, "hv_at_budget": at_budget,
                                                                "front": len(front), "front_lost": lost}
        rows.append(row)
    rows.sort(key=lambda r: r["seed"])
    names = list(rows[0]["variants"]) if rows else []
    medians = {}
    for name in names:
        fr = sorted(math.inf if r["variants"][name]["fraction"] is None else r["variants"][name]["fraction"]
                    for r in rows)
        gain = sorted(r["variants"][name]["hv_at_budget"] / r["random_hv"] - 1 for r in rows if r["random_hv"] > 0)
        medians[name] = {"median": _finite_or_none(_median(fr)), "min": _finite_or_none(fr[0]),
                         "max": _finite_or_none(fr[-1]), "goal_met": sum(f <= 1 / 3 for f in fr),
                         "reached": sum(math.isfinite(f) for f in fr),
                         "hv_gain_at_budget": ({"median": _median(gain), "min": gain[0], "max": gain[-1]}
                                               if gain else None),
                         "front_lost": [r["variants"][name].get("front_lost") for r in rows],
                         "front": [r["variants"][name].get("front") for r in rows]}
    return {"concurrency": concurrency, "rows": rows, "summary": medians}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("collect", help="run one full-budget random sweep and keep every learning curve")
    c.add_argument("--trials", type=int, default=48)
    c.add_argument("--random", type=int, default=24, help="the random sweep replays compare with: the first N")
    c.add_argument("--steps", type=int, default=45)
    c.add_argument("--every", type=int, default=5, help="evaluation interval (the finest rung possible)")
    c.add_argument("--size", type=int, default=32)
    c.add_argument("--train-size", type=int, default=256)
    c.add_argument("--test-size", type=int, default=64)
    c.add_argument("--concurrency", type=int, default=2)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--out", default=None)
    r = sub.add_parser("replay", help="replay stopping rules on collected curves")
    r.add_argument("files", nargs="+")
    r.add_argument("--concurrency", type=int, default=2)
    r.add_argument("--out", default=None)
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    if args.cmd == "collect":
        path = write_result("asha_curves", collect(args), args.out)
        print(f"wrote {path}")
        return 0
    res = replay_files(args.files, args.concurrency)
    n = len(res["rows"])
    print("| rule | fraction to random hv: median | range | ≤ 1/3 | reached | hv at random budget vs random: median "
          "| range | front members stopped (of the front) |")
    print("|---|---|---|---|---|---|---|---|")
    def frac(x):
        return "not reached" if x is None else f"{x:.2f}"

    for name, s in res["summary"].items():
        g = s["hv_gain_at_budget"]
        gains = f"{g['median']:+.1%} | {g['min']:+.1%} to {g['max']:+.1%}" if g else "— | —"
        print(f"| {name} | {frac(s['median'])} | {frac(s['min'])}–{frac(s['max'])} | {s['goal_met']}/{n} "
              f"| {s['reached']}/{n} | {gains} | {', '.join(f'{a}/{b}' for a, b in zip(s['front_lost'], s['front']))} |")
    print(f"wrote {write_result('asha_replay', res, args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
