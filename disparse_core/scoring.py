"""Disentangled importance scores: one score per prunable weight per task, from that task's loss alone.

Criteria (DISPARSE.md §1), for task ``t`` and weight ``w``:

* ``snip``      ``|w · ∂L_t/∂w|`` summed over the batches (connection sensitivity at mask 1);
* ``magnitude`` ``|w|`` (the same for every task, no batch needed);
* ``taylor``    ``(Σ_b |∂L_t/∂w|) · w²``;
* ``gradient``  ``|∂L_t/∂w|`` summed over the batches (the dense gradient, masked positions included;
  with one batch it is the current-batch gradient the dynamic grow step uses).

Each batch costs one forward and T backward passes (``retain_graph``) over the same graph; the model
is never copied. Baselines (SNIP, IMP, RigL) use the same code with the task dimension collapsed to a
single pseudo-task (:func:`collapse_tasks`).
"""

from __future__ import annotations

from typing import Callable, Iterable, Mapping

import torch
from torch import Tensor, nn

from .config import CRITERIA
from .masks import get_masks, prunable_weights, record_effective_weights
from .ownership import check_losses, forward_tasks, ownership_from_outputs

__all__ = ["CRITERIA", "COLLAPSED_TASK", "per_task_gradients", "task_scores", "collapse_losses",
           "collapse_ownership", "collapse_tasks", "batch_task_losses"]

#: name of the single pseudo-task that baselines (SNIP, IMP, RigL, random, dense) score and decide with
COLLAPSED_TASK = "all_tasks"

Ownership = Mapping[str, frozenset]


def per_task_gradients(task_losses: Mapping[str, Tensor], weights: Mapping[str, Tensor],
                       ownership: Mapping[str, frozenset[str]]) -> dict[str, dict[str, Tensor]]:
    """``{task: {name: ∂L_task/∂weight}}`` for the tensors each task owns.

    ``task_losses`` come from ONE forward pass; ``weights`` are the effective weights recorded during
    that pass (:func:`disparse_core.masks.record_effective_weights`), so the gradients are dense,
    masked positions included. One backward pass per task, all retaining the graph. A tensor the
    loss does not reach (despite ownership) gets a zero gradient rather than an error.
    """
    out: dict[str, dict[str, Tensor]] = {}
    for task, loss in task_losses.items():
        names = [n for n, owners in ownership.items() if task in owners and n in weights]
        if not names:
            out[task] = {}
            continue
        tensors = [weights[n] for n in names]
        grads = torch.autograd.grad(loss, tensors, retain_graph=True, allow_unused=True)
        out[task] = {n: (g if g is not None else torch.zeros_like(w)).detach()
                     for n, w, g in zip(names, tensors, grads)}
    return out


# ---------------------------------------------------------------------------------------------------
# collapsing the task dimension (baselines)


def collapse_losses(task_losses: Mapping[str, Tensor],
                    loss_weights: Mapping[str, float] | None = None) -> dict[str, Tensor]:
    """``{COLLAPSED_TASK: Σ_t λ_t L_t}`` (λ_t = 1 for a task not named in ``loss_weights``)."""
    weights = loss_weights or {}
    total = sum(float(weights.get(t, 1.0)) * loss for t, loss in task_losses.items())
    return {COLLAPSED_TASK: total}


def collapse_ownership(ownership: Ownership) -> dict[str, frozenset[str]]:
    """The pseudo-task owns every tensor some task owns; a tensor no output reaches stays unowned."""
    every = frozenset({COLLAPSED_TASK})
    return {name: (every if owners else frozenset()) for name, owners in ownership.items()}


def collapse_tasks(task_losses: Mapping[str, Tensor], loss_weights: Mapping[str, float] | None = None
                   ) -> tuple[dict[str, Tensor], Callable[[Ownership], dict[str, frozenset[str]]]]:
    """``(collapsed losses, ownership mapper)``: run any per-task step on the summed loss instead.

    Baselines are the DiSparse code path seen through this helper, e.g.::

        losses, own_fn = collapse_tasks(task_losses, {"seg": 1.0, "normal": 20.0})
        grads = per_task_gradients(losses, weights, own_fn(ownership))   # RigL's grow gradient
    """
    return collapse_losses(task_losses, loss_weights), collapse_ownership


# ---------------------------------------------------------------------------------------------------
# scores


def _to_device(obj, device):
    if isinstance(obj, Tensor):
        return obj.to(device)
    if isinstance(obj, Mapping):
        return {k: _to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_device(v, device) for v in obj)
    return obj


