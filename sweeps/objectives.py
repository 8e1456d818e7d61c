"""The objectives' directions: ``maximize`` or ``minimize`` for each metric key a sweep optimizes or shows.

Pure and light (no torch unless a key is not in the table below): :mod:`sweeps.plots`, the tracking
package and the query commands read directions here.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

__all__ = ["normalize_directions"]


def normalize_directions(objectives: Sequence[str], directions: Any) -> list[str]:
    """``["maximize" | "minimize", ...]`` parallel to ``objectives``."""
    words = {"max": "maximize", "maximize": "maximize", "maximise": "maximize", "higher": "maximize",
             "min": "minimize", "minimize": "minimize", "minimise": "minimize", "lower": "minimize"}
    out = []
    for i, obj in enumerate(objectives):
        if directions is None:
            d = _default_direction(obj)
        elif isinstance(directions, Mapping):
            d = directions.get(obj) or _default_direction(obj)
        else:
            d = list(directions)[i]
        d = str(getattr(d, "value", d)).lower().rsplit(".", 1)[-1]
        if d not in words:
            raise ValueError(f"direction {d!r} of objective {obj!r}: expected maximize or minimize")
        out.append(words[d])
    return out


_HIGHER = {"compression", "delta_m", "sparsity", "min_layer_density", "miou", "pixel_acc", "acc", "within_11",
           "within_22", "within_30", "delta1", "delta2", "delta3"}
_LOWER = {"mean", "median", "abs_err", "rel_err", "rmse", "loss", "nonzero_params", "wall_time_s"}


def _default_direction(key: str) -> str:
    """Direction of a metric key: a local table for the known names (importing the core would pull in
    torch), ``disparse_core.metrics.higher_is_better`` for the rest, else maximize."""
    last = str(key).rsplit(".", 1)[-1]
    if last in _HIGHER or last in _LOWER:
        return "maximize" if last in _HIGHER else "minimize"
    try:
        from disparse_core.metrics import higher_is_better
        return "maximize" if higher_is_better(key) else "minimize"
    except Exception:
        return "maximize"
