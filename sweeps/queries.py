"""The questions users ask after a sweep — ``best``, ``pareto``, ``report`` — answered from MLflow only
(``best``'s decision and text: :mod:`sweeps.choice`).

Each command takes plain values (the CLI parses them), prints its answer to ``out`` (stdout) and returns
an exit code: 0 answered; 1 ``best`` found no trial within the budgets (the closest is shown); 2 bad input
(unknown store, experiment or sweep, no trials, a malformed budget), reported as one line
``error: ...`` on ``err`` (stderr).
"""

from __future__ import annotations

import json
import sys
from typing import Any, Callable, Mapping, Sequence, TextIO

from .budgets import Budget, check_known_metrics, parse_budgets
from .choice import BestChoice, Margin, choose_best, fully_trained, render_best
from .errors import BudgetError, UserInputError
from .objectives import register_sweep_metrics
from .tables import format_number, format_table, param_value

__all__ = ["best", "pareto", "report", "choose_best", "render_best", "BestChoice", "Margin", "format_table",
           "format_number", "param_value"]

EXIT_OK, EXIT_NONE_MEETS, EXIT_USAGE = 0, 1, 2


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
        known = set().union(*(t["metrics"] for t in fully_trained(trials)))
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
