"""Every combination a space can sample, probed and checked by the core's own ``TrialConfig`` before any
trial starts (:func:`check_with_core`): each candidate of every parameter (the others at their first),
both corners, and seeded random combinations. Private to :mod:`sweeps.space` (used by its validate module).
"""

from __future__ import annotations

import math
from typing import Any

from disparse_core.config import TrialConfig

from ..errors import SpaceError
from .data import check_data_config
from .fields import show_value
from .sample import suggest
from .spec import Param, SweepSpec

__all__ = ["check_with_core"]


class _PickTrial:
    """A stand-in for ``optuna.Trial`` that answers from ``pick(param_name, candidates)``."""

    def __init__(self, spec: SweepSpec, pick):
        self._param = spec.param
        self._pick = pick
        self.params: dict[str, Any] = {}

    def _answer(self, name: str) -> Any:
        self.params[name] = value = self._pick(self._param[name])
        return value

    def suggest_float(self, name, low, high, *, step=None, log=False):
        return self._answer(name)

    def suggest_int(self, name, low, high, *, step=1, log=False):
        return self._answer(name)

    def suggest_categorical(self, name, choices):
        return self._answer(name)


def _candidates(p: Param) -> tuple:
    return p.possible_values() or (p.low, p.high)


def _random_value(p: Param, rng) -> Any:
    if p.possible_values() is not None:
        return rng.choice(p.possible_values())
    if p.distribution.endswith("log_uniform"):
        value = math.exp(rng.uniform(math.log(p.low), math.log(p.high)))
    else:
        value = rng.uniform(p.low, p.high)
    if p.step:
        value = p.low + round((value - p.low) / p.step) * p.step
    return int(round(value)) if p.distribution.startswith("int_") else min(max(value, p.low), p.high)


def _probe_picks(spec: SweepSpec, n_random: int = 16):
    """Pickers covering every candidate of every parameter (others at their first), both corners, and
    ``n_random`` seeded random combinations."""
    import random
    yield lambda p: _candidates(p)[0]
    yield lambda p: _candidates(p)[-1]
    for target in spec.parameters:
        for value in _candidates(target)[1:]:
            yield lambda p, t=target.name, v=value: v if p.name == t else _candidates(p)[0]
    rng = random.Random(0)
    for _ in range(n_random):
        seed = rng.random()
        yield lambda p, r=random.Random(seed): _random_value(p, r)


def check_with_core(spec: SweepSpec) -> None:
    """Every combination probed must pass ``disparse_core.config.TrialConfig.from_dict`` (criterion vs
    method, pretrain_steps vs steps, width vs arch, ...), so a bad space fails before any trial starts."""
    for pick in _probe_picks(spec):
        trial = _PickTrial(spec, pick)
        config = suggest(spec, trial)
        try:
            cfg = TrialConfig.from_dict(config)
        except ValueError as err:
            chosen = ", ".join(f"{k}={show_value(v)}" for k, v in trial.params.items())
            where = f" (sampling {chosen})" if chosen else ""
            text = str(err).rstrip(".")
            raise SpaceError(f"trial config {text}{where}; expected every combination the space can sample "
                             f"to be a valid trial config (fix workload or parameters)") from None
        check_data_config(cfg, lambda name, t=trial: f"parameters.{name}" if name in t.params
                          else f"workload.{name}")
