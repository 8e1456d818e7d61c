"""Tiny multitask models and batches for the core tests (CPU, milliseconds per forward).

Each model records, as ``expected_ownership()``, the ownership its construction implies, so tests can
compare it to what the autograd graph says.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
import torch.nn.functional as F

IMAGE = (3, 8, 8)


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """Import into a test module to run it on one thread: for these tiny models thread start-up
    dominates, and several threads thrash on a busy 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU())


class MultiHeadNet(nn.Module):
    """Fully shared conv trunk, one head per task: ``seg`` (1x1 conv, 3 classes per pixel), the
    others linear heads on pooled features (``cls`` 4 classes, ``reg`` 2 values)."""

    HEADS = {"seg": 3, "cls": 4, "reg": 2}

    def __init__(self, tasks=("seg", "cls"), width: int = 6, dead_layer: bool = False):
        super().__init__()
        self.tasks = tuple(tasks)
        self.trunk = nn.Sequential(_block(3, width), _block(width, width), _block(width, 2 * width))
        self.heads = nn.ModuleDict()
        for t in self.tasks:
            n = self.HEADS[t]
            self.heads[t] = nn.Conv2d(2 * width, n, 1) if t == "seg" else nn.Linear(2 * width, n)
        # a layer no output reaches (e.g. an unused classifier left in a backbone)
        self.unused = nn.Linear(4, 4) if dead_layer else None

    def forward(self, x):
        h = self.trunk(x)
        out = {}
        for t in self.tasks:
            out[t] = self.heads[t](h) if t == "seg" else self.heads[t](h.mean(dim=(2, 3)))
        return out

    def expected_ownership(self) -> dict[str, frozenset[str]]:
        every = frozenset(self.tasks)
        own = {f"trunk.{i}.0.weight": every for i in range(3)}
        own.update({f"heads.{t}.weight": frozenset({t}) for t in self.tasks})
        if self.unused is not None:
            own["unused.weight"] = frozenset()
        return own


class BranchedNet(nn.Module):
    """Backbone of ``n_blocks`` blocks; blocks ``0..cutoff-1`` shared, the rest copied per task."""

    def __init__(self, tasks=("seg", "cls", "reg"), cutoff: int = 1, n_blocks: int = 3, width: int = 4):
        super().__init__()
        self.tasks, self.cutoff, self.n_blocks = tuple(tasks), cutoff, n_blocks
        chans = [3] + [width * (i + 1) for i in range(n_blocks)]
        self.shared = nn.Sequential(*[_block(chans[i], chans[i + 1]) for i in range(cutoff)])
        self.branches = nn.ModuleDict({
            t: nn.Sequential(*[_block(chans[i], chans[i + 1]) for i in range(cutoff, n_blocks)])
            for t in self.tasks})
        self.heads = nn.ModuleDict({t: nn.Linear(chans[-1], MultiHeadNet.HEADS[t]) for t in self.tasks})

    def forward(self, x):
        h = self.shared(x)
        out = {}
        for t in self.tasks:
            z = self.branches[t](h).mean(dim=(2, 3))
            out[t] = self.heads[t](z)  # seg here classifies the image (see _seg_loss)
        return out

    def expected_ownership(self) -> dict[str, frozenset[str]]:
        own = {f"shared.{i}.0.weight": frozenset(self.tasks) for i in range(self.cutoff)}
        for t in self.tasks:
            for j in range(self.n_blocks - self.cutoff):
                own[f"branches.{t}.{j}.0.weight"] = frozenset({t})
            own[f"heads.{t}.weight"] = frozenset({t})
        return own


class NotADictNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        return self.fc(x.mean(dim=(2, 3)))


def _seg_loss(out, target):
    if out.dim() == 4:
        return F.cross_entropy(out, target)
    return F.cross_entropy(out, target[:, 0, 0])


LOSSES = {"seg": _seg_loss, "cls": F.cross_entropy, "reg": F.mse_loss}


def losses_for(tasks) -> dict:
    return {t: LOSSES[t] for t in tasks}


def make_batches(tasks, n: int = 2, batch: int = 4, seed: int = 0) -> list:
    """``n`` batches ``(inputs, {task: target})`` with fixed random content."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        x = torch.randn(batch, *IMAGE, generator=g)
        targets = {}
        for t in tasks:
            if t == "seg":
                targets[t] = torch.randint(0, 3, (batch, IMAGE[1], IMAGE[2]), generator=g)
            elif t == "cls":
                targets[t] = torch.randint(0, 4, (batch,), generator=g)
            else:
                targets[t] = torch.randn(batch, 2, generator=g)
        out.append((x, targets))
    return out


def total_loss(model, batch, losses, weights=None) -> torch.Tensor:
    x, targets = batch
    out = model(x)
    return sum((weights or {}).get(t, 1.0) * losses[t](out[t], targets[t]) for t in out)
