"""Your data: a workload factory (docs/extending.md). Generated here, so the example needs no download.

Each image (3 x 32 x 32) holds one to four objects, squares or discs, on a dark background. Three tasks:

- ``seg`` (segmentation): background 0, square 1, disc 2.
- ``depth`` (depth): each object's distance (1 to 3), the background at 4; nearer objects are brighter.
- ``count`` (a custom task): how many objects; its loss and its metric ``miscount`` (the fraction of
  images whose rounded count is wrong; lower is better) are this file's own.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from disparse_core.data import Workload, custom_task, task_info


class Shapes(Dataset):
    def __init__(self, n: int, size: int, seed: int):
        rng = np.random.default_rng(seed)
        self.images = np.zeros((n, 3, size, size), np.float32)
        self.seg = np.zeros((n, size, size), np.int64)
        self.depth = np.full((n, 1, size, size), 4.0, np.float32)
        self.count = rng.integers(1, 5, n).astype(np.float32)
        yy, xx = np.mgrid[:size, :size]
        for i in range(n):
            for _ in range(int(self.count[i])):
                kind, d = int(rng.integers(1, 3)), float(rng.uniform(1, 3))
                r, cy, cx = int(rng.integers(3, 7)), int(rng.integers(0, size)), int(rng.integers(0, size))
                inside = ((abs(yy - cy) <= r) & (abs(xx - cx) <= r) if kind == 1
                          else (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r)
                nearer = inside & (d < self.depth[i, 0])
                self.seg[i][nearer], self.depth[i, 0][nearer] = kind, d
                colour = np.array([1.0, 0.3, 0.2] if kind == 1 else [0.2, 0.4, 1.0], np.float32) * (4 - d) / 3
                self.images[i][:, nearer] = colour[:, None]
        self.images += rng.normal(0, 0.05, self.images.shape).astype(np.float32)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return torch.from_numpy(self.images[i]), {"seg": torch.from_numpy(self.seg[i]),
                                                  "depth": torch.from_numpy(self.depth[i]),
                                                  "count": torch.tensor([self.count[i]])}


def count_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.smooth_l1_loss(output.view(-1), target.view(-1))


def miscount(outputs: torch.Tensor, targets: torch.Tensor) -> float:
    """Over the whole test set: the fraction of images whose rounded predicted count is wrong."""
    return float((outputs.view(-1).round() != targets.view(-1)).float().mean())


def build(n_train: int = 64, n_test: int = 32, size: int = 32, seed: int = 0) -> Workload:
    tasks = {"seg": task_info("segmentation", num_classes=3),
             "depth": task_info("depth"),
             "count": custom_task(loss=count_loss, metrics={"miscount": (miscount, "min", 0.0, 1.0)})}
    return Workload(name="shapes", tasks=tasks, in_channels=3, train=Shapes(n_train, size, seed),
                    test=Shapes(n_test, size, 10_000 + seed), image_size=(size, size))
