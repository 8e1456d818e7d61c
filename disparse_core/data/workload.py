"""``Workload``: a multitask data set with its tasks' kinds, channels and metrics, and seeded loaders."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping

import numpy as np
from torch.utils.data import DataLoader, Dataset, Sampler

__all__ = ["TaskInfo", "Workload", "SeededLoader", "TASK_KINDS", "KIND_METRICS", "task_info",
           "custom_task", "EpochDataset"]

TASK_KINDS = ("segmentation", "depth", "normals", "classification", "regression")

# metric names of each kind, primary (the one a budget usually names) first
KIND_METRICS: dict[str, tuple[str, ...]] = {
    "segmentation": ("miou", "pixel_acc"),
    "depth": ("abs_err", "rel_err", "delta1", "delta2", "delta3"),
    "normals": ("mean", "median", "within_11", "within_22", "within_30"),
    "classification": ("acc",),
    "regression": ("abs_err",),
}


@dataclass(frozen=True)
class TaskInfo:
    """What a task predicts and how it is scored.

    kind: ``segmentation`` (target ``long (H, W)``, ``ignore_index`` for unlabelled pixels),
        ``depth`` (``float (1, H, W)``, 0 = invalid), ``normals`` (``float (3, H, W)`` unit vectors,
        zero vector = invalid), ``classification`` (``long ()``), ``regression`` (``float (1, H, W)``
        dense map scored by absolute error, e.g. Taskonomy keypoints/edges; ``ignore_value`` marks
        invalid pixels when not None).
    channels: model output channels. num_classes: classes (segmentation, classification).
    metrics: metric names (``"<task>.<metric>"`` in results); primary: the headline metric.
    class_weights: optional per-class loss weights (Taskonomy ``semseg_prior_factor.npy``).
    """

    kind: str
    channels: int
    num_classes: int | None = None
    ignore_index: int | None = None
    metrics: tuple[str, ...] = ()
    primary: str = ""
    class_weights: tuple[float, ...] | None = field(default=None, repr=False)
    ignore_value: float | None = None
    #: kind ``custom`` only (:func:`custom_task`): the loss and ``{metric: function}``
    loss: Callable | None = field(default=None, repr=False, compare=False)
    metric_fns: Mapping[str, Callable] | None = field(default=None, repr=False, compare=False)

    def __getitem__(self, key: str):
        """``info["metrics"]`` reads like ``info.metrics`` (for code that treats it as plain data)."""
        if key not in self.__dataclass_fields__:
            raise KeyError(key)
        return getattr(self, key)


def task_info(kind: str, *, num_classes: int | None = None, ignore_index: int | None = 255,
              class_weights=None, ignore_value: float | None = None) -> TaskInfo:
    """A ``TaskInfo`` with the channels and metrics its kind implies."""
    if kind not in TASK_KINDS:
        raise ValueError(f"unknown task kind {kind!r}; expected one of {', '.join(TASK_KINDS)}")
    metrics = KIND_METRICS[kind]
    channels = {"segmentation": num_classes, "classification": num_classes,
                "depth": 1, "normals": 3, "regression": 1}[kind]
    weights = None if class_weights is None else tuple(float(w) for w in class_weights)
    return TaskInfo(kind=kind, channels=int(channels),
                    num_classes=num_classes if kind in ("segmentation", "classification") else None,
                    ignore_index=ignore_index if kind == "segmentation" else None,
                    metrics=metrics, primary=metrics[0], class_weights=weights,
                    ignore_value=ignore_value)


_DIRECTIONS = {"max": True, "maximize": True, "higher": True, "min": False, "minimize": False, "lower": False}


def _known_direction(metric: str) -> bool | None:
    from ..metric_keys import higher_is_better
    try:
        return higher_is_better(metric)
    except ValueError:
        return None


def custom_task(*, loss: Callable, metrics: Mapping[str, tuple], channels: int = 1,
                primary: str | None = None) -> TaskInfo:
    """A task of a kind of your own (kind ``custom``): its loss, its metrics and their directions.

    loss: ``loss(output, target) -> scalar tensor`` on a batch.
    metrics: ``{name: (function, direction)}`` (or ``(function, direction, low, high)`` with the range of
        its values, default ``[0, inf)``); ``function(outputs, targets) -> float`` gets the model's outputs
        and the targets of the **whole** test set, concatenated along the first dimension; ``direction``
        is ``max`` or ``min`` (``maximize``/``minimize``). The result holds ``"<task>.<name>"``; the name is
        registered with :func:`disparse_core.metric_keys.register_metric` (a name the library knows with
        the other direction, such as ``acc`` or ``abs_err``, is an error: pick another).
    channels: output channels (used only when a built-in arch builds the head). primary: the headline
        metric (default the first).
    """
    from ..metric_keys import register_metric
    if not callable(loss):
        raise ValueError(f"custom_task: loss {loss!r} is not callable; expected loss(output, target) -> tensor")
    if not isinstance(metrics, Mapping) or not metrics:
        raise ValueError(f"custom_task: metrics {metrics!r} is not a non-empty mapping; expected "
                         f"{{name: (function, 'max' or 'min')}}")
    fns: dict[str, Callable] = {}
    for name, entry in metrics.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"custom_task: metric name {name!r} is not a name; expected e.g. 'f1'")
        if not isinstance(entry, (tuple, list)) or len(entry) not in (2, 4) or not callable(entry[0]):
            raise ValueError(f"custom_task: metric {name!r}: {entry!r} is not (function, direction); expected "
                             f"e.g. (f1_score, 'max')")
        direction = entry[1]
        if direction not in _DIRECTIONS:
            raise ValueError(f"custom_task: metric {name!r} direction {direction!r} is not a direction; "
                             f"expected max or min")
        limits = {"low": float(entry[2]), "high": float(entry[3])} if len(entry) == 4 else {}
        try:
            if limits or _known_direction(name) is not _DIRECTIONS[direction]:
                register_metric(name, higher_is_better=_DIRECTIONS[direction], **limits)
        except ValueError as err:
            raise ValueError(f"custom_task: metric {name!r} with direction {direction!r}: "
                             f"{str(err).removeprefix('register_metric: ')}; expected a name of its own") from None
        fns[name] = entry[0]
    if primary is not None and primary not in fns:
        raise ValueError(f"custom_task: primary {primary!r} is not one of its metrics ({', '.join(fns)})")
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise ValueError(f"custom_task: channels {channels!r} is not a positive integer")
    return TaskInfo(kind="custom", channels=channels, metrics=tuple(fns), primary=primary or next(iter(fns)),
                    loss=loss, metric_fns=fns)


class EpochDataset(Dataset):
    """A data set whose random augmentation depends on ``(seed, epoch, index)`` only.

    ``set_epoch`` is called by ``SeededLoader`` before each pass, so a rerun with the same seed sees
    the same augmented samples in the same order, whatever the number of workers.
    """

    epoch: int = 0
    augment_seed: int = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def item_rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.augment_seed, self.epoch, int(index)])


class _EpochPermutation(Sampler):
    def __init__(self, n: int, seed: int, shuffle: bool):
        self.n, self.seed, self.shuffle, self.epoch = n, seed, shuffle, 0

    def __iter__(self) -> Iterator[int]:
        if not self.shuffle:
            return iter(range(self.n))
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
        return iter(order.tolist())

    def __len__(self) -> int:
        return self.n


class SeededLoader:
    """A ``DataLoader`` whose every pass (``iter``) is one epoch, shuffled by ``(seed, epoch)``.

    ``len(loader)`` is the number of batches per epoch. The first ``iter`` is epoch 0, the next
    epoch 1, …; ``set_epoch(e)`` jumps (e.g. when resuming).
    """

    def __init__(self, dataset: Dataset, batch_size: int, *, seed: int = 0, shuffle: bool = True,
                 drop_last: bool = True, num_workers: int = 0, pin_memory: bool = False):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        n = len(dataset)
        if drop_last and n < batch_size:
            raise ValueError(f"batch_size {batch_size} is larger than the data set ({n} samples)")
        self.dataset = dataset
        self.sampler = _EpochPermutation(n, seed, shuffle)
        self.loader = DataLoader(dataset, batch_size=batch_size, sampler=self.sampler,
                                 drop_last=drop_last, num_workers=num_workers,
                                 pin_memory=pin_memory)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self):
        self.sampler.epoch = self.epoch
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(self.epoch)
        self.epoch += 1
        return iter(self.loader)

    def __len__(self) -> int:
        return len(self.loader)


@dataclass
class Workload:
    """A multitask data set: tasks, input channels, train/test Datasets and seeded loaders.

    ``train[i]`` and ``test[i]`` are ``(image float (C, H, W) normalised, {task: target})``.
    ``loss_weights``: the workload's reference loss weights ``{task: λ_t}`` (as the paper's ×20 on NYUv2
    normals); a task not named weighs 1, so the default (empty) means all 1.
    """

    name: str
    tasks: dict[str, TaskInfo]
    in_channels: int
    train: Dataset
    test: Dataset
    image_size: tuple[int, int] | None = None
    info: dict = field(default_factory=dict)
    loss_weights: dict[str, float] = field(default_factory=dict)

    @property
    def task_channels(self) -> dict[str, int]:
        """``{task: output channels}`` for ``build_model``."""
        return {t: i.channels for t, i in self.tasks.items()}

    @property
    def task_kinds(self) -> dict[str, str]:
        """``{task: kind}`` for ``build_model(task_kinds=...)``."""
        return {t: i.kind for t, i in self.tasks.items()}

    def train_loader(self, batch_size: int, seed: int = 0, *, shuffle: bool = True,
                     drop_last: bool = True, num_workers: int = 0, pin_memory: bool = False
                     ) -> SeededLoader:
        """Training batches ``(images, {task: targets})``; each ``iter`` is one epoch."""
        return SeededLoader(self.train, batch_size, seed=seed, shuffle=shuffle, drop_last=drop_last,
                            num_workers=num_workers, pin_memory=pin_memory)

    def test_loader(self, batch_size: int, *, num_workers: int = 0, pin_memory: bool = False
                    ) -> SeededLoader:
        """Test batches in order, the last one possibly smaller."""
        return SeededLoader(self.test, batch_size, shuffle=False, drop_last=False,
                            num_workers=num_workers, pin_memory=pin_memory)

    def select(self, tasks) -> "Workload":
        """The same workload restricted to a subset of its tasks (targets of the others dropped)."""
        return _select(self, tasks)


def check_task_subset(name: str, available: Mapping[str, TaskInfo], tasks) -> list[str]:
    if tasks is None:
        return list(available)
    if isinstance(tasks, str):
        tasks = [tasks]
    tasks = list(tasks)
    if not tasks:
        raise ValueError(f"tasks must name at least one task of {name!r} ({', '.join(available)})")
    for t in tasks:
        if not isinstance(t, str):
            raise ValueError(f"task {t!r} of workload {name!r} is not a task name; expected a string, "
                             f"one of {', '.join(available)}")
        if t not in available:
            raise ValueError(f"unknown task {t!r} for workload {name!r}; expected some of "
                             f"{', '.join(available)}")
    if len(set(tasks)) != len(tasks):
        raise ValueError(f"tasks must not repeat, got {tasks}")
    return tasks


class _TaskSubset(Dataset):
    def __init__(self, base: Dataset, tasks: list[str]):
        self.base, self.tasks = base, tasks

    def __len__(self):
        return len(self.base)

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.base, "set_epoch"):
            self.base.set_epoch(epoch)

    def __getitem__(self, i):
        image, targets = self.base[i]
        return image, {t: targets[t] for t in self.tasks}


def _select(w: Workload, tasks) -> Workload:
    keep = check_task_subset(w.name, w.tasks, tasks)
    if keep == list(w.tasks):
        return w
    return Workload(name=w.name, tasks={t: w.tasks[t] for t in keep}, in_channels=w.in_channels,
                    train=_TaskSubset(w.train, keep), test=_TaskSubset(w.test, keep),
                    image_size=w.image_size, info=dict(w.info),
                    loss_weights={t: v for t, v in w.loss_weights.items() if t in keep})
