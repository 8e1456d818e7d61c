"""The checks of a generated workload's design (docs/data.md, "Built-in generated workloads: ``cues``").

    python bench/workload_check.py                      # every check, 3 seeds (about 10 min on 2 cores)
    python bench/workload_check.py --only grad          # gradient scales at init only (seconds)

Runs only what the design allows while building a workload: gradient scales at init, dense runs, and
``method: random`` at sparsity 0.9 (uniform per layer) for the difficulty check. Prints a table and
writes ``bench/results/workload_check_<workload>.json`` (with the machine and library versions).

1. gradient scale of task t: ``‖∂(λ_t L_t)/∂θ_shared‖`` (θ_shared: the prunable weights of the fully
   shared backbone, the trial's init), mean over 4 training batches, then over the seeds;
2. dense learns every task: each metric against a trivial predictor (all background, median depth,
   majority class) and chance;
3. hard enough: Δm of random-90 % against the dense run of the same seed;
4. test noise: bootstrap std over test items (500 resamples) of each dense metric relative to its
   value (×100, Δm points), and the same divided by the metric's weight in Δm;
5. time: wall time of each random-90 % trial (``run_trial`` defaults + the workload).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from disparse_core.data import build_workload, workload_loss_weights  # noqa: E402
from disparse_core.metrics import delta_m, make_meter  # noqa: E402
from disparse_core.models import build_model  # noqa: E402
from disparse_core.tasks import build_losses  # noqa: E402
from disparse_core.trial import TrialConfig, trial_execution  # noqa: E402
from disparse_core._train_loop import TrialRun  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_STEPS = {"cues": 1500}          # docs/data.md: the length the cues design is checked at
BOOTSTRAP = 500


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version(), "threads": torch.get_num_threads(),
            "load_avg_at_start": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}


# ------------------------------------------------------------------------------- 1. gradient scales

def grad_scales(workload_name: str, seed: int, weights: dict[str, float], batches: int = 4,
                batch_size: int = 16) -> dict[str, float]:
    w = build_workload(workload_name, seed=seed)
    torch.manual_seed(seed)
    model = build_model("small", w.task_channels, task_kinds=w.task_kinds, in_channels=w.in_channels,
                        seed=seed)
    model.train()
    shared = [m.weight for m in model.shared.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    losses = build_losses(w)
    norms = {t: [] for t in w.tasks}
    loader = iter(w.train_loader(batch_size, seed=2 * seed))
    for _ in range(batches):
        images, targets = next(loader)
        outputs = model(images)
        for task in w.tasks:
            loss = weights.get(task, 1.0) * losses[task](outputs[task], targets[task])
            grads = torch.autograd.grad(loss, shared, retain_graph=True)
            norms[task].append(float(torch.sqrt(sum((g * g).sum() for g in grads))))
    return {t: statistics.fmean(v) for t, v in norms.items()}


# ----------------------------------------------------------------------------- 2-5. trained runs

def train(workload_name: str, method: str, seed: int, weights: dict[str, float], extra: dict):
    """``(result dict, trained model, workload)`` of one ``run_trial``-equivalent run."""
    cfg = TrialConfig.from_dict({"workload": workload_name, "method": method, "sparsity": 0.9,
                                 "distribution": "uniform", "seed": seed, "loss_weights": weights,
                                 **extra})
    start, cpu = time.perf_counter(), time.process_time()
    with trial_execution(cfg) as device:
        trial = TrialRun(cfg, device, None)
        result = trial.run()
    result["wall_s"] = time.perf_counter() - start
    result["cpu_s"] = time.process_time() - cpu          # other processes on the machine inflate wall_s
    return result, trial.model, trial.workload


@torch.no_grad()
def per_item_stats(model, workload) -> dict[str, np.ndarray]:
    """Per test item, the sums each metric is made of (so the test split can be resampled)."""
    model.eval()
    stats: dict[str, list] = {t: [] for t in workload.tasks}
    for images, targets in workload.test_loader(64):
        outputs = model(images)
        for task, info in workload.tasks.items():
            out, tgt = outputs[task], targets[task]
            if info.kind == "segmentation":
                c = info.num_classes
                pred = out.argmax(1)
                idx = (tgt * c + pred).view(len(tgt), -1)
                conf = torch.zeros(len(tgt), c * c, dtype=torch.int64)
                conf.scatter_add_(1, idx, torch.ones_like(idx))
                stats[task].append(conf.numpy())
            elif info.kind == "depth":
                pred, gt = out[:, 0].double(), tgt[:, 0].double()
                diff = (pred - gt).abs()
                ratio = torch.where(pred > 0, torch.maximum(pred / gt, gt / pred.clamp_min(1e-300)),
                                    torch.full_like(pred, math.inf))
                cols = [diff.sum((1, 2)), (diff / gt).sum((1, 2))]
                cols += [(ratio < 1.25 ** k).sum((1, 2)).double() for k in (1, 2, 3)]
                cols.append(torch.full((len(gt),), float(gt[0].numel()), dtype=torch.float64))
                stats[task].append(torch.stack(cols, 1).numpy())
            else:
                stats[task].append((out.argmax(1) == tgt.view(-1)).double().numpy()[:, None])
    return {t: np.concatenate(v) for t, v in stats.items()}


def metrics_from_sums(workload, sums: dict[str, np.ndarray]) -> dict[str, float]:
    """The workload's metrics from per-task sums over (resampled) items."""
    out = {}
    for task, info in workload.tasks.items():
        s = sums[task]
        if info.kind == "segmentation":
            c = info.num_classes
            conf = s.reshape(c, c)
            tp = np.diag(conf)
            union = conf.sum(0) + conf.sum(1) - tp
            present = union > 0
            out[f"{task}.miou"] = float((tp[present] / union[present]).mean())
            out[f"{task}.pixel_acc"] = float(tp.sum() / conf.sum())
        elif info.kind == "depth":
            n = s[5]
            out.update({f"{task}.abs_err": s[0] / n, f"{task}.rel_err": s[1] / n,
                        f"{task}.delta1": s[2] / n, f"{task}.delta2": s[3] / n,
                        f"{task}.delta3": s[4] / n})
        else:
            out[f"{task}.acc"] = float(s[0])
    return out


