"""Fidelity benchmark (issue 20): does DiSparse keep a multitask net better than the entangled methods a
user already has, compared like with like?

Three parts, every number from this one run (nothing is compared across runs):

1. **methods** — dense, random, magnitude (IMP), snip, disparse_static, rigl, disparse_dynamic on every
   built-in generated workload, at each sparsity, for each seed, with the trial defaults (the scoring and
   allotment defaults are the same for every one-shot criterion).
2. **options** — each static criterion (random, snip, disparse_static) under each scoring/allotment
   option set (``score_on`` × ``allotment``, plus the reference's global ranking without the layer
   floor), on the first workload at the options sparsity.
3. **loss weights** — how each criterion's masks move when the loss weights change (the workload's
   reference weights against equal weights), scored at init without training: the IoU of the two masks
   and the thinnest layer each task keeps.

Per trial: every task metric, achieved sparsity, min layer density, which tasks were cut off (a layer
the task uses keeps less than 1 % of the target density, i.e. empty or next to empty), and Δm against
the dense run of the same workload and seed. Paired per-seed differences with a 95 % t-interval:
DiSparse static − SNIP under the same options, DiSparse dynamic − RigL, DiSparse static − random at the
same allotment.

    python bench/fidelity.py                 # the full run (~45 min on 2 cores), writes
                                             # bench/results/fidelity.{json,md} and docs/images/fidelity.png
    python bench/fidelity.py --quick         # seconds: a smoke run of every part
    python bench/fidelity.py ... --resume    # after an interruption: train only what the journal lacks

Trials run in ``--jobs`` worker processes (default 2) with one torch thread each.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, RESULTS_DIR, write_result  # noqa: E402

METHODS = ("dense", "random", "magnitude", "snip", "disparse_static", "rigl", "disparse_dynamic")
STATIC = ("random", "snip", "disparse_static")
WORKLOADS = ("cues", "scenes", "digits")
#: option sets of part 2: name -> trial config keys (every static criterion gets the same set)
OPTION_SETS = {
    "global/weights": {"allotment": "global", "score_on": "weights"},
    "global/weights/no-floor": {"allotment": "global", "score_on": "weights", "layer_floor": 0.0},
    "global/reinit": {"allotment": "global", "score_on": "reinit"},
    "global/reinit/no-floor": {"allotment": "global", "score_on": "reinit", "layer_floor": 0.0},
    "layer/weights": {"allotment": "layer", "score_on": "weights"},
    "layer/reinit": {"allotment": "layer", "score_on": "reinit"},
    "iterative/weights": {"allotment": "iterative", "score_on": "weights"},
    "iterative/reinit": {"allotment": "iterative", "score_on": "reinit"},
    "erk/weights": {"allotment": "erk", "score_on": "weights"},
    "erk/reinit": {"allotment": "erk", "score_on": "reinit"},
    "uniform/weights": {"allotment": "uniform", "score_on": "weights"},
    "uniform/reinit": {"allotment": "uniform", "score_on": "reinit"},
}
#: fixed per workload for this benchmark (written down before any comparison; see docs/fidelity.md)
WORKLOAD_SETTINGS = {
    "cues": {"steps": 1500},                       # its design's length (docs/data.md); 32 px, 4096/8192
    "scenes": {"image_size": 32},                  # 32 px (the demo uses 64) to fit the time budget
    "digits": {},
}
QUICK = {"steps": 4, "train_size": 64, "test_size": 32, "score_batches": 1, "batch_size": 8}
CUT_OFF = 0.01          # a layer a task uses keeping < 1 % of the target density cuts the task off
# two-sided 95 % Student t quantiles by degrees of freedom
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
         10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 19: 2.093, 24: 2.064,
         29: 2.045}


def t975(df: int) -> float:
    return _T975.get(df) or _T975[max(k for k in _T975 if k <= df)] if df >= 1 else float("nan")


# ----------------------------------------------------------------------------------------- trials


def _config(workload: str, seed: int, method: str, sparsity: float, options: dict, quick: bool) -> dict:
    cfg = {"workload": workload, "seed": seed, "method": method, "sparsity": sparsity,
           "num_threads": 1, **WORKLOAD_SETTINGS.get(workload, {}), **options}
    if quick:
        cfg.update(QUICK)
        if workload == "scenes":
            cfg["image_size"] = 32
    cfg["eval_every"] = cfg.get("steps", 300)           # one evaluation: the final, whole test set
    return cfg


def _run(job: dict) -> dict:
    """One trial in a worker: the record the tables read (no model kept)."""
    import warnings
    from disparse_core.trial import run_trial
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = run_trial(job["config"])
    cfg = job["config"]
    target = 0.0 if cfg["method"] == "dense" else cfg["sparsity"]
    cut = [t for t, d in result["task_min_density"].items() if d < CUT_OFF * (1.0 - target)]
    metrics = {k: float(v) for k, v in result.items() if "." in k and isinstance(v, (int, float))}
    return {**{k: job[k] for k in ("part", "workload", "seed", "method", "sparsity", "option")},
            "metrics": metrics, "achieved_sparsity": float(result["sparsity"]),
            "min_layer_density": float(result["min_layer_density"]),
            "task_min_density": result["task_min_density"], "cut_off": cut,
            "watershed": result.get("watershed"), "mask_iou": result.get("mask_iou"),
            "wall_s": time.perf_counter() - t0}


def _effective_key(config: dict) -> str:
    """Configs that train the same trial share a key (run once, reported under every label): the
    trial defaults filled in, and for ``random`` the options it ignores (it has no scores, and a global,
    layer or iterative ranking of random scores is the uniform allotment)."""
    from disparse_core.trial import TrialConfig
    c = TrialConfig.from_dict(config).to_dict()
    if c["method"] in ("random", "dense"):
        c["score_on"], c["score_rounds"] = "weights", 5
        c["allotment"] = c["allotment"] if c["allotment"] in ("erk", "uniform") else c["distribution"]
        c["layer_floor"] = None if c["allotment"] == "uniform" else c["layer_floor"]
    if c["method"] == "dense" or c["method"] in ("rigl", "disparse_dynamic"):
        for k in ("score_on", "allotment", "layer_floor", "score_rounds"):
            c[k] = None
    if c["allotment"] != "iterative":
        c["score_rounds"] = None
    return json.dumps(c, sort_keys=True, default=str)


def _read_journal(path: Path) -> dict:
    """``{key: record}`` of the trials a journal holds (a torn last line is ignored)."""
    out = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            out[entry["key"]] = entry["record"]
    return out


def plan(workloads, seeds, sparsities, options_sparsity, option_sets, quick,
         methods=METHODS[1:], method_options=None) -> list[dict]:
    """Every trial to run, dense runs first (they are the Δm reference of their workload and seed)."""
    jobs = []

    def add(part, workload, seed, method, sparsity, option, keys):
        jobs.append({"part": part, "workload": workload, "seed": seed, "method": method,
                     "sparsity": sparsity, "option": option,
                     "config": _config(workload, seed, method, sparsity, keys, quick)})
        jobs[-1]["key"] = _effective_key(jobs[-1]["config"])

    for w in workloads:
        for s in seeds:
            add("methods", w, s, "dense", 0.0, "default", {})
    for w in workloads:
        for sp in sparsities:
            for s in seeds:
                for m in methods:
                    add("methods", w, s, m, sp, "default", dict(method_options or {}))
    for name in option_sets:
        for s in seeds:
            for m in STATIC:
                add("options", workloads[0], s, m, options_sparsity, name, OPTION_SETS[name])
    return jobs


# ------------------------------------------------------------------------------------- analysis


def _delta_m(metrics: dict, base: dict) -> float:
    from disparse_core.metrics import delta_m
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return float(delta_m(metrics, base))
        except ValueError:
            return float("nan")


def add_delta_m(records: list[dict]) -> None:
    dense = {(r["workload"], r["seed"]): r["metrics"] for r in records if r["method"] == "dense"}
    for r in records:
        base = dense.get((r["workload"], r["seed"]))
        r["delta_m"] = _delta_m(r["metrics"], base) if base else float("nan")


def _mean_sd(values):
    values = [v for v in values if math.isfinite(v)]
    if not values:
        return float("nan"), float("nan"), 0
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return statistics.mean(values), sd, len(values)


def paired(a: dict, b: dict) -> dict:
    """Mean paired difference ``a − b`` over the seeds both have, with its 95 % t-interval."""
    seeds = sorted(set(a) & set(b))
    diffs = [a[s] - b[s] for s in seeds if math.isfinite(a[s]) and math.isfinite(b[s])]
    n = len(diffs)
    if n == 0:
        return {"n": 0, "mean": float("nan"), "low": float("nan"), "high": float("nan"), "wins": 0}
    mean = statistics.mean(diffs)
    half = t975(n - 1) * statistics.stdev(diffs) / math.sqrt(n) if n > 1 else float("nan")
    return {"n": n, "mean": mean, "low": mean - half, "high": mean + half,
            "wins": sum(d > 0 for d in diffs), "diffs": diffs}


def by_seed(records, **match) -> dict:
    return {r["seed"]: r["delta_m"] for r in records if all(r.get(k) == v for k, v in match.items())}


def comparisons(records: list[dict], workloads, sparsities, options_sparsity, option_sets) -> list[dict]:
    out = []
    for w in workloads:
        for sp in sparsities:
            m = dict(part="methods", workload=w, sparsity=sp)
            for label, a, b in (("disparse_static − snip", "disparse_static", "snip"),
                                ("disparse_dynamic − rigl", "disparse_dynamic", "rigl"),
                                ("disparse_static − random", "disparse_static", "random"),
                                ("disparse_dynamic − random", "disparse_dynamic", "random")):
                out.append({"workload": w, "sparsity": sp, "option": "default", "comparison": label,
                            **paired(by_seed(records, method=a, **m), by_seed(records, method=b, **m))})
    for name in option_sets:
        m = dict(part="options", workload=workloads[0], sparsity=options_sparsity, option=name)
        for label, a, b in (("disparse_static − snip", "disparse_static", "snip"),
                            ("disparse_static − random", "disparse_static", "random")):
            out.append({"workload": workloads[0], "sparsity": options_sparsity, "option": name,
                        "comparison": label,
                        **paired(by_seed(records, method=a, **m), by_seed(records, method=b, **m))})
    return out


# ---------------------------------------------------------------------------------- loss weights


def loss_weight_masks(workload: str, seeds, sparsity: float, quick: bool) -> list[dict]:
    """Masks at init under the workload's reference loss weights and under equal weights, per criterion
    (default options): IoU of the two masks and each task's thinnest layer under each weighting."""
    import warnings
    import torch
    from disparse_core.data import build_workload
    from disparse_core.models import build_model
    from disparse_core.sparsify import sparsify
    from disparse_core.tasks import build_losses
    from disparse_core.trial import TrialConfig
    out = []
    for seed in seeds:
        base = _config(workload, seed, "snip", sparsity, {}, quick)
        cfg = TrialConfig.from_dict(base)
        kw = {k: v for k, v in (("image_size", cfg.image_size), ("train_size", cfg.train_size),
                                ("test_size", cfg.test_size)) if v is not None}
        wl = build_workload(workload, seed=seed, **kw)
        reference = {t: wl.loss_weights.get(t, 1.0) for t in wl.tasks}
        equal = {t: 1.0 for t in wl.tasks}
        loader = wl.train_loader(cfg.batch_size, seed=2 * seed + 1)
        batches = []
        for batch in loader:
            batches.append(batch)
            if len(batches) == cfg.score_batches:
                break
        losses = build_losses(wl)
        for method in STATIC:
            masks, thin = {}, {}
            for label, weights in (("reference", reference), ("equal", equal)):
                torch.manual_seed(seed)
                model = build_model(cfg.arch, wl.task_channels, seed=seed, task_kinds=wl.task_kinds,
                                    in_channels=wl.in_channels)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    res = sparsify(model, batches, losses, sparsity=sparsity, method=method,
                                   loss_weights=weights, seed=seed, score_batches=cfg.score_batches,
                                   allotment=cfg.allotment, score_on=cfg.score_on,
                                   floor=cfg.layer_floor, rounds=cfg.score_rounds,
                                   erk_power=cfg.dynamic.erk_power)
                masks[label] = res.masks
                thin[label] = {t: min((float(res.masks[n].float().mean()) for n, o in res.ownership.items()
                                       if t in o), default=1.0) for t in wl.tasks}
            inter = sum(int((masks["reference"][n] & masks["equal"][n]).sum()) for n in masks["equal"])
            union = sum(int((masks["reference"][n] | masks["equal"][n]).sum()) for n in masks["equal"])
            out.append({"workload": workload, "seed": seed, "method": method, "sparsity": sparsity,
                        "reference_weights": reference, "mask_iou_reference_vs_equal": inter / union,
                        "task_min_density": thin})
    return out


