"""The ``best`` decision and its text: :func:`choose_best` (pure: the sparsest fully trained trial within
every budget, else the closest, with its margin on each budget and the trials left out, as a
:class:`BestChoice`) and :func:`render_best` (what ``tune.py best`` prints). Part of the query commands
(:mod:`sweeps.queries`, which re-exports these names).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from .budgets import Budget, Violation, best_under_budget, lost_task_metrics, violations
from .tables import format_number, format_table, is_number, pct_change

__all__ = ["BestChoice", "Margin", "choose_best", "render_best", "fully_trained"]


def fully_trained(trials: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The FINISHED trials that were not early-stopped (the ones ``best`` and fronts consider)."""
    return [t for t in trials if t["status"] == "FINISHED" and not t.get("early_stopped")]


# Config keys that say what a compressed model is (printed with the winner, in this order, then every other
# setting the sweep varied).
_CONFIG_KEYS = ("method", "sparsity", "criterion", "cutoff", "gradual", "dynamic", "arch", "width",
                "workload", "tasks", "steps", "lr", "seed")


# Config keys that are bookkeeping, not settings of the model (never printed with the winner).
_NOT_SETTINGS = ("baseline_metrics", "data_root", "checkpoint_dir", "checkpoint_every", "export_path",
                 "resume", "device", "num_threads", "trial_key")


def _fetch_hint(uri: str, run_id: str) -> list[str]:
    return [f"export MLFLOW_TRACKING_URI={uri}",
            f"mlflow runs describe --run-id {run_id}",
            f"mlflow artifacts download --run-id {run_id} --dst-path ./{run_id}",
            f"(python: mlflow.MlflowClient({uri!r}).get_run({run_id!r}))"]


def _flat_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"dynamic.alpha0": 0.3, ...}``: nested dicts as dotted keys, in their order; empty ones dropped."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(_flat_config(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _config_summary(rec: Mapping[str, Any], among: Sequence[Mapping[str, Any]] = ()) -> str:
    """The trial's config on one line: its :data:`_CONFIG_KEYS` in that order, then (sorted) every other
    setting whose value differs between the trials ``among`` (what the sweep sampled: loss weights,
    score_batches, finetune_lr, ...). Bookkeeping (:data:`_NOT_SETTINGS`) and ``None`` values are left out."""
    flat = {k: v for k, v in _flat_config(rec.get("config") or {}).items()
            if v is not None and k.split(".")[0] not in _NOT_SETTINGS}
    head = [k for top in _CONFIG_KEYS for k in flat if k.split(".")[0] == top]
    others = [_flat_config(r["config"]) for r in among if r.get("config")]   # none: a run with no params
    missing = object()

    def varies(key: str) -> bool:
        return len({_short(o[key]) if key in o else missing for o in others}) > 1

    rest = sorted(k for k in flat if k not in head and varies(k))
    parts = [f"{k}={_short(flat[k])}" for k in head + rest]
    return " ".join(parts) if parts else "(no config recorded)"


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _metric_rows(metrics: Mapping[str, float], baseline: Mapping[str, float] | None,
                 margins: Sequence[Margin]) -> list[list[Any]]:
    """The chosen trial's metrics against the baseline, each budgeted one with its verdict."""
    by_metric = {m.budget.metric: m for m in margins}
    keys = sorted(k for k in metrics if "." in k and not k.startswith(("mask_iou", "best")))
    keys += [k for k in ("delta_m", "min_layer_density") if k in metrics]
    keys += [m for m in by_metric if m not in keys]
    rows = []
    for key in keys:
        value = metrics.get(key)
        base = (baseline or {}).get(key) if key != "min_layer_density" else None   # dense: 1 by definition
        margin = by_metric.get(key)
        verdict = ""
        if margin is not None:
            missed = margin.violation
            verdict = "ok" if missed is None else ("VIOLATED (missing)" if missed.value is None
                                                   else f"VIOLATED (short by {missed.shortfall()})")
        rows.append([key, value, base, pct_change(value, base) if is_number(value) and is_number(base)
                     else "", margin.budget.text if margin is not None else "", verdict])
    return rows


@dataclass(frozen=True)
class Margin:
    """Where the chosen trial stands on one budget: ``shortfall`` is the budget's normalised constraint
    value (``<= 0`` met, below 0 by that much slack; :meth:`Budget.violation`), ``violation`` the details
    of a missed budget (None when met)."""

    budget: Budget
    shortfall: float
    violation: Violation | None


@dataclass(frozen=True)
class BestChoice:
    """What :func:`choose_best` decided, with what a reader needs to trust it.

    ``chosen``: the sparsest trial meeting every budget (``meets``), else the closest one (smallest total
    shortfall), else None (no trial to choose from); ``margins``: its standing on each budget, in order.
    Trials left out and why: ``unfinished`` (failed, early-stopped or running: their keys) and ``lost``
    (fully trained, but a task metric is not finite: ``{trial: those metrics}``)."""

    budgets: tuple[Budget, ...]
    baseline: Mapping[str, float] | None
    finished: tuple[Mapping[str, Any], ...]
    unfinished: tuple[str, ...]
    lost: Mapping[str, list[str]]
    chosen: Mapping[str, Any] | None
    meets: bool
    margins: tuple[Margin, ...]

    @property
    def considered(self) -> int:
        """Fully trained trials that took part in the choice."""
        return len(self.finished) - len(self.lost)

    def shortfalls(self) -> str:
        """The budgets the chosen trial misses, on one line."""
        return "; ".join(str(m.violation) for m in self.margins if m.violation is not None)


