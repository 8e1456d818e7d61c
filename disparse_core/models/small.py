"""A small dilated residual multitask net for CPU sweeps, shaped like DeepLab-ResNet34.

Backbone (``w = width``): stem ``conv3x3/2 -> BN -> ReLU`` (output stride 2), then seven BasicBlocks

| block | channels | stride | dilation |
|---|---|---|---|
| 1 (stem) | w | 2 | 1 |
| 2, 3 | w | 1 | 1 |
| 4 | 2w | 2 | 1 |
| 5, 6 | 2w | 1 | 2 |
| 7, 8 | 2w | 1 | 4 |

so ``B = 8`` blocks for the sharing cutoff, output stride 4. Head per task (ASPP-lite): two branches
``conv3x3(2w -> w, dilation r) -> ReLU -> conv1x1(w -> C_t)`` at rates 1 and 3, summed, upsampled to
the input size; a classification task gets ``pool 2x2 -> Linear``. Width 16 with the ``scenes`` tasks
(seg 5 + depth 1 + normal 3): about 0.13 M parameters.
"""

from __future__ import annotations

from typing import Mapping

from torch import nn

from .base import ClassificationHead, DenseHead, MultitaskNet, CLASSIFICATION_KINDS, seeded, validate_tasks
from .blocks import BasicBlock, Stem, init_backbone

__all__ = ["SmallMultitaskNet", "small_blocks"]

# (channel multiple of width, stride, dilation) of each BasicBlock after the stem
LAYOUT = ((1, 1, 1), (1, 1, 1), (2, 2, 1), (2, 1, 2), (2, 1, 2), (2, 1, 4), (2, 1, 4))
HEAD_RATES = (1, 3)


def small_blocks(in_channels: int = 3, width: int = 16) -> list[nn.Module]:
    """The 8 backbone blocks (stem + 7 BasicBlocks), initialised."""
    blocks: list[nn.Module] = [Stem(in_channels, width, kernel_size=3, stride=2, maxpool=False)]
    cin = width
    for mult, stride, dilation in LAYOUT:
        blocks.append(BasicBlock(cin, mult * width, stride=stride, dilation=dilation))
        cin = mult * width
    for b in blocks:
        init_backbone(b)
    return blocks


class SmallMultitaskNet(MultitaskNet):
    """See the module docstring. ``task_kinds`` as in ``build_model``."""

    def __init__(self, task_channels: Mapping[str, int], *, task_kinds: Mapping[str, str] | None = None,
                 cutoff: int | None = None, in_channels: int = 3, width: int = 16,
                 seed: int | None = None):
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ValueError(f"width must be a positive integer, got {width!r}")
        kinds = validate_tasks(task_channels, task_kinds)
        top = LAYOUT[-1][0] * width
        with seeded(seed):
            blocks = small_blocks(in_channels, width)
            heads = {}
            for task, ch in task_channels.items():
                if kinds[task] in CLASSIFICATION_KINDS:
                    heads[task] = ClassificationHead(top, ch)
                else:
                    heads[task] = DenseHead(top, ch, HEAD_RATES, hidden=width)
            super().__init__(blocks, heads, cutoff)
        self.task_kinds = kinds
        self.width = width
