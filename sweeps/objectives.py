"""The objectives' directions: ``maximize`` or ``minimize`` for each metric key a sweep optimizes or shows.

Pure and light (the table is :mod:`disparse_core.metric_keys`, which loads no torch): :mod:`sweeps.plots`,
the tracking package and the query commands read directions here.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from disparse_core.metric_keys import higher_is_better

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


def _default_direction(key: str) -> str:
    """Direction of a metric key from :mod:`disparse_core.metric_keys` (torch-free); maximize when unknown."""
    try:
        return "maximize" if higher_is_better(key) else "minimize"
    except ValueError:
        return "maximize"
