"""The interactive Pareto front page, ``pareto_front.html``: one self-contained file (inline SVG and a
little vanilla JS; no CDN, no network) with a scatter of every eligible trial, axis pickers, tooltips and
a table of the front members that fits a 1280-px window (it scrolls inside its own box when the sweep
varied many params). Numbers are shown to 4 significant digits, in the table, the tooltips and the tick
labels alike; ``pareto_front.csv`` keeps full precision.

Inputs are trial records as :func:`sweeps.tracking.load_trials` returns them; nothing here talks to MLflow.
"""

from __future__ import annotations

import html
import json
import math
import re
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from .objectives import normalize_directions
from .plots import key_params

__all__ = ["pareto_html"]


_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:1.2em;color:#202124;max-width:1240px}
h1{font-size:1.25em} h2{font-size:1.05em;margin-top:1.6em}
.ctl{margin:.6em 0} .ctl label{margin-right:1em}
svg{border:1px solid #dadce0;background:#fff;display:block;width:100%;max-width:760px;height:auto}
.pt{fill:#9aa0a6;stroke:#5f6368;stroke-width:.5} .pt.front{fill:#d93025;stroke:#000}
.pt:hover{stroke-width:2}
.axis{stroke:#5f6368} .tick{font-size:11px;fill:#5f6368} .lab{font-size:12px;fill:#202124}
.grid{stroke:#eee}
#tip{position:absolute;display:none;background:#fff;border:1px solid #5f6368;padding:6px 8px;
 font-size:12px;pointer-events:none;box-shadow:0 2px 6px rgba(0,0,0,.2);white-space:pre}
.scroll{max-width:100%;overflow-x:auto}
table{border-collapse:collapse;font-size:12px} td,th{border:1px solid #dadce0;padding:3px 6px;white-space:nowrap}
td.n{text-align:right;font-variant-numeric:tabular-nums} td.id{font-family:ui-monospace,monospace}
tr>:first-child{position:sticky;left:0;background:#fff}
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
function fmt(v){ if (!isFinite(v)) return String(v); const a = Math.abs(v);   // as _number() below
  if (a !== 0 && (a < 1e-3 || a >= 1e5)) return v.toExponential(3).replace(/\.?0+e/, 'e'); return String(+v.toPrecision(4)); }
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
    const c = el('circle', {cx: X(p.m[xk]), cy: Y(p.m[yk]), r: p.front ? 6 : 4, class: p.front ? 'pt front' : 'pt',
      'data-run': p.run_id});
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


def _direction_of(key: str, objectives: Sequence[str], directions: Sequence[str]) -> str:
    if key in objectives:
        return directions[list(objectives).index(key)]
    return normalize_directions([key], None)[0]


def _number(value: float) -> str:
    """4 significant digits, as the page's script writes tick labels and tooltips: ``0.9231``, ``12.5``,
    ``1.235e+5``, ``1e-4`` below 1e-3 and from 1e5 on (full precision stays in ``pareto_front.csv``)."""
    if not math.isfinite(value):
        return str(value)
    if value != 0 and not 1e-3 <= abs(value) < 1e5:
        mantissa, exponent = f"{value:.3e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent):+d}"
    rounded = float(f"{value:.4g}")
    return str(int(rounded)) if rounded.is_integer() else repr(rounded)


def _shown(value: Any) -> str:
    """A table cell's text: floats and params that read as non-integer numbers at 4 significant digits
    (:func:`_number`); integers and words as they are."""
    if isinstance(value, float):
        return _number(value)
    text = str(value)
    if not _is_number(text) or re.fullmatch(r"[+-]?\d+", text.strip()):
        return text
    return _number(float(text))


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _cell(value: Any) -> str:
    """A ``<td>``: rounded (:func:`_shown`) with the exact value in its title, numbers right-aligned."""
    text, exact = _shown(value), repr(value) if isinstance(value, float) else str(value)
    numeric = isinstance(value, float) or _is_number(exact)
    title = f' title="{html.escape(exact)}"' if text != exact else ""
    return f'<td{" class=n" if numeric else ""}{title}>{html.escape(text)}</td>'


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
                    "p": {k: _shown(r["params"][k]) for k in params if k in (r.get("params") or {})}}
                   for r in records],
    }
    blob = json.dumps(data, allow_nan=False).replace("</", "<\\/")
    front = [r for r in records if r["run_id"] in front_ids]
    arrows = [f'<th title="{d}">{html.escape(o)} {"&#8593;" if d == "maximize" else "&#8595;"}</th>'
              for o, d in zip(objectives, directions)]
    head = "".join(["<th>trial</th><th>run id</th>", *arrows, *(f"<th>{html.escape(k)}</th>" for k in params)])
    rows = "\n".join(
        f'<tr><td>{html.escape(r.get("trial_key") or "")}</td><td class="id">{html.escape(r["run_id"])}</td>'
        + "".join(_cell(float(r["metrics"][o])) for o in objectives)
        + "".join(_cell((r.get("params") or {}).get(k, "")) for k in params) + "</tr>"
        for r in front)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{_STYLE}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p>{len(records)} fully trained trials; {len(front)} on the Pareto front of
{html.escape(", ".join(f"{o} ({d})" for o, d in zip(objectives, directions)))}. Hover a point for details.
Numbers are shown to 4 significant digits (hover a cell for its exact value; <code>pareto_front.csv</code>
keeps full precision).</p>
<div class="ctl"><label>x <select id="xsel"></select></label><label>y <select id="ysel"></select></label>
<label><input type="checkbox" id="frontonly"> front only</label></div>
<svg id="plot" width="760" height="480" viewBox="0 0 760 480" role="img" aria-label="Pareto scatter"></svg>
<div id="tip"></div>
<h2>Pareto front ({len(front)} trials)</h2>
<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>
{rows}
</tbody></table></div>
<script type="application/json" id="sweep-data">{blob}</script>
<script>{_SCRIPT}</script>
</body></html>
"""
    path.write_text(page, encoding="utf-8")
    return path
