"""What the UI reads while a sweep runs and after: :class:`ReportWriter`, the part of
:class:`~sweeps.tracking.SweepTracker` that keeps the sweep run's description (the report:
:func:`sweeps.tracking.describe.sweep_note`), each trial's one-line description and the
``disparse.pareto`` tags in step with the trials that ended. Private to :mod:`sweeps.tracking`.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from ..objectives import normalize_directions
from ..pareto import pareto_front
from .describe import NOTE_TAG, sweep_note, trial_line
from .front import eligible_for_front, front_indices
from .read import baseline_record, run_record
from .store import TAG_BASELINE_RUN, TAG_PARETO, TAG_WITHIN_BUDGETS, sweep_tag


def sweep_info(spec: Any, sweep_id: str, config: Mapping[str, Any], params: Mapping[str, Any],
               space_path: Any) -> dict[str, Any]:
    """What the report says about the sweep itself, from its spec (a ``SweepSpec`` or a mapping)."""
    from pathlib import Path

    from .values import spec_attr

    objectives = spec_attr(spec, "objectives") or []
    names = [getattr(o, "name", None) or (o.get("name") if isinstance(o, Mapping) else str(o)) for o in objectives]
    dirs = [getattr(o, "direction", None) or (o.get("direction") if isinstance(o, Mapping) else None)
            for o in objectives]
    methods: list[str] = []
    for p in spec_attr(spec, "parameters") or []:
        if getattr(p, "name", None) == "method":
            methods = [str(v) for v in (getattr(p, "values", ()) or [getattr(p, "value", None)]) if v is not None]
    if not methods:
        fixed = (spec_attr(spec, "workload") or {}).get("method")
        methods = [str(fixed)] if fixed else []
    budgets = [getattr(b, "text", None) or str(b) for b in (spec_attr(spec, "budgets") or [])]
    sampler = params.get("sampler")
    if params.get("seed") is not None:
        sampler = f"{sampler} (seed {params['seed']})"
    return {"sweep_id": sweep_id, "space_file": str(Path(space_path).name) if space_path else params.get("space"),
            "methods": methods, "trials": params.get("trials"), "concurrency": params.get("concurrency"),
            "sampler": sampler, "objectives": [n for n in names if n],
            "directions": normalize_directions([n for n in names if n], dirs if all(dirs) else None)
            if names else [], "budgets": budgets, "results_dir": config.get("results_dir"), "hypervolume": None,
            "baseline_expected": spec_attr(spec, "baseline") is not False}


class ReportWriter:
    """Needs ``client``, ``experiment_id``, ``parent_run_id``, ``_info`` (:func:`sweep_info`, or None:
    no report) and ``_sweep_trial_runs()``."""

    client: Any
    experiment_id: str
    parent_run_id: str | None
    _info: dict | None

    def refresh_report(self, state: str = "running") -> list[dict[str, Any]]:
        """Recompute the front from the trials as stored, move ``disparse.pareto`` to its members, rewrite
        the trials' descriptions that changed and the sweep run's. Returns the trial records."""
        runs = self._sweep_trial_runs()
        records = [run_record(r) for r in runs]
        if self._info is None or self.parent_run_id is None:
            return records
        info = {**self._info, "experiment_id": self.experiment_id, "run_id": self.parent_run_id}
        objectives, dirs = info["objectives"], info["directions"]
        eligible = eligible_for_front(records, objectives)
        points = [[r["metrics"][o] for o in objectives] for r in eligible]
        front = [eligible[i] for i in front_indices(pareto_front, points, dirs)] if points else []
        sign = 1.0 if dirs and dirs[0] == "maximize" else -1.0
        front.sort(key=lambda r: -sign * r["metrics"][objectives[0]])
        front_ids = {r["run_id"] for r in front}
        self._tag_front(records, front_ids)
        for run, rec in zip(runs, records):
            if rec["status"] == "RUNNING":
                continue
            line = trial_line(rec, rec["run_id"] in front_ids)
            if run.data.tags.get(NOTE_TAG) != line:
                self.client.set_tag(rec["run_id"], NOTE_TAG, line)
        baseline = self._report_baseline()
        self._tag_budgets(runs, records, info["budgets"], baseline)
        chosen = _chosen(records, info["budgets"], baseline)
        from .. import plots
        param_keys = plots.key_params(front or eligible, among=eligible, limit=4) if eligible else []
        note = sweep_note(info, records, front, eligible, param_keys, chosen, baseline, state)
        self.client.set_tag(self.parent_run_id, NOTE_TAG, note)
        return records

    def _report_baseline(self) -> dict[str, Any] | None:
        linked = sweep_tag(self.client.get_run(self.parent_run_id).data.tags, TAG_BASELINE_RUN)
        if not linked:
            return None
        cached = getattr(self, "_baseline_cache", None)
        if cached is None or cached.get("run_id") != linked:
            cached = baseline_record(self.client, self.experiment_id, run_id=linked)
            self._baseline_cache = cached
        return cached

    def _tag_budgets(self, runs, records, budget_texts: Sequence[str], baseline) -> None:
        """``disparse.within_budgets`` (true/false) on every fully trained trial, under the sweep's budgets
        (a filter in the UI); none where the sweep has no budgets or they cannot be checked."""
        from ..budgets import parse_budgets, violations
        from ..errors import UserInputError

        if not budget_texts:
            return
        try:
            budgets = parse_budgets(list(budget_texts))
            for run, rec in zip(runs, records):
                if rec["status"] != "FINISHED" or rec.get("early_stopped"):
                    continue
                value = "false" if violations(budgets, rec["metrics"], baseline["metrics"] if baseline else None) \
                    else "true"
                if run.data.tags.get(TAG_WITHIN_BUDGETS) != value:
                    self.client.set_tag(rec["run_id"], TAG_WITHIN_BUDGETS, value)
        except UserInputError:        # e.g. a relative budget and no dense baseline: nothing to tag
            return

    def _tag_front(self, records: list[dict[str, Any]], front_ids: set[str]) -> None:
        """``disparse.pareto`` on exactly the current front members (a trial that leaves it loses it)."""
        for rec in records:
            if rec["run_id"] in front_ids:
                if not rec["pareto"]:
                    self.client.set_tag(rec["run_id"], TAG_PARETO, "true")
                rec["pareto"] = True
            elif rec["pareto"]:
                self.client.delete_tag(rec["run_id"], TAG_PARETO)
                rec["pareto"] = False


def _chosen(records: Sequence[Mapping[str, Any]], budget_texts: Sequence[str],
            baseline: Mapping[str, Any] | None):
    """``(record, meets)``: the trial ``tune.py best`` picks under the sweep's budgets; None (no budget,
    no finished trial) or a sentence saying why it cannot choose."""
    if not budget_texts:
        return None
    from ..budgets import best_under_budget, parse_budgets

    finished = [r for r in records if r["status"] == "FINISHED" and not r.get("early_stopped")]
    if not finished:
        return None
    from ..errors import UserInputError
    try:
        winner, closest = best_under_budget(finished, parse_budgets(list(budget_texts)),
                                            baseline["metrics"] if baseline else None)
    except UserInputError as exc:           # e.g. a relative budget and no dense baseline
        return f"None: {exc}."
    if winner is not None:
        return winner, True
    return (closest.record, False) if closest is not None else None
