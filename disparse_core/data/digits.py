"""``digits``: pairs of scikit-learn's bundled 8x8 digits side by side; tasks ``left`` and ``right``.

The 1797 digits are split once by ``seed`` (80 % train / 20 % test pool), so no test digit image is
ever seen in training. Each sample pairs two digits drawn from its split's pool by
``default_rng([seed, split, index])``; the image is ``1 x S x 2S`` (``S = image_size``, default 16,
nearest-neighbour upscaling of the 8x8 originals), intensities ``0..16`` scaled to ``0..1`` and
normalised. Targets are the two digit labels (``long`` scalars).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from ._generated import resolve_sizes
from .workload import Workload, task_info

__all__ = ["build_digits", "load_digit_arrays"]

DEFAULTS = {"image_size": 16, "train_size": 2000, "test_size": 500}
ALLOWED_SIZES = (8, 16, 24, 32)
MEAN, STD = 0.3, 0.4


def load_digit_arrays() -> tuple[np.ndarray, np.ndarray]:
    """``(images float32 (1797, 8, 8) in 0..1, labels int64)`` from scikit-learn (no download)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ValueError("the digits workload needs scikit-learn (pip install scikit-learn)") from None
    bunch = load_digits()
    return (bunch.images.astype(np.float32) / 16.0), bunch.target.astype(np.int64)


class DigitPairs(Dataset):
    def __init__(self, images: np.ndarray, labels: np.ndarray, count: int, scale: int, seed: int,
                 split: int):
        pick = np.empty((count, 2), np.int64)
        for i in range(count):
            pick[i] = np.random.default_rng([seed, split, i]).integers(0, len(images), 2)
        left, right = images[pick[:, 0]], images[pick[:, 1]]
        pair = np.concatenate([left, right], axis=2)                    # (N, 8, 16)
        pair = np.kron(pair, np.ones((1, scale, scale), np.float32))    # nearest upscaling
        self.images = torch.from_numpy((pair[:, None] - MEAN) / STD)
        self.left = torch.from_numpy(labels[pick[:, 0]])
        self.right = torch.from_numpy(labels[pick[:, 1]])

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i):
        return self.images[i], {"left": self.left[i], "right": self.right[i]}


def build_digits(*, image_size=None, train_size=None, test_size=None, seed=0, cache_dir=None,
                 data_root=None, tasks=None) -> Workload:
    size, n_train, n_test = resolve_sizes("digits", DEFAULTS, ALLOWED_SIZES, image_size, train_size, test_size)
    images, labels = load_digit_arrays()
    order = np.random.default_rng([seed, 7]).permutation(len(images))
    cut = int(0.8 * len(images))
    tr, te = order[:cut], order[cut:]
    scale = size // 8
    tasks_info = {"left": task_info("classification", num_classes=10),
                  "right": task_info("classification", num_classes=10)}
    return Workload(name="digits", tasks=tasks_info, in_channels=1,
                    train=DigitPairs(images[tr], labels[tr], n_train, scale, seed, 0),
                    test=DigitPairs(images[te], labels[te], n_test, scale, seed, 1),
                    image_size=(size, 2 * size))
