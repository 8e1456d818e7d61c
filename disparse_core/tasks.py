"""Task kinds and their losses.

A task has a *kind* that fixes its loss and its metrics:

| kind             | output            | target                               | loss                          |
|------------------|-------------------|--------------------------------------|-------------------------------|
| `segmentation`   | `(N, C, H, W)`    | `(N, H, W)` long, `ignore_index`     | cross-entropy (class weights) |
| `normals`        | `(N, 3, H, W)`    | `(N, 3, H, W)`, all-zero = invalid   | `1 - cos` on valid pixels     |
| `depth`          | `(N, 1, H, W)`    | `(N, 1, H, W)` or `(N, H, W)`, > 0   | L1 on valid pixels (`gt > 0`) |
| `classification` | `(N, C)`          | `(N,)` long                          | cross-entropy                 |
| `regression`     | `(N, 1, H, W)`    | same; `ignore_value` = invalid       | L1 on valid pixels            |

Loss weights: :func:`build_losses` returns the **raw** per-task losses. The sparsifiers rank each task's
weights by that task's own loss, and a per-task ranking does not change when the loss is scaled, so
they get the raw losses; only the training total ``Σ λ_t L_t`` (:func:`weighted_total`) and the
collapsed baselines (SNIP, RigL: one score from the summed loss) use the weights
(:func:`weighted_losses`).

Every loss returns a differentiable zero (not NaN) when a batch has no valid pixel, so a crop that is
all-ignore never poisons training; a real NaN/inf is caught by the trial runner.
"""

from __future__ import annotations

from typing import Callable, Mapping

import torch
import torch.nn.functional as F

__all__ = [
    "KINDS",
    "canonical_kind",
    "segmentation_loss",
    "normals_loss",
    "depth_loss",
    "classification_loss",
    "regression_loss",
    "build_losses",
    "check_loss_weights",
    "weighted_losses",
    "weighted_total",
    "valid_normals",
    "valid_depth",
    "valid_regression",
]

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

KINDS = ("segmentation", "normals", "depth", "classification", "regression")
_ALIASES = {
    "segmentation": "segmentation", "seg": "segmentation", "semseg": "segmentation",
    "normals": "normals", "normal": "normals", "surface_normals": "normals",
    "depth": "depth",
    "classification": "classification", "class": "classification", "cls": "classification",
    "regression": "regression",
}


def canonical_kind(kind: str) -> str:
    """Map a kind or a common alias (``seg``, ``normal``, ``cls``) to one of :data:`KINDS`."""
    try:
        return _ALIASES[str(kind).lower()]
    except KeyError:
        raise ValueError(f"unknown task kind {kind!r}; expected one of {list(KINDS)}") from None


def _zero_like(output: torch.Tensor) -> torch.Tensor:
    """A zero that keeps the graph (so ``backward`` still works on an all-invalid batch)."""
    return output.sum() * 0.0


def segmentation_loss(ignore_index: int | None = 255,
                      class_weights: torch.Tensor | None = None) -> Loss:
    """Pixel-wise cross-entropy, ignored pixels excluded; mean over the remaining pixels."""
    ignore = -100 if ignore_index is None else int(ignore_index)

    def loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = target.long()
        if target.dim() == output.dim():          # (N, 1, H, W) -> (N, H, W)
            target = target.squeeze(1)
        if not bool((target != ignore).any()):
            return _zero_like(output)
        weight = None if class_weights is None else class_weights.to(output.device, output.dtype)
        return F.cross_entropy(output, target, weight=weight, ignore_index=ignore)

    return loss


def valid_normals(target: torch.Tensor) -> torch.Tensor:
    """``(N, H, W)`` bool: pixels whose ground-truth normal is finite and not all zero."""
    finite = torch.isfinite(target).all(dim=1)
    return finite & (torch.nan_to_num(target).abs().sum(dim=1) > 0)


def normals_loss() -> Loss:
    """Mean of ``1 - cos(pred, gt)`` over valid pixels; both vectors normalised to unit length."""

    def loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        valid = valid_normals(target)
        if not bool(valid.any()):
            return _zero_like(output)
        pred = F.normalize(output.float(), dim=1, eps=1e-8)
        gt = F.normalize(torch.nan_to_num(target).float(), dim=1, eps=1e-8)
        cos = (pred * gt).sum(dim=1)
        return (1.0 - cos[valid]).mean()

    return loss


def valid_depth(target: torch.Tensor) -> torch.Tensor:
    """Pixels with a usable depth: finite and ``> 0``."""
    return torch.isfinite(target) & (target > 0)


