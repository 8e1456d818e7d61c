"""Workloads built by a factory of your own (``workload: {factory: "mydata:build", args: {...}}``).

The factory returns a :class:`~disparse_core.data.Workload` (docs/extending.md): train and test data sets
whose items are ``(input, {task: target})`` and ``{task: TaskInfo}`` (:func:`task_info` for a built-in
kind, :func:`custom_task` for a kind of your own). It is called with its ``args``, plus ``seed`` when it
takes one, and ``data_root`` / ``image_size`` / ``train_size`` / ``test_size`` when the config sets them.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Mapping

from ..factories import call_factory, factory_key
from .workload import TASK_KINDS, TaskInfo, Workload, check_task_subset

__all__ = ["build_factory_workload", "factory_workload_tasks", "check_workload"]

KEY = "workload"
_BUILT: "OrderedDict[tuple, Workload]" = OrderedDict()      # the last two built (a trial checks, then builds)


def check_workload(workload: Any, factory: str) -> Workload:
    """What a workload factory returned, checked (one-line ``ValueError`` naming the factory)."""
    where = f"{KEY}: factory {factory!r}"
    if not isinstance(workload, Workload):
        raise ValueError(f"{where} returned {type(workload).__name__}; expected a disparse_core.data.Workload "
                         f"(name, tasks, in_channels, train, test)")
    if not isinstance(workload.tasks, Mapping) or not workload.tasks:
        raise ValueError(f"{where} returned a Workload with no tasks; expected {{task: TaskInfo}}")
    for task, info in workload.tasks.items():
        if not isinstance(task, str) or not task.isidentifier():
            raise ValueError(f"{where}: task name {task!r} is not an identifier; expected e.g. 'seg'")
        if not isinstance(info, TaskInfo):
            raise ValueError(f"{where}: task {task!r} is described by {type(info).__name__}; expected a "
                             f"TaskInfo (disparse_core.data.task_info or custom_task)")
        if info.kind not in TASK_KINDS + ("custom",):
            raise ValueError(f"{where}: task {task!r} has kind {info.kind!r}; expected one of "
                             f"{', '.join(TASK_KINDS)} or custom (disparse_core.data.custom_task)")
        if info.kind == "custom" and (info.loss is None or not info.metric_fns):
            raise ValueError(f"{where}: task {task!r} of kind custom has no loss or metrics; expected it made "
                             f"by disparse_core.data.custom_task(loss=..., metrics=...)")
    for part in ("train", "test"):
        data = getattr(workload, part)
        try:
            size = len(data)
        except TypeError:
            raise ValueError(f"{where}: its {part} set {type(data).__name__} has no len(); expected a "
                             f"torch Dataset of (input, {{task: target}})") from None
        if size < 1:
            raise ValueError(f"{where}: its {part} set is empty; expected at least one item")
    return workload


def build_factory_workload(spec: Mapping[str, Any], *, seed: int = 0, tasks=None, **given) -> Workload:
    """Call the factory (the last two results are kept: a trial's checks and its run share one build)."""
    required = {k: v for k, v in given.items() if v is not None}
    key = (factory_key(spec), seed, tuple(sorted((k, repr(v)) for k, v in required.items())))
    if key not in _BUILT:
        workload = call_factory(spec, KEY, offered={"seed": seed}, required=required)
        _BUILT[key] = check_workload(workload, spec["factory"])
        while len(_BUILT) > 2:
            _BUILT.popitem(last=False)
    workload = _BUILT[key]
    return workload.select(check_task_subset(spec["factory"], workload.tasks, tasks))


def factory_workload_tasks(spec: Mapping[str, Any], tasks=None) -> dict[str, TaskInfo]:
    """``{task: TaskInfo}`` of a factory workload (built once with seed 0 to learn them)."""
    workload = build_factory_workload(spec)
    keep = check_task_subset(spec["factory"], workload.tasks, tasks)
    return {t: workload.tasks[t] for t in keep}
