"""Issue 17, items 3-4: samplers and stopping rules on a surrogate of the demo sweep, many seeds, seconds each.

A real sweep of the search-efficiency benchmark costs minutes per sampler and seed on this machine's
2 cores. This script replaces the training by a **surrogate fitted on recorded trials**, so that every
sampler Optuna ships can be compared on the same objective with enough seeds to tell them apart:

* The records: ``bench/results/asha_curves_seed{0..5}.json`` (bench/asha_replay.py ``collect``): 288 real
  trials of the demo space (scenes, small net width 16, 32 px, 256/64 images, 45 steps, DiSparse dynamic),
  the random sampler's configurations, with (compression, Δm) every 5 steps.
* ``compression`` is not modelled: it is computed from the configuration (:func:`sweeps.known.known_metrics`,
  the same function a sweep uses; within 4.3e-6 of every recorded value).
* ``Δm`` at each evaluation step is a Nadaraya-Watson kernel regression of the recorded curves over the
  six sampled parameters, scaled to [0, 1] (sparsity, log lr, cutoff, alpha0, the delta_t choice, log of
  the normal loss weight), bandwidth chosen by leave-one-out error of the final Δm; plus **noise**: one
  standard normal draw per trial (seeded by the bench seed and the trial's number) times the
  leave-one-out residual spread at that step, so a trial that is lucky early stays lucky (training noise is
  correlated along a curve). The leave-one-out error of the final Δm is printed and stored.

Two experiments (``--seeds``, default 10 seeds 0-9):

* ``samplers``: every sampler trains ``--trials`` (30) trials in full; the hypervolume (reference
  (0, -100 %), as bench/search_bench.py) after 30, paired per seed against the space's default (TPE,
  10 random start-up trials, independent): mean ratio and a paired t 95 % interval.
* ``stopping``: trial-steps, with 2 simulated workers (time = steps), until the hypervolume of the fully
  trained trials reaches the full random sweep's (the random sampler, 24 trials x 45 steps = 1,080
  trial-steps, same surrogate noise), over 1,080; each method runs up to ``--max-trials`` (48) trials.

    python bench/sampler_bench.py --out bench/results/sampler_bench.json
"""

from __future__ import annotations

import argparse
import glob
import heapq
import json
import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from _common import write_result  # noqa: E402

REFERENCE = (0.0, -100.0)
DIRECTIONS = ("maximize", "maximize")
STEPS, EVERY = 45, 5
EVALS = list(range(EVERY, STEPS + 1, EVERY))
BASE = {"workload": "scenes", "tasks": ["seg", "normal"], "arch": "small", "width": 16, "image_size": 32,
        "steps": STEPS, "batch_size": 16, "optimizer": "adam", "method": "disparse_dynamic",
        "dynamic": {"grow": "exact", "decay": "cosine", "t_end_frac": 0.75}, "seed": 0}
DELTA_T = (10, 25, 50)


# ------------------------------------------------------------------------------------------ the space
def suggest(trial) -> dict:
    """The demo space (search_spaces/dynamic.yaml), as its define-by-run sampler asks it."""
    return {"sparsity": trial.suggest_float("sparsity", 0.5, 0.95),
            "lr": trial.suggest_float("lr", 1e-4, 3e-3, log=True),
            "cutoff": trial.suggest_int("cutoff", 4, 8),
            "dynamic.alpha0": trial.suggest_float("dynamic.alpha0", 0.1, 0.6),
            "dynamic.delta_t": trial.suggest_categorical("dynamic.delta_t", list(DELTA_T)),
            "loss_weights.normal": trial.suggest_float("loss_weights.normal", 0.5, 20, log=True)}


def features(p: dict) -> np.ndarray:
    return np.array([(p["sparsity"] - 0.5) / 0.45, math.log(p["lr"] / 1e-4) / math.log(30), (p["cutoff"] - 4) / 4,
                     (p["dynamic.alpha0"] - 0.1) / 0.5, DELTA_T.index(int(p["dynamic.delta_t"])) / 2,
                     math.log(p["loss_weights.normal"] / 0.5) / math.log(40)])