def bootstrap_noise(workload, stats: dict[str, np.ndarray], seed: int = 0) -> dict:
    """Bootstrap std of each metric relative to its value (×100) and of Δm against the full set."""
    n = len(next(iter(stats.values())))
    full = metrics_from_sums(workload, _sums(stats, np.ones(n)))
    rng = np.random.default_rng(seed)
    samples, dms = {k: [] for k in full}, []
    for _ in range(BOOTSTRAP):
        counts = rng.multinomial(n, np.full(n, 1.0 / n)).astype(np.float64)
        m = metrics_from_sums(workload, _sums(stats, counts))
        for k, v in m.items():
            samples[k].append(v)
        dms.append(delta_m(m, full, workload.tasks))
    rel = {k: float(np.std(v) / abs(full[k]) * 100) for k, v in samples.items()}
    share = {t: len(info.metrics) * len(workload.tasks) for t, info in workload.tasks.items()}
    in_dm = {k: rel[k] / share[k.split(".")[0]] for k in rel}
    return {"relative_std_points": rel, "in_delta_m_points": in_dm, "delta_m_std": float(np.std(dms))}


def _sums(stats, counts):
    out = {}
    for task, s in stats.items():
        if s.ndim == 2 and s.shape[1] == 1:                          # accuracy: weighted mean
            out[task] = np.array([(s[:, 0] * counts).sum() / counts.sum()])
        else:
            out[task] = (s * counts[:, None]).sum(0)
    return out


def trivial_predictors(workload) -> dict[str, float]:
    """Metrics of predictors that learn nothing from pixels."""
    out = {}
    for task, info in workload.tasks.items():
        targets = [workload.test[i][1][task] for i in range(len(workload.test))]
        if info.kind == "segmentation":
            meter = make_meter(info)
            tgt = torch.stack(targets)
            meter.update(torch.zeros_like(tgt), tgt)              # all background
            out[f"{task}.miou"] = meter.compute()["miou"]
        elif info.kind == "depth":
            train = torch.stack([workload.train[i][1][task] for i in range(len(workload.train))])
            med = float(train.median())
            tgt = torch.stack(targets)
            out[f"{task}.abs_err"] = float((tgt - med).abs().mean())
        else:
            labels = torch.stack(targets).view(-1)
            out[f"{task}.acc"] = float(torch.bincount(labels).max()) / len(labels)
            out[f"{task}.chance"] = 1.0 / info.num_classes
    return out


