"""The branched multitask network shared by every architecture, its heads, and parameter counts.

A backbone is a sequence of blocks ``b_1..b_B`` (each maps a feature map to a feature map). With a
sharing *cutoff* ``c`` in ``0..B`` the first ``c`` blocks are shared by all tasks and blocks
``c+1..B`` are copied once per task (every copy starts as a deepcopy of the same initialised block),
then each task has its own head. ``c = B`` (``cutoff=None``) is the fully shared network.

Module names (and so canonical weight names) follow the layout:

- ``shared.<i>.…`` for shared block ``i`` (0-based, ``i < c``),
- ``branches.<task>.<j>.…`` for the task's copy of block ``c + j``,
- ``heads.<task>.…`` for the task's head.
"""

from __future__ import annotations

import copy
import inspect
from contextlib import contextmanager
from typing import Iterator, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "MultitaskNet",
    "DenseHead",
    "ClassificationHead",
    "count_params",
    "count_prunable_params",
    "validate_cutoff",
    "CLASSIFICATION_KINDS",
]

# Task kinds that get a classification head ``(B, classes)``; every other kind (``dense``,
# ``segmentation``, ``depth``, ``normals``, ``regression``) gets a dense head ``(B, C, H, W)``.
CLASSIFICATION_KINDS = frozenset({"classification"})


def validate_cutoff(cutoff, num_blocks: int) -> int:
    """``cutoff`` as an int in ``0..num_blocks`` (``None`` = ``num_blocks``); ValueError otherwise."""
    if cutoff is None:
        return num_blocks
    if isinstance(cutoff, bool) or not isinstance(cutoff, int):
        raise ValueError(f"cutoff must be an integer in 0..{num_blocks} or None, got {cutoff!r}")
    if not 0 <= cutoff <= num_blocks:
        raise ValueError(f"cutoff must be in 0..{num_blocks} (number of backbone blocks), got {cutoff}")
    return cutoff


def validate_tasks(task_channels: Mapping[str, int], task_kinds: Mapping[str, str] | None) -> dict:
    if not isinstance(task_channels, Mapping) or not task_channels:
        raise ValueError(f"task_channels must be a non-empty dict {{task: channels}}, got {task_channels!r}")
    for task, ch in task_channels.items():
        if not isinstance(task, str) or not task.isidentifier():
            raise ValueError(f"task name must be an identifier (letters, digits, _), got {task!r}")
        if isinstance(ch, bool) or not isinstance(ch, int) or ch < 1:
            raise ValueError(f"task_channels[{task!r}] must be a positive integer, got {ch!r}")
    kinds = dict(task_kinds or {})
    extra = [t for t in kinds if t not in task_channels]
    if extra:
        raise ValueError(f"task_kinds names unknown task {extra[0]!r} (tasks: {sorted(task_channels)})")
    return {t: kinds.get(t, "dense") for t in task_channels}


class DenseHead(nn.Module):
    """ASPP-style head: parallel dilated branches on the last feature map, summed, upsampled.

    Each branch is ``conv3x3(dilation=r) -> ReLU [-> Dropout] -> conv1x1 -> ReLU [-> Dropout] -> conv1x1``
    when ``hidden2`` is given (the DeepLab-v2 ``fc6/fc7/fc8`` branch), else
    ``conv3x3(dilation=r) -> ReLU -> conv1x1``. The sum is bilinearly resized to the input size.
    """

    def __init__(self, in_channels: int, out_channels: int, rates: Sequence[int], hidden: int,
                 hidden2: int | None = None, dropout: float = 0.0):
        super().__init__()
        branches = []
        for r in rates:
            layers: list[nn.Module] = [nn.Conv2d(in_channels, hidden, 3, padding=r, dilation=r),
                                       nn.ReLU(inplace=True)]
            if dropout:
                layers.append(nn.Dropout(dropout))
            if hidden2 is not None:
                layers += [nn.Conv2d(hidden, hidden2, 1), nn.ReLU(inplace=True)]
                if dropout:
                    layers.append(nn.Dropout(dropout))
                layers.append(nn.Conv2d(hidden2, out_channels, 1))
            else:
                layers.append(nn.Conv2d(hidden, out_channels, 1))
            branches.append(nn.Sequential(*layers))
        self.branches = nn.ModuleList(branches)

    def forward(self, x: torch.Tensor, out_size) -> torch.Tensor:
        y = self.branches[0](x)
        for branch in self.branches[1:]:
            y = y + branch(x)
        if tuple(y.shape[-2:]) != tuple(out_size):
            y = F.interpolate(y, size=tuple(out_size), mode="bilinear", align_corners=False)
        return y


