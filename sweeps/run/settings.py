"""What a validated space means for running it: resources per trial, early stopping, the metrics a
trial watches for NaN, the final hypervolume.

Pure functions of a :class:`~sweeps.space.SweepSpec`. Part of :mod:`sweeps.run`.
"""

from __future__ import annotations

__all__ = ["trial_resources", "trial_threads", "early_stopping", "watched_metrics",
           "final_hypervolume"]


def trial_resources(spec) -> tuple[float, float]:
    """(CPUs, GPUs) each trial asks Ray for (the baseline too)."""
    cpu = float(spec.resources.get("cpu", 1) or 0)
    gpu = float(spec.resources.get("gpu", 0) or 0)
    return cpu, gpu


def trial_threads(spec) -> int:
    """torch threads of one trial (or of the baseline): its whole CPUs, at least 1."""
    return max(1, int(trial_resources(spec)[0]))


def early_stopping(spec):
    """The space's ``early_stopping`` as a :class:`sweeps.ray.EarlyStopping`, or None.

    ``metric: objectives`` (the default for a sweep with more than one objective) gives multi-objective
    ASHA: ``objectives`` holds every ``(name, direction)`` of the sweep (rule: :mod:`sweeps.ray.mo_asha`).
    A single ``metric`` gives the same scheduler on that metric alone (``objectives`` is that one metric
    with its direction): ASHA's rule, with the same rungs and the same records kept for ``--resume``.
    """
    es = dict(spec.early_stopping or {})
    if es.get("type", "none") in (None, "none"):
        return None
    from ..ray import EarlyStopping

    max_t = int(es.get("max_steps") or _max_steps(spec))
    grace = int(es.get("grace_steps") or es.get("grace_period") or 1)
    factor = float(es.get("reduction_factor", 2))
    if es.get("metric") == "objectives":
        return EarlyStopping(metric="objectives", mode="max", max_t=max_t, grace_period=grace,
                             reduction_factor=factor, time_attr="step",
                             objectives=tuple((o.name, o.direction) for o in spec.objectives),
                             keep_non_dominated=bool(es.get("keep_non_dominated", True)))
    mode = str(es.get("mode") or "").lower()
    mode = {"maximize": "max", "minimize": "min"}.get(mode, mode)
    if mode not in ("max", "min"):
        from ..budgets import higher_is_better
        mode = "max" if higher_is_better(es["metric"]) else "min"
    return EarlyStopping(metric=es["metric"], mode=mode, max_t=max_t, grace_period=grace,
                         reduction_factor=factor, time_attr="step",
                         objectives=((es["metric"], "maximize" if mode == "max" else "minimize"),))


def _max_steps(spec) -> int:
    """The longest training a trial can get: the largest ``steps`` the space can sample, else the base."""
    param = spec.param.get("steps")
    if param is not None:
        values = param.possible_values()
        return int(max(values) if values else param.high)
    return int(spec.workload.get("steps", 300))


def watched_metrics(spec) -> list[str]:
    """Metrics a trial fails on when NaN: the objectives and the early-stopping metric."""
    names = list(spec.metric_names)
    es = spec.early_stopping or {}
    if es.get("metric") and es["metric"] != "objectives" and es["metric"] not in names:
        names.append(es["metric"])
    return names


def final_hypervolume(points: list, dirs: list, fixed: list | None = None) -> tuple[list | None, list | None]:
    """(reference point, hypervolume after each fully trained trial) with one reference point: the
    objectives' ``reference`` values where the space gives them (``fixed``), else from all the trials at
    once (:func:`sweeps.pareto.default_reference`), so that it does not depend on the order in which
    trials finished."""
    if not points:
        return None, None
    from ..pareto import default_reference, hypervolume_history, with_fixed

    try:
        ref = with_fixed(default_reference(points, dirs), fixed)
        return ref, hypervolume_history(points, dirs, ref)
    except ValueError:
        return None, None


def fixed_reference(spec) -> list | None:
    """The space's per-objective hypervolume reference values (``None`` where not given), or ``None``."""
    values = [o.reference for o in spec.objectives]
    return values if any(v is not None for v in values) else None
