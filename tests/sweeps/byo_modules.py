"""A user's own data and model, as module files written into a test's folder (tests of a workload and an
architecture named by import path: test_byo_*.py)."""

from __future__ import annotations

from pathlib import Path

import yaml

#: data with two tasks: ``a`` (classification, 2 classes) and ``b`` (``kind_b``: regression by default,
#: or a custom task whose metric ``hits`` has direction ``hits_direction``)
DATA = '''
import torch
from torch.utils.data import Dataset
from disparse_core.data import Workload, custom_task, task_info


class Pairs(Dataset):
    def __init__(self, n, seed):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 3, 8, 8, generator=g)
        self.a = (self.x.mean(dim=(1, 2, 3)) > 0).long()
        self.b = self.x.mean(dim=1, keepdim=True)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], {"a": self.a[i], "b": self.b[i]}


def hits(outputs, targets):
    return float(((outputs - targets).abs() < 0.5).float().mean())


def build(n=16, seed=0, kind_b="regression", hits_direction=None):
    if hits_direction is None:
        b = task_info(kind_b)
    else:
        b = custom_task(loss=lambda out, y: (out - y).abs().mean(), metrics={"hits": (hits, hits_direction)})
    tasks = {"a": task_info("classification", num_classes=2), "b": b}
    return Workload(name="pairs", tasks=tasks, in_channels=3, train=Pairs(n, seed), test=Pairs(8, seed + 1))
'''

#: a trunk shared by both tasks, a head per task (``outputs`` overrides which tasks it returns)
NET = '''
from torch import nn
from disparse_core.masks import exclude_from_pruning


class Net(nn.Module):
    def __init__(self, tasks, width):
        super().__init__()
        self.trunk = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU())
        self.heads = nn.ModuleDict({t: nn.Linear(width, 2) if t == "a" else nn.Conv2d(width, 1, 1) for t in tasks})

    def forward(self, x):
        h = self.trunk(x)
        return {t: head(h.mean(dim=(2, 3))) if t == "a" else head(h) for t, head in self.heads.items()}


def build(task_channels, width=4, outputs=None, exclude_all=False, fail=False):
    if fail:
        raise RuntimeError("out of memory on purpose")
    net = Net(outputs or list(task_channels), width)
    if exclude_all:
        exclude_from_pruning(net)
    return net
'''


def write_user_files(folder: Path, *, data: str = DATA, net: str = NET) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "mydata.py").write_text(data)
    (folder / "mynet.py").write_text(net)


def byo_space(folder: Path, *, workload=None, arch=None, name: str = "byo", **sections) -> Path:
    """A space over the user's two files: the fixed config with the factories, sparsity sampled."""
    space = {
        "name": name,
        "workload": {"workload": workload if workload is not None else {"factory": "mydata:build"},
                     "arch": arch if arch is not None else {"factory": "mynet:build", "args": {"width": 4}},
                     "method": "disparse_static", "steps": 4, "batch_size": 4, "eval_every": 2,
                     "num_threads": 1, "seed": 0},
        "parameters": {"sparsity": {"distribution": "uniform", "low": 0.3, "high": 0.8}},
        "objectives": ["compression", "delta_m"],
        "trials": 2, "concurrency": 2, "resources": {"cpu": 1}, "max_retries": 0,
    }
    space.update(sections)
    path = folder / "space.yaml"
    path.write_text(yaml.safe_dump(space, sort_keys=False))
    return path
