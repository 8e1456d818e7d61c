"""A workload or an architecture of your own in a space, checked before any trial starts.

``workload.workload`` and ``workload.arch`` take a factory, ``"module:function"`` or
``{factory: "module:function", args: {...}}`` (the contract: docs/extending.md). When a space names one,
:func:`check_user_factories` calls the factories once on this machine, as a trial would, and checks what
they return: a ``Workload`` with known task kinds, a model whose ``forward(x)`` gives a tensor for every
task of the space and none the data lacks, a loss and metrics that work on one batch of two items, and at
least one prunable layer. Each problem is one :class:`~sweeps.errors.SpaceError` line naming the key, the
value and what was expected (exit code 2); nothing is trained or written. Private to :mod:`sweeps.space`.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from disparse_core.config import ARCHS, WORKLOADS
from disparse_core.factories import add_search_folder, check_factory, code_fingerprint, is_factory, module_paths, user_code_paths

from ..errors import SpaceError

__all__ = ["UserFactories", "names_factory", "check_user_factories"]

_SIZES = ("data_root", "image_size", "train_size", "test_size")


@dataclass
class UserFactories:
    """What the check learnt: the files to ship to Ray workers, custom metrics' directions, the training
    set's size."""
    code: tuple[Path, ...] = ()
    metric_directions: dict = field(default_factory=dict)
    train_size: int = 0
    specs: dict = field(default_factory=dict)       # {"workload"/"arch": the spec with its code fingerprint}


def names_factory(base: Mapping[str, Any]) -> bool:
    """True when the fixed config names a workload or an arch of the user's own."""
    return any(isinstance(base.get(k), Mapping) or (isinstance(base.get(k), str) and ":" in base[k])
               for k in ("workload", "arch"))


def _error(err: ValueError) -> SpaceError:
    """The core's message starts with its trial-config key: the space has it under ``workload.``."""
    return SpaceError(f"workload.{err}")


def _shape(x: Any) -> str:
    return f"shape {tuple(x.shape)}" if hasattr(x, "shape") else type(x).__name__


def check_user_factories(base: Mapping[str, Any], space_dir: Path | None = None) -> UserFactories:
    """Build the space's workload and model once and check them (see the module docstring). Their
    modules are looked for on ``sys.path``, in the working directory, then in ``space_dir``."""
    import torch

    from disparse_core.data import build_workload
    from disparse_core.data.workload import check_task_subset
    from disparse_core.masks import prunable_weights
    from disparse_core.metrics import make_meter
    from disparse_core.models import build_model
    from disparse_core.ownership import forward_tasks
    from disparse_core.tasks import build_losses

    if space_dir is not None:
        add_search_folder(space_dir)
    imported_before = set(sys.modules)
    try:
        workload_spec = check_factory("workload", base.get("workload", "scenes"), WORKLOADS, "workload")
        arch_spec = check_factory("arch", base.get("arch", "small"), ARCHS, "arch")
    except ValueError as err:
        raise _error(err) from None
    seed = int(base.get("seed", 0) or 0)
    sizes = {k: base[k] for k in _SIZES if base.get(k) is not None}
    try:
        full = build_workload(workload_spec, seed=seed, **sizes)
    except ValueError as err:
        raise _error(err) from None
    try:
        tasks = check_task_subset(_name(workload_spec), full.tasks, base.get("tasks"))
    except ValueError as err:
        raise SpaceError(f"workload.tasks: {err}") from None
    workload = full.select(tasks)
    kwargs: dict[str, Any] = {"task_kinds": workload.task_kinds, "in_channels": workload.in_channels}
    if base.get("width") is not None:
        kwargs["width"] = base["width"]
    try:
        model = build_model(arch_spec, workload.task_channels, seed=seed, **kwargs)
    except ValueError as err:
        raise _error(err) from None
    arch = f"the model of {arch_spec['factory']!r}" if is_factory(arch_spec) else f"arch {arch_spec!r}"
    if not prunable_weights(model):
        raise SpaceError(f"workload.arch: {arch} has no prunable layer (no nn.Conv2d or nn.Linear that is not "
                         f"excluded); expected at least one layer to prune")
    inputs, targets = next(iter(workload.train_loader(min(2, len(workload.train)), seed=0, drop_last=False)))
    if not isinstance(inputs, torch.Tensor) or not isinstance(targets, Mapping):
        raise SpaceError(f"workload.workload: {_name(workload_spec)!r} gives items of ({type(inputs).__name__}, "
                         f"{type(targets).__name__}); expected (input tensor, {{task: target}}) (several inputs "
                         f"go side by side in one tensor)")
    try:
        outputs = forward_tasks(model, inputs)
    except ValueError as err:
        raise SpaceError(f"workload.arch: {arch}: {err}; expected forward(x) -> {{task: tensor}}") from None
    except Exception as err:        # noqa: BLE001 - the user's model: whatever it raises, in one line
        raise SpaceError(f"workload.arch: {arch} raised {type(err).__name__} on a batch of inputs of "
                         f"{_shape(inputs)}: {_text(err)}; expected forward(x) -> {{task: tensor}}") from None
    _check_outputs(arch, outputs, tasks, full.tasks)
    _check_losses_and_metrics(workload, outputs, targets, build_losses, make_meter, torch)
    # the factories' modules, and the modules of the working directory they imported (helpers)
    code = [p for spec in (workload_spec, arch_spec) if is_factory(spec) for p in user_code_paths(spec)]
    code += module_paths(sorted(n for n in set(sys.modules) - imported_before
                                if n.split(".")[0] not in ("disparse_core", "sweeps", "__main__")))
    directions = {m: "maximize" if _higher(m) else "minimize"
                  for info in workload.tasks.values() if info.kind == "custom" for m in info.metrics}
    specs = {key: {**spec, "code": code_fingerprint(spec)} for key, spec in
             (("workload", workload_spec), ("arch", arch_spec)) if is_factory(spec)}
    return UserFactories(code=tuple(dict.fromkeys(code)), metric_directions=directions,
                         train_size=len(workload.train), specs=specs)


