"""Search-space schema: what a space may set (field tables and key lists) and the one-line errors.

Private to :mod:`sweeps.space` (which re-exports the public names). The trial-config tables
(:data:`TRIAL_FIELDS`, :data:`SUB_FIELDS`) and the value tuples are derived from
:mod:`disparse_core.config`, the core's one schema (torch-free, so importing this stays light); this module
adds only what is the sweep's own: which keys can be swept, the space file's keys, and the few bounds the
sweep holds tighter than the core. ``SpaceField.check`` validates one value and raises
:class:`~sweeps.errors.SpaceError` naming the dotted key, the value and what was expected.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Mapping

import yaml

from disparse_core import config as core
from disparse_core.factories import FACTORY_EXPECTED, check_factory

from ..errors import SpaceError

# --- what the core accepts (docs/ARCHITECTURE.md, "Trial config"): disparse_core.config's tables ------------

WORKLOADS = core.WORKLOADS
REAL_DATA = core.REAL_DATA                               # need data_root
ARCHS = core.ARCHS
METHODS = tuple(core.METHODS)
CRITERIA = core.CRITERIA
SAMPLERS = ("tpe", "nsga2", "gp", "random")
DISTRIBUTIONS = ("uniform", "log_uniform", "int_uniform", "int_log_uniform", "categorical", "fixed")


def show_value(value: Any) -> str:
    """A value as the user wrote it (YAML-ish)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = repr(value)
        return text if len(text) <= 200 else text[:40] + f"…(shortened, {len(value)} characters)"
    if isinstance(value, int) and abs(value) >= 10 ** 30:
        digits = str(value)
        return f"{digits[:12]}…(shortened, {len(digits.lstrip('-'))} digits)"
    text = repr(value) if not isinstance(value, (dict, list)) else yaml.safe_dump(
        value, default_flow_style=True, width=10_000).strip()
    return text if len(text) <= 80 else text[:77] + "..."


def bad_value(key: str, value: Any, problem: str, expected: str) -> SpaceError:
    return SpaceError(f"{key}: {show_value(value)} {problem}; expected {expected}")


def unknown_key(key: str, name: str, known: Iterable[str]) -> SpaceError:
    known = sorted(known)
    hints = {"min": "low", "max": "high", "q": "step", "choices": "values", "condition": "when",
             "n_trials": "trials", "num_samples": "trials", "max_concurrent": "concurrency"}
    close = [hints[name]] if hints.get(name) in known else difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    where = f"{key}.{name}" if key else name
    return SpaceError(f"{where}: unknown key{hint}; expected one of {', '.join(known)}")


# --- field checks -------------------------------------------------------------------------------

_NUMERIC_STRING = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$")