# ------------------------------------------------------------------------------------- the run

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workload", default="cues")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--only", choices=["grad", "all"], default="all")
    ap.add_argument("--steps", type=int, default=None,
                    help="training steps (default: the workload's design length, else TrialConfig's)")
    args = ap.parse_args(argv)
    weights = workload_loss_weights(args.workload)
    steps = args.steps if args.steps is not None else DEFAULT_STEPS.get(args.workload)
    extra = {} if steps is None else {"steps": steps}
    report: dict = {"workload": args.workload, "machine": machine(), "loss_weights": weights,
                    "seeds": args.seeds, "extra_config": extra}

    per_seed = [grad_scales(args.workload, s, weights) for s in args.seeds]
    scales = {t: statistics.fmean(g[t] for g in per_seed) for t in per_seed[0]}
    report["grad_scale"] = {"per_seed": per_seed, "mean": scales,
                            "ratio_max_min": max(scales.values()) / min(scales.values()),
                            "smallest": min(scales, key=scales.get)}
    print(f"gradient scale at init (λ·L, shared backbone), mean of seeds {args.seeds}, weights {weights}")
    for t, v in scales.items():
        print(f"  {t:8s} {v:.4g}")
    print(f"  ratio largest/smallest {report['grad_scale']['ratio_max_min']:.2f}; smallest: "
          f"{report['grad_scale']['smallest']}")
    if args.only == "grad":
        return _write(report, args.workload)

    runs = {"dense": [], "random": []}
    for seed in args.seeds:
        for method in ("dense", "random"):
            result, model, w = train(args.workload, method, seed, weights, extra)
            entry = {"seed": seed, "wall_s": result["wall_s"], "cpu_s": result["cpu_s"],
                     "load_avg_after": os.getloadavg()[0],
                     "metrics": {k: v for k, v in result.items()
                                 if "." in k and k.split(".")[0] in w.tasks}}
            if method == "dense":
                entry["trivial"] = trivial_predictors(w)
                noise = bootstrap_noise(w, per_item_stats(model, w))
                entry["bootstrap"] = noise
            else:
                entry["delta_m"] = delta_m(entry["metrics"], runs["dense"][-1]["metrics"], w.tasks)
                entry["achieved_sparsity"] = result.get("sparsity")
            runs[method].append(entry)
            shown = ", ".join(f"{k} {v:.3f}" for k, v in entry["metrics"].items()
                              if k.split(".")[1] in ("miou", "abs_err", "acc"))
            print(f"{method:6s} seed {seed}: {entry['wall_s']:.1f}s ({entry['cpu_s']:.1f}s CPU) {shown}"
                  + ("" if method == "dense" else f" Δm {entry['delta_m']:+.2f}"), flush=True)
    report["runs"] = runs
    _summarise(report, w)
    return _write(report, args.workload)


def _mean_sd(values):
    values = list(values)
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _summarise(report, w) -> None:
    dense, rand = report["runs"]["dense"], report["runs"]["random"]
    keys = list(dense[0]["metrics"])
    print(f"\n{'metric':18s} {'dense mean ± sd':>18s} {'random-90% mean ± sd':>22s} {'trivial':>8s} "
          f"{'boot rel sd':>11s} {'in Δm':>6s}")
    table = {}
    for k in keys:
        dm, ds = _mean_sd(r["metrics"][k] for r in dense)
        rm, rs = _mean_sd(r["metrics"][k] for r in rand)
        triv = dense[0]["trivial"].get(k, float("nan"))
        noise = max(r["bootstrap"]["relative_std_points"][k] for r in dense)
        in_dm = max(r["bootstrap"]["in_delta_m_points"][k] for r in dense)
        table[k] = {"dense": [dm, ds], "random90": [rm, rs], "trivial": triv,
                    "bootstrap_rel_std_points_max_over_seeds": noise,
                    "bootstrap_in_delta_m_points_max_over_seeds": in_dm}
        print(f"{k:18s} {dm:9.4f} ± {ds:6.4f} {rm:13.4f} ± {rs:6.4f} {triv:8.4f} {noise:11.3f} "
              f"{in_dm:6.3f}")
    dms = [r["delta_m"] for r in rand]
    m, s = _mean_sd(dms)
    walls = [r["wall_s"] for r in rand]
    report["summary"] = {"table": table, "random90_delta_m": {"per_seed": dms, "mean": m, "sd": s},
                         "random90_wall_s": walls, "dense_wall_s": [r["wall_s"] for r in dense],
                         "delta_m_bootstrap_std": [r["bootstrap"]["delta_m_std"] for r in dense]}
    per_seed = ", ".join(f"{d:+.2f}" for d in dms)
    print(f"\nrandom-90% Δm vs dense (same seed): {m:+.2f} ± {s:.2f} (per seed {per_seed})")
    boot = ", ".join(f"{r['bootstrap']['delta_m_std']:.3f}" for r in dense)
    print(f"Δm bootstrap std (test sampling) per dense seed: {boot}")
    rw = ", ".join(f"{x:.1f}s" for x in walls)
    dw = ", ".join(f"{r['wall_s']:.1f}s" for r in dense)
    print(f"wall time of a random-90% trial: {rw}; dense: {dw}")


def _write(report, name) -> int:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"workload_check_{name}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
