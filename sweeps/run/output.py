"""Text the command line prints after a sweep: the front as a table, the command that opens MLflow's UI.

Part of :mod:`sweeps.run`, which re-exports both names.
"""

from __future__ import annotations

import shlex
from typing import Sequence

from .files import FRONT_CSV

__all__ = ["format_front", "mlflow_ui_command"]


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
    """The shell command that serves MLflow's UI for this store on loopback."""
    return (f"mlflow ui --backend-store-uri {shlex.quote(tracking_uri)} --host 127.0.0.1 "
            f"--port 5000 --workers 1")
