"""The results folder of a sweep: its file names, reading ``sweep.json``, the lock, Ray run folders, the
front CSV.

The layout is described in :mod:`sweeps.run.runner`; ``.lock`` is held for the whole run; ``sweep.json`` is
written by :mod:`sweeps.run.state`. Part of :mod:`sweeps.run`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from ..errors import UserInputError

__all__ = ["STATE_FILE", "SPACE_COPY", "STUDY_FILE", "LEGACY_STUDY_FILE", "DEFAULT_RESULTS_ROOT", "FRONT_CSV",
           "study_file", "read_state", "latest_results_dir", "free_results_dir", "lock_results_dir", "next_ray_run",
           "write_front_csv"]

STATE_FILE = "sweep.json"
SPACE_COPY = "space.yaml"
STUDY_FILE = "optuna.journal"      # Optuna journal: append-only, fsync per write, read incrementally
LEGACY_STUDY_FILE = "optuna.db"    # sqlite, written by releases before the journal; still resumable
FRONT_CSV = "pareto_front.csv"
DEFAULT_RESULTS_ROOT = "disparse_results"


# ------------------------------------------------------------------------------------ finding one
def study_file(results_dir: Path) -> Path:
    """The sweep's study file: ``optuna.journal``, or the sqlite ``optuna.db`` of a sweep started before the
    journal (kept and resumed as it is)."""
    legacy = results_dir / LEGACY_STUDY_FILE
    if legacy.exists() and not (results_dir / STUDY_FILE).exists():
        return legacy
    return results_dir / STUDY_FILE


def read_state(results_dir: Path) -> dict:
    """``sweep.json`` of a sweep to resume; a missing or broken one is a user error."""
    path = results_dir / STATE_FILE
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise UserInputError(f"--resume: {str(results_dir)!r} holds no readable {STATE_FILE} "
                             f"({type(err).__name__}); expected the results folder of a sweep") from None
    problem = _state_problem(state)
    if problem:
        raise UserInputError(f"{str(path)}: {problem}; expected the state file a sweep wrote (a JSON "
                             f"object with sweep_id, tracking_uri and overrides)")
    return state


def _state_problem(state) -> str | None:
    """What makes ``state`` not a ``sweep.json`` written by :func:`sweeps.run.state.write_state`, or None."""
    if not isinstance(state, dict):
        return f"holds a JSON {type(state).__name__} ({json.dumps(state)[:60]})"
    for key in ("sweep_id", "tracking_uri"):
        value = state.get(key)
        if key not in state:
            return f"{key} is missing"
        if not isinstance(value, str) or not value.strip() or "\n" in value:
            return f"{key} is {json.dumps(value)[:60]}, not a non-empty one-line string"
    overrides = state.get("overrides", [])
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        return f"overrides is {json.dumps(overrides)[:60]}, not a list of KEY=VALUE strings"
    for key in ("space_name", "experiment", "ray_address"):
        value = state.get(key)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            return f"{key} is {json.dumps(value)[:60]}, not a non-empty string"
    return None


def latest_results_dir(root: Path, name: str) -> Path | None:
    """The most recently updated sweep folder ``root/name`` or ``root/name-N``, or None."""
    found = [p for p in root.glob(f"{name}*") if (p / STATE_FILE).is_file()
             and (p.name == name or p.name[len(name):].lstrip("-").isdigit())]
    return max(found, key=lambda p: (p / STATE_FILE).stat().st_mtime) if found else None


def free_results_dir(root: Path, name: str) -> Path:
    """``root/name``, or ``root/name-2``, ``-3``... when that folder is taken (exists and is not empty)."""
    candidate, n = root / name, 1
    while candidate.exists() and any(candidate.iterdir()):
        n += 1
        candidate = root / f"{name}-{n}"
    return candidate


def lock_results_dir(results_dir: Path):
    """An exclusive lock on ``<results>/.lock`` for the whole run (released by the OS even on SIGKILL)."""
    import fcntl

    results_dir.mkdir(parents=True, exist_ok=True)
    handle = open(results_dir / ".lock", "w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise UserInputError(f"--results-dir: {str(results_dir)!r} is in use by another running sweep; "
                             f"expected it to finish (or be stopped) first") from None
    return handle


def next_ray_run(results_dir: Path) -> str:
    """``run-N``: the first Ray experiment folder name not yet used under ``<results>/ray``."""
    ray_dir = results_dir / "ray"
    n = 1
    while (ray_dir / f"run-{n}").exists():
        n += 1
    return f"run-{n}"


def write_front_csv(results_dir: Path, text: str | None, front: list, objectives: Sequence[str]) -> None:
    """``pareto_front.csv``: a local copy of the one logged to MLflow (``text``: objectives and params), or
    when there is none, the front's objectives. A convenience (MLflow's is the reference): errors ignored."""
    from ..tracking import front_csv

    try:
        text = text if text else front_csv(front, objectives, [])
    except Exception:
        return
    (results_dir / FRONT_CSV).write_text(text)