# ------------------------------------------------------------------------------------------ report


def _distinct(records) -> list[dict]:
    """One record per trained trial (a trial shared by several labels counts once)."""
    seen, out = set(), []
    for r in records:
        key = (r["workload"], r["seed"], r["method"], r["sparsity"], r["wall_s"])
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def _fmt(x, digits=2):
    return "—" if not isinstance(x, (int, float)) or not math.isfinite(x) else f"{x:+.{digits}f}"


def markdown(records, comps, weight_rows, meta) -> str:
    lines = [f"# Fidelity benchmark ({meta['date']})", "",
             f"Machine: {meta['machine']['cpu']}, {meta['machine']['cores']} cores, torch "
             f"{meta['machine']['torch']}, numpy {meta['machine'].get('numpy')}, Python "
             f"{meta['machine']['python']}; {meta['jobs']} worker "
             f"processes of 1 thread; {meta['trained']} distinct trials, "
             f"{sum(r['wall_s'] for r in _distinct(records)) / 60:.1f} min of trial wall time in all "
             f"(≈ {sum(r['wall_s'] for r in _distinct(records)) / 60 / max(meta['jobs'], 1):.1f} min on "
             f"{meta['jobs']} workers). Seeds {meta['seeds']}. "
             + (f"Methods part with the option set {meta['with_options']} "
                f"({OPTION_SETS[meta['with_options']]}) for every one-shot criterion. "
                if meta.get("with_options") else "")
             + f"Trial defaults unless named (see docs/fidelity.md); Δm in points against the dense run "
             f"of the same workload and seed (higher is better).", ""]
    lines += ["## Δm by method (mean ± sd over seeds; cut: trials that cut a task off)", ""]
    for w in meta["workloads"]:
        lines += [f"### {w}", "", "| method | " + " | ".join(f"{s:g}" for s in meta["sparsities"]) + " |",
                  "|---|" + "---|" * len(meta["sparsities"])]
        for m in [m for m in METHODS[1:] if any(r["method"] == m for r in records)]:
            cells = []
            for sp in meta["sparsities"]:
                rs = [r for r in records if r["part"] == "methods" and r["workload"] == w
                      and r["method"] == m and r["sparsity"] == sp]
                mean, sd, n = _mean_sd([r["delta_m"] for r in rs])
                cut = sum(bool(r["cut_off"]) for r in rs)
                cells.append(f"{_fmt(mean)} ± {sd:.2f}" + (f" (cut {cut}/{n})" if cut else ""))
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        dense = [r for r in records if r["workload"] == w and r["method"] == "dense"]
        keys = sorted({k for r in dense for k in r["metrics"]})
        lines += ["", "Dense metrics: " + ", ".join(
            f"{k} {statistics.mean(r['metrics'][k] for r in dense):.4g}" for k in keys), ""]
    lines += ["## Paired differences of Δm (95 % t-interval over seeds; wins = seeds where the first is better)",
              "", "| workload | sparsity | options | comparison | mean | 95 % interval | wins |",
              "|---|---|---|---|---|---|---|"]
    for c in comps:
        lines.append(f"| {c['workload']} | {c['sparsity']:g} | {c['option']} | {c['comparison']} | "
                     f"{_fmt(c['mean'])} | [{_fmt(c['low'])}, {_fmt(c['high'])}] | {c['wins']}/{c['n']} |")
    opt = [r for r in records if r["part"] == "options"]
    if opt:
        lines += ["", f"## Option sets on {meta['workloads'][0]} at {meta['options_sparsity']:g} "
                  f"(Δm mean ± sd; min layer density; cut-off trials)", "",
                  "| options | " + " | ".join(STATIC) + " |", "|---|" + "---|" * len(STATIC)]
        for name in meta["option_sets"]:
            cells = []
            for m in STATIC:
                rs = [r for r in opt if r["option"] == name and r["method"] == m]
                mean, sd, n = _mean_sd([r["delta_m"] for r in rs])
                dens = min((r["min_layer_density"] for r in rs), default=float("nan"))
                cut = sum(bool(r["cut_off"]) for r in rs)
                cells.append(f"{_fmt(mean)} ± {sd:.2f}; min {dens:.4f}" + (f"; cut {cut}/{n}" if cut else ""))
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if weight_rows:
        lines += ["", "## Loss weights: masks at init, reference weights vs equal weights", "",
                  "| method | IoU of the two masks (mean, min) | thinnest layer per task, reference weights (min over seeds) |",
                  "|---|---|---|"]
        for m in STATIC:
            rows = [r for r in weight_rows if r["method"] == m]
            ious = [r["mask_iou_reference_vs_equal"] for r in rows]
            tasks = sorted(rows[0]["task_min_density"]["reference"]) if rows else []
            thin = ", ".join(f"{t} {min(r['task_min_density']['reference'][t] for r in rows):.4f}"
                             for t in tasks)
            lines.append(f"| {m} | {statistics.mean(ious):.3f}, {min(ious):.3f} | {thin} |")
    lines += watershed_lines(records, meta)
    return "\n".join(lines) + "\n"


