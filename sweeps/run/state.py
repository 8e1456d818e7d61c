"""``sweep.json``, written: what ``--resume`` needs of a :class:`~sweeps.run.plan.Plan` (sweep id, space file,
overrides, tracking URI, experiment, Ray address), with the sweep's status at each change. The first write
also copies the space file (``space.yaml``). Read back by :func:`sweeps.run.files.read_state`.
"""

from __future__ import annotations

import json
import shutil
import time

from .files import SPACE_COPY, STATE_FILE
from .plan import Plan

__all__ = ["write_state"]


def write_state(plan: Plan, status: str) -> None:
    """Create or update ``sweep.json`` (atomically); the first write also copies the space file."""
    plan.results_dir.mkdir(parents=True, exist_ok=True)
    state_path = plan.results_dir / STATE_FILE
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    if not state:
        state = {"sweep_id": plan.sweep_id, "space_name": plan.spec.name,
                 "space_source": str(plan.space_file) if plan.space_file else None,
                 "overrides": list(plan.overrides), "tracking_uri": plan.tracking_uri,
                 "experiment": plan.experiment, "ray_address": plan.ray_address,
                 "study": plan.study_path.name, "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
        _copy_space(plan)
    else:
        state["overrides"] = list(plan.overrides)
    state["status"] = status
    state["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    tmp = state_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(state_path)


def _copy_space(plan: Plan) -> None:
    copy = plan.results_dir / SPACE_COPY
    if plan.spec.raw_text:
        copy.write_text(plan.spec.raw_text, encoding="utf-8")
    elif plan.space_file:
        shutil.copyfile(plan.space_file, copy)
