"""The questions users ask after a sweep — ``best``, ``pareto``, ``report`` — answered from MLflow only.

Each command takes plain values (the CLI parses them), prints its answer to ``out`` (stdout) and returns
an exit code: 0 answered; 1 ``best`` found no trial within the budgets (the closest is shown); 2 bad input
(unknown store, experiment or sweep, no trials, a malformed budget), reported as one line
``error: ...`` on ``err`` (stderr).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, TextIO

from .budgets import (Budget, Violation, best_under_budget, check_known_metrics, lost_task_metrics,
                      parse_budgets, violations)
from .errors import BudgetError, UserInputError
from .objectives import register_sweep_metrics
from .tables import format_number, format_table, is_number, param_value, pct_change

__all__ = ["best", "pareto", "report", "choose_best", "render_best", "BestChoice", "Margin", "format_table",
           "format_number", "param_value"]

EXIT_OK, EXIT_NONE_MEETS, EXIT_USAGE = 0, 1, 2

# Config keys that say what a compressed model is (printed with the winner, in this order, then every other
# setting the sweep varied).
_CONFIG_KEYS = ("method", "sparsity", "criterion", "cutoff", "gradual", "dynamic", "arch", "width",
                "workload", "tasks", "steps", "lr", "seed")
# Config keys that are bookkeeping, not settings of the model (never printed with the winner).
_NOT_SETTINGS = ("baseline_metrics", "data_root", "checkpoint_dir", "checkpoint_every", "export_path",
                 "resume", "device", "num_threads", "trial_key")


# --- plumbing ------------------------------------------------------------------------------------------------

def _run(fn: Callable[[TextIO], int], out: TextIO | None, err: TextIO | None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        return fn(out)
    except UserInputError as exc:
        print(f"error: {exc}", file=err)
        return EXIT_USAGE


def _load(tracking_uri: str | None, experiment: str | None, sweep: str | None):
    from . import tracking
    sweep_rec = tracking.load_sweep(tracking_uri, experiment, sweep)
    register_sweep_metrics(sweep_rec.get("tags") or {})       # its custom metrics' directions
    trials = tracking.load_trials(sweep_rec["tracking_uri"], sweep_rec["experiment"], sweep_rec["sweep_id"])
    if not trials:
        raise UserInputError(f"sweep {sweep_rec['sweep_id']!r} in experiment {sweep_rec['experiment']!r} "
                             f"has no trials yet; expected a sweep that ran at least one trial")
    return tracking, sweep_rec, trials


def register_sweep_directions(tracking_uri: str | None, experiment: str | None, sweep: str | None) -> bool:
    """Register the directions of the sweep's custom metrics (its run's tag) in this process; False when
    the sweep cannot be read or has none (then a budget on such a metric stays unknown)."""
    from . import tracking
    try:
        rec = tracking.load_sweep(tracking_uri, experiment, sweep)
    except UserInputError:
        return False
    return register_sweep_metrics(rec.get("tags") or {})


def _finished(trials: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [t for t in trials if t["status"] == "FINISHED" and not t.get("early_stopped")]


def _objectives_of(sweep_rec: Mapping[str, Any]) -> tuple[list[str], list[str] | None]:
    """Objectives and directions recorded on the sweep run (tags after finish, else the params)."""
    tags, params = sweep_rec.get("tags") or {}, sweep_rec.get("params") or {}
    if tags.get("disparse.objectives"):
        objs = [o for o in tags["disparse.objectives"].split(",") if o]
        dirs = [d for d in tags.get("disparse.directions", "").split(",") if d]
        return objs, dirs if len(dirs) == len(objs) else None
    text = params.get("objectives", "")
    items: list[str] = []
    if text.startswith(("[", "{")):
        try:
            parsed = json.loads(text)
            items = [f"{k}:{v}" for k, v in parsed.items()] if isinstance(parsed, dict) else [str(x) for x in parsed]
        except ValueError:
            items = []
    else:
        items = [t.strip() for t in text.split(",") if t.strip()]
    objs, dirs = [], []
    for item in items:
        name, _, d = item.partition(":")
        objs.append(name.strip())
        dirs.append(d.strip())
    return objs, dirs if objs and all(dirs) else None


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


def _reference_text(raw: str) -> str:
    """A logged reference point (a JSON list) with each value as tables show numbers."""
    try:
        values = json.loads(raw)
        return "[" + ", ".join(format_number(float(v)) for v in values) + "]"
    except (TypeError, ValueError):
        return str(raw)


# --- best ----------------------------------------------------------------------------------------------------

def _sweep_budgets(sweep_rec: Mapping[str, Any]) -> list[str]:
    """The budgets the sweep's space declared (its ``budgets`` param), as budget expressions."""
    text = str((sweep_rec.get("params") or {}).get("budgets") or "").strip()
    if text.startswith("{"):                                    # a mapping logged as JSON
        try:
            return [f"{k}={v}" for k, v in json.loads(text).items()]
        except (ValueError, AttributeError):
            pass
    return [t.strip() for t in text.split(",") if t.strip()]


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
    finished = _finished(trials)
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


