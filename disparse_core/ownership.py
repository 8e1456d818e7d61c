"""Which tasks use which prunable tensor, read from the autograd graph (never from names).

A task *owns* a tensor when the task's output depends on it, i.e. when walking the autograd graph
back from that output reaches the tensor's leaf. This works for any module whose ``forward`` returns
``{task: output}``: fully shared backbones, per-task heads and backbones that branch per task.
"""

from __future__ import annotations

from typing import Callable, Mapping

import torch
from torch import nn

from .masks import prunable_weights

__all__ = ["forward_tasks", "check_losses", "task_ownership", "ownership_from_outputs", "owners_by_task"]

Losses = Mapping[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]


def forward_tasks(model: nn.Module, inputs) -> dict[str, torch.Tensor]:
    """Run the model and check that it honours the contract ``forward(x) -> {task: tensor}``."""
    out = model(inputs)
    if not isinstance(out, Mapping) or not out:
        raise ValueError(f"model forward must return a non-empty dict {{task: output}}, "
                         f"got {type(out).__name__}")
    bad = [k for k, v in out.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(f"model output for task {bad[0]!r} is not a tensor")
    return dict(out)


def check_losses(tasks, losses: Losses) -> None:
    """Every task the model predicts needs a loss, and every loss a task."""
    missing = [t for t in tasks if t not in losses]
    if missing:
        raise ValueError(f"task {missing[0]!r} has no loss (losses given for {sorted(losses)})")
    extra = [t for t in losses if t not in tasks]
    if extra:
        raise ValueError(f"loss given for unknown task {extra[0]!r} (model tasks: {sorted(tasks)})")
    for t, fn in losses.items():
        if not callable(fn):
            raise ValueError(f"loss for task {t!r} is not callable")


def _reachable_leaves(root: torch.Tensor) -> set[int]:
    """ids of the leaf tensors that the autograd graph of ``root`` reaches."""
    found: set[int] = set()
    if root.grad_fn is None:
        if root.requires_grad:
            found.add(id(root))
        return found
    seen: set = set()
    stack = [root.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        variable = getattr(node, "variable", None)
        if variable is not None:
            found.add(id(variable))
        stack.extend(fn for fn, _ in node.next_functions)
    return found


def task_ownership(model: nn.Module, inputs) -> dict[str, frozenset[str]]:
    """``{canonical name: frozenset(tasks)}`` for every prunable tensor.

    One forward pass with gradients enabled (in eval mode, so BatchNorm statistics are left as
    they were); no backward pass is run. A tensor that no task reaches
    gets an empty set (it cannot influence any output and is never kept by a task decision).
    """
    was_training = {m: m.training for m in model.modules()}
    model.eval()  # the graph is the same; eval keeps BatchNorm running statistics untouched
    try:
        with torch.enable_grad():
            outputs = forward_tasks(model, inputs)
            return ownership_from_outputs(model, outputs)
    finally:
        for m, flag in was_training.items():
            m.training = flag


def ownership_from_outputs(model: nn.Module, outputs: Mapping[str, torch.Tensor]
                           ) -> dict[str, frozenset[str]]:
    """Ownership read from the graphs of outputs already computed (with gradients enabled).

    Lets a caller that runs a forward pass anyway (scoring) get ownership without a second one.
    """
    weights = prunable_weights(model)
    by_id: dict[int, str] = {}
    for name, p in weights.items():
        if id(p) in by_id:
            raise ValueError(f"prunable tensors {by_id[id(p)]!r} and {name!r} are the same Parameter "
                             f"(tied weights): masks cannot differ per module; untie them or tie after pruning")
        by_id[id(p)] = name
    unreached = [t for t, o in outputs.items() if o.grad_fn is None and not o.requires_grad]
    if unreached:
        raise ValueError(f"model output for task {unreached[0]!r} is not connected to the autograd graph "
                         f"(forward under torch.no_grad() or .detach()?): its ownership cannot be read")
    owners: dict[str, set[str]] = {name: set() for name in weights}
    for task, out in outputs.items():
        for leaf in _reachable_leaves(out):
            name = by_id.get(leaf)
            if name is not None:
                owners[name].add(task)
    return {name: frozenset(ts) for name, ts in owners.items()}


def owners_by_task(ownership: Mapping[str, frozenset[str]]) -> dict[str, list[str]]:
    """Invert ownership: ``{task: [canonical names it owns]}`` in model order."""
    out: dict[str, list[str]] = {}
    for name, tasks in ownership.items():
        for t in sorted(tasks):
            out.setdefault(t, []).append(name)
    return out
