"""The analysis and report of bench/fidelity.py: the compared methods and option sets, Δm against
the dense run of the same seed, paired per-seed differences with a 95 % t-interval, the markdown tables
(methods, paired differences, option sets, loss-weight mask movement, mask IoU and watershed) and the
Δm-against-sparsity plot. Pure functions of the trial records; nothing here trains.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

METHODS = ("dense", "random", "magnitude", "snip", "disparse_static", "rigl", "disparse_dynamic")
STATIC = ("random", "snip", "disparse_static")
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

# two-sided 95 % Student t quantiles by degrees of freedom
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
         10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 19: 2.093, 24: 2.064,
         29: 2.045}


def t975(df: int) -> float:
    return _T975.get(df) or _T975[max(k for k in _T975 if k <= df)] if df >= 1 else float("nan")


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


