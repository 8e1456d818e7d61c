"""The objectives' directions: ``maximize`` or ``minimize`` for each metric key a sweep optimizes or shows.

Pure and light (the table is :mod:`disparse_core.metric_keys`, which loads no torch): :mod:`sweeps.plots`,
the tracking package and the query commands read directions here.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from disparse_core.metric_keys import higher_is_better, register_metric

__all__ = ["normalize_directions", "TAG_METRIC_DIRECTIONS", "register_sweep_metrics"]

#: the sweep run's tag holding ``{metric: "maximize" | "minimize"}`` of its custom tasks' metrics
TAG_METRIC_DIRECTIONS = "disparse.metric_directions"


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


def register_sweep_metrics(tags: Mapping[str, Any]) -> bool:
    """Teach this process the directions of a sweep's custom metrics (a workload of the user's own,
    docs/extending.md), read from its run's tags, so that ``best``/``pareto``/``report`` rank them as the
    sweep did without importing the user's code. True when there were any."""
    import json
    try:
        directions = json.loads(tags.get(TAG_METRIC_DIRECTIONS) or "{}")
    except ValueError:
        return False
    done = False
    for metric, direction in (directions.items() if isinstance(directions, dict) else ()):
        try:
            register_metric(str(metric), higher_is_better=direction == "maximize")
            done = True
        except ValueError:       # a name this code knows with the other direction: keep the known one
            pass
    return done


def _default_direction(key: str) -> str:
    """Direction of a metric key from :mod:`disparse_core.metric_keys` (torch-free); maximize when unknown."""
    try:
        return "maximize" if higher_is_better(key) else "minimize"
    except ValueError:
        return "maximize"