class ClassificationHead(nn.Module):
    """``AdaptiveAvgPool2d(grid) -> flatten -> Linear``: ``(B, C, h, w) -> (B, classes)``.

    A small pooling grid (default 2x2) keeps coarse position, so two heads on the same features can
    read different image regions (the ``digits`` workload's ``left`` and ``right`` tasks).
    """

    def __init__(self, in_channels: int, num_classes: int, grid: int = 2):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(grid)
        self.fc = nn.Linear(in_channels * grid * grid, num_classes)

    def forward(self, x: torch.Tensor, out_size=None) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(x), 1))


def _takes_size(head: nn.Module) -> bool:
    """Whether ``head.forward`` takes a second positional argument (the input's ``(H, W)``)."""
    try:
        params = list(inspect.signature(head.forward).parameters.values())
    except (TypeError, ValueError):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.kind is p.VAR_POSITIONAL for p in params)


class MultitaskNet(nn.Module):
    """Backbone blocks split at ``cutoff`` into shared and per-task copies, then one head per task.

    ``forward(x)`` returns ``{task: output}`` in ``task_channels`` order: ``(B, C_t, H, W)`` for dense
    tasks (same ``H, W`` as the input), ``(B, classes)`` for classification tasks. Your own ``blocks``
    and ``heads`` work too: a head is called ``head(h, (H, W))`` when its ``forward`` takes a second
    argument (to upsample to the input size), else ``head(h)`` (e.g. a plain ``nn.Conv2d``).
    """

    def __init__(self, blocks: Sequence[nn.Module], heads: Mapping[str, nn.Module],
                 cutoff: int | None = None):
        super().__init__()
        blocks = list(blocks)
        self.num_blocks = len(blocks)
        self.cutoff = validate_cutoff(cutoff, self.num_blocks)
        self.tasks = tuple(heads)
        self.shared = nn.ModuleList(blocks[: self.cutoff])
        tail = blocks[self.cutoff:]
        self.branches = nn.ModuleDict(
            {t: nn.ModuleList(copy.deepcopy(b) for b in tail) for t in self.tasks})
        self.heads = nn.ModuleDict(dict(heads))
        self._sized = {t: _takes_size(h) for t, h in self.heads.items()}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        size = x.shape[-2:]
        for block in self.shared:
            x = block(x)
        out = {}
        for task in self.tasks:
            h = x
            for block in self.branches[task]:
                h = block(h)
            out[task] = self.heads[task](h, size) if self._sized[task] else self.heads[task](h)
        return out

    def block_prefixes(self) -> list[tuple[str, ...]]:
        """For each backbone block index ``0..B-1`` the module-name prefixes its weights live under.

        A shared block has one prefix (``shared.i``); a branched block one per task
        (``branches.<task>.j``), in task order. Heads are not blocks (see ``block_index``).
        """
        out = []
        for i in range(self.num_blocks):
            if i < self.cutoff:
                out.append((f"shared.{i}",))
            else:
                out.append(tuple(f"branches.{t}.{i - self.cutoff}" for t in self.tasks))
        return out

    def block_names(self) -> list[str]:
        """One module prefix per block, in order (``iou.suggest_cutoff`` takes this list).

        Exact for shared blocks (``shared.i``); a branched block is named by its first task's copy.
        The mask-IoU analysis only sees layers owned by two or more tasks, i.e. shared blocks.
        """
        return [prefixes[0] for prefixes in self.block_prefixes()]

    def block_index(self, name: str) -> int | None:
        """Backbone block index of a module/parameter name (e.g. a canonical weight name).

        ``None`` for head parameters and names outside the backbone. Names under a parametrization
        (``….parametrizations.weight.original``) resolve like their canonical name.
        """
        for i, prefixes in enumerate(self.block_prefixes()):
            for p in prefixes:
                if name == p or name.startswith(p + "."):
                    return i
        return None


def count_params(model: nn.Module, *, prunable_only: bool = False) -> int:
    """Number of parameters (each shared tensor once). ``prunable_only``: Conv2d/Linear weights only.

    Works on models built on the ``meta`` device (no memory is allocated to count).
    """
    if not prunable_only:
        return sum(p.numel() for p in model.parameters())
    return count_prunable_params(model)


def count_prunable_params(model: nn.Module) -> int:
    """Number of prunable weights: the ``weight`` of every Conv2d and Linear (masked or not) that is not
    excluded (:func:`disparse_core.masks.exclude_from_pruning`)."""
    from ..masks import prunable_modules
    return sum(m.weight.numel() for m in prunable_modules(model).values())


@contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """Run initialisation under ``torch.manual_seed(seed)`` without disturbing the global RNG."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