def iou_trend(records) -> dict:
    """Mean IoU per shared layer over the records (model order), and the rank correlation of IoU with
    depth (Spearman's rho over the layers; negative: IoU falls with depth)."""
    layers: dict[str, list[float]] = {}
    for r in records:
        for name, v in (r.get("mask_iou") or {}).items():
            if isinstance(v, (int, float)) and math.isfinite(v) and name not in (r["watershed"] or {}).get("starved", []):
                layers.setdefault(name, []).append(float(v))
    means = {n: statistics.mean(v) for n, v in layers.items()}
    names = list(means)
    if len(names) < 3:
        return {"layers": means, "rho": float("nan")}
    order = sorted(range(len(names)), key=lambda i: means[names[i]])
    rank = {names[i]: k for k, i in enumerate(order)}
    d2 = sum((i - rank[n]) ** 2 for i, n in enumerate(names))
    n = len(names)
    return {"layers": means, "rho": 1.0 - 6.0 * d2 / (n * (n * n - 1))}


def _option_watershed_lines(records, meta) -> list[str]:
    """The options part: per option set, the seeds' watershed layers and the IoU-vs-depth trend."""
    rows = [r for r in records if r["part"] == "options" and r["method"] == "disparse_static"
            and r.get("watershed")]
    if not rows:
        return []
    lines = ["", "## Mask IoU and watershed under each option set (disparse_static, options part)", "",
             "| options | watershed layer per seed | starved layers per seed | IoU vs depth (Spearman rho) |",
             "|---|---|---|---|"]
    for name in meta["option_sets"]:
        rs = sorted((r for r in rows if r["option"] == name), key=lambda r: r["seed"])
        if rs:
            lines.append(f"| {name} | " + ", ".join(str(r["watershed"]["layer"]).removesuffix(".weight")
                                                   for r in rs)
                         + " | " + ", ".join(str(len(r["watershed"]["starved"])) for r in rs)
                         + f" | {iou_trend(rs)['rho']:+.2f} |")
    return lines


