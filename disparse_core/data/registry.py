"""Known workloads: their tasks (without building data) and builders."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from ..factories import is_factory
from .workload import TaskInfo, Workload, check_task_subset, task_info

__all__ = ["WORKLOADS", "build_workload", "workload_tasks", "workload_loss_weights"]


@dataclass(frozen=True)
class _Spec:
    tasks: Callable[[], dict[str, TaskInfo]]     # every task the workload can provide
    default_tasks: tuple[str, ...]
    build: Callable[..., Workload]
    needs_root: bool
    loss_weights: Callable[[], dict[str, float]] = field(default=dict)   # reference weights, 1 if absent


def _scenes_tasks():
    from .scenes import scenes_tasks
    return scenes_tasks()


def _build_scenes(**kw):
    from .scenes import build_scenes
    return build_scenes(**kw)


def _cues_tasks():
    from .cues import cues_tasks
    return cues_tasks()


def _cues_loss_weights():
    from .cues import cues_loss_weights
    return cues_loss_weights()


def _build_cues(**kw):
    from .cues import build_cues
    return build_cues(**kw)


def _digits_tasks():
    return {"left": task_info("classification", num_classes=10),
            "right": task_info("classification", num_classes=10)}


def _build_digits(**kw):
    from .digits import build_digits
    return build_digits(**kw)


def _nyuv2_tasks():
    return {"seg": task_info("segmentation", num_classes=40, ignore_index=255),
            "normal": task_info("normals"),
            "depth": task_info("depth")}


def _cityscapes_tasks():
    return {"seg": task_info("segmentation", num_classes=19, ignore_index=255),
            "depth": task_info("depth")}


def _taskonomy_tasks():
    return {"seg": task_info("segmentation", num_classes=17, ignore_index=255),
            "normal": task_info("normals"),
            "depth": task_info("depth"),
            "keypoint": task_info("regression"),
            "edge": task_info("regression")}


def _real(name):
    def build(**kw):
        from . import real
        return getattr(real, f"build_{name}")(**kw)
    return build


WORKLOADS: dict[str, _Spec] = {
    "scenes": _Spec(_scenes_tasks, ("seg", "depth", "normal"), _build_scenes, False),
    "digits": _Spec(_digits_tasks, ("left", "right"), _build_digits, False),
    "cues": _Spec(_cues_tasks, ("seg", "depth", "count", "orient"), _build_cues, False,
                  _cues_loss_weights),
    "nyuv2": _Spec(_nyuv2_tasks, ("seg", "normal"), _real("nyuv2"), True),
    "cityscapes": _Spec(_cityscapes_tasks, ("seg", "depth"), _real("cityscapes"), True),
    "taskonomy": _Spec(_taskonomy_tasks, ("seg", "normal", "depth", "keypoint", "edge"),
                       _real("taskonomy"), True),
}


def _spec(name) -> _Spec:
    if name not in WORKLOADS:
        raise ValueError(f"unknown workload {name!r}; expected one of {', '.join(WORKLOADS)}")
    return WORKLOADS[name]


def workload_tasks(name, tasks=None) -> dict[str, TaskInfo]:
    """``{task: TaskInfo}`` of a workload (its default tasks, or the subset ``tasks``), no data built.

    ``TaskInfo`` carries ``kind``, ``channels``, ``num_classes``, ``ignore_index``, ``metrics`` and
    ``primary`` (also readable as ``info["metrics"]``).
    """
    if is_factory(name):
        from .user import factory_workload_tasks
        return factory_workload_tasks(name, tasks)
    spec = _spec(name)
    available = spec.tasks()
    keep = check_task_subset(name, available, list(spec.default_tasks) if tasks is None else tasks)
    return {t: available[t] for t in keep}


def workload_loss_weights(name: str, tasks=None) -> dict[str, float]:
    """The workload's reference loss weights ``{task: λ_t}`` for its default tasks (or ``tasks``), no
    data built; ``{}`` when it declares none (all 1). A task left out weighs 1."""
    if is_factory(name):
        from .user import build_factory_workload
        workload = build_factory_workload(name, tasks=tasks)
        return {t: float(w) for t, w in workload.loss_weights.items() if t in workload.tasks}
    declared = _spec(name).loss_weights()
    return {t: float(declared[t]) for t in workload_tasks(name, tasks) if t in declared}


def build_workload(name: str, *, data_root=None, image_size=None, train_size=None, test_size=None,
                   tasks=None, seed: int = 0, cache_dir=None) -> Workload:
    """Build a workload by name, or by a factory spec ``{"factory": "module:function", "args": {...}}``
    (:mod:`disparse_core.data.user`; docs/extending.md).

    scenes, digits, cues: generated (``image_size``, ``train_size``, ``test_size`` set their size;
    scenes and cues are cached under ``cache_dir``, default ``$DISPARSE_CACHE`` or ``~/.cache/disparse-tune``).
    nyuv2, cityscapes, taskonomy: read from ``data_root`` in the reference layouts; ``image_size`` is
    the training crop (default 321, 224, 256), ``train_size``/``test_size`` keep the first N items.
    ``tasks``: a subset of the workload's tasks (default: its default tasks). ``seed``: split and
    augmentation seed. Bad names, sizes or paths raise ``ValueError`` with one line.
    """
    if is_factory(name):
        from .user import build_factory_workload
        return build_factory_workload(name, seed=seed, tasks=tasks, data_root=data_root, image_size=image_size,
                                      train_size=train_size, test_size=test_size)
    spec = _spec(name)
    keep = list(workload_tasks(name, tasks))
    if spec.needs_root and data_root is None:
        raise ValueError(f"workload {name!r} needs data_root (a folder in the reference layout)")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    workload = spec.build(data_root=data_root, image_size=image_size, train_size=train_size,
                          test_size=test_size, seed=seed, cache_dir=cache_dir, tasks=keep)
    return workload.select(keep)
