"""Pictures of a sweep: Pareto PNGs (matplotlib, Agg, imported lazily), an interactive self-contained
HTML front (inline SVG + a little vanilla JS; no CDN, no network) and a trial's mask-IoU bar chart
(drawn by ``disparse_core.iou``).

Inputs are trial records as :func:`sweeps.tracking.load_trials` returns them (``run_id``, ``trial_key``,
``params``, ``metrics``); nothing here talks to MLflow.
"""

from __future__ import annotations

import html
import json
import math
import re
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from .objectives import normalize_directions

__all__ = ["task_primary_metrics", "key_params", "pareto_pngs", "pareto_html", "mask_iou_png"]

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


# --- interactive HTML ---------------------------------------------------------------------------------------

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:1.2em;color:#202124}
h1{font-size:1.25em} h2{font-size:1.05em;margin-top:1.6em}
.ctl{margin:.6em 0} .ctl label{margin-right:1em}
svg{border:1px solid #dadce0;background:#fff}
.pt{fill:#9aa0a6;stroke:#5f6368;stroke-width:.5} .pt.front{fill:#d93025;stroke:#000}
.pt:hover{stroke-width:2}
.axis{stroke:#5f6368} .tick{font-size:11px;fill:#5f6368} .lab{font-size:12px;fill:#202124}
.grid{stroke:#eee}
#tip{position:absolute;display:none;background:#fff;border:1px solid #5f6368;padding:6px 8px;
 font-size:12px;pointer-events:none;box-shadow:0 2px 6px rgba(0,0,0,.2);white-space:pre}
table{border-collapse:collapse;font-size:12px} td,th{border:1px solid #dadce0;padding:3px 6px}
td.n{text-align:right;font-variant-numeric:tabular-nums}
"""

_SCRIPT = r"""
(function(){
const D = JSON.parse(document.getElementById('sweep-data').textContent);
const W = 760, H = 480, L = 70, R = 20, T = 20, B = 50;
const svg = document.getElementById('plot'), tip = document.getElementById('tip');
const sx = document.getElementById('xsel'), sy = document.getElementById('ysel');
const fo = document.getElementById('frontonly');
const NS = 'http://www.w3.org/2000/svg';
D.axes.forEach(function(k){
  [sx, sy].forEach(function(s){ const o = document.createElement('option'); o.value = k;
    o.textContent = k + (D.dirs[k] ? (D.dirs[k] === 'maximize' ? ' \u2191' : ' \u2193') : ''); s.appendChild(o); });
});
sx.value = D.x0; sy.value = D.y0;
function el(name, attrs, text){ const e = document.createElementNS(NS, name);
  for (const k in attrs) e.setAttribute(k, attrs[k]); if (text !== undefined) e.textContent = text; return e; }
function ticks(lo, hi){ const span = hi - lo || 1, step0 = span / 6, p = Math.pow(10, Math.floor(Math.log10(step0)));
  const step = [1, 2, 5, 10].map(function(m){ return m * p; }).find(function(s){ return s >= step0; });
  const out = []; for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(v); return out; }
function fmt(v){ if (!isFinite(v)) return String(v); const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e5)) return v.toExponential(2); return String(+v.toPrecision(4)); }
function draw(){
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const xk = sx.value, yk = sy.value;
  const pts = D.points.filter(function(p){ return (!fo.checked || p.front) && isFinite(p.m[xk]) && isFinite(p.m[yk]); });
  if (!pts.length) { svg.appendChild(el('text', {x: W / 2, y: H / 2, 'text-anchor': 'middle', class: 'lab'}, 'no points')); return; }
  let x0 = Math.min.apply(null, pts.map(function(p){ return p.m[xk]; })), x1 = Math.max.apply(null, pts.map(function(p){ return p.m[xk]; }));
  let y0 = Math.min.apply(null, pts.map(function(p){ return p.m[yk]; })), y1 = Math.max.apply(null, pts.map(function(p){ return p.m[yk]; }));
  const px = (x1 - x0) * 0.05 || Math.abs(x0) * 0.05 || 1, py = (y1 - y0) * 0.05 || Math.abs(y0) * 0.05 || 1;
  x0 -= px; x1 += px; y0 -= py; y1 += py;
  const X = function(v){ return L + (v - x0) / (x1 - x0) * (W - L - R); };
  const Y = function(v){ return H - B - (v - y0) / (y1 - y0) * (H - T - B); };
  ticks(x0, x1).forEach(function(v){ svg.appendChild(el('line', {x1: X(v), x2: X(v), y1: T, y2: H - B, class: 'grid'}));
    svg.appendChild(el('text', {x: X(v), y: H - B + 16, 'text-anchor': 'middle', class: 'tick'}, fmt(v))); });
  ticks(y0, y1).forEach(function(v){ svg.appendChild(el('line', {x1: L, x2: W - R, y1: Y(v), y2: Y(v), class: 'grid'}));
    svg.appendChild(el('text', {x: L - 6, y: Y(v) + 4, 'text-anchor': 'end', class: 'tick'}, fmt(v))); });
  svg.appendChild(el('line', {x1: L, x2: W - R, y1: H - B, y2: H - B, class: 'axis'}));
  svg.appendChild(el('line', {x1: L, x2: L, y1: T, y2: H - B, class: 'axis'}));
  svg.appendChild(el('text', {x: (L + W - R) / 2, y: H - 10, 'text-anchor': 'middle', class: 'lab'}, sx.options[sx.selectedIndex].textContent));
  svg.appendChild(el('text', {x: 14, y: (T + H - B) / 2, 'text-anchor': 'middle', class: 'lab',
    transform: 'rotate(-90 14 ' + (T + H - B) / 2 + ')'}, sy.options[sy.selectedIndex].textContent));
  pts.slice().sort(function(a, b){ return a.front - b.front; }).forEach(function(p){
    const c = el('circle', {cx: X(p.m[xk]), cy: Y(p.m[yk]), r: p.front ? 6 : 4, class: p.front ? 'pt front' : 'pt'});
    c.addEventListener('mousemove', function(ev){ tip.style.display = 'block';
      tip.style.left = (ev.pageX + 12) + 'px'; tip.style.top = (ev.pageY + 12) + 'px';
      const lines = [(p.front ? 'PARETO FRONT  ' : '') + 'run ' + p.run_id, 'trial ' + p.trial_key];
      D.axes.forEach(function(k){ if (k in p.m) lines.push(k + ' = ' + fmt(p.m[k])); });
      for (const k in p.p) lines.push(k + ': ' + p.p[k]);
      tip.textContent = lines.join('\n'); });
    c.addEventListener('mouseleave', function(){ tip.style.display = 'none'; });
    svg.appendChild(c); });
}
[sx, sy, fo].forEach(function(e){ e.addEventListener('change', draw); });
draw();
})();
"""


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f'<td class="n">{value:.6g}</td>'
    return f"<td>{html.escape(str(value))}</td>"


def pareto_html(records: Sequence[Mapping[str, Any]], front_ids: Iterable[str], objectives: Sequence[str],
                directions: Sequence[str], path: str | Path, *, title: str = "Pareto front",
                param_keys: Sequence[str] | None = None) -> Path:
    """One self-contained HTML file: an SVG scatter of every eligible trial (front members highlighted)
    with x/y pickers over the objectives and other shared metrics, hover tooltips (run id, trial key,
    metrics, params), and a static table of the front members (readable without JavaScript). The params
    are ``param_keys``, by default every one that varies, then the usual constant ones (:func:`key_params`)."""
    path = Path(path)
    front_ids = set(front_ids)
    records = list(records)
    params = list(param_keys) if param_keys is not None else key_params(records, limit=None)
    shared = set.intersection(*(set(r.get("metrics") or {}) for r in records)) if records else set()
    extras = [k for k in ("compression", "sparsity", "delta_m", "nonzero_params") if k in shared]
    extras += sorted(k for k in shared if "." in k and k not in extras)
    axes = list(objectives) + [k for k in extras if k not in objectives]
    dirs = {}
    for k in axes:
        try:
            dirs[k] = _direction_of(k, objectives, directions)
        except Exception:
            pass
    x0 = "compression" if "compression" in axes else axes[0] if axes else ""
    y0 = next((k for k in axes if k != x0), x0)
    data = {
        "axes": axes, "dirs": dirs, "x0": x0, "y0": y0,
        "points": [{"run_id": r["run_id"], "trial_key": r.get("trial_key") or "",
                    "front": r["run_id"] in front_ids,
                    "m": {k: float(r["metrics"][k]) for k in axes if k in r["metrics"]},
                    "p": {k: (r.get("params") or {}).get(k) for k in params
                          if k in (r.get("params") or {})}}
                   for r in records],
    }
    blob = json.dumps(data, allow_nan=False).replace("</", "<\\/")
    front = [r for r in records if r["run_id"] in front_ids]
    head = "".join(f"<th>{html.escape(h)}</th>" for h in ["run id", "trial", *objectives, *params])
    rows = "\n".join(
        "<tr>" + _cell(r["run_id"]) + _cell(r.get("trial_key") or "")
        + "".join(_cell(float(r["metrics"][o])) for o in objectives)
        + "".join(_cell((r.get("params") or {}).get(k, "")) for k in params) + "</tr>"
        for r in front)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{_STYLE}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p>{len(records)} fully trained trials; {len(front)} on the Pareto front of
{html.escape(", ".join(f"{o} ({d})" for o, d in zip(objectives, directions)))}. Hover a point for details.</p>
<div class="ctl"><label>x <select id="xsel"></select></label><label>y <select id="ysel"></select></label>
<label><input type="checkbox" id="frontonly"> front only</label></div>
<svg id="plot" width="760" height="480" viewBox="0 0 760 480" role="img" aria-label="Pareto scatter"></svg>
<div id="tip"></div>
<h2>Pareto front ({len(front)} trials)</h2>
<table><thead><tr>{head}</tr></thead><tbody>
{rows}
</tbody></table>
<script type="application/json" id="sweep-data">{blob}</script>
<script>{_SCRIPT}</script>
</body></html>
"""
    path.write_text(page, encoding="utf-8")
    return path
