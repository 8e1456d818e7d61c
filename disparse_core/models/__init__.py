"""Multitask models whose ``forward(x)`` returns ``{task: output}``, with a sharing cutoff.

``build_model(arch, task_channels, task_kinds=..., cutoff=...)`` is the entry point; see
``base.MultitaskNet`` for the shared/branched layout and the module names it produces.
"""

from __future__ import annotations

from typing import Mapping

import torch

from ..config import ARCHS, num_blocks
from .base import (ClassificationHead, DenseHead, MultitaskNet, count_params, count_prunable_params,
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



def build_model(arch: str, task_channels: Mapping[str, int], *,
                task_kinds: Mapping[str, str] | None = None, cutoff: int | None = None,
                in_channels: int = 3, width: int = 16, seed: int | None = None) -> MultitaskNet:
    """Build a multitask model.

    arch: ``small`` or ``deeplab_resnet34``.
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
    validate_cutoff(cutoff, num_blocks(arch))
    if arch == "small":
        return SmallMultitaskNet(task_channels, task_kinds=task_kinds, cutoff=cutoff,
                                 in_channels=in_channels, width=width, seed=seed)
    return DeepLabResNet34(task_channels, task_kinds=task_kinds, cutoff=cutoff,
                           in_channels=in_channels, seed=seed)


def fully_shared_prunable(arch: str, task_channels: Mapping[str, int], **kwargs) -> int:
    """Prunable weights (Conv2d/Linear) of the fully shared (``cutoff = B``) dense model.

    The compression objective divides by this, so a branched model (more parameters) is never free.
    ``kwargs`` as for ``build_model`` (``cutoff`` is ignored). Built on the meta device: no memory.
    """
    kwargs = {k: v for k, v in kwargs.items() if k not in ("cutoff", "seed")}
    with torch.device("meta"):
        model = build_model(arch, task_channels, cutoff=None, **kwargs)
    return count_prunable_params(model)