def _match_depth(output: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if output.dim() == target.dim() + 1 and output.shape[1] == 1:
        output = output.squeeze(1)
    elif target.dim() == output.dim() + 1 and target.shape[1] == 1:
        target = target.squeeze(1)
    if output.shape != target.shape:
        raise ValueError(f"depth output shape {tuple(output.shape)} does not match target "
                         f"{tuple(target.shape)}")
    return output, target


def depth_loss() -> Loss:
    """Mean absolute error over valid pixels (``gt > 0``)."""

    def loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        output, target = _match_depth(output, target)
        valid = valid_depth(target)
        if not bool(valid.any()):
            return _zero_like(output)
        return (output.float()[valid] - target.float()[valid]).abs().mean()

    return loss


def valid_regression(target: torch.Tensor, ignore_value: float | None) -> torch.Tensor:
    """Finite pixels that are not ``ignore_value``."""
    valid = torch.isfinite(target)
    if ignore_value is not None:
        valid &= target != ignore_value
    return valid


def regression_loss(ignore_value: float | None = None) -> Loss:
    """Mean absolute error over the pixels that are finite and not ``ignore_value``."""

    def loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        output, target = _match_depth(output, target)
        valid = valid_regression(target, ignore_value)
        if not bool(valid.any()):
            return _zero_like(output)
        return (output.float()[valid] - target.float()[valid]).abs().mean()

    return loss


def classification_loss(class_weights: torch.Tensor | None = None) -> Loss:
    """Cross-entropy over ``(N, C)`` logits."""

    def loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        weight = None if class_weights is None else class_weights.to(output.device, output.dtype)
        return F.cross_entropy(output, target.long().view(-1), weight=weight)

    return loss


def _task_loss(info, class_weights=None) -> Loss:
    if info.kind == "custom":          # disparse_core.data.custom_task: the task brings its own loss
        return info.loss
    kind = canonical_kind(info.kind)
    if class_weights is None and getattr(info, "class_weights", None) is not None:
        class_weights = torch.tensor(info.class_weights, dtype=torch.float32)
    if kind == "segmentation":
        return segmentation_loss(getattr(info, "ignore_index", 255), class_weights)
    if kind == "normals":
        return normals_loss()
    if kind == "depth":
        return depth_loss()
    if kind == "regression":
        return regression_loss(getattr(info, "ignore_value", None))
    return classification_loss(class_weights)


def build_losses(workload, loss_weights: Mapping[str, float] | None = None,
                 class_weights: Mapping[str, torch.Tensor] | None = None) -> dict[str, Loss]:
    """``{task: raw loss}`` for every task of ``workload`` (an object with ``.tasks`` or that mapping).

    ``loss_weights`` is only validated here (every name a task, every value finite and ``>= 0``); apply
    it with :func:`weighted_total` / :func:`weighted_losses`. ``class_weights`` (optional,
    ``{task: 1-D tensor}``) weight the cross-entropy of segmentation/classification tasks; by default
    a task's ``info.class_weights`` (e.g. Taskonomy's ``semseg_prior_factor``) is used when set.
    """
    tasks = getattr(workload, "tasks", workload)
    check_loss_weights(tasks, loss_weights)
    class_weights = dict(class_weights or {})
    unknown = sorted(set(class_weights) - set(tasks))
    if unknown:
        raise ValueError(f"class_weights given for unknown task {unknown[0]!r} (tasks: {sorted(tasks)})")
    return {task: _task_loss(info, class_weights.get(task)) for task, info in tasks.items()}


def check_loss_weights(tasks, loss_weights: Mapping[str, float] | None) -> dict[str, float]:
    """Validate and complete ``loss_weights`` (missing tasks get 1.0)."""
    loss_weights = dict(loss_weights or {})
    unknown = sorted(set(loss_weights) - set(tasks))
    if unknown:
        raise ValueError(f"loss_weights names unknown task {unknown[0]!r} (tasks: {sorted(tasks)})")
    out = {}
    for task in tasks:
        w = loss_weights.get(task, 1.0)
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not (w >= 0) or w == float("inf"):
            raise ValueError(f"loss_weights.{task} must be a finite number >= 0, got {w!r}")
        out[task] = float(w)
    return out


def weighted_losses(losses: Mapping[str, Loss], loss_weights: Mapping[str, float]) -> dict[str, Loss]:
    """The same losses scaled by ``λ_t`` (for collapsed baselines that score the summed loss)."""

    def scaled(fn: Loss, w: float) -> Loss:
        return lambda output, target: fn(output, target) * w

    return {t: scaled(fn, float(loss_weights.get(t, 1.0))) for t, fn in losses.items()}


def weighted_total(task_losses: Mapping[str, torch.Tensor],
                   loss_weights: Mapping[str, float]) -> torch.Tensor:
    """``Σ_t λ_t L_t`` over the given per-task loss values."""
    items = list(task_losses.items())
    total = items[0][1] * float(loss_weights.get(items[0][0], 1.0))
    for t, value in items[1:]:
        total = total + value * float(loss_weights.get(t, 1.0))
    return total