def batch_task_losses(outputs: Mapping[str, Tensor], targets: Mapping[str, Tensor],
                      losses: Mapping[str, Callable]) -> dict[str, Tensor]:
    """``{task: losses[task](outputs[task], targets[task])}``; a missing target is a ``ValueError``."""
    missing = [t for t in outputs if t not in targets]
    if missing:
        raise ValueError(f"batch has no target for task {missing[0]!r} (targets for {sorted(targets)})")
    out = {t: losses[t](o, targets[t]) for t, o in outputs.items()}
    for t, loss in out.items():
        check_scalar_loss(t, loss)
    return out


def check_scalar_loss(task: str, loss) -> None:
    """A task's loss must be one number (a 0-d tensor): one clear error otherwise."""
    if not (isinstance(loss, Tensor) and loss.dim() == 0):
        got = f"shape {tuple(loss.shape)}" if isinstance(loss, Tensor) else type(loss).__name__
        raise ValueError(f"loss for task {task!r} must return a scalar tensor, got {got} "
                         f"(reduce it, e.g. with .mean())")


def _check_batch(batch) -> tuple:
    if not (isinstance(batch, (tuple, list)) and len(batch) == 2 and isinstance(batch[1], Mapping)):
        raise ValueError(f"a batch must be (inputs, {{task: target}}), got {type(batch).__name__}")
    return batch[0], batch[1]


def task_scores(model: nn.Module, batches: Iterable, losses: Mapping[str, Callable], *,
                criterion: str, ownership: Ownership | None = None, collapse: bool = False,
                loss_weights: Mapping[str, float] | None = None) -> dict[str, dict[str, Tensor]]:
    """Per-task importance scores ``{task: {canonical name: score tensor}}`` (DISPARSE.md §1).

    Each task gets scores for the tensors it owns only. ``batches`` is any iterable of
    ``(inputs, {task: target})``; every batch is used (slice it first to score on ``n`` batches).
    Each batch costs one forward and T backward passes; the model's parameters, ``.grad`` and
    mode are left as they are (BatchNorm running statistics update in train mode, as in training).
    ``magnitude`` needs no gradient: only the first batch is read, to find ownership when it is not
    given. ``collapse=True`` scores one pseudo-task :data:`COLLAPSED_TASK` on ``Σ λ_t L_t``
    (``loss_weights``, default 1), owning every tensor some task owns — the SNIP/IMP baselines.
    """
    if criterion not in CRITERIA:
        raise ValueError(f"unknown criterion {criterion!r} (expected one of {', '.join(CRITERIA)})")
    params = prunable_weights(model)
    if not params:
        raise ValueError("model has no prunable tensors (weights of Conv2d or Linear layers)")
    device = next(iter(params.values())).device
    scores: dict[str, dict[str, Tensor]] | None = None
    task_own: Ownership | None = None
    n_batches = 0
    current = get_masks(model) if criterion != "gradient" else {}
    values = {n: p.detach() * current[n].to(p.dtype) for n, p in params.items() if n in current}   # raw * mask
    del current
    for batch in batches:
        inputs, targets = _check_batch(batch)
        inputs, targets = _to_device(inputs, device), _to_device(targets, device)
        with torch.enable_grad(), record_effective_weights(model) as effective:
            outputs = forward_tasks(model, inputs)
            if n_batches == 0:
                check_losses(outputs, losses)
                if ownership is None:
                    ownership = ownership_from_outputs(model, outputs)
                task_own = collapse_ownership(ownership) if collapse else dict(ownership)
                tasks = [COLLAPSED_TASK] if collapse else list(outputs)
                scores = _empty_scores(tasks, task_own, effective())
            weights = effective()
            if criterion == "magnitude":
                n_batches += 1
                break
            task_losses = batch_task_losses(outputs, targets, losses)
            if collapse:
                task_losses = collapse_losses(task_losses, loss_weights)
            grads = per_task_gradients(task_losses, weights, task_own)
        for task, by_name in grads.items():
            for name, g in by_name.items():
                g = g.float().abs()
                if criterion == "snip":
                    g = g * values[name].float().abs()
                scores[task][name] += g
        n_batches += 1
    if n_batches == 0:
        raise ValueError("no batches to score with (got an empty batch list)")
    if criterion in ("magnitude", "taylor"):
        for task, by_name in scores.items():
            for name, s in by_name.items():
                w = values[name].float()
                by_name[name] = w.abs() if criterion == "magnitude" else s * w.square()
    return scores


def _empty_scores(tasks: list[str], ownership: Ownership, weights: Mapping[str, Tensor]
                  ) -> dict[str, dict[str, Tensor]]:
    return {t: {name: torch.zeros_like(weights[name], dtype=torch.float32)
                for name, owners in ownership.items() if t in owners and name in weights}
            for t in tasks}
