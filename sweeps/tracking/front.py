"""The Pareto front of a sweep's trial records: eligibility, front indices, hypervolume, the summary tags
and the files (CSV, PNG, HTML; drawn by :mod:`sweeps.plots`) logged on the sweep run.

Pure functions of records (as :func:`sweeps.tracking.load_trials` returns them); no mlflow import. Used by
:class:`~sweeps.tracking.SweepTracker` and the query commands; :mod:`sweeps.tracking` re-exports the
public names. The objectives' directions are :func:`sweeps.objectives.normalize_directions`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from .. import front_page, plots
from ..pareto import default_reference, hypervolume, hypervolume_history
from .store import TAG_HV_REFERENCE
from .values import SWEEP_METRIC_PREFIX, one_line, sanitize_name


def eligible_for_front(records: Iterable[Mapping[str, Any]], objectives: Sequence[str]) -> list[dict]:
    """FINISHED, fully trained (not early-stopped) trials with every objective finite."""
    out = []
    for rec in records:
        if rec.get("status") != "FINISHED" or rec.get("early_stopped"):
            continue
        m = rec.get("metrics") or {}
        if all(isinstance(m.get(o), (int, float)) and math.isfinite(m[o]) for o in objectives):
            out.append(dict(rec))
    return out


def front_indices(pareto_front, points: list[list[float]], directions: list[str]) -> list[int]:
    """Indices of the non-dominated ``points`` using ``sweeps.pareto.pareto_front``."""
    result = list(pareto_front(points, directions))
    if not result:
        return []
    if all(isinstance(x, int) and not isinstance(x, bool) for x in result):
        return sorted(result)
    remaining = {i: tuple(p) for i, p in enumerate(points)}
    idx = []
    for point in result:                               # the front given as points: map back to indices
        target = tuple(point)
        for i, p in list(remaining.items()):
            if p == target:
                idx.append(i)
                del remaining[i]
                break
    return sorted(idx)


def history_pairs(history: Iterable[Any] | None) -> list[tuple[int, float]]:
    pairs: list[tuple[int, float]] = []
    for i, item in enumerate(history or []):
        if isinstance(item, Mapping):
            step, value = item.get("step", i), item.get("hypervolume", item.get("value"))
        elif isinstance(item, (list, tuple)):
            step, value = item
        else:
            step, value = i, item
        if value is not None and math.isfinite(float(value)):
            pairs.append((int(step), float(value)))
    return pairs


def front_csv(front: Sequence[Mapping[str, Any]], objectives: Sequence[str], param_keys: Sequence[str]) -> str:
    """CSV text: run_id, trial_key, each objective, then ``param_keys`` (blank where a trial lacks one)."""
    import csv
    import io
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["run_id", "trial_key", *objectives, *param_keys])
    for rec in front:
        writer.writerow([rec["run_id"], rec.get("trial_key") or "",
                         *[repr(float(rec["metrics"][o])) for o in objectives],
                         *[rec.get("params", {}).get(k, "") for k in param_keys]])
    return buf.getvalue()


# --- what finish_sweep logs -------------------------------------------------------------------------------

def hypervolume_tags(eligible: Sequence[Mapping[str, Any]], points: list[list[float]], front_idx: list[int],
                     dirs: list[str], reference_point: Sequence[float] | None,
                     history: list[tuple[int, float]]) -> tuple[list[tuple[int, float]], dict[str, str]]:
    """The hypervolume history and the sweep run's hypervolume tags.

    ``history`` as given, or (when empty) the hypervolume after each fully trained trial in end order.
    The reference point is ``reference_point`` or :func:`sweeps.pareto.default_reference` (tagged
    "(auto)"). A failure becomes a ``disparse.hypervolume_error`` tag, never an exception.
    """
    hv_tags: dict[str, str] = {}
    if eligible:
        try:
            ref = (list(map(float, reference_point)) if reference_point is not None
                   else default_reference(points, dirs))
            if not history:                         # from MLflow: fully trained trials in end order
                ordered = sorted(range(len(eligible)), key=lambda i: eligible[i]["end_time"] or 0)
                history = [(k + 1, float(v)) for k, v in
                           enumerate(hypervolume_history([points[i] for i in ordered], dirs, ref))]
            hv = float(hypervolume([points[i] for i in front_idx], dirs, ref))
            hv_tags = {"disparse.hypervolume": repr(hv),
                       TAG_HV_REFERENCE: json.dumps(ref)
                       + ("" if reference_point is not None else " (auto)")}
        except Exception as exc:
            hv_tags = {"disparse.hypervolume_error": one_line(exc, 500)}
    return history, hv_tags


def front_summary(records: Sequence[Mapping[str, Any]], eligible: Sequence[Mapping[str, Any]],
                  front: Sequence[Mapping[str, Any]], objectives: Sequence[str],
                  dirs: Sequence[str]) -> tuple[dict[str, int], dict[str, str]]:
    """Trial counts (metrics of the sweep run, under the ``sweep.`` prefix) and summary tags: front size,
    objectives, directions and the best eligible value of each objective with its trial's name
    (``best.<objective>``: a short key the UI shows whole)."""
    counts = {f"{SWEEP_METRIC_PREFIX}{k}": v for k, v in {
        "trials_finished": sum(r["status"] == "FINISHED" for r in records),
        "trials_failed": sum(r["status"] == "FAILED" for r in records),
        "trials_early_stopped": sum(r["status"] == "FINISHED" and r["early_stopped"] for r in records),
        "front_size": len(front),
    }.items()}
    summary_tags = {"disparse.front_size": str(len(front)),
                    "disparse.objectives": ",".join(objectives),
                    "disparse.directions": ",".join(dirs)}
    for obj, d in zip(objectives, dirs):
        if eligible:
            pick = max if d == "maximize" else min
            best = pick(eligible, key=lambda r: r["metrics"][obj])
            summary_tags[f"best.{sanitize_name(obj)}"] = \
                f"{best['metrics'][obj]:.4g} ({best.get('trial_key') or best['run_id']})"
    return counts, summary_tags


def write_front_files(out: Path, front: Sequence[Mapping[str, Any]], eligible: Sequence[Mapping[str, Any]],
                      front_ids: set[str], objectives: Sequence[str], dirs: Sequence[str],
                      history: list[tuple[int, float]], title: str) -> dict[str, str]:
    """Write ``pareto_front.csv``, ``hypervolume.csv`` (with a history), the PNGs and
    ``pareto_front.html`` into ``out``; returns the plot tags. A picture that fails is reported in
    ``disparse.plot_error`` and never loses the front itself. The CSV and the HTML table show every param
    that varies over the eligible trials, then the usual constant ones (:func:`sweeps.plots.key_params`)."""
    param_keys = plots.key_params(front or eligible, among=eligible, limit=None)
    (out / "pareto_front.csv").write_text(front_csv(front, objectives, param_keys))
    if history:
        (out / "hypervolume.csv").write_text(
            "step,hypervolume\n" + "".join(f"{s},{v!r}\n" for s, v in history))
    made, errors = [], []
    try:
        made = plots.pareto_pngs(eligible, front_ids, objectives, dirs, out)
    except Exception as exc:
        errors.append(f"png: {one_line(exc, 300)}")
    try:
        front_page.pareto_html(eligible, front_ids, objectives, dirs, out / "pareto_front.html",
                               title=title, param_keys=param_keys)
    except Exception as exc:
        errors.append(f"html: {one_line(exc, 300)}")
    plot_tags = {"disparse.plots": ",".join(p.name for p in made)}
    if errors:
        plot_tags["disparse.plot_error"] = "; ".join(errors)
    return plot_tags
