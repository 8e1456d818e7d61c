"""Your model: an architecture factory (docs/extending.md). A small torchvision-style ResNet trunk
(a stem, then three stages of two BasicBlocks, the last two at stride 2), shared by every task, and one
head per task: dense heads upsampled to the input for ``seg`` and ``depth``, a pooled linear head for
``count``. ``forward(x)`` returns ``{task: tensor}``; which tensors are shared and which belong to one task
is read from the autograd graph, so nothing here is named for the pruner's sake.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from disparse_core.masks import exclude_from_pruning


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNetHeads(nn.Module):
    def __init__(self, task_channels: dict, task_kinds: dict, in_channels: int = 3, width: int = 16):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU())
        exclude_from_pruning(self.stem)        # the first conv stays dense (few weights, every task needs it)
        stages, cin = [], width
        for i, cout in enumerate((width, 2 * width, 4 * width)):
            stages += [BasicBlock(cin, cout, 1 if i == 0 else 2), BasicBlock(cout, cout)]
            cin = cout
        self.trunk = nn.Sequential(*stages)
        self.heads = nn.ModuleDict({
            task: nn.Linear(cin, channels) if task_kinds.get(task) == "custom"
            else nn.Sequential(nn.Conv2d(cin, cin, 3, 1, 1), nn.ReLU(), nn.Conv2d(cin, channels, 1))
            for task, channels in task_channels.items()})

    def forward(self, x):
        features = self.trunk(self.stem(x))
        out = {}
        for task, head in self.heads.items():
            if isinstance(head, nn.Linear):
                out[task] = head(features.mean(dim=(2, 3)))
            else:
                out[task] = F.interpolate(head(features), size=x.shape[-2:], mode="bilinear", align_corners=False)
        return out


def build(task_channels: dict, task_kinds: dict, in_channels: int = 3, width: int = 16) -> nn.Module:
    """Called with the space's ``args`` (``width``) and, from the workload, ``{task: output channels}``,
    ``{task: kind}`` and the input channels."""
    return ResNetHeads(task_channels, task_kinds, in_channels, width)
