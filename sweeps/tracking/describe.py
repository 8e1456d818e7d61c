"""The text MLflow's UI shows for a sweep: the sweep run's description (markdown: what was swept, the
baseline, the budgets, the Pareto front with each trial linked, the trial ``best`` picks, what to do
next), a trial run's one-line description, and each metric's direction and unit.

MLflow keeps a run's description in the tag ``mlflow.note.content`` and renders it as markdown on the
run's *Overview*. Pure functions of trial records (:func:`sweeps.tracking.load_trials`); no mlflow
import. Links are relative hash routes (:func:`sweeps.tracking.links.run_route`), so they work on
whatever host and port the UI is served.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from .links import artifact_route, run_route, runs_filter_route

NOTE_TAG = "mlflow.note.content"
MAX_NOTE = 7800            # MLflow keeps tag values up to 8000 characters

_UNITS = {
    "delta_m": "% vs the dense baseline",
    "compression": "share of the dense model's prunable weights removed",
    "sparsity": "share of prunable weights that are zero",
    "mean": "degrees", "median": "degrees",
    "abs_err": "depth units", "rmse": "depth units", "rel_err": "ratio",
    "nonzero_params": "weights", "wall_time_s": "s",
}
def metric_unit(key: str) -> str:
    """What a metric's number is: ``%``, ``degrees``, ``fraction 0-1``, ... ("" when not known); the
    fractions are the metrics whose range (``disparse_core.metric_keys.metric_range``) is [0, 1]."""
    from disparse_core.metric_keys import metric_range
    last = str(key).rsplit(".", 1)[-1]
    if last in _UNITS:
        return _UNITS[last]
    try:
        return "fraction 0-1" if metric_range(key) == (0.0, 1.0) else ""
    except ValueError:        # a metric nobody declared
        return ""


def metric_direction(key: str, direction: str | None = None) -> str:
    """``higher`` or ``lower`` (is better): ``direction`` (``maximize``/``minimize``) when given, else
    from the metric's name; ``?`` for a metric nobody declared."""
    if direction:
        return "higher" if direction.lower().startswith("max") else "lower"
    from disparse_core.metric_keys import higher_is_better
    try:
        return "higher" if higher_is_better(key) else "lower"
    except ValueError:
        return "?"


def metric_label(key: str, direction: str | None = None) -> str:
    """``delta_m (higher is better, % vs the dense baseline)``."""
    better = metric_direction(key, direction)
    unit = metric_unit(key)
    return f"{key} ({better} is better{', ' + unit if unit else ''})"