def watershed_lines(records, meta) -> list[str]:
    """Per workload and sparsity (disparse_static, default options): each seed's watershed and cutoff,
    how many seeds agree with the most common one, and whether IoU falls with depth."""
    lines = _option_watershed_lines(records, meta)
    shed = [r for r in records if r.get("watershed") and r["method"] == "disparse_static"
            and r["part"] == "methods"]
    if not shed:
        return lines
    lines += ["", "## Mask IoU and watershed (disparse_static, default options)", "",
             "| workload | sparsity | watershed layer per seed | cutoff per seed | seeds on the most common | "
             "IoU vs depth (Spearman rho over layers, starved left out) |", "|---|---|---|---|---|---|"]
    for w in meta["workloads"]:
        for sp in meta["sparsities"]:
            rs = sorted((r for r in shed if r["workload"] == w and r["sparsity"] == sp), key=lambda r: r["seed"])
            if not rs:
                continue
            found = [r["watershed"]["layer"] for r in rs]
            top = max(set(found), key=found.count)
            trend = iou_trend(rs)
            lines.append(f"| {w} | {sp:g} | " + ", ".join(str(x) for x in found) + " | "
                         + ", ".join(str(r["watershed"]["cutoff"]) for r in rs)
                         + f" | {found.count(top)}/{len(found)} ({top}) | {trend['rho']:+.2f} |")
    lines += ["", "Mean IoU per shared layer (first sparsity): " + ", ".join(
        f"{n.removesuffix('.weight')} {v:.2f}" for n, v in iou_trend(
            [r for r in shed if r["workload"] == meta["workloads"][0]
             and r["sparsity"] == meta["sparsities"][0]])["layers"].items())] if meta["sparsities"] else []
    return lines