def compression(p: dict) -> float:
    from sweeps.known import known_metrics

    cfg = json.loads(json.dumps(BASE))
    cfg.update(sparsity=p["sparsity"], lr=p["lr"], cutoff=int(p["cutoff"]),
               loss_weights={"normal": p["loss_weights.normal"]})
    cfg["dynamic"].update(alpha0=p["dynamic.alpha0"], delta_t=int(p["dynamic.delta_t"]))
    return known_metrics(cfg)["compression"]


# -------------------------------------------------------------------------------------- the surrogate
class Surrogate:
    """Δm curves of the demo space from the recorded trials (module docstring)."""

    def __init__(self, paths: list[str], noise: float = 1.0):
        trials = [t for p in sorted(paths) for t in json.loads(Path(p).read_text())["trials"] if t["values"]]
        self.x = np.stack([features(t["params"]) for t in trials])
        self.y = np.array([[t["curve"][str(s)][1] for s in EVALS] for t in trials])
        self.n = len(trials)
        best = None
        for h in (0.08, 0.1, 0.12, 0.15, 0.2, 0.25, 0.3, 0.4):
            pred = self._loo(h)
            err = float(np.sqrt(np.mean((pred[:, -1] - self.y[:, -1]) ** 2)))
            if best is None or err < best[0]:
                best = (err, h, pred)
        self.loo_rmse, self.h, pred = best
        self.resid_sd = noise * np.sqrt(np.mean((pred - self.y) ** 2, axis=0))   # per evaluation step
        self.final_sd = float(np.std(self.y[:, -1]))

    def _weights(self, d2: np.ndarray, h: float) -> np.ndarray:
        return np.exp(-0.5 * d2 / h ** 2)

    def _loo(self, h: float) -> np.ndarray:
        d2 = ((self.x[:, None, :] - self.x[None, :, :]) ** 2).sum(-1)
        w = self._weights(d2, h)
        np.fill_diagonal(w, 0.0)
        return (w @ self.y) / w.sum(1, keepdims=True).clip(1e-300)

    def curve(self, p: dict, z: float) -> list[float]:
        d2 = ((self.x - features(p)) ** 2).sum(-1)
        w = self._weights(d2, self.h)
        mean = (w @ self.y) / max(w.sum(), 1e-300)
        return list(mean + z * self.resid_sd)


