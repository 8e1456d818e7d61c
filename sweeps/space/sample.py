"""Sampling a validated space: define-by-run :func:`suggest`, the Optuna :func:`directions` and
:func:`make_sampler` (with the budgets' ``constraints_func``).

Private to :mod:`sweeps.space`, which re-exports the public names. Optuna is imported only inside
:func:`make_sampler`.
"""

from __future__ import annotations

import copy
import math
import warnings
from typing import Any, Mapping

from ..budgets import MISSING_VIOLATION
from .fields import get_dotted, set_dotted
from .spec import Param, SweepSpec


def directions(spec: SweepSpec) -> list[str]:
    """Optuna directions of the objectives, in order."""
    return [o.direction for o in spec.objectives]


_MISSING = object()


def _is_active(param: Param, chosen: Mapping[str, Any], base: Mapping) -> bool:
    """Every ``when`` holds: the referenced parameter was sampled (or is fixed in the base) with an
    allowed value (compared with its type, so ``1`` does not match ``true``)."""
    for ref, allowed in param.when.items():
        value = chosen[ref] if ref in chosen else get_dotted(base, ref, _MISSING)
        if value is _MISSING or not any(value == a and type(value) is type(a) for a in allowed):
            return False
    return True


def suggest(spec: SweepSpec, trial: Any) -> dict:
    """Sample one trial config define-by-run: the fixed base merged with the active parameters.

    ``trial`` is an ``optuna.Trial`` (or ``optuna.trial.FixedTrial``). A conditional parameter is asked
    for only when its ``when`` holds for the values chosen before it; fixed parameters never reach Optuna.
    """
    config = copy.deepcopy(spec.workload)
    chosen: dict[str, Any] = {}
    for p in spec.parameters:
        if not _is_active(p, chosen, spec.workload):
            continue                       # a condition fails, or it depends on an inactive parameter
        if p.distribution == "fixed":
            value = p.value
        elif p.distribution == "categorical":
            value = trial.suggest_categorical(p.name, list(p.values))
        elif p.distribution in ("uniform", "log_uniform"):
            value = trial.suggest_float(p.name, float(p.low), float(p.high),
                                        step=None if p.step is None else float(p.step),
                                        log=p.distribution == "log_uniform")
        else:
            log = p.distribution == "int_log_uniform"
            value = trial.suggest_int(p.name, int(p.low), int(p.high),
                                      step=1 if log or p.step is None else int(p.step), log=log)
        chosen[p.name] = value
        set_dotted(config, p.name, value)
    return config


class ConstraintsFromUserAttrs:
    """Optuna ``constraints_func``: ``trial.user_attrs["constraints"]`` (set by the searcher before
    ``tell``). A trial without them (pruned, or told without metrics) counts as infeasible."""

    def __init__(self, count: int):
        self.count = count

    def __call__(self, trial: Any) -> tuple[float, ...]:
        values = trial.user_attrs.get("constraints")
        if not isinstance(values, (list, tuple)) or len(values) != self.count:
            return (MISSING_VIOLATION,) * self.count
        out = []
        for v in values:
            try:
                v = float(v)
            except (TypeError, ValueError):
                v = math.nan
            out.append(v if math.isfinite(v) else MISSING_VIOLATION)
        return tuple(out)


def sampler_seed(seed: int | None, asked_before: int = 0) -> int | None:
    """The seed of the sampler of a sweep that has already asked ``asked_before`` trials: ``seed`` itself
    for a new sweep; for a resumed one a seed derived from both (the same on every resume at that count),
    so that its random draws go on instead of repeating the first run's from the start."""
    if seed is None or asked_before <= 0:
        return seed
    import numpy as np

    return int(np.random.SeedSequence([int(seed), int(asked_before)]).generate_state(1)[0])


def make_sampler(spec: SweepSpec, asked_before: int = 0):
    """The Optuna sampler named by ``spec.sampler``, seeded (:func:`sampler_seed`: ``asked_before`` is the
    number of trials the sweep's study has already asked); with budgets, TPE, NSGA-II and GP get a
    ``constraints_func`` that reads ``trial.user_attrs["constraints"]`` (random ignores budgets)."""
    import optuna

    opts = spec.sampler
    seed = sampler_seed(opts.get("seed"), asked_before)
    constraints = ConstraintsFromUserAttrs(len(spec.budgets)) if spec.budgets else None
    kind = opts["type"]
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    with warnings.catch_warnings():
        # Optuna 5 deprecates constraints_func (removal planned for v7) in favour of
        # Trial.set_constraint; ARCHITECTURE.md fixes the user_attrs contract, so keep it quiet here.
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if kind == "tpe":
            return optuna.samplers.TPESampler(seed=seed, n_startup_trials=opts["n_startup_trials"],
                                              multivariate=opts["multivariate"], constraints_func=constraints)
        if kind == "nsga2":
            return optuna.samplers.NSGAIISampler(seed=seed, population_size=opts["population_size"],
                                                 constraints_func=constraints)
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=opts["n_startup_trials"],
                                         constraints_func=constraints)