def choose_best(trials: Sequence[Mapping[str, Any]], budgets: Sequence[Budget],
                baseline: Mapping[str, float] | None) -> BestChoice:
    """The ``best`` decision over a sweep's trial records (:func:`sweeps.tracking.load_trials`), pure:
    :func:`~sweeps.budgets.best_under_budget` among the fully trained trials, with the chosen trial's
    margin on each budget and the trials left out."""
    finished = fully_trained(trials)
    finished_ids = {id(t) for t in finished}
    winner, closest = best_under_budget(finished, budgets, baseline)
    chosen = winner if winner is not None else (closest.record if closest is not None else None)
    margins = tuple(_margin(b, chosen["metrics"], baseline) for b in budgets) if chosen is not None else ()
    return BestChoice(
        budgets=tuple(budgets), baseline=baseline, finished=tuple(finished),
        unfinished=tuple(t.get("trial_key") or t["run_id"] for t in trials if id(t) not in finished_ids),
        lost={t["trial_key"] or t["run_id"]: keys for t in finished if (keys := lost_task_metrics(t["metrics"]))},
        chosen=chosen, meets=winner is not None, margins=margins)


def _margin(budget: Budget, metrics: Mapping[str, Any], baseline: Mapping[str, float] | None) -> Margin:
    missed = violations([budget], metrics, baseline)
    return Margin(budget, budget.violation(metrics.get(budget.metric), baseline), missed[0] if missed else None)


def render_best(choice: BestChoice, sweep_rec: Mapping[str, Any], trials: Sequence[Mapping[str, Any]],
                base_rec: Mapping[str, Any] | None, source: str = "") -> str:
    """The text ``best`` prints for ``choice``: the trials considered, the budgets (``source`` says whose)
    and baseline, the chosen trial, its metrics against the baseline and budgets, how to fetch it."""
    skipped = len(choice.unfinished)
    if not choice.finished:    # an answer (no model to offer), not bad input: exit 1 like "none meets"
        return (f"NO TRIAL MEETS EVERY BUDGET: sweep {sweep_rec['sweep_id']} has no finished, fully trained "
                f"trial ({skipped} failed, early-stopped or running)")
    lines = [f"sweep {sweep_rec['sweep_id']} (experiment {sweep_rec['experiment']}): {choice.considered} "
             f"fully trained trials considered, {skipped} failed/early-stopped/running skipped"]
    lost = choice.lost
    if lost:
        shown = "; ".join(f"{k}: {', '.join(v)}" for k, v in list(lost.items())[:3])
        lines.append(f"{len(lost)} fully trained trial(s) skipped: a task metric is not finite (the task is "
                     f"lost): {shown}" + (" ..." if len(lost) > 3 else ""))
    lines.append(f"budgets: {', '.join(b.text for b in choice.budgets) or '(none: the sparsest trial)'}{source}")
    lines.append("baseline: " + (f"dense run {base_rec['run_id']}" if base_rec and base_rec.get("run_id")
                                 else "the baseline_metrics the trials were given" if base_rec
                                 else "none found (relative changes not shown)"))
    lines.append("")
    rec = choice.chosen
    if rec is None:
        lines.append("No trial has a compression value; nothing to choose from.")
        return "\n".join(lines)
    lines.append("Sparsest trial within every budget:" if choice.meets
                 else "NO TRIAL MEETS EVERY BUDGET. Closest trial (smallest total shortfall):")
    m = rec["metrics"]
    lines.append(f"  run id       {rec['run_id']}   (trial {rec.get('trial_key')})")
    if sweep_rec.get("experiment_id") is not None:
        from .tracking import run_url
        lines.append(f"  page         {run_url(sweep_rec['experiment_id'], rec['run_id'])}   (once the UI runs)")
    lines.append(f"  compression  {format_number(m.get('compression'))}   achieved sparsity "
                 f"{format_number(m.get('sparsity'))}"
                 + (f"   delta_m {m['delta_m']:+.2f}%" if is_number(m.get("delta_m")) else ""))
    lines.append(f"  config       {_config_summary(rec, trials)}")
    weights = (rec.get("config") or {}).get("export_path")
    if isinstance(weights, str) and weights:
        lines.append(f"  weights      {weights}" + ("" if Path(weights).is_file() else "   (not there now)"))
    if not choice.meets:
        lines.append("  violations   " + choice.shortfalls())
    lines.append("")
    lines.append(format_table(["metric", "value", "baseline", "change", "budget", "status"],
                              _metric_rows(m, choice.baseline, choice.margins), indent="  "))
    lines.append("")
    lines.append("fetch it:")
    lines.extend(f"  {line}" for line in _fetch_hint(sweep_rec["tracking_uri"], rec["run_id"]))
    return "\n".join(lines)
