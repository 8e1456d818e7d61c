"""Multitask models whose ``forward(x)`` returns ``{task: output}``, with a sharing cutoff.

``build_model(arch, task_channels, task_kinds=..., cutoff=...)`` is the entry point; see
``base.MultitaskNet`` for the shared/branched layout and the module names it produces.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from ..config import ARCHS, num_blocks
from ..factories import call_factory, is_factory
from .base import (ClassificationHead, DenseHead, MultitaskNet, count_params, count_prunable_params, seeded,
                   validate_cutoff)
from .deeplab import DeepLabResNet34
from .small import SmallMultitaskNet

__all__ = [
    "ARCHS",
    "build_model",
    "num_blocks",
    "count_params",
    "count_prunable_params",
    "fully_shared_prunable",
    "MultitaskNet",
    "SmallMultitaskNet",
    "DeepLabResNet34",
    "DenseHead",
    "ClassificationHead",
]



def build_model(arch, task_channels: Mapping[str, int], *,
                task_kinds: Mapping[str, str] | None = None, cutoff: int | None = None,
                in_channels: int = 3, width: int = 16, seed: int | None = None) -> MultitaskNet:
    """Build a multitask model.

    arch: ``small``, ``deeplab_resnet34``, or a factory of your own ``{"factory": "module:function",
        "args": {...}}`` (docs/extending.md): it is called under ``seed`` with its ``args`` plus
        ``task_channels``, ``task_kinds`` and ``in_channels`` where it takes them, and must return an
        ``nn.Module`` whose ``forward(x)`` gives ``{task: tensor}``; ``cutoff`` and ``width`` do not apply.
    task_channels: ``{task: output channels}`` (segmentation: classes; depth 1; normals 3;
        classification: classes). Task names must be identifiers; output order follows this dict.
    task_kinds: ``{task: kind}``; ``classification`` gives a ``(B, classes)`` head, any other kind
        (``dense``, ``segmentation``, ``depth``, ``normals``, ``regression``; the default) a dense head
        ``(B, C, H, W)`` at the input's ``H, W``. ``{t: info.kind for t, info in workload.tasks.items()}``
        can be passed as is. Dense outputs are raw (no softmax, normals not normalised).
    cutoff: blocks shared before the per-task copies, ``0..B``; None = ``B`` (fully shared).
    width: base width of ``small`` (ignored by ``deeplab_resnet34``).
    seed: initialise under this seed (the global RNG is left untouched); None = global RNG.

    Build on the meta device (``with torch.device("meta"): ...``) to count parameters for free.
    """
    if is_factory(arch):
        return _factory_model(arch, task_channels, task_kinds, cutoff, in_channels, seed)
    validate_cutoff(cutoff, num_blocks(arch))
    if arch == "small":
        return SmallMultitaskNet(task_channels, task_kinds=task_kinds, cutoff=cutoff,
                                 in_channels=in_channels, width=width, seed=seed)
    return DeepLabResNet34(task_channels, task_kinds=task_kinds, cutoff=cutoff,
                           in_channels=in_channels, seed=seed)


def _factory_model(spec, task_channels, task_kinds, cutoff, in_channels, seed) -> nn.Module:
    if cutoff is not None:
        raise ValueError(f"cutoff: {cutoff} applies to the built-in archs ({', '.join(ARCHS)}); expected None "
                         f"with a factory arch (its own branching point goes in its args)")
    kinds = dict(task_kinds) if task_kinds is not None else {t: "dense" for t in task_channels}
    offered = {"task_channels": dict(task_channels), "task_kinds": kinds, "in_channels": in_channels}
    with seeded(seed):
        model = call_factory(spec, "arch", offered=offered)
    if not isinstance(model, nn.Module):
        raise ValueError(f"arch: factory {spec['factory']!r} returned {type(model).__name__}; expected a "
                         f"torch.nn.Module whose forward(x) returns {{task: tensor}}")
    return model


def fully_shared_prunable(arch, task_channels: Mapping[str, int], **kwargs) -> int:
    """Prunable weights (Conv2d/Linear) of the fully shared (``cutoff = B``) dense model.

    The compression objective divides by this, so a branched model (more parameters) is never free.
    ``kwargs`` as for ``build_model`` (``cutoff`` is ignored). Built on the meta device: no memory. A factory
    arch has no sharing cutoff: its own prunable weights, built as a trial builds it (on the CPU, seed 0).
    """
    kwargs = {k: v for k, v in kwargs.items() if k not in ("cutoff", "seed")}
    if is_factory(arch):
        kwargs.pop("width", None)
        return count_prunable_params(build_model(arch, task_channels, seed=0, **kwargs))
    with torch.device("meta"):
        model = build_model(arch, task_channels, cutoff=None, **kwargs)
    return count_prunable_params(model)