def _own_budgets(sweep_rec: Mapping[str, Any]) -> list[Budget]:
    """The budgets the sweep's space declared, parsed (bad input when it declared none)."""
    texts = _sweep_budgets(sweep_rec)
    if not texts:
        raise UserInputError(f"best: sweep {sweep_rec['sweep_id']!r} declares no budgets; expected "
                             f"--budget METRIC=LIMIT, e.g. --budget seg.miou=-2%")
    try:
        return parse_budgets(texts)
    except BudgetError as exc:
        raise UserInputError(f"sweep {sweep_rec['sweep_id']!r}'s own budgets: {exc}; expected "
                             f"--budget METRIC=LIMIT to give them here") from None


def best(tracking_uri: str | None, experiment: str | None, budgets: Sequence[Budget] | None = None,
         sweep: str | None = None, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """The sparsest trial (highest ``compression``) meeting every budget, with its metrics vs the dense
    baseline, its config and how to fetch it. Exit 0 found, 1 none meets (closest shown), 2 bad input.

    ``budgets`` (parsed: :func:`sweeps.budgets.parse_budgets`): ``None`` = the budgets the sweep's space
    declared (bad input if it declared none); ``[]`` = no budget, the sparsest fully trained trial."""
    def go(out: TextIO) -> int:
        tracking, sweep_rec, trials = _load(tracking_uri, experiment, sweep)
        chosen = list(budgets) if budgets is not None else _own_budgets(sweep_rec)
        source = "" if budgets is not None else \
            " (the sweep's own, from its space; --budget METRIC=LIMIT asks for others)"
        known = set().union(*(t["metrics"] for t in _finished(trials)))
        if known:
            check_known_metrics(chosen, known)
        base_rec = tracking.load_baseline_for(trials)
        choice = choose_best(trials, chosen, base_rec["metrics"] if base_rec else None)
        print(render_best(choice, sweep_rec, trials, base_rec, source), file=out)
        return EXIT_OK if choice.meets else EXIT_NONE_MEETS
    return _run(go, out, err)


def _chosen_line(sweep_rec: Mapping[str, Any], trials: Sequence[Mapping[str, Any]],
                 base_rec: Mapping[str, Any] | None) -> str:
    """``report``'s line on the trial ``best`` picks under the sweep's own budgets, with its page."""
    try:
        budgets = _own_budgets(sweep_rec)
    except UserInputError as exc:
        return f"  chosen       none ({exc})"
    from .tracking import run_url
    choice = choose_best(trials, budgets, base_rec["metrics"] if base_rec else None)
    rec = choice.chosen
    if rec is None:
        return "  chosen       none (no fully trained trial)"
    what = "sparsest within the sweep's budgets" if choice.meets else "no trial meets the budgets; closest"
    return (f"  chosen       {rec.get('trial_key') or rec['run_id']} ({what}; tune.py best)\n"
            f"               {run_url(sweep_rec['experiment_id'], rec['run_id'])}")


# --- pareto --------------------------------------------------------------------------------------------------

def _front(tracking, sweep_rec, trials, objectives: Sequence[str] | None):
    objs, dirs = _objectives_of(sweep_rec)
    if objectives:
        objs, dirs = list(objectives), None
        logged = sorted({k for t in trials for k in t["metrics"]} - {"final", "step"})
        unknown = [o for o in objs if o not in logged]
        if unknown:
            import difflib
            close = difflib.get_close_matches(unknown[0], logged, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UserInputError(f"--objective: {unknown[0]!r} is not a metric of sweep "
                                 f"{sweep_rec['sweep_id']!r}{hint}; expected one of {', '.join(logged)}")
    if not objs:
        raise UserInputError(f"sweep {sweep_rec['sweep_id']!r} records no objectives; expected "
                             "pareto --objective METRIC, repeated (e.g. --objective compression --objective seg.miou)")
    dirs = tracking.normalize_directions(objs, dirs)
    eligible = tracking.eligible_for_front(trials, objs)
    tagged = [t for t in eligible if t.get("pareto")]
    if tagged and not objectives:
        front = tagged
    elif eligible:
        from .pareto import pareto_front
        idx = tracking.front_indices(pareto_front, [[t["metrics"][o] for o in objs] for t in eligible], dirs)
        front = [eligible[i] for i in idx]
    else:
        front = []
    sign = 1.0 if dirs[0] == "maximize" else -1.0
    front.sort(key=lambda r: -sign * r["metrics"][objs[0]])
    return objs, dirs, eligible, front


def pareto(tracking_uri: str | None, experiment: str | None, sweep: str | None = None, *,
           objectives: Sequence[str] | None = None, out: TextIO | None = None,
           err: TextIO | None = None) -> int:
    """The Pareto front of a sweep as a table (objectives and key params), best first by the first
    objective. The front is the one the sweep recorded (``disparse.pareto`` tags) unless the sweep never
    finished or other ``objectives`` are asked for; then it is computed from the trials in MLflow."""
    def go(out: TextIO) -> int:
        from .plots import key_params
        tracking, sweep_rec, trials = _load(tracking_uri, experiment, sweep)
        objs, dirs, eligible, front = _front(tracking, sweep_rec, trials, objectives)
        arrows = {"maximize": "max", "minimize": "min"}
        print(f"Pareto front of sweep {sweep_rec['sweep_id']} (experiment {sweep_rec['experiment']}): "
              f"{len(front)} of {len(eligible)} fully trained trials; objectives "
              + ", ".join(f"{o} ({arrows[d]})" for o, d in zip(objs, dirs)), file=out)
        if not front:
            print("no fully trained trial has every objective; nothing on the front yet", file=out)
            return EXIT_OK
        params = key_params(front, among=eligible)         # what the sweep varied first
        rows = [[r["run_id"], r.get("trial_key") or "", *[r["metrics"][o] for o in objs],
                 *[param_value(r, k) for k in params]] for r in front]
        print(format_table(["run id", "trial", *objs, *params], rows), file=out)
        return EXIT_OK
    return _run(go, out, err)


# --- report --------------------------------------------------------------------------------------------------

def report(tracking_uri: str | None, experiment: str | None, sweep: str | None = None, *,
           out: TextIO | None = None, err: TextIO | None = None) -> int:
    """A sweep at a glance: trial counts, front size, hypervolume, best per objective, the baseline and
    where the artifacts are."""
    def go(out: TextIO) -> int:
        tracking, sweep_rec, trials = _load(tracking_uri, experiment, sweep)
        params, tags, uri = sweep_rec["params"], sweep_rec["tags"], sweep_rec["tracking_uri"]
        count = {s: sum(t["status"] == s for t in trials) for s in ("FINISHED", "FAILED", "KILLED", "RUNNING")}
        early = sum(t["status"] == "FINISHED" and t.get("early_stopped") for t in trials)
        print(f"sweep {sweep_rec['sweep_id']}  (experiment {sweep_rec['experiment']}, run "
              f"{sweep_rec['run_id']}, status {sweep_rec['status']})", file=out)
        print(f"  store        {uri}", file=out)
        settings = [f"{k} {params[k]}" for k in ("space", "sampler", "seed", "trials", "concurrency")
                    if params.get(k)]
        if settings:
            print("  settings     " + ", ".join(settings), file=out)
        if tracking.sweep_tag(tags, tracking.TAG_CODE_VERSION):
            print(f"  code         {tracking.sweep_tag(tags, tracking.TAG_CODE_VERSION)}", file=out)
        print(f"  trials       {len(trials)}: {count['FINISHED'] - early} fully trained, {early} early-stopped, "
              f"{count['FAILED']} failed, {count['KILLED']} killed, {count['RUNNING']} running", file=out)
        failures = [t for t in trials if t["status"] == "FAILED" and t.get("failure")]
        for t in failures[:5]:
            print(f"    failed {t.get('trial_key')}: {t['failure']}", file=out)
        if len(failures) > 5:
            print(f"    ... {len(failures) - 5} more failures", file=out)
        if params.get("budgets"):
            print(f"  budgets      {', '.join(_sweep_budgets(sweep_rec))}", file=out)

        objs, _ = _objectives_of(sweep_rec)
        if objs:
            objs, dirs, eligible, front = _front(tracking, sweep_rec, trials, None)
            hv = sweep_rec["metrics"].get("sweep.hypervolume", sweep_rec["metrics"].get("hypervolume"))
            if tags.get("disparse.hypervolume"):
                hv = float(tags["disparse.hypervolume"])
            print(f"  front        {len(front)} of {len(eligible)} fully trained trials"
                  + (f"; hypervolume {format_number(hv)}" if hv is not None else "")
                  + (f" (reference {_reference_text(tracking.sweep_tag(tags, tracking.TAG_HV_REFERENCE))})"
                     if tracking.sweep_tag(tags, tracking.TAG_HV_REFERENCE) else ""), file=out)
            if eligible:
                rows = []
                for o, d in zip(objs, dirs):
                    pick = max if d == "maximize" else min
                    b = pick(eligible, key=lambda r: r["metrics"][o])
                    rows.append([o, d, b["metrics"][o], b["run_id"], b.get("trial_key") or ""])
                print(file=out)
                print(format_table(["objective", "direction", "best", "run id", "trial"], rows, indent="  "),
                      file=out)
        base_rec = tracking.load_baseline_for(trials)
        if params.get("budgets"):
            print(file=out)
            print(_chosen_line(sweep_rec, trials, base_rec), file=out)
        print(file=out)
        if base_rec:
            src = f"dense run {base_rec['run_id']}" if base_rec.get("run_id") else "baseline_metrics in the config"
            print(f"  baseline     {src}", file=out)
            rows = [[k, v] for k, v in sorted(base_rec["metrics"].items())
                    if "." in k or k in ("compression", "sparsity", "nonzero_params")]
            if rows:
                print(format_table(["metric", "value"], rows, indent="    "), file=out)
        else:
            print("  baseline     none found", file=out)
        print(file=out)
        arts = tracking.list_artifacts(uri, sweep_rec["run_id"])
        print(f"  artifacts    {sweep_rec['artifact_uri']}", file=out)
        for a in arts:
            print(f"    {a}", file=out)
        print(f"  browse       {tracking.mlflow_ui_command(uri)}", file=out)
        print(f"  runs         {tracking.experiment_url(sweep_rec['experiment_id'])}", file=out)
        print(f"  sweep        {tracking.run_url(sweep_rec['experiment_id'], sweep_rec['run_id'])}", file=out)
        return EXIT_OK
    return _run(go, out, err)
