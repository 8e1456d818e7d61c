"""Metrics accumulated over the whole test set, metric directions and the multitask summary Δm.

Every accumulator sums over *all valid pixels of the whole test set* (never a mean of per-batch means):

- segmentation (`miou`, `pixel_acc`): one confusion matrix; ignored pixels are excluded. A class's IoU is
  ``TP / (TP + FP + FN)``; a class absent from both ground truth and prediction (``TP + FP + FN = 0``)
  has no IoU and is left out of the mean (so a test set that never shows class ``c`` is not penalised).
- normals (`mean`, `median`, `within_11`, `within_22`, `within_30`): the angle between the normalised
  prediction and the ground truth, in degrees, on pixels whose ground truth is not all zero. The median is
  exact: the errors are kept (as float32) up to ``exact_limit`` values; beyond that the accumulator falls
  back to a histogram with 0.001° bins (median within 0.0005°). With an even count the median is the
  mean of the two middle values.
- depth (`abs_err`, `rel_err`, `delta1`, `delta2`, `delta3`): on pixels with ``gt > 0``; ``delta_k`` is the
  fraction with ``max(pred/gt, gt/pred) < 1.25**k`` (a prediction ``<= 0`` never passes).
- classification (`acc`).
- regression (`abs_err`): mean absolute error over pixels that are finite and not ``ignore_value``.

Fractions (IoU, accuracies, `within_*`, `delta*`) are in ``[0, 1]``; angles in degrees. A metric
with no valid pixel (or sample) to average over is NaN, never a flattering 0.
"""

from __future__ import annotations

import math
import warnings
from typing import Mapping

import torch
from torch import nn

from .metric_keys import higher_is_better, metric_directions, metric_range, register_metric
from .tasks import canonical_kind, valid_depth, valid_normals, valid_regression

__all__ = [
    "SegmentationMeter",
    "NormalsMeter",
    "DepthMeter",
    "ClassificationMeter",
    "RegressionMeter",
    "CustomMeter",
    "METRICS_BY_KIND",
    "make_meter",
    "higher_is_better",
    "metric_directions",
    "metric_range",
    "register_metric",
    "delta_m",
    "evaluate",
]

METRICS_BY_KIND = {
    "segmentation": ("miou", "pixel_acc"),
    "normals": ("mean", "median", "within_11", "within_22", "within_30"),
    "depth": ("abs_err", "rel_err", "delta1", "delta2", "delta3"),
    "classification": ("acc",),
    "regression": ("abs_err",),
}


class SegmentationMeter:
    """Confusion matrix over the whole set; ``compute() -> {"miou", "pixel_acc"}``."""

    def __init__(self, num_classes: int, ignore_index: int | None = 255):
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        self.confusion = torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64)

    @torch.no_grad()
    def update(self, output: torch.Tensor, target: torch.Tensor) -> None:
        target = target.long()
        if target.dim() == output.dim() and target.dim() >= 2 and target.shape[1] == 1 < output.shape[1]:
            target = target.squeeze(1)            # (N, 1, H, W) labels against (N, C, H, W) logits
        pred = output.argmax(dim=1) if output.dim() == target.dim() + 1 else output
        if target.dim() == pred.dim() + 1:
            target = target.squeeze(1)
        keep = (target >= 0) & (target < self.num_classes)
        if self.ignore_index is not None:
            keep &= target != self.ignore_index
        idx = target[keep].cpu() * self.num_classes + pred[keep].long().cpu()
        self.confusion += torch.bincount(idx, minlength=self.num_classes ** 2).view(
            self.num_classes, self.num_classes)

    def compute(self) -> dict[str, float]:
        conf = self.confusion.double()
        tp = conf.diag()
        union = conf.sum(0) + conf.sum(1) - tp         # TP + FP + FN
        present = union > 0
        miou = float((tp[present] / union[present]).mean()) if bool(present.any()) else math.nan
        total = conf.sum()
        acc = float(tp.sum() / total) if total > 0 else math.nan
        return {"miou": miou, "pixel_acc": acc}


