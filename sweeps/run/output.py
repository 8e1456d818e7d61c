"""Text the command line prints around a sweep: the front as a table, the commands that open MLflow's UI
and optuna-dashboard, and the UI pages of the sweep (addresses from :mod:`sweeps.tracking.links`).

Part of :mod:`sweeps.run`, which re-exports both names.
"""

from __future__ import annotations

from typing import Sequence

from .files import FRONT_CSV

__all__ = ["format_front", "mlflow_ui_command", "browse_lines"]


def format_front(front: Sequence[dict], objectives: Sequence[str], max_rows: int = 30,
                 among: Sequence[dict] | None = None, max_params: int = 6) -> str:
    """The front as a plain-text table: trial, objectives, then up to ``max_params`` params that describe
    it, those that vary over ``among`` (the sweep's fully trained trials; default the front) first, as
    ``tune.py pareto`` orders them (:func:`sweeps.plots.key_params`); the CSV has every one."""
    from ..plots import key_params
    from ..tables import format_table, param_value

    if not front:
        return "(empty Pareto front: no trial completed its full training)"
    params = key_params(front, among=among or front, limit=max_params)
    rows = [[str(r.get("trial_key") or r.get("run_id", "")[:8]), *[r["metrics"].get(o) for o in objectives],
             *[param_value(r, k) for k in params]] for r in front[:max_rows]]
    text = format_table(["trial", *objectives, *params], rows)
    if len(front) > max_rows:
        text += f"\n... {len(front) - max_rows} more (see {FRONT_CSV})"
    return text


def mlflow_ui_command(tracking_uri: str) -> str:
    """The shell command that serves MLflow's UI for this store on loopback (telemetry off)."""
    from ..tracking import mlflow_ui_command as command

    return command(tracking_uri)


def browse_lines(tracking_uri: str, experiment_id: str | None, sweep_run_id: str | None,
                 study_path: str | None = None) -> list[str]:
    """What the sweep prints at its start and its end: the ``mlflow ui`` command, the two pages to open
    once it serves (the sweep's runs in the training view, the sweep run with its report) and the
    optuna-dashboard command (the ``dashboard`` extra) for a live Pareto chart."""
    from ..tracking import dashboard_command, experiment_url, run_url

    lines = [f"browse:  {mlflow_ui_command(tracking_uri)}"]
    if experiment_id is not None:
        lines.append(f"  runs:  {experiment_url(experiment_id)}")
        if sweep_run_id:
            lines.append(f"  sweep: {run_url(experiment_id, sweep_run_id)}")
    if study_path:
        lines.append(f"live:    {dashboard_command(study_path)}   (pip install optuna-dashboard)")
    return lines