def as_number(value: Any) -> float | int | None:
    """A number, also from YAML's strings like ``1e-4`` (PyYAML reads those as text); None if not."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str) and _NUMERIC_STRING.match(value.strip()):
        return float(value)
    return None


def is_finite(num: Any) -> bool:
    """True for a finite number; False for nan/inf and for integers too large for a float."""
    try:
        return math.isfinite(num)
    except (OverflowError, TypeError, ValueError):
        return False


@dataclass(frozen=True)
class SpaceField(core.Field):
    """The core's :class:`~disparse_core.config.Field` as a space file meets it: ``kind`` is ``int``,
    ``float``, ``bool``, ``str``, ``choice``, ``map`` or ``list``; ``sweepable`` says whether
    ``parameters`` may sample it; ``check`` raises :class:`~sweeps.errors.SpaceError` and reads numbers
    written like ``1e-4``."""
    sweepable: bool = True

    def expected(self) -> str:
        null = " or null" if self.nullable else ""
        if self.kind in ("int", "float"):
            noun = "an integer" if self.kind == "int" else "a number"
            if self.low is not None and self.high is not None:
                return (f"{noun} in {'(' if self.low_open else '['}{_num(self.low)}, "
                        f"{_num(self.high)}{')' if self.high_open else ']'}{null}")
            if self.low is not None:
                return f"{noun} {'>' if self.low_open else '>='} {_num(self.low)}{null}"
            return noun + null
        if self.kind == "choice":
            return f"one of {', '.join(map(str, self.choices))}{null}"
        if self.kind == "factory":
            return f"one of {', '.join(map(str, self.choices))}, or {FACTORY_EXPECTED}"
        if self.kind == "bool":
            return "true or false" + null
        if self.kind == "str":
            return "a string" + null
        if self.kind == "map":
            return "a mapping" + null
        return "a list" + null

    def check(self, key: str, value: Any) -> Any:
        """The value (numbers coerced from ``1e-4``-like strings) or a SpaceError."""
        if value is None:
            if self.nullable:
                return None
            raise bad_value(key, value, "is not allowed", self.expected())
        if self.kind in ("int", "float"):
            num = as_number(value)
            if num is None:
                raise bad_value(key, value, "is not a number", self.expected())
            if self.kind == "int" and not isinstance(num, int):
                raise bad_value(key, value, "is not an integer", self.expected())
            if not is_finite(num) or not self._in_range(num):
                raise bad_value(key, value, "is out of range", self.expected())
            return num
        if self.kind == "factory":     # a built-in name, or a factory of your own: kept as written
            if key.startswith("parameters.") and value not in self.choices and (
                    isinstance(value, Mapping) or (isinstance(value, str) and ":" in value)):
                raise bad_value(key, value, "names a factory of your own, which a sweep does not sample",
                                f"one of {', '.join(self.choices)} here (fix it as workload.{self.what})")
            try:
                normalised = check_factory(key, value, self.choices, self.what)
            except ValueError as err:
                raise SpaceError(str(err)) from None
            return value if isinstance(value, str) else normalised
        if self.kind == "choice":
            if value not in self.choices or isinstance(value, bool) != isinstance(self.choices[0], bool):
                close = difflib.get_close_matches(str(value), [str(c) for c in self.choices], n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise bad_value(key, value, f"is not a known {self.what or 'value'}{hint}", self.expected())
            return value
        if self.kind == "bool" and not isinstance(value, bool):
            raise bad_value(key, value, "is not a boolean", self.expected())
        if self.kind == "str" and not isinstance(value, str):
            raise bad_value(key, value, "is not a string", self.expected())
        if self.kind == "map" and not isinstance(value, Mapping):
            raise bad_value(key, value, "is not a mapping", self.expected())
        if self.kind == "list" and not isinstance(value, list):
            raise bad_value(key, value, "is not a list", self.expected())
        return value

    def _in_range(self, x: float) -> bool:
        if self.low is not None and (x < self.low or (self.low_open and x == self.low)):
            return False
        if self.high is not None and (x > self.high or (self.high_open and x == self.high)):
            return False
        return True


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def int_field(low=None, **kw) -> SpaceField:
    return SpaceField("int", low=low, **kw)


def float_field(low=None, high=None, **kw) -> SpaceField:
    return SpaceField("float", low=low, high=high, **kw)


def choice_field(choices, what, **kw) -> SpaceField:
    return SpaceField("choice", choices=tuple(choices), what=what, **kw)


SEED_MAX = 2 ** 32 - 1                  # numpy's limit (np.random.seed)

#: the core's kinds as a space file writes them
_KINDS = {"path": "str", "device": "str", "tasks": "list", "float_map": "map", "section": "map"}
#: keys a space fixes under ``workload`` but never samples (what data, where files go, which device)
FIXED_ONLY = ("workload", "data_root", "tasks", "device", "checkpoint_dir", "resume", "export_path",
              "baseline_metrics", "preset")
#: where the sweep holds a key tighter than the core: the core's defaults of width and pretrain_steps are
#: not written as null in a space, and a seed must fit numpy's generator
STRICTER: dict[str, dict[str, Any]] = {"width": {"nullable": False}, "pretrain_steps": {"nullable": False},
                                       "seed": {"high": SEED_MAX}}


def _derived(field: core.Field, sweepable: bool = True, **tighter) -> SpaceField:
    """A space field from the core's field of the same key."""
    return SpaceField(**{**asdict(field), "kind": _KINDS.get(field.kind, field.kind), "sweepable": sweepable,
                         **tighter})


TRIAL_FIELDS: dict[str, SpaceField] = {name: _derived(field, name not in FIXED_ONLY, **STRICTER.get(name, {}))
                                       for name, field in core.FIELDS.items()}
SUB_FIELDS: dict[str, dict[str, SpaceField]] = {section: {name: _derived(field) for name, field in fields.items()}
                                                for section, fields in core.SECTION_FIELDS.items()}
FRACTION = TRIAL_FIELDS["sparsity"]
LOSS_WEIGHT = float_field(0)                # the core's check_loss_weights: a finite number >= 0
PATH_KEYS = ("data_root", "checkpoint_dir", "export_path")
DEVICE_PATTERN = core.DEVICE_PATTERN                              # use with fullmatch
# the space's name is a results folder name and the MLflow sweep id
NAME_PATTERN = re.compile(r"[A-Za-z0-9_\-.]+")
NAME_MAX = 100
NAME_EXPECTED = f"letters, digits, '-', '_', '.' (a folder name), at most {NAME_MAX} characters"


# --- keys of a space file -------------------------------------------------------------------------

TOP_KEYS = ("name", "description", "workload", "parameters", "objectives", "budgets", "sampler",
            "trials", "concurrency", "resources", "early_stopping", "baseline", "max_retries")
PARAM_KEYS = ("distribution", "low", "high", "step", "q", "values", "value", "when")
RANGE_DISTS = ("uniform", "log_uniform", "int_uniform", "int_log_uniform")
SAMPLER_OPTIONS = {"tpe": ("n_startup_trials", "multivariate"), "gp": ("n_startup_trials",),
                   "nsga2": ("population_size",), "random": ()}
SCALAR = (str, int, float, bool, type(None))


# --- small helpers shared by validation and sampling ------------------------------------------------

def checked_mapping(key: str, value: Any, allowed: Iterable[str], example: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise bad_value(key, value, "is not a mapping", example)
    allowed = tuple(allowed)
    for k in value:
        if k not in allowed:
            raise unknown_key(key, str(k), allowed)
    return dict(value)


def get_dotted(config: Mapping, name: str, default: Any = None) -> Any:
    node: Any = config
    for part in name.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node


def set_dotted(config: dict, name: str, value: Any) -> None:
    parts = name.split(".")
    node = config
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[parts[-1]] = value


def check_task(key: str, task: str, tasks: Mapping[str, Any]) -> None:
    """``task`` must be one of the workload's active ``tasks`` (loss weights are per task)."""
    if task not in tasks:
        raise bad_value(key, task, "is not an active task", f"one of {', '.join(tasks)}")
