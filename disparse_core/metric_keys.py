"""What a metric key says about its values: its direction (higher or lower is better) and its range.
The last dotted component decides (``seg.miou`` -> ``miou``), so any task name works. The one table of
metric directions and ranges: :mod:`disparse_core.metrics` re-exports these names and the sweep
(objectives, budgets, Pareto fronts) reads them here. Standard library only, so it loads no torch.
"""

from __future__ import annotations

import math
from typing import Iterable

__all__ = ["higher_is_better", "metric_directions", "metric_range", "register_metric"]

_HIGHER = {"miou", "pixel_acc", "within_11", "within_22", "within_30", "delta1", "delta2", "delta3",
           "acc", "compression", "delta_m", "sparsity", "min_layer_density"}
_LOWER = {"mean", "median", "abs_err", "rel_err", "rmse", "loss", "nonzero_params", "wall_time_s"}


_RANGES: dict[str, tuple[float, float]] = {}     # metrics registered with a range of their own


def register_metric(metric: str, *, higher_is_better: bool, low: float = 0.0, high: float = math.inf) -> None:
    """Teach the core a metric of your own task (``f1``, ``auc``, ``mae``, ...): its direction, for
    ``delta_m`` and Pareto fronts, and the values it takes (``[low, high]``, default ``[0, inf)``), for
    budget checks. ``metric`` is the last part of a key (``f1`` for ``tags.f1``). Registering a name again
    with the same settings is allowed; changing a known metric's direction is an error."""
    if not isinstance(metric, str) or not metric.isidentifier():
        raise ValueError(f"register_metric: {metric!r} is not a metric name; expected e.g. 'f1'")
    if not isinstance(higher_is_better, bool):
        raise ValueError(f"register_metric: higher_is_better must be True or False, got {higher_is_better!r}")
    if not (isinstance(low, (int, float)) and isinstance(high, (int, float)) and low < high
            and not math.isnan(low) and not math.isnan(high)):
        raise ValueError(f"register_metric: {metric!r} needs low < high, got low={low!r}, high={high!r}")
    known = _HIGHER if higher_is_better else _LOWER
    other = _LOWER if higher_is_better else _HIGHER
    if metric in other:
        raise ValueError(f"register_metric: {metric!r} is already known as "
                         f"{'lower' if higher_is_better else 'higher'}-is-better")
    known.add(metric)
    _RANGES[metric] = (float(low), float(high))


def higher_is_better(key: str) -> bool:
    """Direction of a metric key: ``seg.miou`` → True, ``normal.mean`` → False, ``compression`` → True.

    The last dotted component decides, so any task name works. Unknown metrics raise ``ValueError``.
    """
    metric = str(key).rsplit(".", 1)[-1]
    if metric in _HIGHER:
        return True
    if metric in _LOWER:
        return False
    raise ValueError(f"unknown metric {key!r}: direction not known (known: "
                     f"{sorted(_HIGHER | _LOWER)})")


_FRACTIONS = {"miou", "pixel_acc", "within_11", "within_22", "within_30", "delta1", "delta2", "delta3",
              "acc", "sparsity", "min_layer_density"}
_ANGLES = {"mean", "median"}


def metric_range(key: str) -> tuple[float, float]:
    """The values a metric can take, ``(low, high)``: fractions ``[0, 1]``, angles ``[0, 180]`` degrees,
    errors, counts and times ``[0, inf)``, ``compression`` ``(-inf, 1]`` (a branched net can hold more
    weights than the dense one), ``delta_m`` unbounded. Unknown metrics raise ``ValueError``."""
    metric = str(key).rsplit(".", 1)[-1]
    higher_is_better(key)
    if metric in _RANGES:
        return _RANGES[metric]
    if metric in _FRACTIONS:
        return 0.0, 1.0
    if metric in _ANGLES:
        return 0.0, 180.0
    if metric == "compression":
        return -math.inf, 1.0
    if metric == "delta_m":
        return -math.inf, math.inf
    return 0.0, math.inf


def metric_directions(keys: Iterable[str]) -> dict[str, str]:
    """``{key: "maximize" | "minimize"}`` (Optuna's words) for each key."""
    return {k: "maximize" if higher_is_better(k) else "minimize" for k in keys}
