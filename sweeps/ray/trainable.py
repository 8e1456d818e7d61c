"""What runs on a Ray worker: the function trainable around ``run_trial``, and the dense baseline task.

Which failures are retried. ``max_retries`` (the space file) exists for failures that may not happen
again: the worker process died (OOM killer, SIGKILL, a lost node: Ray reports those itself, the trial
code never sees them) or the trial ran out of memory (``MemoryError``, CUDA out of memory when several
trials share a GPU). Anything else the trial code raises (a bad configuration, a diverging loss, a NaN
metric, a bug) would fail the same way again, so retrying it only doubles its cost. Ray Tune retries
every failure up to ``FailureConfig.max_failures`` and offers no hook to tell the two apart, so the
trainable tells the driver: before re-raising a deterministic error it reports one marker result
(:data:`FATAL`, no metrics, no ``step``: schedulers and MLflow ignore it), and the driver's callback
(:class:`sweeps.ray.backend.SweepCallback`) sets that trial's allowed failures to zero before Ray
handles the error. The trial still ends as ``ERROR`` in Ray, ``FAIL`` in Optuna and ``FAILED`` in MLflow.

Part of :mod:`sweeps.ray` (every Ray import lives in that package).
"""

from __future__ import annotations

import math
import sys
from typing import Any, Mapping

import ray
from ray import tune

from ..searcher import is_final

__all__ = ["FATAL", "trainable", "baseline_task", "current_node_id", "is_retryable"]

#: key of the marker result a trial reports just before it raises an error that a retry would repeat
FATAL = "disparse_fatal"


def current_node_id() -> str:
    return ray.get_runtime_context().get_node_id()


def is_retryable(err: BaseException) -> bool:
    """True for failures a retry may not meet again: memory exhausted (host, or CUDA's allocator)."""
    if isinstance(err, MemoryError):
        return True
    cuda_oom = getattr(getattr(sys.modules.get("torch"), "cuda", None), "OutOfMemoryError", None)
    return cuda_oom is not None and isinstance(err, cuda_oom)


def _check_finite(metrics: Mapping[str, Any], watch) -> None:
    for name in watch:
        value = metrics.get(name)
        if isinstance(value, float) and math.isnan(value):
            raise FloatingPointError(f"metric {name} is NaN at step {metrics.get('step')}")


def trainable(config: dict) -> None:
    """Ray function trainable: one ``run_trial`` call, every evaluation reported to Tune.

    ``config`` is ``{"trial_key", "params", "trial": run_trial config, "watch": [metric names], "run": {...}}``;
    ``run`` holds ``run_trial``'s keyword options (``start_from``: the sweep's dense snapshots).
    The final report is held back until ``run_trial`` returns so that it can carry ``mask_iou``.
    """
    from disparse_core.trial import run_trial

    watch = list(config.get("watch", ()))
    node_id = current_node_id()
    held: dict[str, dict] = {}

    def report(metrics: Mapping[str, Any]) -> None:
        metrics = dict(metrics)
        _check_finite(metrics, watch)
        metrics["node_id"] = node_id
        if is_final(metrics):
            held["final"] = metrics
        else:
            tune.report(metrics)

    try:
        result = run_trial(dict(config["trial"]), report=report, **dict(config.get("run") or {}))
        final = held.get("final")
        if final is None:  # run_trial returned without a final report: its result is the final one
            final = {k: v for k, v in result.items() if k not in _NOT_REPORTED}
            final.update(final=1.0, node_id=node_id)
            _check_finite(final, watch)
    except Exception as err:
        if not is_retryable(err):
            tune.report({FATAL: 1.0})
        raise
    iou = result.get("mask_iou") if isinstance(result, Mapping) else None
    if isinstance(iou, Mapping) and iou:
        final["mask_iou"] = {str(k): float(v) for k, v in iou.items()}
    shed = result.get("watershed") if isinstance(result, Mapping) else None
    if isinstance(shed, Mapping):
        final["watershed"] = watershed_record(shed)
    tune.report(final)


#: run_trial result keys that are not metrics (per-layer or per-task dicts)
_NOT_REPORTED = frozenset({"mask_iou", "watershed", "task_min_density"})


def watershed_record(shed: Mapping[str, Any]) -> dict:
    """A trial's ``watershed`` summary as plain JSON values: ``{layer, cutoff, starved}``."""
    return {"layer": None if shed.get("layer") is None else str(shed["layer"]),
            "cutoff": None if shed.get("cutoff") is None else int(shed["cutoff"]),
            "starved": [str(n) for n in shed.get("starved") or ()]}


def baseline_task(config: dict, snapshots: dict | None = None) -> dict:
    """The dense baseline as a Ray task (same code path as a trial, no Tune session); ``snapshots``
    (``{step: path}``): the states its pretrained trials start from (``run_trial``)."""
    from disparse_core.trial import run_trial

    result = dict(run_trial(dict(config), snapshots={int(k): v for k, v in (snapshots or {}).items()}))
    result["node_id"] = current_node_id()
    return result
