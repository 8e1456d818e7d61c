"""Text the command line prints after a sweep: the front as a table, the command that opens MLflow's UI.

Private to :mod:`sweeps.runner`, which re-exports both names. Standard library only.
"""

from __future__ import annotations

import math
import shlex
from typing import Any, Sequence

from ._runner_files import FRONT_CSV

__all__ = ["format_front", "mlflow_ui_command"]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.4g}"
    return str(value)


def format_front(front: Sequence[dict], objectives: Sequence[str], max_rows: int = 30) -> str:
    """The front as a plain-text table: trial, objectives, method, sparsity, key params."""
    if not front:
        return "(empty Pareto front: no trial completed its full training)"
    param_cols = [name for name in ("method", "sparsity", "cutoff", "criterion")
                  if any(name in (r.get("config") or {}) for r in front)]
    header = ["trial"] + list(objectives) + param_cols
    rows = []
    for r in front[:max_rows]:
        cfg = r.get("config") or {}
        rows.append([str(r.get("trial_key") or r.get("run_id", "")[:8])]
                    + [_fmt(r["metrics"].get(o)) for o in objectives]
                    + [_fmt(cfg.get(c)) for c in param_cols])
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()

    text = [line(header), line(["-" * w for w in widths])] + [line(r) for r in rows]
    if len(front) > max_rows:
        text.append(f"... {len(front) - max_rows} more (see {FRONT_CSV})")
    return "\n".join(text)


def mlflow_ui_command(tracking_uri: str) -> str:
    """The shell command that serves MLflow's UI for this store on loopback."""
    return (f"mlflow ui --backend-store-uri {shlex.quote(tracking_uri)} --host 127.0.0.1 "
            f"--port 5000 --workers 1")