def _num(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "" if value is None else str(value)
    if not math.isfinite(value):
        return str(value)
    return f"{value:.4g}"


def _param(rec: Mapping[str, Any], key: str) -> str:
    """A param as the table shows it: a number at 4 significant digits (the CSV keeps all of them)."""
    text = str((rec.get("params") or {}).get(key, ""))
    try:
        value = float(text)
    except ValueError:
        return text
    return text if value.is_integer() and "e" not in text.lower() else _num(value)


def _arrow(direction: str) -> str:
    return "↑" if metric_direction("", direction) == "higher" else "↓"


def trial_name(rec: Mapping[str, Any]) -> str:
    return str(rec.get("trial_key") or rec.get("run_name") or rec["run_id"][:8])


def trial_line(rec: Mapping[str, Any], on_front: bool) -> str:
    """A trial run's description: method, sparsity (target, achieved), cutoff, Δm, front or not."""
    config, metrics = rec.get("config") or {}, rec.get("metrics") or {}
    parts = [str(config.get("method", "?"))]
    if config.get("sparsity") is not None:
        achieved = metrics.get("sparsity")
        parts.append(f"sparsity {_num(config['sparsity'])}"
                     + (f" (achieved {_num(achieved)})" if isinstance(achieved, (int, float)) else ""))
    cutoff = config.get("cutoff")
    parts.append("cutoff " + ("none (fully shared)" if cutoff is None else str(cutoff)))
    if isinstance(metrics.get("delta_m"), (int, float)) and math.isfinite(metrics["delta_m"]):
        parts.append(f"Δm {metrics['delta_m']:+.2f} %")
    status = rec.get("status")
    if status == "FAILED":
        parts.append(f"failed: {rec.get('failure') or 'no reason recorded'}")
    elif status == "RUNNING":
        parts.append("running")
    elif rec.get("early_stopped"):
        parts.append("early-stopped (never on the front)")
    else:
        parts.append("on the Pareto front" if on_front else "not on the Pareto front")
    retries = rec.get("retries") or 0
    if retries:
        parts.append(f"after {retries} attempt{'s' if retries > 1 else ''} that did not count (tags "
                     "disparse.attempt_N)")
    return " · ".join(parts)


def _link(rec: Mapping[str, Any], experiment_id: str) -> str:
    return f"[{trial_name(rec)}]({run_route(experiment_id, rec['run_id'])})"


def sweep_note(info: Mapping[str, Any], records: Sequence[Mapping[str, Any]], front: Sequence[Mapping[str, Any]],
               eligible: Sequence[Mapping[str, Any]], param_keys: Sequence[str], chosen: Any,
               baseline: Mapping[str, Any] | None, state: str) -> str:
    """The sweep run's description (markdown, at most :data:`MAX_NOTE` characters).

    ``info``: ``sweep_id``, ``experiment_id``, ``run_id`` (the sweep run), ``space_file``, ``methods``,
    ``trials``, ``concurrency``, ``sampler``, ``objectives``, ``directions``, ``budgets`` (texts),
    ``results_dir``, ``hypervolume`` (or None). ``chosen``: ``(record, meets)``, None, or why not. ``baseline``: a
    baseline record (``run_id``, ``metrics``) or None. ``state``: running / finished / interrupted.
    """
    eid = info["experiment_id"]
    objectives, dirs = list(info["objectives"]), list(info["directions"])
    done = sum(r["status"] in ("FINISHED", "FAILED") for r in records)
    running = sum(r["status"] == "RUNNING" for r in records)
    head = [f"## Sweep `{info['sweep_id']}`: {state}, {done} of {info.get('trials') or '?'} trials done"
            + (f", {running} running" if running else "")]
    methods = ", ".join(info.get("methods") or []) or "?"
    head.append(f"**Swept**: space `{info.get('space_file') or '?'}`; method(s) {methods}; "
                f"{info.get('trials') or '?'} trials, {info.get('concurrency') or '?'} at a time; "
                f"sampler {info.get('sampler') or '?'}.  ")
    head.append("**Objectives**: " + "; ".join(f"{o} {_arrow(d)} ({metric_label(o, d).split('(', 1)[1]}"
                                               for o, d in zip(objectives, dirs)) + ".  ")
    budgets = list(info.get("budgets") or [])
    head.append("**Budgets**: " + (", ".join(f"`{b}`" for b in budgets) if budgets else "none declared")
                + (" (relative ones against the dense baseline; `tune.py best` applies them)." if budgets else "."))
    if baseline and baseline.get("run_id"):
        head.append(f"**Baseline**: [dense run]({run_route(eid, baseline['run_id'])}), the reference of Δm "
                    f"and of relative budgets (its metrics: the table at the end).")
    elif baseline:
        head.append("**Baseline**: the baseline metrics the trials were given.")
    elif info.get("baseline_expected", True) and state.startswith("running"):
        head.append("**Baseline**: the dense baseline is being trained or looked up (Δm and relative "
                    "budgets refer to it).")
    else:
        head.append("**Baseline**: none (the space turns it off, or it did not finish).")

    hv = info.get("hypervolume")
    front_head = [f"### Pareto front: {len(front)} of {len(eligible)} fully trained trials"
                  + (f" (hypervolume {_num(hv)})" if isinstance(hv, (int, float)) else "")]
    cols = ["trial", *[f"{o} {_arrow(d)}" for o, d in zip(objectives, dirs)], *param_keys]
    rows = [f"| {_link(r, eid)} | " + " | ".join([*[_num(r['metrics'].get(o)) for o in objectives],
                                                  *[_param(r, k) for k in param_keys]])
            + " |" for r in front]

    chose = ["### The trial `best` picks"]
    if isinstance(chosen, str):
        chose.append(chosen)
    elif chosen is None:
        chose.append("None yet: no fully trained trial." if budgets else
                     "The sweep declares no budgets: `tune.py best --budget METRIC=LIMIT` chooses.")
    else:
        rec, meets = chosen
        m = rec["metrics"]
        what = ("the sparsest fully trained trial within every budget" if meets else
                "no trial meets every budget; the closest (smallest total shortfall)")
        chose.append(f"{_link(rec, eid)}: {what}: compression {_num(m.get('compression'))}, "
                     f"Δm {_num(m.get('delta_m'))} %.")

    resume = f"`python tune.py --resume --results-dir {info['results_dir']}`" if info.get("results_dir") else \
        "`python tune.py --resume --results-dir <the sweep's results folder>`"
    mine = 'tags.`disparse.sweep_id` = "%s"' % info["sweep_id"]
    on_front = runs_filter_route(eid, mine + ' and tags.`disparse.pareto` = "true"')
    rows_of = [f"[the front]({on_front})"]
    if budgets:
        within = runs_filter_route(eid, mine + ' and tags.`disparse.within_budgets` = "true"')
        rows_of.append(f"[the trials within the budgets]({within})")
    nxt = ["### Next",
           "- As rows of the runs table, sorted by compression: " + ", ".join(rows_of) + ".",
           f"- Choose under other budgets: `python tune.py best --sweep {info['sweep_id']} --budget seg.miou=-2%`"
           " (any metric, `=-2%` relative or `'>=0.75'` absolute).",
           f"- Continue an interrupted sweep: {resume} (finished trials are not run again).",
           f"- Plots: [pareto_front.html]({artifact_route(eid, info['run_id'], 'pareto_front.html')}) and the "
           "PNGs in *Artifacts* (written when the sweep ends); every trial's metrics: the link on its name."]
    failed = [r for r in records if r["status"] == "FAILED"]
    if failed:
        nxt.append("- Failed: " + "; ".join(f"{_link(r, eid)} ({r.get('failure') or 'no reason'})"
                                           for r in failed[:5]) + (" ..." if len(failed) > 5 else ""))

    legend = []
    if baseline and baseline.get("metrics"):
        legend = ["### Metrics (direction, unit, dense baseline)", "| metric | better | unit | baseline |",
                  "|---|---|---|---|"]
        legend += [f"| {k} | {metric_direction(k)} | {metric_unit(k)} | {_num(v)} |"
                   for k, v in sorted(baseline["metrics"].items())
                   if "." in k or k in ("compression", "sparsity", "delta_m")]

    def render(n_rows: int) -> str:
        table = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols), *rows[:n_rows]]
        if len(rows) > n_rows:
            table.append(f"\n... {len(rows) - n_rows} more: `pareto_front.csv` or `tune.py pareto`")
        body = front_head + ([""] + table if rows else ["", "No fully trained trial yet."])
        blocks = ["\n".join(head), "\n".join(body), "\n".join(chose), "\n".join(nxt)]
        if legend:
            blocks.append("\n".join(legend))
        return "\n\n".join(blocks)

    n = len(rows)
    text = render(n)
    while len(text) > MAX_NOTE and n > 0:        # a long front: fewer rows (the CSV has them all)
        n = max(0, n - max(1, n // 4))
        text = render(n)
    return text[:MAX_NOTE]
