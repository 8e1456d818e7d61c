"""Search spaces: load and validate a YAML sweep file, sample trial configs, build the Optuna sampler.

``load_space(name_or_path, overrides=())`` reads a file from ``search_spaces/`` (or any path), applies
``--set KEY=VALUE`` overrides, validates everything and returns a :class:`SweepSpec`; every problem is a
:class:`~sweeps.errors.SpaceError` (or BudgetError) whose one-line message names the dotted key, the
value and what was expected. ``suggest(spec, trial)`` samples one trial config define-by-run;
``make_sampler(spec)`` builds the Optuna sampler. The YAML syntax is documented in
docs/search-spaces.md.

This is the package's public face; the modules behind it, in the order a space file meets them:
``load`` (finding and reading the file), ``yaml`` (strict YAML, overrides, ``${ENV}``), ``fields`` (what
a space may set, derived from :mod:`disparse_core.config`; the one-line errors), ``validate`` and
``params`` (validation), ``data`` (a real data set's folder and sizes), ``probe`` (sampled combinations
checked by the core's ``TrialConfig``), ``spec`` (the spec dataclasses), ``sample`` (suggest, directions,
samplers).
"""

from .fields import SEED_MAX, SUB_FIELDS, TRIAL_FIELDS
from .load import DEFAULT_SPACE, apply_overrides, list_spaces, load_space, space_from_dict
from .sample import ConstraintsFromUserAttrs, directions, make_sampler, sampler_seed, suggest
from .spec import Objective, Param, SweepSpec
from .yaml import parse_overrides

__all__ = [
    "DEFAULT_SPACE",
    "Param",
    "Objective",
    "SweepSpec",
    "load_space",
    "apply_overrides",
    "parse_overrides",
    "space_from_dict",
    "list_spaces",
    "suggest",
    "make_sampler",
    "sampler_seed",
    "directions",
    "ConstraintsFromUserAttrs",
    "TRIAL_FIELDS",
    "SUB_FIELDS",
    "SEED_MAX",
]
