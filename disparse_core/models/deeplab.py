"""DeepLab-ResNet34 as in the DiSparse paper: dilated ResNet-34 (output stride 8) + per-task ASPP.

Backbone: stem ``conv7x7/2 -> BN -> ReLU -> maxpool 3x3/2``, then BasicBlocks in stages
``[3, 4, 6, 3]`` with widths ``[64, 128, 256, 512]``, strides ``[1, 2, 1, 1]`` and dilations
``[1, 1, 2, 4]``; the first block of stages 2-4 has a 1x1 projection shortcut.

**Blocks for the sharing cutoff**: the stem and each of the 16 BasicBlocks, ``B = 17``. Block ``i``
(1-based) holds conv layers ``2i-2 .. 2i-1`` counting the stem conv as layer 1 (plus a projection
at blocks 5, 9 and 15), so the paper's watershed at conv layers 15/16 sits in blocks 8/9.

Head per task: four branches at rates 6, 12, 18, 24, each ``conv3x3(512 -> 1024, dilated) -> ReLU
-> Dropout -> conv1x1(1024 -> 1024) -> ReLU -> Dropout -> conv1x1(1024 -> C_t)``, summed, upsampled
to the input size. Two tasks (40 + 3 channels): 67.6 M parameters.
"""

from __future__ import annotations

from typing import Mapping

from torch import nn

from .base import ClassificationHead, DenseHead, MultitaskNet, CLASSIFICATION_KINDS, seeded, validate_tasks
from .blocks import BasicBlock, Stem, init_backbone

__all__ = ["DeepLabResNet34", "deeplab_blocks"]

STAGES = (3, 4, 6, 3)
WIDTHS = (64, 128, 256, 512)
STRIDES = (1, 2, 1, 1)
DILATIONS = (1, 1, 2, 4)
ASPP_RATES = (6, 12, 18, 24)


def deeplab_blocks(in_channels: int = 3) -> list[nn.Module]:
    """The 17 backbone blocks (stem + 16 BasicBlocks), initialised."""
    blocks: list[nn.Module] = [Stem(in_channels, 64, kernel_size=7, stride=2, maxpool=True)]
    cin = 64
    for n, width, stride, dilation in zip(STAGES, WIDTHS, STRIDES, DILATIONS):
        for k in range(n):
            first = k == 0
            blocks.append(BasicBlock(cin, width, stride=stride if first else 1, dilation=dilation,
                                     project=first and (stride != 1 or dilation > 1)))
            cin = width
    for b in blocks:
        init_backbone(b)
    return blocks


class DeepLabResNet34(MultitaskNet):
    """See the module docstring. ``task_kinds`` as in ``build_model``."""

    def __init__(self, task_channels: Mapping[str, int], *, task_kinds: Mapping[str, str] | None = None,
                 cutoff: int | None = None, in_channels: int = 3, dropout: float = 0.5,
                 seed: int | None = None):
        kinds = validate_tasks(task_channels, task_kinds)
        with seeded(seed):
            blocks = deeplab_blocks(in_channels)
            heads = {}
            for task, ch in task_channels.items():
                if kinds[task] in CLASSIFICATION_KINDS:
                    heads[task] = ClassificationHead(512, ch)
                else:
                    heads[task] = DenseHead(512, ch, ASPP_RATES, hidden=1024, hidden2=1024,
                                            dropout=dropout)
            super().__init__(blocks, heads, cutoff)
        self.task_kinds = kinds