def plot(records, meta, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    ws = meta["workloads"]
    fig = Figure(figsize=(4.2 * len(ws), 3.6), dpi=100)
    FigureCanvasAgg(fig)
    for i, w in enumerate(ws):
        ax = fig.add_subplot(1, len(ws), i + 1)
        for m in [m for m in METHODS[1:] if any(r["method"] == m for r in records)]:
            xs, ys, es = [], [], []
            for sp in meta["sparsities"]:
                mean, sd, n = _mean_sd([r["delta_m"] for r in records if r["part"] == "methods"
                                        and r["workload"] == w and r["method"] == m and r["sparsity"] == sp])
                if n:
                    xs.append(sp), ys.append(mean), es.append(sd)
            style = "-" if m.startswith("disparse") else "--"
            ax.errorbar(xs, ys, yerr=es, label=m, linestyle=style, marker="o", capsize=3)
        ax.set_title(w)
        ax.set_xlabel("sparsity")
        ax.set_ylabel("Δm vs dense (points, higher is better)")
        ax.axhline(0.0, color="grey", linewidth=0.8)
    fig.axes[-1].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


# -------------------------------------------------------------------------------------------- main


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run of every part (seconds)")
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--sparsities", default="0.8,0.9,0.95")
    parser.add_argument("--options-sparsity", type=float, default=0.9)
    parser.add_argument("--option-sets", default=",".join(OPTION_SETS))
    parser.add_argument("--parts", default="methods,options,weights")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--with-options", default=None, metavar="OPTION_SET",
                        help="run the methods part with this option set (OPTION_SETS) instead of the "
                             "trial defaults, e.g. to evaluate a set the options part selected")
    parser.add_argument("--methods", default=",".join(METHODS[1:]),
                        help="the sparse methods of the methods part (dense always runs)")
    parser.add_argument("--analyse-only", action="store_true",
                        help="train nothing: the tables from the journal's trials (implies --resume)")
    parser.add_argument("--resume", action="store_true",
                        help="reuse the trials already in the journal (<out>.jsonl) and train the rest")
    parser.add_argument("--out", default=str(RESULTS_DIR / "fidelity.json"))
    parser.add_argument("--plot", default=str(ROOT / "docs" / "images" / "fidelity.png"))
    args = parser.parse_args(argv)
    args.resume = args.resume or args.analyse_only
    methods = [m for m in args.methods.split(",") if m]
    if [m for m in methods if m not in METHODS[1:]]:
        parser.error(f"--methods: expected some of {', '.join(METHODS[1:])}, got {args.methods!r}")
    workloads = [w for w in args.workloads.split(",") if w]
    sparsities = [float(s) for s in args.sparsities.split(",") if s]
    option_sets = [o for o in args.option_sets.split(",") if o]
    parts = set(args.parts.split(","))
    unknown = [o for o in option_sets if o not in OPTION_SETS]
    if unknown:
        parser.error(f"--option-sets: unknown {unknown[0]!r} (known: {', '.join(OPTION_SETS)})")
    if args.quick:
        workloads, sparsities = workloads[:1], sparsities[:1]
        option_sets = option_sets[:2]
        args.seeds = min(args.seeds, 2)
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    if args.with_options is not None and args.with_options not in OPTION_SETS:
        parser.error(f"--with-options: unknown {args.with_options!r} (known: {', '.join(OPTION_SETS)})")
    jobs = plan(workloads, seeds, sparsities if "methods" in parts else [], args.options_sparsity,
                option_sets if "options" in parts else [], args.quick, methods,
                OPTION_SETS.get(args.with_options, {}))
    started = time.perf_counter()
    for w in workloads:                    # generate and cache the data once, before the workers start
        from disparse_core.data import build_workload
        for s in seeds:
            kw = {k: v for k, v in _config(w, s, "dense", 0.0, {}, args.quick).items()
                  if k in ("image_size", "train_size", "test_size")}
            build_workload(w, seed=s, **kw)
    unique = list({job["key"]: job for job in reversed(jobs)}.values())[::-1]   # first of each key
    # every finished trial is appended to the journal at once: an interrupted run loses nothing, and a
    # rerun with the same journal trains only what is missing (same code, same keys)
    journal = Path(args.out).with_suffix(".jsonl")
    journal.parent.mkdir(parents=True, exist_ok=True)
    trained = _read_journal(journal) if args.resume else {}
    if not args.resume and journal.exists():
        journal.unlink()
    todo = [] if args.analyse_only else [job for job in unique if job["key"] not in trained]
    print(f"{len(unique)} distinct trials ({len(jobs)} labelled), {len(unique) - len(todo)} from "
          f"{journal.name}, {len(todo)} to train", flush=True)
    ctx = get_context("spawn")
    with ProcessPoolExecutor(max_workers=max(1, args.jobs), mp_context=ctx) as pool:
        futures = {pool.submit(_run, job): job for job in todo}
        for done, future in enumerate(as_completed(futures), 1):
            job, record = futures[future], future.result()
            trained[job["key"]] = record
            with journal.open("a") as fh:
                fh.write(json.dumps({"key": job["key"], "record": record}, default=float) + "\n")
            print(f"[{time.perf_counter() - started:7.1f}s] {done}/{len(todo)} {record['workload']} "
                  f"{record['method']} {record['sparsity']:g} {record['option']} seed {record['seed']} "
                  f"({record['wall_s']:.1f}s)", flush=True)
    records = [{**trained[job["key"]], **{k: job[k] for k in ("part", "option")}} for job in jobs
               if job["key"] in trained]
    add_delta_m(records)
    weight_rows = (loss_weight_masks(workloads[0], seeds, args.options_sparsity, args.quick)
                   if "weights" in parts else [])
    comps = comparisons(records, workloads, sparsities if "methods" in parts else [],
                        args.options_sparsity, option_sets if "options" in parts else [])
    meta = {"workloads": workloads, "seeds": seeds, "sparsities": sparsities, "trained": len(unique),
            "with_options": args.with_options,
            "options_sparsity": args.options_sparsity, "option_sets": option_sets, "jobs": args.jobs,
            "quick": args.quick, "elapsed_s": time.perf_counter() - started}
    path = write_result("fidelity", {**meta, "records": records, "comparisons": comps,
                                     "loss_weights": weight_rows}, args.out)
    full = json.loads(path.read_text())
    md = markdown(records, comps, weight_rows, {**meta, "date": full["date"], "machine": full["machine"]})
    path.with_suffix(".md").write_text(md)
    if "methods" in parts and args.plot:
        plot(records, meta, Path(args.plot))
    print(md)
    print(f"wrote {path} and {path.with_suffix('.md')}" + (f" and {args.plot}" if args.plot else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
