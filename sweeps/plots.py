"""Pictures of a sweep: Pareto PNGs (matplotlib, Agg, imported lazily), an interactive self-contained
HTML front (inline SVG + a little vanilla JS; no CDN, no network) and a trial's mask-IoU bar chart
(drawn by ``disparse_core.iou``).

Inputs are trial records as :func:`sweeps.tracking.load_trials` returns them (``run_id``, ``trial_key``,
``params``, ``metrics``); nothing here talks to MLflow.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from .objectives import normalize_directions

__all__ = ["task_primary_metrics", "key_params", "pareto_pngs", "mask_iou_png"]

# Primary metric of a task when the workload cannot tell (first present wins).
_PRIMARY_ORDER = ("miou", "acc", "mean", "abs_err", "pixel_acc", "median", "rel_err", "within_30",
                  "within_22", "within_11", "delta1", "delta2", "delta3")
_NOT_TASKS = {"mask_iou", "dynamic", "gradual", "loss", "best", "hypervolume", "time"}
# Params worth showing next to a front point: whatever varies between trials (what the sweep chose, these
# first, in this order), then these when constant, for context (see :func:`key_params`).
_KEY_PARAMS = ("method", "sparsity", "criterion", "cutoff", "gradual.prune_steps", "gradual.interval",
               "dynamic.alpha0", "dynamic.delta_t", "dynamic.t_end_frac", "dynamic.decay", "dynamic.grow",
               "dynamic.erk_power", "lr", "steps")
_MAX_KEY_PARAMS = 10
# Params that differ between trials without describing them (never shown).
_NOISE_PARAMS = ("seed", "checkpoint_dir", "export_path")
_NOISE_PREFIX = "baseline_metrics"


def _pyplot():
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    return plt


def _higher(direction: str) -> bool:
    return direction == "maximize"


def _direction_of(key: str, objectives: Sequence[str], directions: Sequence[str]) -> str:
    if key in objectives:
        return directions[list(objectives).index(key)]
    return normalize_directions([key], None)[0]


def task_primary_metrics(records: Sequence[Mapping[str, Any]],
                         objectives: Sequence[str] = ()) -> dict[str, str]:
    """``{task: "task.metric"}``: an objective of the task if there is one, else the workload's primary
    metric (``disparse_core.data.workload_tasks``) when it can be read, else the first of a fixed order."""
    keys: set[str] = set()
    for rec in records:
        keys.update(k for k in (rec.get("metrics") or {}) if "." in k)
    by_task: dict[str, list[str]] = {}
    for key in sorted(keys):
        task, metric = key.rsplit(".", 1)
        if task.split(".")[0] in _NOT_TASKS or "." in task:
            continue
        by_task.setdefault(task, []).append(metric)
    declared = _workload_primaries(records)
    out = {}
    for task, metrics in by_task.items():
        chosen = next((o for o in objectives if o.startswith(task + ".") and o.rsplit(".", 1)[1] in metrics),
                      None)
        if chosen is None and declared.get(task) in metrics:
            chosen = f"{task}.{declared[task]}"
        if chosen is None:
            ranked = sorted(metrics, key=lambda m: _PRIMARY_ORDER.index(m) if m in _PRIMARY_ORDER else 99)
            chosen = f"{task}.{ranked[0]}"
        out[task] = chosen
    return out


def _workload_primaries(records: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    workload = next(((r.get("config") or {}).get("workload") for r in records
                     if (r.get("config") or {}).get("workload")), None)
    if not workload:
        return {}
    try:
        from disparse_core.data import workload_tasks
        tasks = workload_tasks(workload)
    except Exception:
        return {}
    out = {}
    try:
        items = tasks.items() if isinstance(tasks, Mapping) else ((getattr(t, "name", None), t) for t in tasks)
        for name, info in items:
            primary = info.get("primary") if isinstance(info, Mapping) else getattr(info, "primary", None)
            if name and isinstance(primary, str):
                out[str(name)] = primary.rsplit(".", 1)[-1]
    except Exception:
        return {}
    return out


def key_params(records: Sequence[Mapping[str, Any]], among: Sequence[Mapping[str, Any]] | None = None,
               limit: int | None = _MAX_KEY_PARAMS) -> list[str]:
    """Params that describe ``records`` at a glance: every param that varies over ``among`` (default
    ``records``; e.g. all fully trained trials of the sweep, so that a front of one still shows what was
    sampled), the usual ones (:data:`_KEY_PARAMS`) first in their order, then the rest sorted; then the
    usual ones that are constant, for context. A param some trials lack varies (trials with no params at
    all do not count); one none of ``records`` has is left out (an empty column). Seeds, paths and
    baseline metrics are left out too. At most ``limit`` keys (``None``: all)."""
    pool = [rec for rec in (among or records) if rec.get("params")]     # none: a run with no params
    values: dict[str, set[str]] = {}
    count: dict[str, int] = {}
    for rec in pool:
        for k, v in rec["params"].items():
            values.setdefault(k, set()).add(v)
            count[k] = count.get(k, 0) + 1
    keys = set().union(*((rec.get("params") or {}).keys() for rec in records))   # shown: some row has it
    keys = {k for k in keys if k not in _NOISE_PARAMS and not k.startswith(_NOISE_PREFIX)}
    varying = {k for k in keys if len(values.get(k, ())) > 1 or count.get(k, 0) < len(pool)}
    usual = [k for k in _KEY_PARAMS if k in keys]
    ordered = ([k for k in usual if k in varying] + sorted(varying.difference(_KEY_PARAMS))
               + [k for k in usual if k not in varying])
    return ordered if limit is None else ordered[:limit]


def _label(key: str, direction: str) -> str:
    return f"{key} ({'higher' if _higher(direction) else 'lower'} is better)"


def _safe_file(key: str) -> str:
    return re.sub(r"[^\w.-]+", "_", key)


def pareto_pngs(records: Sequence[Mapping[str, Any]], front_ids: Iterable[str], objectives: Sequence[str],
                directions: Sequence[str], out_dir: str | Path) -> list[Path]:
    """``pareto_compression_vs_<task.metric>.png`` per task (its primary metric) and
    ``pareto_compression_vs_delta_m.png`` when Δm was measured. Red, joined: the front of the two plotted
    metrics (:func:`plane_front`, each in its direction: what that task can have at each compression);
    ringed: the members of the sweep's front over all its objectives (``front_ids``); the rest grey.
    The x axis is ``compression`` (or the first objective when compression was not recorded)."""
    out_dir = Path(out_dir)
    front_ids = set(front_ids)
    records = list(records)
    if not records:
        return []
    have = set.intersection(*(set(r.get("metrics") or {}) for r in records))
    x_key = "compression" if "compression" in have else objectives[0]
    y_keys = [k for k in task_primary_metrics(records, objectives).values() if k in have]
    if "delta_m" in have:
        y_keys.append("delta_m")
    y_keys = [k for k in y_keys if k != x_key]
    plt = _pyplot()
    made = []
    for y_key in y_keys:
        fig, ax = plt.subplots(figsize=(6.4, 4.6), dpi=110)
        try:
            dirs = [_direction_of(x_key, objectives, directions), _direction_of(y_key, objectives, directions)]
            on_plane = plane_front(records, x_key, y_key, dirs)
            rest = [r for r in records if r["run_id"] not in on_plane]
            front = sorted((r for r in records if r["run_id"] in on_plane), key=lambda r: r["metrics"][x_key])
            ringed = [r for r in records if r["run_id"] in front_ids]
            if rest:
                ax.scatter([r["metrics"][x_key] for r in rest], [r["metrics"][y_key] for r in rest],
                           s=22, c="#9aa0a6", label="trials", zorder=2)
            if front:
                xs = [r["metrics"][x_key] for r in front]
                ys = [r["metrics"][y_key] for r in front]
                ax.plot(xs, ys, color="#d93025", lw=0.8, alpha=0.5, zorder=3)
                ax.scatter(xs, ys, s=40, c="#d93025", edgecolors="black", linewidths=0.5,
                           label=f"Pareto front of {x_key} and {y_key}", zorder=4)
            if ringed and set(front_ids) != on_plane:
                ax.scatter([r["metrics"][x_key] for r in ringed], [r["metrics"][y_key] for r in ringed],
                           s=110, facecolors="none", edgecolors="#1a73e8", linewidths=1.2,
                           label="on the sweep's front (all objectives)", zorder=5)
            ax.set_xlabel(_label(x_key, dirs[0]))
            ax.set_ylabel(_label(y_key, dirs[1]))
            ax.set_title(f"{x_key} vs {y_key}  ({len(front)} on this front of {len(records)})", fontsize=10)
            ax.grid(True, alpha=0.3)
            ax.legend(loc="best", fontsize=8)
            fig.tight_layout()
            path = out_dir / f"pareto_{_safe_file(x_key)}_vs_{_safe_file(y_key)}.png"
            fig.savefig(path)
            made.append(path)
        finally:
            plt.close(fig)
    return made


def plane_front(records: Sequence[Mapping[str, Any]], x_key: str, y_key: str,
                directions: Sequence[str]) -> set[str]:
    """Run ids of the trials no other trial beats on both ``x_key`` and ``y_key`` (each in its direction);
    trials without finite values for both are left out."""
    from .pareto import pareto_front

    usable = [r for r in records if all(isinstance((r.get("metrics") or {}).get(k), (int, float))
                                        and math.isfinite(r["metrics"][k]) for k in (x_key, y_key))]
    points = [(r["metrics"][x_key], r["metrics"][y_key]) for r in usable]
    return {usable[i]["run_id"] for i in pareto_front(points, list(directions))} if points else set()


def mask_iou_png(mask_iou: Mapping[str, Any], path: str | Path, title: str | None = None,
                 watershed: Mapping[str, Any] | None = None) -> Path | None:
    """Bar chart of per-layer mask IoU (``disparse_core.iou.plot_mask_iou``), the watershed highlighted
    when there is one number per layer; nested values (``{layer: {pair: iou}}``) are drawn flattened
    (``layer/pair``), without a watershed. None when nothing to plot; a drawing error is raised.

    ``watershed``: the trial's own ``{layer, cutoff, starved}`` (``disparse_core.iou.watershed_summary``,
    found with layer sizes in ``run_trial``), drawn as it is, starved layers marked; without it the
    watershed is found from the IoU values alone (no sizes: small layers are not skipped).

    Safe off the main thread (the sweep tracker draws these in a background worker): the core draws on a
    Figure of its own, never through pyplot's global state.
    """
    from disparse_core.iou import find_watershed, plot_mask_iou

    values = _flat_numbers(mask_iou)
    if not values:
        return None
    layer, starved = None, []
    if isinstance(watershed, Mapping):
        layer = watershed.get("layer") if watershed.get("layer") in values else None
        starved = [n for n in watershed.get("starved") or () if n in values]
    elif all(isinstance(v, (int, float)) for v in mask_iou.values()):
        try:
            layer = find_watershed(values)
        except ValueError:          # fewer than two usable layers: no watershed to show
            pass
    heading = "Mask IoU of the tasks' keep-sets per shared layer" + (f" - {title}" if title else "")
    return Path(plot_mask_iou(values, path, watershed=layer, title=heading, starved=starved))


def _flat_numbers(tree: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    out = {}
    for k, v in tree.items():
        if isinstance(v, Mapping):
            out.update(_flat_numbers(v, f"{prefix}{k}/"))
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            out[f"{prefix}{k}"] = float(v)
    return out
