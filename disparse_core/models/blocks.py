"""Backbone blocks: a stem and the residual BasicBlock (each one unit of the sharing cutoff)."""

from __future__ import annotations

from torch import nn

__all__ = ["Stem", "BasicBlock", "init_backbone"]


class Stem(nn.Module):
    """``conv(k, stride) -> BN -> ReLU [-> maxpool 3x3/2]``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 7, stride: int = 2,
                 maxpool: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride,
                              padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True) if maxpool else nn.Identity()

    def forward(self, x):
        return self.pool(self.relu(self.bn(self.conv(x))))


class BasicBlock(nn.Module):
    """ResNet basic block with dilation: ``relu(shortcut(x) + bn(conv(relu(bn(conv(x))))))``.

    The shortcut is a 1x1 projection + BN when the stride, the channel count or ``project`` asks for
    it (the DeepLab reference projects at the first block of every dilated stage), else identity.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, dilation: int = 1,
                 project: bool = False):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=dilation,
                               dilation=dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=dilation, dilation=dilation,
                               bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        if project or stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels))
        else:
            self.downsample = None

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


def init_backbone(module: nn.Module) -> None:
    """He (fan-out) init for convs, BN to identity: the usual ResNet initialisation.

    Skipped on the meta device (nothing to initialise; ``normal_`` there costs seconds at first use).
    """
    for m in module.modules():
        if any(p.is_meta for p in m.parameters(recurse=False)):
            continue
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