# -------------------------------------------------------------------------------------- the samplers
def make_sampler(name: str, seed: int, trials: int):
    import optuna

    startup = min(10, max(2, trials // 3))       # the space's default (sweeps/space/validate.py)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "random": lambda: optuna.samplers.RandomSampler(seed=seed),
            "tpe": lambda: optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup),
            "tpe_multivariate": lambda: optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup,
                                                                   multivariate=True),
            "tpe_multivariate_group": lambda: optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup,
                                                                         multivariate=True, group=True),
            "gp": lambda: optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup),
            "nsga2": lambda: optuna.samplers.NSGAIISampler(seed=seed, population_size=min(50, max(4, trials // 4))),
        }[name]()


def _noise(seed: int, number: int) -> float:
    return float(np.random.default_rng([seed, number, 17]).standard_normal())


def hypervolume(points) -> float:
    from sweeps.pareto import hypervolume as hv

    return hv(points, DIRECTIONS, REFERENCE) if points else 0.0


# ------------------------------------------------------------------------------------- the simulation
def simulate(sur: Surrogate, sampler_name: str, seed: int, n_trials: int, rule=None, concurrency: int = 2,
             noise_seed: int | None = None) -> list[dict]:
    """A sweep on the surrogate: ``concurrency`` workers, the sampler asked when a worker frees (Optuna
    ask/tell), ``rule.on_result(i, step, {compression, delta_m})`` at each evaluation before the last.
    Returns the trials in completion order: ``{"steps", "complete", "values"}``."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(directions=list(DIRECTIONS), sampler=make_sampler(sampler_name, seed, n_trials))
    noise_seed = seed if noise_seed is None else noise_seed
    live, queue, done, seq = {}, [], [], 0

    def start(now: float) -> None:
        nonlocal seq
        if len(live) + len(done) >= n_trials:
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trial = study.ask()
            p = suggest(trial)
        comp = compression(p)
        curve = sur.curve(p, _noise(noise_seed, trial.number))
        live[trial.number] = (trial, comp, curve)
        heapq.heappush(queue, (now + EVALS[0], seq, trial.number, 0))
        seq += 1

    for _ in range(concurrency):
        start(0.0)
    while queue:
        now, _, num, k = heapq.heappop(queue)
        trial, comp, curve = live[num]
        step, last = EVALS[k], k + 1 == len(EVALS)
        action = "CONTINUE"
        if not last and rule is not None:
            action = rule.on_result(num, step, {"compression": comp, "delta_m": curve[k]})
        if last or action == "STOP":
            del live[num]
            if last:
                study.tell(trial, [comp, curve[k]])
            else:
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            done.append({"steps": step, "complete": last, "values": (comp, curve[k]) if last else None})
            start(now)
        else:
            heapq.heappush(queue, (now + EVERY, seq, num, k + 1))
            seq += 1
    return done


def to_reach(done: list[dict], target: float, budget: int) -> tuple[float | None, float, float]:
    """(trial-steps to ``target`` over ``budget`` or None, hypervolume at ``budget``, final hypervolume)."""
    cum, points, reached, at_budget = 0, [], None, 0.0
    for d in done:
        cum += d["steps"]
        if d["complete"]:
            points.append(d["values"])
        hv = hypervolume(points)
        if cum <= budget:
            at_budget = hv
        if reached is None and hv >= target > 0:
            reached = cum
    return (reached / budget if reached else None), at_budget, hypervolume(points)


# ------------------------------------------------------------------------------------------- statistics
def paired_interval(ratios: list[float]) -> dict:
    """Mean of ``ratio - 1`` and its paired-t 95 % interval (scipy's t quantile), wins, n."""
    from scipy import stats

    d = np.array(ratios) - 1.0
    n = len(d)
    mean, sd = float(d.mean()), float(d.std(ddof=1)) if n > 1 else 0.0
    half = float(stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)) if n > 1 else math.inf
    return {"mean": mean, "low": mean - half, "high": mean + half, "wins": int((d > 0).sum()), "n": n,
            "p": float(stats.ttest_1samp(d, 0.0).pvalue) if n > 1 and sd > 0 else None}


def median_range(xs: list[float | None]) -> dict:
    vals = sorted(math.inf if x is None else x for x in xs)
    n = len(vals)
    med = vals[n // 2] if n % 2 else (vals[n // 2 - 1] + vals[n // 2]) / 2
    fin = lambda x: None if not math.isfinite(x) else round(x, 4)  # noqa: E731
    return {"median": fin(med), "min": fin(vals[0]), "max": fin(vals[-1]),
            "reached": sum(math.isfinite(v) for v in vals), "n": n,
            "third": sum(v <= 1 / 3 for v in vals), "half": sum(v <= 1 / 2 for v in vals)}


# ------------------------------------------------------------------------------------------ experiments
SAMPLERS = ("random", "tpe", "tpe_multivariate", "tpe_multivariate_group", "gp", "nsga2")


def run_samplers(sur: Surrogate, seeds: list[int], trials: int, names=SAMPLERS) -> dict:
    rows = {}
    for name in names:
        t0 = time.process_time()
        hvs = [to_reach(simulate(sur, name, s, trials), 0.0, 0)[2] for s in seeds]
        rows[name] = {"hv": hvs, "cpu_s": time.process_time() - t0}
        print(f"{name}: hv after {trials}: " + " ".join(f"{h:.2f}" for h in hvs), flush=True)
    base = rows["tpe"]["hv"]
    for name, r in rows.items():
        r["vs_tpe"] = paired_interval([h / b for h, b in zip(r["hv"], base)])
        r["vs_random"] = paired_interval([h / b for h, b in zip(r["hv"], rows["random"]["hv"])])
    return rows


def make_rule(kind: str):
    from sweeps.ray import MOAshaRungs

    if kind == "none":
        return None
    grace, rf = {"mo_asha_g5": (5, 3), "mo_asha_g15": (15, 3), "mo_asha_g5_rf4": (5, 4)}[kind.split("+")[0]]
    return MOAshaRungs(["compression", "delta_m"], list(DIRECTIONS), grace, STEPS, rf)


def run_stopping(sur: Surrogate, seeds: list[int], methods: list[str], max_trials: int) -> dict:
    out = {}
    targets = {}
    for s in seeds:
        rnd = simulate(sur, "random", s, 24)
        targets[s] = to_reach(rnd, 0.0, 0)[2]
    budget = 24 * STEPS
    for method in methods:
        sampler, rule = method.split("/")
        fr, at, final = [], [], []
        for s in seeds:
            f, a, h = to_reach(simulate(sur, sampler, s, max_trials, make_rule(rule)), targets[s], budget)
            fr.append(f)
            at.append(a / targets[s] - 1)
            final.append(h / targets[s] - 1)
        out[method] = {"fraction": fr, "summary": median_range(fr), "hv_at_budget_vs_random": at,
                       "final_hv_vs_random": final}
        m = out[method]["summary"]
        print(f"{method}: to random hv median {m['median']} range {m['min']}-{m['max']}, reached {m['reached']}/"
              f"{m['n']}, <=1/3 {m['third']}, <=1/2 {m['half']}; final hv vs random "
              f"{np.median(final):+.1%} ({min(final):+.1%} to {max(final):+.1%})", flush=True)
    return {"random_hv": targets, "budget": budget, "methods": out}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--curves", nargs="+", default=sorted(glob.glob(str(Path(__file__).parent / "results" /
                                                                      "asha_curves_seed*.json"))))
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--trials", type=int, default=30)
    p.add_argument("--max-trials", type=int, default=48)
    p.add_argument("--samplers", nargs="*", default=list(SAMPLERS), choices=SAMPLERS)
    p.add_argument("--stopping", nargs="*", default=["random/none", "random/mo_asha_g5", "tpe/mo_asha_g5"],
                   help="SAMPLER/RULE, RULE in none, mo_asha_g5, mo_asha_g15, mo_asha_g5_rf4")
    p.add_argument("--noise", type=float, default=1.0, help="scale of the per-trial noise (1: the LOO residual)")
    p.add_argument("--out", default=None)
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    if not args.curves:
        raise SystemExit("--curves: no recorded curves found; expected bench/results/asha_curves_seed*.json")
    sur = Surrogate(args.curves, args.noise)
    print(f"surrogate: {sur.n} recorded trials, bandwidth {sur.h}, leave-one-out RMSE of the final delta_m "
          f"{sur.loo_rmse:.2f} points (spread of the recorded values {sur.final_sd:.2f})", flush=True)
    seeds = list(range(args.seeds))
    res = {"surrogate": {"trials": sur.n, "bandwidth": sur.h, "loo_rmse_final": sur.loo_rmse,
                         "final_sd": sur.final_sd, "noise": args.noise, "resid_sd": sur.resid_sd.tolist(), "curves": args.curves},
           "seeds": seeds, "trials": args.trials}
    if args.samplers:
        res["samplers"] = run_samplers(sur, seeds, args.trials, args.samplers)
    if args.stopping:
        res["stopping"] = run_stopping(sur, seeds, args.stopping, args.max_trials)
    print(f"wrote {write_result('sampler_bench', res, args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