def _name(spec: Any) -> str:
    return spec["factory"] if is_factory(spec) else str(spec)


def _text(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text if len(text) <= 300 else text[:297] + "..."


def _higher(metric: str) -> bool:
    from disparse_core.metric_keys import higher_is_better
    return higher_is_better(metric)


def _check_outputs(arch: str, outputs: Mapping, tasks: list[str], data_tasks: Mapping) -> None:
    missing = [t for t in tasks if t not in outputs]
    if missing:
        raise SpaceError(f"workload.arch: {arch} returns no output for task {missing[0]!r} (it returns "
                         f"{sorted(outputs)}); expected a tensor for every task of the space: {', '.join(tasks)}")
    for task in outputs:
        if task not in data_tasks:
            raise SpaceError(f"workload.arch: {arch} returns task {task!r}, which the data lacks (its tasks: "
                             f"{', '.join(data_tasks)}); expected only tasks of the workload")
        if task not in tasks:
            raise SpaceError(f"workload.arch: {arch} returns task {task!r}, which the space leaves out "
                             f"(workload.tasks: {', '.join(tasks)}); expected exactly those tasks (build the "
                             f"heads from the task_channels argument)")


def _check_losses_and_metrics(workload, outputs, targets, build_losses, make_meter, torch) -> None:
    losses = build_losses(workload)
    for task, info in workload.tasks.items():
        out, target = outputs[task], targets[task]
        where = f"workload.workload: task {task!r} ({info.kind})"
        try:
            value = losses[task](out, target)
        except Exception as err:    # noqa: BLE001
            raise SpaceError(f"{where}: its loss on the model's output of {_shape(out)} and a target of "
                             f"{_shape(target)} raised {type(err).__name__}: {_text(err)}; expected an output "
                             f"its loss takes") from None
        if not isinstance(value, torch.Tensor) or value.dim() != 0 or not math.isfinite(float(value.detach())):
            raise SpaceError(f"{where}: its loss gave {_shape(value)} = {value!r:.60}; expected a finite scalar "
                             f"tensor")
        try:
            meter = make_meter(info)
            meter.update(out.detach().float(), target)
            meter.compute()
        except Exception as err:    # noqa: BLE001
            raise SpaceError(f"{where}: its metrics on the model's output of {_shape(out)} raised "
                             f"{type(err).__name__}: {_text(err)}; expected metrics that take that output") from None