class NormalsMeter:
    """Angle errors in degrees over all valid pixels; exact median (see the module notes)."""

    BIN_DEG = 0.001

    def __init__(self, exact_limit: int = 1 << 26):
        self.exact_limit = int(exact_limit)
        self._chunks: list[torch.Tensor] = []
        self._stored = 0
        self._hist: torch.Tensor | None = None
        self.count = 0
        self.sum = 0.0
        self.within = {11.25: 0, 22.5: 0, 30.0: 0}

    @staticmethod
    def angle_errors(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-pixel angle (degrees) between prediction and ground truth, valid pixels only."""
        valid = valid_normals(target)
        pred = output.double().permute(0, 2, 3, 1)[valid]
        gt = torch.nan_to_num(target).double().permute(0, 2, 3, 1)[valid]
        pred = pred / pred.norm(dim=1, keepdim=True).clamp_min(1e-12)
        gt = gt / gt.norm(dim=1, keepdim=True)
        # atan2(|a×b|, a·b) is accurate for small angles, where acos(a·b) is not.
        cross = torch.linalg.cross(pred, gt, dim=1).norm(dim=1)
        return torch.rad2deg(torch.atan2(cross, (pred * gt).sum(dim=1)))

    @torch.no_grad()
    def update(self, output: torch.Tensor, target: torch.Tensor) -> None:
        err = self.angle_errors(output, target).cpu()
        self.count += err.numel()
        self.sum += float(err.sum())
        for t in self.within:
            self.within[t] += int((err < t).sum())
        if self._hist is None and self._stored + err.numel() <= self.exact_limit:
            self._chunks.append(err.float())
            self._stored += err.numel()
            return
        if self._hist is None:                      # switch to the histogram, folding what was kept
            self._hist = torch.zeros(int(180 / self.BIN_DEG) + 1, dtype=torch.int64)
            for chunk in self._chunks:
                self._add_hist(chunk.double())
            self._chunks = []
        self._add_hist(err)

    def _add_hist(self, err: torch.Tensor) -> None:
        idx = (err / self.BIN_DEG).floor().long().clamp(0, self._hist.numel() - 1)
        self._hist += torch.bincount(idx, minlength=self._hist.numel())

    def _median(self) -> float:
        """The usual median: the middle value, or the mean of the two middle values when ``n`` is even."""
        n = self.count
        lo, hi = (n - 1) // 2, n // 2                 # 0-based ranks of the middle value(s)
        if self._hist is None:
            values = torch.sort(torch.cat(self._chunks)).values
            return (float(values[lo]) + float(values[hi])) / 2.0
        cum = torch.cumsum(self._hist, 0)
        bins = torch.searchsorted(cum, torch.tensor([lo + 1, hi + 1]))
        return float((bins.double() + 0.5).mean()) * self.BIN_DEG

    def compute(self) -> dict[str, float]:
        if self.count == 0:
            return dict.fromkeys(("mean", "median", "within_11", "within_22", "within_30"), math.nan)
        n = self.count
        return {"mean": self.sum / n, "median": self._median(),
                "within_11": self.within[11.25] / n, "within_22": self.within[22.5] / n,
                "within_30": self.within[30.0] / n}


def _match_channel_dim(output: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop a single channel dimension (dim 1) that only one of ``output`` / ``target`` has, so that
    ``(N, 1, H, W)`` against ``(N, H, W)`` compares pixel for pixel (depth and regression meters)."""
    if output.dim() == target.dim() + 1 and output.shape[1] == 1:
        output = output.squeeze(1)
    elif target.dim() == output.dim() + 1 and target.shape[1] == 1:
        target = target.squeeze(1)
    return output, target


class DepthMeter:
    """Absolute / relative error and the δ thresholds over all pixels with ``gt > 0``."""

    def __init__(self):
        self.count = 0
        self.abs_sum = 0.0
        self.rel_sum = 0.0
        self.delta = [0, 0, 0]

    @torch.no_grad()
    def update(self, output: torch.Tensor, target: torch.Tensor) -> None:
        output, target = _match_channel_dim(output, target)
        valid = valid_depth(target)
        pred, gt = output.double()[valid].cpu(), target.double()[valid].cpu()
        diff = (pred - gt).abs()
        self.count += gt.numel()
        self.abs_sum += float(diff.sum())
        self.rel_sum += float((diff / gt).sum())
        ratio = torch.where(pred > 0, torch.maximum(pred / gt, gt / pred.clamp_min(1e-300)),
                            torch.full_like(pred, math.inf))
        for k in range(3):
            self.delta[k] += int((ratio < 1.25 ** (k + 1)).sum())

    def compute(self) -> dict[str, float]:
        n = self.count
        if n == 0:
            return dict.fromkeys(("abs_err", "rel_err", "delta1", "delta2", "delta3"), math.nan)
        return {"abs_err": self.abs_sum / n, "rel_err": self.rel_sum / n,
                "delta1": self.delta[0] / n, "delta2": self.delta[1] / n, "delta3": self.delta[2] / n}


class ClassificationMeter:
    """Top-1 accuracy."""

    def __init__(self):
        self.correct = 0
        self.count = 0

    @torch.no_grad()
    def update(self, output: torch.Tensor, target: torch.Tensor) -> None:
        pred = output.argmax(dim=1) if output.dim() > 1 else output
        target = target.view(-1).to(pred.device)
        self.correct += int((pred.view(-1) == target).sum())
        self.count += target.numel()

    def compute(self) -> dict[str, float]:
        return {"acc": self.correct / self.count if self.count else math.nan}


class RegressionMeter:
    """Mean absolute error over valid pixels (finite and not ``ignore_value``)."""

    def __init__(self, ignore_value: float | None = None):
        self.ignore_value = ignore_value
        self.count = 0
        self.abs_sum = 0.0

    @torch.no_grad()
    def update(self, output: torch.Tensor, target: torch.Tensor) -> None:
        output, target = _match_channel_dim(output, target)
        valid = valid_regression(target, self.ignore_value)
        self.count += int(valid.sum())
        self.abs_sum += float((output.double()[valid] - target.double()[valid]).abs().sum())

    def compute(self) -> dict[str, float]:
        return {"abs_err": self.abs_sum / self.count if self.count else math.nan}


class CustomMeter:
    """A custom task's metrics (:func:`disparse_core.data.custom_task`): the outputs and targets of the whole
    set are kept (on the CPU) and each ``function(outputs, targets) -> float`` runs once on them."""

    def __init__(self, metric_fns: Mapping):
        self.metric_fns = dict(metric_fns)
        self.outputs: list[torch.Tensor] = []
        self.targets: list[torch.Tensor] = []

    @torch.no_grad()
    def update(self, output: torch.Tensor, target: torch.Tensor) -> None:
        self.outputs.append(output.detach().cpu())
        self.targets.append(target.detach().cpu())

    def compute(self) -> dict[str, float]:
        if not self.outputs:
            return {name: math.nan for name in self.metric_fns}
        outputs, targets = torch.cat(self.outputs), torch.cat(self.targets)
        return {name: float(fn(outputs, targets)) for name, fn in self.metric_fns.items()}


def make_meter(info):
    """The accumulator for a task described by ``info`` (``.kind``, ``.num_classes``, ``.ignore_index``)."""
    if info.kind == "custom":          # disparse_core.data.custom_task: its own metric functions
        return CustomMeter(info.metric_fns)
    kind = canonical_kind(info.kind)
    if kind == "segmentation":
        return SegmentationMeter(info.num_classes, getattr(info, "ignore_index", 255))
    if kind == "normals":
        return NormalsMeter()
    if kind == "depth":
        return DepthMeter()
    if kind == "regression":
        return RegressionMeter(getattr(info, "ignore_value", None))
    return ClassificationMeter()


# --- directions and ranges: disparse_core/metric_keys.py (re-exported here) ----------------------------

# --- Δm ---------------------------------------------------------------------------------------------

def _task_metric_groups(metrics: Mapping[str, float], baseline: Mapping[str, float],
                        tasks_metrics) -> dict[str, list[str]]:
    if tasks_metrics is None:
        groups: dict[str, list[str]] = {}
        for key in baseline:
            if "." in key and key in metrics:
                task, metric = key.rsplit(".", 1)
                groups.setdefault(task, []).append(metric)
        if not groups:
            raise ValueError("delta_m: metrics and baseline share no '<task>.<metric>' key")
        return groups
    groups = {}
    for task, spec in tasks_metrics.items():
        names = list(getattr(spec, "metrics", spec))
        if not names:
            raise ValueError(f"delta_m: task {task!r} lists no metric")
        groups[task] = names
    return groups


def delta_m(metrics: Mapping[str, float], baseline: Mapping[str, float],
            tasks_metrics: Mapping | None = None) -> float:
    """Multitask relative gain over a baseline, in percent (higher is better; 0 = same as baseline).

    ``Δm = (1/n) Σ_t (1/|M_t|) Σ_{m∈M_t} s_m · (M_{t,m} − B_{t,m}) / B_{t,m} · 100`` with ``s_m = +1``
    when higher is better and ``−1`` when lower is better: the relative changes are averaged **within
    each task first, then over the tasks**, so a task with five metrics weighs as much as one with one.

    ``tasks_metrics``: ``{task: [metric, ...]}`` (or ``{task: info}`` with ``info.metrics``); default:
    every ``task.metric`` key present in both dicts. A missing key raises ValueError. A metric whose
    baseline is 0 (e.g. ``depth.delta1`` of an undertrained dense net) has no relative change: it is
    left out of its task's mean with a ``RuntimeWarning`` (a task left with no metric is left out of
    the mean over tasks); ValueError when nothing is left.
    """
    groups = _task_metric_groups(metrics, baseline, tasks_metrics)
    per_task, skipped = [], []
    for task, names in groups.items():
        gains = []
        for name in names:
            key = f"{task}.{name}"
            if key not in metrics or key not in baseline:
                raise ValueError(f"delta_m: metric {key!r} missing from "
                                 f"{'metrics' if key not in metrics else 'baseline'}")
            m, b = float(metrics[key]), float(baseline[key])
            if not math.isfinite(b):
                raise ValueError(f"delta_m: baseline {key}={b!r} is not finite")
            if b == 0:
                skipped.append(key)
                continue
            sign = 1.0 if higher_is_better(key) else -1.0
            gains.append(sign * (m - b) / abs(b) * 100.0)
        if gains:
            per_task.append(sum(gains) / len(gains))
    if skipped:
        warnings.warn(f"delta_m: baseline is 0 for {', '.join(skipped)}; left out", RuntimeWarning,
                      stacklevel=2)
    if not per_task:
        raise ValueError(f"delta_m: no metric with a nonzero baseline (zero: {', '.join(skipped)})")
    return sum(per_task) / len(per_task)


# --- evaluation -------------------------------------------------------------------------------------

def _to_device(x, device):
    if isinstance(x, torch.Tensor):
        return x.to(device, non_blocking=True)
    if isinstance(x, Mapping):
        return {k: _to_device(v, device) for k, v in x.items()}
    return x


def _check_evaluated(tasks: Mapping, outputs, targets) -> None:
    """One clear error when the model's outputs or the batch's targets lack a task to evaluate."""
    if not isinstance(outputs, Mapping):
        raise ValueError(f"evaluate: the model returned {type(outputs).__name__}; expected a dict "
                         f"{{task: output}} with tasks {sorted(tasks)}")
    for where, got in (("the model's outputs", outputs), ("the batch's targets", targets)):
        missing = [t for t in tasks if t not in got]
        if missing:
            have = sorted(got) if isinstance(got, Mapping) else type(got).__name__
            raise ValueError(f"evaluate: {where} have no task {missing[0]!r} (they have {have}); expected "
                             f"every task of the workload: {sorted(tasks)}")


@torch.no_grad()
def evaluate(model: nn.Module, loader, workload, device="cpu", max_batches: int | None = None,
             autocast_dtype: torch.dtype | None = None) -> dict[str, float]:
    """Run ``model`` over ``loader`` and return ``{"task.metric": float}`` for every task of ``workload``.

    ``max_batches`` limits the number of batches (None = the whole loader). The model's train/eval mode
    is restored afterwards. ``autocast_dtype`` (e.g. ``torch.bfloat16``) runs the forward under autocast;
    the metrics are always computed in float64 from the outputs.
    """
    tasks = getattr(workload, "tasks", workload)
    meters = {task: make_meter(info) for task, info in tasks.items()}
    device = torch.device(device)
    was_training = model.training
    model.eval()
    try:
        for i, (inputs, targets) in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                break
            inputs = _to_device(inputs, device)
            if autocast_dtype is not None:
                with torch.autocast(device_type=device.type, dtype=autocast_dtype):
                    outputs = model(inputs)
            else:
                outputs = model(inputs)
            if i == 0:
                _check_evaluated(tasks, outputs, targets)
            for task, meter in meters.items():
                meter.update(outputs[task].float(), targets[task].to(device))
    finally:
        model.train(was_training)
    return {f"{task}.{k}": float(v) for task, meter in meters.items()
            for k, v in meter.compute().items()}
