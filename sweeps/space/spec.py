"""The validated search space as plain data: :class:`Param`, :class:`Objective`, :class:`SweepSpec`.

Private to :mod:`sweeps.space`, which re-exports these classes.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from ..budgets import Budget

_ES_FILE_KEYS = ("type", "metric", "grace_steps", "reduction_factor", "keep_non_dominated")


@dataclass
class Param:
    """One entry of ``parameters``: how to sample the trial config key ``name`` (dotted = nested)."""

    name: str
    distribution: str
    low: float | int | None = None
    high: float | int | None = None
    step: float | int | None = None
    values: tuple = ()
    value: Any = None
    when: dict[str, tuple] = field(default_factory=dict)

    def to_dict(self) -> dict:
        if self.distribution == "fixed":
            out: dict[str, Any] = {"value": self.value}
        elif self.distribution == "categorical":
            out = {"values": list(self.values)}
        else:
            out = {"distribution": self.distribution, "low": self.low, "high": self.high}
            if self.step is not None:
                out["step"] = self.step
        if self.when:
            out["when"] = {k: list(v) for k, v in self.when.items()}
        return out

    def possible_values(self) -> tuple | None:
        """The finite set of values this parameter can take, or None for a range."""
        if self.distribution == "fixed":
            return (self.value,)
        if self.distribution == "categorical":
            return self.values
        return None


@dataclass(frozen=True)
class Objective:
    name: str
    direction: str          # "maximize" | "minimize"
    reference: float | None = None      # the hypervolume's reference value (None: from the trials)


@dataclass
class SweepSpec:
    """A validated search space. Plain data; ``to_dict()`` gives a loadable, loggable mapping."""

    name: str
    workload: dict                      # the fixed trial-config base (nested dicts, absolute paths)
    parameters: list[Param]
    objectives: list[Objective]
    budgets: list[Budget]
    sampler: dict                       # {type, seed, ...options with defaults filled in}
    trials: int
    concurrency: int
    resources: dict                     # {cpu, gpu}
    # {type: none}, or single-metric ASHA {type: asha, metric, mode, grace_steps, reduction_factor, max_steps},
    # or multi-objective ASHA {type: asha, metric: "objectives", grace_steps, reduction_factor,
    # keep_non_dominated, max_steps}
    # (ranked on every objective in its direction: sweeps.ray.mo_asha)
    early_stopping: dict
    baseline: bool
    max_retries: int
    description: str = ""
    tasks: dict = field(default_factory=dict)      # active tasks → tuple of metric names
    path: str | None = None                        # the resolved file (None when built from a dict)
    raw_text: str = ""                             # the file as read, for logging
    raw: dict = field(default_factory=dict)        # the mapping as parsed, before overrides
    overrides: tuple = ()                          # the ``--set`` overrides applied, in order
    # a workload or arch of your own (sweeps.space.factories): the files of the working directory its
    # factories came from (shipped to Ray workers) and the directions of its custom tasks' metrics
    user_code: tuple = ()
    metric_directions: dict = field(default_factory=dict)

    @property
    def metric_names(self) -> list[str]:
        return [o.name for o in self.objectives]

    @property
    def param(self) -> dict[str, Param]:
        return {p.name: p for p in self.parameters}

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "description": self.description,
            "workload": copy.deepcopy(self.workload),
            "parameters": {p.name: p.to_dict() for p in self.parameters},
            "objectives": [{"name": o.name, "direction": o.direction}
                           | ({"reference": o.reference} if o.reference is not None else {})
                           for o in self.objectives],
            "budgets": [b.text for b in self.budgets],
            "sampler": dict(self.sampler),
            "trials": self.trials,
            "concurrency": self.concurrency,
            "resources": dict(self.resources),
            # the keys a space file takes (mode and max_steps are derived when it is loaded)
            "early_stopping": {k: v for k, v in self.early_stopping.items() if k in _ES_FILE_KEYS},
            "baseline": self.baseline,
            "max_retries": self.max_retries,
        }
