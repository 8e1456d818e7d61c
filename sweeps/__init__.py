"""Sweep orchestration for disparse-tune: search spaces, budgets, Pareto fronts, Ray Tune, MLflow.

Kept import-light: importing ``sweeps`` loads no Ray, Optuna, MLflow or torch; import the submodules
(``sweeps.space``, ``sweeps.budgets``, ``sweeps.pareto``, ...) for the real work.
"""

from .errors import BudgetError, SpaceError, UserInputError

__all__ = ["UserInputError", "SpaceError", "BudgetError"]
