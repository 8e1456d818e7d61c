"""Multitask workloads: built-in generators (``scenes``, ``digits``, ``cues``) and loaders for real data
sets in the reference layouts (``nyuv2``, ``cityscapes``, ``taskonomy``).

``build_workload(name, ...) -> Workload``; ``workload_tasks(name)`` describes the tasks without
building any data (the sweep validates budgets against it). Both also take a factory of your own,
``{"factory": "module:function", "args": {...}}`` (docs/extending.md); ``custom_task`` describes a task
of a kind of your own (its loss, metrics and their directions).
"""

from __future__ import annotations

from .registry import WORKLOADS, build_workload, workload_loss_weights, workload_tasks
from .workload import KIND_METRICS, TASK_KINDS, SeededLoader, TaskInfo, Workload, custom_task, task_info

__all__ = [
    "WORKLOADS",
    "build_workload",
    "workload_tasks",
    "workload_loss_weights",
    "Workload",
    "TaskInfo",
    "SeededLoader",
    "TASK_KINDS",
    "KIND_METRICS",
    "task_info",
    "custom_task",
]
